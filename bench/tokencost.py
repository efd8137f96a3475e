"""The worker's CPU per streamed token at real pacing, against a bare client's floor.

Real engines stream tokens one by one, tens of ms apart, to thousands of open streams: each
token is then one socket read, one parse, one timestamp. This measures what a token costs a
``clientswarm run`` worker there: its processes' CPU over a measured window (``/proc`` read at
the window's start and end, so imports and start-up are left out) divided by the tokens and
the requests the paced target (``paced_target.py``) wrote and completed in that window.

Cases (first token 50 ms after the request's arrival, then one every ITL, 32 tokens):

- ``open400`` (the point a later optimisation is judged on): open loop, constant arrivals at
  400 req/s (200 clients), ITL 5 ms, 2 workers, 20 s measured after 2 s of warm-up;
- the paced grid, closed loop, 1 worker: N streams each requesting again as soon as its answer
  ended (no think time), ITL 5, 20, 50 ms x 64 and 1,000 streams, and 10,000 streams at
  500 ms; 10 s measured. The clients start evenly over one answer's duration (``ramp_up_s``),
  so the streams are spread over it and arrivals match completions once the ramp is done;
  warm-up is the ramp plus 1 s. Combinations whose offered tokens/s (N / ITL) exceed
  ``--max-offered-tok-s`` are not run and are listed as skipped.

Each case runs ``clientswarm run`` (``--against SRC``: also from another checkout, interleaved
per repeat, the order alternating) and ``bare_stream.py`` (a uvloop protocol that only reads
and timestamps: the floor), as many processes as workers. With 2 usable cores the target, the
run process (the service) and this script are pinned to the first, the workers (or the bare
client) to the second. Reported per case: worker CPU µs per token and per request, tokens/s
and requests/s achieved against offered, cores, the worker's loop lag p99 (the summary's
``workers[].loop_lag_p99_s``: the run reports no p50), client TTFT and ITL p50/p99 (the
summary's), ``trustworthy``; for the bare client its own percentiles and loop lag.

``--profile``: one more ``open400`` run of this checkout with ``py-spy record --native`` on one
worker and ``perf record -g`` on the other for ``--profile-s``, classified by
``tokencost_profile.py`` into where a token's CPU goes.

Writes ``RESULTS-tokencost{TAG}.md`` and ``results-tokencost{TAG}.json`` beside this file
(``--quick``: ``open400`` 4 s and one grid case 3 s, 1 repeat, ``-quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CLK_TCK, children, cmdline, machine_cpu
from paced_target import PacedTarget, paced_target, raise_nofile
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
TTFT_MS, TOKENS = 50.0, 32
OPEN_RATE, OPEN_CLIENTS, OPEN_WORKERS, OPEN_WARMUP_S = 400.0, 200, 2, 2.0
GRID_ITL_MS, GRID_STREAMS = (5.0, 20.0, 50.0), (64, 1000)
SLOW_STREAMS, SLOW_ITL_MS = 10_000, 500.0
GRID_WORKERS = 1
MAX_OFFERED_TOK_S = 40_000.0
#: The CPU window closes this long before the planned end, while the load still runs.
END_MARGIN_S = 0.25
STARTUP_TIMEOUT_S = 60.0
VARIANTS = ("clientswarm", "against", "bare")


@dataclass(frozen=True)
class Case:
    """One load point: open loop at ``rate`` or closed loop with ``streams`` streams."""

    name: str
    kind: Literal["open", "closed"]
    itl_ms: float
    streams: int
    """Closed loop: concurrent streams; open loop: the group's clients."""
    workers: int
    duration_s: float
    rate: float | None = None
    ttft_ms: float = TTFT_MS
    tokens: int = TOKENS

    @property
    def answer_s(self) -> float:
        """One answer's duration at the target's pace."""
        return (self.ttft_ms + (self.tokens - 1) * self.itl_ms) / 1000

    @property
    def ramp_up_s(self) -> float:
        """Closed loop: clients start evenly over one answer (0 in open loop)."""
        return self.answer_s if self.kind == "closed" else 0.0

    @property
    def warmup_s(self) -> float:
        """From the first request to the measured window."""
        return OPEN_WARMUP_S if self.kind == "open" else self.ramp_up_s + 1.0

    @property
    def offered_req_s(self) -> float:
        """Open loop: the rate; closed loop: N answers per answer's duration."""
        return self.rate if self.rate is not None else self.streams / self.answer_s

    @property
    def offered_tok_s(self) -> float:
        """Tokens a second the target writes if the client keeps up."""
        return self.offered_req_s * self.tokens

    @property
    def nominal_tok_s(self) -> float:
        """What the cap is checked against: N / ITL (closed), rate x tokens (open)."""
        if self.kind == "open":
            return self.offered_tok_s
        return self.streams / (self.itl_ms / 1000)


def all_cases(open_s: float, grid_s: float) -> list[Case]:
    """``open400`` and the paced grid, in that order."""
    cases = [Case("open400", "open", 5.0, OPEN_CLIENTS, OPEN_WORKERS, open_s, rate=OPEN_RATE)]
    for itl in GRID_ITL_MS:
        for n in GRID_STREAMS:
            cases.append(Case(f"closed-{n}x{itl:g}ms", "closed", itl, n, GRID_WORKERS, grid_s))
    name = f"closed-{SLOW_STREAMS}x{SLOW_ITL_MS:g}ms"
    cases.append(Case(name, "closed", SLOW_ITL_MS, SLOW_STREAMS, GRID_WORKERS, grid_s))
    return cases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="repeats (default 3)")
    parser.add_argument("--open-duration-s", type=float, default=None, help="open400 (20)")
    parser.add_argument("--grid-duration-s", type=float, default=None, help="grid cases (10)")
    parser.add_argument(
        "--max-offered-tok-s",
        type=float,
        default=MAX_OFFERED_TOK_S,
        help=f"skip grid cases offering more tokens/s (N / ITL) (default {MAX_OFFERED_TOK_S:,.0f})",
    )
    parser.add_argument("--cases", nargs="+", metavar="NAME", help="only these cases")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="SRC",
        help="also run every case from another checkout (its src/, or a checkout holding "
        "src/: with PYTHONPATH=that src/, and that checkout's .venv/bin/clientswarm when it "
        "has one), interleaved per repeat, and report both and their ratio",
    )
    parser.add_argument(
        "--against-note", default="", help="what SRC is, for the results (e.g. its commit)"
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare floor")
    parser.add_argument(
        "--request-ids",
        action="store_true",
        help="the target streams vLLM's shape of chunks: an id of their own per request, an "
        "empty role chunk with the first token (default: one id for all, as a simple server)",
    )
    parser.add_argument("--profile", action="store_true", help="add the open400 profile")
    parser.add_argument("--profile-only", action="store_true", help="only the profile")
    parser.add_argument("--profile-s", type=float, default=10.0, help="profiled seconds (10)")
    parser.add_argument(
        "--keep-profile", type=Path, metavar="DIR", help="copy the profiles' raw files to DIR"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke, *-quick.* files")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the result files")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.open_duration_s is None:
        args.open_duration_s = 4.0 if args.quick else 20.0
    if args.grid_duration_s is None:
        args.grid_duration_s = 3.0 if args.quick else 10.0
    if args.repeats < 1 or args.open_duration_s < 1 or args.grid_duration_s < 1:
        parser.error("--repeats and the durations must be at least 1")
    if args.quick and not args.cases:
        args.cases = ["open400", "closed-64x20ms"]
    known = {c.name for c in all_cases(1, 1)}
    unknown = sorted(set(args.cases or ()) - known)
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(sorted(known))}")
    if args.against is not None:
        args.against = args.against.resolve()
        if (args.against / "src" / "clientswarm").is_dir():
            args.against = args.against / "src"
        if not (args.against / "clientswarm").is_dir():
            parser.error(f"--against: no clientswarm package in {args.against} or its src/")
    if args.profile_only:
        args.profile = True
    if args.quick:
        args.tag += "-quick"
    return args


def select(args: argparse.Namespace) -> tuple[list[Case], list[dict[str, Any]]]:
    """The cases to run, and those skipped with the reason."""
    run, skipped = [], []
    for case in all_cases(args.open_duration_s, args.grid_duration_s):
        if args.cases and case.name not in args.cases:
            continue
        if case.nominal_tok_s > args.max_offered_tok_s:
            skipped.append(
                {
                    "case": case.name,
                    "offered_tok_s": case.nominal_tok_s,
                    "reason": f"offers {case.nominal_tok_s:,.0f} tok/s (N / ITL) > "
                    f"--max-offered-tok-s {args.max_offered_tok_s:,.0f}",
                }
            )
        else:
            run.append(case)
    return run, skipped


# -- configs and processes ----------------------------------------------------------------------


def cluster_config(case: Case, url: str) -> dict[str, Any]:
    """The ``clientswarm run`` configuration of ``case``."""
    if case.kind == "open":
        load: dict[str, Any] = {"kind": "open", "rate": case.rate, "arrival": "constant"}
    else:
        load = {"kind": "closed", "ramp_up_s": round(case.ramp_up_s, 3)}
    return {
        "name": "tokencost",
        "seed": 1,
        "target": {"url": url, "model": "mock-model", "timeout_s": case.answer_s + 30},
        "spawner": {"kind": "local", "workers": case.workers},
        "warmup_s": case.warmup_s,
        "groups": [
            {
                "name": "chat",
                "clients": case.streams,
                "interaction": {
                    "kind": "chat",
                    "stream": True,
                    "max_tokens": case.tokens,
                    "prompts": ["Hi"],
                },
                "load": load,
                "stop": {"duration_s": case.duration_s},
            }
        ],
    }


def bare_argv(case: Case, url: str, index: int, start_unix: float) -> list[str]:
    """One process of the bare floor for ``case``."""
    argv = [sys.executable, str(HERE / "bare_stream.py"), url, f"--tokens={case.tokens}"]
    if case.kind == "open":
        argv.append(f"--rate={case.rate}")
    else:
        argv += [f"--streams={case.streams}", f"--ramp-up-s={case.ramp_up_s}"]
    argv += [f"--duration-s={case.warmup_s + case.duration_s}", f"--procs={case.workers}"]
    argv += [f"--index={index}", f"--start-unix={start_unix}"]
    return argv


@dataclass(frozen=True)
class Cores:
    """Where the target (with the service and this script) and the load run; None: unpinned."""

    target: frozenset[int] | None
    load: frozenset[int] | None

    def describe(self) -> str:
        """One line for the results."""
        if self.target is None or self.load is None:
            return "not pinned (fewer than 2 usable cores)"
        return (
            f"target, run process (service) and this script on core(s) {sorted(self.target)}, "
            f"workers or bare client on core(s) {sorted(self.load)} (sched_setaffinity of "
            "every thread)"
        )


def choose_cores() -> Cores:
    """First usable core for the target side, the second for the load, when there are 2."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return Cores(None, None)
    return Cores(frozenset(usable[:1]), frozenset(usable[1:2]))


def pin(pid: int, cores: frozenset[int] | None) -> None:
    """Every thread of ``pid`` onto ``cores`` (nothing when None or gone)."""
    if cores is None:
        return
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), cores)


def cpu_split(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of ``pid`` so far, all threads; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_of(pids: list[int]) -> tuple[float, float]:
    """(user, system) summed over ``pids``."""
    user = system = 0.0
    for pid in pids:
        got = cpu_split(pid)
        if got is not None:
            user, system = user + got[0], system + got[1]
    return user, system


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """Wait for ``proc``; kill its process group once ``timeout_s`` passed."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


@dataclass
class Launched:
    """The processes of one run: the ones to wait for, and how to find the load's pids."""

    procs: list[subprocess.Popen[bytes]]
    outputs: list[Path]
    run_pid: int | None  # clientswarm run's process (the service), None for the bare client
    expected_load: int

    def load_pids(self) -> list[int]:
        """The worker processes (clientswarm) or the bare client's processes."""
        if self.run_pid is None:
            return [p.pid for p in self.procs]
        return [c for c in children(self.run_pid) if "clientswarm.worker" in cmdline(c)]


def launch(
    case: Case, variant: str, target: PacedTarget, tmp: Path, tag: str, src: Path | None
) -> Launched:
    """Start one variant of ``case`` against ``target``."""
    out = tmp / f"stdout-{tag}.txt"
    if variant == "bare":
        start_unix = time.time() + 1.0
        procs, outputs = [], []
        for index in range(case.workers):
            path = tmp / f"stdout-{tag}-{index}.txt"
            with path.open("wb") as sink:
                procs.append(
                    subprocess.Popen(
                        bare_argv(case, target.url, index, start_unix),
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            outputs.append(path)
        return Launched(procs, outputs, None, case.workers)
    config = tmp / f"cluster-{tag}.json"
    config.write_text(json.dumps(cluster_config(case, target.url), indent=2))
    argv = clientswarm_argv("run", str(config), "--output", str(tmp / f"out-{tag}"))
    env = None if src is None else {**os.environ, "PYTHONPATH": str(src)}
    if src is not None and (own := src.parent / ".venv" / "bin" / "clientswarm").exists():
        argv[0] = str(own)  # the other checkout's own environment
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    return Launched([proc], [out], proc.pid, case.workers)


# -- one run ------------------------------------------------------------------------------------


def window_counts(records: list[dict[str, Any]], t0_ns: int, t1_ns: int) -> tuple[int, int]:
    """Tokens the target wrote and answers it completed between ``t0_ns`` and ``t1_ns``."""
    tokens = requests = 0
    for r in records:
        tokens += sum(1 for t in r["token_ns"] if t0_ns <= t < t1_ns)
        if r["complete"] and r["end_ns"] is not None and t0_ns <= r["end_ns"] < t1_ns:
            requests += 1
    return tokens, requests


def run_once(
    case: Case,
    variant: str,
    target: PacedTarget,
    cores: Cores,
    tmp: Path,
    tag: str,
    src: Path | None = None,
    during: Any = None,
) -> dict[str, Any]:
    """One run of ``variant`` on ``case``: the window's CPU, counts and the run's own numbers.

    ``during(load_pids, seconds)`` (the profile) is called at the window's start, in place of
    sleeping through it.
    """
    target.reset()
    launched = launch(case, variant, target, tmp, tag, src)
    m: dict[str, Any] = {}
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    first_ns = None
    while first_ns is None and time.monotonic() < deadline:
        if any(p.poll() is not None for p in launched.procs):
            break
        first_ns = target.stats().get("first_arrival_ns")
        if first_ns is None:
            time.sleep(0.02)
    load: list[int] = []
    while first_ns is not None and time.monotonic() < deadline:
        load = launched.load_pids()
        if len(load) >= launched.expected_load:
            break
        time.sleep(0.02)
    planned_end = None
    if first_ns is not None and len(load) >= launched.expected_load:
        window_start = first_ns / 1e9 + case.warmup_s
        planned_end = window_start + case.duration_s
        for pid in load:
            pin(pid, cores.load)
        pin(target.proc.pid, cores.target)
        if launched.run_pid is not None:
            pin(launched.run_pid, cores.target)
        time.sleep(max(0.0, window_start - time.time()))
        for pid in load:  # threads started since
            pin(pid, cores.load)
        side = [target.proc.pid] + ([launched.run_pid] if launched.run_pid else [])
        u0, s0 = cpu_of(load)
        side0 = sum(cpu_of(side))
        busy0, t0_ns = machine_cpu()[0], time.time_ns()
        span_s = planned_end - END_MARGIN_S - time.time()
        if during is not None:
            m["profile"] = during(load, span_s)
        time.sleep(max(0.0, planned_end - END_MARGIN_S - time.time()))
        u1, s1 = cpu_of(load)
        side1 = sum(cpu_of(side))
        busy1, t1_ns = machine_cpu()[0], time.time_ns()
        span = (t1_ns - t0_ns) / 1e9
        m |= {
            "window_s": span,
            "worker_cpu_s": (u1 - u0) + (s1 - s0),
            "worker_user_s": u1 - u0,
            "worker_sys_s": s1 - s0,
            "worker_cores": ((u1 - u0) + (s1 - s0)) / span,
            "target_service_cores": (side1 - side0) / span,
            "machine_cores": (busy1 - busy0) / span,
        }
    ends = (planned_end or time.time()) + 120 - time.time()
    codes = [stop_group(p, max(1.0, ends)) for p in launched.procs]
    for pid in load:  # workers run in their own sessions: none may outlive a killed run
        with contextlib.suppress(ProcessLookupError):
            if launched.run_pid is not None and "clientswarm.worker" in cmdline(pid):
                os.kill(pid, signal.SIGKILL)
    m["returncode"] = max(codes, key=abs)
    records = target.records()
    if "window_s" in m:
        tokens, requests = window_counts(records, t0_ns, t1_ns)
        m |= {"tokens": tokens, "requests": requests}
        m["tok_s"], m["req_s"] = tokens / m["window_s"], requests / m["window_s"]
        if tokens:
            m["us_per_token"] = m["worker_cpu_s"] / tokens * 1e6
            m["sys_us_per_token"] = m["worker_sys_s"] / tokens * 1e6
        if requests:
            m["us_per_request"] = m["worker_cpu_s"] / requests * 1e6
    m |= own_numbers(variant, launched, tmp / f"out-{tag}")
    m["completed"] = bool(
        "us_per_token" in m and m["returncode"] == 0 and not m.get("failed") and m.get("ok", True)
    )
    if not m["completed"]:
        text = "".join(p.read_text(errors="replace")[-1500:] for p in launched.outputs)
        log(f"  {case.name} {variant}: did not complete (exit {m['returncode']}):\n{text}")
    return m


def own_numbers(variant: str, launched: Launched, out: Path) -> dict[str, Any]:
    """What the run reported itself: the summary, or the bare client's JSON lines."""
    m: dict[str, Any] = {}
    if variant == "bare":
        lines = []
        for path in launched.outputs:
            text = path.read_text(errors="replace").strip().splitlines()
            with contextlib.suppress(ValueError, IndexError):
                lines.append(json.loads(text[-1]))
        m["ok"] = len(lines) == len(launched.outputs)
        if lines:  # the worst process's percentile, as for the workers' loop lag

            def worst(key: str, q: str) -> float | None:
                values = [line[key][q] for line in lines if line[key] and line[key][q] is not None]
                return max(values) if values else None

            m |= {
                "ttft_p50_ms": worst("ttft_ms", "p50"),
                "ttft_p99_ms": worst("ttft_ms", "p99"),
                "itl_p50_ms": worst("read_gap_ms", "p50"),
                "itl_p99_ms": worst("read_gap_ms", "p99"),
                "loop_lag_p50_ms": worst("loop_lag_ms", "p50"),
                "loop_lag_p99_ms": worst("loop_lag_ms", "p99"),
                "sched_lag_p99_ms": worst("sched_lag_ms", "p99"),
                "connections": sum(line["connections"] for line in lines),
            }
        return m
    path = out / "summary.json"
    summary: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    total = summary.get("total") or {}
    if not total:
        m["ok"] = False
        return m

    def ms(dist: dict[str, Any] | None, q: str) -> float | None:
        value = (dist or {}).get(q)
        return None if value is None else value * 1000

    lags = [w.get("loop_lag_p99_s") for w in summary.get("workers", [])]
    lags = [v for v in lags if v is not None]
    m |= {
        "failed": total["failed"],
        "summary_requests": total["requests"],
        "ttft_p50_ms": ms(total.get("ttft_s"), "p50"),
        "ttft_p99_ms": ms(total.get("ttft_s"), "p99"),
        "itl_p50_ms": ms(total.get("itl_s"), "p50"),
        "itl_p99_ms": ms(total.get("itl_s"), "p99"),
        "sched_lag_p99_ms": ms(total.get("schedule_lag_s"), "p99"),
        "loop_lag_p99_ms": max(lags) * 1000 if lags else None,
        "trustworthy": bool(summary.get("trustworthy")),
        "warnings": len(summary.get("warnings") or []),
    }
    return m


# -- the whole run ------------------------------------------------------------------------------


@contextlib.contextmanager
def target_for(
    case: Case, tmp: Path, cores: Cores, request_ids: bool = False
) -> Iterator[PacedTarget]:
    """The paced target of ``case`` (a fresh one per case and repeat), pinned."""
    with paced_target(
        case.ttft_ms,
        case.itl_ms,
        case.tokens,
        request_ids=request_ids,
        stderr_path=tmp / f"target-{case.name}.err",
    ) as target:
        pin(target.proc.pid, cores.target)
        yield target


def repeat_order(r: int, variants: list[str]) -> list[str]:
    """The variants of repeat ``r``: reversed every other repeat, so drift cancels."""
    return variants if r % 2 == 0 else variants[::-1]


def progress(case: Case, variant: str, r: int, m: dict[str, Any]) -> None:
    """One line per run."""

    def f(key: str, spec: str) -> str:
        v = m.get(key)
        return "-" if v is None else spec.format(v)

    log(
        f"[{r + 1}] {case.name:20} {variant:11} {f('us_per_token', '{:6.1f}')} µs/tok "
        f"{f('us_per_request', '{:7.0f}')} µs/req {f('tok_s', '{:8,.0f}')} tok/s "
        f"(offered {case.offered_tok_s:,.0f}) cores {f('worker_cores', '{:.2f}')} "
        f"lag p99 {f('loop_lag_p99_ms', '{:.1f}')} ms trustworthy {m.get('trustworthy', '-')}"
    )


def main(args: argparse.Namespace) -> int:
    """Run, print, write; 1 if any run did not complete."""
    info = machine_info()
    soft, hard = raise_nofile()
    info["nofile"] = {"soft_before": soft, "hard": hard}
    info["commit"] = commit()
    cores = choose_cores()
    info["pinning"] = cores.describe()
    if cores.target is not None:
        os.sched_setaffinity(0, cores.target)  # this script; children start here too
    cases, skipped = select(args)
    variants = ["clientswarm"]
    if args.against is not None:
        variants.append("against")
    if not args.no_bare:
        variants.append("bare")
    raw: dict[str, dict[str, dict[str, list[Any]]]] = {}
    runs: list[dict[str, Any]] = []
    profile: dict[str, Any] | None = None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clientswarm-tokencost-") as tmp_name:
        tmp = Path(tmp_name)
        for r in range(0 if args.profile_only else args.repeats):
            for case in cases:
                with target_for(case, tmp, cores, args.request_ids) as target:
                    for variant in repeat_order(r, variants):
                        tag = f"{case.name}-{variant}-{r}"
                        src = args.against if variant == "against" else None
                        m = run_once(case, variant, target, cores, tmp, tag, src)
                        progress(case, variant, r, m)
                        runs.append({"case": case.name, "variant": variant, "repeat": r + 1, **m})
                        per = raw.setdefault(case.name, {}).setdefault(variant, {})
                        for key, value in m.items():
                            if value is None or isinstance(value, bool | int | float):
                                per.setdefault(key, []).append(value)
        if args.profile:
            from tokencost_profile import profile_during, summarise_profile

            case = next(c for c in all_cases(max(args.profile_s + 2, 5), 1) if c.name == "open400")
            with target_for(case, tmp, cores, args.request_ids) as target:
                during = profile_during(tmp, args.profile_s)
                m = run_once(case, "clientswarm", target, cores, tmp, "profile", during=during)
            progress(case, "profile", 0, m)
            profile = summarise_profile(m.pop("profile", None), m)
            if args.keep_profile is not None:
                keep(profile.get("recorded") or {}, args.keep_profile)
    info["wall_s"] = round(time.monotonic() - started, 1)
    agg = {
        case: {variant: {k: aggregate(v) for k, v in per.items()} for variant, per in vs.items()}
        for case, vs in raw.items()
    }
    ratios = paired_ratios(runs)
    json_path = args.out / f"results-tokencost{args.tag}.json"
    md_path = args.out / f"RESULTS-tokencost{args.tag}.md"
    doc = {
        "machine": info,
        "settings": {
            "repeats": args.repeats,
            "open_duration_s": args.open_duration_s,
            "grid_duration_s": args.grid_duration_s,
            "max_offered_tok_s": args.max_offered_tok_s,
            "against": None if args.against is None else str(args.against),
            "against_note": args.against_note,
            "end_margin_s": END_MARGIN_S,
            "request_ids": args.request_ids,
        },
        "cases": [
            asdict(c)
            | {
                "ramp_up_s": c.ramp_up_s,
                "warmup_s": c.warmup_s,
                "offered_req_s": c.offered_req_s,
                "offered_tok_s": c.offered_tok_s,
                "nominal_tok_s": c.nominal_tok_s,
            }
            for c in cases
        ],
        "skipped": skipped,
        "cluster_configs": {c.name: cluster_config(c, "http://127.0.0.1:PORT") for c in cases},
        "metrics": agg,
        "ratios": ratios,
        "profile": profile,
        "runs": runs,
        "json_name": json_path.name,
    }
    doc["verdict"] = verdict(doc)
    tables = [main_rows(doc, spread=False)] + ([ratio_rows(doc)] if args.against else [])
    write_outcome(doc, tables, (json_path, md_path), render_markdown, info["wall_s"])
    return 0 if all(run["completed"] for run in runs) else 1


def keep(recorded: dict[str, Any], where: Path) -> None:
    """Copy the profiles' raw files (py-spy's, perf's data and script) to ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    for key in ("pyspy_raw", "perf_data", "perf_script"):
        if recorded.get(key) and Path(recorded[key]).exists():
            shutil.copy(recorded[key], where / Path(recorded[key]).name)
            recorded[key] = str(where / Path(recorded[key]).name)


def commit() -> str | None:
    """The commit of this checkout, ``+dirty`` when its tree differs."""
    done = subprocess.run(
        ["git", "-C", str(HERE), "describe", "--always", "--dirty=+dirty"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() or None


def paired_ratios(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per case, this checkout over the other (and over the bare floor), repeat by repeat."""
    by: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for run in runs:
        by.setdefault((run["case"], run["repeat"]), {})[run["variant"]] = run
    out: dict[str, dict[str, list[float | None]]] = {}
    for (case, _), variants in by.items():
        this = variants.get("clientswarm", {})
        for other, name in (("against", "vs_against"), ("bare", "vs_bare")):
            if other not in variants:
                continue
            for key in ("us_per_token", "us_per_request"):
                a, b = this.get(key), variants[other].get(key)
                ratio = a / b if a is not None and b else None
                out.setdefault(case, {}).setdefault(f"{name}_{key}", []).append(ratio)
    return {case: {k: aggregate(list(v)) for k, v in keys.items()} for case, keys in out.items()}


# -- report -------------------------------------------------------------------------------------


def med(doc: dict[str, Any], case: str, variant: str, key: str) -> Any:
    """The median of ``key`` of ``variant`` on ``case`` (None where absent)."""
    entry = doc["metrics"].get(case, {}).get(variant, {}).get(key)
    return None if entry is None else entry.get("median")


def cell(doc: dict[str, Any], case: str, variant: str, key: str, spec: str, spread: bool) -> str:
    """``median (min…max)``, or ``-``."""
    return format_cell(doc["metrics"].get(case, {}).get(variant, {}).get(key), spec, spread=spread)


def pair(doc: dict[str, Any], case: str, variant: str, key: str, spec: str) -> str:
    """``p50 / p99`` of a ``{key}_p50_ms`` pair."""
    return (
        f"{cell(doc, case, variant, f'{key}_p50_ms', spec, False)} / "
        f"{cell(doc, case, variant, f'{key}_p99_ms', spec, False)}"
    )


def main_rows(doc: dict[str, Any], spread: bool = True) -> list[list[str]]:
    """One row per case and variant."""
    rows = [
        [
            "case",
            "client",
            "µs/token",
            "µs/request",
            "tok/s (offered)",
            "req/s (offered)",
            "load cores",
            "sys %",
            "machine cores",
            "loop lag p50 / p99 ms",
            "TTFT p50 / p99 ms",
            "ITL p50 / p99 ms",
            "trustworthy",
        ]
    ]
    cases = {c["name"]: c for c in doc["cases"]}
    for name, variants in doc["metrics"].items():
        for variant in VARIANTS:
            if variant not in variants:
                continue
            c = cases[name]
            user = med(doc, name, variant, "worker_user_s")
            system = med(doc, name, variant, "worker_sys_s")
            sys_pct = (
                "-" if user is None or system is None else f"{100 * system / (user + system):.0f}"
            )
            lag50 = med(doc, name, variant, "loop_lag_p50_ms")
            rows.append(
                [
                    name,
                    label(doc, variant),
                    cell(doc, name, variant, "us_per_token", "{:.1f}", spread),
                    cell(doc, name, variant, "us_per_request", "{:,.0f}", spread),
                    f"{cell(doc, name, variant, 'tok_s', '{:,.0f}', False)} "
                    f"({c['offered_tok_s']:,.0f})",
                    f"{cell(doc, name, variant, 'req_s', '{:,.0f}', False)} "
                    f"({c['offered_req_s']:,.0f})",
                    cell(doc, name, variant, "worker_cores", "{:.2f}", False),
                    sys_pct,
                    cell(doc, name, variant, "machine_cores", "{:.2f}", False),
                    ("n/r" if lag50 is None else f"{lag50:.1f}")
                    + f" / {cell(doc, name, variant, 'loop_lag_p99_ms', '{:.1f}', False)}",
                    pair(doc, name, variant, "ttft", "{:.1f}"),
                    pair(doc, name, variant, "itl", "{:.2f}"),
                    "n/a"
                    if variant == "bare"
                    else cell(doc, name, variant, "trustworthy", "", False),
                ]
            )
    return rows


def label(doc: dict[str, Any], variant: str) -> str:
    """How a variant is named in the tables."""
    return {
        "clientswarm": f"clientswarm ({doc['machine'].get('commit') or 'this checkout'})",
        "against": "clientswarm (--against)",
        "bare": "bare floor",
    }[variant]


def ratio_rows(doc: dict[str, Any]) -> list[list[str]]:
    """Per case: this checkout and the other, their paired ratio, and the floor."""
    rows = [
        [
            "case",
            "µs/token here",
            "µs/token --against",
            "ratio here / against",
            "µs/request ratio",
            "bare µs/token",
            "here / bare",
        ]
    ]
    for name in doc["metrics"]:
        ratios = doc["ratios"].get(name, {})
        rows.append(
            [
                name,
                cell(doc, name, "clientswarm", "us_per_token", "{:.1f}", False),
                cell(doc, name, "against", "us_per_token", "{:.1f}", False),
                format_cell(ratios.get("vs_against_us_per_token"), "{:.3f}", spread=True),
                format_cell(ratios.get("vs_against_us_per_request"), "{:.3f}", spread=True),
                cell(doc, name, "bare", "us_per_token", "{:.1f}", False),
                format_cell(ratios.get("vs_bare_us_per_token"), "{:.1f}", spread=False),
            ]
        )
    return rows


def verdict(doc: dict[str, Any]) -> list[str]:
    """The headline lines, from the medians."""
    lines = []
    for name in doc["metrics"]:
        here = med(doc, name, "clientswarm", "us_per_token")
        if here is None:
            continue
        bare = med(doc, name, "bare", "us_per_token")
        other = med(doc, name, "against", "us_per_token")
        ratio = (doc["ratios"].get(name, {}).get("vs_against_us_per_token") or {}).get("median")
        text = f"{name}: {here:.1f} µs of worker CPU per token"
        paired = (doc["ratios"].get(name, {}).get("vs_bare_us_per_token") or {}).get("median")
        if bare is not None:
            text += f", the bare floor {bare:.1f} ({paired or here / bare:.1f}x, paired)"
        if other is not None and ratio is not None:
            text += f"; --against {other:.1f}, paired ratio here / against {ratio:.3f}"
        lines.append(text + ".")
    for s in doc["skipped"]:
        lines.append(f"{s['case']}: skipped, {s['reason']}.")
    return lines


def render_markdown(doc: dict[str, Any]) -> str:
    """RESULTS-tokencost.md."""
    from tokencost_profile import profile_markdown

    info, settings = doc["machine"], doc["settings"]
    extra = f"; commit {info.get('commit')}; open files {info['nofile']['hard']}"
    out = [
        "# clientswarm: worker CPU per streamed token at real pacing",
        "",
        "Produced by `bench/tokencost.py` (see `bench/README.md`, benchmark 11). Worker CPU "
        "(`/proc/<pid>/stat` of the worker processes, user + system, read at the start and the "
        "end of the measured window, so start-up is excluded) over the tokens the paced target "
        "wrote and the answers it completed in that window. The target answers with the first "
        f"token {TTFT_MS:g} ms after a request's arrival, then one token every ITL, "
        f"{TOKENS} tokens"
        + (
            " (vLLM's shape of chunks: an id of their own per request, an empty role chunk "
            "with the first token: `--request-ids`)"
            if settings.get("request_ids")
            else " (one chunk id for every request, the role with the first token)"
        )
        + f". Cells are medians over {settings['repeats']} repeat(s) (brackets: "
        f"min…max). Raw values: `{doc['json_name']}`.",
        "",
        "## Machine",
        "",
        *machine_lines(info, extra),
        f"- pinning: {info['pinning']}",
        "",
        "## Headlines",
        "",
        *(f"- {line}" for line in doc["verdict"]),
        "",
        "## Per case",
        "",
        markdown_table(main_rows(doc)),
        "",
        "- `open400`: open loop, constant arrivals at 400 req/s, 200 clients, 2 workers, "
        f"{settings['open_duration_s']:g} s measured after {OPEN_WARMUP_S:g} s; `closed-NxITL`: "
        f"closed loop, N streams requesting again at once, 1 worker, "
        f"{settings['grid_duration_s']:g} s measured after the ramp (one answer's duration) "
        "plus 1 s.",
        "- `tok/s`, `req/s`: tokens written and answers completed by the target in the window "
        "per second; offered: what the target writes if the client keeps up (open loop: the "
        "rate; closed loop: N answers per answer's duration). `load cores`: the workers' (or "
        "the bare client's) CPU over the window; `sys %`: its kernel share; `machine "
        "cores`: the whole machine's busy CPU over the window (`/proc/stat`: the target, the "
        "service and anybody else's work too).",
        "- clientswarm: loop lag from the summary (`workers[].loop_lag_p99_s`, worst worker; "
        "`n/r`: the run reports no p50), TTFT and ITL from the summary (whole run after "
        "warm-up), `trustworthy` as the summary says. Bare floor: its own 50 ms loop-lag timer, "
        "TTFT to the first read with an event, ITL as the gaps between reads (worst process).",
        "",
    ]
    if settings["against"]:
        out += [
            f"## This checkout against `{settings['against']}`",
            "",
            *([settings["against_note"], ""] if settings.get("against_note") else []),
            markdown_table(ratio_rows(doc)),
            "",
            "- Ratios are per repeat (the two ran one after the other on the same target, the "
            "order alternating between repeats), then the median (min…max).",
            "",
        ]
    if doc["skipped"]:
        out += [
            "## Skipped",
            "",
            *(f"- `{s['case']}`: {s['reason']}" for s in doc["skipped"]),
            "",
        ]
    if doc.get("profile"):
        out += profile_markdown(doc["profile"], med(doc, "open400", "clientswarm", "us_per_token"))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
