"""The three benchmarks: what each runs, against which simulator, and which numbers it keeps.

A benchmark is a simulator setting plus a list of cases; a case is one cluster run that returns
flat metrics (numbers, or booleans for flags). ``run.py`` repeats every case and keeps medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import CaseRun, Simulator, cluster_config, run_case

Metrics = dict[str, float | bool | None]

#: The simulator's configured truth in the timing-accuracy benchmark.
TRUE_TTFT_MS = 50.0
TRUE_ITL_MS = 10.0
#: Every closed-loop group also stops after this many requests, whatever its duration.
MAX_REQUESTS = 200_000
#: Timing clients start spread over one request's duration (50 + 63 x 10 ms), inside warm-up,
#: so that they do not send in lockstep (a zero-jitter simulator would keep them in step).
RAMP_UP_S = 0.68
PROMPT = ["Tell me a story."]


@dataclass(frozen=True)
class Settings:
    """Durations of a run: the full run, or ``--quick``."""

    throughput_s: float
    timing_s: float
    timing_warmup_s: float
    open_s: float
    warmup_s: float

    @classmethod
    def full(cls) -> Settings:
        """About a minute per repeat."""
        return cls(throughput_s=5.0, timing_s=5.0, timing_warmup_s=1.0, open_s=4.0, warmup_s=0.5)

    @classmethod
    def quick(cls) -> Settings:
        """About half a minute per repeat."""
        return cls(throughput_s=2.0, timing_s=2.0, timing_warmup_s=1.0, open_s=2.0, warmup_s=0.5)


@dataclass(frozen=True)
class Column:
    """One printed column: metric key, header, format of its median."""

    key: str
    header: str
    fmt: str = "{:.0f}"
    spread: bool = False
    """Show the range over repeats next to the median in RESULTS.md."""


CaseFn = Callable[[Simulator, Settings, Path], Awaitable[Metrics]]


@dataclass(frozen=True)
class Case:
    """One cluster run of a benchmark."""

    name: str
    run: CaseFn


@dataclass(frozen=True)
class Benchmark:
    """A simulator setting, its cases and the columns that report them."""

    id: str
    title: str
    setup: str
    simulator_args: str
    cases: list[Case]
    columns: list[Column]


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1e3


def _common(run: CaseRun) -> Metrics:
    """Metrics every case reports: counts, CPU shares, loop lag, trustworthiness."""
    total = run.summary["total"]
    workers = [v for k, v in run.cpu.items() if k.startswith("worker") and v is not None]
    return {
        "requests": total["requests"],
        "failed": total["failed"],
        "worker_cpu": max(workers) if workers else None,
        "workers_cpu": sum(workers) if workers else None,
        "sim_cpu": run.cpu.get("simulator"),
        "orch_cpu": run.cpu.get("orchestrator"),
        "others_cpu": run.cpu.get("others"),
        "machine_cpu": run.cpu.get("machine"),
        "loop_lag_p99_ms": max((w.loop_lag_p99_s or 0.0) for w in run.outcome.workers) * 1e3,
        "sched_lag_p50_ms": _ms(total["schedule_lag_s"]["p50"]),
        "sched_lag_p99_ms": _ms(total["schedule_lag_s"]["p99"]),
        "e2e_p50_ms": _ms(total["e2e_s"]["p50"]),
        "trustworthy": bool(run.summary["trustworthy"]),
        "completed": run.outcome.status == "completed",
    }


def _per(numerator: float | None, denominator: float | bool | None, scale: float = 1.0) -> Any:
    if numerator is None or denominator is None or not denominator:
        return None
    return numerator / float(denominator) * scale


# -- 1. client throughput ceiling ---------------------------------------------------------------


def _closed(
    name: str,
    clients: int,
    interaction: dict[str, Any],
    duration_s: float,
    ramp_up_s: float = 0.0,
) -> Any:
    return {
        "name": name,
        "clients": clients,
        "interaction": interaction,
        "load": {"kind": "closed", "think_time_s": 0, "ramp_up_s": ramp_up_s},
        "stop": {"duration_s": duration_s, "requests": MAX_REQUESTS},
    }


def throughput_case(name: str, interaction: dict[str, Any], clients: int = 32) -> Case:
    """One worker, ``clients`` clients in closed loop without think time."""

    async def run(sim: Simulator, s: Settings, tmp: Path) -> Metrics:
        group = _closed(name, clients, interaction, s.throughput_s)
        data = cluster_config(sim.url, group, workers=1, warmup_s=s.warmup_s)
        result = await run_case(data, sim, tmp_dir=tmp)
        total = result.summary["total"]
        m = _common(result)
        req_s = total["succeeded_rate"]
        tok_s = total["output_token_rate"]
        m.update(
            req_s=req_s,
            tok_s=tok_s or None,
            worker_us_per_req=_per(m["worker_cpu"], req_s, 1e6),
            worker_us_per_tok=_per(m["worker_cpu"], tok_s, 1e6),
            sim_us_per_req=_per(m["sim_cpu"], req_s, 1e6),
            req_s_per_worker_core=_per(req_s, m["worker_cpu"]),
            tok_s_per_worker_core=_per(tok_s, m["worker_cpu"]) if tok_s else None,
        )
        return m

    return Case(name, run)


THROUGHPUT = Benchmark(
    id="throughput",
    title="1. Client throughput ceiling (1 worker, 32 clients, closed loop, no think time)",
    setup=(
        "simulator `--ttft-ms 0 --itl-ms 0`; `hello` = GET /, `chat-stream` = streamed chat, "
        "max_tokens 64. CPU columns are shares of one core over the measured window; "
        "`others` is every other process on the machine."
    ),
    simulator_args="--ttft-ms 0 --itl-ms 0 --max-concurrency 1024 --seed 1",
    cases=[
        throughput_case("hello", {"kind": "hello"}),
        throughput_case(
            "chat-stream",
            {"kind": "chat", "stream": True, "max_tokens": 64, "prompts": PROMPT},
        ),
    ],
    columns=[
        Column("req_s", "req/s", spread=True),
        Column("tok_s", "out tok/s", spread=True),
        Column("worker_cpu", "worker CPU", "{:.2f}"),
        Column("sim_cpu", "sim CPU", "{:.2f}"),
        Column("orch_cpu", "orch CPU", "{:.2f}"),
        Column("others_cpu", "others CPU", "{:.2f}"),
        Column("worker_us_per_req", "worker µs/req", "{:.0f}", spread=True),
        Column("worker_us_per_tok", "worker µs/tok", "{:.1f}"),
        Column("req_s_per_worker_core", "req/s per worker core"),
        Column("tok_s_per_worker_core", "tok/s per worker core"),
        Column("e2e_p50_ms", "e2e p50 ms", "{:.1f}"),
        Column("loop_lag_p99_ms", "loop lag p99 ms", "{:.1f}"),
        Column("failed", "failed"),
        Column("trustworthy", "trustworthy"),
    ],
)


# -- 2. timing accuracy -------------------------------------------------------------------------


def _error(measured_ms: float | None, truth_ms: float) -> tuple[float | None, float | None]:
    if measured_ms is None:
        return None, None
    return measured_ms - truth_ms, (measured_ms - truth_ms) / truth_ms * 100


def timing_case(clients: int) -> Case:
    """One worker, ``clients`` streamed chats of 64 tokens in closed loop."""

    async def run(sim: Simulator, s: Settings, tmp: Path) -> Metrics:
        interaction = {"kind": "chat", "stream": True, "max_tokens": 64, "prompts": PROMPT}
        group = _closed(f"c{clients}", clients, interaction, s.timing_s, RAMP_UP_S)
        data = cluster_config(sim.url, group, workers=1, warmup_s=s.timing_warmup_s)
        result = await run_case(data, sim, tmp_dir=tmp)
        total = result.summary["total"]
        m = _common(result)
        tok_s = total["output_token_rate"]
        m.update(
            tok_s=tok_s,
            worker_us_per_tok=_per(m["worker_cpu"], tok_s, 1e6),
            tok_s_per_worker_core=_per(tok_s, m["worker_cpu"]),
        )
        for metric, truth in (("ttft", TRUE_TTFT_MS), ("itl", TRUE_ITL_MS)):
            for q in ("p50", "p99"):
                value = _ms(total[f"{metric}_s"][q])
                err_ms, err_pct = _error(value, truth)
                m[f"{metric}_{q}_ms"] = value
                m[f"{metric}_{q}_err_ms"] = err_ms
                m[f"{metric}_{q}_err_pct"] = err_pct
        m.update(_attribution(result))
        return m

    return Case(f"{clients} clients", run)


def _attribution(run: CaseRun) -> Metrics:
    """Split the mean TTFT error between the simulator and everything outside it.

    The simulator observes arrival-to-first-token inside its handler (its own timer lateness
    included); the client observes send-to-first-token. Both means cover the requests whose
    first token came after the end of warm-up, so they describe the same requests. Also: the
    share of measured ITL gaps under 1 ms, i.e. tokens that reached the client bunched together.
    """
    ttfts = [
        t
        for s in run.samples
        if (s.first_token_ns or 0) >= run.window_start_ns and (t := s.ttft_s) is not None
    ]
    client_ms = statistics.fmean(ttfts) * 1e3 if ttfts else None
    count = run.server.get("ttft_count", 0.0)
    sim_ms = run.server["ttft_sum"] / count * 1e3 if count else None
    gaps = [g for s in run.samples if s.status == "ok" and not s.warmup for g in s.itl_s]
    return {
        "ttft_mean_client_ms": client_ms,
        "ttft_mean_sim_ms": sim_ms,
        "ttft_sim_late_ms": None if sim_ms is None else sim_ms - TRUE_TTFT_MS,
        "ttft_outside_sim_ms": None if sim_ms is None or client_ms is None else client_ms - sim_ms,
        "itl_bunched_pct": 100 * sum(g < 0.001 for g in gaps) / len(gaps) if gaps else None,
    }


TIMING = Benchmark(
    id="timing",
    title="2. Timing accuracy (1 worker, closed loop, streamed chat, max_tokens 64)",
    setup=(
        f"simulator `--ttft-ms {TRUE_TTFT_MS:.0f} --itl-ms {TRUE_ITL_MS:.0f}` (constant: no "
        "jitter), so every deviation is added by the client, the loopback network or the "
        "simulator's own event loop; err = measured - truth."
    ),
    simulator_args=(
        f"--ttft-ms {TRUE_TTFT_MS} --itl-ms {TRUE_ITL_MS} --max-concurrency 1024 --seed 1"
    ),
    cases=[timing_case(8), timing_case(64), timing_case(256)],
    columns=[
        Column("ttft_p50_ms", "TTFT p50 ms", "{:.1f}"),
        Column("ttft_p50_err_pct", "err %", "{:+.1f}", spread=True),
        Column("ttft_p99_ms", "TTFT p99 ms", "{:.1f}"),
        Column("ttft_p99_err_pct", "err %", "{:+.1f}", spread=True),
        Column("itl_p50_ms", "ITL p50 ms", "{:.2f}"),
        Column("itl_p50_err_pct", "err %", "{:+.1f}", spread=True),
        Column("itl_p99_ms", "ITL p99 ms", "{:.2f}"),
        Column("itl_p99_err_pct", "err %", "{:+.1f}", spread=True),
        Column("itl_bunched_pct", "ITL <1ms %", "{:.1f}"),
        Column("ttft_sim_late_ms", "TTFT late in sim ms", "{:+.1f}"),
        Column("ttft_outside_sim_ms", "TTFT added outside sim ms", "{:+.1f}", spread=True),
        Column("sched_lag_p99_ms", "sched lag p99 ms", "{:.2f}"),
        Column("loop_lag_p99_ms", "loop lag p99 ms", "{:.1f}"),
        Column("tok_s", "out tok/s"),
        Column("worker_cpu", "worker CPU", "{:.2f}"),
        Column("worker_us_per_tok", "worker µs/tok", "{:.0f}", spread=True),
        Column("sim_cpu", "sim CPU", "{:.2f}"),
        Column("others_cpu", "others CPU", "{:.2f}"),
        Column("failed", "failed"),
        Column("trustworthy", "trustworthy"),
    ],
)


# -- 3. open-loop rate accuracy -----------------------------------------------------------------


def open_case(rate: float, workers: int = 2, clients: int = 16) -> Case:
    """Constant arrivals at ``rate`` req/s to the hello route, split over ``workers``."""

    async def run(sim: Simulator, s: Settings, tmp: Path) -> Metrics:
        group = {
            "name": f"r{rate:g}",
            "clients": clients,
            "interaction": {"kind": "hello"},
            "load": {"kind": "open", "rate": rate, "arrival": "constant"},
            "stop": {"duration_s": s.open_s},
        }
        data = cluster_config(sim.url, group, workers=workers, warmup_s=s.warmup_s)
        result = await run_case(data, sim, tmp_dir=tmp)
        total = result.summary["total"]
        m = _common(result)
        send_rate = total["send_rate"]
        m.update(
            requested=rate,
            expected_requests=round(rate * s.open_s),
            send_rate=send_rate,
            send_rate_err_pct=_per(None if send_rate is None else send_rate - rate, rate, 100),
            req_s=total["request_rate"],
        )
        return m

    return Case(f"{rate:g} req/s", run)


OPEN_LOOP = Benchmark(
    id="open_loop",
    title="3. Open-loop rate accuracy (2 workers, 16 clients, constant arrivals, hello)",
    setup=(
        "simulator `--ttft-ms 0 --itl-ms 0`; send rate = (n - 1) / (last send - first send) "
        "of the measured samples; schedule lag = actual send - scheduled send."
    ),
    simulator_args="--ttft-ms 0 --itl-ms 0 --max-concurrency 1024 --seed 1",
    cases=[open_case(50), open_case(200), open_case(500)],
    columns=[
        Column("requests", "requests"),
        Column("expected_requests", "expected"),
        Column("send_rate", "send rate", "{:.2f}"),
        Column("send_rate_err_pct", "err %", "{:+.2f}", spread=True),
        Column("sched_lag_p50_ms", "sched lag p50 ms", "{:.2f}", spread=True),
        Column("sched_lag_p99_ms", "sched lag p99 ms", "{:.2f}", spread=True),
        Column("e2e_p50_ms", "e2e p50 ms", "{:.2f}"),
        Column("workers_cpu", "workers CPU", "{:.2f}"),
        Column("sim_cpu", "sim CPU", "{:.2f}"),
        Column("others_cpu", "others CPU", "{:.2f}"),
        Column("failed", "failed"),
        Column("trustworthy", "trustworthy"),
    ],
)

BENCHMARKS = [THROUGHPUT, TIMING, OPEN_LOOP]
