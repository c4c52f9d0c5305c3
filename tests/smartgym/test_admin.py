"""``smartgym admin``: every command's happy path, its repeat (idempotent, exit 0) and bad
input (a reason, exit code 2, nothing written), on a fresh installation's data directory."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from access.settings import AccessSettings
from smartgym.cli import main

PASSWORD = "a long enough password"


@pytest.fixture
def admin(tmp_path, monkeypatch):
    for variable in ("SMARTGYM_ACCESS_SITE_FILE", "SMARTGYM_ACCESS_GATES", "SMARTGYM_ACCESS_BRANCHES"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("SMARTGYM_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SMARTGYM_ADMIN_PASSWORD", PASSWORD)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, ["admin", *args])

    return run


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def _refused(result, reason: str) -> None:
    assert result.exit_code == 2, result.output
    assert reason in result.output


def test_create_branch_repeat_and_bad_input(admin, tmp_path):
    created = admin("create-branch", "gangnam-1", "--occupancy-limit", "40")
    assert created.exit_code == 0, created.output
    assert created.output.startswith("created branch gangnam-1 (Asia/Seoul, at most 40 inside)")
    again = admin("create-branch", "gangnam-1", "--occupancy-limit", "40")
    assert again.exit_code == 0
    assert again.output.startswith("already exists: branch gangnam-1")
    _refused(admin("create-branch", "gangnam-1", "--occupancy-limit", "50"), "exists with")
    _refused(admin("create-branch", "no spaces"), "use 1-64 letters")
    _refused(admin("create-branch", "x", "--timezone", "Mars/Olympus"), "not an IANA time zone")
    _refused(admin("create-branch", "y", "--occupancy-limit", "0"), "--occupancy-limit")
    site = json.loads((tmp_path / "var" / "access-site.json").read_text())
    assert list(site["branches"]) == ["gangnam-1"]


def test_add_gate_is_read_by_access_and_refuses_conflicts(admin, tmp_path):
    _json(admin("create-branch", "gangnam-1", "--json"))
    entry = _json(admin("add-gate", "entry", "--branch", "gangnam-1", "--json"))
    exit_ = _json(admin("add-gate", "exit", "--branch", "gangnam-1", "--direction", "out", "--json"))
    assert (entry["port"], entry["channel"], entry["created"]) == ("virtual:gangnam-1", 1, True)
    assert (exit_["direction"], exit_["channel"]) == ("out", 2)  # the next free number on the line
    assert (entry["line_down"], exit_["line_down"]) == ("fail_secure", "fail_safe")
    repeat = _json(admin("add-gate", "exit", "--branch", "gangnam-1", "--direction", "out", "--json"))
    assert repeat == {**exit_, "created": False}
    _refused(admin("add-gate", "exit", "--branch", "gangnam-1", "--direction", "in"), "another configuration")
    _refused(admin("add-gate", "side", "--branch", "nowhere"), "no branch nowhere")
    _refused(admin("add-gate", "side", "--branch", "gangnam-1", "--channel", "1"), "already wired")
    _refused(admin("add-gate", "side", "--branch", "gangnam-1", "--driver", "ch340"), "share one driver")
    _refused(admin("add-gate", "bad id", "--branch", "gangnam-1"), "gate_id")
    _refused(admin("add-gate", "side", "--branch", "gangnam-1", "--open-ms", "5"), "open_ms")
    _refused(
        admin("add-gate", "back", "--branch", "gangnam-1", "--direction", "out", "--line-down", "fail_secure"),
        "must be fail_safe",
    )
    settings = AccessSettings(access_site_file=tmp_path / "var" / "access-site.json")
    assert [(gate.gate_id, gate.direction) for gate in settings.access_gates] == [("entry", "in"), ("exit", "out")]
    assert settings.served_branches == ["gangnam-1"]


def test_create_user_roles_repeat_and_bad_input(admin, tmp_path):
    _json(admin("create-branch", "gangnam-1", "--json"))
    operator = _json(admin("create-user", "--email", "Ops@Example.com", "--role", "operator", "--json"))
    assert (operator["email"], operator["roles"], operator["created"]) == ("ops@example.com", ["operator"], True)
    repeat = _json(admin("create-user", "--email", "ops@example.com", "--role", "operator", "--json"))
    assert repeat == {**operator, "created": False}
    owner = admin("create-user", "--email", "kim@example.com", "--role", "branch_owner", "--branch", "gangnam-1")
    assert owner.exit_code == 0, owner.output
    assert "created kim@example.com" in owner.output
    assert "branch_owner for gangnam-1" in owner.output
    # An existing person is given the role; the password stays theirs.
    promoted = _json(
        admin("create-user", "--email", "ops@example.com", "--role", "helper", "--branch", "gangnam-1", "--json")
    )
    assert promoted["roles"] == ["helper", "operator"]
    _refused(admin("create-user", "--email", "not-an-email", "--role", "operator"), "not an email address")
    _refused(
        admin("create-user", "--email", "a@example.com", "--role", "operator", "--branch", "gangnam-1"),
        "leave out --branch",
    )
    _refused(admin("create-user", "--email", "a@example.com", "--role", "branch_owner"), "needs --branch")
    _refused(
        admin("create-user", "--email", "a@example.com", "--role", "branch_owner", "--branch", "nowhere"),
        "no branch nowhere",
    )
    _refused(admin("create-user", "--email", "a@example.com", "--role", "king"), "'king' is not one of")
    _refused(
        admin("create-user", "--email", "a@example.com", "--role", "operator", "--password", "short"), "password must"
    )
    with sqlite3.connect(tmp_path / "var" / "auth.db") as db:
        emails = sorted(row[0] for row in db.execute("SELECT email FROM users"))
        # The running installation's relay publishes these (welcome notices and all).
        # (Role changes also revoke tokens issued before them: TokensRevoked, not counted here.)
        pending = db.execute(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND routing_key != 'TokensRevoked.v1'"
        ).fetchone()[0]
    assert emails == ["kim@example.com", "ops@example.com"]
    assert pending == 2


def test_add_device_prints_its_secret_once(admin):
    _json(admin("create-branch", "gangnam-1", "--json"))
    created = admin("add-device", "front kiosk", "--branch", "gangnam-1", "--kind", "kiosk")
    assert created.exit_code == 0, created.output
    assert "client secret:" in created.output
    assert "shown once" in created.output
    repeat = admin("add-device", "front kiosk", "--branch", "gangnam-1", "--kind", "kiosk")
    assert repeat.exit_code == 0
    assert repeat.output.startswith("already exists: kiosk front kiosk")
    assert "client secret" not in repeat.output
    first = _json(admin("add-device", "cam", "--branch", "gangnam-1", "--kind", "camera", "--json"))
    rotated = _json(admin("add-device", "cam", "--branch", "gangnam-1", "--kind", "camera", "--rotate", "--json"))
    assert rotated["client_id"] == first["client_id"]
    assert rotated["client_secret"] != first["client_secret"]
    _refused(admin("add-device", "cam", "--branch", "gangnam-1", "--kind", "gate"), "exists as a camera")
    _refused(admin("add-device", "x", "--branch", "nowhere"), "no branch nowhere")
    _refused(admin("add-device", "x", "--branch", "gangnam-1", "--kind", "toaster"), "'toaster' is not one of")
    _refused(admin("add-device", "x" * 101, "--branch", "gangnam-1"), "1-100 printable characters")
