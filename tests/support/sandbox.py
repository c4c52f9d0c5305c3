"""A container's filesystem on this machine: the host's root read-only, and only the
pod's volumes writable (temporary directories standing in), with bubblewrap.

    bwrap_command(mounts, cwd) + [program, ...]

bwrap cannot create a mount point inside a read-only bind, so the root is laid out from
a fresh tmpfs: every host entry bound read-only, except the directories on the way to a
mount point, which are recreated and filled the same way one level down; the tmpfs root
is made read-only last.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SPECIAL = {"/proc", "/dev", "/sys"}


@dataclass(frozen=True)
class Mount:
    source: Path
    writable: bool


def available() -> bool:
    return shutil.which("bwrap") is not None


def _real(target: str) -> str:
    """The mount point with host symlinks on its way resolved (/var/run -> /run)."""
    return os.path.realpath(target)


def _lay(directory: str, targets: set[str], args: list[str]) -> None:
    for entry in sorted(os.listdir(directory)):
        full = os.path.join(directory, entry)
        if full in SPECIAL or full in targets:
            continue
        if os.path.islink(full):
            args += ["--symlink", os.readlink(full), full]
        elif os.path.isdir(full) and any(target.startswith(full + "/") for target in targets):
            args += ["--dir", full]
            _lay(full, targets, args)
        elif os.path.exists(full):
            args += ["--ro-bind", full, full]


def bwrap_command(mounts: dict[str, Mount], *, cwd: str) -> list[str]:
    resolved = {_real(target): mount for target, mount in mounts.items()}
    args = ["bwrap", "--die-with-parent", "--tmpfs", "/"]
    _lay("/", set(resolved), args)
    args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]
    made: set[str] = set()
    for target in sorted(resolved, key=lambda item: len(PurePosixPath(item).parts)):
        for parent in reversed(PurePosixPath(target).parents):
            if str(parent) != "/" and not os.path.exists(parent) and str(parent) not in made:
                args += ["--dir", str(parent)]
                made.add(str(parent))
        mount = resolved[target]
        args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), target]
    args += ["--remount-ro", "/", "--chdir", cwd, "--"]
    return args
