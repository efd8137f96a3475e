"""``clientswarm mock-server``: run the simulated OpenAI-compatible target until SIGINT/SIGTERM.

Also runnable as ``python -m clientswarm.mock.cli``. On start it prints one line,
``mock-server listening on http://HOST:PORT``, so a parent process can wait for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from clientswarm import aio
from clientswarm.errors import ConfigError
from clientswarm.mock.server import start_mock_server
from clientswarm.mock.settings import DISTRIBUTIONS, MockSettings

_DEFAULTS = {field.name: field.default for field in dataclasses.fields(MockSettings)}


F = TypeVar("F", bound=Callable[..., Any])


def _option(name: str, kind: Any, help_text: str) -> Callable[[F], F]:
    field = name.lstrip("-").replace("-", "_")
    return click.option(
        name, field, type=kind, default=_DEFAULTS[field], show_default=True, help=help_text
    )


async def serve(settings: MockSettings) -> None:
    """Serve on ``settings.host:settings.port`` until SIGINT or SIGTERM."""
    try:
        server = await start_mock_server(settings, settings.host, settings.port)
    except OSError as exc:
        click.echo(
            f"error: mock-server cannot listen on {settings.host}:{settings.port}: {exc}", err=True
        )
        sys.exit(1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        click.echo(f"mock-server listening on {server.url}")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await server.close()


@click.command("mock-server", context_settings={"help_option_names": ["-h", "--help"]})
@_option("--host", str, "Interface to listen on.")
@_option("--port", int, "TCP port; 0 picks a free one (printed on start).")
@_option("--model", str, "Model name served in answers and /v1/models.")
@_option("--seed", int, "Seed of the timing and fault draws.")
@_option(
    "--output-tokens", click.IntRange(min=1), "Output tokens when a request sets no max_tokens."
)
@_option("--tokens-per-chunk", click.IntRange(min=1), "Tokens packed in one streamed chunk.")
@_option("--ttft-ms", click.FloatRange(min=0), "Mean time to first token, from admission.")
@_option("--ttft-std-ms", click.FloatRange(min=0), "Standard deviation of TTFT.")
@_option("--itl-ms", click.FloatRange(min=0), "Mean inter-token latency.")
@_option("--itl-std-ms", click.FloatRange(min=0), "Standard deviation of ITL.")
@_option("--distribution", click.Choice(DISTRIBUTIONS), "Shape of the TTFT and ITL distributions.")
@_option("--max-concurrency", click.IntRange(min=1), "Sequences running at once; the rest queue.")
@_option(
    "--kv-cache-tokens",
    click.IntRange(min=1),
    "KV-cache capacity: prompt plus generated tokens of the running sequences.",
)
@_option("--prefix-block-tokens", click.IntRange(min=1), "Tokens per prefix-cache block.")
@_option("--prefix-cache-blocks", click.IntRange(min=1), "Blocks the prefix cache keeps (LRU).")
@_option(
    "--prefill-ms-per-token",
    click.FloatRange(min=0),
    "Added to the first token's delay per uncached prompt token.",
)
@_option("--error-rate-500", click.FloatRange(0, 1), "Share of requests answered HTTP 500.")
@_option("--error-rate-429", click.FloatRange(0, 1), "Share of requests answered HTTP 429.")
@_option(
    "--stream-error-rate", click.FloatRange(0, 1), "Share of streams ending in an error event."
)
@_option("--drop-rate", click.FloatRange(0, 1), "Share of requests whose connection is dropped.")
@_option("--embedding-dim", click.IntRange(min=1), "Dimension of embedding vectors.")
@_option("--embedding-ms", click.FloatRange(min=0), "Latency of an embeddings request.")
def mock_server_command(**options: Any) -> None:
    """Run an OpenAI-compatible mock target with configurable latency, capacity and faults."""
    try:
        settings = MockSettings(**options)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: mock-server: {problem}", err=True)
        sys.exit(2)
    aio.run(serve(settings))


if __name__ == "__main__":
    mock_server_command()
