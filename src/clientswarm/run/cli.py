"""``clientswarm run FILE``: run a cluster on this machine and report its statistics."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from clientswarm.config.loader import load_config_file
from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.stats import summarize
from clientswarm.reports.export import open_sample_writer, read_samples
from clientswarm.reports.summary import write_summary
from clientswarm.reports.table import render_summary
from clientswarm.run.mock_target import mock_target
from clientswarm.run.orchestrator import Orchestrator, RunOutcome
from clientswarm.run.progress import show_progress

LOOP_LAG_BOUND_S = 0.05


def default_output_dir(config: ClusterConfig) -> Path:
    """``results/<name>-<YYYYmmdd-HHMMSS>`` unless the config names one."""
    if config.outputs.dir:
        return Path(config.outputs.dir)
    return Path("results") / f"{config.name}-{datetime.now():%Y%m%d-%H%M%S}"


def worker_warnings(outcome: RunOutcome) -> list[str]:
    """Warnings about workers: deaths and overloaded event loops."""
    lines = []
    for w in outcome.workers:
        if w.state == "failed":
            lines.append(f"worker {w.index} failed: {w.error or 'no reason given'}")
        elif w.loop_lag_p99_s > LOOP_LAG_BOUND_S:
            lines.append(
                f"worker {w.index}: event-loop lag p99 {w.loop_lag_p99_s * 1e3:.0f} ms > "
                f"{LOOP_LAG_BOUND_S * 1e3:.0f} ms; its timings include client-side delay: "
                "use more workers or fewer clients per worker"
            )
    return lines


async def run_cluster(
    config: ClusterConfig, *, base_dir: Path, output_dir: Path, samples_format: str,
    console: Console,
) -> dict[str, Any]:
    """Run ``config`` with local workers; write summary.json and the samples; return the summary."""
    output_dir.mkdir(parents=True, exist_ok=True)
    samples_path = output_dir / f"samples.{samples_format}"
    writer = open_sample_writer(samples_path, samples_format)
    orchestrator = Orchestrator(config, base_dir=base_dir, writer=writer)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, orchestrator.cancel)
    loop.add_signal_handler(signal.SIGTERM, orchestrator.cancel)
    display = asyncio.create_task(show_progress(orchestrator.progress, console))
    try:
        outcome = await orchestrator.run()
    finally:
        display.cancel()
        writer.close()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    summary = summarize(
        read_samples(samples_path),
        cluster={"id": outcome.cluster_id, "name": config.name, "status": outcome.status},
        slo=config.slo,
        group_order=[g.name for g in config.groups],
        extra_warnings=worker_warnings(outcome),
    )
    summary["workers"] = [w.as_dict() for w in outcome.workers]
    summary["samples_file"] = samples_path.name
    write_summary(output_dir / "summary.json", summary)
    (output_dir / "config.json").write_text(config.model_dump_json(indent=2))
    return summary


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Results directory.")
@click.option(
    "--samples-format", type=click.Choice(["jsonl", "parquet", "csv"]), default=None,
    help="Format of the raw samples file (default: outputs.samples_format of the config).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Override spawner.workers.")
@click.option(
    "--mock", is_flag=True,
    help="Start the built-in simulator on a free loopback port and use it as the target.",
)
@click.option("--mock-args", default="", help="Options for the simulator, e.g. '--ttft-ms 50'.")
def run_command(
    file: Path, output: Path | None, samples_format: str | None, workers: int | None,
    mock: bool, mock_args: str,
) -> None:
    """Run the cluster of FILE on this machine and print its statistics."""
    config = load_config_file(file)
    if workers is not None:
        config = config.model_copy(
            update={"spawner": config.spawner.model_copy(update={"workers": workers})}
        )
    output_dir = output or default_output_dir(config)
    fmt = samples_format or config.outputs.samples_format
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))

    async def main() -> dict[str, Any]:
        if not mock:
            return await run_cluster(
                config, base_dir=file.parent, output_dir=output_dir, samples_format=fmt,
                console=console,
            )
        async with mock_target(mock_args) as url:
            console.print(f"simulator target at {url}", style="dim")
            target = config.target.model_copy(update={"url": url})
            return await run_cluster(
                config.model_copy(update={"target": target}), base_dir=file.parent,
                output_dir=output_dir, samples_format=fmt, console=console,
            )

    try:
        import uvloop

        summary = uvloop.run(main())
    except ImportError:  # pragma: no cover
        summary = asyncio.run(main())
    render_summary(summary, console)
    console.print(f"results: {output_dir}/summary.json, {output_dir}/{summary['samples_file']}")
    status = summary["cluster"]["status"]
    sys.exit(0 if status == "completed" else 1)
