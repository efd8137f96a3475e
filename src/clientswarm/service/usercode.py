"""Which user code a service runs: ``file:`` interactions and their shipped sources.

Workers of the ``local`` and ``slurm`` spawners share the service's files, so a ``file:``
interaction is read from its path. Kubernetes workers do not: the service ships the file's
source in their assignment — and a cluster may arrive with the source already in it
(``clientswarm submit`` sends it). Either way the service then makes every worker run code
it was sent, which it does only when started with ``--allow-inline-code``. Without the flag,
a source identical to the file at its path on a shared filesystem is simply dropped.
"""

from __future__ import annotations

from clientswarm.config.interactions import CustomInteraction
from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError

SHARED_FILES = frozenset({"local", "slurm"})
"""Spawners whose workers see the service's files (Slurm: a shared filesystem)."""

ENABLE = "start the service with --allow-inline-code to allow that (its workers then run it)"


def _read(files: FileScope, value: str) -> str | None:
    try:
        return files.resolve(value, "kind").read_text()
    except (OSError, ConfigError):
        return None


def place_user_code(
    config: ClusterConfig, *, files: FileScope, allow_inline: bool
) -> ClusterConfig:
    """``config`` with each ``file:`` interaction's source kept, added or dropped as above.

    ConfigError (a 422) with one line per group that would need inline code without the flag.
    """
    shares = config.spawner.kind in SHARED_FILES
    groups = list(config.groups)
    problems: list[str] = []
    for index, group in enumerate(groups):
        interaction = group.interaction
        if not isinstance(interaction, CustomInteraction):
            continue
        parts = interaction.file_parts()
        if parts is None:
            continue
        where = f"groups[{index}].interaction"
        source = interaction.source
        if source is not None:
            if allow_inline:
                continue
            if shares and _read(files, parts[0]) == source:
                source = None  # the same file is here: run it from its path
            else:
                problems.append(
                    f"{where}.source: this service does not run code sent to it with a "
                    f"cluster ({interaction.kind}); {ENABLE}"
                )
                continue
        elif not shares:
            if not allow_inline:
                problems.append(
                    f"{where}.kind: {config.spawner.kind} workers do not share this service's "
                    f"files, so it would ship the source of {interaction.kind} in their "
                    f"assignment; {ENABLE}"
                )
                continue
            source = _read(files, parts[0])
            if source is None:
                problems.append(f"{where}.kind: cannot read {parts[0]!r}")
                continue
        if source != interaction.source:
            changed = interaction.model_copy(update={"source": source})
            groups[index] = group.model_copy(update={"interaction": changed})
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"groups": groups})
