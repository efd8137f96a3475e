"""Memory and tail of long runs, and the bytes per sample of each samples format (issue 15).

The targets: at the full-path rate (``fullpath.py``'s cluster: 2 workers, 64 closed-loop
clients streaming 128-token chats from nginx), a 5-minute run keeps the run process (the
in-process service) under 300 MB RSS; a 30 s run's ``clientswarm run`` returns within 3 s of
its planned end; the bytes per sample on disk are known for each samples format, so that the
default format is chosen by them.

Each case is one ``clientswarm run CONFIG --output DIR --samples-format FMT`` against the same
nginx (``nginx_target.py``), measured from outside:

- **RSS**: ``VmRSS`` of the run process and of its worker processes every 0.5 s (the series is
  kept), and the run process's ``VmHWM`` (its peak) at its last sample before it exits;
- **tail**: from the planned end (when nginx logged the run's first request, plus warm-up and
  duration) to the moment the process has exited: shipping the last batches, the final
  summary, writing ``summary.json`` and the samples file;
- **bytes per sample**: the samples file's size over the samples the summary counted
  (measured, warm-up and cancelled ones).

``--against SRC`` runs every case a second time with ``PYTHONPATH=SRC`` (the ``src/`` of
another checkout, e.g. a ``git worktree`` of the code before a change), interleaved, for a
before/after on the same machine at the same moment.

Writes ``RESULTS-longrun{TAG}.md`` and ``results-longrun{TAG}.json`` beside this file
(``--tag -5min`` for the 5-minute run; ``--quick``: one 6 s run per format, ``-quick``).
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fullpath import AccessLog, cluster_config
from harness import children, cmdline, rss_kb
from nginx_target import nginx_target
from report import (
    aggregate,
    clientswarm_argv,
    format_cell,
    log,
    machine_info,
    machine_lines,
    markdown_table,
    write_outcome,
)

HERE = Path(__file__).resolve().parent
WARMUP_S = 1.0
SAMPLE_EVERY_S = 0.5
STARTUP_TIMEOUT_S = 60.0
FORMATS = ("jsonl", "parquet", "csv")
#: The issue's targets.
TARGET_RSS_MB = 300.0
TARGET_TAIL_S = 3.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=None, help="run length (30)")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of every case (1)")
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated samples formats, one case each (default {','.join(FORMATS)})",
    )
    parser.add_argument("--against", type=Path, help="also run every case from this src/")
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. -5min")
    parser.add_argument("--quick", action="store_true", help="6 s runs, *-quick.* files")
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the result files")
    args = parser.parse_args(argv)
    if args.duration_s is None:
        args.duration_s = 6.0 if args.quick else 30.0
    if args.quick:
        args.tag += "-quick"
    args.formats = [f for f in args.formats.split(",") if f]
    unknown = sorted(set(args.formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown formats {unknown}; valid: {', '.join(FORMATS)}")
    return args


def commit_of(src: Path) -> str | None:
    """The commit checked out where ``src`` lies (None outside a git checkout)."""
    done = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or None


def run_case(
    nginx_url: str,
    access: AccessLog,
    tmp: Path,
    fmt: str,
    duration_s: float,
    tag: str,
    src: Path | None,
) -> dict[str, Any]:
    """One ``clientswarm run``, watched from outside: RSS series, tail, bytes per sample."""
    config = tmp / f"cluster-{tag}.json"
    config.write_text(json.dumps(cluster_config(nginx_url, duration_s), indent=2))
    out = tmp / f"out-{tag}"
    argv = clientswarm_argv("run", str(config), "--output", str(out), "--samples-format", fmt)
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src.resolve())}
    before = access.count()
    stdout = tmp / f"stdout-{tag}.txt"
    with stdout.open("wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    series: list[dict[str, float]] = []
    first: float | None = None
    run_hwm_kb = 0
    deadline = time.monotonic() + STARTUP_TIMEOUT_S + duration_s + 600
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            if first is None and access.count() > before:
                first = now
            run = rss_kb(proc.pid)
            workers = [
                got[0]
                for c in children(proc.pid)
                if "clientswarm.worker" in cmdline(c) and (got := rss_kb(c)) is not None
            ]
            if run is not None:
                run_hwm_kb = max(run_hwm_kb, run[1])
                if first is not None:
                    series.append(
                        {
                            "t_s": round(now - first, 2),
                            "run_mb": round(run[0] / 1024, 1),
                            "workers_mb": round(sum(workers) / 1024, 1),
                            "requests": access.count() - before,
                        }
                    )
            time.sleep(SAMPLE_EVERY_S if first is not None else 0.01)
        if proc.poll() is None:
            log(f"  killing the run: still running after {deadline:.0f}")
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        returncode = proc.wait()
    exited = time.monotonic()
    m: dict[str, Any] = {"returncode": returncode, "started": first is not None}
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    total = summary.get("total") or {}
    samples_path = out / f"samples.{fmt}"
    if first is not None:
        planned_end = first + WARMUP_S + duration_s
        m["tail_s"] = exited - planned_end
        m["run_peak_mb"] = run_hwm_kb / 1024
        at = {int(p["t_s"]): p for p in series}
        for mark in (10, 30, 60, 120, 300):
            if mark in at:
                m[f"run_mb_at_{mark}s"] = at[mark]["run_mb"]
        m["run_mb_at_end"] = series[-1]["run_mb"] if series else None
        m["tree_peak_mb"] = max((p["run_mb"] + p["workers_mb"] for p in series), default=None)
    if total:
        samples = total["requests"] + total["warmup_excluded"] + total["cancelled_excluded"]
        m["samples"] = samples
        m["request_rate"] = total["request_rate"]
        m["failed"] = total["failed"]
        if samples_path.exists() and samples:
            m["file_mb"] = samples_path.stat().st_size / 1e6
            m["bytes_per_sample"] = samples_path.stat().st_size / samples
        m["itl_gaps_per_request"] = (
            total["itl_s"]["count"] / total["succeeded"] if total["succeeded"] else None
        )
    m["completed"] = bool(returncode == 0 and first is not None and total and not m["failed"])
    if not m["completed"]:
        tail = stdout.read_text(errors="replace")[-2000:]
        log(f"  the run did not complete (exit {returncode}):\n{tail}")
    m["series"] = series
    return m


def case_name(fmt: str, against: bool) -> str:
    """``parquet`` or ``parquet (against)``."""
    return f"{fmt} (against)" if against else fmt


def result_rows(doc: dict[str, Any]) -> list[list[str]]:
    """One row per case: rate, RSS, tail, bytes per sample."""
    rows = [
        [
            "case",
            "samples",
            "req/s",
            "run RSS MB at 10 s / 30 s / end",
            "run peak RSS MB",
            "tree peak RSS MB",
            "tail s",
            "samples file MB",
            "bytes/sample",
        ]
    ]
    for case, m in doc["cases"].items():

        def c(key: str, fmt: str, entry: dict[str, Any] = m) -> str:
            return format_cell(entry.get(key), fmt, spread=False)

        rss = " / ".join(
            c(k, "{:.0f}") for k in ("run_mb_at_10s", "run_mb_at_30s", "run_mb_at_end")
        )
        rows.append(
            [
                case,
                c("samples", "{:,.0f}"),
                c("request_rate", "{:,.0f}"),
                rss,
                c("run_peak_mb", "{:.0f}"),
                c("tree_peak_mb", "{:.0f}"),
                c("tail_s", "{:.2f}"),
                c("file_mb", "{:.1f}"),
                c("bytes_per_sample", "{:,.0f}"),
            ]
        )
    return rows


def verdict(doc: dict[str, Any]) -> list[str]:
    """The targets, met or not, from this code's cases (medians)."""
    duration_s = doc["settings"]["duration_s"]
    lines = []
    for case, m in doc["cases"].items():
        if "(against)" in case:
            continue
        peak = (m.get("run_peak_mb") or {}).get("median")
        tail = (m.get("tail_s") or {}).get("median")
        if peak is not None and duration_s >= 300:
            met = "met" if peak < TARGET_RSS_MB else "not met"
            lines.append(
                f"{case}: run process under {TARGET_RSS_MB:.0f} MB RSS over a "
                f"{duration_s:g} s run: **{met}**: peak {peak:.0f} MB."
            )
        if tail is not None and duration_s <= 60:
            met = "met" if tail <= TARGET_TAIL_S else "not met"
            lines.append(
                f"{case}: `run` returns within {TARGET_TAIL_S:g} s of its planned end: "
                f"**{met}**: {tail:.2f} s."
            )
    sizes = {
        case: e["median"]
        for case, m in doc["cases"].items()
        if "(against)" not in case and (e := m.get("bytes_per_sample")) and e["median"]
    }
    if sizes:
        smallest = min(sizes, key=lambda k: sizes[k])
        lines.append(
            "Bytes per sample: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(sizes.items(), key=lambda kv: kv[1]))
            + f"; the smallest is {smallest}."
        )
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    """RESULTS-longrun*.md."""
    info, settings = doc["machine"], doc["settings"]
    lines = [
        "# clientswarm long runs: memory, tail, bytes per sample (issue 15)",
        "",
        "Produced by `bench/longrun.py` (see `bench/README.md`). `clientswarm run` with the "
        "full-path cluster of `fullpath.py` (2 workers, 64 closed-loop clients streaming "
        f"128-token chats from nginx), {settings['duration_s']:g} s after {WARMUP_S:g} s "
        "warm-up, once per samples format"
        + (
            f", interleaved with the code of `{settings['against']}` (commit "
            f"{settings.get('against_commit') or '?'})"
            if settings["against"]
            else ""
        )
        + f". Cells are medians over {settings['repeats']} repeat(s). RSS is the run process's "
        "(the in-process service) `VmRSS` every 0.5 s from the first request and its `VmHWM`; "
        "tree adds the workers'. The tail is from the planned end (first request logged by "
        "nginx + warm-up + duration) to the exit of `clientswarm run`. Bytes per sample: the "
        "samples file over every sample the summary counted. Raw values and the RSS series: "
        f"`{doc['json_name']}`.",
        "",
        "## Machine",
        "",
        *machine_lines(info),
        "",
        "## Against the issue's targets",
        "",
        *(f"- {line}" for line in doc["verdict"]),
        "",
        "## Results",
        "",
        markdown_table(result_rows(doc)),
        "",
    ]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """Run every case, print, write; 1 if any run did not complete."""
    info = machine_info()
    sources: list[Path | None] = [None] if args.against is None else [None, args.against]
    raw: dict[str, dict[str, list[Any]]] = {}
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clientswarm-longrun-") as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        with nginx_target(tmp / "nginx", tokens=128, workers=1) as nginx:
            access = AccessLog(nginx.root / "access.log")
            for r in range(args.repeats):
                for fmt in args.formats:
                    for src in sources:
                        case = case_name(fmt, src is not None)
                        tag = f"{r}-{fmt}-{'b' if src else 'a'}"
                        m = run_case(nginx.url, access, tmp, fmt, args.duration_s, tag, src)
                        runs.append({"case": case, "repeat": r + 1, "metrics": m})
                        for key, value in m.items():
                            if value is None or isinstance(value, bool | int | float):
                                raw.setdefault(case, {}).setdefault(key, []).append(value)
                        log(
                            f"[{r + 1}/{args.repeats}] {case:<18} {m.get('samples', 0):>9,} "
                            f"samples, run peak {m.get('run_peak_mb', 0):.0f} MB, tail "
                            f"{m.get('tail_s', float('nan')):.2f} s, "
                            f"{m.get('bytes_per_sample', 0):,.0f} B/sample"
                        )
    info["wall_s"] = round(time.monotonic() - started, 1)
    json_path = args.out / f"results-longrun{args.tag}.json"
    md_path = args.out / f"RESULTS-longrun{args.tag}.md"
    doc: dict[str, Any] = {
        "machine": info,
        "settings": {
            "duration_s": args.duration_s,
            "repeats": args.repeats,
            "warmup_s": WARMUP_S,
            "formats": args.formats,
            "against": None if args.against is None else str(args.against),
            "against_commit": None if args.against is None else commit_of(args.against),
        },
        "cluster_config": cluster_config("http://127.0.0.1:PORT", args.duration_s),
        "targets": {"run_rss_mb_5min": TARGET_RSS_MB, "tail_s_30s": TARGET_TAIL_S},
        "cases": {case: {k: aggregate(v) for k, v in m.items()} for case, m in raw.items()},
        "runs": runs,
        "json_name": json_path.name,
    }
    doc["verdict"] = verdict(doc)
    write_outcome(doc, [result_rows(doc)], (json_path, md_path), render_markdown, info["wall_s"])
    return 0 if all(run["metrics"]["completed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
