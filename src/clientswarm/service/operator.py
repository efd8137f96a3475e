"""``serve``'s operator options: what submitted configurations may reach, and the limits.

Each ``--allow-*`` option widens what a posted configuration may use; without them a shared
service reads files only under ``DATA_DIR/inputs``, imports no user module (installed entry
points excepted), lets no configuration read an environment variable, aims at loopback targets
only and takes code-bearing spawner options only from presets. See "Security model" in the
README.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from clientswarm.service.policy import Limits, OperatorPolicy, parse_module_names
from clientswarm.service.presets import PresetError, load_preset, parse_preset_option
from clientswarm.service.targets import TargetRules

INPUTS_DIR = "inputs"
"""Under the data directory: the one folder a shared service reads configuration files from
unless ``--allow-path`` names others (the store and the workers' logs stay out of reach)."""

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option(
        "--allow-path",
        "allow_paths",
        multiple=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="A folder whose files submitted configurations may use (datasets, tokenizers, "
        "file: interactions, Slurm log_dir/python/container), after symlinks and '..'; repeat. "
        f"Relative paths in a configuration are taken from the first. [default: "
        f"DATA_DIR/{INPUTS_DIR}]",
    ),
    click.option(
        "--allow-module",
        "allow_modules",
        multiple=True,
        help="A module (with its submodules) whose interactions submitted configurations may "
        "name as package.module:Name; repeat. Installed entry points are always allowed.",
    ),
    click.option(
        "--user-code-timeout-s",
        "check_timeout_s",
        default=30.0,
        show_default=True,
        type=click.FloatRange(min=0.1),
        help="How long checking a configuration's user-defined interactions may take (they "
        "are imported in a short-lived subprocess, never in the service); longer: refused.",
    ),
    click.option(
        "--allow-env",
        "allow_env",
        multiple=True,
        help="An environment variable (or fnmatch pattern, e.g. 'VLLM_*') that a "
        "configuration's target.api_key_env or target.headers_from_env may name; only the "
        "ones a cluster names reach its workers. Repeat. [default: none]",
    ),
    click.option(
        "--worker-env",
        "worker_env",
        multiple=True,
        help="An environment variable of this service passed on to every worker as it is "
        "(e.g. PYTHONPATH, SSL_CERT_FILE, HTTPS_PROXY); repeat. Workers otherwise get only "
        "PATH, HOME, USER, LOGNAME, LANG, LC_ALL, LC_CTYPE, TZ and TMPDIR.",
    ),
    click.option(
        "--allow-target",
        "allow_targets",
        multiple=True,
        help="Where targets may be: HOST[:PORT], an IP address or CIDR block, or * for "
        "anywhere; repeat. Host names match by name only. [default: loopback: 127.0.0.0/8, "
        "::1, localhost]",
    ),
    click.option(
        "--spawner-preset",
        "spawner_presets",
        multiple=True,
        metavar="NAME=FILE",
        help="A YAML file of spawner options (kind, and e.g. Slurm setup lines or a "
        "Kubernetes image and env) that configurations name with spawner.preset; the only "
        "way they get options that run code or reach credentials. Repeat.",
    ),
    click.option(
        "--max-workers",
        default=64,
        show_default=True,
        type=click.IntRange(1),
        help="Workers of one cluster.",
    ),
    click.option(
        "--max-clients",
        default=10_000,
        show_default=True,
        type=click.IntRange(1),
        help="Clients of one cluster, over all its groups.",
    ),
    click.option(
        "--max-active-clusters",
        default=8,
        show_default=True,
        type=click.IntRange(1),
        help="Clusters pending, starting or running at once (more: HTTP 429).",
    ),
    click.option(
        "--max-planned-requests",
        default=10_000_000,
        show_default=True,
        type=click.IntRange(1),
        help="Requests the open-loop schedules of one cluster may plan (rate x duration, "
        "warm-up included); workers hold their share in memory.",
    ),
    click.option(
        "--max-batches-per-s",
        default=20.0,
        show_default=True,
        type=click.FloatRange(min=0.1),
        help="Sample batches one worker may post per second (more: HTTP 429; it retries).",
    ),
]


def operator_options(command: F) -> F:
    """Add the operator's options to a click command."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def operator_policy(
    data_dir: Path,
    *,
    allow_paths: tuple[Path, ...],
    allow_modules: tuple[str, ...],
    allow_inline_code: bool,
    check_timeout_s: float,
    allow_env: tuple[str, ...],
    worker_env: tuple[str, ...],
    allow_targets: tuple[str, ...],
    spawner_presets: tuple[str, ...],
    max_workers: int,
    max_clients: int,
    max_active_clusters: int,
    max_planned_requests: int,
    max_batches_per_s: float,
) -> OperatorPolicy:
    """The policy the options describe; ValueError (one line) for a bad option. The default
    folder, ``DATA_DIR/inputs``, is created by ``serve`` once its store is open."""
    for root in allow_paths:
        if not root.expanduser().is_dir():
            raise ValueError(f"--allow-path {root}: not a folder")
    roots = list(allow_paths) or [data_dir / INPUTS_DIR]
    presets: dict[str, dict[str, Any]] = {}
    for value in spawner_presets:
        try:
            name, path = parse_preset_option(value)
            presets[name] = load_preset(name, path)
        except PresetError as exc:
            raise ValueError(str(exc)) from None
    return OperatorPolicy(
        path_roots=tuple(roots),
        modules=parse_module_names(allow_modules),
        allow_inline_code=allow_inline_code,
        isolate_user_code=True,
        check_timeout_s=check_timeout_s,
        target_env=tuple(allow_env),
        worker_env=tuple(worker_env),
        targets=TargetRules.parse(allow_targets),
        spawner_presets=presets,
        operator_options_open=False,
        limits=Limits(
            max_workers=max_workers,
            max_clients=max_clients,
            max_active_clusters=max_active_clusters,
            max_planned_requests=max_planned_requests,
            max_batches_per_s=max_batches_per_s,
        ),
    )


__all__ = ["INPUTS_DIR", "operator_options", "operator_policy"]
