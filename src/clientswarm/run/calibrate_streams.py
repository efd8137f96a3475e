"""``clientswarm calibrate --itl-ms M``: how many open streams one worker hosts at that pace.

Real engines stream tokens one by one, ``M`` ms apart, to many open streams at once; what
decides how many clients a worker can host with exact timing is its CPU per streamed token,
read by its event loop's lag. This runs one worker, closed loop with no think time, against
the built-in simulator pacing its answers (first token after ``--ttft-ms``, then one every
``M`` ms, ``--max-tokens`` of them; or ``--target``), at a growing number of concurrent streams
for ``--seconds`` each (at least :data:`ANSWERS_PER_STEP` answers' time):
doubling from ``--clients`` while the step holds (no failed request and the worker's loop lag
p99 within :data:`~clientswarm.service.results.LOOP_LAG_BOUND_S`), then once between the last
step that held and the first that did not. The answer is the most streams a step held
(:class:`StreamsVerdict`), and for ``--streams N``, the workers it takes.

Each step also reports the tokens a second it reached against those its streams asked for: a
step that reaches far fewer (under :data:`REACHED_SHARE`) is limited by the target (the
simulator shares this machine's cores with the worker), says nothing of the worker, and ends
the search: the figure is then a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from clientswarm.run.calibrate import run_calibration
from clientswarm.service.results import LOOP_LAG_BOUND_S
from clientswarm.verdict import EXIT_FAILED, exit_code

REACHED_SHARE = 0.8
"""A step reaching less than this share of the tokens a second its streams ask for was held
back by the target, not by the worker: its figure is a lower bound."""


ANSWERS_PER_STEP = 4
"""A step lasts at least this many answers' time (``--seconds`` or more), so that its streams
complete several requests each and its tokens a second are read over whole answers."""


@dataclass(frozen=True, slots=True)
class StreamsStep:
    """One step of the calibration: ``streams`` concurrent streams for its seconds."""

    streams: int
    loop_lag_p99_s: float
    output_tok_s: float
    offered_tok_s: float
    """Tokens a second the streams ask for at the target's pace:
    ``streams * tokens / (ttft + (tokens - 1) * itl)``."""
    failed: int
    held: bool
    """No failure, and the worker's loop lag p99 within its bound."""

    @property
    def target_limited(self) -> bool:
        """The target served under :data:`REACHED_SHARE` of the tokens the streams asked
        for: the step says nothing of the worker at that pace."""
        return self.output_tok_s < REACHED_SHARE * self.offered_tok_s


@dataclass(slots=True)
class StreamsVerdict:
    """The calibration's answer: the most streams a step held, and the workers for
    ``streams_wanted``."""

    itl_ms: float
    ttft_ms: float
    tokens: int
    loop_lag_bound_s: float
    steps: list[StreamsStep] = field(default_factory=list)
    streams_per_worker: int | None = None
    """The most streams a step held (None: not even the first)."""
    target_limited: bool = False
    """The search ended at a step the target limited (:attr:`StreamsStep.target_limited`):
    the worker may host more than :attr:`streams_per_worker`."""
    streams_wanted: int | None = None
    workers: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready values (each step with its ``target_limited``)."""
        out = asdict(self)
        for step, shown in zip(self.steps, out["steps"], strict=True):
            shown["target_limited"] = step.target_limited
        return out


def answer_s(*, itl_ms: float, ttft_ms: float, tokens: int) -> float:
    """How long one paced answer of ``tokens`` takes: ``ttft + (tokens - 1) * itl``."""
    return (ttft_ms + (tokens - 1) * itl_ms) / 1000


def offered_tok_s(streams: int, *, itl_ms: float, ttft_ms: float, tokens: int) -> float:
    """Tokens a second ``streams`` closed-loop streams ask for when each answer takes
    :func:`answer_s` and the next request follows at once."""
    took_s = answer_s(itl_ms=itl_ms, ttft_ms=ttft_ms, tokens=tokens)
    return streams * tokens / took_s if took_s > 0 else math.inf


def step_of(
    summary: dict[str, Any], streams: int, *, itl_ms: float, ttft_ms: float, tokens: int
) -> StreamsStep:
    """What one run's summary says of its step."""
    total = summary["total"]
    lags = [w.get("loop_lag_p99_s") or 0.0 for w in summary.get("workers", [])]
    lag = max(lags, default=0.0)
    failed = int(total["failed"])
    ok = exit_code(summary) != EXIT_FAILED and int(total.get("succeeded") or 0) > 0
    return StreamsStep(
        streams=streams,
        loop_lag_p99_s=lag,
        output_tok_s=float(total.get("output_token_rate") or 0.0),
        offered_tok_s=offered_tok_s(streams, itl_ms=itl_ms, ttft_ms=ttft_ms, tokens=tokens),
        failed=failed,
        held=ok and failed == 0 and lag <= LOOP_LAG_BOUND_S,
    )


def search(
    measure: Callable[[int], StreamsStep], *, start: int, most: int
) -> tuple[list[StreamsStep], StreamsStep | None]:
    """Double from ``start`` while steps hold (up to ``most``), then try once halfway between
    the last that held and the first that did not; the steps and the best one that held. A
    step the target limited ends the search (more streams would only ask it for more): the
    best is then the last step before it."""
    steps: list[StreamsStep] = []
    best: StreamsStep | None = None
    streams = min(start, most)
    failed_at: int | None = None
    while True:
        step = measure(streams)
        steps.append(step)
        if step.target_limited:
            return steps, best
        if not step.held:
            failed_at = streams
            break
        best = step
        if streams >= most:
            break
        streams = min(streams * 2, most)
    if best is not None and failed_at is not None and failed_at - best.streams > 1:
        middle = (best.streams + failed_at) // 2
        step = measure(middle)
        steps.append(step)
        if step.held and not step.target_limited:
            best = step
    return steps, best


def calibrate_streams(
    *,
    itl_ms: float,
    ttft_ms: float,
    tokens: int,
    start_streams: int,
    max_streams: int,
    seconds: float,
    target: str | None,
    streams_wanted: int | None,
    no_preflight: bool,
    console: Console,
) -> StreamsVerdict:
    """Run the steps (see the module docstring) and return the verdict."""

    one_answer_s = answer_s(itl_ms=itl_ms, ttft_ms=ttft_ms, tokens=tokens)
    step_s = max(seconds, ANSWERS_PER_STEP * one_answer_s)

    def measure(streams: int) -> StreamsStep:
        console.print(f"calibrate: {streams:,} streams for {step_s:g} s …")
        summary = run_calibration(
            target,
            interaction="chat",
            max_tokens=tokens,
            clients=streams,
            seconds=step_s,
            simulator=f"--ttft-ms {ttft_ms:g} --itl-ms {itl_ms:g} --output-tokens {tokens}",
            no_preflight=no_preflight,
            console=console,
        )
        return step_of(summary, streams, itl_ms=itl_ms, ttft_ms=ttft_ms, tokens=tokens)

    steps, best = search(measure, start=start_streams, most=max_streams)
    verdict = StreamsVerdict(
        itl_ms=itl_ms,
        ttft_ms=ttft_ms,
        tokens=tokens,
        loop_lag_bound_s=LOOP_LAG_BOUND_S,
        steps=steps,
        streams_per_worker=None if best is None else best.streams,
        streams_wanted=streams_wanted,
    )
    verdict.target_limited = steps[-1].target_limited
    if streams_wanted is not None and best is not None:
        verdict.workers = math.ceil(streams_wanted / best.streams)
    return verdict


def render_streams(verdict: StreamsVerdict, console: Console) -> None:
    """The steps as a table, then the verdict in a sentence or two."""
    table = Table(
        title=f"One worker, streams at {verdict.itl_ms:g} ms a token "
        f"(first after {verdict.ttft_ms:g} ms, {verdict.tokens} tokens)",
        title_justify="left",
    )
    for name in ("streams", "loop lag p99", "tokens/s reached", "asked", "failed", "held"):
        table.add_column(name, justify="right")
    for s in verdict.steps:
        table.add_row(
            f"{s.streams:,}",
            f"{s.loop_lag_p99_s * 1e3:.1f} ms",
            f"{s.output_tok_s:,.0f}",
            f"{s.offered_tok_s:,.0f}",
            str(s.failed),
            "target-limited" if s.target_limited else "yes" if s.held else "no",
        )
    console.print(table)
    bound_ms = verdict.loop_lag_bound_s * 1e3
    if verdict.streams_per_worker is None:
        if verdict.target_limited:
            console.print(
                f"the target could not serve {verdict.steps[0].streams:,} streams at this "
                f"pace ({REACHED_SHARE:.0%} of the tokens they asked for): start lower with "
                "--clients, or give a faster --target",
                style="red",
            )
        else:
            console.print(
                f"not even {verdict.steps[0].streams:,} streams held (loop lag p99 within "
                f"{bound_ms:g} ms, no failure): start lower with --clients",
                style="red",
            )
        return
    console.print(
        f"one worker hosts {verdict.streams_per_worker:,} streams at {verdict.itl_ms:g} ms a "
        f"token with its loop lag p99 within {bound_ms:g} ms"
    )
    if verdict.target_limited:
        last = verdict.steps[-1]
        console.print(
            f"at {last.streams:,} streams the target served under {REACHED_SHARE:.0%} of the "
            "tokens a second they asked for: it, not the worker, set the limit, so the figure "
            "is a lower bound (the simulator shares this machine; --target a faster one)",
            style="yellow",
        )
    if verdict.workers is not None and verdict.streams_wanted is not None:
        console.print(
            f"for {verdict.streams_wanted:,} streams use spawner.workers: {verdict.workers}"
        )


__all__ = [
    "ANSWERS_PER_STEP",
    "REACHED_SHARE",
    "StreamsStep",
    "StreamsVerdict",
    "answer_s",
    "calibrate_streams",
    "offered_tok_s",
    "render_streams",
    "search",
    "step_of",
]
