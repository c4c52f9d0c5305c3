"""A whole history at once: a zip of run files (a watch's folder of FIT files, Garmin's or
Strava's bulk export), each file imported as if uploaded alone and answered one by one.

A zip is a compression bomb waiting to happen, so nothing is trusted from its directory:
members are counted before anything is read, each one is read through a bounded reader
(the sizes a zip declares can lie), the ratio of what comes out to what went in is
capped per member, and the total that comes out is capped per archive. ``.gz`` members
(Strava's export gzips each activity) are inflated under the same limits. Nested
archives are not opened.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

RUN_SUFFIXES = (".fit", ".tcx", ".gpx")
MAX_MEMBERS = 2000  # entries in the zip's directory, files or not
MAX_RUN_FILES = 500  # run files imported from one archive
MAX_FILE_BYTES = 32 * 1024 * 1024  # one run file once inflated (a marathon as TCX fits)
MAX_TOTAL_BYTES = 512 * 1024 * 1024  # everything inflated from one archive
MAX_RATIO = 100  # inflated / compressed: run files compress 3-20x, bombs 1000x and more
READ_PIECE = 256 * 1024


class ArchiveRefused(ValueError):
    """The archive as a whole cannot be read; the message says why."""


@dataclass(frozen=True)
class Member:
    """One entry of the archive: its bytes, or why it was left out."""

    name: str
    data: bytes | None
    reason: str = ""  # when data is None: refused (a run file we could not read) or skipped
    skipped: bool = False


def is_zip(document: bytes) -> bool:
    return document[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _bounded_read(stream: IO[bytes], limit: int) -> bytes | None:
    """At most ``limit`` bytes; None when there is more."""
    out = bytearray()
    while piece := stream.read(min(READ_PIECE, limit + 1 - len(out))):
        out += piece
        if len(out) > limit:
            return None
    return bytes(out)


def _gunzip(data: bytes, limit: int) -> bytes | None:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        return None
    return out


def members(document: bytes) -> Iterator[Member]:
    """Each entry of the archive, in its order: the run files' bytes, and what was left out."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(document))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ArchiveRefused(f"not a readable zip archive ({exc})") from exc
    if len(infos) > MAX_MEMBERS:
        raise ArchiveRefused(f"an archive holds at most {MAX_MEMBERS} entries (this one {len(infos)})")
    inflated_total = 0
    run_files = 0
    for info in infos:
        name = info.filename
        base = posixpath.basename(name.rstrip("/"))
        if info.is_dir() or name.startswith("__MACOSX/") or base.startswith("."):
            continue
        lowered = base.lower()
        gzipped = lowered.endswith(".gz")
        if not (lowered.removesuffix(".gz") if gzipped else lowered).endswith(RUN_SUFFIXES):
            yield Member(name, None, "not a FIT, TCX or GPX file", skipped=True)
            continue
        run_files += 1
        if run_files > MAX_RUN_FILES:
            yield Member(name, None, f"more than {MAX_RUN_FILES} run files in one archive", skipped=True)
            continue
        if info.flag_bits & 0x1:
            yield Member(name, None, "encrypted")
            continue
        # The bound of what this member may inflate to: the per-file cap, the ratio to its
        # compressed size, and what is left of the archive's total.
        ceiling = min(MAX_FILE_BYTES, max(info.compress_size, 1024) * MAX_RATIO, MAX_TOTAL_BYTES - inflated_total)
        if ceiling <= 0:
            raise ArchiveRefused(f"the archive inflates to more than {MAX_TOTAL_BYTES // 2**20} MiB")
        try:
            with archive.open(info) as stream:
                data = _bounded_read(stream, ceiling)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError, ValueError) as exc:
            yield Member(name, None, f"unreadable in the archive ({exc})")
            continue
        if data is None:
            yield Member(name, None, "inflates too far (a file is at most 32 MiB and 100x its compressed size)")
            continue
        inflated_total += len(data)
        if gzipped:
            try:
                inner = _gunzip(data, min(MAX_FILE_BYTES, max(len(data), 1024) * MAX_RATIO))
            except zlib.error as exc:
                yield Member(name, None, f"not a gzip file ({exc})")
                continue
            if inner is None:
                yield Member(name, None, "inflates too far (a file is at most 32 MiB and 100x its compressed size)")
                continue
            inflated_total += len(inner)
            if inflated_total > MAX_TOTAL_BYTES:
                raise ArchiveRefused(f"the archive inflates to more than {MAX_TOTAL_BYTES // 2**20} MiB")
            data = inner
        yield Member(name, data)
