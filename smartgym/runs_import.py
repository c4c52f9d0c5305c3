"""``smartgym import-runs``: a folder of run files (a watch's FIT folder, a Garmin or Strava
export unpacked) into one's running history, through the public API like the app.

The folder is packed into zip archives below the gateway's body limit and each is posted
to ``/api/running/v1/runs/archive``; the service imports each file idempotently, so an
interrupted import is simply run again (runs already stored come back as ``known``).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx

RUN_SUFFIXES = (".fit", ".tcx", ".gpx", ".fit.gz", ".tcx.gz", ".gpx.gz")
ARCHIVE_PATH = "/api/running/v1/runs/archive"
MAX_FILES_PER_ARCHIVE = 400  # below the service's 500 run files per archive


def run_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.name.lower().endswith(RUN_SUFFIXES))


def archives(folder: Path, files: list[Path], limit_bytes: int) -> Iterator[tuple[bytes, list[Path]]]:
    """Zip archives of at most ``limit_bytes`` each (a single larger file goes alone and
    the service answers 413 for it)."""
    buffer, packed = io.BytesIO(), list[Path]()
    archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)
    for path in files:
        data = path.read_bytes()
        # Compressed run files are rarely smaller than a fifth: a conservative estimate.
        if packed and (buffer.tell() + len(data) // 2 > limit_bytes or len(packed) >= MAX_FILES_PER_ARCHIVE):
            archive.close()
            yield buffer.getvalue(), packed
            buffer, packed = io.BytesIO(), []
            archive = zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)
        archive.writestr(path.relative_to(folder).as_posix(), data)
        packed.append(path)
    archive.close()
    if packed:
        yield buffer.getvalue(), packed


def post_archive(client: httpx.Client, document: bytes) -> dict[str, Any]:
    response = client.post(ARCHIVE_PATH, content=document, headers={"content-type": "application/zip"})
    if response.status_code != 200:
        detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else None
        raise click.ClickException(f"the service answered {response.status_code}: {detail or response.text[:200]}")
    answer: dict[str, Any] = response.json()
    return answer


@click.command("import-runs")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--api", required=True, help="The gateway's base URL, e.g. https://gym.example.com")
@click.option("--token", envvar="SMARTGYM_TOKEN", required=True, help="A member's access token (or SMARTGYM_TOKEN).")
@click.option("--batch-mib", type=click.IntRange(1, 32), default=24, show_default=True, help="Largest archive sent.")
@click.option("--verbose", is_flag=True, help="A line for every file, not only the ones refused.")
def import_runs(folder: Path, api: str, token: str, batch_mib: int, verbose: bool) -> None:
    """Import every FIT, TCX and GPX file under FOLDER into the member's run history."""
    files = run_files(folder)
    if not files:
        raise click.ClickException(f"no FIT, TCX or GPX files under {folder}")
    totals = {"imported": 0, "known": 0, "refused": 0, "skipped": 0}
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api.rstrip("/"), headers=headers, timeout=120.0) as client:
        for document, packed in archives(folder, files, batch_mib * 1024 * 1024):
            answer = post_archive(client, document)
            for item in answer["files"]:
                if verbose or item["status"] == "refused":
                    click.echo(f"{item['status']:>8}  {item['name']}  {item.get('reason', '')}".rstrip())
            for key in totals:
                totals[key] += int(answer[key])
            if answer.get("stopped"):
                click.echo(f"stopped after {len(answer['files'])} of {len(packed)} files: {answer['stopped']}")
    click.echo(", ".join(f"{count} {status}" for status, count in totals.items()))
