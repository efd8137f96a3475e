"""The ``clientswarm compare`` command: loads each run (a result directory, or a cluster of a
service fetched over its REST API) and prints the comparison of
:mod:`clientswarm.reports.compare`. It lives beside the service's other client commands because
it may reach a service; the comparison itself knows nothing of services."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from clientswarm.errors import ClientswarmError, ConfigError
from clientswarm.metrics.compare import CONFIDENCE, MAX_VALUES, RESAMPLES
from clientswarm.reports.compare import (
    LABELS,
    RunResult,
    Settings,
    compare_runs,
    load_directory,
    parse_fail_if,
    parse_min_effect,
    read_sample_values,
    render_comparison,
    split_target,
    target_view,
)
from clientswarm.verdict import EXIT_OK, EXIT_THRESHOLDS

DEFAULT_SERVICE = "http://127.0.0.1:8080"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def load_cluster(label: str, cluster_id: str, service: str) -> RunResult:
    """A run from the results and samples of a cluster of the service at ``service``."""
    from clientswarm.service.client_cli import ServiceClient

    client = ServiceClient(service)
    try:
        summary = client.json("GET", f"/clusters/{cluster_id}/results")
        if not isinstance(summary, dict) or not isinstance(summary.get("groups"), dict):
            raise ConfigError([f"{cluster_id}: the service's results are not a summary"])
        request = client.request("GET", f"/clusters/{cluster_id}/samples?format=parquet")
        request.add_header("Accept", "*/*")
        with tempfile.TemporaryDirectory(prefix="clientswarm-compare-") as folder:
            path = Path(folder) / "samples.parquet"
            with client.open(request) as response, path.open("wb") as sink:
                while chunk := response.read(1 << 16):
                    sink.write(chunk)
            values = read_sample_values(path)
    except ConfigError:
        raise
    except ClientswarmError as exc:
        raise ConfigError(
            [f"{cluster_id}: no result directory of that name; as a cluster of the service: {exc}"]
        ) from None
    return RunResult(label, f"{cluster_id} at {service}", summary, values)


def load_series(label: str, series_id: str, service: str) -> RunResult | None:
    """The repeats of a repeat series of the service at ``service`` (``/api/v1/repeats``), as
    a directory of ``run --repeat`` is read; None when it has no such series."""
    from clientswarm.reports.repeats import REPEATS_KEY, means_summary
    from clientswarm.service.client_cli import ServiceClient

    try:
        view = ServiceClient(service).json("GET", f"/repeats/{series_id}")
    except ClientswarmError:
        return None  # no such series (or a service without them): a cluster, then
    summary = view.get("summary") if isinstance(view, dict) else None
    repeats = summary.get(REPEATS_KEY) if isinstance(summary, dict) else None
    if not isinstance(repeats, dict):
        status = view.get("status") if isinstance(view, dict) else None
        raise ConfigError(
            [
                f"{series_id}: the repeat series is {status} with no aggregate yet; compare it "
                "once it has ended"
            ]
        )
    return RunResult(label, f"{series_id} at {service}", means_summary(repeats), None, repeats)


def load_run(label: str, ref: str, service: str) -> RunResult:
    """A run from ``ref``: a result directory when such a path exists (or ``ref`` looks like
    a path), else the id of a repeat series or of a cluster of the service; ``REF@TARGET`` is
    one target of it alone (two targets of one run compared side by side)."""
    base, target = split_target(ref)
    if target is not None:
        return target_view(load_run(label, base, service), target)
    path = Path(ref)
    if path.exists() or not _ID.match(ref):
        if not path.exists():
            raise ConfigError([f"{ref}: no such directory"])
        return load_directory(label, ref, path)
    return load_series(label, ref, service) or load_cluster(label, ref, service)


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, metavar="A B [C ...]")
@click.option(
    "--service",
    envvar="CLIENTSWARM_SERVICE",
    default=DEFAULT_SERVICE,
    show_default=True,
    help="Base URL of the service whose cluster ids are given (env CLIENTSWARM_SERVICE).",
)
@click.option(
    "--min-effect",
    default="5%",
    show_default=True,
    help="The smallest change of a percentile called a difference.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0.5, 0.999),
    default=CONFIDENCE,
    show_default=True,
    help="Confidence of the bootstrap intervals.",
)
@click.option(
    "--resamples",
    type=click.IntRange(100, 100_000),
    default=RESAMPLES,
    show_default=True,
    help="Bootstrap resamples.",
)
@click.option(
    "--max-samples",
    type=click.IntRange(100, 10_000_000),
    default=MAX_VALUES,
    show_default=True,
    help="Values of one metric of one run resampled at most (a random subset beyond).",
)
@click.option(
    "--fail-if",
    "fail_if",
    multiple=True,
    metavar="EXPR",
    help="Exit 3 when a later run changed this much from A, e.g. 'ttft_s.p99 > +10%' "
    "(repeatable; a plain number is a difference in the statistic's unit).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH",
    help="Also write the comparison as one self-contained HTML page (tables, CDFs of each "
    "latency, sweep curves) to PATH.",
)
def compare_command(
    runs: tuple[str, ...],
    service: str,
    min_effect: str,
    confidence: float,
    resamples: int,
    max_samples: int,
    fail_if: tuple[str, ...],
    as_json: bool,
    html_path: Path | None,
) -> None:
    """Compare runs A B [C ...] (result directories or cluster ids of a service) with A.

    Per group and stage: rates, TTFT/ITL/TPOT/E2E p50/p90/p99, errors and goodput side by
    side, with the difference and a verdict from a bootstrap interval. Exit 3 when a --fail-if
    holds, 2 on invalid input. --html also writes the comparison as a page (exit codes alike).
    """
    if len(runs) < 2:
        raise ConfigError(["give at least two runs to compare: A (the baseline) and B"])
    if len(runs) > len(LABELS):
        raise ConfigError([f"at most {len(LABELS)} runs can be compared at once"])
    settings = Settings(parse_min_effect(min_effect), confidence, resamples, max_samples)
    gates = [parse_fail_if(text) for text in fail_if]
    if html_path is not None and not html_path.parent.is_dir():
        raise ConfigError([f"--html {html_path}: no such directory {html_path.parent}"])
    loaded = [load_run(LABELS[i], ref, service) for i, ref in enumerate(runs)]
    comparison = compare_runs(loaded, settings, gates)
    if html_path is not None:
        write_page(html_path, comparison, loaded)
    if as_json:
        click.echo(json.dumps(comparison, indent=2, allow_nan=False, default=_json_default))
    else:
        from clientswarm.reports.table import report_console

        render_comparison(comparison, report_console())
    if html_path is not None:
        click.echo(f"report: {html_path}", err=as_json)  # stdout stays pure JSON with --json
    sys.exit(EXIT_OK if comparison["passed"] else EXIT_THRESHOLDS)


def write_page(path: Path, comparison: dict[str, Any], runs: list[RunResult]) -> None:
    """Write the comparison's HTML page to ``path``; ConfigError (exit 2) when it cannot."""
    from clientswarm.reports.compare_html import render_comparison_html

    try:
        path.write_text(render_comparison_html(comparison, runs), encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"--html {path}: cannot write there: {exc.strerror or exc}"]) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


__all__ = ["compare_command", "load_cluster", "load_run", "write_page"]
