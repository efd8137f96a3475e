"""The issue's reference loop: about the least a Python client can do per streamed chat request.

``--procs`` processes x ``--streams`` concurrent streams (aiohttp + uvloop + orjson), each POSTing
a small streamed chat request to URL again and again for ``--duration-s`` seconds, reading the SSE
body with ``iter_any()`` and recording one ``perf_counter_ns()`` per chunk holding a token. Nothing
else is parsed or kept. Prints the requests completed and how many of them were OK (status 200,
at least one token); ``fullpath.py`` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from array import array

import aiohttp
import orjson
import uvloop

BODY = orjson.dumps(
    {
        "model": "mock-model",
        "stream": True,
        "max_tokens": 128,
        "messages": [{"role": "user", "content": "Hi"}],
    }
)


async def stream(
    session: aiohttp.ClientSession, url: str, end: float, kept: list[array[int]]
) -> tuple[int, int]:
    """One client: request after request until ``end``; one timestamp per token chunk."""
    done = ok = 0
    while time.monotonic() < end:
        times: array[int] = array("q")
        async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as r:
            async for chunk in r.content.iter_any():
                if b'"content"' in chunk:
                    times.append(time.perf_counter_ns())
        kept.append(times)
        done += 1
        ok += r.status == 200 and len(times) > 0
    return done, ok


async def child(url: str, streams: int, duration_s: float) -> None:
    """One process: ``streams`` clients on one connection pool; prints its counts."""
    end, kept = time.monotonic() + duration_s, []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        counts = await asyncio.gather(*(stream(session, url, end, kept) for _ in range(streams)))
    print(sum(c[0] for c in counts), sum(c[1] for c in counts), flush=True)


def main() -> None:
    """Start ``--procs`` children (or be one) and print the totals of their counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="chat completions URL")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        uvloop.run(child(args.url, args.streams, args.duration_s))
        return
    argv = [sys.executable, __file__, args.url, "--child", f"--streams={args.streams}"]
    argv.append(f"--duration-s={args.duration_s}")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(args.procs)]
    counts = [(p.communicate()[0] or b"0 0").split() for p in procs]
    print(sum(int(c[0]) for c in counts), sum(int(c[1]) for c in counts))


if __name__ == "__main__":
    main()
