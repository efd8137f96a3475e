"""``clientswarm run FILE``: run a cluster on this machine and report its statistics.

One code path: ``run`` starts the very service ``clientswarm serve`` runs, in this process
(see :mod:`clientswarm.run.local`). This module stays light: once the configuration is valid
it starts the workers (:mod:`clientswarm.run.start`), and only then loads the service's code,
so that the workers load theirs meanwhile.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from clientswarm.imports import collections_paused

if TYPE_CHECKING:
    from rich.console import Console

    from clientswarm.config.models import ClusterConfig
    from clientswarm.config.paths import FileScope


def output_dir_of(config: ClusterConfig, output: Path | None, *, overwrite: bool) -> Path:
    """The run's results directory, made ready before anything starts: ``--output``, else
    the config's ``outputs.dir`` (refused when it holds an earlier run, unless
    ``overwrite``), else a new ``results/<name>-<YYYYmmdd-HHMMSS>[-N]`` of its own.
    ConfigError (exit 2, one line) when it cannot be used."""
    from clientswarm.outputs import new_run_dir, prepare_run_dir

    if output is not None:
        return prepare_run_dir(output, overwrite=overwrite)
    if config.outputs.dir:
        return prepare_run_dir(Path(config.outputs.dir), overwrite=overwrite, label="outputs.dir")
    return new_run_dir(Path("results"), config.name)


@dataclass(frozen=True)
class RunOptions:
    """What ``clientswarm run``'s options ask for, besides the configuration itself."""

    file: Path
    output: Path | None = None
    samples_format: str | None = None
    mock_args: str | None = None
    """Options of the simulator to start as the target; ``None``: no simulator."""
    dry_run: bool = False
    host: str = "127.0.0.1"
    port: int = 0
    overwrite: bool = False
    """Replace the earlier run's files in the output directory (else such a one is refused)."""
    ui: bool = False
    """Serve the web UI of the run's in-process service, and keep serving it after the run
    until Ctrl-C."""


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Results directory (default: a new results/<name>-<timestamp>).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the earlier run's files in --output (else such a directory is refused).",
)
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
    "--no-preflight",
    is_flag=True,
    help="Skip the check of the targets before any client starts (they answer, serve the "
    "model, take the key); same as preflight: false in the config.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the in-process service listens on (compute nodes must reach it).",
)
@click.option("--port", default=0, type=click.IntRange(0, 65535), help="Its port (0: any free).")
@click.option(
    "--repeat",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Run the cluster this many times (seeds seed, seed+1, …; results in DIR/run-<i>/) "
    "and report each statistic's mean and confidence interval across the runs.",
)
@click.option("--same-seed", is_flag=True, help="With --repeat: the same seed for every run.")
@click.option(
    "--confidence",
    default=0.95,
    show_default=True,
    type=click.FloatRange(0.5, 0.999),
    help="With --repeat: the confidence of the intervals.",
)
@click.option(
    "--ui",
    is_flag=True,
    help="Serve the web UI of this run (its URL and token are printed) and keep serving it "
    "after the run, with the results, until Ctrl-C.",
)
def run_command(
    file: Path,
    output: Path | None,
    overwrite: bool,
    samples_format: str | None,
    workers: int | None,
    mock: bool,
    mock_args: str,
    dry_run: bool,
    no_preflight: bool,
    host: str,
    port: int,
    repeat: int,
    same_seed: bool,
    confidence: float,
    ui: bool,
) -> None:
    """Run the cluster of FILE on this machine and print its statistics."""
    with collections_paused():
        from clientswarm.config.loader import load_config_file

    config = load_config_file(file)
    if workers is not None:
        config = config.model_copy(
            update={"spawner": config.spawner.model_copy(update={"workers": workers})}
        )
    if no_preflight:
        config = config.model_copy(update={"preflight": False})
    options = RunOptions(
        file=file,
        output=output,
        samples_format=samples_format,
        mock_args=mock_args if mock else None,
        dry_run=dry_run,
        host=host,
        port=port,
        overwrite=overwrite,
        ui=ui,
    )
    if repeat > 1:
        from clientswarm.run.repeats import run_repeated

        sys.exit(
            run_repeated(config, options, count=repeat, same_seed=same_seed, confidence=confidence)
        )
    code = run_config(config, options)
    if code is not None:
        sys.exit(code)


def run_config(config: ClusterConfig, options: RunOptions) -> int | None:
    """The body of ``clientswarm run`` once the configuration is valid: its exit code
    (:func:`clientswarm.verdict.exit_code`; ``None`` after a dry run)."""
    with collections_paused():
        from clientswarm.config.paths import FileScope
        from clientswarm.errors import ConfigError
        from clientswarm.run.start import start_run
        from clientswarm.spawners.registry import missing_extra, render_submission

    extra = missing_extra(config.spawner.kind)
    if extra is not None:
        raise ConfigError([extra])
    files = FileScope.anywhere(options.file.parent)
    if options.dry_run:
        _check_interactions(config, files)  # a bad dataset fails a dry run too
        click.echo(render_submission(config, service_url="<in-process service URL>"), nl=False)
        return None
    output_dir = output_dir_of(config, options.output, overwrite=options.overwrite)
    # The workers start now and load their code while this process loads the service's.
    with start_run(config, output_dir=output_dir, host=options.host, port=options.port) as start:
        _check_interactions(config, files)  # (a failure stops the workers)
        with collections_paused():
            from clientswarm.run.local import run_locally  # the service's whole stack
        # What was imported lives as long as the process: the collections the service's
        # start-up triggers (building its routes) need not look through it every time.
        gc.freeze()
        summary = run_locally(
            config,
            base_dir=options.file.parent.resolve(),
            output_dir=output_dir,
            fmt=options.samples_format or config.outputs.samples_format,
            mock_args=options.mock_args,
            start=start,
            ui=options.ui,
        )
    from clientswarm.reports.table import render_summary, report_console  # after the run: rich
    from clientswarm.verdict import exit_code, launch_failure

    console = report_console()
    cause = launch_failure(summary)
    if cause is not None:  # nothing ran: the cause first, no empty tables
        click.echo(f"error: the run failed: {cause}", err=True)
    else:
        render_summary(summary, console)
    fmt = options.samples_format or config.outputs.samples_format
    print_outcome(summary, output_dir, fmt, console)
    return exit_code(summary)


def print_outcome(summary: dict[str, Any], output_dir: Path, fmt: str, console: Console) -> None:
    """The last lines of a run: where its results are, and its verdict
    (:func:`clientswarm.verdict.verdict`)."""
    from rich.text import Text

    from clientswarm.verdict import EXIT_OK, exit_code, verdict

    # Whole lines (no wrapping): scripts read them, and paths must stay copyable.
    console.print(f"results: {output_dir}/summary.json, {output_dir}/samples.{fmt}", soft_wrap=True)
    style = "bold green" if exit_code(summary) == EXIT_OK else "bold red"
    console.print(Text(f"verdict: {verdict(summary)}", style=style), soft_wrap=True)


def _check_interactions(config: ClusterConfig, files: FileScope) -> None:
    """Build every group's interaction as the service will: a bad dataset or user interaction
    fails here with one clear line, not once the service is up."""
    with collections_paused():
        from clientswarm.interactions.registry import build_group_interactions

    build_group_interactions(config, files=files)
