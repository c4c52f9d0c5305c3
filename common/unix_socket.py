"""Unix sockets that only their owner can use.

A process listening on a Unix socket trusts whoever can connect to it (facemodel serves
access, and operator actions, over one without tokens), so the socket's file mode is the
access control. uvicorn binds and then chmods its ``uds`` to 0666 — world-writable —
which would let any local user deploy a model. We bind the socket ourselves instead,
under a umask that never lets the file exist with wider permissions, and hand it over.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

PRIVATE = 0o600


def bind_private_socket(path: Path, *, mode: int = PRIVATE) -> socket.socket:
    """A listening Unix socket at ``path`` with ``mode`` (0600, or 0660 for a group that
    both containers share); a stale socket file left by a crash is replaced."""
    if mode & 0o007:
        raise ValueError(f"a trusted socket must not be usable by others (mode {mode:o})")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(previous)
    os.chmod(path, mode)
    sock.listen(2048)
    sock.setblocking(False)
    return sock
