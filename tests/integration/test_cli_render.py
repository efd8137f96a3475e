"""`clientswarm render` and `run --dry-run` show what would be submitted, and start nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "clientswarm")
EXAMPLE = Path(__file__).parents[2] / "examples" / "quickstart.yaml"


def test_render_prints_the_local_commands_without_the_token() -> None:
    done = subprocess.run(
        [CLI, "render", str(EXAMPLE), "--service", "http://10.0.0.1:8080"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "# cluster <cluster-id>: 2 local worker process(es)"
    assert len(lines) == 3
    assert all("--service http://10.0.0.1:8080" in line for line in lines[1:])
    assert all(line.startswith("CLIENTSWARM_WORKER_TOKEN=<redacted> ") for line in lines[1:])


def test_run_dry_run_starts_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [CLI, "run", str(EXAMPLE), "--dry-run", "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--index 1" in done.stdout
    assert not (tmp_path / "out").exists()


def test_render_prints_the_sbatch_script_of_a_slurm_cluster(tmp_path: Path) -> None:
    config = tmp_path / "slurm.yaml"
    config.write_text(
        "name: hpc\n"
        "target: {url: 'http://10.0.0.9:8000'}\n"
        "spawner: {kind: slurm, workers: 4, partition: gpu, account: proj, time_limit: '1:00:00',"
        " setup: ['module load python/3.11'], python: /shared/venv/bin/python}\n"
        "groups: [{name: g, clients: 8, interaction: {kind: hello}, stop: {duration_s: 60}}]\n"
    )
    done = subprocess.run(
        [CLI, "render", str(config), "--service", "http://login01:8080"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = done.stdout
    for line in (
        "#SBATCH --array=0-3",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        "#SBATCH --time=1:00:00",
        "module load python/3.11",
    ):
        assert line in script.splitlines(), line
    assert (
        "exec /shared/venv/bin/python -m clientswarm.worker --service http://login01:8080" in script
    )
    assert "<redacted>" in script and "CLIENTSWARM_WORKER_TOKEN=" not in script.replace(
        "=<redacted>", ""
    )
