"""``clientswarm run FILE``: run a cluster on this machine and report its statistics."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from clientswarm.config.loader import load_config_file
from clientswarm.config.models import ClusterConfig
from clientswarm.interactions.registry import build_group_interactions
from clientswarm.metrics.stats import summarize
from clientswarm.reports.export import SampleWriter, open_sample_writer, read_samples
from clientswarm.reports.summary import write_summary
from clientswarm.reports.table import render_summary
from clientswarm.run.mock_target import mock_target
from clientswarm.run.orchestrator import Orchestrator, RunOutcome
from clientswarm.run.progress import show_progress

# A worker whose event loop runs callbacks this late adds that much to the latencies it
# measures: bench/RESULTS.md shows 21 ms of loop lag inflating TTFT p50 by 45 % (256 clients).
LOOP_LAG_BOUND_S = 0.010
T = TypeVar("T")


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
    config: ClusterConfig, *, base_dir: Path, writer: SampleWriter, console: Console
) -> RunOutcome:
    """Run ``config`` with local workers, streaming samples to ``writer``, with live progress.

    The first SIGINT or SIGTERM stops the workers gracefully: what they measured is kept.
    """
    orchestrator = Orchestrator(config, base_dir=base_dir, writer=writer)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, orchestrator.cancel)
    loop.add_signal_handler(signal.SIGTERM, orchestrator.cancel)
    display = asyncio.create_task(show_progress(orchestrator.progress, console))
    try:
        return await orchestrator.run()
    finally:
        display.cancel()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)


def write_results(
    config: ClusterConfig, outcome: RunOutcome, samples_path: Path, output_dir: Path
) -> dict[str, Any]:
    """Summarise the samples file exactly; write summary.json and the config that ran."""
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
def run_command(
    file: Path,
    output: Path | None,
    samples_format: str | None,
    workers: int | None,
    mock: bool,
    mock_args: str,
) -> None:
    """Run the cluster of FILE on this machine and print its statistics."""
    config = load_config_file(file)
    build_group_interactions(config, base_dir=file.parent)  # a bad dataset fails here, not later
    if workers is not None:
        config = config.model_copy(
            update={"spawner": config.spawner.model_copy(update={"workers": workers})}
        )
    output_dir = output or default_output_dir(config)
    fmt = samples_format or config.outputs.samples_format
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))

    output_dir.mkdir(parents=True, exist_ok=True)
    samples_path = output_dir / f"samples.{fmt}"

    async def main() -> tuple[ClusterConfig, RunOutcome]:
        if not mock:
            return config, await run_cluster(
                config, base_dir=file.parent, writer=writer, console=console
            )
        async with mock_target(mock_args) as url:
            console.print(f"simulator target at {url}", style="dim")
            target = config.target.model_copy(update={"url": url})
            ran = config.model_copy(update={"target": target})
            return ran, await run_cluster(ran, base_dir=file.parent, writer=writer, console=console)

    with open_sample_writer(samples_path, fmt) as writer:
        ran, outcome = _run_loop(main())
    summary = write_results(ran, outcome, samples_path, output_dir)
    render_summary(summary, console)
    console.print(f"results: {output_dir}/summary.json, {samples_path}")
    sys.exit(0 if outcome.status == "completed" else 1)


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop (the default asyncio loop where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        return asyncio.run(coro)
    return uvloop.run(coro)
