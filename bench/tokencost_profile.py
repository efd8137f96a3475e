"""Where a streamed token's CPU goes in a worker: py-spy and perf, classified by explicit rules.

``tokencost.py --profile`` runs ``open400`` (2 workers) once and, over the measured window,
samples one worker with ``py-spy record --native --format raw --full-filenames`` (Python and
native frames, on-CPU samples only) and the other with ``perf record -g`` (on-CPU, with kernel
stacks). Both workers carry the same load, so the two profiles describe the same work.

- **py-spy** samples are classified by :data:`PYSPY_RULES`: a sample whose stack holds a
  garbage-collector frame is ``garbage collector``; otherwise the stack is walked from the
  innermost frame outwards and the first frame that matches a rule decides. Frames no rule
  names (the interpreter's own C functions, ``malloc``, ``orjson``, ``clock_gettime``…) pass
  the sample on to their caller, so a ``clock_gettime`` called from ``Clock.now_ns`` counts as
  measurement and one called from libuv as event loop. A Python frame is named by the
  qualified name of the function around its line in the source py-spy names (``ast``), so a
  rule can say ``Measurement.*`` in ``interactions/streaming.py``. A native frame is named by
  its symbol and library. Time spent in the kernel shows as the libc system-call wrapper it
  entered (``recv``, ``writev``, ``epoll_wait``…).
- **perf** samples are classified by :func:`perf_category`: kernel samples by the system call
  they are under (``__x64_sys_*``), others by the library the sample's instruction is in
  (uvloop, httptools, the interpreter, libc…). Python 3.11 has no perf trampolines, so perf
  cannot split the interpreter's share by Python function: py-spy does that.

``python bench/tokencost_profile.py PYSPY_RAW [PERF_DATA]`` classifies saved files again
(``tokencost.py --keep-profile DIR`` keeps them).
py-spy is a bench-only tool, installed by hand (``.venv/bin/pip install py-spy``), not a
dependency of the project.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from report import log, markdown_table

PYSPY_RATE_HZ = 250
PERF_FREQ_HZ = 499

#: A sample with any of these native frames is the garbage collector's, wherever it ran.
GC_FRAMES = re.compile(r"^(gc_collect_main|gc_collect_with_callback|gc_collect_generations)$")
POSTING = "batching/posting (recorder, sinks, service API)"
#: A sample with a frame in these (Python files or native sources/libraries) is the posting's
#: wherever it ran: the worker talks to the service with aiohttp, whose parser is llhttp too.
POSTING_ANYWHERE = re.compile(r"/(aiohttp|yarl|multidict)/")

#: libc system-call wrappers: time in the kernel on behalf of the frame above.
SYSCALLS = [
    *("recv", "recvfrom", "recvmsg", "read", "readv", "write", "writev", "send", "sendto"),
    *("sendmsg", "epoll_wait", "epoll_pwait", "epoll_ctl", "close", "accept", "accept4"),
    *("connect", "socket", "getsockopt", "setsockopt", "getpeername", "getsockname"),
    *("shutdown", "ioctl", "fcntl", "futex", "syscall", "mmap", "munmap", "madvise", "brk"),
    "mprotect",
]
_SYSCALL = re.compile(r"^(?:__)?(?:GI_)?(?:_+)?(?:libc_)?(" + "|".join(SYSCALLS) + r")(?:64)?$")

#: ``(category, kind, where, what)``: a frame matches when its kind is ``py`` (a Python
#: frame: ``where`` is a regex on the file's path, ``what`` on the function's qualified name)
#: or ``native`` (``where`` on the library, ``what`` on the symbol). Checked in order; the
#: innermost frame that matches any rule decides the sample's category.
PYSPY_RULES: list[tuple[str, str, str, str]] = [
    ("event loop (uvloop, asyncio)", "native", r"uvloop|libuv|_asyncio", r""),
    ("event loop (uvloop, asyncio)", "native", r"", r"^uv_|^uv__"),
    ("event loop (uvloop, asyncio)", "py", r"/asyncio/|/uvloop/", r""),
    ("HTTP (httptools/llhttp, http1.py)", "native", r"httptools|llhttp", r""),
    ("HTTP (httptools/llhttp, http1.py)", "py", r"clientswarm/interactions/http1\.py$", r""),
    ("deadlines (deadlines.py)", "py", r"clientswarm/interactions/deadlines\.py$", r""),
    (
        "measurement (Measurement, samples, clock)",
        "py",
        r"clientswarm/interactions/streaming\.py$",
        r"^(Measurement\b|split_itl$)",
    ),
    ("measurement (Measurement, samples, clock)", "py", r"clientswarm/metrics/sample\.py$", r""),
    ("measurement (Measurement, samples, clock)", "py", r"clientswarm/clock\.py$", r""),
    (
        "measurement (Measurement, samples, clock)",
        "py",
        r"clientswarm/interactions/(llm|http)\.py$",
        r"(^|\.)_sample$",
    ),
    (
        "measurement (Measurement, samples, clock)",
        "py",
        r"clientswarm/worker/runtime\.py$",
        r"^WorkerRuntime\._context\.emit$",
    ),
    (
        "SSE decoding (sse.py, streaming.py)",
        "py",
        r"clientswarm/interactions/(sse|streaming)\.py$",
        r"",
    ),
    (
        POSTING,
        "py",
        r"clientswarm/worker/(recorder|posting|service_client|internal_api|file_sink)\.py$",
        r"",
    ),
    (POSTING, "py", r"clientswarm/metrics/(wire|ticks)\.py$", r""),
    (
        "client loop (interaction, schedule, runtime)",
        "py",
        r"clientswarm/(interactions|load|worker)/",
        r"",
    ),
    ("other clientswarm", "py", r"clientswarm/", r""),
]
#: Samples whose innermost frames are a libc system-call wrapper: py-spy cannot tell a thread
#: blocked there (waiting for epoll, a worker thread's idle read) from one running in the
#: kernel, so these are left out of the split and perf gives the kernel's share.
IN_SYSCALL = "in a system call (kernel or waiting: perf has the kernel's share)"
CATEGORIES = [
    IN_SYSCALL,
    "event loop (uvloop, asyncio)",
    "HTTP (httptools/llhttp, http1.py)",
    "SSE decoding (sse.py, streaming.py)",
    "measurement (Measurement, samples, clock)",
    "deadlines (deadlines.py)",
    "batching/posting (recorder, sinks, service API)",
    "client loop (interaction, schedule, runtime)",
    "garbage collector",
    "other clientswarm",
    "other (no rule matched)",
]
_COMPILED = [(c, k, re.compile(w), re.compile(x)) for c, k, w, x in PYSPY_RULES]
_FRAME = re.compile(r"^(?P<name>.*) \((?P<where>[^()]*?)(?::(?P<line>\d+))?\)$")


@functools.cache
def _functions(path: str) -> list[tuple[int, int, str]]:
    """``(first line, last line, qualified name)`` of every function in ``path``."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")

    visit(tree, "")
    return found


def qualname(path: str, line: int, fallback: str) -> str:
    """The qualified name of the innermost function around ``line`` of ``path``."""
    best = None
    for first, last, name in _functions(path):
        if first <= line <= last and (best is None or first >= best[0]):
            best = (first, name)
    return best[1] if best else fallback


def parse_frame(frame: str) -> tuple[str, str, str]:
    """``(kind, where, what)`` of one py-spy frame: ``py`` (file, qualified name) or
    ``native`` (library, symbol)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return "native", "", frame
    name, where, line = match["name"], match["where"], match["line"]
    if line is not None and where.endswith(".py"):
        return "py", where, qualname(where, int(line), name)
    return "native", where, name


def classify_stack(frames: list[str]) -> tuple[str, str]:
    """The category of one py-spy stack (root first) and the frame that decided it."""
    parsed = [parse_frame(f) for f in frames]
    for kind, where, what in reversed(parsed):  # the innermost native libc frames
        lib = where.rsplit("/", 1)[-1]
        if kind != "native" or not (lib.startswith("libc") or what.startswith("0x")):
            break
        if _SYSCALL.match(what):
            return IN_SYSCALL, f"{what} ({lib})"
    for kind, _, what in parsed:
        if kind == "native" and GC_FRAMES.match(what):
            return "garbage collector", what
    for _, where, what in parsed:
        if POSTING_ANYWHERE.search(where):
            return POSTING, f"{what} ({where.rsplit('/', 1)[-1]})"
    for kind, where, what in reversed(parsed):
        for category, rule_kind, where_re, what_re in _COMPILED:
            if rule_kind == kind and where_re.search(where) and what_re.search(what):
                short = where.rsplit("/", 1)[-1]
                return category, f"{what} ({short})"
    return "other (no rule matched)", parsed[-1][2] if parsed else "?"


def classify_pyspy(raw: str) -> dict[str, Any]:
    """Samples per category, and per deciding frame, of a ``py-spy --format raw`` file."""
    categories: Counter[str] = Counter()
    deciders: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        category, frame = classify_stack(stack.split(";"))
        categories[category] += n
        deciders[(category, frame)] += n
        total += n
    return {
        "samples": total,
        "categories": {c: categories.get(c, 0) for c in CATEGORIES},
        "top_frames": [
            {"category": c, "frame": f, "samples": n} for (c, f), n in deciders.most_common(25)
        ],
    }


# -- perf -----------------------------------------------------------------------------------------

#: System calls by what they do for a stream (the libc wrapper's name).
PERF_SYSCALL_GROUPS = {
    "recv": {"read", "readv", "recv", "recvfrom", "recvmsg"},
    "send": {"write", "writev", "send", "sendto", "sendmsg"},
    "epoll_wait": {"epoll_wait", "epoll_pwait"},
    "epoll_ctl": {"epoll_ctl"},
}
#: Kernel functions that name the system call when no libc wrapper frame is there.
_KERNEL_SYSCALL = [
    ("recv", re.compile(r"ksys_read|sock_recvmsg|tcp_recvmsg|__sys_recvfrom")),
    ("send", re.compile(r"ksys_write|sock_sendmsg|tcp_sendmsg|__sys_sendto|do_writev")),
    ("epoll_wait", re.compile(r"do_epoll_wait|ep_poll")),
    ("epoll_ctl", re.compile(r"do_epoll_ctl")),
]


def _is_kernel(dso: str) -> bool:
    return "kernel" in dso or (dso.startswith("[") and "vdso" not in dso)


def perf_category(frames: list[tuple[str, str]]) -> str:
    """The category of one perf sample, frames ``(symbol, dso)`` innermost first.

    A kernel sample under ``do_syscall_64`` is named by its system call: the libc wrapper
    that entered it (the first user frame), else the kernel functions (this kernel inlines
    the ``__x64_sys_*`` entry points); one without is an interrupt, fault or scheduling.
    A user sample is named by the library of its instruction.
    """
    if not frames:
        return "unknown"
    sym, dso = frames[0]
    if _is_kernel(dso):
        kernel = [s for s, d in frames if _is_kernel(d)]
        if not any("do_syscall_64" in s or "entry_SYSCALL" in s for s in kernel):
            return "kernel: no system call (interrupts, faults, scheduling)"
        user = next((s for s, d in frames if not _is_kernel(d)), "")
        match = _SYSCALL.match(user)
        if match:
            for group, names in PERF_SYSCALL_GROUPS.items():
                if match[1] in names:
                    return f"kernel: {group}"
            return f"kernel: other system calls ({match[1]})"
        for group, pattern in _KERNEL_SYSCALL:
            if any(pattern.search(s) for s in kernel):
                return f"kernel: {group}"
        return "kernel: other system calls"
    lib = dso.rsplit("/", 1)[-1]
    if "uvloop" in dso:
        return "uvloop (libuv + its Cython)"
    if "httptools" in dso:
        return "httptools (llhttp + its Cython)"
    if lib.startswith("_asyncio"):
        return "_asyncio (C tasks, futures)"
    if lib.startswith("libpython") or lib.startswith("python"):
        return "libpython (the interpreter: all Python code)"
    if lib.startswith("libc.") or lib.startswith("ld-linux"):
        return "libc (malloc, memcpy…)"
    if "vdso" in dso:
        return "vdso (clock_gettime)"
    return f"other: {lib.split('.cpython')[0] or sym}"


def classify_perf(script_text: str) -> dict[str, Any]:
    """Samples per category of ``perf script -F comm,ip,sym,dso`` output (with callchains)."""
    categories: Counter[str] = Counter()
    frames: list[tuple[str, str]] = []
    total = 0

    def flush() -> None:
        nonlocal total
        if frames:
            categories[perf_category(frames)] += 1
            total += 1
        frames.clear()

    for line in script_text.splitlines():
        if not line.strip():
            flush()
            continue
        if not line.startswith(("\t", " ")):
            flush()  # a sample's header line
            continue
        parts = line.strip().split(" ", 1)
        rest = parts[1] if len(parts) > 1 else ""
        sym, _, dso = rest.rpartition(" (")
        frames.append((sym.split("+0x")[0], dso.rstrip(")")))
    flush()
    return {"samples": total, "categories": dict(categories.most_common())}


# -- running them ---------------------------------------------------------------------------------


def pyspy_exe() -> str | None:
    """py-spy beside this interpreter, or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profile_during(tmp: Path, seconds: float) -> Callable[[list[int], float], dict[str, Any]]:
    """What ``tokencost.run_once`` calls at the window's start: py-spy on the first load
    process, perf on the second (or the first when alone), for ``seconds``."""

    def during(load: list[int], span_s: float) -> dict[str, Any]:
        secs = max(1, int(min(seconds, span_s - 0.5)))
        out: dict[str, Any] = {"seconds": secs, "pids": load}
        procs = []
        spy = pyspy_exe()
        if spy is not None:
            out["pyspy_raw"] = str(tmp / "pyspy.txt")
            argv = [spy, "record", "--native", "--format", "raw", "--full-filenames"]
            argv += ["--rate", str(PYSPY_RATE_HZ), "--duration", str(secs)]
            argv += ["--pid", str(load[0]), "--output", out["pyspy_raw"]]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        else:
            out["pyspy_error"] = "py-spy not found (.venv/bin/pip install py-spy)"
        perf = shutil.which("perf")
        if perf is not None:
            out["perf_data"] = str(tmp / "perf.data")
            argv = [perf, "record", "-F", str(PERF_FREQ_HZ), "-g", "-p", str(load[-1])]
            argv += ["-o", out["perf_data"], "--", "sleep", str(secs)]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        else:
            out["perf_error"] = "perf not found"
        for proc in procs:
            _, err = proc.communicate(timeout=secs + 60)
            if proc.returncode:
                out.setdefault("errors", []).append(err.decode(errors="replace")[-500:])
        return out

    return during


def perf_script(data: str) -> str:
    """``perf script`` of a recording, with callchains."""
    done = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,ip,sym,dso"],
        capture_output=True,
        text=True,
        errors="replace",
    )
    return done.stdout


def combine(pyspy: dict[str, Any] | None, perf: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One share table: the kernel's part from perf (by system call), the rest split as
    py-spy's samples outside system calls are."""
    rows: list[dict[str, Any]] = []
    kernel_share = 0.0
    if perf and perf["samples"]:
        for category, n in perf["categories"].items():
            if category.startswith("kernel"):
                share = n / perf["samples"]
                kernel_share += share
                rows.append({"category": category, "source": "perf", "share": share})
    if pyspy and pyspy["samples"]:
        user = pyspy["samples"] - pyspy["categories"].get(IN_SYSCALL, 0)
        for category, n in pyspy["categories"].items():
            if category == IN_SYSCALL or not user:
                continue
            share = (1 - kernel_share) * n / user
            rows.append({"category": category, "source": "py-spy", "share": share})
    return rows


def summarise_profile(recorded: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    """Both classifications and their combination, with the profiled run's CPU per token."""
    out: dict[str, Any] = {
        "run": {
            k: run.get(k)
            for k in (
                "us_per_token",
                "tok_s",
                "worker_cores",
                "worker_user_s",
                "worker_sys_s",
                "completed",
            )
        },
        "recorded": recorded,
    }
    if not recorded:
        return out
    raw = recorded.get("pyspy_raw")
    if raw and Path(raw).exists():
        out["pyspy"] = classify_pyspy(Path(raw).read_text(errors="replace"))
    data = recorded.get("perf_data")
    if data and Path(data).exists():
        text = perf_script(data)
        recorded["perf_script"] = str(Path(data).with_suffix(".txt"))
        Path(recorded["perf_script"]).write_text(text)
        out["perf"] = classify_perf(text)
    out["combined"] = combine(out.get("pyspy"), out.get("perf"))
    log(
        f"profile: {out.get('pyspy', {}).get('samples', 0)} py-spy samples, "
        f"{out.get('perf', {}).get('samples', 0)} perf samples"
    )
    return out


def rules_lines() -> list[str]:
    """The py-spy rules as Markdown bullets."""
    lines = [
        "- py-spy: a stack whose innermost libc frames include a system-call wrapper "
        f"(`{_SYSCALL.pattern}`) → `{IN_SYSCALL}`; else a stack holding a native frame "
        f"matching `{GC_FRAMES.pattern}` → `garbage collector`; else a stack holding a frame "
        f"whose file matches `{POSTING_ANYWHERE.pattern}` → `{POSTING}`; otherwise the "
        "innermost frame matching:"
    ]
    for category, kind, where, what in PYSPY_RULES:
        lines.append(
            f"  - {kind} frame, {'file' if kind == 'py' else 'source or library'} "
            f"`{where or '*'}`, "
            f"{'function' if kind == 'py' else 'symbol'} `{what or '*'}` → `{category}`"
        )
    lines.append("  - none → `other (no rule matched)`")
    return lines


def _share_section(
    title: str, tool: str, found: dict[str, Any], per_token: float | None
) -> list[str]:
    """One tool's samples by category, under ``title``."""
    rows = _share_rows(f"category ({tool})", found["categories"], found["samples"], per_token)
    return [title, "", markdown_table(rows), ""]


def _share_rows(
    head: str, counts: dict[str, int], total: int, per_token: float | None
) -> list[list[str]]:
    rows = [[head, "samples", "share %", "µs/token"]]
    for category, n in counts.items():
        share = n / total
        us = "-" if per_token is None else f"{share * per_token:.1f}"
        rows.append([category, f"{n:,}", f"{100 * share:.1f}", us])
    return rows


def profile_markdown(profile: dict[str, Any], us_per_token: float | None = None) -> list[str]:
    """The profile section of RESULTS-tokencost.md."""
    run = profile.get("run", {})
    recorded = profile.get("recorded") or {}
    per_token = us_per_token or run.get("us_per_token")
    us = "-" if per_token is None else f"{per_token:.1f} µs"
    out = [
        "## Where a token's CPU goes (open400)",
        "",
        f"One more `open400` run of this checkout; over {recorded.get('seconds', '?')} s of its "
        f"measured window `py-spy record --native --format raw --rate {PYSPY_RATE_HZ}` sampled "
        f"worker 0 and `perf record -g -F {PERF_FREQ_HZ}` worker 1 (the same load). This "
        "run's worker CPU per token: "
        + ("-" if run.get("us_per_token") is None else f"{run['us_per_token']:.1f} µs")
        + f" (py-spy stops the worker it samples at every sample); the µs/token columns are "
        f"shares of {us}, the `open400` median of the runs above (or this run's).",
        "",
    ]
    user, system = run.get("worker_user_s"), run.get("worker_sys_s")
    if user is not None and system is not None and user + system > 0:
        kernel = sum(r["share"] for r in profile.get("combined") or [] if r["source"] == "perf")
        out += [
            f"Kernel share of both workers' CPU over the window by `/proc` (stime): "
            f"{100 * system / (user + system):.0f} %; by perf (worker 1): {100 * kernel:.0f} %.",
            "",
        ]
    combined = profile.get("combined") or []
    if combined:
        rows = [["where (share of the worker's CPU)", "from", "share %", "µs/token"]]
        for row in combined:
            cost = "-" if per_token is None else f"{row['share'] * per_token:.1f}"
            rows.append([row["category"], row["source"], f"{100 * row['share']:.1f}", cost])
        out += [
            markdown_table(rows),
            "",
            "- The kernel's rows are perf's share of on-CPU samples in the kernel, by system "
            "call; the others split the rest (user space) as py-spy's samples outside system "
            "calls split (py-spy cannot tell time running in a system call from time blocked "
            "in one, e.g. in `epoll_wait`).",
            "",
        ]
    spy = profile.get("pyspy")
    if spy and spy["samples"]:
        out += _share_section(
            "py-spy alone (worker 0, every thread, every sample it took):", "py-spy", spy, None
        )
        top = [["frame that decided (innermost matching)", "category", "samples", "share %"]]
        for entry in spy["top_frames"][:20]:
            top.append(
                [
                    f"`{entry['frame']}`",
                    entry["category"],
                    f"{entry['samples']:,}",
                    f"{100 * entry['samples'] / spy['samples']:.1f}",
                ]
            )
        out += ["Top deciding frames (py-spy):", "", markdown_table(top), ""]
    else:
        out += [f"- py-spy: no samples ({recorded.get('errors') or recorded})", ""]
    perf = profile.get("perf")
    if perf and perf["samples"]:
        out += _share_section("perf alone (worker 1, on-CPU samples):", "perf", perf, per_token)
    else:
        out += [f"- perf: no samples ({recorded.get('errors') or recorded})", ""]
    out += [
        "How frames were classified (`bench/tokencost_profile.py`; a Python frame is named by "
        "the qualified name of the function around its line):",
        "",
        *rules_lines(),
        "- perf (`perf_category`): a kernel sample under `do_syscall_64` by its system call "
        "(the libc wrapper that entered it: recv = read/readv/recv/recvfrom/recvmsg, send = "
        "write/writev/send/sendto/sendmsg, epoll_wait = epoll_wait/epoll_pwait, epoll_ctl, "
        "other), one without by `no system call` (interrupts, faults, scheduling); a user "
        "sample by the library of its instruction.",
        "",
    ]
    return out


def main() -> None:
    """Classify saved files: ``PYSPY_RAW [PERF_DATA]``; prints the tables."""
    raw = Path(sys.argv[1])
    profile: dict[str, Any] = {"run": {}, "pyspy": classify_pyspy(raw.read_text())}
    if len(sys.argv) > 2:
        profile["perf"] = classify_perf(perf_script(sys.argv[2]))
    profile["combined"] = combine(profile["pyspy"], profile.get("perf"))
    print("\n".join(profile_markdown(profile)))


if __name__ == "__main__":
    main()
