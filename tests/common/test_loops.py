"""The event loop a process runs on: uvloop by default, asyncio's own on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from pydantic import ValidationError

from common.loops import configured_choice, loop_factory, loop_name, resolved_name, run
from common.settings import PlatformSettings


async def _running_loop_name() -> str:
    await asyncio.sleep(0)
    return loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_chosen_loop_runs_the_coroutine(choice, expected):
    assert run(_running_loop_name(), choice=choice) == expected


def test_asyncio_means_the_standard_library_loop():
    assert loop_factory("asyncio") is None
    assert loop_factory("auto") is uvloop.new_event_loop


def test_the_setting_defaults_to_auto_and_refuses_other_loops(monkeypatch):
    monkeypatch.delenv("SMARTGYM_EVENT_LOOP", raising=False)
    assert PlatformSettings().event_loop == "auto"
    with pytest.raises(ValidationError, match="event_loop"):
        PlatformSettings(event_loop="tokio")


def test_a_process_without_settings_reads_the_same_variable(monkeypatch):
    monkeypatch.setenv("SMARTGYM_EVENT_LOOP", "asyncio")
    assert configured_choice() == "asyncio" == PlatformSettings().event_loop
    assert resolved_name(configured_choice()) == "asyncio"
    for refused in ("tokio", "UVLOOP", ""):  # what the settings refuse too
        monkeypatch.setenv("SMARTGYM_EVENT_LOOP", refused)
        with pytest.raises(ValueError, match="SMARTGYM_EVENT_LOOP must be one of auto, uvloop, asyncio"):
            configured_choice()
        with pytest.raises(ValidationError):
            PlatformSettings()
    monkeypatch.delenv("SMARTGYM_EVENT_LOOP")
    assert resolved_name(configured_choice()) == "uvloop"
