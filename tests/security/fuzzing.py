"""Property-based fuzzing of a served API with schemathesis (its CLI, as an operator
would run it), driven from the OpenAPI document each service publishes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# What must hold for every generated request: no 5xx (but a 503 with Retry-After, see
# schemathesis_hooks.py), every body matches the documented schema, every content type is
# documented.
CHECKS = "no_server_error,response_schema_conformance,content_type_conformance"
HOOKS = "tests.security.schemathesis_hooks"
# Endless responses (Server-Sent Events) cannot be fuzzed by a request/response tool.
ENDLESS_PATHS = ("/v1/stream",)


@dataclass(frozen=True)
class FuzzOutcome:
    returncode: int
    output: str

    @property
    def cases(self) -> int:
        """How many test cases schemathesis generated (0 when it printed no summary)."""
        for line in self.output.splitlines():
            words = line.split()
            if len(words) > 1 and words[1].rstrip(",") == "generated" and words[0].isdigit():
                return int(words[0])
        return 0


def examples_per_operation() -> int:
    """Small for the suite; ``scripts/fuzz`` raises it with SMARTGYM_FUZZ_EXAMPLES."""
    return int(os.environ.get("SMARTGYM_FUZZ_EXAMPLES", "4"))


async def fuzz(
    schema: str,
    *,
    base_url: str | None = None,
    callers: Sequence[Mapping[str, str]] = ({},),
    seed: int = 1,
    thorough: bool = True,
) -> FuzzOutcome:
    """Run schemathesis against ``schema`` (a URL or a file) and return what it said.

    ``callers``: each one's headers (its token). With several, each operation's requests
    take them in turn (schemathesis_hooks.py) and the run asks for as many examples as
    separate runs would; an operation with fewer inputs than that (none, say) meets only the
    first callers, so every route's answer to every caller is test_route_matrix's."""
    examples = examples_per_operation() if thorough else max(1, examples_per_operation() // 2)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        schema,
        "--checks",
        CHECKS,
        # The coverage phase walks every boundary value of every field: the thorough pass.
        "--phases",
        "coverage,fuzzing" if thorough or examples_per_operation() > 10 else "fuzzing",
        "--max-examples",
        str(examples * len(callers)),
        "--seed",
        str(seed),
        "--generation-database",
        "none",
        "--generation-with-security-parameters",
        "false",
        "--request-timeout",
        "10",
        "--no-shrink",
        "--no-color",
        "--workers",
        "1",
    ]
    for path in ENDLESS_PATHS:
        command += ["--exclude-path", path]
    if base_url is not None:
        command += ["--url", base_url]
    root = Path(__file__).resolve().parents[2]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(root)}
    if len(callers) == 1:
        for name, value in callers[0].items():
            command += ["--header", f"{name}: {value}"]
    else:
        environment["SMARTGYM_FUZZ_CALLERS"] = json.dumps([dict(headers) for headers in callers])
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment,
        # schemathesis keeps a crash cache in its working directory: not in the repository.
        cwd=tempfile.mkdtemp(prefix="schemathesis-"),
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return FuzzOutcome(process.returncode, output.decode(errors="replace"))
