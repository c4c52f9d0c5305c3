"""What the member app's shell costs to load: every JS and CSS file the /app page pulls in
(its entry, the chunks it imports, its stylesheet) and the service worker, gzip-compressed
as a server would send them. Reads the committed build; needs no running platform.

    python bench/apps_shell.py
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

DIST = Path(__file__).resolve().parents[1] / "web" / "dist"
IMPORT = re.compile(r"""(?:from|import)\s*["'](\./[^"']+\.js)["']""")
BUDGET_KB = 300.0


def closure(entry: Path) -> list[Path]:
    """The entry module and every chunk it statically imports, once each."""
    seen: list[Path] = []
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.append(path)
        pending.extend((path.parent / found).resolve() for found in IMPORT.findall(path.read_text()))
    return seen


def main() -> None:
    manifest = json.loads((DIST / "manifest.json").read_text())
    entry = manifest["screens"]["app"]
    files = closure((DIST / entry["js"]).resolve())
    if entry.get("css"):
        files.append(DIST / entry["css"])
    files.append(DIST / "app" / "sw.js")
    rows = []
    for path in files:
        raw = path.read_bytes()
        rows.append((path.relative_to(DIST).as_posix(), len(raw) / 1024, len(gzip.compress(raw, 9)) / 1024))
    print(f"{'file':<40} {'raw kB':>9} {'gzip kB':>9}")
    for name, raw_kb, gz_kb in rows:
        print(f"{name:<40} {raw_kb:>9.1f} {gz_kb:>9.1f}")
    total = sum(row[2] for row in rows)
    raw_total = sum(row[1] for row in rows)
    print(f"{'app shell (JS+CSS+worker)':<40} {raw_total:>9.1f} {total:>9.1f}   budget {BUDGET_KB:.0f} kB gzip")
    print(json.dumps({"app_shell_kb": round(total, 1), "app_shell_files": len(rows), "budget_kb": BUDGET_KB}))


if __name__ == "__main__":
    main()
