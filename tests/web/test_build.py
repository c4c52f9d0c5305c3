"""The committed build of the screens matches their sources (no node needed: the source
hash is computed here exactly as web/build.mjs computes it), and names files that exist."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from tests.support.browser import ROOT

WEB = ROOT / "web"


def source_hash() -> str:
    """web/build.mjs's sourceHash(): every file under src/, build.mjs and the lock file, in
    sorted path order, each as path NUL bytes NUL."""
    files = [path for path in (WEB / "src").rglob("*") if path.is_file()]
    files += [WEB / "build.mjs", WEB / "package-lock.json"]
    digest = hashlib.sha256()
    for relative in sorted(path.relative_to(WEB).as_posix() for path in files):
        digest.update(relative.encode() + b"\0")
        digest.update((WEB / relative).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def test_the_committed_build_is_made_from_the_sources_as_they_are():
    manifest = json.loads((WEB / "dist" / "manifest.json").read_text())
    assert manifest["source_hash"] == source_hash(), "web/dist is stale: run scripts/build-web and commit web/dist"
    assert {"kiosk", "console", "ops"} <= set(manifest["screens"])
    for files in manifest["screens"].values():
        for name in filter(None, (files["js"], files["css"])):
            assert (WEB / "dist" / name).is_file(), name


def test_node_agrees_with_the_python_hash():
    if shutil.which("node") is None:
        pytest.skip("no node here")
    checked = subprocess.run(["node", str(WEB / "build.mjs"), "--check"], cwd=WEB, check=False)
    assert checked.returncode == 0
