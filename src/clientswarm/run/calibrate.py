"""``clientswarm calibrate``: what one worker sustains on this machine, and how many to use.

It runs one worker, closed loop, as ``clientswarm run`` does (the in-process service, a local
worker process), against the built-in simulator answering at once (or ``--target``), and reads
its request rate and its event-loop lag. A saturated worker's timings are late (its loop lags),
so the rate it can *measure exactly* is taken as :data:`HEADROOM` of the rate it reaches; the
suggestion for ``--rate R`` is ``ceil(R / that)`` workers, spread over machines of this size.

The simulator shares this machine's cores with the worker, so the figure is conservative for a
target that runs elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from clientswarm.config.loader import validate_config_data
from clientswarm.run.local import run_locally
from clientswarm.service.results import LOOP_LAG_BOUND_S
from clientswarm.verdict import EXIT_FAILED, exit_code, verdict

HEADROOM = 0.7
"""Share of a worker's saturated rate it can keep with a loop lag under the bound."""


def calibration_config(
    url: str, *, interaction: str, max_tokens: int, clients: int, seconds: float
) -> dict[str, Any]:
    """One worker, ``clients`` closed-loop clients, no think time, after a 1 s warm-up."""
    chosen: dict[str, Any] = {"kind": "hello"}
    if interaction == "chat":
        chosen = {"kind": "chat", "stream": True, "max_tokens": max_tokens, "prompts": ["Hi"]}
    return {
        "name": "calibrate",
        "target": {"url": url, "model": "mock-model", "timeout_s": 30},
        "spawner": {"kind": "local", "workers": 1},
        "warmup_s": 1,
        "groups": [
            {
                "name": interaction,
                "clients": clients,
                "interaction": chosen,
                "load": {"kind": "closed"},
                "stop": {"duration_s": seconds},
            }
        ],
    }


def run_calibration(
    target: str | None,
    *,
    interaction: str,
    max_tokens: int,
    clients: int,
    seconds: float,
    simulator: str,
    no_preflight: bool,
    console: Console,
) -> dict[str, Any]:
    """One calibration run (:func:`calibration_config`) against ``target``, or the built-in
    simulator started with the options ``simulator``, its results in a scratch directory;
    its summary."""
    config = validate_config_data(
        calibration_config(
            target or "http://127.0.0.1:8000",  # the simulator's URL replaces it
            interaction=interaction,
            max_tokens=max_tokens,
            clients=clients,
            seconds=seconds,
        )
    )
    if no_preflight:
        config = config.model_copy(update={"preflight": False})
    with tempfile.TemporaryDirectory(prefix="clientswarm-calibrate-") as scratch:
        return run_locally(
            config,
            base_dir=Path.cwd(),
            output_dir=Path(scratch),
            console=console,
            mock_args=None if target else simulator,
        )


def suggestion(summary: dict[str, Any], rate: float | None, cores: int) -> dict[str, Any]:
    """The calibration's verdict from a run's summary: per-worker rates and workers to use."""
    total = summary["total"]
    reached = float(total["request_rate"])
    lags = [w.get("loop_lag_p99_s") or 0.0 for w in summary.get("workers", [])]
    result: dict[str, Any] = {
        "reached_req_s": reached,
        "reached_output_tok_s": float(total.get("output_token_rate") or 0.0),
        "loop_lag_p99_s": max(lags, default=0.0),
        "loop_lag_bound_s": LOOP_LAG_BOUND_S,
        "per_worker_req_s": reached * HEADROOM,
        "headroom": HEADROOM,
        "failed": int(total["failed"]),
        "cores": cores,
    }
    if rate is not None:
        workers = max(1, math.ceil(rate / result["per_worker_req_s"])) if reached else None
        result["rate"] = rate
        result["workers"] = workers
        result["machines"] = None if workers is None else math.ceil(workers / max(1, cores - 1))
    return result


def render(result: dict[str, Any], console: Console) -> None:
    """The verdict as a short table and a sentence."""
    table = Table(title="One worker on this machine", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("reached (saturated)", f"{result['reached_req_s']:,.0f} req/s")
    table.add_row("output tokens", f"{result['reached_output_tok_s']:,.0f} tok/s")
    table.add_row("event-loop lag p99", f"{result['loop_lag_p99_s'] * 1e3:.1f} ms")
    table.add_row(
        f"sustainable ({result['headroom']:.0%})", f"{result['per_worker_req_s']:,.0f} req/s"
    )
    console.print(table)
    if result["failed"]:
        console.print(
            f"{result['failed']} requests failed: the figure is not reliable", style="red"
        )
    if "rate" in result and result["workers"] is not None:
        console.print(
            f"for {result['rate']:,.0f} req/s use spawner.workers: {result['workers']} "
            f"(about {result['machines']} machine(s) like this one, one core each for the "
            "service and the rest for workers)"
        )


@click.command("calibrate")
@click.option(
    "--interaction", type=click.Choice(["chat", "hello"]), default="chat", show_default=True
)
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(1, 4096))
@click.option("--clients", default=64, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(1, 600))
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Size workers for it.")
@click.option("--target", help="Calibrate against this URL instead of the built-in simulator.")
@click.option(
    "--itl-ms",
    type=click.FloatRange(min=0, min_open=True),
    help="Streams mode: how many streams one worker hosts when tokens come this many ms "
    "apart (the simulator paces them; --clients is the first step, doubled while it holds).",
)
@click.option(
    "--ttft-ms",
    default=50.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Streams mode: the simulator's time to the first token.",
)
@click.option(
    "--streams",
    type=click.IntRange(min=1),
    help="Streams mode: size workers for this many concurrent streams.",
)
@click.option(
    "--max-streams",
    default=4096,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Streams mode: the largest step.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option(
    "--no-preflight",
    is_flag=True,
    help="Skip the check of the target before the start (it answers, serves the model).",
)
def calibrate_command(
    interaction: str,
    max_tokens: int,
    clients: int,
    seconds: float,
    rate: float | None,
    target: str | None,
    itl_ms: float | None,
    ttft_ms: float,
    streams: int | None,
    max_streams: int,
    as_json: bool,
    no_preflight: bool,
) -> None:
    """Measure what one worker sustains here and suggest spawner.workers for --rate (or, with
    --itl-ms, how many streams it hosts at that pace, and workers for --streams)."""
    if itl_ms is None and streams is not None:
        raise click.UsageError("--streams sizes workers in streams mode: give --itl-ms too")
    if itl_ms is not None and (interaction != "chat" or rate is not None):
        raise click.UsageError(
            "--itl-ms measures streamed chats and sizes workers for --streams, not for "
            "--rate or --interaction hello"
        )
    if itl_ms is not None:
        _streams_mode(
            itl_ms=itl_ms,
            ttft_ms=ttft_ms,
            tokens=max_tokens,
            start_streams=clients,
            max_streams=max_streams,
            seconds=seconds,
            target=target,
            streams_wanted=streams,
            no_preflight=no_preflight,
            as_json=as_json,
        )
    summary = run_calibration(
        target,
        interaction=interaction,
        max_tokens=max_tokens,
        clients=clients,
        seconds=seconds,
        simulator=f"--ttft-ms 0 --itl-ms 0 --output-tokens {max_tokens}",
        no_preflight=no_preflight,
        console=Console(stderr=True),
    )
    code = exit_code(summary)
    if code == EXIT_FAILED:  # no figure from a run that failed: it would mislead
        click.echo(f"error: the calibration run {verdict(summary)}", err=True)
        sys.exit(code)
    result = suggestion(summary, rate, os.cpu_count() or 1)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        render(result, Console())
    sys.exit(code)


def _streams_mode(*, as_json: bool, **options: Any) -> None:
    """``calibrate --itl-ms``: :mod:`clientswarm.run.calibrate_streams`; exits."""
    from clientswarm.run.calibrate_streams import calibrate_streams, render_streams

    found = calibrate_streams(console=Console(stderr=True), **options)
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
    else:
        render_streams(found, Console())
    sys.exit(0 if found.streams_per_worker is not None else EXIT_FAILED)
