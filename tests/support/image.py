"""The image's dependency locks (requirements/*.txt) and its Dockerfile, read as data:
shared by the image tests and ``bench/deploy_chart.py``."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
DOCKERFILE = ROOT / "Dockerfile"
# What each lock must satisfy: pyproject's extras it stands for.
LOCK_EXTRAS = {"base": (), "face": ("face",), "dev": ("dev", "face")}
# The image's platform: the markers pyproject's requirements are evaluated with.
IMAGE_MARKERS = {
    "python_version": "3.11",
    "python_full_version": "3.11.9",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


@dataclass(frozen=True)
class Pin:
    name: str
    line: str
    version: str | None
    hashes: tuple[str, ...]


def pins(lock: Path) -> list[Pin]:
    """Every requirement of a lock file (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", lock.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        requirement = re.sub(r"\s--hash=\S+", "", line).strip()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([A-Za-z0-9.+!_-]+)(\s*;.*)?", requirement)
        name = canonicalize_name(match.group(1)) if match else requirement
        found.append(Pin(name=name, line=line, version=match.group(2) if match else None, hashes=hashes))
    return found


def unpinned(lock: Path) -> list[str]:
    """Lines of a lock that do not name one exact version with at least one sha256."""
    return [pin.line for pin in pins(lock) if pin.version is None or not pin.hashes]


def image_locks() -> list[Path]:
    """The locks the Dockerfile installs from (those are the image's dependencies)."""
    named = set(re.findall(r"requirements/([a-z0-9_-]+\.txt)", DOCKERFILE.read_text()))
    return [LOCKS / name for name in sorted(named)]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def required(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's requirements for these extras that apply on the image's platform."""
    project = pyproject()["project"]
    wanted = [Requirement(item) for item in project["dependencies"]]
    for extra in extras:
        wanted += [Requirement(item) for item in project["optional-dependencies"][extra]]
    return [
        requirement
        for requirement in wanted
        if requirement.marker is None or requirement.marker.evaluate(IMAGE_MARKERS | {"extra": ""})
    ]


def uncovered(lock: Path, extras: tuple[str, ...]) -> list[str]:
    """pyproject's requirements the lock leaves out or pins outside their range."""
    locked = {pin.name: pin.version for pin in pins(lock)}
    problems = []
    for requirement in required(extras):
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{lock.name}: {requirement} is not locked")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{lock.name}: {requirement.name}=={version} is outside {requirement.specifier}")
    return problems


def unlocked_installs() -> list[str]:
    """pip commands of the Dockerfile that could take something the locks do not pin."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    problems = []
    for command in re.split(r"&&|\n", text):
        if re.search(r"\bpip (install|download)\b", command):
            from_lock = "--require-hashes" in command and "--no-deps" in command
            own_wheel = "--no-index" in command and "--no-deps" in command
            if not (from_lock or own_wheel):
                problems.append(command.strip())
        if re.search(r"\bpip wheel\b", command) and "--no-index" not in command:
            problems.append(command.strip())
    return problems


def image_deps_unpinned() -> int:
    """The figure: lock lines without an exact pin and hash, pyproject requirements a lock
    misses, and Dockerfile installs around the locks."""
    count = sum(len(unpinned(lock)) for lock in LOCKS.glob("*.txt"))
    count += sum(len(uncovered(LOCKS / f"{name}.txt", extras)) for name, extras in LOCK_EXTRAS.items())
    return count + len(unlocked_installs())
