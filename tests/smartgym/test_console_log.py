"""Console output: readable (and coloured on a terminal) in local, JSON in production
and under ``--log-format json``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from common.observability import ConsoleFormatter
from common.settings import PlatformSettings
from tests.support.embedded import free_port_offset, seed_wheel_cache
from tests.support.processes import clean_env, stop


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


def test_up_on_a_terminal_speaks_readable_coloured_lines(tmp_path):
    offset = free_port_offset()
    seed_wheel_cache(tmp_path)
    controller, terminal = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "smartgym", "up", "--port-offset", str(offset)],
        env=clean_env(),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while b"SmartGym is up" not in output:
            assert process.poll() is None, output.decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, output.decode(errors="replace")[-3000:]
            time.sleep(0.1)
    finally:
        code = stop(process)
        reader.join(timeout=5)
        os.close(controller)
    text = output.decode(errors="replace")
    assert code == 0, text[-3000:]
    assert "\033[32mINFO" in text
    lines = [line for line in text.splitlines() if "service listening" in line]
    assert len(lines) >= 8, text[-3000:]
    assert not any(line.lstrip().startswith("{") for line in text.splitlines())
    assert "virtual gate front-door ready" in text
