"""Checking a posted configuration's user-defined interactions without running them here.

A shared service (``OperatorPolicy.isolate_user_code``) hands the configuration to
``python -m clientswarm.interactions.check`` — a short-lived process with the workers'
environment, not the service's — and turns what it says into the same 422 a build in this
process would give. A check that does not answer within :data:`CHECK_TIMEOUT_S` (a module doing
work at import, an endless loop) is killed and refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping

import orjson

from clientswarm.config.interactions import CustomInteraction
from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError

CHECK_TIMEOUT_S = 30.0
MAX_ANSWER_BYTES = 1 << 20


def has_user_code(config: ClusterConfig) -> bool:
    """Whether any group runs a user-defined interaction."""
    return any(isinstance(group.interaction, CustomInteraction) for group in config.groups)


async def check_in_subprocess(
    config: ClusterConfig,
    files: FileScope,
    env: Mapping[str, str],
    *,
    python: str = sys.executable,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> None:
    """Build the user-defined interactions of ``config`` in a subprocess; ConfigError with
    its problems (or with why it could not say)."""
    request = orjson.dumps(
        {
            "config": config.model_dump(mode="json"),
            "base_dir": str(files.base_dir),
            "roots": files.confined_to,
        }
    )
    process = await asyncio.create_subprocess_exec(
        python,
        "-m",
        "clientswarm.interactions.check",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=dict(env),
        start_new_session=True,
    )
    try:
        answer, _ = await asyncio.wait_for(process.communicate(request), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise ConfigError(
            [
                f"groups: checking the user-defined interactions took longer than "
                f"{timeout_s:.0f} s (does a module do work when it is imported?)"
            ]
        ) from None
    problems = _problems(answer[:MAX_ANSWER_BYTES], process.returncode)
    if problems:
        raise ConfigError(problems)


def _problems(answer: bytes, returncode: int | None) -> list[str]:
    try:
        decoded = orjson.loads(answer)
        problems = decoded["problems"]
        if isinstance(problems, list) and all(isinstance(p, str) for p in problems):
            return problems
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    return [
        "groups: the user-defined interactions could not be checked (the check process "
        f"ended with code {returncode} without an answer; a module may exit when imported)"
    ]


__all__ = ["CHECK_TIMEOUT_S", "check_in_subprocess", "has_user_code"]
