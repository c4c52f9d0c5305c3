"""docs/SETTINGS.md is generated from the settings classes and must stay current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from common.settings import PlatformSettings
from smartgym import settings_doc

ROOT = Path(__file__).resolve().parents[2]


def test_the_settings_reference_is_current():
    assert (ROOT / "docs" / "SETTINGS.md").read_text() == settings_doc.render(), (
        "docs/SETTINGS.md is stale: run `smartgym settings-doc`"
    )


def test_every_service_and_nested_shape_is_documented():
    text = settings_doc.render()
    for expected in (
        "`SMARTGYM_ACCESS_GATES`",
        "`SMARTGYM_FACEMODEL_SOCKET`",
        "`SMARTGYM_FACEMODEL_PACK`",
        "`SMARTGYM_SINGLE_BOX`",
        "`SMARTGYM_LOG_FORMAT`",
        "## GateConfig (JSON object)",
        "## RouteConfig (JSON object)",
    ):
        assert expected in text


def test_a_field_without_a_description_fails_the_generator(monkeypatch):
    class Undocumented(PlatformSettings):
        something_new: int = Field(default=1)

    monkeypatch.setattr(settings_doc, "PlatformSettings", Undocumented)
    with pytest.raises(settings_doc.MissingDescription, match="something_new"):
        settings_doc.render()


def test_the_command_checks_and_writes(tmp_path):
    stale = tmp_path / "SETTINGS.md"
    stale.write_text("# old\n")
    command = [sys.executable, "-m", "smartgym", "settings-doc", "--out", str(stale)]
    refused = subprocess.run([*command, "--check"], capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "not current" in refused.stderr
    subprocess.run(command, check=True, capture_output=True)
    assert stale.read_text() == settings_doc.render()
