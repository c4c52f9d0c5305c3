"""The consumer's ack watermark: a ``multiple=True`` ack never covers a delivery whose
effects are not settled yet, however the batches finish."""

from __future__ import annotations

from common.events.consumer import _AckWatermark


def test_acks_only_up_to_the_first_unsettled_delivery():
    watermark = _AckWatermark(channel=None)
    for tag in range(1, 11):
        watermark.delivered(tag)
    # A later batch commits first: nothing may be acked, tag 1 is still in flight.
    assert watermark.settle([4, 5, 6]) is None
    # The first batch commits: everything up to 6 is settled now.
    assert watermark.settle([1, 2, 3]) == 6
    # A message parked on its own, then the rest: acks follow the contiguous prefix.
    assert watermark.settle([8]) is None
    assert watermark.settle([7]) == 8
    assert watermark.settle([9, 10]) == 10
    assert watermark.pending == 0


def test_a_redelivered_tag_order_is_kept_as_delivered():
    watermark = _AckWatermark(channel=None)
    for tag in (1, 2, 3):
        watermark.delivered(tag)
    assert watermark.settle([2]) is None
    assert watermark.settle([3]) is None
    assert watermark.settle([1]) == 3
