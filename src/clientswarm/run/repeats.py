"""``clientswarm run --repeat N``: one cluster run N times, and each statistic across the runs.

Run ``i`` (from 0) uses the seed ``seed + i`` (the same seed each time with ``--same-seed``) and
writes its whole results to ``DIR/run-<i>/``, as a single run would. ``DIR/summary.json`` holds
the aggregate: for the total and each group, every statistic of
:data:`~clientswarm.metrics.repeats.STATISTICS` with its mean, standard deviation, min, max and
the confidence interval of its mean across the runs (:mod:`clientswarm.metrics.repeats`).
``clientswarm compare`` reads such a directory as a set of repeats.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import click

from clientswarm.errors import ConfigError
from clientswarm.reports.repeats import REPEATS_KEY, render_repeats, run_dir

if TYPE_CHECKING:
    from clientswarm.config.models import ClusterConfig
    from clientswarm.run.cli import RunOptions


def run_repeated(
    config: ClusterConfig,
    options: RunOptions,
    *,
    count: int,
    same_seed: bool,
    confidence: float,
) -> int:
    """Run ``config`` ``count`` times (see the module docstring); the worst exit code."""
    from clientswarm.metrics.repeats import aggregate
    from clientswarm.reports.summary import write_summary
    from clientswarm.run.cli import output_dir_of, run_config

    if options.ui:
        raise ConfigError(["--ui serves one run: leave it out with --repeat"])
    if options.dry_run:
        raise ConfigError(["--dry-run shows one submission: leave out --repeat"])
    directory = output_dir_of(config, options.output, overwrite=options.overwrite)
    seeds = [config.seed if same_seed else config.seed + i for i in range(count)]
    summaries: list[dict[str, Any]] = []
    codes: list[int] = []
    for index, seed in enumerate(seeds):
        click.echo(f"run {index + 1} of {count} (seed {seed}): {run_dir(directory, index)}")
        once = dataclasses.replace(
            options, output=run_dir(directory, index), overwrite=options.overwrite
        )
        code = run_config(config.model_copy(update={"seed": seed}), once)
        codes.append(code or 0)
        summaries.append(json.loads((run_dir(directory, index) / "summary.json").read_text()))
    repeats: dict[str, Any] = {
        "count": count,
        "confidence": confidence,
        "same_seed": same_seed,
        "seeds": seeds,
        "runs": [run_dir(directory, i).name for i in range(count)],
        "exit_codes": codes,
        **aggregate(summaries, confidence),
    }
    write_summary(directory / "summary.json", {"name": config.name, REPEATS_KEY: repeats})
    from clientswarm.reports.table import report_console

    console = report_console()
    render_repeats(repeats, console)
    console.print(f"results: {directory}/summary.json (runs: {directory}/run-*/)", soft_wrap=True)
    return max(codes)
