"""Which HTTP layer for the hot path: the same bare loop on aiohttp, httpx and a raw protocol.

Issue 7 asks, where the library stands in the way, to "measure the alternatives (aiohttp, httpx, a
raw asyncio protocol) and choose by the numbers". Each layer runs the loop of ``bare_loop.py``:
``--procs`` processes x ``--streams`` concurrent streams (uvloop), POSTing a small streamed chat
request to the nginx target again and again, recording one ``perf_counter_ns()`` per received
block holding a token and nothing else. The layers:

- ``aiohttp``: ``ClientSession.post`` + ``iter_any()`` (what clientswarm's workers use today);
- ``httpx``: ``AsyncClient.stream`` + ``aiter_raw()`` (HTTP/1.1, a pool sized to the streams);
- ``raw``: an ``asyncio.Protocol`` per keep-alive connection, the request written as one
  pre-built byte string, the response parsed by ``httptools`` (llhttp, the parser uvicorn uses),
  a timestamp taken in ``data_received`` itself.

The nginx target, the counts from its access log and the CPU accounting (``/proc`` of the
children) are those of ``fullpath.py``. Writes ``RESULTS-http-layers.md`` and
``results-http-layers.json`` (``--quick``: 1 repeat, 4 s, ``*-quick.*``). Median of 3 repeats.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'   # httpx and httptools
    .venv/bin/python bench/http_layers.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from array import array
from importlib import metadata
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nginx_target import NginxTarget, nginx_target
from report import (
    aggregate,
    format_cell,
    log,
    machine_info,
    machine_lines,
    markdown_table,
    write_outcome,
)

HERE = Path(__file__).resolve().parent
LAYERS = ("aiohttp", "httpx", "raw")
PATH = "/v1/chat/completions"
BODY = json.dumps(
    {
        "model": "mock-model",
        "stream": True,
        "max_tokens": 128,
        "messages": [{"role": "user", "content": "Hi"}],
    },
    separators=(",", ":"),
).encode()
TOKEN = b'"content"'


# --- the three loops (run in child processes) ---------------------------------------------


async def aiohttp_loop(url: str, streams: int, end: float, kept: list[array[int]]) -> list[int]:
    import aiohttp

    headers = {"Content-Type": "application/json"}

    async def one(session: aiohttp.ClientSession) -> tuple[int, int]:
        done = ok = 0
        while time.monotonic() < end:
            times: array[int] = array("q")
            async with session.post(url + PATH, data=BODY, headers=headers) as r:
                async for block in r.content.iter_any():
                    if TOKEN in block:
                        times.append(time.perf_counter_ns())
            kept.append(times)
            done += 1
            ok += r.status == 200 and len(times) > 0
        return done, ok

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        counts = await asyncio.gather(*(one(session) for _ in range(streams)))
    return [sum(c[0] for c in counts), sum(c[1] for c in counts)]


async def httpx_loop(url: str, streams: int, end: float, kept: list[array[int]]) -> list[int]:
    import httpx

    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=streams)

    async def one(client: httpx.AsyncClient) -> tuple[int, int]:
        done = ok = 0
        while time.monotonic() < end:
            times: array[int] = array("q")
            async with client.stream("POST", url + PATH, content=BODY, headers=headers) as r:
                async for block in r.aiter_raw():
                    if TOKEN in block:
                        times.append(time.perf_counter_ns())
            kept.append(times)
            done += 1
            ok += r.status_code == 200 and len(times) > 0
        return done, ok

    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        counts = await asyncio.gather(*(one(client) for _ in range(streams)))
    return [sum(c[0] for c in counts), sum(c[1] for c in counts)]


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a request, collect the response's token times."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None
        self.times: array[int] = array("q")
        self._now = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._now = time.perf_counter_ns()
        self._parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        if TOKEN in body:
            self.times.append(self._now)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed"))

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self.times = array("q")
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.done


async def raw_loop(url: str, streams: int, end: float, kept: list[array[int]]) -> list[int]:
    host, port = url.removeprefix("http://").split(":")
    raw = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    loop = asyncio.get_running_loop()

    async def one() -> tuple[int, int]:
        done = ok = 0
        transport, conn = await loop.create_connection(RawConnection, host, int(port))
        try:
            while time.monotonic() < end:
                status = await conn.request(raw)
                kept.append(conn.times)
                done += 1
                ok += status == 200 and len(conn.times) > 0
        finally:
            transport.close()
        return done, ok

    counts = await asyncio.gather(*(one() for _ in range(streams)))
    return [sum(c[0] for c in counts), sum(c[1] for c in counts)]


LOOPS = {"aiohttp": aiohttp_loop, "httpx": httpx_loop, "raw": raw_loop}


def child_main(layer: str, url: str, streams: int, duration_s: float) -> None:
    """One process of one layer: prints ``done ok``."""
    import uvloop

    kept: list[array[int]] = []
    end = time.monotonic() + duration_s
    counts = uvloop.run(LOOPS[layer](url, streams, end, kept))
    print(*counts, flush=True)


# --- the parent: nginx, interleaved repeats, CPU accounting, the report ---------------------


def run_layer(
    layer: str, nginx: NginxTarget, procs: int, streams: int, duration_s: float
) -> dict[str, Any]:
    """One timed run of ``layer``: nginx's count per second, and the loops' CPU per 1000."""
    argv = [sys.executable, __file__, "--child", layer, nginx.url, str(streams), str(duration_s)]
    before, cpu_before = nginx.served(), children_cpu_s()
    started = [subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(procs)]
    outputs = [p.communicate()[0].decode().split() for p in started]  # reaped: CPU counted
    cpu_s = children_cpu_s() - cpu_before
    served = nginx.served() - before
    done = sum(int(o[0]) for o in outputs if len(o) == 2)
    return {
        "req_per_s": served / duration_s,
        "cpu_s_per_1k": 1000 * cpu_s / max(1, served),
        "requests": done,
        "ok": sum(int(o[1]) for o in outputs if len(o) == 2),
    }


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="repeats (default 3)")
    parser.add_argument("--duration-s", type=float, default=None, help="seconds (default 8)")
    parser.add_argument("--procs", type=int, default=2, help="loop processes per layer")
    parser.add_argument("--streams", type=int, default=32, help="streams per process")
    parser.add_argument("--quick", action="store_true", help="1 repeat of 4 s, *-quick.* files")
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the result files")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration_s = args.duration_s or (4.0 if args.quick else 8.0)
    return args


def main_rows(agg: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per layer, with its ratio to aiohttp (what the workers use)."""
    base = agg["aiohttp"]["req_per_s"]["median"] or 1.0
    rows = [["layer", "req/s (nginx's count)", "x aiohttp", "CPU-s / 1000 requests", "OK"]]
    for layer in LAYERS:
        a = agg[layer]
        rows.append(
            [
                layer,
                format_cell(a["req_per_s"], "{:,.0f}", spread=True),
                f"{a['req_per_s']['median'] / base:.2f}",
                format_cell(a["cpu_s_per_1k"], "{:.3f}", spread=True),
                f"{sum(a['ok']['values'])} of {sum(a['requests']['values'])}",
            ]
        )
    return rows


def render_markdown(doc: dict[str, Any]) -> str:
    """RESULTS-http-layers.md."""
    a = doc["args"]
    return "\n".join(
        [
            "# HTTP layers for the hot path: one bare loop on aiohttp, httpx and a raw protocol",
            "",
            f"Produced by `bench/http_layers.py` (see its docstring): {a['procs']} processes x "
            f"{a['streams']} streams per layer, {a['duration_s']:.0f} s per run, against nginx "
            "serving the fixed 128-token stream. Cells are medians over "
            f"{a['repeats']} interleaved repeat(s), brackets min…max; CPU is the loop processes' "
            "user + system time per 1000 requests nginx served. Raw values: "
            "`results-http-layers.json`.",
            "",
            "## Machine",
            "",
            *machine_lines(doc["machine"]),
            "",
            "## Results",
            "",
            markdown_table(main_rows(doc["agg"])),
            "",
            *(f"- {line}" for line in doc["verdict"]),
            "",
        ]
    )


def verdict(agg: dict[str, dict[str, Any]]) -> list[str]:
    """What the numbers say, as ratios measured in the same run."""
    m = {layer: agg[layer]["req_per_s"]["median"] for layer in LAYERS}
    c = {layer: agg[layer]["cpu_s_per_1k"]["median"] for layer in LAYERS}
    fastest = max(LAYERS, key=lambda layer: m[layer])
    return [
        f"fastest: **{fastest}**, {m[fastest]:,.0f} req/s; raw protocol "
        f"{m['raw'] / m['aiohttp']:.2f}x aiohttp's rate at {c['raw'] / c['aiohttp']:.2f}x "
        "its CPU per request; httpx "
        f"{m['httpx'] / m['aiohttp']:.2f}x the rate at {c['httpx'] / c['aiohttp']:.2f}x the CPU.",
    ]


def main(args: argparse.Namespace) -> int:
    """Run every layer ``--repeats`` times, interleaved; print and write the results."""
    info = machine_info()
    started = time.monotonic()
    raw: dict[str, dict[str, list[Any]]] = {layer: {} for layer in LAYERS}
    with tempfile.TemporaryDirectory(prefix="clientswarm-http-layers-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx's workers must reach the stream file
        with nginx_target(root / "nginx") as nginx:
            for repeat in range(args.repeats):
                for layer in LAYERS:  # interleaved: each repeat sees the machine as it is then
                    result = run_layer(layer, nginx, args.procs, args.streams, args.duration_s)
                    log(
                        f"repeat {repeat + 1} {layer}: {result['req_per_s']:,.0f} req/s, "
                        f"{result['cpu_s_per_1k']:.3f} CPU-s/1000, {result['ok']} OK"
                    )
                    for metric, value in result.items():
                        raw[layer].setdefault(metric, []).append(value)
    agg = {layer: {k: aggregate(v) for k, v in metrics.items()} for layer, metrics in raw.items()}
    info["packages"] |= {"httpx": version_of("httpx"), "httptools": version_of("httptools")}
    info["wall_s"] = round(time.monotonic() - started, 1)
    doc = {"machine": info, "args": vars(args) | {"out": str(args.out)}, "raw": raw, "agg": agg}
    doc["verdict"] = verdict(agg)
    suffix = "-quick" if args.quick else ""
    paths = (
        args.out / f"results-http-layers{suffix}.json",
        args.out / f"RESULTS-http-layers{suffix}.md",
    )
    write_outcome(doc, [main_rows(agg)], paths, render_markdown, info["wall_s"])
    return 0 if all(sum(raw[layer]["ok"]) > 0 for layer in LAYERS) else 1


def version_of(name: str) -> str | None:
    """The installed version of ``name`` (None when it is not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(main(parse_args()))
