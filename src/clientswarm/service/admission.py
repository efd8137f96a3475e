"""Admitting a configuration to the service: every check of :class:`OperatorPolicy` in one place.

:func:`admit` runs before a cluster is created or a configuration is called valid, and collects
every problem into one :class:`~clientswarm.errors.ConfigError` (an HTTP 422), each line naming
the field, the bad value and what this service allows:

- the limits (workers, clients);
- the target's URL against ``--allow-target``;
- the variables a target's credentials are read from against ``--allow-env``;
- the OTLP endpoint of ``telemetry`` against ``--allow-target`` (the service itself sends
  there) and the variables its headers are read from against ``--allow-env``; its library
  installed here (``clientswarm[otel]``);
- every path field (:data:`~clientswarm.config.paths.ConfigPath`) and every ``file:``
  interaction against ``--allow-path``; every ``package.module:Name`` interaction against
  ``--allow-module``;
- the spawner: options that run code or reach credentials only from a preset, the preset
  merged under what the configuration gave; its library installed here (an extra of the
  package, such as ``clientswarm[kubernetes]``); with ``sample_path: files``, storage its
  workers share with the service (:mod:`clientswarm.service.samplestorage`).

:func:`admit` reads no file's content and imports no user code; :func:`admit_and_build` then
builds what was admitted — datasets and tokenizers read, user code loaded (on a shared service
in a short-lived subprocess, :mod:`clientswarm.service.usercheck`, never in the service).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from clientswarm.config.interactions import CustomInteraction
from clientswarm.config.load import OpenLoadConfig, TraceLoadConfig
from clientswarm.config.models import ClusterConfig, GroupConfig, SpawnerConfig
from clientswarm.config.paths import FileScope, path_values
from clientswarm.errors import ConfigError
from clientswarm.interactions.check import groups_only
from clientswarm.interactions.registry import build_group_interactions
from clientswarm.load.trace import replayed
from clientswarm.service.policy import OperatorPolicy
from clientswarm.service.presets import merged_options, validate_options
from clientswarm.service.samplestorage import samples_storage_problem
from clientswarm.service.telemetry import missing_extra as missing_otel
from clientswarm.service.usercheck import check_in_subprocess, has_user_code
from clientswarm.service.usercode import place_user_code
from clientswarm.spawners.registry import missing_extra

ASK = "ask the operator (clientswarm serve {flag})"


@dataclass(frozen=True)
class Admitted:
    """A configuration this service may run: where its paths resolve, and its spawner's
    options with the preset merged in."""

    config: ClusterConfig
    files: FileScope
    spawner: SpawnerConfig


def admit(
    config: ClusterConfig,
    policy: OperatorPolicy,
    *,
    base_dir: Path | None = None,
    samples_dir: Path | None = None,
) -> Admitted:
    """``config`` checked against ``policy``; ConfigError listing every problem.
    ``samples_dir``: the service's samples directory (named in a problem of ``sample_path:
    files``)."""
    files = policy.file_scope(base_dir)
    missing = missing_extra(config.spawner.kind)  # the spawner's library is not installed here
    problems = [missing] if missing else []
    problems += [
        *_limit_problems(config, policy),
        *_target_problems(config, policy),
        *_telemetry_problems(config, policy),
        *_path_problems(config, files),
        *_code_problems(config, policy, files),
    ]
    options, spawner_problems = _spawner_options(config, policy)
    problems += spawner_problems
    if not spawner_problems:  # the preset is merged in: it may give the samples' storage
        storage = samples_storage_problem(
            config,
            options,
            samples_dir or "<data dir>/samples",
            preset_only=not policy.operator_options_open,
        )
        problems += [storage] if storage else []
    if problems:
        raise ConfigError(problems)
    return Admitted(config, files, options)


def _limit_problems(config: ClusterConfig, policy: OperatorPolicy) -> list[str]:
    limits = policy.limits
    problems = []
    workers = config.spawner.workers
    if limits.max_workers is not None and workers > limits.max_workers:
        problems.append(
            f"spawner.workers: {workers} is more than this service allows for one cluster "
            f"(at most {limits.max_workers}); " + ASK.format(flag="--max-workers")
        )
    clients = config.total_clients
    if limits.max_clients is not None and clients > limits.max_clients:
        problems.append(
            f"groups: {clients} clients in all is more than this service allows for one "
            f"cluster (at most {limits.max_clients}); " + ASK.format(flag="--max-clients")
        )
    planned = sum(planned_arrivals(group, config.warmup_s) for group in config.groups)
    if limits.max_planned_requests is not None and planned > limits.max_planned_requests:
        problems.append(
            f"groups: the open-loop schedules plan about {planned:,.0f} requests, more than "
            f"this service allows for one cluster (at most {limits.max_planned_requests:,}; "
            "workers hold their schedule in memory); lower a rate or a duration, or "
            + ASK.format(flag="--max-planned-requests")
        )
    return problems


def planned_arrivals(group: GroupConfig, warmup_s: float) -> float:
    """An upper bound of the requests an open-loop group schedules (warm-up included): its
    peak rate over its whole time, or its request count when that comes first; 0 for a
    closed loop, whose requests follow the answers and are never planned ahead."""
    load = group.load
    if not isinstance(load, OpenLoadConfig):
        return 0.0
    peak = max([load.rate or 0.0, *(stage.rate for stage in load.stages)])
    duration = group.duration_s
    by_time = math.inf if duration is None else peak * (warmup_s + duration)
    requests = group.stop.requests
    by_count = math.inf if requests is None else requests + peak * warmup_s
    return min(by_time, by_count)


def _target_problems(config: ClusterConfig, policy: OperatorPolicy) -> list[str]:
    problems = []
    allowed = ", ".join(policy.target_env or ()) or "none"
    several = config.target is None
    for name, target in config.target_map().items():
        where = f"targets.{name}" if several else "target"
        replicas = (
            [("url", target.url)]
            if not target.urls
            else list(
                zip([f"urls[{i}]" for i in range(len(target.urls))], target.urls, strict=True)
            )
        )
        for field, url in replicas:
            if policy.targets is not None and not policy.targets.allows(url):
                problems.append(
                    f"{where}.{field}: {url!r} is not a target this service may load-test "
                    f"(allowed: {policy.targets}); use one of those, or "
                    + ASK.format(flag="--allow-target HOST[:PORT]|CIDR")
                )
        for index, url in enumerate(target.metrics.urls if target.metrics.enabled else []):
            # The service may fetch these itself: the same hosts as the targets, no others.
            if policy.targets is not None and not policy.targets.allows(url):
                problems.append(
                    f"{where}.metrics.urls[{index}]: {url!r} is not a host this service may "
                    f"reach (allowed: {policy.targets}); use one of those, or "
                    + ASK.format(flag="--allow-target HOST[:PORT]|CIDR")
                )
        named = [(f"{where}.api_key_env", target.api_key_env)] if target.api_key_env else []
        named += [(f"{where}.headers_from_env.{h}", n) for h, n in target.headers_from_env.items()]
        for field, env in named:
            if env is not None and not policy.env_name_allowed(env):
                problems.append(
                    f"{field}: {env!r} is not a variable this service lets configurations read "
                    f"(allowed: {allowed}); " + ASK.format(flag="--allow-env NAME")
                )
    return problems


def _telemetry_problems(config: ClusterConfig, policy: OperatorPolicy) -> list[str]:
    otlp = config.telemetry.otlp if config.telemetry is not None else None
    if otlp is None:
        return []
    missing = missing_otel()
    problems = [f"telemetry.otlp: {missing}"] if missing else []
    if policy.targets is not None and not policy.targets.allows(otlp.endpoint):
        problems.append(
            f"telemetry.otlp.endpoint: {otlp.endpoint!r} is not a host this service may reach "
            f"(allowed: {policy.targets}); use one of those, or "
            + ASK.format(flag="--allow-target HOST[:PORT]|CIDR")
        )
    allowed = ", ".join(policy.target_env or ()) or "none"
    for header, env in otlp.headers_from_env.items():
        if not policy.env_name_allowed(env):
            problems.append(
                f"telemetry.otlp.headers_from_env.{header}: {env!r} is not a variable this "
                f"service lets configurations read (allowed: {allowed}); "
                + ASK.format(flag="--allow-env NAME")
            )
    return problems


def _path_problems(config: ClusterConfig, files: FileScope) -> list[str]:
    problems = []
    for where, value in path_values(config):
        problem = files.check(value, where)
        if problem is not None:
            problems.append(f"{where}: {problem}")
    return problems


def _code_problems(config: ClusterConfig, policy: OperatorPolicy, files: FileScope) -> list[str]:
    problems = []
    for index, group in enumerate(config.groups):
        interaction = group.interaction
        if not isinstance(interaction, CustomInteraction):
            continue
        where = f"groups[{index}].interaction.kind"
        parts = interaction.file_parts()
        if parts is not None:
            if interaction.source is None:  # the source shipped inline is place_user_code's
                problem = files.check(parts[0], where)
                if problem is not None:
                    problems.append(f"{where}: {problem}")
        elif ":" in interaction.kind:
            module = interaction.kind.split(":", 1)[0]
            if not policy.module_allowed(module):
                allowed = ", ".join(policy.modules or ()) or "none"
                problems.append(
                    f"{where}: module {module!r} is not one this service runs user code from "
                    f"(allowed: {allowed}; installed entry points and files under the allowed "
                    "folders also work); " + ASK.format(flag="--allow-module NAME")
                )
    return problems


def _spawner_options(
    config: ClusterConfig, policy: OperatorPolicy
) -> tuple[SpawnerConfig, list[str]]:
    spawner = config.spawner
    posted = spawner.model_dump(exclude_unset=True)
    posted["kind"] = spawner.kind
    problems = []
    if not policy.operator_options_open:
        presets = ", ".join(sorted(policy.spawner_presets)) or "none"
        for name in type(spawner).OPERATOR_ONLY:
            if name in spawner.model_fields_set:
                problems.append(
                    f"spawner.{name}: set only by the operator's spawner presets on this "
                    f"service (presets: {presets}); name one with spawner.preset"
                )
    preset_name = getattr(spawner, "preset", None)
    if preset_name is None:
        return spawner, problems
    preset = policy.spawner_presets.get(preset_name)
    if preset is None:
        known = ", ".join(sorted(policy.spawner_presets)) or "none"
        problems.append(
            f"spawner.preset: {preset_name!r} is not a preset of this service (presets: {known})"
        )
        return spawner, problems
    if preset.get("kind") != spawner.kind:
        problems.append(
            f"spawner.preset: {preset_name!r} is a {preset.get('kind')} preset, but "
            f"spawner.kind is {spawner.kind}"
        )
        return spawner, problems
    merged, invalid = validate_options(merged_options(posted, preset))
    problems += invalid
    return spawner if merged is None else merged, problems


async def admit_and_build(
    config: ClusterConfig,
    policy: OperatorPolicy,
    *,
    base_dir: Path | None = None,
    python: str = sys.executable,
    samples_dir: Path | None = None,
) -> Admitted:
    """:func:`admit`, then every group built as a worker will build it (user code in a
    subprocess run by ``python`` when ``policy.isolate_user_code``); ConfigError listing every
    problem of both."""
    admitted = admit(config, policy, base_dir=base_dir, samples_dir=samples_dir)
    placed = place_user_code(
        admitted.config, files=admitted.files, allow_inline=policy.allow_inline_code
    )
    admitted = dataclasses.replace(admitted, config=placed)
    if not policy.isolate_user_code:
        await asyncio.to_thread(build_group_interactions, placed, files=admitted.files)
        _check_trace_limit(placed, policy, admitted.files)
        return admitted
    problems: list[str] = []
    try:
        builtin = groups_only(placed, user=False)
        await asyncio.to_thread(build_group_interactions, builtin, files=admitted.files)
    except ConfigError as exc:
        problems += exc.problems
    if has_user_code(placed):
        env = policy.worker_environment(placed)
        try:
            await check_in_subprocess(
                placed, admitted.files, env, python=python, timeout_s=policy.check_timeout_s
            )
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    _check_trace_limit(placed, policy, admitted.files)
    return admitted


def _check_trace_limit(config: ClusterConfig, policy: OperatorPolicy, files: FileScope) -> None:
    """ConfigError when the requests planned, replayed traces included (read by now), are
    more than ``--max-planned-requests``."""
    limit = policy.limits.max_planned_requests
    traces = [g.load for g in config.groups if isinstance(g.load, TraceLoadConfig)]
    if limit is None or not traces:
        return
    replays = sum(len(replayed(load, files)) for load in traces)
    planned = replays + sum(planned_arrivals(g, config.warmup_s) for g in config.groups)
    if planned > limit:
        raise ConfigError(
            [
                f"groups: the open-loop schedules and traces plan {planned:,.0f} requests "
                f"(traces: {replays:,}), more than this service allows for one cluster (at "
                f"most {limit:,}); replay a shorter window (load.window_s), or "
                + ASK.format(flag="--max-planned-requests")
            ]
        )


__all__ = ["Admitted", "admit", "admit_and_build"]
