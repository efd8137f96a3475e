"""The built-in interactions by ``kind``, and building one from its configuration.

Building happens once per client configuration, before any run: prompt sources are generated
or read here, so a bad dataset is a ConfigError up front, not a failed run.
"""

from __future__ import annotations

from pathlib import Path

from clientswarm.config.interactions import InteractionConfig
from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError
from clientswarm.interactions.base import Interaction
from clientswarm.interactions.http import BuiltinInteraction, Hello, HttpCall
from clientswarm.interactions.openai import Chat, Completion, Embedding

BUILTIN_INTERACTIONS: dict[str, type[BuiltinInteraction]] = {
    "hello": Hello,
    "http": HttpCall,
    "completion": Completion,
    "chat": Chat,
    "embedding": Embedding,
}
"""Every pre-built interaction class, by the ``kind`` its configuration names."""


def build_interaction(config: InteractionConfig, *, seed: int, base_dir: Path) -> Interaction:
    """The interaction for one validated config; ConfigError if it cannot be built.

    ``seed`` makes synthetic prompts the same on every worker; ``base_dir`` (the folder of the
    configuration file) anchors a relative dataset path.
    """
    cls = BUILTIN_INTERACTIONS.get(config.kind)
    if cls is None:
        valid = ", ".join(BUILTIN_INTERACTIONS)
        raise ConfigError([f"interaction.kind: unknown kind {config.kind!r}; valid: {valid}"])
    if not isinstance(config, cls.config_model):
        raise ConfigError(
            [f"interaction: expected a {cls.config_model.__name__}, got {type(config).__name__}"]
        )
    return cls(config, seed=seed, base_dir=base_dir)


def build_group_interactions(cluster: ClusterConfig, *, base_dir: Path) -> list[Interaction]:
    """One interaction per group of ``cluster``, in group order.

    Every problem of every group is collected into one ConfigError whose lines start with the
    group's field path (``groups[1].interaction: …``), so ``validate`` reports them all at once.
    """
    built: list[Interaction] = []
    problems: list[str] = []
    for index, group in enumerate(cluster.groups):
        try:
            built.append(build_interaction(group.interaction, seed=cluster.seed, base_dir=base_dir))
        except ConfigError as exc:
            where = f"groups[{index}].interaction: "
            source = f"{exc.source}: " if exc.source else ""
            problems.extend(where + source + line for line in exc.problems)
    if problems:
        raise ConfigError(problems)
    return built
