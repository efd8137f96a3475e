"""The configuration file of a ClientCluster, as pydantic models.

Every model forbids unknown fields so that a typo is an error that names the field, never a
setting that silently does nothing. Discriminators are short lowercase ``kind`` strings.
"""

from __future__ import annotations

import copy
import difflib
import math
import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from clientswarm.config.base import (
    StrictModel,
)
from clientswarm.config.checks import AbortConfig, AbortSetting, Thresholds
from clientswarm.config.interactions import InteractionConfig
from clientswarm.config.lengths import LengthDist, coerce_length
from clientswarm.config.load import (
    CancelConfig,
    CapacityLoadConfig,
    ClosedLoadConfig,
    LoadConfig,
    StopConfig,
    SweepLoadConfig,
    TraceLoadConfig,
    sweep_default_clients,
)
from clientswarm.config.slo import SLOConfig
from clientswarm.config.spawners import (
    LocalSpawnerConfig,
    SlurmSpawnerConfig,
    SpawnerConfig,
)
from clientswarm.config.targets import (
    TargetConfig,
)
from clientswarm.config.telemetry import TelemetryConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class OutputsConfig(StrictModel):
    """Where and how `clientswarm run` writes its results."""

    dir: str | None = Field(default=None, description="Directory for summary.json and samples")
    # Parquet: the fewest bytes per sample of the three (bench/longrun.py, RESULTS-longrun.md).
    samples_format: Literal["jsonl", "parquet", "csv"] = Field(
        default="parquet",
        description="Format of the raw samples file (as `run --samples-format`)",
    )


# -- vary: interaction parameters that differ between the clients of a group ----------------------

InteractionModel = TypeVar("InteractionModel", bound=BaseModel)

PROMPT_SOURCES = frozenset({"prompts", "synthetic", "dataset", "shared_prefix"})
"""Built-in interaction parameters of which one is given: varying one replaces the others."""


def _prompt_sources(interaction: BaseModel) -> frozenset[str]:
    """The prompt source parameters of ``interaction`` (none for an interaction without them)."""
    fields = type(interaction).model_fields
    return PROMPT_SOURCES if PROMPT_SOURCES.issubset(fields) else frozenset()


def _vary_bound(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


VaryBound = Annotated[
    Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | float, BeforeValidator(_vary_bound)
]


class VaryRange(StrictModel):
    """A number drawn per client, uniformly in [min, max]: an integer when both bounds are
    integers, else a float. Each client's draw is seeded by (cluster seed, group name, client
    index within the group, parameter name), so a seed gives every client the same value again."""

    min: VaryBound = Field(description="Smallest value (inclusive)")
    max: VaryBound = Field(description="Largest value (inclusive); at least min")

    @model_validator(mode="after")
    def _ordered(self) -> VaryRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self

    @property
    def integral(self) -> bool:
        """Whether the drawn values are integers (both bounds are)."""
        return isinstance(self.min, int) and isinstance(self.max, int)


def _vary_shape(value: Any) -> Any:
    if isinstance(value, VaryRange):
        return value
    if isinstance(value, dict):
        return VaryRange.model_validate(value)  # its errors keep their place (…vary.x.min)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("empty list; give at least one value")
        return list(value)
    raise ValueError(
        "expected a list of values (client i gets values[i % len(values)]) "
        "or a range {min: number, max: number}"
    )


VaryValues = Annotated[
    Annotated[list[Any], Field(min_length=1)] | VaryRange,
    BeforeValidator(_vary_shape),
    Field(
        description=(
            "A non-empty list of values (client i of the group gets values[i % len(values)]) "
            "or a range {min, max} drawn per client"
        )
    ),
]
"""The values one varied parameter takes across the clients of a group."""


def is_builtin_interaction(interaction: BaseModel) -> bool:
    """Whether ``interaction`` is a pre-built kind (its ``kind`` is a fixed literal).

    A user-defined interaction (kind ``package.module:Name``) has parameters this model does
    not know: ``vary`` checks only the shape of its names and values, not that they fit it.
    """
    kind = type(interaction).model_fields.get("kind")
    return kind is not None and get_origin(kind.annotation) is Literal


def _kind_of(interaction: BaseModel) -> str:
    return str(getattr(interaction, "kind", type(interaction).__name__))


def _set_path(data: dict[str, Any], name: str, value: Any) -> None:
    head, *rest = name.split(".")
    if not rest:
        data[head] = value
        return
    node = data
    for key in [head, *rest[:-1]]:
        child = node.get(key)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ValueError(f"{key!r} is not a mapping, so {name!r} cannot be set")
        node[key] = child = dict(child)
        node = child
    node[rest[-1]] = value


def with_varied_values(
    interaction: InteractionModel, values: Mapping[str, Any]
) -> InteractionModel:
    """A validated copy of ``interaction`` with ``values`` applied.

    Keys are parameter names or dotted paths into a mapping parameter (``extra_body.top_k``).
    Raises ``pydantic.ValidationError`` for a value the interaction rejects and ``ValueError``
    for a path through a value that is not a mapping.
    """
    data = interaction.model_dump()
    sources = _prompt_sources(interaction)
    if sources & set(values):  # a varied prompt source replaces the group's own
        for other in sources - set(values):
            data.pop(other, None)
    for name, value in values.items():
        _set_path(data, name, copy.deepcopy(value))
    return type(interaction).model_validate(data)


def _admits_mapping(annotation: Any) -> bool:
    """Whether a field annotated so takes a mapping (``dict[...]``, possibly Optional)."""
    if annotation is dict or get_origin(annotation) is dict:
        return True
    if get_origin(annotation) is Annotated:
        return _admits_mapping(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_admits_mapping(arg) for arg in get_args(annotation))
    return False


def _mapping_parameters(interaction: BaseModel) -> list[str]:
    fields = type(interaction).model_fields
    return [
        name
        for name, info in fields.items()
        if _admits_mapping(info.annotation) or isinstance(getattr(interaction, name, None), dict)
    ]


def _name_problem(interaction: BaseModel, name: str, names: list[str]) -> str | None:
    """What is wrong with varying ``name`` (None: nothing)."""
    parts = name.split(".")
    if not all(parts):
        return f"{name!r} is not a parameter name or a dotted path like extra_body.temperature"
    head = parts[0]
    if head == "kind":
        return "the interaction kind cannot vary; put clients of another kind in their own group"
    for other in names:
        if other != name and name.startswith(other + "."):
            return f"{other!r} varies as a whole already, so {name!r} cannot vary inside it"
    sources = sorted(_prompt_sources(interaction) & set(names))
    if head in sources and len(sources) > 1:
        return f"only one prompt source can vary, not {' and '.join(sources)}"
    if not is_builtin_interaction(interaction):
        return None
    kind = _kind_of(interaction)
    fields = [field for field in type(interaction).model_fields if field != "kind"]
    mappings = _mapping_parameters(interaction)
    if head not in fields:
        close = difflib.get_close_matches(head, fields, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        into = f" (dotted paths go into: {', '.join(mappings)})" if mappings else ""
        return (
            f"unknown parameter {head!r} of interaction kind {kind!r}{hint}; "
            f"valid parameters: {', '.join(fields)}{into}"
        )
    if len(parts) > 1 and head not in mappings:
        valid = f"dotted paths go into: {', '.join(mappings)}" if mappings else "none is a mapping"
        return (
            f"{head!r} of interaction kind {kind!r} is not a mapping, so {name!r} cannot vary "
            f"inside it; {valid}"
        )
    return None


def _value_problem(interaction: BaseModel, name: str, value: Any) -> str | None:
    """What is wrong with the interaction taking ``value`` at ``name`` (None: nothing)."""
    try:
        with_varied_values(interaction, {name: value})
    except ValidationError as exc:
        from clientswarm.config.errors import describe_error  # it imports this module

        lines = [
            describe_error(err, type(interaction)).removeprefix(f"{name}: ")
            for err in exc.errors(include_url=False)
        ]
        return f"not valid for interaction kind {_kind_of(interaction)!r}: {'; '.join(lines)}"
    except ValueError as exc:
        return str(exc)
    return None


def _vary_errors(interaction: BaseModel, vary: Mapping[str, Any]) -> list[InitErrorDetails]:
    """One error per bad varied name or value, located under ``vary``."""
    errors: list[InitErrorDetails] = []

    def add(loc: tuple[str | int, ...], text: str, shown: dict[str, Any]) -> None:
        # A mapping as input: the text already shows the bad value (or hides a secret one).
        error = PydanticCustomError("value_error", "{error}", {"error": text})
        errors.append(InitErrorDetails(type=error, loc=("vary", *loc), input=shown))

    names = list(vary)
    for name, spec in vary.items():
        shown = {name: spec.model_dump() if isinstance(spec, VaryRange) else spec}
        problem = _name_problem(interaction, name, names)
        if problem is not None:
            add((name,), problem, shown)
            continue
        # A user-defined interaction's model takes any parameter: this checks only the shape
        # (a dotted path through a value that is not a mapping); its own Params model the rest.
        where: list[tuple[str | int, Any]]
        if isinstance(spec, VaryRange):
            where = [("min", spec.min), ("max", spec.max)]
        else:
            where = list(enumerate(spec))
        bad = False
        for position, value in where:
            problem = _value_problem(interaction, name, value)
            if problem is not None:
                add((name, position), problem, shown)
                bad = True
        if isinstance(spec, VaryRange) and not (bad or spec.integral) and spec.min < spec.max:
            # Float bounds draw fractional numbers: an integer parameter accepts only the bounds.
            fractional = math.nextafter(float(spec.min), float(spec.max))
            if _value_problem(interaction, name, fractional) is not None:
                text = (
                    f"a range with a float bound draws fractional numbers, which {name!r} of "
                    f"interaction kind {_kind_of(interaction)!r} does not take; "
                    "give integer bounds"
                )
                add((name,), text, shown)
    return errors


TRACE_KINDS = ("chat", "completion", "responses", "messages")
"""The interactions a trace load can drive: it sets their prompts and ``max_tokens``."""

DEFAULT_TARGET = "default"
"""The name of the one target a configuration gives with ``target:``."""

TargetName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]


class GroupConfig(StrictModel):
    """Clients of one cluster that share one client configuration."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    target: TargetName | None = Field(
        default=None,
        description="Name of the target the group's clients load (a key of targets); "
        "default: the only target",
    )
    clients: int = Field(default=1, ge=1, le=1_000_000, description="Number of clients")
    interaction: InteractionConfig
    load: LoadConfig = Field(default_factory=ClosedLoadConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    prefill_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description=(
            "Max requests of the group without their first token yet (all workers together); "
            "a request is sent only when one of them has its first token, the wait showing "
            "as schedule lag"
        ),
    )
    cancel: CancelConfig | None = Field(
        default=None,
        description=(
            "Cancel a share of the requests after a delay (error kind client_cancel, a "
            "failure; the others keep their exact metrics)"
        ),
    )
    vary: dict[str, VaryValues] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {"pattern": r"^[^.]+(\.[^.]+)*$"}},
        description=(
            "Interaction parameters that differ between the clients of the group, by name "
            "(e.g. max_tokens, system_prompt, stream, prompts) or by a dotted path into a "
            "mapping parameter (e.g. extra_body.temperature); each takes a list of values "
            "(client i gets values[i % len(values)]) or a range {min, max} drawn per client"
        ),
    )
    thresholds: Thresholds = Field(default_factory=list)
    """Pass/fail checks of the group's final statistics (scope ``groups.<name>``)."""

    @model_validator(mode="before")
    @classmethod
    def _sweep_clients(cls, data: Any) -> Any:
        return sweep_default_clients(data)

    @model_validator(mode="after")
    def _check_vary(self) -> GroupConfig:
        errors = _vary_errors(self.interaction, self.vary)
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @model_validator(mode="after")
    def _check_adaptive(self) -> GroupConfig:
        load = self.load
        if not isinstance(load, SweepLoadConfig | CapacityLoadConfig):
            return self
        what = "an automatic sweep" if load.kind == "sweep" else "a capacity search"
        if self.stop.duration_s is not None or self.stop.requests is not None:
            raise ValueError(
                f"{what} ends by itself: remove stop (its stages bound the group; "
                "stage_s sets how long each runs)"
            )
        if load.kind == "sweep" and self.clients < 2:
            raise ValueError(
                f"an automatic sweep needs clients of at least 2 (got {self.clients}): its "
                "throughput stage runs every client of the group at once"
            )
        return self

    @property
    def adaptive(self) -> bool:
        """Whether the group's set points are chosen from results while it runs."""
        return isinstance(self.load, SweepLoadConfig | CapacityLoadConfig)

    @model_validator(mode="after")
    def _check_trace(self) -> GroupConfig:
        if isinstance(self.load, TraceLoadConfig) and self.interaction.kind not in TRACE_KINDS:
            raise ValueError(
                "a trace load sets each request's prompt length and max_tokens: it needs a "
                f"{', '.join(TRACE_KINDS)} interaction (got {self.interaction.kind})"
            )
        return self

    @model_validator(mode="after")
    def _check_stop_and_stages(self) -> GroupConfig:
        if self.adaptive:
            return self
        stages = self.load.stages
        bounded = isinstance(self.load, TraceLoadConfig)  # the trace ends
        if self.stop.duration_s is None and self.stop.requests is None and not (stages or bounded):
            raise ValueError(
                "a group needs a stop condition: set stop.duration_s and/or stop.requests, "
                "or give load.stages"
            )
        if self.load.stage_warmup_s and self.stop.requests is not None:
            raise ValueError(
                "load.stage_warmup_s cannot be combined with stop.requests: bound the group "
                "by its stages (or stop.duration_s) instead"
            )
        if self.load.kind == "closed":
            for stage in self.load.stages:
                if stage.clients > self.clients:
                    raise ValueError(
                        f"load.stages: a stage asks for {stage.clients} clients but the group "
                        f"has only clients={self.clients}"
                    )
        return self

    @property
    def duration_s(self) -> float | None:
        """Measured duration of the group: stop.duration_s, else the sum of its stages."""
        if isinstance(self.load, SweepLoadConfig | CapacityLoadConfig):
            return self.load.upper_duration_s()  # at most: the set points are chosen live
        if self.stop.duration_s is not None:
            return self.stop.duration_s
        if isinstance(self.load, TraceLoadConfig):
            return self.load.replay_s()
        stages = self.load.stages
        return sum(s.duration_s for s in stages) if stages else None


def _not_null(schema: dict[str, Any]) -> None:
    """Drop ``null`` from a field's schema (a field that may be left out, never given as null)."""
    choices = schema.get("anyOf")
    if isinstance(choices, list):
        kept = [choice for choice in choices if choice != {"type": "null"}]
        schema.pop("anyOf")
        schema.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
    schema.pop("default", None)


class ClusterConfig(StrictModel):
    """A ClientCluster: the clients spawned from one configuration file."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        # What _targets_of_groups checks, for editors: one of target and targets.
        json_schema_extra={"oneOf": [{"required": ["target"]}, {"required": ["targets"]}]},
    )

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
    seed: int = Field(
        default=0,
        ge=-(2**63),
        le=2**63 - 1,
        description="Seed of every random choice (arrivals, prompts); a signed 64-bit integer",
    )
    target: TargetConfig | None = Field(
        default=None,
        description=f"The target, when there is one (its name is {DEFAULT_TARGET!r}); "
        "give target or targets",
        json_schema_extra=_not_null,  # null is the same as leaving it out: the schema says so
    )
    targets: dict[TargetName, TargetConfig] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra={
            "minProperties": 1,
            "propertyNames": {"pattern": NAME_PATTERN, "maxLength": 64},
        },
        description="Targets by name, when there are several (e.g. two deployments to "
        "compare); each group names its own with group.target",
    )
    spawner: SpawnerConfig = Field(default_factory=LocalSpawnerConfig)
    warmup_s: float = Field(
        default=0.0, ge=0, description="Seconds at the start whose samples are excluded from stats"
    )
    preflight: bool = Field(
        default=True,
        description="Check every target where the clients run before any client starts: it "
        "answers, serves the model, takes the API key, its url does not end in /v1; a failed "
        "check fails the cluster (false: no check)",
    )
    preflight_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="How long the preflight waits for a target"
    )
    slo: SLOConfig | None = None
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    groups: list[GroupConfig] = Field(min_length=1)
    thresholds: Thresholds = Field(default_factory=list)
    """Pass/fail checks of the total's final statistics (scope ``total``)."""
    abort: AbortSetting = Field(
        default_factory=AbortConfig,
        description="Stop the run (status failed) when nearly all of its last requests failed "
        "to connect or got 5xx/429 answers: {window, min_requests, failed_fraction, kinds}, or "
        "false to never stop it so",
    )
    telemetry: TelemetryConfig | None = Field(
        default=None,
        description="Export the run's metrics and samples besides the service's own "
        "/metrics: {otlp: {endpoint, export, interval_s, …}} (OpenTelemetry, OTLP/HTTP)",
    )
    sample_path: Literal["service", "files"] = Field(
        default="service",
        description="Where the raw samples go. service: every batch is posted to the service, "
        "which stores it. files (the high-rate path): each worker writes its samples to durable "
        "Parquet files in the service's samples directory (shared storage: the data dir on "
        "Slurm, the spawner's samples volume on Kubernetes) and posts only its histograms and "
        "counters each tick; the exact summary is read from the files at the end",
    )

    @field_validator("groups")
    @classmethod
    def _unique_group_names(cls, groups: list[GroupConfig]) -> list[GroupConfig]:
        seen: set[str] = set()
        for group in groups:
            if group.name in seen:
                raise ValueError(f"group names must be unique; {group.name!r} appears twice")
            seen.add(group.name)
        return groups

    @model_validator(mode="after")
    def _targets_of_groups(self) -> ClusterConfig:
        if (self.target is None) == (not self.targets):
            raise ValueError(
                "give the target (target: {url: …}) or several targets by name (targets: "
                "{a: {url: …}, b: {url: …}}), not both and not neither"
            )
        names = list(self.target_map())
        for index, group in enumerate(self.groups):
            if group.target is None and len(names) > 1:
                raise ValueError(
                    f"groups[{index}].target: required when there are several targets; "
                    f"name one of: {', '.join(names)}"
                )
            if group.target is not None and group.target not in names:
                raise ValueError(
                    f"groups[{index}].target: {group.target!r} is not a target of this "
                    f"configuration; targets: {', '.join(names)}"
                )
        return self

    @model_validator(mode="after")
    def _files_path(self) -> ClusterConfig:
        if self.sample_path != "files":
            return self
        for index, group in enumerate(self.groups):
            if isinstance(group.load, SweepLoadConfig | CapacityLoadConfig):
                raise ValueError(
                    f"groups[{index}].load: a {group.load.kind} group decides its next stage "
                    "from the samples the service stores; sample_path: files keeps them in "
                    "files: use sample_path: service with it"
                )
        otlp = self.telemetry.otlp if self.telemetry is not None else None
        if otlp is not None and "samples" in otlp.export:
            raise ValueError(
                "telemetry.otlp.export: samples are exported by the service, which never sees "
                "them with sample_path: files; export [metrics] only, or use sample_path: service"
            )
        return self

    @model_validator(mode="after")
    def _capacity_slo(self) -> ClusterConfig:
        for index, group in enumerate(self.groups):
            load = group.load
            if not isinstance(load, CapacityLoadConfig):
                continue
            slo = load.slo or self.slo
            if slo is None or not slo.bounds():
                raise ValueError(
                    f"groups[{index}].load.slo: a capacity search needs an SLO to search "
                    "against: set load.slo (e.g. {ttft_s: 0.5, tpot_s: 0.05}) or the "
                    "cluster's slo"
                )
        return self

    def target_map(self) -> dict[str, TargetConfig]:
        """Every target by name (one ``target:`` is named :data:`DEFAULT_TARGET`)."""
        if self.target is not None:
            return {DEFAULT_TARGET: self.target}
        return dict(self.targets)

    def target_name_of(self, group: GroupConfig) -> str:
        """The name of the target ``group`` loads."""
        return group.target or next(iter(self.target_map()))

    def target_of(self, group: GroupConfig) -> TargetConfig:
        """The target ``group`` loads."""
        return self.target_map()[self.target_name_of(group)]

    def with_targets(self, update: dict[str, Any]) -> ClusterConfig:
        """A copy with ``update`` applied to every target (e.g. ``{"url": …}``)."""
        if self.target is not None:
            return self.model_copy(update={"target": self.target.model_copy(update=update)})
        targets = {name: t.model_copy(update=update) for name, t in self.targets.items()}
        return self.model_copy(update={"targets": targets})

    @property
    def total_clients(self) -> int:
        """Number of clients over all groups."""
        return sum(g.clients for g in self.groups)


__all__ = [
    "ClusterConfig",
    "GroupConfig",
    "LengthDist",
    "LocalSpawnerConfig",
    "OutputsConfig",
    "SLOConfig",
    "SlurmSpawnerConfig",
    "SpawnerConfig",
    "TargetConfig",
    "VaryRange",
    "VaryValues",
    "coerce_length",
    "is_builtin_interaction",
    "with_varied_values",
]
