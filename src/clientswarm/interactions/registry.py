"""The built-in interactions by ``kind``, and building one from its configuration.

Building happens once per client configuration, before any run: prompt sources are generated
or read here, so a bad dataset is a ConfigError up front, not a failed run.
"""

from __future__ import annotations

from typing import Any

from clientswarm.config.interactions import CustomInteraction, InteractionConfig
from clientswarm.config.load import TraceLoadConfig
from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions.base import Interaction
from clientswarm.interactions.conversation import Conversation
from clientswarm.interactions.http import BuiltinInteraction, Hello, HttpCall
from clientswarm.interactions.journeys import UserInteraction
from clientswarm.interactions.messages import Messages
from clientswarm.interactions.openai import Chat, Completion, Embedding
from clientswarm.interactions.responses import Responses
from clientswarm.interactions.transcription import Transcription
from clientswarm.load.trace import replayed
from clientswarm.load.vary import (
    VariantKey,
    client_interaction,
    client_variant_key,
    describe_variant,
)

BUILTIN_INTERACTIONS: dict[str, type[BuiltinInteraction] | type[Conversation]] = {
    "hello": Hello,
    "http": HttpCall,
    "completion": Completion,
    "chat": Chat,
    "responses": Responses,
    "messages": Messages,
    "embedding": Embedding,
    "conversation": Conversation,
    "transcription": Transcription,
}
"""Every pre-built interaction class, by the ``kind`` its configuration names."""


def build_interaction(
    config: InteractionConfig, *, seed: int, files: FileScope = ANYWHERE
) -> Interaction:
    """The interaction for one validated config; ConfigError if it cannot be built.

    A user-defined interaction is resolved (its module imported, its file run) and its
    parameters validated here, so a broken plugin fails validation, never a run. ``seed``
    makes synthetic prompts the same on every worker; ``files`` says where the config's paths
    resolve (relative ones from the folder of the configuration file).
    """
    if isinstance(config, CustomInteraction):
        return UserInteraction(config, seed=seed, files=files)
    cls = BUILTIN_INTERACTIONS.get(config.kind)
    if cls is None:
        valid = ", ".join(BUILTIN_INTERACTIONS)
        raise ConfigError([f"interaction.kind: unknown kind {config.kind!r}; valid: {valid}"])
    if not isinstance(config, cls.config_model):
        raise ConfigError(
            [f"interaction: expected a {cls.config_model.__name__}, got {type(config).__name__}"]
        )
    factory: Any = cls  # each class takes its own config model, checked just above
    built: Interaction = factory(config, seed=seed, files=files)
    return built


class ClusterInteractions:
    """The interactions of a cluster's clients: one per group, and one per distinct variant of
    a group whose clients differ (``vary``). Everything is built (and so checked) up front."""

    def __init__(self, cluster: ClusterConfig, *, files: FileScope = ANYWHERE) -> None:
        self.groups: list[Interaction] = []
        self._variants: dict[tuple[int, VariantKey], Interaction] = {}
        self._keys: dict[tuple[int, int], VariantKey] = {}
        problems: list[str] = []
        for index, group in enumerate(cluster.groups):
            try:
                self.groups.append(
                    build_interaction(group.interaction, seed=cluster.seed, files=files)
                )
            except ConfigError as exc:
                problems.extend(_located(exc, f"groups[{index}].interaction", group.interaction))
                continue
            if isinstance(group.load, TraceLoadConfig):
                try:
                    replayed(group.load, files)  # read and checked now, parsed once
                except ConfigError as exc:
                    where = f"groups[{index}].load.{exc.source or 'path'}"
                    problems.extend(f"{where}: {line}" for line in exc.problems)
            for client in range(group.clients if group.vary else 0):
                key = client_variant_key(group, client, cluster.seed)
                self._keys[(index, client)] = key
                if (index, key) in self._variants:
                    continue
                varied = client_interaction(group, client, cluster.seed)
                try:
                    self._variants[(index, key)] = build_interaction(
                        varied, seed=cluster.seed, files=files
                    )
                except ConfigError as exc:
                    values = describe_variant(group, client, cluster.seed)
                    where = f"groups[{index}].vary (client {client}: {values})"
                    problems.extend(_located(exc, where, varied))
                    break  # one bad variant says enough
        if problems:
            raise ConfigError(problems)

    def of(self, group_index: int, index_in_group: int) -> Interaction:
        """The interaction of the client ``index_in_group`` of group ``group_index``."""
        key = self._keys.get((group_index, index_in_group))
        if key is None:
            return self.groups[group_index]
        return self._variants[(group_index, key)]


def _located(exc: ConfigError, where: str, config: InteractionConfig) -> list[str]:
    """The problems of ``exc``, each starting with the field path ``where``."""
    user = isinstance(config, CustomInteraction)
    prefix = where + ("." if user and where.endswith("interaction") else ": ")
    source = f"{exc.source}: " if exc.source else ""
    return [prefix + source + line for line in exc.problems]


def build_group_interactions(
    cluster: ClusterConfig, *, files: FileScope = ANYWHERE
) -> list[Interaction]:
    """One interaction per group of ``cluster``, in group order (every variant checked too).

    Every problem of every group is collected into one ConfigError whose lines start with the
    group's field path (``groups[1].interaction: …``), so ``validate`` reports them all at once.
    """
    return ClusterInteractions(cluster, files=files).groups
