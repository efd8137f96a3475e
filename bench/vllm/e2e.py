"""clientswarm against a real vLLM (CPU build): each run's summary checked against vLLM's counters.

Needs ``setup.sh`` (the vLLM venv) and ``make_model.py`` (the tiny model) first; ``run.sh`` does
all three. Run with the project's venv (stdlib only)::

    .venv/bin/python bench/vllm/e2e.py [--cases stream,trace,embed,…] [--port 8321]

For every case (a configuration in ``configs/``): scrape vLLM's ``/metrics``, run ``clientswarm
run`` pinned to core 0 (vLLM is pinned to core 1 by ``serve.sh``), scrape again, and compare the
run's ``summary.json`` with the difference of the two scrapes:

- exact: requests (``vllm:request_success``, all finish reasons), ``vllm:prompt_tokens`` and
  ``vllm:generation_tokens`` against the summary's requests, input and output tokens; no
  failed, warm-up or cut-off request on the client side;
- reported, not judged: mean TTFT and E2E against the means of vLLM's
  ``time_to_first_token_seconds`` and ``e2e_request_latency_seconds`` histograms (their
  ``_sum`` over ``_count``), and the gap between them. vLLM starts its clock when the request
  reaches the engine, so the client's numbers hold the HTTP handling, tokenisation and
  detokenisation on top; on a 2-core machine they also hold the two processes' scheduling.

Then a probe of the raw streams (``probe``): 20 chats and 20 completions read chunk by chunk
with ``return_token_ids``, counting the chunks whose text is empty although they carry a token
(a token that ends inside a UTF-8 character, which vLLM's detokenizer holds back), and how much
later the first chunk with text comes than the first token. That is what clientswarm's TTFT
and ITL see (see README.md).

Before the server starts it waits until no ``pytest`` runs on the machine (polled every 30 s,
at most 15 minutes), and it stops every server it started. Writes ``results-vllm.json``
beside this file and the runs under ``out/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "out"
VENV = Path(os.environ.get("VLLM_VENV", HERE / ".venv-vllm"))
CLIENTSWARM = ROOT / ".venv" / "bin" / "clientswarm"
CONFIG_PORT = 8321  # the port written in configs/*.yaml
MODEL_NAME = "tiny-llama"
CLIENT_CORE = "0"

TOOL_ARGS = ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
EMBED_ARGS = ["--runner", "pooling", "--convert", "embed"]
GENERATE_CASES = ("stream", "nonstream", "tools", "sweep", "trace")
ALL_CASES = (*GENERATE_CASES, "embed")

COUNTERS = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
}
HISTOGRAMS = {
    "ttft_s": "vllm:time_to_first_token_seconds",
    "e2e_s": "vllm:e2e_request_latency_seconds",
    "tpot_s": "vllm:request_time_per_output_token_seconds",
    "itl_s": "vllm:inter_token_latency_seconds",
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)")


# ---------------------------------------------------------------- the machine is shared


def wait_until_no_pytest(poll_s: float = 30, limit_s: float = 900) -> None:
    """Wait while another test run uses the 2 cores: at most ``limit_s``, then go ahead."""
    waited = 0.0
    while subprocess.run(["pgrep", "-f", "bin/pytest"], capture_output=True).returncode == 0:
        if waited >= limit_s:
            print(f"e2e: pytest still runs after {waited:.0f} s; going ahead", flush=True)
            return
        if waited == 0:
            print("e2e: pytest runs on this machine; waiting for it to end", flush=True)
        time.sleep(poll_s)
        waited += poll_s


# ---------------------------------------------------------------- the vLLM server


def free_port(port: int) -> bool:
    """Whether nothing listens on ``port`` of the loopback."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def vllm_server(port: int, extra: list[str], log: Path) -> Iterator[str]:
    """``serve.sh`` on ``port`` (its own process group), ready; stopped on the way out."""
    if not free_port(port):
        raise SystemExit(f"e2e: port {port} is in use; pass another with --port")
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(HERE / "serve.sh"), str(HERE / "model"), str(port), *extra]
    print(f"e2e: starting vLLM: {' '.join(cmd)} (log {log.relative_to(ROOT)})", flush=True)
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").splitlines()[-15:]
                raise SystemExit("e2e: vLLM exited while starting:\n" + "\n".join(tail))
            if time.monotonic() - started > 600:
                raise SystemExit(f"e2e: vLLM did not answer within 600 s (see {log})")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + "/v1/models", timeout=2).read()
                break
            time.sleep(2)
        print(f"e2e: vLLM ready after {time.monotonic() - started:.0f} s", flush=True)
        yield url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group, SIGKILL after 30 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"e2e: vLLM stopped (exit {proc.returncode})", flush=True)


def scrape(url: str) -> dict[str, float]:
    """vLLM's ``/metrics``, each sample summed over its label sets."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            name, value = match.groups()
            values[name] = values.get(name, 0.0) + float(value)
    return values


def engine_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What vLLM counted between two scrapes: counters, and each histogram's count and mean."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    out: dict[str, Any] = {key: round(delta(name)) for key, name in COUNTERS.items()}
    for key, name in HISTOGRAMS.items():
        count = delta(name + "_count")
        out[key] = {"count": round(count), "mean": delta(name + "_sum") / count if count else None}
    return out


def post(url: str, path: str, body: dict[str, Any]) -> Any:
    """POST a JSON body, the JSON answer."""
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=60).read())


def warm_up(url: str, embed: bool) -> None:
    """A few requests before any measured run: the first ones are slower."""
    for _ in range(3):
        if embed:
            post(url, "/v1/embeddings", {"model": MODEL_NAME, "input": ["warm up"]})
        else:
            messages = [{"role": "user", "content": "warm up"}]
            post(url, "/v1/chat/completions", {"model": MODEL_NAME, "messages": messages})
            post(url, "/v1/completions", {"model": MODEL_NAME, "prompt": "warm up"})


# ---------------------------------------------------------------- one case


def run_case(case: str, url: str, port: int) -> dict[str, Any]:
    """Run ``configs/<case>.yaml`` with clientswarm on core 0; its numbers beside vLLM's."""
    config = HERE / "configs" / f"{case}.yaml"
    if port != CONFIG_PORT:  # a copy beside the original, so its relative paths still hold
        text = config.read_text().replace(f":{CONFIG_PORT}", f":{port}")
        config = HERE / "configs" / f".{case}-{port}.yaml"
        config.write_text(text)
    out = OUT / case
    cmd = ["taskset", "-c", CLIENT_CORE, str(CLIENTSWARM), "run", str(config)]
    cmd += ["-o", str(out), "--overwrite"]
    print(f"e2e: {case}: {' '.join(cmd[3:])}", flush=True)
    before = scrape(url)
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall_s = time.monotonic() - started
    time.sleep(1)  # let the API server log the last requests' stats
    after = scrape(url)
    if config.name.startswith("."):
        config.unlink()
    (OUT / f"{case}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).splitlines()[-10:]
        return {"case": case, "error": f"clientswarm exited {done.returncode}", "tail": tail}
    summary = json.loads((out / "summary.json").read_text())
    config_run = json.loads((out / "config.json").read_text())
    inputs = {g["interaction"].get("batch_size", 1) for g in config_run["groups"]}
    result = compare(case, summary, engine_delta(before, after), wall_s, max(inputs))
    if case == "trace":
        result.update(trace_checks(HERE / "configs" / "trace.jsonl", summary, result["engine"]))
        result["ok"] = result["ok"] and all(result["trace_checks"].values())
    return result


def trace_checks(path: Path, summary: dict[str, Any], engine: dict[str, Any]) -> dict[str, Any]:
    """A replayed trace against what vLLM counted: every request, exactly the trace's output
    lengths, its prompt lengths (plus the BOS token vLLM adds to each), and prefix-cache hits
    where the trace's hash_ids repeat.

    ``expected_shared_tokens``: for each request, the tokens of its longest run of leading
    hash_ids that an earlier request also began with (the prefix it shares; vLLM caches whole
    blocks of its own size, so it can hit a little less).
    """
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    block = 64
    seen: set[tuple[int, ...]] = set()
    shared = 0
    for row in rows:
        ids = tuple(row["hash_ids"])
        k = max((n for n in range(len(ids) + 1) if ids[:n] in seen), default=0)
        shared += min(k * block, row["input_length"])
        seen.update(ids[:n] for n in range(1, len(ids) + 1))
    prompt = sum(r["input_length"] for r in rows)
    extra = engine["prompt_tokens"] - prompt
    lag = summary["total"].get("schedule_lag_s") or {}
    return {
        "trace_requests": len(rows),
        "trace_prompt_tokens": prompt,
        "trace_output_tokens": sum(r["output_length"] for r in rows),
        "expected_shared_tokens": shared,
        "schedule_lag_ms": {q: _ms(lag.get(q)) for q in ("p50", "p99", "max")},
        "trace_checks": {
            "every_request": engine["requests"] == len(rows),
            "output_lengths": engine["generation_tokens"] == sum(r["output_length"] for r in rows),
            "prompt_lengths": extra in (0, len(rows)),  # vLLM may add one BOS per request
            "prefix_cache_hits": 0 < engine["prefix_cache_hits"] <= shared + len(rows),  # + BOS
        },
    }


def compare(
    case: str, summary: dict[str, Any], engine: dict[str, Any], wall_s: float, inputs: int = 1
) -> dict[str, Any]:
    """The client's totals beside the engine's, and which of them must be equal.

    vLLM counts each input of an embeddings request as one request: ``inputs`` per request.
    The summary's own ``server`` block (clientswarm scrapes the target's ``/metrics`` while it
    runs) is kept beside, with its counts.
    """
    total = summary["total"]
    client = {
        "requests": total["requests"],
        "succeeded": total["succeeded"],
        "failed": total["failed"],
        "input_tokens": total["input_tokens"],
        "output_tokens": total["output_tokens"],
        "token_sources": total.get("token_sources"),
        "warmup_excluded": total.get("warmup_excluded", 0),
        "cancelled_excluded": total.get("cancelled_excluded", 0),
        "ttft_s": _count_mean(total.get("ttft_s")),
        "e2e_s": _count_mean(total.get("e2e_s")),
        "tpot_s": _count_mean(total.get("tpot_s")),
        "itl_s": _count_mean(total.get("itl_s")),
        "duration_s": total.get("duration_s"),
        "trustworthy": summary.get("trustworthy"),
    }
    checks = {
        "requests": client["requests"] * inputs == engine["requests"],
        "prompt_tokens": client["input_tokens"] == engine["prompt_tokens"],
        "generation_tokens": client["output_tokens"] == engine["generation_tokens"],
        "no_failed_or_excluded": client["failed"] == 0
        and client["warmup_excluded"] == 0
        and client["cancelled_excluded"] == 0,
    }
    gaps_ms = {}
    for key in HISTOGRAMS:
        mine, theirs = client[key]["mean"], engine[key]["mean"]
        if mine is not None and theirs is not None:
            gaps_ms[key] = round((mine - theirs) * 1e3, 2)
    stages = [
        {
            "set_point": st.get("set_point"),
            "requests": st.get("requests"),
            "ttft_ms_mean": _ms((st.get("ttft_s") or {}).get("mean")),
        }
        for st in next(iter(summary["groups"].values())).get("stages") or []
    ]
    result = {
        "case": case,
        "ok": all(checks.values()),
        "checks": checks,
        "client": client,
        "engine": engine,
        "mean_gap_ms": gaps_ms,
        "wall_s": round(wall_s, 1),
    }
    if inputs != 1:
        result["engine_requests_per_request"] = inputs
    if stages:
        result["stages"] = stages
    server = (summary.get("server") or {}).get("default")
    if server:
        result["server_block"] = {
            key: server.get(key) for key in ("requests", "prompt_tokens", "generation_tokens")
        }
    return result


def _count_mean(stats: dict[str, Any] | None) -> dict[str, Any]:
    if not stats or not stats.get("count"):
        return {"count": 0, "mean": None}
    return {"count": stats["count"], "mean": stats["mean"]}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1e3, 2)


# ---------------------------------------------------------------- the raw streams


def probe(port: int, requests: int = 20) -> dict[str, Any]:
    """Read ``requests`` streamed chats and completions chunk by chunk: how many tokens came
    with empty text, and how much later than the first token the first text came."""
    out: dict[str, Any] = {}
    for kind in ("chat", "completion"):
        totals = {
            "requests": requests,
            "tokens": 0,
            "usage_tokens": 0,
            "token_chunks": 0,
            "empty_token_chunks": 0,
            "first_token_empty": 0,
            "last_token_empty": 0,
            "multi_token_chunks": 0,
            "ttft_shift_ms_sum": 0.0,
        }
        for i in range(requests):
            chunks, usage = _stream(port, kind, f"probe {i}: tell me about the server {i}")
            tokens = [c for c in chunks if c["tokens"]]
            totals["tokens"] += sum(c["tokens"] for c in tokens)
            totals["usage_tokens"] += usage
            totals["token_chunks"] += len(tokens)
            totals["multi_token_chunks"] += sum(c["tokens"] > 1 for c in tokens)
            empty = [c for c in tokens if not c["text"]]
            totals["empty_token_chunks"] += len(empty)
            totals["first_token_empty"] += bool(tokens and not tokens[0]["text"])
            totals["last_token_empty"] += bool(tokens and not tokens[-1]["text"])
            with_text = [c for c in chunks if c["text"]]
            if tokens and with_text:
                totals["ttft_shift_ms_sum"] += (with_text[0]["t"] - tokens[0]["t"]) * 1e3
        totals["ttft_shift_ms_mean"] = round(totals.pop("ttft_shift_ms_sum") / requests, 3)
        out[kind] = totals
    return out


def _stream(port: int, kind: str, prompt: str) -> tuple[list[dict[str, Any]], int]:
    """One streamed request read line by line: each chunk's time, text and token count."""
    body: dict[str, Any] = {
        "model": MODEL_NAME,
        "max_tokens": 30,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "return_token_ids": True,
    }
    if kind == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
        path = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        path = "/v1/completions"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    chunks: list[dict[str, Any]] = []
    usage = 0
    for raw in response:
        line = raw.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        now = time.perf_counter()
        data = json.loads(line[6:])
        if data.get("usage"):
            usage = data["usage"]["completion_tokens"]
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") if kind == "chat" else choice.get("text")
            ids = choice.get("token_ids") or []
            chunks.append({"t": now, "text": text or "", "tokens": len(ids)})
    conn.close()
    return chunks, usage


# ---------------------------------------------------------------- the whole run


def versions() -> dict[str, str]:
    """vLLM's, torch's and clientswarm's versions, and the machine's."""
    py = str(VENV / "bin" / "python")
    code = "import vllm, torch, transformers; print(vllm.__version__, torch.__version__, "
    code += "transformers.__version__)"
    got = subprocess.run([py, "-W", "ignore", "-c", code], capture_output=True, text=True)
    vllm_v, torch_v, tf_v = got.stdout.split()
    cs = subprocess.run([str(CLIENTSWARM), "--version"], capture_output=True, text=True)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "vllm": vllm_v,
        "torch": torch_v,
        "transformers": tf_v,
        "clientswarm": cs.stdout.strip().split()[-1],
        "python": platform.python_version(),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
    }


def main() -> int:
    """Run the cases, print one line each, write ``results-vllm.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(ALL_CASES), help="comma-separated")
    parser.add_argument("--port", type=int, default=CONFIG_PORT)
    parser.add_argument("--results", type=Path, default=HERE / "results-vllm.json")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(ALL_CASES))
    if unknown:
        raise SystemExit(f"e2e: unknown case(s) {unknown}; choose from {list(ALL_CASES)}")
    for needed, how in (
        (VENV / "bin" / "python", "bash bench/vllm/setup.sh"),
        (
            HERE / "model" / "config.json",
            "bench/vllm/.venv-vllm/bin/python bench/vllm/make_model.py",
        ),
        (CLIENTSWARM, "make test (the .venv)"),
    ):
        if not needed.exists():
            raise SystemExit(f"e2e: {needed} is missing; run {how} first")
    OUT.mkdir(exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    report: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": platform.node(),
        "versions": versions(),
        "command": " ".join(["bench/vllm/e2e.py", *sys.argv[1:]]),
        "cases": [],
    }
    generate = [c for c in cases if c in GENERATE_CASES]
    if generate:
        wait_until_no_pytest()
        with vllm_server(args.port, TOOL_ARGS, OUT / "vllm-generate.log") as url:
            warm_up(url, embed=False)
            for case in generate:
                report["cases"].append(_show(run_case(case, url, args.port)))
            report["probe"] = probe(args.port)
            print(f"e2e: probe: {json.dumps(report['probe'])}", flush=True)
    if "embed" in cases:
        wait_until_no_pytest()
        with vllm_server(args.port, EMBED_ARGS, OUT / "vllm-embed.log") as url:
            warm_up(url, embed=True)
            report["cases"].append(_show(run_case("embed", url, args.port)))
    args.results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"e2e: wrote {args.results}", flush=True)
    return 0 if all(c.get("ok") for c in report["cases"]) else 1


def _show(result: dict[str, Any]) -> dict[str, Any]:
    """Print one line for a case; return it."""
    if "error" in result:
        print(f"e2e: {result['case']}: FAILED: {result['error']}: {result['tail']}", flush=True)
        return result
    c, e = result["client"], result["engine"]
    verdict = "ok" if result["ok"] else "MISMATCH " + str(result["checks"])
    inputs = result.get("engine_requests_per_request")
    per = f" (x{inputs} inputs)" if inputs else ""
    print(
        f"e2e: {result['case']}: {verdict}: requests {c['requests']}{per}/{e['requests']}, "
        f"prompt tokens {c['input_tokens']}/{e['prompt_tokens']}, generation tokens "
        f"{c['output_tokens']}/{e['generation_tokens']} (client/vLLM); mean TTFT "
        f"{_ms(c['ttft_s']['mean'])}/{_ms(e['ttft_s']['mean'])} ms, E2E "
        f"{_ms(c['e2e_s']['mean'])}/{_ms(e['e2e_s']['mean'])} ms",
        flush=True,
    )
    return result


if __name__ == "__main__":
    sys.exit(main())
