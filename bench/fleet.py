"""Fleet benchmark (issue 20): where one ``clientswarm serve`` stops keeping up with its workers.

Goal of the issue: 1,000 workers at a combined 100,000 samples/s into one service, heartbeat
round trip p99 under 1 s, no growing backlog, on this 2-core machine.

Each point (a store, a combined rate, a number of workers N) starts a fresh ``clientswarm
serve`` (loopback, free port, its own data dir; SQLite, or a database on a throwaway
PostgreSQL), submits one cluster of N Slurm array tasks that nobody starts (stand-in Slurm
tools keep the worker token, :mod:`fleet_service`), and plays the N workers from a few
processes (:mod:`fleet_workers`: the worker's own protocol code, one aiohttp session per
worker, made-up streamed-chat samples of 64 inter-token gaps at ``samples-per-s / N`` per
worker, packed batches every 0.5 s, heartbeats at the service's interval; with ``--sample-path
files`` the cluster has ``sample_path: files`` and each worker writes each 0.5 s tick to its
Parquet file in the service's ``samples/`` and posts only the tick's tallies, as
:class:`~clientswarm.worker.file_sink.FileTickSink` does). Each worker sends
for ``--duration-s`` from the shared start (its last answers end up to 1 s later), then
flushes and finishes. Measured:

- sustained samples/s: samples acknowledged in the window (from 2 s after the start to the
  planned end) over its length; at the end, generated = acknowledged = stored (the store
  counted after the service stopped; on the files path, the samples in the workers' files,
  ``SampleFiles(data_dir / "samples", cluster).count_samples()``, after the service stopped);
- backlog: samples recorded but not yet acknowledged, every 0.5 s (a worker keeps them until
  acknowledged; the service acknowledges a batch only once committed, so its own queue is this);
- heartbeat and batch round trips (p50/p99/max; a heartbeat times out after 2 s), every HTTP
  attempt's status, the workers' outcomes and their state at the service; a round trip is
  timed in the worker process, so it includes that process's own loop lag when the simulated
  workers keep it busy: from 100 workers on, one of them (the *probe*) runs alone in a process
  of its own, and its heartbeats' round trips are reported apart (``probe heartbeat``): what
  the service answers, without the load generator's lag;
- CPU (cores over the window) and RSS of the service, PostgreSQL, the worker processes and
  the rest of the machine, from ``/proc``.

The first thing that breaks is the earliest of: HTTP errors or timeouts, a one-second bin
whose heartbeat p99 exceeds 1 s, a backlog above 1.5 s of load (a healthy worker holds at
most one 0.5 s tick and the batch in flight; where the service gives a large fleet a longer
batch interval, ``serve --batches-per-s``, three of those intervals), a worker lost or failed.

Writes ``results-fleet.json`` and ``RESULTS-fleet.md`` beside this file (``--quick``: 10 and
100 workers for 10 s on SQLite, ``*-fleet-quick.*``). ::

    .venv/bin/python bench/fleet.py                                  # 10, 100, 300, 1000 on SQLite
    .venv/bin/python bench/fleet.py --stores sqlite postgresql --repeats 3 --profile 100 1000
    .venv/bin/python bench/fleet.py --workers 1000 --samples-per-s 20000 --duration-s 30
    .venv/bin/python bench/fleet.py --sample-path files --workers 100 300 1000 --tag=-files
    .venv/bin/python bench/fleet.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_report import analyse, profile_summary, render_markdown, summary_rows, verdict
from fleet_service import (
    FleetService,
    count_in_files,
    count_stored,
    cpu_seconds,
    fleet_config,
    main_thread_seconds,
    postgres_server,
    raise_nofile,
    rss_kb,
    system_seconds,
    threads_of,
    tree_cpu_seconds,
)
from harness import machine_cpu
from report import log, machine_info, write_outcome

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "fleet_workers.py"
SAMPLE_EVERY_S = 0.5
STOP_GRACE_S = 90.0
"""How long after the planned end the worker processes may take to flush and finish; then
they cancel their workers and report what they saw."""
GOAL = {"workers": 1000, "samples_per_s": 100_000, "heartbeat_p99_s": 1.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, nargs="+", default=None, help="N per point (10 100 300 1000)"
    )
    parser.add_argument(
        "--samples-per-s",
        type=float,
        nargs="+",
        default=[100_000],
        help="combined target of the N workers (several: each with every N)",
    )
    parser.add_argument("--duration-s", type=float, default=None, help="per point (20)")
    parser.add_argument("--stores", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite"])
    parser.add_argument(
        "--sample-path",
        nargs="+",
        choices=("service", "files", "files-deferred"),
        default=["service"],
        help="the cluster's sample_path (several: every point on each); files-deferred: "
        "sample_path files, the simulated workers posting each tick's tallies (computed once "
        "per tick size) and writing its file only after the run, before /finish: what the "
        "service does at that load, without the simulated workers' own file work on the "
        "same cores",
    )
    parser.add_argument("--repeats", type=int, default=1, help="repeats, interleaved")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 2,
        help="worker processes (default: one per core)",
    )
    parser.add_argument("--start-spread-s", type=float, default=1.0, help="registrations over")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="+",
        default=[],
        metavar="N",
        help="after the measured runs, one more run of each point with N workers, the service "
        "under bench/fleet_profile.py (its numbers are not in the table)",
    )
    parser.add_argument("--quick", action="store_true", help="10 and 100 workers, 10 s")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the result files")
    parser.add_argument(
        "--render", type=Path, help="only write the Markdown of this results JSON again"
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        args.workers = [10, 100] if args.quick else [10, 100, 300, 1000]
    if args.duration_s is None:
        args.duration_s = 10.0 if args.quick else 20.0
    if args.duration_s < 3 or args.repeats < 1 or args.processes < 1:
        parser.error("--duration-s must be at least 3, --repeats and --processes at least 1")
    if args.quick and not args.tag:
        args.tag = "-quick"
    return args


def head_commit() -> str | None:
    """The commit checked out here (read from ``.git``; the working tree may differ)."""
    git = HERE.parent / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


PROBE_FROM_WORKERS = 100
"""From this many workers on, the last one runs alone in a process of its own: the probe."""


def split(workers: int, processes: int) -> list[tuple[int, int]]:
    """``(first index, count)`` of each worker process, as even as can be; from
    :data:`PROBE_FROM_WORKERS` workers on, the last worker alone in one more process (the
    probe: its loop does nothing else, so its heartbeats' round trips are the service's, not
    those of a loaded worker process's late loop)."""
    if workers >= PROBE_FROM_WORKERS:
        return [*_even(workers - 1, processes), (workers - 1, 1)]
    return _even(workers, processes)


def _even(workers: int, processes: int) -> list[tuple[int, int]]:
    processes = min(processes, workers)
    base, extra = divmod(workers, processes)
    out, first = [], 0
    for p in range(processes):
        count = base + (p < extra)
        out.append((first, count))
        first += count
    return out


class Sampler:
    """CPU and memory of the service, PostgreSQL, the worker processes and the machine."""

    def __init__(self, service_pid: int, pg_pid: int | None) -> None:
        self.service_pid, self.pg_pid = service_pid, pg_pid
        self.rows: list[dict[str, Any]] = []

    def sample(self, loaders: list[int]) -> None:
        busy, total = machine_cpu()
        rss = rss_kb(self.service_pid)
        self.rows.append(
            {
                "t": time.time(),
                "service_cpu_s": cpu_seconds(self.service_pid),
                "service_sys_s": system_seconds(self.service_pid),
                "service_loop_s": main_thread_seconds(self.service_pid),
                "service_rss_kb": rss[0] if rss else None,
                "service_hwm_kb": rss[1] if rss else None,
                "service_threads": threads_of(self.service_pid),
                "pg_cpu_s": tree_cpu_seconds(self.pg_pid) if self.pg_pid else None,
                "loaders_cpu_s": sum(cpu_seconds(pid) or 0.0 for pid in loaders),
                "machine_busy_s": busy,
                "machine_total_s": total,
            }
        )


def run_point(
    store: str,
    sample_path: str,
    rate: float,
    workers: int,
    args: argparse.Namespace,
    pg: tuple[Any, int] | None,
    profile: bool = False,
) -> dict[str, Any]:
    """One point: a fresh service, N simulated workers for ``duration_s``; raw facts."""
    rate_per_worker = rate / workers
    with tempfile.TemporaryDirectory(prefix="clientswarm-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        store_url = None
        if store == "postgresql":
            assert pg is not None
            server, _ = pg
            store_url = server.create_database(f"fleet_{workers}_{int(time.time() * 1000)}")
        profile_path = tmp / "profile.json" if profile else None
        svc = FleetService(tmp, store_url, max_workers=max(64, workers), profile=profile_path)
        svc.start()
        facts: dict[str, Any] = {"store": store, "sample_path": sample_path, "workers": workers}
        try:
            pg_pid = pg[1] if pg and store == "postgresql" else None
            facts |= drive(svc, workers, sample_path, rate_per_worker, args, tmp, pg_pid)
        finally:
            facts["service_exit"] = svc.stop()
            facts["service_log_tail"] = svc.log_tail(4000)
        if sample_path.startswith("files"):
            facts["stored"] = count_in_files(tmp / "data", facts["cluster_id"])
            facts["files_bytes"] = sum(
                f.stat().st_size for f in (tmp / "data" / "samples").rglob("*.parquet")
            )
        else:
            facts["stored"] = count_stored(svc.store_url, facts["cluster_id"])
        if profile_path is not None and profile_path.exists():
            facts["profile"] = json.loads(profile_path.read_text())
        facts["store_bytes"] = sum(f.stat().st_size for f in (tmp / "data").glob("*.sqlite*"))
    return facts


def drive(
    svc: FleetService,
    workers: int,
    sample_path: str,
    rate_per_worker: float,
    args: argparse.Namespace,
    tmp: Path,
    pg_pid: int | None,
) -> dict[str, Any]:
    """Submit the cluster, play its workers, follow the machine until they are done."""
    config = fleet_config(
        f"fleet-{workers}", workers, args.duration_s, sample_path.removesuffix("-deferred")
    )
    status, body = svc.api("POST", "/clusters", config)
    if status != 201:
        raise RuntimeError(f"the service refused the cluster: HTTP {status} {body}")
    cluster_id = body["id"]
    env = {**os.environ, "CLIENTSWARM_WORKER_TOKEN": svc.worker_token()}
    outs, loaders = [], []
    for first, count in split(workers, args.processes):
        out = tmp / f"workers-{first}.json"
        argv = [
            sys.executable,
            str(WORKER_SCRIPT),
            f"--service={svc.url}",
            f"--cluster={cluster_id}",
            f"--first={first}",
            f"--count={count}",
            f"--rate-per-worker={rate_per_worker}",
            f"--duration-s={args.duration_s}",
            f"--start-spread-s={args.start_spread_s}",
            f"--give-up-s={args.duration_s + args.start_spread_s + STOP_GRACE_S}",
            f"--out={out}",
            *(["--defer-tick-files"] if sample_path == "files-deferred" else []),
        ]
        err = (tmp / f"workers-{first}.err").open("w")
        loaders.append(subprocess.Popen(argv, env=env, stdout=err, stderr=subprocess.STDOUT))
        outs.append(out)
    sampler = Sampler(svc.pid, pg_pid)
    deadline = time.monotonic() + args.duration_s + args.start_spread_s + STOP_GRACE_S + 60
    with _killing(loaders):
        while any(p.poll() is None for p in loaders) and time.monotonic() < deadline:
            sampler.sample([p.pid for p in loaders if p.poll() is None])
            time.sleep(SAMPLE_EVERY_S)
        sampler.sample([])
    processes = []
    for out, proc in zip(outs, loaders, strict=True):
        if out.exists():
            processes.append(json.loads(out.read_text()))
        else:
            tail = Path(str(out).replace(".json", ".err")).read_text(errors="replace")[-2000:]
            processes.append({"crashed": proc.returncode, "tail": tail or "(no output)"})
    view = svc.wait_final(cluster_id, timeout_s=60)
    _, results = svc.api("GET", f"/clusters/{cluster_id}/results")
    return {
        "cluster_id": cluster_id,
        "rate_per_worker": rate_per_worker,
        "processes": processes,
        "resources": sampler.rows,
        "cluster_status": view.get("status"),
        "cluster_reason": view.get("reason"),
        "worker_states": _count(w["state"] for w in view.get("workers", [])),
        "worker_errors": sorted({str(w["error"]) for w in view.get("workers", []) if w["error"]})[
            :10
        ],
        "summary_requests": ((results or {}).get("total") or {}).get("requests"),
    }


def _count(values: Iterator[str] | Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        out[value] = out.get(value, 0) + 1
    return out


@contextlib.contextmanager
def _killing(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Kill whichever of ``processes`` still runs on the way out."""
    try:
        yield
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@contextlib.contextmanager
def maybe_postgres(stores: list[str]) -> Iterator[tuple[Any, int] | None]:
    """A throwaway PostgreSQL server when a point needs one."""
    if "postgresql" not in stores:
        yield None
        return
    with postgres_server() as (server, pid):
        yield server, pid


def render(path: Path) -> int:
    """Write ``RESULTS-fleet*.md`` beside ``results-fleet*.json`` again from its data."""
    doc = json.loads(path.read_text())
    metrics = [r["metrics"] for r in doc["runs"]]
    for m in metrics:  # what older versions of this file got wrong
        if m.get("other_cores") is not None:
            m["other_cores"] = max(0.0, m["other_cores"])
        if not m.get("acknowledged"):
            m["drain_s"] = None
    doc["verdict"] = verdict(metrics, doc["settings"], doc["goal"])
    doc["runs"] = [_compact(r) for r in doc["runs"]]
    path.write_text(dump(doc))
    md = path.with_name(path.name.replace("results-", "RESULTS-").replace(".json", ".md"))
    md.write_text(render_markdown(doc))
    log(f"wrote {md}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run every point (repeats interleaved), print, write the result files (again after
    every run, so that an interrupted sweep keeps what it measured)."""
    if args.render is not None:
        return render(args.render)
    started = time.monotonic()
    info = machine_info()
    info["commit"] = head_commit()
    soft, hard = raise_nofile()
    info["limits"] = {"nofile_soft_before": soft, "nofile": hard}
    points = [
        (store, path, r, n)
        for store in args.stores
        for path in args.sample_path
        for r in args.samples_per_s
        for n in args.workers
    ]
    settings = {
        "workers": args.workers,
        "stores": args.stores,
        "sample_paths": args.sample_path,
        "samples_per_s": args.samples_per_s,
        "duration_s": args.duration_s,
        "repeats": args.repeats,
        "processes": args.processes,
        "start_spread_s": args.start_spread_s,
        "profiled": args.profile,
    }
    json_path = args.out / f"results-fleet{args.tag}.json"
    md_path = args.out / f"RESULTS-fleet{args.tag}.md"
    runs: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []

    def document() -> dict[str, Any]:
        metrics = [r["metrics"] for r in runs]
        return {
            "machine": info,
            "settings": settings,
            "goal": GOAL,
            "verdict": verdict(metrics, settings, GOAL),
            "runs": [_compact(r) for r in runs],
            "profiles": profiles,
            "json_name": json_path.name,
        }

    def save() -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = document()
        json_path.write_text(dump(doc))
        md_path.write_text(render_markdown(doc))

    with maybe_postgres(args.stores) as pg:
        for repeat in range(args.repeats):
            for store, path, rate, workers in points:
                log(f"{store}, {path} path, {workers} workers, {rate:,.0f} samples/s (repeat "
                    f"{repeat})")  # fmt: skip
                facts = run_point(store, path, rate, workers, args, pg)
                m = analyse(facts, rate, args.duration_s)
                m["repeat"] = repeat
                log("  " + m["line"])
                runs.append({"facts": facts, "metrics": m})
                save()
        for store, path, rate, workers in [p for p in points if p[3] in args.profile]:
            log(f"{store}, {path} path, {workers} workers, {rate:,.0f} samples/s: profiled run")
            facts = run_point(store, path, rate, workers, args, pg, profile=True)
            m = analyse(facts, rate, args.duration_s)
            log("  " + m["line"])
            profiles.append(profile_summary(facts, m))
            save()
    doc = document()
    metrics = [r["metrics"] for r in runs]
    wall_s = round(time.monotonic() - started, 1)
    write_outcome(doc, [summary_rows(metrics)], (json_path, md_path), render_markdown, wall_s)
    json_path.write_text(dump(doc))
    return 0 if all(m["complete"] for m in metrics) else 1


def dump(doc: dict[str, Any]) -> str:
    """``doc`` as JSON: indented, but each run on one line (they hold long series)."""
    head = json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=2)
    runs = ",\n".join("    " + json.dumps(r, separators=(",", ":")) for r in doc["runs"])
    return head[: -len("\n}")] + ',\n  "runs": [\n' + runs + "\n  ]\n}\n"


_PER_CALL = ("calls", "acks", "timeline", "assigned", "failure_times")


def _compact(run: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of a run: its metrics, and its facts without per-call lists, the
    first three failure messages of each kind and the CPU/RSS readings every 2 s."""
    facts = dict(run["facts"])
    processes = []
    for p in facts["processes"]:
        kept = {k: v for k, v in p.items() if k not in _PER_CALL}
        if "failures" in kept:
            kept["failures"] = {k: v[:3] for k, v in kept["failures"].items()}
        processes.append(kept)
    facts["processes"] = processes
    facts["resources"] = [
        {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
        for row in facts.get("resources", [])[::4]
    ]
    facts["cluster_reason"] = (facts.get("cluster_reason") or "")[:300] or None
    facts["service_log_tail"] = facts.get("service_log_tail", "")[-2000:]
    metrics = dict(run["metrics"])
    metrics["backlog"] = metrics.get("backlog", [])[::2]  # every second
    return {"metrics": metrics, "facts": facts}


if __name__ == "__main__":
    sys.exit(main(parse_args()))
