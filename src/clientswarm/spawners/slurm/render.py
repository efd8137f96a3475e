"""What the Slurm spawner submits, rendered purely: the batch script and the slurmrestd job.

One job array per cluster, one array task per worker. Task ``i`` runs
``python -m clientswarm.worker --service URL --cluster ID --index $SLURM_ARRAY_TASK_ID`` and
writes to ``<log_dir>/worker-<i>.log``. The cluster token is never in the script: it reaches
the job through its environment (``sbatch --export=NAME,…`` naming exactly the workers'
variables, or the ``environment`` of the slurmrestd job description); the workers get only the
environment the operator's policy gives them, never the service's whole one.

slurmrestd does not read ``#SBATCH`` lines, so the REST job description carries the same
options as fields (``partition``, ``time_limit``, …); the script is the same either way.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from clientswarm.config.spawners import SlurmSpawnerConfig
from clientswarm.protocol.internal import TOKEN_ENV
from clientswarm.protocol.spawning import ClusterLaunch

REDACTED = "<redacted>"
SCRIPT_NAME = "clientswarm.sbatch"
"""The script is also written to ``<log_dir>/clientswarm.sbatch`` for a user to read."""


# sbatch option names (long and short) → slurmrestd v0.0.38 job fields, for ``extra_sbatch``.
_REST_FIELDS = {
    "job-name": "name",
    "J": "name",
    "time": "time_limit",
    "t": "time_limit",
    "mem": "memory_per_node",
    "output": "standard_output",
    "o": "standard_output",
    "error": "standard_error",
    "e": "standard_error",
    "chdir": "current_working_directory",
    "D": "current_working_directory",
    "exclude": "exclude_nodes",
    "x": "exclude_nodes",
    "C": "constraints",
    "constraint": "constraints",
    "w": "nodelist",
    "p": "partition",
    "A": "account",
    "q": "qos",
    "c": "cpus_per_task",
    "N": "nodes",
    "n": "tasks",
    "ntasks": "tasks",
    "G": "gpus",
    "L": "licenses",
    "d": "dependency",
    "ntasks-per-node": "tasks_per_node",
}

# A flag without a value is sent as true, except where slurmrestd wants a word instead.
_FLAG_VALUES = {"exclusive": "exclusive"}


def log_dir_of(launch: ClusterLaunch, config: SlurmSpawnerConfig) -> str:
    """Where array tasks write their output: ``log_dir`` of the options, else the service's."""
    return config.log_dir or launch.log_dir


def service_url_of(launch: ClusterLaunch, config: SlurmSpawnerConfig) -> str:
    """How compute nodes reach the service: ``advertise_url``, else the service's own URL."""
    return config.advertise_url or launch.service_url


def python_of(launch: ClusterLaunch, config: SlurmSpawnerConfig) -> str:
    """The interpreter on the compute nodes: ``python`` when set, else the service's own."""
    return config.python or launch.python


NO_REQUEUE = "--no-requeue"
"""A worker's task is never requeued (most clusters requeue by default): a task of a failed
node ends with Slurm's reason, which the service reports, instead of returning to the queue
and starting later as a worker the service would refuse. ``extra_sbatch: ["--requeue"]``
overrides it."""


def output_pattern(log_dir: str) -> str:
    """sbatch ``--output`` for ``<log_dir>/worker-<task>.log`` (a ``%`` in the dir escaped)."""
    return str(PurePosixPath(log_dir.replace("%", "%%")) / "worker-%a.log")


def sbatch_options(launch: ClusterLaunch, config: SlurmSpawnerConfig) -> list[str]:
    """The ``#SBATCH`` options set by clientswarm (unquoted), before ``extra_sbatch``."""
    options = [
        f"--job-name=clientswarm-{launch.cluster_id}",
        f"--array=0-{launch.workers - 1}",
        f"--output={output_pattern(log_dir_of(launch, config))}",
        NO_REQUEUE,
    ]
    optional: list[tuple[str, object | None]] = [
        ("partition", config.partition),
        ("account", config.account),
        ("qos", config.qos),
        ("time", config.time_limit),
        ("cpus-per-task", config.cpus_per_worker),
        ("mem", config.mem_per_worker),
        ("nodes", config.nodes),
        ("ntasks-per-node", config.ntasks_per_node),
    ]
    options.extend(f"--{name}={value}" for name, value in optional if value is not None)
    return options


def worker_command(launch: ClusterLaunch, config: SlurmSpawnerConfig) -> str:
    """The line that runs the worker of this array task (in the container if one is set)."""
    argv = [python_of(launch, config), "-m", "clientswarm.worker"]
    argv += ["--service", service_url_of(launch, config), "--cluster", launch.cluster_id]
    if config.container:
        argv = ["apptainer", "exec", config.container, *argv]
    return f'exec {shlex.join(argv)} --index "$SLURM_ARRAY_TASK_ID"'


def render_sbatch(launch: ClusterLaunch, config: SlurmSpawnerConfig) -> str:
    """The batch script of the cluster's job array. Pure; holds no secret."""
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH {shlex.quote(option)}" for option in sbatch_options(launch, config)]
    lines += [f"#SBATCH {option}" for option in config.extra_sbatch]  # sbatch syntax already
    lines.append("set -euo pipefail")
    lines += config.setup
    lines.append(worker_command(launch, config))
    return "\n".join(lines) + "\n"


def _extra_field(line: str) -> tuple[str, Any]:
    """``--constraint=gpu`` → ``("constraints", "gpu")``; ``--hold`` → ``("hold", True)``."""
    option = line.strip()
    if option.startswith("--"):
        name, sep, value = option[2:].partition("=")
        if not sep:
            name, _, value = name.partition(" ")
    else:
        name, value = option[1:2], option[2:].lstrip(" =")
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    field = _REST_FIELDS.get(name, name.replace("-", "_"))
    return field, (value if value else _FLAG_VALUES.get(field, True))


def rest_environment(environment: Mapping[str, str], api_version: str) -> Any:
    """The job's ``environment``: a dict up to openapi v0.0.38, ``KEY=VALUE`` strings after."""
    if api_version in ("v0.0.36", "v0.0.37", "v0.0.38"):
        return dict(environment)
    return [f"{key}={value}" for key, value in environment.items()]


PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
"""What a slurmrestd job of ``clientswarm run`` gets from its environment (a REST job inherits
nothing, unlike ``sbatch``); a shared service's jobs get what its policy gives workers."""


def rest_environment_names(launch: ClusterLaunch) -> list[str]:
    """The variables a slurmrestd job gets besides the token, by name."""
    return sorted(launch.env) if launch.env is not None else list(PASSTHROUGH_ENV)


def rest_worker_env(launch: ClusterLaunch, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables a slurmrestd job gets besides the token: the policy's (``launch.env``),
    else :data:`PASSTHROUGH_ENV` of ``environ`` when set."""
    if launch.env is not None:
        return dict(launch.env)
    return {name: environ[name] for name in PASSTHROUGH_ENV if environ.get(name)}


def export_option(launch: ClusterLaunch) -> str:
    """sbatch's ``--export``: ``ALL`` when the workers inherit this process's environment
    (``clientswarm run``), else exactly the variables of the workers' environment, by name
    (their values reach sbatch through its own environment, never its command line)."""
    if launch.env is None:
        return "--export=ALL"
    return "--export=" + ",".join(sorted({*launch.env, TOKEN_ENV}))


def job_environment(token: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a slurmrestd job: the workers' variables (``environ``, as the
    operator's policy gave them) and the token."""
    return {**environ, TOKEN_ENV: token}


def rest_job(
    launch: ClusterLaunch,
    config: SlurmSpawnerConfig,
    environment: Mapping[str, str],
    api_version: str = "v0.0.38",
) -> dict[str, Any]:
    """The ``job`` of ``POST /slurm/<ver>/job/submit``: the options of the script as fields."""
    log_dir = log_dir_of(launch, config)
    job: dict[str, Any] = {
        "name": f"clientswarm-{launch.cluster_id}",
        "array": f"0-{launch.workers - 1}",
        "standard_output": output_pattern(log_dir),
        "current_working_directory": log_dir,
        "environment": rest_environment(environment, api_version),
        "requeue": False,
    }
    optional: list[tuple[str, object | None]] = [
        ("partition", config.partition),
        ("account", config.account),
        ("qos", config.qos),
        ("time_limit", config.time_limit),
        ("cpus_per_task", config.cpus_per_worker),
        ("memory_per_node", config.mem_per_worker),
        ("nodes", config.nodes),
        ("tasks_per_node", config.ntasks_per_node),
    ]
    job.update((name, value) for name, value in optional if value is not None)
    job.update(_extra_field(line) for line in config.extra_sbatch)
    return job


def render_submission(launch: ClusterLaunch, config: SlurmSpawnerConfig) -> str:
    """How the cluster is submitted (a comment header, token redacted), then the script."""
    log_dir = log_dir_of(launch, config)
    head = [
        f"# clientswarm cluster {launch.cluster_id}: {launch.workers} worker(s) as one Slurm "
        "job array, one task per worker",
    ]
    if config.submit_via == "rest" and config.rest is not None:
        rest = config.rest
        path = f"/slurm/{rest.api_version}/job/submit"
        where = rest.url.rstrip("/") + path if rest.url else f"{path} on unix:{rest.socket}"
        head.append(f"# submitted with: POST {where}")
        if rest.jwt_env:
            user = rest.user_name or "<this user>"
            head.append(f"#   headers: X-SLURM-USER-NAME: {user}, X-SLURM-USER-TOKEN: {REDACTED}")
        shown = {name: f"${name}" for name in rest_environment_names(launch)}
        shown[TOKEN_ENV] = REDACTED
        job = rest_job(launch, config, shown, rest.api_version)
        head.append('#   body: {"script": <the script below>, "job": <this job>}')
        head += [f"#   {line}" for line in json.dumps(job, indent=2).splitlines()]
        head.append("#   ($NAME: that variable of the service's environment, when set)")
    else:
        script = shlex.quote(str(PurePosixPath(log_dir) / SCRIPT_NAME))
        head.append(
            f"# submitted with: {TOKEN_ENV}={REDACTED} sbatch --parsable "
            f"{shlex.quote(export_option(launch))} {script}"
        )
    return "\n".join(head) + "\n" + render_sbatch(launch, config)
