"""``clientswarm run FILE``: run a cluster on this machine and report its statistics.

One code path: ``run`` starts the very service ``clientswarm serve`` runs, in this process
(see :mod:`clientswarm.run.local`). This module stays light: before it even validates the
configuration it starts the local workers it asks for as standbys, so their start-up overlaps
the validation and the service's own (the first request goes out about a second sooner).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clientswarm.imports import collections_paused
from clientswarm.spawners.standby import StandbyWorkers, planned_local_workers

if TYPE_CHECKING:
    from clientswarm.config.models import ClusterConfig


def default_output_dir(config: ClusterConfig) -> Path:
    """``results/<name>-<YYYYmmdd-HHMMSS>`` unless the config names one."""
    if config.outputs.dir:
        return Path(config.outputs.dir)
    return Path("results") / f"{config.name}-{datetime.now():%Y%m%d-%H%M%S}"


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Results directory.")
@click.option(
    "--samples-format",
    type=click.Choice(["jsonl", "parquet", "csv"]),
    default=None,
    help="Format of the raw samples file (default: outputs.samples_format of the config).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Override spawner.workers.")
@click.option(
    "--mock",
    is_flag=True,
    help="Start the built-in simulator on a free loopback port and use it as the target.",
)
@click.option("--mock-args", default="", help="Options for the simulator, e.g. '--ttft-ms 50'.")
@click.option("--dry-run", is_flag=True, help="Print what the spawner would submit, then stop.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the in-process service listens on (compute nodes must reach it).",
)
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Its port (0: any free).")
def run_command(
    file: Path,
    output: Path | None,
    samples_format: str | None,
    workers: int | None,
    mock: bool,
    mock_args: str,
    dry_run: bool,
    host: str,
    port: int,
) -> None:
    """Run the cluster of FILE on this machine and print its statistics."""
    with tempfile.TemporaryDirectory(prefix="clientswarm-standby-") as scratch:
        early = 0 if dry_run else planned_local_workers(file, workers)
        standby = StandbyWorkers.start(sys.executable, early, Path(scratch)) if early else None
        try:
            with collections_paused():
                from clientswarm.config.loader import load_config_file

            config = load_config_file(file)
            if workers is not None:
                config = config.model_copy(
                    update={"spawner": config.spawner.model_copy(update={"workers": workers})}
                )
            status = run_config(
                config, file, output, samples_format, mock, mock_args, dry_run, host, port, standby
            )
        finally:
            if standby is not None:
                standby.close()
    if status is not None:
        sys.exit(0 if status == "completed" else 1)


def run_config(
    config: ClusterConfig,
    file: Path,
    output: Path | None,
    samples_format: str | None,
    mock: bool,
    mock_args: str,
    dry_run: bool,
    host: str,
    port: int,
    standby: StandbyWorkers | None,
) -> str | None:
    """The body of ``clientswarm run`` once the workers are starting: the cluster's final
    status (``None`` after a dry run)."""
    with collections_paused():
        from clientswarm.config.paths import FileScope
        from clientswarm.interactions.registry import build_group_interactions
        from clientswarm.run.early import start_early

    # A bad dataset fails here, not later.
    build_group_interactions(config, files=FileScope.anywhere(file.parent))
    if dry_run:
        from clientswarm.spawners.registry import render_submission

        click.echo(render_submission(config, service_url="<in-process service URL>"), nl=False)
        return None
    output_dir = output or default_output_dir(config)
    fmt = samples_format or config.outputs.samples_format
    output_dir.mkdir(parents=True, exist_ok=True)
    base_dir = file.parent.resolve()
    # The clients start while the service loads (below), unless the simulator is the target.
    early = None
    if not mock:
        early = start_early(
            config,
            base_dir=base_dir,
            output_dir=output_dir,
            host=host,
            port=port,
            standby=standby,
        )
    with collections_paused():
        from clientswarm.run.local import run_locally  # the service's whole stack

    summary = run_locally(
        config,
        base_dir=base_dir,
        output_dir=output_dir,
        fmt=fmt,
        mock_args=mock_args if mock else None,
        host=host,
        port=port,
        standby=standby,
        early=early,
    )
    from clientswarm.reports.table import render_summary, report_console  # after the run: rich

    console = report_console()
    render_summary(summary, console)
    console.print(f"results: {output_dir}/summary.json, {output_dir}/{summary['samples_file']}")
    status: str = summary["cluster"]["status"]
    if status == "failed":
        console.print(f"the run failed: {summary['cluster'].get('reason')}", style="bold red")
    return status
