"""What a posted configuration may reach: the operator's decision, made on ``serve``'s command line.

A configuration posted to a shared service is untrusted data. :class:`OperatorPolicy` holds
everything the operator allowed — the folders path fields may resolve in, the modules user code
may come from, the environment variables a target's credentials may be read from and the ones
workers get, the targets the service itself may contact, the spawner presets, and the limits —
and nothing in a posted configuration can widen it (:mod:`clientswarm.service.admission` checks
a configuration against it). ``clientswarm run`` — one local user, their own files — runs with
:meth:`OperatorPolicy.unrestricted`.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import FileScope
from clientswarm.service.targets import TargetRules

BASE_WORKER_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
"""What every worker of a shared service gets from the service's environment, when set."""

SERVICE_ONLY_ENV = ("CLIENTSWARM_API_TOKEN",)
"""Never passed to a worker, whatever the policy: the service's own secrets."""


@dataclass(frozen=True)
class Limits:
    """How much one posted configuration may ask for (``None``: no limit)."""

    max_workers: int | None = None
    """Workers of one cluster."""
    max_clients: int | None = None
    """Clients of one cluster, over all its groups."""
    max_active_clusters: int | None = None
    """Clusters pending, starting or running at once."""
    max_planned_requests: int | None = None
    """Requests the open-loop schedules of one cluster may plan (warm-up included): each worker
    holds its share of them in memory."""
    max_batches_per_s: float | None = None
    """Sample batches one worker may post per second (more: 429, the worker retries)."""


@dataclass(frozen=True)
class OperatorPolicy:
    """Everything a posted configuration may reach; only the operator sets it."""

    path_roots: tuple[Path, ...] | None = None
    """Folders path fields may resolve in (after symlinks and ``..``); None: anywhere."""
    modules: tuple[str, ...] | None = None
    """Modules (and their submodules) ``package.module:Name`` interactions may import;
    None: any importable module."""
    allow_inline_code: bool = False
    """Accept the source of ``file:`` interactions with a cluster and ship it to workers."""
    isolate_user_code: bool = False
    """Check user interactions in a short-lived subprocess, never by importing them here."""
    check_timeout_s: float = 30.0
    """How long that subprocess may take before it is killed and the configuration refused."""
    target_env: tuple[str, ...] | None = None
    """Names (or ``fnmatch`` patterns) of the variables a target's credentials may be read
    from (``api_key_env``, ``headers_from_env``); None: any."""
    worker_env: tuple[str, ...] | None = None
    """Variables passed on to every worker besides :data:`BASE_WORKER_ENV` and the target's
    credentials; None: the whole environment (``clientswarm run``)."""
    targets: TargetRules | None = None
    """Where targets may be; None: anywhere."""
    spawner_presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Operator presets of spawner options, by name (already validated)."""
    operator_options_open: bool = True
    """Whether a configuration may itself set the spawner options that run code or reach
    credentials (``setup``, ``image``, ``env``, …); a shared service takes them from presets."""
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def unrestricted(cls) -> OperatorPolicy:
        """``clientswarm run``: one local user with their own files, code and environment."""
        return cls()

    @property
    def shared(self) -> bool:
        """Whether this is a shared service's policy (anything is restricted)."""
        return self != OperatorPolicy.unrestricted()

    def file_scope(self, base_dir: Path | None = None) -> FileScope:
        """Where a posted configuration's paths resolve: anywhere (from ``base_dir``), or only
        inside the allowed folders (relative paths from the first one)."""
        if self.path_roots is None:
            return FileScope.anywhere(base_dir or Path.cwd())
        return FileScope.confined(self.path_roots)

    def env_name_allowed(self, name: str) -> bool:
        """Whether a configuration may read a target credential from variable ``name``."""
        if name in SERVICE_ONLY_ENV or name.startswith("CLIENTSWARM_"):
            return False  # the service's and the workers' own tokens
        if self.target_env is None:
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.target_env)

    def module_allowed(self, module: str) -> bool:
        """Whether a ``package.module:Name`` interaction may import ``module``."""
        if self.modules is None:
            return True
        return any(
            module == allowed or module.startswith(allowed + ".") for allowed in self.modules
        )

    def worker_environment(
        self, config: ClusterConfig, environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The environment the workers of ``config`` start with (the cluster token is added by
        the spawner): on a shared service only :data:`BASE_WORKER_ENV`, the operator's
        ``--worker-env`` and the variables the target's credentials are read from."""
        source = os.environ if environ is None else environ
        if self.worker_env is None:
            return {k: v for k, v in source.items() if k not in SERVICE_ONLY_ENV}
        credentials = [n for t in config.target_map().values() for n in t.env_names]
        names = [*BASE_WORKER_ENV, *self.worker_env, *credentials]
        return {
            name: source[name]
            for name in dict.fromkeys(names)
            if name in source and name not in SERVICE_ONLY_ENV
        }


def parse_module_names(values: Sequence[str]) -> tuple[str, ...]:
    """``--allow-module`` values, checked to be dotted module names."""
    for value in values:
        parts = value.split(".")
        if not all(part.isidentifier() for part in parts):
            raise ValueError(f"--allow-module {value!r}: not a module name such as mypkg.journeys")
    return tuple(values)


__all__ = [
    "BASE_WORKER_ENV",
    "SERVICE_ONLY_ENV",
    "Limits",
    "OperatorPolicy",
    "parse_module_names",
]
