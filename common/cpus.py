"""How many CPUs this process may really use: its affinity mask, and in a container the
cgroup's CPU quota (Kubernetes' CPU limit), which ``os.cpu_count`` knows nothing of."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(*, cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """At least 1: the CPUs in this process's affinity mask, capped by a cgroup v2 quota
    ("200000 100000" is two CPUs; "max" or no file is no cap)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, _, period = cpu_max.read_text().partition(" ")
        if quota != "max":
            available = min(available, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        pass  # no cgroup v2 quota readable: the mask is the limit
    return max(1, available)
