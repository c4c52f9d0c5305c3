"""The event loop a long-running process runs on.

uvloop (libuv, in C) does the loop's own work, the sockets' reads and writes and the
timers, for a fraction of the CPU of asyncio's pure-Python loop; every service spends
most of its time there (the gateway relays requests, running writes a frame per watcher,
monitoring holds thousands of heartbeat connections). asyncio's loop stays available:
``SMARTGYM_EVENT_LOOP=asyncio``, and it is what runs when uvloop is not installed
(``auto``), so a platform without its wheel still starts.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, cast, get_args

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]

T = TypeVar("T")


def configured_choice() -> EventLoopChoice:
    """``SMARTGYM_EVENT_LOOP`` alone, for a process that builds no settings (a device
    simulator, the test suite, a benchmark's own process); ``PlatformSettings.event_loop``
    reads the same variable and takes the same values, exactly as written."""
    value = os.environ.get("SMARTGYM_EVENT_LOOP", "auto")
    if value not in get_args(EventLoopChoice):
        raise ValueError(f"SMARTGYM_EVENT_LOOP must be one of {', '.join(get_args(EventLoopChoice))}, not {value!r}")
    return cast(EventLoopChoice, value)


def resolved_name(choice: EventLoopChoice) -> str:
    """``uvloop`` or ``asyncio``: the loop ``choice`` runs on this machine."""
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def loop_factory(choice: EventLoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``asyncio.Runner``; None means asyncio's own loop.

    ``uvloop`` asked for and not installed is an error, not a quiet fallback: an operator
    who set it expects the figures it gives."""
    if choice == "asyncio" or (choice == "auto" and not uvloop_available()):
        return None
    import uvloop

    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what a process reports it runs on."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], *, choice: EventLoopChoice) -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
