"""The CPUs a process may use: its affinity mask, capped by a cgroup v2 quota."""

from __future__ import annotations

import os

import pytest

from common.cpus import usable_cpus


@pytest.mark.parametrize(
    ("cpu_max", "cap"),
    [("max 100000\n", None), ("100000 100000\n", 1), ("150000 100000\n", 2), ("10000 100000\n", 1)],
)
def test_a_cgroup_quota_caps_the_affinity_mask(tmp_path, cpu_max, cap):
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    mask = len(os.sched_getaffinity(0))

    assert usable_cpus(cpu_max=path) == (mask if cap is None else min(mask, cap))


@pytest.mark.parametrize("content", [None, "", "garbage", "100000 0"])
def test_no_readable_quota_leaves_the_mask(tmp_path, content):
    path = tmp_path / "cpu.max"
    if content is not None:
        path.write_text(content)

    assert usable_cpus(cpu_max=path) == len(os.sched_getaffinity(0))
