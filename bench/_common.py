"""Shared helpers of the benchmark scripts (not a benchmark itself)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_STARTED = time.monotonic()
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def ensure_services() -> None:
    """Start RabbitMQ/PostgreSQL the way the test command does, if they are not up."""
    subprocess.run([str(ROOT / "scripts" / "services")], check=True)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values) if values else float("nan"),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(str(cell).ljust(width) for cell, width in zip(header, widths, strict=False)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)))


def machine() -> str:
    import os
    import platform

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def emit(figures: dict[str, Any]) -> None:
    print(json.dumps(figures, sort_keys=True))


def jwks_app() -> Any:
    """auth's public keys as services fetch them: the benchmarks sign their own tokens with
    the test signing key instead of running auth."""
    from fastapi import FastAPI

    from common.security import jwks_document
    from tests.support import tokens

    app = FastAPI()
    document = jwks_document([tokens.signing_key()])

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, object]:
        return document

    return app


def progress(message: str) -> None:
    """A line on stderr with the seconds since the benchmark started (stdout is the table)."""
    print(f"[{time.monotonic() - _STARTED:5.1f}s] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
