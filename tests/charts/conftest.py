"""The chart rendered once per profile per session (the real helm binary)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support import chart

PROFILE_NAMES = sorted(chart.profiles())


@pytest.fixture(scope="session")
def renders() -> dict[str, list[dict[str, Any]]]:
    """Every profile's objects, rendered side by side (helm is a separate process)."""
    profiles = chart.profiles()
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(profiles, pool.map(chart.render, profiles.values()), strict=True))


@pytest.fixture(scope="session")
def profile_files() -> dict[str, list[Path]]:
    return chart.profiles()
