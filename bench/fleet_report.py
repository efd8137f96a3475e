"""What one fleet point measured (:func:`analyse`), and the fleet benchmark's tables and
``RESULTS-fleet.md``. See ``bench/fleet.py`` for what is run."""

from __future__ import annotations

import itertools
import math
import re
import statistics
from typing import Any

from report import machine_lines, markdown_table

WARM_S = 2.0
"""The window starts this long after the shared start: every worker runs, the first answers
(0.1 to 1 s long) have ended and their first batches (one per 0.5 s) been acknowledged."""
BIN_S = 1.0
HEARTBEAT_P99_LIMIT_S = 1.0
BACKLOG_LIMIT_S = 1.5
"""A backlog above this many seconds of load is "behind": a worker that keeps up holds one
0.5 s tick and the batch in flight."""
BACKLOG_TICKS = 3
"""Where the service gives a large fleet a longer batch interval (``serve --batches-per-s``),
the limit is this many intervals instead (one tick held, one in flight, one of margin)."""
LOADER_LAG_LIMIT_S = 0.05
HEARTBEAT_TIMEOUT_S = 2.0
"""How long a worker waits for a heartbeat's answer (twice the 1 s interval, 2 s at least:
``clientswarm.worker.service_client``); one that timed out counts as this slow."""
OK_STATUSES = {"200", "201", "202", "204", "cancelled"}


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _calls(procs: list[dict[str, Any]], action: str) -> list[tuple[float, float]]:
    return [tuple(c) for p in procs for c in p["calls"].get(action, [])]  # type: ignore[misc]


def _rtt_ms(values: list[float]) -> dict[str, Any]:
    """Count, p50, p99 and max of round trips in seconds, in ms."""
    return {
        "n": len(values),
        "p50": _ms(percentile(values, 0.5)),
        "p99": _ms(percentile(values, 0.99)),
        "max": _ms(max(values) if values else None),
    }


def _failure_times(procs: list[dict[str, Any]], action: str) -> list[float]:
    return [t for p in procs for t in p.get("failure_times", {}).get(action, [])]


def backlog_series(procs: list[dict[str, Any]], start: float, step_s: float = 0.5) -> list[Any]:
    """``[t - start, generated, acknowledged]`` summed over the processes on a common grid
    (each process's last reading at or before the grid time)."""
    timelines = [p["timeline"] for p in procs if p["timeline"]]
    if not timelines:
        return []
    end = max(t[-1][0] for t in timelines)
    out, g = [], start
    positions = [0] * len(timelines)
    while g <= end + step_s:
        generated = acked = 0
        for i, rows in enumerate(timelines):
            while positions[i] + 1 < len(rows) and rows[positions[i] + 1][0] <= g:
                positions[i] += 1
            if rows[positions[i]][0] <= g:
                generated += rows[positions[i]][1]
                acked += rows[positions[i]][2]
        out.append([round(g - start, 2), generated, acked])
        g += step_s
    return out


def _window_rate(rows: list[dict[str, Any]], key: str, w0: float, w1: float) -> float | None:
    """Cores used by ``key`` (CPU seconds) between the readings nearest ``w0`` and ``w1``."""
    usable = [r for r in rows if r.get(key) is not None]
    if len(usable) < 2:
        return None
    a = min(usable, key=lambda r: abs(r["t"] - w0))
    b = min(usable, key=lambda r: abs(r["t"] - w1))
    if b["t"] <= a["t"]:
        return None
    return (b[key] - a[key]) / (b["t"] - a["t"])


def _machine_cores(rows: list[dict[str, Any]], w0: float, w1: float) -> float | None:
    a = min(rows, key=lambda r: abs(r["t"] - w0))
    b = min(rows, key=lambda r: abs(r["t"] - w1))
    if b["t"] <= a["t"]:
        return None
    return (b["machine_busy_s"] - a["machine_busy_s"]) / (b["t"] - a["t"])


def _first_slow_bin(hb: list[tuple[float, float]], failed: list[float], start: float) -> Any:
    """The first one-second bin whose heartbeat p99 (failures as infinitely slow) passed the
    limit, as ``(seconds after start, p99 s)``; None if none did."""
    bins: dict[int, list[float]] = {}
    for t, rtt in hb:
        bins.setdefault(int((t - start) // BIN_S), []).append(rtt)
    for t in failed:
        bins.setdefault(int((t - start) // BIN_S), []).append(math.inf)
    for b in sorted(bins):
        p99 = percentile(bins[b], 0.99)
        if p99 is not None and p99 > HEARTBEAT_P99_LIMIT_S:
            return b * BIN_S, p99
    return None


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def analyse(facts: dict[str, Any], rate: float, duration_s: float) -> dict[str, Any]:
    """The numbers of one point and the first thing that broke, from its raw facts."""
    procs = [p for p in facts["processes"] if "crashed" not in p]
    crashed = [p for p in facts["processes"] if "crashed" in p]
    starts = [p["start_ns"] for p in procs if p.get("start_ns")]
    m: dict[str, Any] = {
        "store": facts["store"],
        "sample_path": facts.get("sample_path", "service"),
        "workers": facts["workers"],
        "target_samples_per_s": rate,
        "per_worker_samples_per_s": facts["rate_per_worker"],
        "cluster_status": facts["cluster_status"],
        "worker_states": facts["worker_states"],
        "crashed_processes": len(crashed),
    }
    generated = sum(p["generated"] for p in procs)
    acknowledged = sum(p["acknowledged"] for p in procs)
    m |= {
        "generated": generated,
        "acknowledged": acknowledged,
        "stored": facts["stored"],
        "duplicate_acks": sum(p["duplicate_acks"] for p in procs),
        "summary_requests": facts["summary_requests"],
        "outcomes": _sum_dicts(p["outcomes"] for p in procs),
        "messages": [msg for p in procs for msg in p["messages"]][:10]
        + [f"worker process crashed: {p['tail'][-500:]}" for p in crashed],
    }
    if not starts:
        m["complete"] = False
        m["first_break"] = "no worker got an assignment"
        if crashed:
            last = crashed[0]["tail"].strip().splitlines()[-1:] or ["?"]
            m["first_break"] = f"the worker processes crashed ({last[0][:200]})"
        m["line"] = m["first_break"]
        return m
    start = min(starts) / 1e9
    w0, w1 = start + WARM_S, start + duration_s
    acks = [a for p in procs for a in p["acks"]]
    in_window = sum(n for t, n in acks if w0 <= t < w1)
    last_ack = max((t for t, _ in acks), default=start)
    m["sustained_samples_per_s"] = round(in_window / (w1 - w0), 1)
    m["sustained_fraction"] = round(in_window / (w1 - w0) / rate, 4)
    m["drain_s"] = round(last_ack - w1, 2) if acks else None
    assigned = [t for p in procs for t in p["assigned"]]
    m["assigned_spread_s"] = round(max(assigned) - min(assigned), 2) if assigned else None

    # POST samples or ticks
    shipping = "ticks" if m["sample_path"].startswith("files") else "samples"
    for action, key in (("heartbeat", "heartbeat"), (shipping, "batch"), ("register", "register")):
        calls = _calls(procs, action)
        failed = _failure_times(procs, action)
        if action == "register":  # before the start: all of them
            values = [rtt for _, rtt in calls]
        else:
            values = [rtt for t, rtt in calls if w0 <= t < w1]
            if action == "heartbeat":  # a heartbeat that timed out took its timeout
                values += [HEARTBEAT_TIMEOUT_S] * sum(w0 <= t < w1 for t in failed)
        m[f"{key}_rtt_ms"] = _rtt_ms(values)
        m[f"{key}_failures"] = len(failed)
    probes = [p for p in procs if p.get("count") == 1 and len(procs) > 1]
    probe_beats = [rtt for t, rtt in _calls(probes, "heartbeat") if w0 <= t < w1]
    probe_beats += [HEARTBEAT_TIMEOUT_S] * sum(
        w0 <= t < w1 for t in _failure_times(probes, "heartbeat")
    )
    m["probe_heartbeat_rtt_ms"] = _rtt_ms(probe_beats)
    heartbeats = _calls(procs, "heartbeat")
    m["heartbeats_per_s"] = round(sum(w0 <= t < w1 for t, _ in heartbeats) / (w1 - w0), 1)
    m["heartbeat_failures_per_s"] = round(
        sum(w0 <= t < w1 for t in _failure_times(procs, "heartbeat")) / (w1 - w0), 1
    )
    m["batches_per_s"] = round(sum(w0 <= t < w1 for t, _ in acks) / (w1 - w0), 1)
    m["samples_per_batch"] = round(in_window / max(1, sum(w0 <= t < w1 for t, _ in acks)), 1)

    series = backlog_series(procs, start)
    m["backlog"] = series
    in_w = [(t, g - a) for t, g, a in series if WARM_S <= t <= duration_s]
    m["backlog_end_s"] = round(in_w[-1][1] / rate, 2) if in_w else None
    m["backlog_max_s"] = round(max(b for _, b in in_w) / rate, 2) if in_w else None
    m["backlog_slope_per_s"] = _slope(in_w)
    intervals = [p["batch_interval_s"] for p in procs if p.get("batch_interval_s")]
    m["batch_interval_s"] = max(intervals, default=None)
    limit_s = max(BACKLOG_LIMIT_S, BACKLOG_TICKS * (m["batch_interval_s"] or 0.0))
    m["backlog_limit_s"] = limit_s
    behind = next((t for t, b in in_w if b > limit_s * rate), None)

    attempts = _sum_dicts(p["attempts"].get(a, {}) for p in procs for a in p["attempts"])
    m["attempts"] = attempts
    m["attempt_errors"] = {k: v for k, v in attempts.items() if k not in OK_STATUSES}
    m["attempts_by_action"] = {
        a: _sum_dicts(p["attempts"].get(a, {}) for p in procs)
        for a in sorted({a for p in procs for a in p["attempts"]})
    }
    problems = [tuple(p["first_problem"]) for p in procs if p.get("first_problem")]
    first_problem = min(problems, default=None)

    rows = facts["resources"]
    m["service_cores"] = _round(_window_rate(rows, "service_cpu_s", w0, w1), 3)
    m["service_sys_cores"] = _round(_window_rate(rows, "service_sys_s", w0, w1), 3)
    m["service_loop_cores"] = _round(_window_rate(rows, "service_loop_s", w0, w1), 3)
    m["pg_cores"] = _round(_window_rate(rows, "pg_cpu_s", w0, w1), 3)
    m["loader_cores"] = _round(_window_rate(rows, "loaders_cpu_s", w0, w1), 3)
    m["machine_cores"] = _round(_machine_cores(rows, w0, w1), 3)
    used = sum(v or 0 for v in (m["service_cores"], m["pg_cores"], m["loader_cores"]))
    others = max(0.0, m["machine_cores"] - used) if m["machine_cores"] else None
    m["other_cores"] = _round(others, 3)
    if m["service_cores"] and m["sustained_samples_per_s"]:
        m["service_us_per_sample"] = round(
            m["service_cores"] / m["sustained_samples_per_s"] * 1e6, 1
        )
    m["requests_per_s"] = round(m["heartbeats_per_s"] + m["batches_per_s"], 1)
    rss = [r["service_rss_kb"] for r in rows if r["service_rss_kb"]]
    hwm = [r["service_hwm_kb"] for r in rows if r["service_hwm_kb"]]
    m["service_rss_mb_peak"] = round(max(hwm, default=0) / 1024, 1)
    m["service_rss_mb_end"] = round(rss[-1] / 1024, 1) if rss else None
    m["service_threads_max"] = max((r["service_threads"] for r in rows), default=0)
    m["loader_lag_p99_ms"] = _ms(max(p["loop_lag_p99_s"] for p in procs))
    m["loader_cpu_s"] = round(sum(p["cpu_s"] for p in procs), 2)
    m["store_bytes"] = facts.get("store_bytes")
    m["files_bytes"] = facts.get("files_bytes")

    breaks: list[tuple[float, str]] = []
    if first_problem is not None:
        t, action, what = first_problem
        errors = sum(m["attempt_errors"].values())
        breaks.append((t - start, f"HTTP errors/timeouts ({errors}; first: {action} {what})"))
    slow = _first_slow_bin(heartbeats, _failure_times(procs, "heartbeat"), start)
    if slow is not None:
        t, p99 = slow
        shown = "timeouts" if math.isinf(p99) else f"{p99:.2f} s"
        breaks.append((t, f"heartbeat p99 {shown} > 1 s in one second"))
    if behind is not None:
        breaks.append((behind, f"backlog > {limit_s:g} s of load from {behind:.1f} s"))
    breaks.sort()
    lost = {k: v for k, v in facts["worker_states"].items() if k in ("lost", "failed")}
    untimed = []
    if lost:
        untimed.append(f"workers {lost} at the service")
    if facts["stored"] != acknowledged:
        untimed.append(f"stored {facts['stored']} != acknowledged {acknowledged}")
    if m["sustained_fraction"] < 0.95 and not breaks:
        untimed.append(f"sustained {m['sustained_fraction']:.0%} of the target")
    if m["loader_lag_p99_ms"] and m["loader_lag_p99_ms"] > LOADER_LAG_LIMIT_S * 1000:
        untimed.append(f"worker processes lagging (loop lag p99 {m['loader_lag_p99_ms']} ms)")
    m["breaks"] = [f"{_when(t)}: {text}" for t, text in breaks] + untimed
    m["first_break"] = (
        f"{breaks[0][1]} ({_when(breaks[0][0])})" if breaks else (untimed[0] if untimed else "")
    )
    m["complete"] = (
        not crashed
        and facts["cluster_status"] == "completed"
        and facts["stored"] == acknowledged == generated
    )
    m["line"] = (
        f"{m['sustained_samples_per_s']:,.0f} samples/s ({m['sustained_fraction']:.0%}), "
        f"heartbeat p99 {m['heartbeat_rtt_ms']['p99']} ms (probe "
        f"{m['probe_heartbeat_rtt_ms']['p99']} ms), batch p99 {m['batch_rtt_ms']['p99']} "
        f"ms, backlog end {m['backlog_end_s']} s, service {m['service_cores']} cores "
        f"{m['service_rss_mb_peak']} MB, generated/acked/stored {generated}/{acknowledged}/"
        f"{facts['stored']}; first break: {m['first_break'] or 'none'}"
    )
    return m


def _when(t: float) -> str:
    """A time relative to the shared start, in words."""
    if t < 0:
        return f"{-t:.0f} s before the start, while the workers registered"
    return f"{t:.1f} s after the start"


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``points`` (samples of backlog per second)."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(sum((x - mx) * (y - my) for x, y in points) / den, 1) if den else None


def _sum_dicts(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def profile_summary(facts: dict[str, Any], m: dict[str, Any], top: int = 12) -> dict[str, Any]:
    """What a profiled run (``bench/fleet_profile.py``) says, shortened for the result files."""
    profile = facts.get("profile") or {}
    samples = profile.get("samples", {})
    roles = {
        role: {
            "self": data["self"][:top],
            # Frames on nearly every stack (the thread's start, the CLI, the loop) say nothing.
            "inclusive": [
                e for e in data["inclusive"] if e[1] < 0.95 * max(1, samples.get(role, 0))
            ][:top],
            "stacks": data["stacks"][:5],
        }
        for role, data in profile.get("roles", {}).items()
    }
    return {
        "store": m["store"],
        "sample_path": m.get("sample_path", "service"),
        "workers": m["workers"],
        "target_samples_per_s": m["target_samples_per_s"],
        "line": m["line"],
        "every_ms": profile.get("every_ms"),
        "loop_lag_ms": profile.get("loop_lag_ms"),
        "to_thread": dict(list(profile.get("to_thread", {}).items())[:8]),
        "samples": profile.get("samples", {}),
        "roles": roles,
        "service_log_warnings": [
            line for line in facts.get("service_log_tail", "").splitlines() if "WARNING" in line
        ][-5:],
    }


# -- tables -----------------------------------------------------------------------------------


def _groups(
    metrics: list[dict[str, Any]],
) -> dict[tuple[str, str, float, int], list[dict[str, Any]]]:
    """The runs of each point (store, sample path, combined rate, workers), repeats together."""
    out: dict[tuple[str, str, float, int], list[dict[str, Any]]] = {}
    for m in metrics:
        key = (m["store"], m.get("sample_path", "service"), m["target_samples_per_s"], m["workers"])
        out.setdefault(key, []).append(m)
    return out


def _get(m: dict[str, Any], path: str) -> Any:
    value: Any = m
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _median(runs: list[dict[str, Any]], path: str) -> float | None:
    values = [v for v in (_get(m, path) for m in runs) if isinstance(v, int | float)]
    return statistics.median(values) if values else None


def _cell(runs: list[dict[str, Any]], path: str, fmt: str) -> str:
    value = _median(runs, path)
    if value is None:
        return "n/a"
    text = fmt.format(value)
    values = [v for v in (_get(m, path) for m in runs) if isinstance(v, int | float)]
    low, high = fmt.format(min(values)), fmt.format(max(values))
    if len(values) > 1 and low != high:
        text += f" ({low}…{high})"
    return text


COLUMNS = [
    ("target samples/s", "target_samples_per_s", "{:,.0f}"),
    ("per worker /s", "per_worker_samples_per_s", "{:,.0f}"),
    ("sustained samples/s", "sustained_samples_per_s", "{:,.0f}"),
    ("of target", "sustained_fraction", "{:.0%}"),
    ("heartbeat p50 ms", "heartbeat_rtt_ms.p50", "{:,.0f}"),
    ("heartbeat p99 ms", "heartbeat_rtt_ms.p99", "{:,.0f}"),
    ("probe heartbeat p99 ms", "probe_heartbeat_rtt_ms.p99", "{:,.0f}"),
    ("batch p50 ms", "batch_rtt_ms.p50", "{:,.0f}"),
    ("batch p99 ms", "batch_rtt_ms.p99", "{:,.0f}"),
    ("batches/s", "batches_per_s", "{:,.0f}"),
    ("register p99 ms", "register_rtt_ms.p99", "{:,.0f}"),
    ("backlog at end s", "backlog_end_s", "{:.2f}"),
    ("drain s", "drain_s", "{:.1f}"),
    ("service cores", "service_cores", "{:.2f}"),
    ("of which loop thread", "service_loop_cores", "{:.2f}"),
    ("of which system", "service_sys_cores", "{:.2f}"),
    ("service RSS MB", "service_rss_mb_peak", "{:,.0f}"),
    ("PG cores", "pg_cores", "{:.2f}"),
    ("workers' cores", "loader_cores", "{:.2f}"),
    ("others' cores", "other_cores", "{:.2f}"),
    ("service µs/sample", "service_us_per_sample", "{:,.0f}"),
]


_KINDS = (
    ("heartbeat p99", "heartbeat p99 > 1 s"),
    ("backlog >", "backlog > 1.5 s of load"),
    ("HTTP errors", "HTTP errors/timeouts"),
    ("the worker processes crashed", "worker processes crashed"),
    ("no worker", "no worker started"),
)


def break_short(text: str) -> tuple[str, str]:
    """``(kind, when)`` of a first-break line: "heartbeat p99 > 1 s", "+2.0 s" (after the
    start) or "-11 s" (before it, while the workers registered)."""
    kind = next((short for prefix, short in _KINDS if text.startswith(prefix)), text[:60])
    if text.startswith("backlog >"):  # its limit: 1.5 s, or three of a longer batch interval
        kind = text.split(" from ")[0]
    found = re.search(r"\((\d+(?:\.\d+)?) s (after|before) the start", text)
    when = "" if found is None else ("+" if found[2] == "after" else "-") + found[1] + " s"
    return kind or "none", when


def _breaks_cell(runs: list[dict[str, Any]]) -> str:
    """The runs' first breaks: each kind once, with when it came in each run."""
    kinds: dict[str, list[str]] = {}
    for m in runs:
        kind, when = break_short(m["first_break"] or "")
        kinds.setdefault(kind, []).append(when)
    return "; ".join(
        f"{kind} ({', '.join(w for w in whens if w)})" if any(whens) else kind
        for kind, whens in kinds.items()
    )


def summary_rows(metrics: list[dict[str, Any]]) -> list[list[str]]:
    """One row per (store, sample path, rate, workers): medians (min…max over repeats)."""
    head = ["store", "sample path", "workers", *[c[0] for c in COLUMNS]]
    rows = [[*head, "stored = acked", "first break"]]
    for (store, path, _, workers), runs in _groups(metrics).items():
        stored_ok = sum(m["stored"] == m["acknowledged"] == m["generated"] for m in runs)
        breaks = _breaks_cell(runs)
        rows.append(
            [
                store,
                path,
                f"{workers:,}",
                *[_cell(runs, path, fmt) for _, path, fmt in COLUMNS],
                f"{stored_ok}/{len(runs)}",
                breaks,
            ]
        )
    return rows


def verdict(
    metrics: list[dict[str, Any]], settings: dict[str, Any], goal: dict[str, Any]
) -> list[str]:
    """Lines saying, per store, whether the goal was met and what broke first."""
    lines = []
    for (store, path, rate, workers), runs in _groups(metrics).items():
        sustained = _median(runs, "sustained_samples_per_s") or 0
        p99 = _median(runs, "heartbeat_rtt_ms.p99")
        probe = _median(runs, "probe_heartbeat_rtt_ms.p99")
        backlog = _median(runs, "backlog_end_s")
        met = (
            workers >= goal["workers"]
            and rate >= goal["samples_per_s"]
            and sustained >= 0.95 * goal["samples_per_s"]
            and p99 is not None
            and p99 < goal["heartbeat_p99_s"] * 1000
            and (backlog or 0) <= (_median(runs, "backlog_limit_s") or BACKLOG_LIMIT_S)
        )
        first = _breaks_cell(runs)
        lines.append(
            f"{store}, {path} path, {workers:,} workers at {rate:,.0f} samples/s: "
            f"{sustained:,.0f} sustained, heartbeat p99 "
            + (f"{p99:,.0f} ms" if p99 is not None else "n/a")
            + (f" (the probe's {probe:,.0f} ms)" if probe is not None else "")
            + (" — **goal met**" if met else "")
            + f"; first break: {first}"
            + (" (seconds from the shared start)" if "(" in first else "")
        )
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    """``RESULTS-fleet.md``."""
    s, info = doc["settings"], doc["machine"]
    metrics = [r["metrics"] for r in doc["runs"]]
    out = [
        "# clientswarm: one service and a fleet of workers (issue 20)",
        "",
        "Produced by `bench/fleet.py` (see `bench/README.md`). A fresh `clientswarm serve` per "
        f"point, {s['processes']} processes playing the N workers with the worker's own protocol "
        f"code, a combined {' and '.join(f'{r:,.0f}' for r in s['samples_per_s'])} samples/s "
        f"for {s['duration_s']:g} s per "
        f"point (window: {WARM_S:g} s after the start to the planned end), {s['repeats']} "
        f"repeat(s) interleaved. Raw data: `{doc['json_name']}`.",
        "",
        "## Machine",
        "",
        *machine_lines(info),
        f"- commit: {info.get('commit')} (the working tree as it was: files being edited "
        "beside the run may differ from it)",
        f"- open files (`RLIMIT_NOFILE`): soft {info['limits']['nofile_soft_before']} raised to "
        f"{info['limits']['nofile']} for the service and the worker processes",
        "- the service, the worker processes (and PostgreSQL) share the machine's cores; "
        "other people's processes too (`others' cores`: the machine's busy cores minus "
        "the service's, PostgreSQL's and the worker processes')",
        "",
        "## Verdict",
        "",
        *[f"- {line}" for line in doc["verdict"]],
        "",
        "## Results",
        "",
        markdown_table(summary_rows(metrics)),
        "",
        "Medians over repeats, (min…max) where there were several. `sustained`: samples "
        "acknowledged in the window over its length; `backlog`: samples recorded but not yet "
        "acknowledged, in seconds of load; `drain`: from the planned end to the last "
        "acknowledgement; cores: CPU seconds per second over the window (`/proc`). "
        "`sample path`: `service`, every batch posted (`POST samples`) and stored; `files` "
        "(the high-rate path), each tick written to the worker's Parquet file and only its "
        "tallies posted (`POST ticks`; the batch columns are then the ticks). `stored = "
        "acked`: runs where generated = acknowledged = stored, stored being the store's count "
        "of the cluster's samples on the service path and, on the files path, the samples in "
        "the workers' files (`SampleFiles(data_dir/samples, cluster).count_samples()`, each "
        "tick counted once), both read after the service stopped.",
        "",
    ]
    for p in doc.get("profiles", []):
        out += _profile_lines(p)
    out += ["## Every run", ""]
    for m in metrics:
        out += [
            f"- {m['store']}, {m.get('sample_path', 'service')} path, {m['workers']:,} workers "
            f"(repeat {m.get('repeat', 0)}): "
            f"{m['line']}; cluster {m['cluster_status']}, workers {m['worker_states']}, "
            f"attempt errors {m.get('attempt_errors') or 'none'}, heartbeat failures "
            f"{m.get('heartbeat_failures')}, batches/s {m.get('batches_per_s')}, samples per "
            f"batch {m.get('samples_per_batch')}, service threads {m.get('service_threads_max')}, "
            f"worker processes' loop lag p99 {m.get('loader_lag_p99_ms')} ms",
        ]
    out.append("")
    return "\n".join(out)


def _profile_lines(p: dict[str, Any]) -> list[str]:
    """The Markdown of one profiled run: per thread role, the top functions."""
    rate = p.get("target_samples_per_s", 0)
    out = [
        f"## Profile: {p['store']}, {p.get('sample_path', 'service')} path, "
        f"{p['workers']:,} workers, {rate:,.0f} samples/s",
        "",
        f"One more run under `bench/fleet_profile.py` (every thread's stack every "
        f"{p['every_ms']:g} ms; `loop` is the event loop's thread, `pool` the threads of "
        f"`asyncio.to_thread`, idle ones not counted): {p['line']}.",
        "",
    ]
    lag = p.get("loop_lag_ms") or {}
    if lag.get("n"):
        out += [
            f"Event loop lag (a callback scheduled from another thread every 50 ms, how late "
            f"it ran): p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms.",
            "",
        ]
    out += [f"- {line}" for line in profile_findings(p)] + [""]
    calls = p.get("to_thread") or {}
    if calls:
        rows = [["`asyncio.to_thread(…)` of", "calls", "wait for a thread p50 / p99 ms",
                 "run p50 / p99 ms", "run s in all"]]  # fmt: skip
        for name, c in calls.items():
            w, r = c["wait_ms"], c["run_ms"]
            rows.append(
                [
                    f"`{name}`",
                    f"{r.get('n', 0):,}",
                    f"{w.get('p50')} / {w.get('p99')}",
                    f"{r.get('p50')} / {r.get('p99')}",
                    f"{c['run_s_total']}",
                ]
            )
        out += [markdown_table(rows), ""]
    for role, data in p["roles"].items():
        total = p["samples"].get(role, 0) or 1
        out += [f"`{role}` ({p['samples'].get(role, 0)} samples), share of its samples:", ""]
        out.append(
            markdown_table(
                [
                    ["on top of the stack (self)", "%", "anywhere on the stack (inclusive)", "%"],
                    *[
                        [
                            f"`{a[0]}`" if a else "",
                            f"{a[1] / total:.0%}" if a else "",
                            f"`{b[0]}`" if b else "",
                            f"{b[1] / total:.0%}" if b else "",
                        ]
                        for a, b in itertools.zip_longest(data["self"][:8], data["inclusive"][:8])
                    ],
                ]
            )
        )
        out.append("")
    if p["service_log_warnings"]:
        out += ["Service log:", "", "```", *p["service_log_warnings"], "```", ""]
    return out


def profile_findings(p: dict[str, Any]) -> list[str]:
    """What a profile says about the heartbeat's wait, the store's lock and repeated work."""
    lines = []
    calls = p.get("to_thread") or {}
    beat = calls.get("Store.update_worker")
    if beat and beat["wait_ms"].get("n"):
        w, r = beat["wait_ms"], beat["run_ms"]
        lines.append(
            f"a heartbeat's answer waits for its store write (`Store.update_worker`, "
            f"{r['n']:,} calls): it waited p50 {w['p50']:,.0f} ms / p99 {w['p99']:,.0f} ms for "
            f"a thread of the event loop's default pool, then ran p50 {r['p50']:,.1f} ms"
        )
    batch = calls.get("ClusterManager._commit_batch")
    if batch and batch["run_ms"].get("n"):
        w, r = batch["wait_ms"], batch["run_ms"]
        lines.append(
            f"sample batches (`ClusterManager._commit_batch`, {r['n']:,}) waited p50 "
            f"{w['p50']:,.0f} ms for a thread and ran p50 {r['p50']:,.0f} ms, "
            f"{batch['run_s_total']:,.0f} s of pool time in all"
        )
    pool = p.get("roles", {}).get("pool")
    total = p.get("samples", {}).get("pool", 0)
    if pool and total:
        lock = sum(n for where, n in pool["self"] if where.startswith("begin (clientswarm/store"))
        if lock:
            lines.append(
                f"the pool's threads were waiting for the store's write lock (`Database.begin`) "
                f"in {lock / total:.0%} of their samples"
            )
    start = calls.get("ClusterManager._clients_running")
    if start and start["run_ms"].get("n", 0) > 1:
        lines.append(
            f"`ClusterManager._clients_running` (reads every client of the cluster and sets "
            f"them running; one start needs it once) ran {start['run_ms']['n']:,} times, "
            f"{start['run_s_total']:,.0f} s of pool time"
        )
    lag = p.get("loop_lag_ms") or {}
    if lag.get("n"):
        lines.append(f"the event loop itself answered within p99 {lag['p99']:,.0f} ms")
    return lines
