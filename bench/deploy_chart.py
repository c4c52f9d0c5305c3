"""The Helm chart and the image, measured as an install would meet them.

For the default values and every profile under charts/smartgym/profiles/: objects rendered
by the real helm, objects the Kubernetes API schema refuses, URLs a service calls that
reach no Service port, connections a NetworkPolicy drops, writes outside writable
volumes. For the image: lock lines without an exact pin and hash, pyproject requirements a
lock misses, Dockerfile installs around the locks; with --install, the runtime lock
installed into a clean venv exactly as the Dockerfile does it, then `pip check` (several
minutes: every wheel is downloaded and checked against its hash).

    python bench/deploy_chart.py [--install] [--renders N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import table
from tests.support import chart, image


def _install_lock(lock: Path) -> tuple[bool, float, str]:
    """The Dockerfile's venv step, here: a clean venv, the lock with --require-hashes."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        venv = Path(scratch) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--no-cache-dir"]
        steps = [
            [*pip, "install", "--quiet", "--require-hashes", "--no-deps", "-r", str(lock)],
            [*pip, "check"],
        ]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True, check=False, timeout=900)
            if result.returncode != 0:
                return False, time.monotonic() - started, (result.stdout + result.stderr)[-2000:]
    return True, time.monotonic() - started, ""


def _helm_version() -> str:
    result = subprocess.run([str(chart.helm()), "version", "--short"], capture_output=True, text=True, check=False)
    return f"helm {result.stdout.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--install", action="store_true", help="also install the runtime lock into a clean venv")
    parser.add_argument("--renders", type=int, default=5, help="helm template runs per profile (timing)")
    args = parser.parse_args()

    rows = []
    totals = {
        "rendered_objects": 0,
        "schema_errors": 0,
        "unresolved_urls": 0,
        "dropped_connections": 0,
        "unwritable_paths": 0,
    }
    render_ms: list[float] = []
    problems: list[str] = []
    for name, files in chart.profiles().items():
        timings = []
        for _ in range(args.renders):
            started = time.monotonic()
            objects = chart.render(files)
            timings.append((time.monotonic() - started) * 1000)
        render_ms += timings
        lint_ok = chart.lint(files).returncode == 0
        found = {
            "schema_errors": chart.schema_errors(objects),
            "unresolved_urls": chart.unresolved_urls(objects),
            "dropped_connections": chart.unadmitted_ports(objects, device=chart.device_address(files)),
            "unwritable_paths": chart.unwritable_paths(objects),
        }
        totals["rendered_objects"] += len(objects)
        for key, items in found.items():
            totals[key] += len(items)
            problems += [f"{name}: {item}" for item in items]
        kinds = len({obj["kind"] for obj in objects})
        rows.append(
            [
                name,
                len(objects),
                kinds,
                "yes" if lint_ok else "NO",
                *(len(items) for items in found.values()),
                f"{statistics.median(timings):.0f}",
            ]
        )
        if not lint_ok:
            problems.append(f"{name}: helm lint failed")
    table(
        f"Chart ({_helm_version()}, Kubernetes {chart.KUBERNETES_VERSION} strict schemas)",
        [
            "profile",
            "objects",
            "kinds",
            "lint",
            "schema_err",
            "unresolved_urls",
            "dropped_conn",
            "unwritable",
            f"render_ms_p50 (n={args.renders})",
        ],
        rows,
    )

    lock_rows = []
    for lock in sorted(image.LOCKS.glob("*.txt")):
        pins = image.pins(lock)
        lock_rows.append([lock.name, len(pins), len(image.unpinned(lock)), sum(len(pin.hashes) for pin in pins)])
    uncovered = [
        item
        for name, extras in image.LOCK_EXTRAS.items()
        for item in image.uncovered(image.LOCKS / f"{name}.txt", extras)
    ]
    around = image.unlocked_installs()
    table("Image locks", ["lock", "packages", "unpinned", "hashes"], lock_rows)
    print(
        f"pyproject requirements missing from a lock: {len(uncovered)}; Dockerfile installs around the locks: "
        f"{len(around)}"
    )
    problems += uncovered + around

    install: dict[str, bool | float | None] = {"lock_install_ok": None, "lock_install_s": None}
    if args.install:
        ok, seconds, output = _install_lock(image.LOCKS / "base.txt")
        install = {"lock_install_ok": ok, "lock_install_s": round(seconds, 1)}
        print(
            f"runtime lock into a clean venv (--require-hashes --no-deps, then pip check): "
            f"{'ok' if ok else 'FAILED'} in {seconds:.1f} s"
        )
        if not ok:
            problems.append(output)

    for problem in problems:
        print("problem:", problem)
    result = (
        totals
        | {
            "profiles": len(rows),
            "image_deps_unpinned": image.image_deps_unpinned(),
            "render_ms_p50": round(statistics.median(render_ms), 1),
            "render_ms_p95": round(sorted(render_ms)[int(0.95 * (len(render_ms) - 1))], 1),
            "render_n": len(render_ms),
        }
        | install
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
