"""The exactness target of issue 7: client-measured TTFT and ITL against the server's own.

Target: "against a paced target at open-loop 400 req/s, client-measured TTFT and ITL within
0.3 ms (p50) and 1 ms (p99) of what the server itself measured; schedule lag p99 ≤ 1 ms"
(peers' best: TTFT p99 ~16 ms above the server's own p99).

The target is ``paced_target.py`` (an asyncio protocol with httptools on uvloop, one process):
first token 50 ms after a request's arrival (the read that starts it, taken before parsing),
then one token every 5 ms, 32 tokens, each written at its absolute deadline, and
``time.time_ns()`` recorded right after each write. ``clientswarm run`` drives it with
``spawner.workers: 2``, one open-loop group (Poisson arrivals at 400 req/s, 200 clients, no
``max_concurrency``), streamed chats of ``max_tokens: 32``, 1 s warm-up then ``--duration-s``
measured.

Each client has its own system prompt (``vary``), which the target records: every measured
client sample is paired with the server's record of the same request (same client, nearest
arrival after the send). Compared, over exactly those requests:

- the distributions: client TTFT p50/p99 (send → first content token, from ``samples.jsonl``)
  against the server's (arrival → first token written), the same for ITL (the client's
  ``itl_s`` against the gaps between the server's writes), and the differences;
- per request (paired): client minus server TTFT, and per token gap client minus server ITL;
  the TTFT difference split into request delivery (server arrival - client send) and first token
  delivery (client receive - server write), across the two processes' clocks (both Unix time).

Also the summary's schedule lag p50/p99, its request rate, failures and ``trustworthy``.

Writes ``RESULTS-exactness.md`` and ``results-exactness.json`` beside this file (``--quick``: 1
repeat of 4 s, ``*-exactness-quick.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import children, cmdline, cpu_seconds, machine_cpu
from paced_target import PacedTarget, paced_target, raise_nofile
from report import (
    add_run_options,
    aggregate,
    check_run_options,
    clientswarm_argv,
    format_cell,
    log,
    machine_info,
    machine_lines,
    markdown_table,
    write_outcome,
)

HERE = Path(__file__).resolve().parent
WORKERS = 2
CLIENTS = 200
#: The issue's rate (``--rate`` changes it, e.g. to see the floor on a machine it fills).
RATE = 400.0
TTFT_MS, ITL_MS, TOKENS = 50.0, 5.0, 32
WARMUP_S = 1.0
#: A client's request reaches the server at most this long after its send to be paired with it.
PAIR_WINDOW_MS = 100.0
#: The CPU window closes this long before the planned end, while requests still flow.
END_MARGIN_S = 0.25
STARTUP_TIMEOUT_S = 60.0
#: The issue's targets (ms).
TARGET_P50_MS, TARGET_P99_MS, TARGET_LAG_P99_MS = 0.3, 1.0, 1.0
PEERS_TTFT_P99_MS = 16.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser, HERE)
    parser.add_argument("--rate", type=float, default=RATE, help="req/s (default: the issue's 400)")
    args = parser.parse_args(argv)
    check_run_options(parser, args)
    return args


def tag(client: int) -> str:
    """The system prompt of client ``client``: the target records it, which pairs requests."""
    return f"client-{client}"


def cluster_config(url: str, duration_s: float, rate: float = RATE) -> dict[str, Any]:
    """2 workers, one open-loop Poisson group (400 req/s) of streamed 32-token chats."""
    return {
        "name": "exactness",
        "seed": 1,
        "target": {"url": url, "model": "mock-model", "timeout_s": 30},
        "spawner": {"kind": "local", "workers": WORKERS},
        "warmup_s": WARMUP_S,
        "groups": [
            {
                "name": "chat",
                "clients": CLIENTS,
                "interaction": {
                    "kind": "chat",
                    "stream": True,
                    "max_tokens": TOKENS,
                    "prompts": ["Hi"],
                },
                "vary": {"system_prompt": [tag(i) for i in range(CLIENTS)]},
                "load": {"kind": "open", "rate": rate, "arrival": "poisson"},
                "stop": {"duration_s": duration_s},
            }
        ],
    }


# -- one run -------------------------------------------------------------------------------------


def pct(values: list[float] | np.ndarray, q: float) -> float | None:
    """Percentile ``q`` (linear interpolation, as the summary computes it); None when empty."""
    return float(np.percentile(values, q)) if len(values) else None


def pair(
    samples: list[dict[str, Any]], records: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each client sample with the server record of the same request.

    A record matches a sample when it carries the sample's client's tag and arrived between 1 ms
    before (clock slack) and ``PAIR_WINDOW_MS`` after the send; of those, the earliest unused.
    """
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_tag.setdefault(r["system"], []).append(r)
    for rs in by_tag.values():
        rs.sort(key=lambda r: r["arrival_ns"])
    used: set[int] = set()
    pairs = []
    for s in sorted(samples, key=lambda s: s["sent_ns"]):
        candidates = by_tag.get(tag(s["client"]), [])
        arrivals = [r["arrival_ns"] for r in candidates]
        i = bisect_left(arrivals, s["sent_ns"] - 1_000_000)
        while i < len(candidates) and arrivals[i] <= s["sent_ns"] + PAIR_WINDOW_MS * 1e6:
            if id(candidates[i]) not in used:
                used.add(id(candidates[i]))
                pairs.append((s, candidates[i]))
                break
            i += 1
    return pairs


def compare(samples: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Client against server, over the measured requests both saw (ms)."""
    measured = [
        s
        for s in samples
        if not s.get("warmup") and not s.get("step") and s["status"] == "ok"
        if s.get("first_token_ns") is not None
    ]
    complete = [r for r in records if r["complete"] and r["token_ns"]]
    pairs = pair(measured, complete)
    c_ttft, s_ttft, d_ttft, send_delay, first_delay = [], [], [], [], []
    c_itl: list[float] = []
    s_itl: list[float] = []
    d_itl: list[float] = []
    gap_mismatch = 0
    for s, r in pairs:
        ct = (s["first_token_ns"] - s["sent_ns"]) / 1e6
        st = (r["token_ns"][0] - r["arrival_ns"]) / 1e6
        c_ttft.append(ct)
        s_ttft.append(st)
        d_ttft.append(ct - st)
        send_delay.append((r["arrival_ns"] - s["sent_ns"]) / 1e6)
        first_delay.append((s["first_token_ns"] - r["token_ns"][0]) / 1e6)
        ci = [v * 1000 for v in s["itl_s"]]
        si = list(np.diff(r["token_ns"]) / 1e6)
        c_itl += ci
        s_itl += si
        if len(ci) == len(si):
            d_itl += [a - b for a, b in zip(ci, si, strict=True)]
        else:
            gap_mismatch += 1
    m: dict[str, Any] = {
        "client_samples_measured": len(measured),
        "server_records_complete": len(complete),
        "paired": len(pairs),
        "unpaired_samples": len(measured) - len(pairs),
        "itl_length_mismatch": gap_mismatch,
        "itl_gaps": len(c_itl),
    }
    for name, client, server, diff in (
        ("ttft", c_ttft, s_ttft, d_ttft),
        ("itl", c_itl, s_itl, d_itl),
    ):
        for q in (50, 99):
            c, sv = pct(client, q), pct(server, q)
            m[f"{name}_p{q}_client_ms"] = c
            m[f"{name}_p{q}_server_ms"] = sv
            m[f"{name}_p{q}_diff_ms"] = None if c is None or sv is None else c - sv
            m[f"{name}_paired_diff_p{q}_ms"] = pct(diff, q)
        m[f"{name}_mean_diff_ms"] = float(np.mean(diff)) if diff else None
        m[f"{name}_max_client_ms"] = max(client) if client else None
        m[f"{name}_max_server_ms"] = max(server) if server else None
    for side, gaps in (("", c_itl), ("_server", s_itl)):
        m[f"itl_bunched{side}_pct"] = (
            100.0 * sum(1 for v in gaps if v < 1.0) / len(gaps) if gaps else None
        )
    for name, values in (("send_delay", send_delay), ("first_token_delay", first_delay)):
        m[f"{name}_p50_ms"] = pct(values, 50)
        m[f"{name}_p99_ms"] = pct(values, 99)
    if len(measured) > 1:
        sent = sorted(s["sent_ns"] for s in measured)
        m["send_rate"] = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)
    return m


def measure_window(
    proc: subprocess.Popen[bytes], target: PacedTarget, duration_s: float
) -> dict[str, Any]:
    """CPU shares (cores) of the workers, the run process (the service), the target, this
    script and everything else, from the end of warm-up (``WARMUP_S`` after the target saw the
    first request) until just before the planned end."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not target.stats().get("started"):
        if proc.poll() is not None or time.monotonic() > deadline:
            return {}
        time.sleep(0.02)
    first = time.monotonic()
    workers = [c for c in children(proc.pid) if "clientswarm.worker" in cmdline(c)]
    pids = {"workers": workers, "service": [proc.pid], "target": [target.proc.pid]}

    def read() -> tuple[dict[str, float], float, float, float]:
        cpu = {
            role: sum(v for p in ps if (v := cpu_seconds(p)) is not None)
            for role, ps in pids.items()
        }
        return cpu, machine_cpu()[0], time.process_time(), time.monotonic()

    time.sleep(max(0.0, first + WARMUP_S - time.monotonic()))
    cpu0, busy0, me0, t0 = read()
    time.sleep(max(0.0, first + WARMUP_S + duration_s - END_MARGIN_S - time.monotonic()))
    if proc.poll() is not None:
        return {}
    cpu1, busy1, me1, t1 = read()
    span = t1 - t0
    shares = {f"{role}_cpu": (cpu1[role] - cpu0[role]) / span for role in pids}
    shares["bench_cpu"] = (me1 - me0) / span
    ours = sum(shares.values())
    shares["machine_cpu"] = (busy1 - busy0) / span
    shares["others_cpu"] = max(0.0, shares["machine_cpu"] - ours)
    shares["workers_found"] = len(workers)
    return shares


def run_once(
    target: PacedTarget, tmp: Path, duration_s: float, rate: float, tag_: str
) -> dict[str, Any]:
    """One ``clientswarm run`` against the paced target; the comparison and the summary."""
    target.reset()
    config = tmp / f"cluster-{tag_}.json"
    config.write_text(json.dumps(cluster_config(target.url, duration_s, rate), indent=2))
    out = tmp / f"out-{tag_}"
    argv = clientswarm_argv("run", str(config), "--output", str(out), "--samples-format", "jsonl")
    stdout = tmp / f"stdout-{tag_}.txt"
    t0 = time.monotonic()
    with stdout.open("wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        m: dict[str, Any] = measure_window(proc, target, duration_s)
        returncode = proc.wait(timeout=duration_s + WARMUP_S + 120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    m |= {"returncode": returncode, "wall_s": time.monotonic() - t0}
    summary_path, samples_path = out / "summary.json", out / "samples.jsonl"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    samples = (
        [json.loads(line) for line in samples_path.open() if line.strip()]
        if samples_path.exists()
        else []
    )
    m |= compare(samples, target.records())
    total = summary.get("total", {})
    warnings: list[str] = summary.get("warnings", [])
    if total:
        lag = total.get("schedule_lag_s") or {}
        lags = [w.get("loop_lag_p99_s") for w in summary.get("workers", [])]
        lags = [v for v in lags if v is not None]
        m |= {
            "summary_requests": total["requests"],
            "summary_request_rate": total["request_rate"],
            "failed": total["failed"],
            "sched_lag_p50_ms": lag["p50"] * 1000 if lag.get("p50") is not None else None,
            "sched_lag_p99_ms": lag["p99"] * 1000 if lag.get("p99") is not None else None,
            "sched_lag_max_ms": lag["max"] * 1000 if lag.get("max") is not None else None,
            "loop_lag_p99_ms": max(lags) * 1000 if lags else None,
            "trustworthy": bool(summary.get("trustworthy")),
        }
    m["completed"] = bool(returncode == 0 and total and m.get("failed") == 0 and m["paired"] > 0)
    if not m["completed"]:
        log(
            f"  clientswarm run did not complete or had failed requests (exit {returncode}, "
            f"{m.get('failed')} failed):\n{stdout.read_text(errors='replace')[-2000:]}"
        )
    m["warnings"] = warnings
    return m


# -- report ---------------------------------------------------------------------------------------


def med(agg: dict[str, Any], key: str) -> Any:
    """Median of ``key`` over the repeats (None where absent)."""
    entry = agg.get(key)
    return None if entry is None else entry.get("median")


def fmt(value: Any, spec: str = "{:.2f}") -> str:
    """A number, or ``-``."""
    return "-" if value is None else spec.format(value)


def cell(agg: dict[str, Any], key: str, spec: str = "{:.2f}", spread: bool = True) -> str:
    """``median (min…max)`` of an aggregated metric; flags as yes/no/k of n."""
    return format_cell(agg.get(key), spec, spread=spread)


def main_rows(agg: dict[str, Any], spread: bool = True) -> list[list[str]]:
    """Client against server, per metric and percentile."""
    rows = [
        [
            "metric",
            "client ms",
            "server ms",
            "client - server ms",
            "target",
            "paired diff ms (same percentile)",
        ]
    ]
    for name in ("ttft", "itl"):
        for q, bound in ((50, TARGET_P50_MS), (99, TARGET_P99_MS)):
            rows.append(
                [
                    f"{name.upper()} p{q}",
                    cell(agg, f"{name}_p{q}_client_ms", spread=spread),
                    cell(agg, f"{name}_p{q}_server_ms", spread=spread),
                    cell(agg, f"{name}_p{q}_diff_ms", "{:+.2f}", spread=spread),
                    f"≤ {bound} ms",
                    cell(agg, f"{name}_paired_diff_p{q}_ms", "{:+.2f}", spread=spread),
                ]
            )
    rows.append(
        [
            "schedule lag p50 / p99",
            f"{cell(agg, 'sched_lag_p50_ms', '{:.3f}', spread)} / "
            f"{cell(agg, 'sched_lag_p99_ms', '{:.3f}', spread)}",
            "",
            "",
            f"p99 ≤ {TARGET_LAG_P99_MS} ms",
            "",
        ]
    )
    return rows


def run_rows(agg: dict[str, Any]) -> list[list[str]]:
    """What ran: counts, rates, the target's and the machine's CPU, trustworthiness."""
    rows = [
        [
            "requests (summary)",
            "paired",
            "req/s (summary)",
            "send rate",
            "failed",
            "request delivery p50/p99 ms",
            "first token delivery p50/p99 ms",
            "ITL <1ms %: client / server",
            "loop lag p99 ms",
            "CPU: workers / service / target / others",
            "trustworthy",
        ]
    ]
    rows.append(
        [
            cell(agg, "summary_requests", "{:,.0f}"),
            cell(agg, "paired", "{:,.0f}"),
            cell(agg, "summary_request_rate", "{:.1f}"),
            cell(agg, "send_rate", "{:.1f}"),
            cell(agg, "failed", "{:,.0f}"),
            f"{cell(agg, 'send_delay_p50_ms', spread=False)} / "
            f"{cell(agg, 'send_delay_p99_ms', spread=False)}",
            f"{cell(agg, 'first_token_delay_p50_ms', spread=False)} / "
            f"{cell(agg, 'first_token_delay_p99_ms', spread=False)}",
            f"{cell(agg, 'itl_bunched_pct', '{:.1f}', spread=False)} / "
            f"{cell(agg, 'itl_bunched_server_pct', '{:.1f}', spread=False)}",
            cell(agg, "loop_lag_p99_ms", "{:.1f}"),
            " / ".join(
                cell(agg, f"{k}_cpu", spread=False)
                for k in ("workers", "service", "target", "others")
            ),
            cell(agg, "trustworthy"),
        ]
    )
    return rows


def verdict(agg: dict[str, Any], rate_asked: float = RATE) -> list[str]:
    """One line per target of the issue: met or not, by how much (from the medians)."""
    lines = []
    if rate_asked != RATE:
        lines.append(
            f"This run was at {rate_asked:g} req/s, not the issue's {RATE:g}: the lines below "
            "compare with the issue's bounds for context only."
        )
    for name in ("ttft", "itl"):
        for q, bound in ((50, TARGET_P50_MS), (99, TARGET_P99_MS)):
            diff = med(agg, f"{name}_p{q}_diff_ms")
            if diff is None:
                continue
            met = abs(diff) <= bound
            worst = agg[f"{name}_p{q}_diff_ms"]
            lines.append(
                f"{name.upper()} p{q} within {bound} ms of the server's: "
                f"**{'met' if met else 'not met'}**: client "
                f"{fmt(med(agg, f'{name}_p{q}_client_ms'))} ms, server "
                f"{fmt(med(agg, f'{name}_p{q}_server_ms'))} ms, difference {diff:+.2f} ms"
                + (
                    f" ({abs(diff) / bound:.1f}x the bound)"
                    if not met
                    else f" ({abs(diff) / bound:.0%} of the bound)"
                )
                + f"; repeats {worst['min']:+.2f}…{worst['max']:+.2f} ms; per request "
                f"(paired) the p{q} difference is "
                f"{fmt(med(agg, f'{name}_paired_diff_p{q}_ms'), '{:+.2f}')} ms."
            )
    lag = med(agg, "sched_lag_p99_ms")
    if lag is not None:
        met = lag <= TARGET_LAG_P99_MS
        lines.append(
            f"Schedule lag p99 ≤ {TARGET_LAG_P99_MS} ms: **{'met' if met else 'not met'}**: "
            f"{lag:.3f} ms (p50 {fmt(med(agg, 'sched_lag_p50_ms'), '{:.3f}')} ms)"
            + ("" if met else f", {lag / TARGET_LAG_P99_MS:.1f}x the bound")
            + "."
        )
    p99 = med(agg, "ttft_p99_diff_ms")
    if p99 is not None:
        lines.append(
            f"Against peers (TTFT p99 ~{PEERS_TTFT_P99_MS:.0f} ms above the server's own p99): "
            f"clientswarm's TTFT p99 is {p99:+.2f} ms from the server's."
        )
    machine = med(agg, "machine_cpu")
    if machine is not None:
        cores = os.cpu_count() or 1
        parts = ", ".join(
            f"{role} {fmt(med(agg, f'{role}_cpu'))}"
            for role in ("workers", "service", "target", "others")
        )
        lines.append(
            f"CPU over the measured window: {machine:.2f} of {cores} cores busy ({parts})"
            + (
                ": the machine was full, so every latency above includes waiting for a core"
                if machine >= 0.85 * cores
                else ""
            )
            + "."
        )
    rate, trusted = med(agg, "summary_request_rate"), agg.get("trustworthy")
    if rate is not None and trusted:
        lines.append(
            f"Achieved {rate:.1f} req/s of {rate_asked:g} (Poisson, so a run's count varies); "
            f"the run called itself trustworthy in {trusted['true']} of {trusted['of']} repeats."
        )
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    """RESULTS-exactness.md."""
    info, settings, agg = doc["machine"], doc["settings"], doc["metrics"]
    warnings: dict[str, int] = {}
    for run in doc["runs"]:
        for w in run.get("warnings", []):
            warnings[w] = warnings.get(w, 0) + 1
    out = [
        "# clientswarm timing exactness against the server's own clock (issue 7)",
        "",
        "Produced by `bench/exactness.py` (see `bench/README.md`). `clientswarm run` with "
        f"`spawner.workers: {WORKERS}`, one open-loop group of {CLIENTS} clients, Poisson "
        f"arrivals at {settings['rate']:g} req/s (no `max_concurrency`), streamed chats of "
        f"`max_tokens: {TOKENS}`, {WARMUP_S:g} s warm-up then {settings['duration_s']:g} s "
        "measured, against `bench/paced_target.py` (an asyncio protocol with httptools on "
        "uvloop, one process) answering every request with its first token "
        f"{TTFT_MS:g} ms after the request's arrival (the socket read that starts it) and one "
        f"token every {ITL_MS:g} ms, {TOKENS} tokens, on absolute deadlines, recording "
        "`time.time_ns()` after each write. Same machine, loopback. Every measured client "
        "sample is paired with the server's record of the same request (each client has its own "
        "system prompt); both distributions are over those requests. Cells are medians over "
        f"{settings['repeats']} repeat(s), brackets min…max. Raw values per repeat: "
        f"`{doc['json_name']}`.",
        "",
        "## Machine",
        "",
        *machine_lines(info),
        "",
        "## Against the issue's targets",
        "",
        *(f"- {line}" for line in verdict(agg, settings["rate"])),
        "",
        "## Client against server",
        "",
        markdown_table(main_rows(agg)),
        "",
        "- `client`: TTFT from the send to the first content token, ITL the gaps between tokens, "
        "as `samples.jsonl` has them; `server`: from the socket read that starts the request "
        "to the first token's write returning, and the gaps between the token writes.",
        "- `client - server`: the client's percentile less the server's (what the target "
        "speaks of); `paired diff`: the same percentile of the per-request (TTFT) or per-gap "
        "(ITL) differences, client minus server.",
        "",
        "## The runs",
        "",
        markdown_table(run_rows(agg)),
        "",
        "- `request delivery`: server arrival - client send; `first token delivery`: client "
        "receive - server write (two processes' Unix clocks; their sum is the TTFT difference). "
        "`send rate`: (n - 1) / (last send - first send) of the measured requests. `ITL <1ms "
        "%`: share of gaps under 1 ms (tokens that arrived, or were written, bunched).",
        "- `CPU`: cores used over the measured window (from the end of warm-up to "
        f"{END_MARGIN_S} s before the planned end), from `/proc/<pid>/stat`, by the two workers, "
        "the run process (the in-process service that receives the samples), the paced target, "
        "and every other process of the machine (`/proc/stat` busy time less those and this "
        "script): other people's work.",
        "",
        "## Warnings the runs reported",
        "",
        *([f"- ({n}x) {w}" for w, n in warnings.items()] or ["- none"]),
        "",
    ]
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    """Run, print, write; 1 if any run did not complete."""
    info = machine_info()
    soft, hard = raise_nofile()
    info["nofile"] = {"soft_before": soft, "hard": hard}
    raw: dict[str, list[Any]] = {}
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clientswarm-exactness-") as tmp_name:
        tmp = Path(tmp_name)
        with paced_target(TTFT_MS, ITL_MS, TOKENS, stderr_path=tmp / "target.err") as target:
            for r in range(args.repeats):
                m = run_once(target, tmp, args.duration_s, args.rate, str(r))
                runs.append({"repeat": r + 1, "metrics": m, "warnings": m.pop("warnings")})
                for key, value in m.items():
                    if value is None or isinstance(value, bool | int | float):
                        raw.setdefault(key, []).append(value)
                log(
                    f"[{r + 1}/{args.repeats}] {m.get('paired', 0):,} paired requests, "
                    f"TTFT p50/p99 client-server {fmt(m.get('ttft_p50_diff_ms'), '{:+.2f}')}/"
                    f"{fmt(m.get('ttft_p99_diff_ms'), '{:+.2f}')} ms, ITL "
                    f"{fmt(m.get('itl_p50_diff_ms'), '{:+.2f}')}/"
                    f"{fmt(m.get('itl_p99_diff_ms'), '{:+.2f}')} ms, sched lag p99 "
                    f"{fmt(m.get('sched_lag_p99_ms'), '{:.3f}')} ms, "
                    f"{fmt(m.get('summary_request_rate'), '{:.1f}')} req/s, "
                    f"trustworthy {m.get('trustworthy')}"
                )
    info["wall_s"] = round(time.monotonic() - started, 1)
    agg = {k: aggregate(v) for k, v in raw.items()}
    suffix = "-quick" if args.quick else ""
    json_path = args.out / f"results-exactness{suffix}.json"
    md_path = args.out / f"RESULTS-exactness{suffix}.md"
    doc = {
        "machine": info,
        "settings": {
            "duration_s": args.duration_s,
            "repeats": args.repeats,
            "warmup_s": WARMUP_S,
            "workers": WORKERS,
            "clients": CLIENTS,
            "rate": args.rate,
            "target": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "tokens": TOKENS},
        },
        "cluster_config": cluster_config("http://127.0.0.1:PORT", args.duration_s, args.rate),
        "targets": {
            "p50_ms": TARGET_P50_MS,
            "p99_ms": TARGET_P99_MS,
            "schedule_lag_p99_ms": TARGET_LAG_P99_MS,
        },
        "verdict": verdict(agg, args.rate),
        "metrics": agg,
        "runs": runs,
        "json_name": json_path.name,
    }
    write_outcome(
        doc,
        [main_rows(agg, spread=False), run_rows(agg)],
        (json_path, md_path),
        render_markdown,
        info["wall_s"],
    )
    return 0 if all(run["metrics"]["completed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
