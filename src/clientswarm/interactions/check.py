"""``python -m clientswarm.interactions.check``: build a configuration's user-defined interactions
in a process of their own, and say what is wrong with them.

A shared service never imports user code to validate a configuration (the code would run inside
it, with its secrets): it starts this module with the workers' environment, writes
``{"config": …, "base_dir": …, "roots": […] | null}`` on its stdin, and reads back
``{"problems": [line, …]}`` — the same lines a worker's build would raise. Only the groups
whose interaction is user-defined are built; the others are the service's business.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson

from clientswarm.config.interactions import CustomInteraction, HelloInteraction
from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError


def groups_only(config: ClusterConfig, *, user: bool) -> ClusterConfig:
    """``config`` with only its user-defined groups (``user``) or only its pre-built ones kept
    as they are; the others become trivial ``hello`` groups, so that group indices, and the
    lines that name them, stay the same."""
    groups = [
        group
        if isinstance(group.interaction, CustomInteraction) == user
        else group.model_copy(update={"interaction": HelloInteraction(), "vary": {}})
        for group in config.groups
    ]
    return config.model_copy(update={"groups": groups})


def problems_of(request: dict[str, Any]) -> list[str]:
    """Build the user-defined interactions the request describes; their problems."""
    from clientswarm.interactions.registry import ClusterInteractions

    config = groups_only(ClusterConfig.model_validate(request["config"]), user=True)
    roots = request.get("roots")
    base_dir = request.get("base_dir", ".")
    files = FileScope.anywhere(base_dir) if roots is None else FileScope.confined(roots, base_dir)
    try:
        ClusterInteractions(config, files=files)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def main() -> int:
    """Read the request on stdin, answer on stdout; exit 0 whenever an answer was written.

    What user code prints while it loads goes to stderr: stdout carries only the answer.
    """
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        request = orjson.loads(sys.stdin.buffer.read())
        problems = problems_of(request)
    except Exception as exc:  # the answer must be one line whatever happened
        problems = [f"could not check the interaction: {type(exc).__name__}: {exc}"]
    with os.fdopen(answer_fd, "wb") as answer:
        answer.write(orjson.dumps({"problems": problems}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
