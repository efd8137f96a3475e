"""The scale target of issue 7: many concurrent open streams from one machine, and their memory.

Target: "10,000 concurrent open streams from one machine (slow-streaming target) held for 60 s,
memory growing linearly and bounded (state the bytes per stream)".

The target is ``paced_target.py`` in slow mode: first token 100 ms after arrival, then one token
a second, long enough that every stream outlives the hold (``ceil((ramp + hold) / 1 s) + 1``
tokens: 71 for the defaults, ~70 s a stream). ``clientswarm run`` with ``spawner.workers: 2``
and one open-loop group of S clients, constant arrivals at S / ramp per second, ``stop.requests:
S``: the streams open evenly over the ramp (10 s), all S are open for the hold (60 s), then they
end one by one over another ramp as their answers complete, and the run ends.

Sampled every second while it runs: the target's open-stream count (``GET /stats``), every
worker's RSS (the ``clientswarm.worker`` children of the run process), the run process's and the
target's RSS, and their CPU times. Reported: peak streams, RSS per worker before the first
request and at the peak, the slope of total worker RSS against open streams (a least-squares
fit over the samples from the first request until the first stream ends: bytes per open
stream), the RSS drift while the streams are held (bounded: it should not grow), CPU per open
stream, the open-file limit, failures and the summary's counts.

Writes ``RESULTS-scale.md`` and ``results-scale.json`` beside this file (``--quick``: 1,000
streams held 10 s, ``*-scale-quick.*``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import children, cmdline, cpu_seconds, machine_cpu, rss_kb
from paced_target import PacedTarget, paced_target, raise_nofile
from report import (
    clientswarm_argv,
    log,
    machine_info,
    machine_lines,
    markdown_table,
    write_outcome,
)

HERE = Path(__file__).resolve().parent
WORKERS = 2
TTFT_MS, ITL_MS = 100.0, 1000.0
SAMPLE_EVERY_S = 1.0
STARTUP_TIMEOUT_S = 60.0
#: The issue's target.
TARGET_STREAMS, TARGET_HOLD_S = 10_000, 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=None, help="S (default 10,000)")
    parser.add_argument("--ramp-s", type=float, default=10.0, help="streams open over this time")
    parser.add_argument("--hold-s", type=float, default=None, help="all open this long (60)")
    parser.add_argument("--quick", action="store_true", help="1,000 streams held 10 s, *-quick.*")
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the result files")
    args = parser.parse_args(argv)
    if args.streams is None:
        args.streams = 1000 if args.quick else TARGET_STREAMS
    if args.hold_s is None:
        args.hold_s = 10.0 if args.quick else TARGET_HOLD_S
    if args.streams < WORKERS or args.ramp_s <= 0 or args.hold_s <= 0:
        parser.error("--streams must be at least 2, --ramp-s and --hold-s positive")
    return args


def tokens_for(ramp_s: float, hold_s: float) -> int:
    """Tokens per answer so that a stream opened at the start outlives the hold."""
    return math.ceil((ramp_s + hold_s) / (ITL_MS / 1000)) + 1


def cluster_config(url: str, streams: int, ramp_s: float, hold_s: float) -> dict[str, Any]:
    """S clients, one open-loop arrival each, evenly over the ramp; answers outlive the hold."""
    tokens = tokens_for(ramp_s, hold_s)
    stream_s = TTFT_MS / 1000 + (tokens - 1) * ITL_MS / 1000
    return {
        "name": "scale",
        "seed": 1,
        "target": {"url": url, "model": "mock-model", "timeout_s": stream_s + ramp_s + 120},
        "spawner": {"kind": "local", "workers": WORKERS},
        "warmup_s": 0,
        "groups": [
            {
                "name": "streams",
                "clients": streams,
                "interaction": {
                    "kind": "chat",
                    "stream": True,
                    "max_tokens": tokens,
                    "prompts": ["Hi"],
                },
                "load": {"kind": "open", "rate": streams / ramp_s, "arrival": "constant"},
                "stop": {"requests": streams},
            }
        ],
    }


def read_int(path: str) -> str | None:
    """The text of a small /proc file ('' → None)."""
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


# -- the run -------------------------------------------------------------------------------------


def sample_once(target: PacedTarget, run_pid: int, workers: list[int], t0: float) -> dict[str, Any]:
    """One sample: target stats, RSS (kB) and CPU seconds of the workers, run and target."""
    try:
        stats = target.stats()
    except OSError as exc:
        stats = {"error": str(exc)}
    row: dict[str, Any] = {"t": round(time.monotonic() - t0, 3), **stats}
    row["worker_rss_kb"] = [(rss_kb(p) or (None, None))[0] for p in workers]
    row["run_rss_kb"] = (rss_kb(run_pid) or (None, None))[0]
    row["target_rss_kb"] = (rss_kb(target.proc.pid) or (None, None))[0]
    row["worker_cpu_s"] = [cpu_seconds(p) for p in workers]
    row["run_cpu_s"] = cpu_seconds(run_pid)
    row["target_cpu_s"] = cpu_seconds(target.proc.pid)
    row["machine_busy_s"] = machine_cpu()[0]
    return row


def run_scale(
    target: PacedTarget, tmp: Path, streams: int, ramp_s: float, hold_s: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the cluster, sampling every second; (summary-derived facts, samples)."""
    config = tmp / "cluster.json"
    config.write_text(json.dumps(cluster_config(target.url, streams, ramp_s, hold_s), indent=2))
    out = tmp / "out"
    argv = clientswarm_argv("run", str(config), "--output", str(out))
    stdout_path = tmp / "stdout.txt"
    rows: list[dict[str, Any]] = []
    t0 = time.monotonic()
    deadline = t0 + STARTUP_TIMEOUT_S + 2 * ramp_s + hold_s + 180
    with stdout_path.open("wb") as stdout:
        proc = subprocess.Popen(
            argv, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True
        )
    workers: list[int] = []
    baseline: dict[str, Any] | None = None
    try:
        # Until the first request: find the workers, keep their last RSS before it.
        while proc.poll() is None and time.monotonic() < t0 + STARTUP_TIMEOUT_S:
            if len(workers) < WORKERS:
                workers = [c for c in children(proc.pid) if "clientswarm.worker" in cmdline(c)]
            row = sample_once(target, proc.pid, workers, t0)
            if row.get("started"):
                break
            if len(workers) == WORKERS:
                baseline = row
            time.sleep(0.02)
        next_at = time.monotonic()
        while proc.poll() is None:
            if time.monotonic() > deadline:
                log("  killing clientswarm run: still running long after its planned end")
                os.killpg(proc.pid, signal.SIGKILL)
                break
            rows.append(sample_once(target, proc.pid, workers, t0))
            last = rows[-1]
            if len(rows) % 10 == 1:
                rss = sum(v or 0 for v in last["worker_rss_kb"]) / 1024
                log(
                    f"  t={last['t']:5.1f} s  open {last.get('open', '?'):>6}  "
                    f"workers RSS {rss:6.1f} MB"
                )
            next_at += SAMPLE_EVERY_S
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        returncode = proc.wait()
    facts: dict[str, Any] = {
        "returncode": returncode,
        "wall_s": round(time.monotonic() - t0, 1),
        "workers_found": len(workers),
        "baseline": baseline,
        "stdout_tail": stdout_path.read_text(errors="replace")[-3000:],
    }
    summary_path = out / "summary.json"
    facts["summary"] = json.loads(summary_path.read_text()) if summary_path.exists() else None
    facts["target_final"] = target.stats()
    return facts, rows


# -- analysis ------------------------------------------------------------------------------------


def analyse(facts: dict[str, Any], rows: list[dict[str, Any]], streams: int) -> dict[str, Any]:
    """Peak, RSS per stream (fit), drift over the hold, CPU per stream, the summary's counts."""
    m: dict[str, Any] = {"streams": streams, "returncode": facts["returncode"]}
    ok_rows = [r for r in rows if "open" in r and None not in r["worker_rss_kb"]]
    if not ok_rows:
        return m
    opens = [r["open"] for r in ok_rows]
    peak = max(opens)
    m["peak_open"] = peak
    m["target_peak_open"] = facts["target_final"].get("peak_open")
    base = facts["baseline"]
    if base and None not in base["worker_rss_kb"]:
        m["rss_start_worker_mb"] = [v / 1024 for v in base["worker_rss_kb"]]
        m["rss_start_run_mb"] = (base["run_rss_kb"] or 0) / 1024
    peak_row = max(ok_rows, key=lambda r: (r["open"], -r["t"]))
    m["rss_peak_worker_mb"] = [v / 1024 for v in peak_row["worker_rss_kb"]]
    m["rss_peak_total_mb"] = sum(peak_row["worker_rss_kb"]) / 1024
    m["rss_max_worker_mb"] = max(max(r["worker_rss_kb"]) for r in ok_rows) / 1024
    m["rss_peak_run_mb"] = max((r["run_rss_kb"] or 0) for r in ok_rows) / 1024
    m["rss_peak_target_mb"] = max((r["target_rss_kb"] or 0) for r in ok_rows) / 1024
    # The fit: from the first request until the first stream ends (opening and held).
    rising = [r for r in ok_rows if r.get("started") and not r.get("finished")]
    if len(rising) >= 3:
        x = np.array([r["open"] for r in rising], dtype=float)
        y = np.array([sum(r["worker_rss_kb"]) * 1024 for r in rising], dtype=float)
        if np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            fitted = slope * x + intercept
            ss_res, ss_tot = float(np.sum((y - fitted) ** 2)), float(np.sum((y - y.mean()) ** 2))
            m["bytes_per_stream"] = float(slope)
            m["fit_intercept_mb"] = float(intercept) / 2**20
            m["fit_r2"] = 1 - ss_res / ss_tot if ss_tot > 0 else None
            m["fit_points"] = len(rising)
            m["fit_max_residual_mb"] = float(np.max(np.abs(y - fitted))) / 2**20
    # The hold: every stream open (within 1 %) and none finished yet.
    held = [r for r in rising if r["open"] >= 0.99 * streams]
    if len(held) >= 2:
        first, last = held[0], held[-1]
        span = last["t"] - first["t"]
        m["hold_observed_s"] = span
        m["hold_rss_growth_mb"] = (sum(last["worker_rss_kb"]) - sum(first["worker_rss_kb"])) / 1024
        # Each open stream keeps one timestamp per token until it ends (its sample's ITLs).
        tokens_received = streams * span / (ITL_MS / 1000)
        if tokens_received > 0:
            m["hold_bytes_per_token"] = m["hold_rss_growth_mb"] * 2**20 / tokens_received
        if span > 0:
            hx = np.array([r["t"] for r in held])
            hy = np.array([sum(r["worker_rss_kb"]) / 1024 for r in held])
            m["hold_rss_drift_mb_per_min"] = float(np.polyfit(hx, hy, 1)[0]) * 60
            cpu = [
                (b - a)
                for a, b in zip(first["worker_cpu_s"], last["worker_cpu_s"], strict=True)
                if a is not None and b is not None
            ]
            m["hold_workers_cpu"] = sum(cpu) / span
            m["hold_worker_us_per_stream_s"] = sum(cpu) / span / streams * 1e6
            for key in ("run_cpu_s", "target_cpu_s"):
                if first[key] is not None and last[key] is not None:
                    m[f"hold_{key.removesuffix('_cpu_s')}_cpu"] = (last[key] - first[key]) / span
            m["hold_machine_cpu"] = (last["machine_busy_s"] - first["machine_busy_s"]) / span
    summary = facts.get("summary") or {}
    total = summary.get("total") or {}
    if total:
        lags = [w.get("loop_lag_p99_s") for w in summary.get("workers", [])]
        lags = [v for v in lags if v is not None]

        def p(dist: str, q: str) -> float | None:
            d = total.get(dist) or {}
            return None if d.get(q) is None else d[q] * 1000

        m |= {
            "summary_requests": total["requests"],
            "succeeded": total["succeeded"],
            "failed": total["failed"],
            "errors": total.get("errors", {}),
            "cancelled_excluded": total.get("cancelled_excluded"),
            "output_tokens": total.get("output_tokens"),
            "ttft_p50_ms": p("ttft_s", "p50"),
            "ttft_p99_ms": p("ttft_s", "p99"),
            "itl_p50_ms": p("itl_s", "p50"),
            "itl_p99_ms": p("itl_s", "p99"),
            "sched_lag_p99_ms": p("schedule_lag_s", "p99"),
            "loop_lag_p99_ms": max(lags) * 1000 if lags else None,
            "trustworthy": bool(summary.get("trustworthy")),
            "warnings": summary.get("warnings", []),
        }
    m["completed"] = bool(
        facts["returncode"] == 0 and total and m.get("failed") == 0 and peak >= streams
    )
    return m


# -- report ---------------------------------------------------------------------------------------


def fmt(value: Any, spec: str = "{:.1f}") -> str:
    """A number, or ``-``."""
    return "-" if value is None else spec.format(value)


def mbs(values: list[float] | None) -> str:
    """Per-worker MB values, ``a / b``."""
    return "-" if not values else " / ".join(f"{v:.0f}" for v in values)


def main_rows(m: dict[str, Any]) -> list[list[str]]:
    """The one-row results table."""
    rows = [
        [
            "streams",
            "peak open (target)",
            "RSS per worker MB: before / at peak",
            "bytes per stream (fit)",
            "fit R²",
            "RSS drift in hold MB/min",
            "failed",
            "worker CPU in hold (cores)",
            "loop lag p99 ms",
            "trustworthy",
        ],
        [
            f"{m['streams']:,}",
            fmt(m.get("peak_open"), "{:,.0f}"),
            f"{mbs(m.get('rss_start_worker_mb'))} → {mbs(m.get('rss_peak_worker_mb'))}",
            fmt(m.get("bytes_per_stream"), "{:,.0f}"),
            fmt(m.get("fit_r2"), "{:.4f}"),
            fmt(m.get("hold_rss_drift_mb_per_min"), "{:+.2f}"),
            fmt(m.get("failed"), "{:,.0f}"),
            fmt(m.get("hold_workers_cpu"), "{:.2f}"),
            fmt(m.get("loop_lag_p99_ms"), "{:.1f}"),
            "-" if m.get("trustworthy") is None else ("yes" if m["trustworthy"] else "no"),
        ],
    ]
    return rows


def verdict(m: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """Against the issue's target."""
    lines = []
    peak, streams = m.get("peak_open"), settings["streams"]
    held = m.get("hold_observed_s")
    if peak is not None:
        met = (
            peak >= TARGET_STREAMS
            and (held or 0) >= TARGET_HOLD_S - 2 * SAMPLE_EVERY_S
            and m.get("failed") == 0
        )
        lines.append(
            f"{TARGET_STREAMS:,} concurrent open streams held {TARGET_HOLD_S:.0f} s: "
            f"**{'met' if met else 'not met' if streams >= TARGET_STREAMS else 'not tested'}**: "
            f"{peak:,} streams open at once at the target (asked {streams:,}), all of them open "
            f"for {fmt(held)} s (sampled every {SAMPLE_EVERY_S:g} s), "
            f"{fmt(m.get('failed'), '{:,.0f}')} failed requests"
            + (
                ""
                if streams >= TARGET_STREAMS
                else f" (a --quick run: {streams:,} streams, not the issue's {TARGET_STREAMS:,})"
            )
            + "."
        )
    slope = m.get("bytes_per_stream")
    if slope is not None:
        drift = m.get("hold_rss_drift_mb_per_min")
        lines.append(
            f"Memory linear and bounded: {slope / 1024:,.1f} KiB of worker RSS per open stream "
            f"(least-squares fit of the two workers' total RSS against open streams, R² "
            f"{fmt(m.get('fit_r2'), '{:.4f}')}, largest residual "
            f"{fmt(m.get('fit_max_residual_mb'))} MB, intercept "
            f"{fmt(m.get('fit_intercept_mb'))} MB); while all streams were held the workers' RSS "
            f"moved {fmt(drift, '{:+.2f}')} MB/min "
            f"({fmt(m.get('hold_rss_growth_mb'), '{:+.1f}')} MB over the hold, "
            f"{fmt(m.get('hold_bytes_per_token'), '{:.0f}')} bytes per token received: each "
            "stream keeps a timestamp per token until it ends, so a stream's memory is bounded by "
            "its length)."
        )
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    """RESULTS-scale.md."""
    info, s, m = doc["machine"], doc["settings"], doc["metrics"]
    lim = info["limits"]
    errors = f" (errors: {m['errors']})" if m.get("errors") else ""
    out = [
        "# clientswarm: concurrent open streams and their memory (issue 7)",
        "",
        "Produced by `bench/scale.py` (see `bench/README.md`). `clientswarm run` with "
        f"`spawner.workers: {WORKERS}`, one open-loop group of {s['streams']:,} clients, "
        f"constant arrivals at {s['streams'] / s['ramp_s']:,.0f}/s for {s['ramp_s']:g} s "
        f"(`stop.requests: {s['streams']}`), streamed chats against `bench/paced_target.py` in "
        f"slow mode (first token after {TTFT_MS:g} ms, then one token every {ITL_MS:g} ms, "
        f"{s['tokens']} tokens: each stream lasts {s['stream_s']:g} s, so every stream is open "
        f"for the {s['hold_s']:g} s hold). One run; RSS, CPU and the target's open-stream count "
        f"sampled every {SAMPLE_EVERY_S:g} s. Raw samples: `{doc['json_name']}`.",
        "",
        "## Machine",
        "",
        *machine_lines(info),
        f"- open files (`RLIMIT_NOFILE`): soft {lim['nofile_soft_before']} raised to "
        f"{lim['nofile_soft']} (hard {lim['nofile_hard']}) for this script and its children; "
        f"ephemeral ports {lim['ip_local_port_range']}; somaxconn {lim['somaxconn']}",
        "",
        "## Against the issue's target",
        "",
        *(f"- {line}" for line in verdict(m, s)),
        "",
        "## Results",
        "",
        markdown_table(main_rows(m)),
        "",
        f"- RSS before: each worker's VmRSS just before the first request (its {s['streams']:,} "
        "clients created, start-up done); at peak: the sample with the most open streams.",
        "- bytes per stream: slope of the workers' total VmRSS against the target's open-stream "
        f"count, over the {fmt(m.get('fit_points'), '{:.0f}')} samples from the first request "
        "until the first stream ended (opening, then held).",
        f"- Peak RSS: largest worker {fmt(m.get('rss_max_worker_mb'))} MB, the run process "
        f"(service) {fmt(m.get('rss_peak_run_mb'))} MB, the target "
        f"{fmt(m.get('rss_peak_target_mb'))} MB.",
        f"- CPU while held (cores): workers {fmt(m.get('hold_workers_cpu'), '{:.2f}')} "
        f"({fmt(m.get('hold_worker_us_per_stream_s'), '{:.0f}')} µs per stream-second, i.e. per "
        f"token), run process {fmt(m.get('hold_run_cpu'), '{:.2f}')}, target "
        f"{fmt(m.get('hold_target_cpu'), '{:.2f}')}, whole machine "
        f"{fmt(m.get('hold_machine_cpu'), '{:.2f}')}.",
        f"- Summary: {fmt(m.get('summary_requests'), '{:,.0f}')} requests, "
        f"{fmt(m.get('succeeded'), '{:,.0f}')} succeeded, {fmt(m.get('failed'), '{:,.0f}')} "
        f"failed{errors}, "
        f"{fmt(m.get('output_tokens'), '{:,.0f}')} output "
        f"tokens; TTFT p50/p99 {fmt(m.get('ttft_p50_ms'))}/{fmt(m.get('ttft_p99_ms'))} ms, ITL "
        f"p50/p99 {fmt(m.get('itl_p50_ms'))}/{fmt(m.get('itl_p99_ms'))} ms, schedule lag p99 "
        f"{fmt(m.get('sched_lag_p99_ms'), '{:.2f}')} ms, run wall time {doc['wall_s']} s.",
        "",
        "## Warnings the run reported",
        "",
        *([f"- {w}" for w in m.get("warnings", [])] or ["- none"]),
        "",
    ]
    return "\n".join(out)


def main(args: argparse.Namespace) -> int:
    """Run, print, write; 1 if the run did not complete."""
    info = machine_info()
    soft_before, hard = raise_nofile()
    info["limits"] = {
        "nofile_soft_before": soft_before,
        "nofile_soft": hard,
        "nofile_hard": hard,
        "ip_local_port_range": (read_int("/proc/sys/net/ipv4/ip_local_port_range") or "?").replace(
            "\t", "-"
        ),
        "somaxconn": read_int("/proc/sys/net/core/somaxconn"),
    }
    need = args.streams + 512
    if hard < need:
        log(f"warning: RLIMIT_NOFILE hard limit {hard} < {need}: the target will run out of files")
    tokens = tokens_for(args.ramp_s, args.hold_s)
    stream_s = TTFT_MS / 1000 + (tokens - 1) * ITL_MS / 1000
    settings = {
        "streams": args.streams,
        "ramp_s": args.ramp_s,
        "hold_s": args.hold_s,
        "tokens": tokens,
        "stream_s": stream_s,
        "workers": WORKERS,
        "target": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "tokens": tokens},
    }
    log(
        f"{args.streams:,} streams over {args.ramp_s:g} s, held {args.hold_s:g} s "
        f"({tokens} tokens, {stream_s:g} s a stream); open files: soft {soft_before} → {hard}"
    )
    with tempfile.TemporaryDirectory(prefix="clientswarm-scale-") as tmp_name:
        tmp = Path(tmp_name)
        with paced_target(
            TTFT_MS, ITL_MS, tokens, token_times=False, stderr_path=tmp / "target.err"
        ) as target:
            facts, rows = run_scale(target, tmp, args.streams, args.ramp_s, args.hold_s)
        target_err = (tmp / "target.err").read_text(errors="replace")[-2000:]
    m = analyse(facts, rows, args.streams)
    if not m.get("completed"):
        log(
            f"the run did not complete or had failures (exit {facts['returncode']}):\n"
            f"{facts['stdout_tail']}\ntarget stderr:\n{target_err}"
        )
    suffix = "-quick" if args.quick else ""
    json_path = args.out / f"results-scale{suffix}.json"
    md_path = args.out / f"RESULTS-scale{suffix}.md"
    doc = {
        "machine": info,
        "settings": settings,
        "cluster_config": cluster_config(
            "http://127.0.0.1:PORT", args.streams, args.ramp_s, args.hold_s
        ),
        "targets": {"streams": TARGET_STREAMS, "hold_s": TARGET_HOLD_S},
        "verdict": verdict(m, settings),
        "metrics": m,
        "wall_s": facts["wall_s"],
        "baseline_sample": facts["baseline"],
        "samples": rows,
        "json_name": json_path.name,
    }
    write_outcome(doc, [main_rows(m)], (json_path, md_path), render_markdown, facts["wall_s"])
    return 0 if m.get("completed") else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
