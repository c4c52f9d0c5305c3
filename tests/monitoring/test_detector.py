"""The fault detector's rules: N failures to fault, M successes to recover (no storm from
a flapping device), overdue heartbeats, devices reporting their own faults, maintenance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitoring.detector import DeviceHealth, Health, Rules

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def announced(device: DeviceHealth) -> list[str]:
    return [transition.health.value for transition in device.history if transition.announce]


def test_two_failed_pings_make_a_fault_and_three_good_ones_recover():
    device = DeviceHealth(Rules(fail_after=2, recover_after=3))
    assert device.ping(True, seconds(0)) is not None  # learnt: ok (not announced)
    assert device.ping(False, seconds(10)) is None
    fault = device.ping(False, seconds(20), "timeout")
    assert fault is not None
    assert fault.health is Health.FAULTY
    assert fault.reason == "ping failed: timeout"
    assert device.ping(True, seconds(30)) is None
    assert device.ping(True, seconds(40)) is None
    recovered = device.ping(True, seconds(50))
    assert recovered is not None
    assert recovered.health is Health.OK
    assert announced(device) == ["faulty", "ok"]


def test_a_flapping_device_raises_one_fault_not_a_storm():
    device = DeviceHealth(Rules(fail_after=2, recover_after=3))
    device.ping(True, seconds(0))
    pattern = [False, False, True, False, True, True, False, True, False, False, True, True, False]
    for n, ok in enumerate(pattern * 5):
        device.ping(ok, seconds(10 * (n + 1)))
    assert announced(device) == ["faulty"]


def test_overdue_heartbeat_is_a_fault_and_a_device_can_report_its_own():
    device = DeviceHealth(Rules(heartbeat_period=timedelta(minutes=10)))
    device.heartbeat("ok", seconds(0))
    assert device.check_overdue(seconds(14 * 60)) is None
    overdue = device.check_overdue(seconds(15 * 60 + 1))
    assert overdue is not None
    assert overdue.reason == "heartbeat overdue"
    assert device.check_overdue(seconds(30 * 60)) is None  # already faulty: said once
    other = DeviceHealth(Rules())
    other.heartbeat("ok", seconds(0))
    report = other.heartbeat("belt_motor_overheated", seconds(1))
    assert report is not None
    assert report.health is Health.FAULTY


def test_maintenance_silences_but_keeps_the_truth():
    device = DeviceHealth(Rules(fail_after=1, recover_after=1))
    device.ping(True, seconds(0))
    device.maintenance_until = seconds(100)
    silent = device.ping(False, seconds(10))
    assert silent is not None
    assert silent.announce is False
    assert device.health is Health.FAULTY
    after = device.ping(True, seconds(200))
    assert after is not None
    assert after.announce is True
