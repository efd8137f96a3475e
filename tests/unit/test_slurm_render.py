"""What the Slurm spawner submits, rendered purely and checked against golden files.

Regenerate the golden files after an intended change with
``CLIENTSWARM_UPDATE_GOLDEN=1 pytest tests/unit/test_slurm_render.py`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clientswarm.config.spawners import LocalSpawnerConfig, SlurmRestConfig, SlurmSpawnerConfig
from clientswarm.errors import SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch
from clientswarm.spawners.slurm import SlurmSpawner, render_sbatch
from clientswarm.spawners.slurm.render import job_environment, rest_job, rest_worker_env
from clientswarm.spawners.slurm.rest import rest_headers

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "slurm"
TOKEN = "very-secret-token"


def launch(options: dict[str, Any] | None = None, **overrides: Any) -> ClusterLaunch:
    fields: dict[str, Any] = {
        "cluster_id": "abc123",
        "service_url": "http://10.0.0.5:8080",
        "token": TOKEN,
        "log_dir": "/shared/clientswarm/logs/abc123",
        "python": "/opt/venv/bin/python",
        "options": SlurmSpawnerConfig.model_validate(
            {"kind": "slurm", "workers": 4, **(options or {})}
        ),
    }
    fields.update(overrides)
    return ClusterLaunch(**fields)


def config_of(spec: ClusterLaunch) -> SlurmSpawnerConfig:
    assert isinstance(spec.options, SlurmSpawnerConfig)
    return spec.options


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CLIENTSWARM_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with CLIENTSWARM_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"
    assert TOKEN not in text


ALL_OPTIONS = {
    "workers": 4,
    "partition": "gpu",
    "account": "proj-42",
    "qos": "high",
    "time_limit": "1-12:00:00",
    "cpus_per_worker": 4,
    "mem_per_worker": "8G",
    "nodes": 1,
    "ntasks_per_node": 1,
    "extra_sbatch": ["#SBATCH --constraint=a100", "--exclusive", "-w node[01-02]"],
    "python": "python3.11",
    "advertise_url": "http://login01.cluster:8080",
    "log_dir": "/scratch/alice/clientswarm",
}

CONTAINER_SETUP = {
    "setup": [
        "module load apptainer/1.2",
        "source /opt/venv/bin/activate",
        'export HF_HOME="$SCRATCH/hf"',
    ],
    "container": "/images/clientswarm latest.sif",
}

REST = {
    "submit_via": "rest",
    "partition": "debug",
    "time_limit": "30",
    "extra_sbatch": ["--constraint=a100", "--exclusive"],
    "rest": {"socket": "/run/slurmrestd/slurmrestd.socket", "jwt_env": "SLURM_JWT"},
}


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("minimal.sbatch", {}),
        ("all_options.sbatch", ALL_OPTIONS),
        ("container_setup.sbatch", CONTAINER_SETUP),
    ],
)
def test_script_matches_golden_file(name: str, options: dict[str, Any]) -> None:
    spec = launch(options)
    assert_golden(name, render_sbatch(spec, config_of(spec)))


def test_render_says_how_it_is_submitted_with_the_token_redacted() -> None:
    spawner = SlurmSpawner()
    cli = spawner.render(launch())
    assert_golden("submit_cli.sbatch", cli)
    assert "CLIENTSWARM_WORKER_TOKEN=<redacted> sbatch --parsable --export=ALL" in cli
    rest = spawner.render(launch(REST))
    assert_golden("submit_rest.sbatch", rest)
    assert "POST /slurm/v0.0.38/job/submit on unix:/run/slurmrestd/slurmrestd.socket" in rest
    assert '"CLIENTSWARM_WORKER_TOKEN": "<redacted>"' in rest
    assert "X-SLURM-USER-TOKEN: <redacted>" in rest


def test_minimal_script_runs_the_worker_of_its_array_task() -> None:
    spec = launch()
    script = render_sbatch(spec, config_of(spec))
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=clientswarm-abc123\n")
    assert "#SBATCH --array=0-3\n" in script
    assert "#SBATCH --output=/shared/clientswarm/logs/abc123/worker-%a.log\n" in script
    assert script.endswith(
        "exec /opt/venv/bin/python -m clientswarm.worker --service http://10.0.0.5:8080 "
        '--cluster abc123 --index "$SLURM_ARRAY_TASK_ID"\n'
    )
    assert TOKEN not in script and "CLIENTSWARM_WORKER_TOKEN" not in script


def test_sbatch_lines_come_before_the_first_command() -> None:
    # sbatch stops reading #SBATCH lines at the first command.
    spec = launch({**ALL_OPTIONS, **CONTAINER_SETUP})
    lines = render_sbatch(spec, config_of(spec)).splitlines()
    first_command = lines.index("set -euo pipefail")
    assert all(line.startswith("#") for line in lines[:first_command])
    assert not any(line.startswith("#SBATCH") for line in lines[first_command:])
    assert lines[first_command + 1 : first_command + 4] == CONTAINER_SETUP["setup"]


def test_python_is_the_services_unless_the_options_name_one() -> None:
    spec = launch()
    assert "exec /opt/venv/bin/python -m" in render_sbatch(spec, config_of(spec))
    spec = launch({"python": "/apps/python3"})
    assert "exec /apps/python3 -m" in render_sbatch(spec, config_of(spec))


def test_odd_values_are_quoted_for_sbatch_and_for_bash() -> None:
    odd = {
        "partition": "part #1",
        "log_dir": "/shared/my logs/100%",
        "advertise_url": "http://host:8080/a b?x=$(touch /tmp/pwned)",
        "python": "/opt/my env/bin/python",
        "container": "/images/it's.sif",
    }
    spec = launch(odd, cluster_id="c-1")
    script = render_sbatch(spec, config_of(spec))
    sbatch_args = [
        shlex.split(line.removeprefix("#SBATCH "))
        for line in script.splitlines()
        if line.startswith("#SBATCH")
    ]
    assert ["--partition=part #1"] in sbatch_args
    assert ["--output=/shared/my logs/100%%/worker-%a.log"] in sbatch_args  # %% is a literal %
    exec_line = script.splitlines()[-1]
    assert shlex.split(exec_line) == [
        "exec",
        "apptainer",
        "exec",
        "/images/it's.sif",
        "/opt/my env/bin/python",
        "-m",
        "clientswarm.worker",
        "--service",
        "http://host:8080/a b?x=$(touch /tmp/pwned)",
        "--cluster",
        "c-1",
        "--index",
        "$SLURM_ARRAY_TASK_ID",
    ]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_rendered_script_runs_under_bash_with_the_token_from_the_environment(
    tmp_path: Path,
) -> None:
    # A stand-in "python" that prints what it was given; the script runs as Slurm would run it.
    fake = tmp_path / "fake python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "print(repr(sys.argv[1:]))\n"
        "print('token', os.environ.get('CLIENTSWARM_WORKER_TOKEN'))\n"
    )
    fake.chmod(0o755)
    spec = launch(
        {"python": str(fake), "setup": ["echo setting up", "cd /"]},
        service_url="http://127.0.0.1:1/a b",
    )
    script = tmp_path / "job.sbatch"
    script.write_text(render_sbatch(spec, config_of(spec)))
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "2", "CLIENTSWARM_WORKER_TOKEN": TOKEN}
    done = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "setting up",
        repr(
            [
                "-m",
                "clientswarm.worker",
                "--service",
                "http://127.0.0.1:1/a b",
                "--cluster",
                "abc123",
                "--index",
                "2",
            ]
        ),
        f"token {TOKEN}",
    ]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_a_failing_setup_line_stops_the_script(tmp_path: Path) -> None:
    spec = launch({"python": "/bin/echo", "setup": ["false"]})
    script = tmp_path / "job.sbatch"
    script.write_text(render_sbatch(spec, config_of(spec)))
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=30)
    assert done.returncode == 1
    assert done.stdout == b""


def test_rest_job_carries_the_options_and_the_token_in_its_environment() -> None:
    spec = launch(REST)
    config = config_of(spec)
    # clientswarm run (no policy): a REST job gets the pass-through variables, not the rest.
    environ = {"PATH": "/usr/bin:/bin", "HOME": "/home/alice", "SECRET": "x"}
    env = job_environment(TOKEN, rest_worker_env(spec, environ))
    job = rest_job(spec, config, env)
    assert job == {
        "name": "clientswarm-abc123",
        "array": "0-3",
        "standard_output": "/shared/clientswarm/logs/abc123/worker-%a.log",
        "current_working_directory": "/shared/clientswarm/logs/abc123",
        "environment": {
            "PATH": "/usr/bin:/bin",
            "HOME": "/home/alice",
            "CLIENTSWARM_WORKER_TOKEN": TOKEN,
        },
        "requeue": False,  # a task of a failed node ends; it never comes back later
        "partition": "debug",
        "time_limit": "30",
        "cpus_per_task": 1,
        "constraints": "a100",
        "exclusive": "exclusive",  # what slurmrestd v0.0.38 takes for the bare flag
    }
    newer = rest_job(spec, config, env, api_version="v0.0.40")
    assert newer["environment"] == [
        "PATH=/usr/bin:/bin",
        "HOME=/home/alice",
        f"CLIENTSWARM_WORKER_TOKEN={TOKEN}",
    ]


def test_jwt_headers_are_sent_only_when_the_site_uses_one() -> None:
    socket_only = SlurmRestConfig(socket="/run/slurmrestd.socket")
    assert rest_headers(socket_only, {}, "alice") == {"Accept": "application/json"}
    jwt = SlurmRestConfig(url="http://head:6820", jwt_env="SLURM_JWT")
    assert rest_headers(jwt, {"SLURM_JWT": "eyJhbGc"}, "alice") == {
        "Accept": "application/json",
        "X-SLURM-USER-NAME": "alice",
        "X-SLURM-USER-TOKEN": "eyJhbGc",
    }
    named = SlurmRestConfig(url="http://head:6820", jwt_env="SLURM_JWT", user_name="svc")
    assert rest_headers(named, {"SLURM_JWT": "t"}, "alice")["X-SLURM-USER-NAME"] == "svc"
    with pytest.raises(SpawnerError, match="SLURM_JWT is not set"):
        rest_headers(jwt, {}, "alice")


def test_options_of_another_kind_are_a_spawner_error() -> None:
    local = dataclasses.replace(launch(), options=LocalSpawnerConfig(workers=4))
    with pytest.raises(SpawnerError, match="abc123 has local spawner options, not Slurm"):
        SlurmSpawner().render(local)
