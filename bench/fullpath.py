"""The throughput target of issue 7, measured from outside ``clientswarm run``.

Target: "≥ 5,000 streamed 128-token chat requests/s through the full path (``clientswarm run``,
every per-token timestamp kept, samples shipped to and committed by the service), ≤ 0.35 CPU-s
per 1,000 requests, ≤ 150 MB RSS per worker", with the target sharing the machine's cores,
``spawner.workers: 2``, closed loop, 64 concurrent clients.

The target is nginx (``nginx_target.py``, one worker process) serving one fixed 128-token
stream. Each repeat runs, one after the other against the same nginx:

- ``clientswarm``: ``clientswarm run CONFIG --output DIR`` as a subprocess under
  ``/usr/bin/time -v``;
- ``bare loop``: ``bare_loop.py`` (aiohttp + uvloop + orjson, 2 processes x 32 streams, one
  timestamp per token chunk, nothing else), the issue's reference for what Python can do here.

Everything is measured from outside: requests are lines of nginx's access log; CPU is
utime + stime of ``/proc/<pid>/stat`` of the workers, of the run process (the in-process service
that receives and commits the samples) and of nginx, read at the start and the end of the
measured window (from the end of warm-up, which starts when nginx logs the run's first request,
to just before the planned end); RSS is each worker's ``VmHWM``/``VmRSS``, sampled every 0.1 s
until it exits. The summary's own counts are reported beside nginx's for comparison.

Writes ``RESULTS-fullpath.md`` and ``results-fullpath.json`` beside this file (``--quick``: 1
repeat of 4 s, ``*-fullpath-quick.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import children, cmdline, cpu_seconds, machine_cpu, rss_kb
from nginx_target import NGINX, NginxTarget, nginx_target
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
TIME = Path("/usr/bin/time")
WORKERS = 2
CLIENTS = 64
TOKENS = 128
WARMUP_S = 1.0
BARE_PROCS, BARE_STREAMS = 2, 32
#: The measured window closes this long before the planned end, while every client is busy.
#: (The window opens when nginx logs the first request, a few ms after the run really starts.)
END_MARGIN_S = 0.25
SAMPLE_EVERY_S = 0.1
STARTUP_TIMEOUT_S = 60.0
#: The issue's targets.
TARGET_REQ_S = 5000.0
TARGET_CPU_PER_1K = 0.35
TARGET_RSS_MB = 150.0
CASES = ("clientswarm", "bare loop")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_options(parser, HERE)
    args = parser.parse_args(argv)
    check_run_options(parser, args)
    return args


# -- processes ---------------------------------------------------------------------------------


class AccessLog:
    """Lines of nginx's access log, counted incrementally (reads only what was appended)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def count(self) -> int:
        """Lines logged so far."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


#: role ("workers", "service", "launcher") → pids; called with the pid the benchmark started.
Roles = Callable[[int], dict[str, list[int]]]


def clientswarm_roles(top: int, timed: bool) -> dict[str, list[int]]:
    """The run process (the service) and its ``clientswarm.worker`` children."""
    runs = [p for p in children(top) if "clientswarm" in cmdline(p)] if timed else [top]
    workers = [c for r in runs for c in children(r) if "clientswarm.worker" in cmdline(c)]
    return {"workers": workers, "service": runs}


def bare_roles(top: int, timed: bool) -> dict[str, list[int]]:
    """The bare loop's launcher and its client processes."""
    launchers = [p for p in children(top) if "bare_loop" in cmdline(p)] if timed else [top]
    clients = [c for r in launchers for c in children(r) if "--child" in cmdline(c)]
    return {"workers": clients, "launcher": launchers}


@dataclass
class Watched:
    """What one subprocess run measured from outside."""

    returncode: int
    started: bool
    window_s: float = 0.0
    requests: int = 0
    """nginx log lines in the measured window."""
    run_requests: int = 0
    """nginx log lines from before the start to after the exit."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds in the window by role (``workers``, ``service``/``launcher``, ``nginx``,
    ``bench`` (this process), ``machine`` (every process))."""
    pids: dict[str, list[int]] = field(default_factory=dict)
    peak_rss_kb: dict[int, int] = field(default_factory=dict)
    rusage_s: float | None = None
    """user + system CPU seconds of the whole tree, start to exit, from getrusage."""


def watch(
    argv: list[str],
    *,
    output: Path,
    access: AccessLog,
    nginx: NginxTarget,
    roles: Roles,
    run_s: float,
) -> Watched:
    """Run ``argv``; measure the window from ``WARMUP_S`` after nginx logs its first request."""
    before_lines = access.count()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with output.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    peak: dict[int, int] = {}
    tracked: list[int] = []

    def sample() -> None:
        for pid in tracked:
            got = rss_kb(pid)
            if got is not None:
                peak[pid] = max(peak.get(pid, 0), *got)

    def wait_until(at: float) -> bool:
        """Sample RSS until ``at``; False if the process ended first."""
        while (left := at - time.monotonic()) > 0:
            if proc.poll() is not None:
                return False
            time.sleep(min(SAMPLE_EVERY_S, left))
            sample()
            access.count()  # keeps the read at the window's edge short
        return True

    hard_deadline = time.monotonic() + STARTUP_TIMEOUT_S + run_s + 120
    result = Watched(returncode=0, started=False)
    try:
        start_deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while access.count() == before_lines:
            if proc.poll() is not None or time.monotonic() > start_deadline:
                break
            time.sleep(0.005)
        else:
            result.started = True
            first = time.monotonic()
            # Every process is up once requests flow: find them now, outside the window.
            pids = roles(proc.pid)
            pids["nginx"] = nginx.cpu_pids()
            tracked[:] = pids["workers"] + pids.get("service", []) + pids.get("launcher", [])
            if wait_until(first + WARMUP_S):
                cpu0 = {p: cpu_seconds(p) for ps in pids.values() for p in ps}
                busy0, me0 = machine_cpu()[0], time.process_time()
                lines0, t0 = access.count(), time.monotonic()
                if wait_until(first + WARMUP_S + run_s - END_MARGIN_S):
                    cpu1 = {p: cpu_seconds(p) for ps in pids.values() for p in ps}
                    busy1, me1 = machine_cpu()[0], time.process_time()
                    lines1, t1 = access.count(), time.monotonic()
                    result.window_s, result.requests, result.pids = t1 - t0, lines1 - lines0, pids
                    for role, ps in pids.items():
                        spent = [
                            (after - before)
                            for p in ps
                            if (before := cpu0[p]) is not None and (after := cpu1[p]) is not None
                        ]
                        result.cpu_s[role] = sum(spent)
                    result.cpu_s["bench"] = me1 - me0
                    result.cpu_s["machine"] = busy1 - busy0
        while proc.poll() is None:
            if time.monotonic() > hard_deadline:
                log(f"  killing {argv[0]}: still running after {run_s + 120:.0f} s")
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(SAMPLE_EVERY_S)
            sample()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        result.returncode = proc.wait()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.rusage_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    time.sleep(0.2)  # nginx logs a request when it has finished with its connection
    result.run_requests = access.count() - before_lines
    result.peak_rss_kb = peak
    return result


# -- the two cases ------------------------------------------------------------------------------


def cluster_config(url: str, duration_s: float) -> dict[str, Any]:
    """The issue's cluster: 2 workers, 64 closed-loop clients of streamed 128-token chats."""
    return {
        "name": "fullpath",
        "seed": 1,
        "target": {"url": url, "model": "mock-model", "timeout_s": 10},
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
                "load": {"kind": "closed"},
                "stop": {"duration_s": duration_s},
            }
        ],
    }


def time_v(path: Path) -> dict[str, str]:
    """The ``key: value`` lines ``/usr/bin/time -v -o PATH`` wrote."""
    if not path.exists():
        return {}
    pairs = (line.strip().rsplit(": ", 1) for line in path.read_text().splitlines())
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def common_metrics(w: Watched, timing: dict[str, str]) -> dict[str, Any]:
    """Rates, CPU per 1,000 requests and shares, RSS: what both cases report."""
    n, span = w.requests, w.window_s
    cpu = w.cpu_s

    def per_1k(seconds: float | None) -> float | None:
        return None if seconds is None or not n else seconds / n * 1000

    def share(seconds: float | None) -> float | None:
        return None if seconds is None or span <= 0 else seconds / span

    workers = cpu.get("workers")
    service = cpu.get("service", cpu.get("launcher"))
    total = None if workers is None else workers + (service or 0.0)
    ours = sum(cpu.get(k, 0.0) for k in ("workers", "service", "launcher", "nginx", "bench"))
    worker_peaks = [w.peak_rss_kb.get(p, 0) / 1024 for p in w.pids.get("workers", [])]
    service_peaks = [w.peak_rss_kb.get(p, 0) / 1024 for p in w.pids.get("service", [])]
    user, system = timing.get("User time (seconds)"), timing.get("System time (seconds)")
    tree_s = float(user) + float(system) if user and system else w.rusage_s
    max_rss = timing.get("Maximum resident set size (kbytes)")
    return {
        "started": w.started,
        "returncode": w.returncode,
        "window_s": span,
        "requests": n,
        "req_s": n / span if span > 0 else None,
        "cpu_per_1k_workers": per_1k(workers),
        "cpu_per_1k_service": per_1k(cpu.get("service")),
        "cpu_per_1k_total": per_1k(total),
        "cpu_per_1k_nginx": per_1k(cpu.get("nginx")),
        "workers_cpu": share(workers),
        "service_cpu": share(service),
        "nginx_cpu": share(cpu.get("nginx")),
        "bench_cpu": share(cpu.get("bench")),
        "machine_cpu": share(cpu.get("machine")),
        "others_cpu": share(max(0.0, cpu["machine"] - ours)) if "machine" in cpu else None,
        "workers_found": len(w.pids.get("workers", [])),
        "rss_peak_worker_mb": max(worker_peaks) if worker_peaks else None,
        "rss_peak_workers_mb": worker_peaks,
        "rss_peak_service_mb": max(service_peaks) if service_peaks else None,
        "nginx_run_requests": w.run_requests,
        "tree_cpu_s": tree_s,
        "tree_cpu_per_1k_run": tree_s / w.run_requests * 1000
        if tree_s and w.run_requests
        else None,
        "tree_max_rss_mb": int(max_rss) / 1024 if max_rss else None,
        "elapsed": timing.get("Elapsed (wall clock) time (h:mm:ss or m:ss)"),
    }


def run_clientswarm(
    nginx: NginxTarget, access: AccessLog, tmp: Path, duration_s: float, tag: str
) -> tuple[dict[str, Any], list[str]]:
    """One ``clientswarm run``: metrics and the summary's warnings."""
    config = tmp / f"cluster-{tag}.json"
    config.write_text(json.dumps(cluster_config(nginx.url, duration_s), indent=2))
    out = tmp / f"out-{tag}"
    argv = clientswarm_argv("run", str(config), "--output", str(out))
    timing_file = tmp / f"time-{tag}.txt"
    timed = TIME.exists()
    if timed:
        argv = [str(TIME), "-v", "-o", str(timing_file), *argv]
    watched = watch(
        argv,
        output=tmp / f"stdout-{tag}.txt",
        access=access,
        nginx=nginx,
        roles=lambda top: clientswarm_roles(top, timed),
        run_s=duration_s,
    )
    metrics = common_metrics(watched, time_v(timing_file))
    warnings: list[str] = []
    summary_path = out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    total = summary.get("total", {})
    if total:
        every = total["requests"] + total["warmup_excluded"] + total["cancelled_excluded"]
        warnings = summary.get("warnings", [])
        lags = [w.get("loop_lag_p99_s") for w in summary.get("workers", [])]
        lags = [v for v in lags if v is not None]
        metrics |= {
            "summary_requests": total["requests"],
            "summary_all_samples": every,
            "summary_minus_nginx": every - watched.run_requests,
            "summary_request_rate": total["request_rate"],
            "failed": total["failed"],
            "itl_gaps_per_ok_request": (
                total["itl_s"]["count"] / total["succeeded"] if total["succeeded"] else None
            ),
            "loop_lag_p99_ms": max(lags) * 1000 if lags else None,
            "trustworthy": bool(summary.get("trustworthy")),
        }
    metrics["completed"] = bool(
        watched.returncode == 0
        and watched.started
        and total
        and metrics["window_s"] > 0
        and metrics.get("failed") == 0
    )
    if not metrics["completed"]:
        tail = (tmp / f"stdout-{tag}.txt").read_text(errors="replace")[-2000:]
        log(
            f"  clientswarm run did not complete or had failed requests (exit "
            f"{watched.returncode}, {metrics.get('failed')} failed):\n{tail}"
        )
    return metrics, warnings


def run_bare(
    nginx: NginxTarget, access: AccessLog, tmp: Path, duration_s: float, tag: str
) -> dict[str, Any]:
    """One run of ``bare_loop.py``: metrics."""
    argv = [sys.executable, str(HERE / "bare_loop.py"), f"{nginx.url}/v1/chat/completions"]
    argv += [f"--procs={BARE_PROCS}", f"--streams={BARE_STREAMS}"]
    argv.append(f"--duration-s={WARMUP_S + duration_s}")
    timing_file = tmp / f"time-bare-{tag}.txt"
    timed = TIME.exists()
    if timed:
        argv = [str(TIME), "-v", "-o", str(timing_file), *argv]
    stdout = tmp / f"stdout-bare-{tag}.txt"
    watched = watch(
        argv,
        output=stdout,
        access=access,
        nginx=nginx,
        roles=lambda top: bare_roles(top, timed),
        run_s=duration_s,
    )
    metrics = common_metrics(watched, time_v(timing_file))
    text = stdout.read_text(errors="replace").strip()
    last = text.splitlines()[-1].split() if text else []
    reported, ok = (
        (int(last[0]), int(last[1])) if len(last) == 2 and text[-1].isdigit() else (None, None)
    )
    metrics["summary_all_samples"] = reported
    metrics["summary_minus_nginx"] = None if reported is None else reported - watched.run_requests
    metrics["failed"] = None if reported is None or ok is None else reported - ok
    metrics["completed"] = (
        watched.returncode == 0 and metrics["failed"] == 0 and metrics["window_s"] > 0
    )
    if not metrics["completed"]:
        log(
            f"  bare loop did not complete or had failed requests (exit {watched.returncode}, "
            f"{metrics['failed']} failed):\n{text[-2000:]}"
        )
    return metrics


# -- report ---------------------------------------------------------------------------------------


def cell(entry: dict[str, Any] | None, fmt: str, *, spread: bool = False) -> str:
    """One table cell (see :func:`report.format_cell`)."""
    return format_cell(entry, fmt, spread=spread)


def med(agg: dict[str, Any], case: str, metric: str) -> Any:
    """Median of ``metric`` of ``case`` (None where absent)."""
    entry = agg.get(case, {}).get(metric)
    return None if entry is None else entry.get("median")


def main_rows(agg: dict[str, Any], *, spread: bool) -> list[list[str]]:
    """The main table: one row per case."""
    rows = [
        [
            "case",
            "req/s",
            "x bare loop",
            "CPU-s/1000 req: workers / service / total",
            "peak RSS per worker MB",
            "nginx CPU (cores; s/1000 req)",
            "summary req/s",
            "requests: summary - nginx",
            "failed",
            "trustworthy",
        ]
    ]
    for case in CASES:
        m = agg.get(case, {})
        cpu = " / ".join(
            [
                cell(m.get("cpu_per_1k_workers"), "{:.3f}"),
                cell(m.get("cpu_per_1k_service"), "{:.3f}"),
                cell(m.get("cpu_per_1k_total"), "{:.3f}", spread=spread),
            ]
        )
        nginx = f"{cell(m.get('nginx_cpu'), '{:.2f}')}; {cell(m.get('cpu_per_1k_nginx'), '{:.3f}')}"
        rows.append(
            [
                case,
                cell(m.get("req_s"), "{:,.0f}", spread=spread),
                cell(m.get("ratio_to_bare"), "{:.2f}", spread=spread) if case != CASES[1] else "1",
                cpu,
                cell(m.get("rss_peak_worker_mb"), "{:.0f}", spread=spread),
                nginx,
                cell(m.get("summary_request_rate"), "{:,.0f}"),
                cell(m.get("summary_minus_nginx"), "{:+.0f}", spread=spread),
                cell(m.get("failed"), "{:,.0f}"),
                cell(m.get("trustworthy"), "{}"),
            ]
        )
    return rows


def share_rows(agg: dict[str, Any]) -> list[list[str]]:
    """CPU shares over the measured window."""
    rows = [
        ["case", "workers", "service", "nginx", "bench", "others", "machine", "loop lag p99 ms"]
    ]
    for case in CASES:
        m = agg.get(case, {})
        keys = ("workers_cpu", "service_cpu", "nginx_cpu", "bench_cpu", "others_cpu", "machine_cpu")
        rows.append(
            [
                case,
                *(cell(m.get(k), "{:.2f}") for k in keys),
                cell(m.get("loop_lag_p99_ms"), "{:.0f}"),
            ]
        )
    return rows


def tree_rows(agg: dict[str, Any]) -> list[list[str]]:
    """Whole runs, as ``/usr/bin/time -v`` saw them."""
    rows = [
        [
            "case",
            "requests (nginx, whole run)",
            "CPU-s (tree)",
            "CPU-s/1000 req",
            "max RSS MB",
            "service peak RSS MB",
        ]
    ]
    for case in CASES:
        m = agg.get(case, {})
        rows.append(
            [
                case,
                cell(m.get("nginx_run_requests"), "{:,.0f}"),
                cell(m.get("tree_cpu_s"), "{:.1f}"),
                cell(m.get("tree_cpu_per_1k_run"), "{:.3f}"),
                cell(m.get("tree_max_rss_mb"), "{:.0f}"),
                cell(m.get("rss_peak_service_mb"), "{:.0f}"),
            ]
        )
    return rows


def verdict(agg: dict[str, Any]) -> list[str]:
    """One line per target of the issue: met or not, by how much (from the medians)."""
    cs, bare = CASES
    lines = []
    rate, bare_rate = med(agg, cs, "req_s"), med(agg, bare, "req_s")
    if rate is not None:
        met = rate >= TARGET_REQ_S
        lines.append(
            f"Throughput ≥ {TARGET_REQ_S:,.0f} req/s: **{'met' if met else 'not met'}**: "
            f"{rate:,.0f} req/s, {rate / TARGET_REQ_S:.0%} of the target"
            + ("" if met else f" ({TARGET_REQ_S / rate:.1f}x short)")
            + (
                f"; the bare loop did {bare_rate:,.0f} req/s here, clientswarm "
                f"{cell(agg[cs].get('ratio_to_bare'), '{:.2f}')}x of it"
                if bare_rate
                else ""
            )
            + "."
        )
    cpu = med(agg, cs, "cpu_per_1k_total")
    if cpu is not None:
        met = cpu <= TARGET_CPU_PER_1K
        lines.append(
            f"CPU ≤ {TARGET_CPU_PER_1K} CPU-s per 1,000 requests (workers + service): "
            f"**{'met' if met else 'not met'}**: {cpu:.3f} (workers "
            f"{cell(agg[cs].get('cpu_per_1k_workers'), '{:.3f}')} + service "
            f"{cell(agg[cs].get('cpu_per_1k_service'), '{:.3f}')}), "
            f"{cpu / TARGET_CPU_PER_1K:.1f}x the target; the bare loop spent "
            f"{cell(agg[bare].get('cpu_per_1k_total'), '{:.3f}')}."
        )
    rss = agg.get(cs, {}).get("rss_peak_worker_mb")
    if rss and rss["median"] is not None:
        met = rss["max"] <= TARGET_RSS_MB
        lines.append(
            f"RSS ≤ {TARGET_RSS_MB:.0f} MB per worker: **{'met' if met else 'not met'}**: the "
            f"largest worker peaked at {rss['median']:.0f} MB (median over repeats; worst "
            f"{rss['max']:.0f} MB), {rss['max'] / TARGET_RSS_MB:.0%} of the bound."
        )
    trusted = agg.get(cs, {}).get("trustworthy")
    if trusted:
        lines.append(
            f"The run called itself trustworthy in {trusted['true']} of {trusted['of']} repeats "
            f"(see the warnings below); other processes used "
            f"{cell(agg[cs].get('others_cpu'), '{:.2f}')} core during the clientswarm windows."
        )
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    """RESULTS-fullpath.md."""
    info, settings, agg = doc["machine"], doc["settings"], doc["cases"]
    warnings: dict[str, int] = {}
    for run in doc["runs"]:
        for w in run.get("warnings", []):
            warnings[w] = warnings.get(w, 0) + 1
    out = [
        "# clientswarm full-path throughput (issue 7)",
        "",
        "Produced by `bench/fullpath.py` (see `bench/README.md`). `clientswarm run` with "
        f"`spawner.workers: {WORKERS}`, {CLIENTS} closed-loop clients streaming {TOKENS}-token "
        "chat completions (every per-token timestamp kept, samples shipped to and committed by "
        "the in-process service), against nginx (1 worker process) serving one fixed stream on "
        "the same machine; the bare loop (`bench/bare_loop.py`, "
        f"{BARE_PROCS} processes x {BARE_STREAMS} streams) against the same nginx, interleaved. "
        f"Cells are medians over {settings['repeats']} repeat(s), brackets min…max. Requests are "
        "counted by nginx's access log, CPU from `/proc/<pid>/stat`, over the measured window "
        f"({settings['duration_s']:g} s after {WARMUP_S:g} s warm-up, less "
        f"{END_MARGIN_S} s at the end). Raw values per repeat: `{doc['json_name']}`.",
        "",
        "## Machine",
        "",
        *machine_lines(info, f"; {info['nginx']}"),
        f"- whole-run CPU and max RSS: {info['time_tool']}",
        "",
        "## Against the issue's targets",
        "",
        *(f"- {line}" for line in verdict(agg)),
        "",
        "## Results",
        "",
        markdown_table(main_rows(agg, spread=True)),
        "",
        "- `x bare loop`: clientswarm's req/s over the bare loop's in the same repeat.",
        "- `CPU-s/1000 req`: CPU seconds of the workers and of the run process (the service that "
        "receives and commits the samples) per 1,000 requests nginx logged in the window. For "
        "the bare loop, its client processes (and its idle launcher in `total`).",
        "- `peak RSS per worker`: the largest worker's VmHWM (bare loop: per client process).",
        "- `summary req/s`: the summary's own `request_rate` (its measured samples over its "
        "duration); `requests: summary - nginx`: every sample the summary counted (measured, "
        "warm-up and cancelled) less the requests nginx logged from start to exit (bare loop: "
        "the count it printed).",
        "",
        "## CPU over the measured window (cores)",
        "",
        markdown_table(share_rows(agg)),
        "",
        "`bench` is this script (sampling RSS and the log); `others` is the rest of the machine "
        "(`/proc/stat` busy time less everything named here): other people's processes.",
        "",
        "## Whole runs (`/usr/bin/time -v`)",
        "",
        markdown_table(tree_rows(agg)),
        "",
        "Start to exit, the process tree (workers' start-up, warm-up, writing the samples file and "
        "the summary included), per 1,000 requests nginx logged in that time; max RSS is that "
        "of the largest single process of the tree; service peak RSS is the run process's VmHWM.",
        "",
        "## Warnings the runs reported",
        "",
        *([f"- ({n}x) {w}" for w, n in warnings.items()] or ["- none"]),
        "",
    ]
    return "\n".join(out)


def nginx_version() -> str:
    """``nginx/1.x.y`` (nginx prints it on stderr)."""
    done = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


def main(args: argparse.Namespace) -> int:
    """Run, print, write; 1 if any run did not complete."""
    info = machine_info()
    info["nginx"] = nginx_version()
    if TIME.exists():
        info["time_tool"] = f"{TIME} -v"
    else:
        info["time_tool"] = "getrusage(RUSAGE_CHILDREN) (no /usr/bin/time: max RSS not reported)"
        log(f"{TIME} not found (apt-get install -y time): whole-run CPU from getrusage instead")
    raw: dict[str, dict[str, list[Any]]] = {case: {} for case in CASES}
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clientswarm-fullpath-") as tmp_name:
        tmp = Path(tmp_name)
        # Run as root, nginx's workers run as nobody: they must be able to reach their files.
        tmp.chmod(0o755)
        with nginx_target(tmp / "nginx", tokens=TOKENS, workers=1) as nginx:
            access = AccessLog(nginx.root / "access.log")
            for r in range(args.repeats):
                tag = f"[{r + 1}/{args.repeats}]"
                cs, warnings = run_clientswarm(nginx, access, tmp, args.duration_s, str(r))
                bare = run_bare(nginx, access, tmp, args.duration_s, str(r))
                if cs.get("req_s") and bare.get("req_s"):
                    cs["ratio_to_bare"] = cs["req_s"] / bare["req_s"]
                for case, metrics in zip(CASES, (cs, bare), strict=True):
                    runs.append(
                        {"case": case, "repeat": r + 1, "metrics": metrics}
                        | ({"warnings": warnings} if case == CASES[0] else {})
                    )
                    for key, value in metrics.items():
                        if value is None or isinstance(value, bool | int | float):
                            raw[case].setdefault(key, []).append(value)
                    log(
                        f"{tag} {case:<11} {metrics['requests']:>7,} requests in "
                        f"{metrics['window_s']:.1f} s = {metrics['req_s'] or 0:7,.0f} req/s, "
                        f"CPU {metrics['cpu_per_1k_total'] or 0:.3f} s/1000 req, "
                        f"worker RSS {metrics['rss_peak_worker_mb'] or 0:.0f} MB, "
                        f"others {metrics['others_cpu'] or 0:.2f} core"
                    )
    info["wall_s"] = round(time.monotonic() - started, 1)
    agg = {case: {k: aggregate(v) for k, v in metrics.items()} for case, metrics in raw.items()}

    suffix = "-quick" if args.quick else ""
    json_path = args.out / f"results-fullpath{suffix}.json"
    md_path = args.out / f"RESULTS-fullpath{suffix}.md"
    doc = {
        "machine": info,
        "settings": {
            "duration_s": args.duration_s,
            "repeats": args.repeats,
            "warmup_s": WARMUP_S,
            "window_end_margin_s": END_MARGIN_S,
            "workers": WORKERS,
            "clients": CLIENTS,
            "tokens": TOKENS,
            "nginx_workers": 1,
            "bare_loop": {"procs": BARE_PROCS, "streams": BARE_STREAMS},
        },
        "cluster_config": cluster_config("http://127.0.0.1:PORT", args.duration_s),
        "targets": {
            "req_s": TARGET_REQ_S,
            "cpu_s_per_1000": TARGET_CPU_PER_1K,
            "rss_mb_per_worker": TARGET_RSS_MB,
        },
        "verdict": verdict(agg),
        "cases": agg,
        "runs": runs,
        "json_name": json_path.name,
    }
    write_outcome(
        doc,
        [main_rows(agg, spread=False), share_rows(agg)],
        (json_path, md_path),
        render_markdown,
        info["wall_s"],
    )
    return 0 if all(run["metrics"]["completed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
