"""Console output: readable (and coloured on a terminal) in local, JSON in production
and under ``--log-format json`` (the processes are checked in test_embedded_gate and
test_port_plan)."""

from __future__ import annotations

import logging

from common.observability import ConsoleFormatter
from common.settings import PlatformSettings


def test_the_format_follows_the_environment_unless_chosen():
    assert PlatformSettings(environment="local").log_json is False
    assert PlatformSettings(environment="test").log_json is True
    assert PlatformSettings(environment="local", log_format="json").log_json is True
    assert PlatformSettings(environment="test", log_format="text").log_json is False


def test_a_console_line_carries_the_message_and_its_fields():
    record = logging.LogRecord("smartgym.gate", logging.WARNING, __file__, 1, "door %s", ("open",), None)
    record.gate = "front-door"
    plain = ConsoleFormatter(colour=False).format(record)
    assert "\n" not in plain
    assert plain.endswith("WARNING smartgym.gate: door open  gate=front-door")
    coloured = ConsoleFormatter(colour=True).format(record)
    assert "\033[33mWARNING" in coloured
    assert "door open" in coloured
