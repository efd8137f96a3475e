"""``clientswarm serve``: the long-running Client Microservice."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from clientswarm import aio
from clientswarm.errors import ClientswarmError, ConfigError
from clientswarm.service.auth import is_loopback
from clientswarm.service.operator import INPUTS_DIR, operator_options, operator_policy
from clientswarm.service.server import open_store, running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import StoreError

TOKEN_ENV_DEFAULT = "CLIENTSWARM_API_TOKEN"


def read_api_token(token_env: str, token_file: Path | None) -> str | None:
    """The API token from a file (first line) or an environment variable, without surrounding
    whitespace; None when neither is given. A blank one is an error, never an open service."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise click.UsageError(f"--token-file {token_file}: {exc.strerror or exc}") from exc
        if not token:
            raise click.UsageError(f"--token-file {token_file}: the file is empty")
        return token
    value = os.environ.get(token_env)
    if value is None:
        return None
    if not value.strip():
        raise click.UsageError(
            f"the environment variable {token_env} is set but blank: set it to the API token, "
            "or unset it to serve without one (on loopback only)"
        )
    return value.strip()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--store",
    "store_url",
    default=None,
    help="SQLAlchemy URL or SQLite file path [default: DATA_DIR/clientswarm.sqlite].",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("clientswarm-data"),
    show_default=True,
    help="Where the store (by default) and the workers' logs live.",
)
@click.option(
    "--advertise-url",
    default=None,
    help="How workers reach this service [default: http://HOST:PORT].",
)
@click.option(
    "--token-env",
    default=TOKEN_ENV_DEFAULT,
    show_default=True,
    help="Environment variable holding the bearer token of the frontend and monitor APIs.",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    default=None,
    help="File holding the bearer token (first line); wins over --token-env.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Allow serving on a non-loopback address without a token.",
)
@click.option(
    "--cors-origin", multiple=True, help="Allowed CORS origin (repeat); CORS is off by default."
)
@click.option(
    "--max-body-mb",
    default=64,
    show_default=True,
    type=click.IntRange(1),
    help="Request body limit.",
)
@click.option(
    "--lost-after-s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="A worker silent this long is marked lost.",
)
@click.option(
    "--heartbeats-per-s",
    default=500.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Heartbeats a second the whole fleet may send: a worker registering while many run "
    "is told to beat less often than once a second (at most every --lost-after-s / 4).",
)
@click.option(
    "--batches-per-s",
    default=200.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Sample batches (or ticks) a second the whole fleet may send: a worker of a large "
    "fleet ships less often than every 0.5 s (at most every 10 s; a full batch at once).",
)
@click.option(
    "--start-timeout-s",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="How long a cluster waits for all its workers to register before it starts without "
    "the missing ones (marked failed). Raise it when a batch queue may hold the workers longer.",
)
@click.option(
    "--allow-inline-code",
    is_flag=True,
    help="Accept the Python source of file: interactions in submitted clusters and ship it "
    "to workers that do not share this service's files (Kubernetes). Off by default: whoever "
    "can submit a cluster can then run code in every worker.",
)
@operator_options
@click.option("--log-level", default="info", show_default=True)
def serve_command(
    host: str,
    port: int,
    store_url: str | None,
    data_dir: Path,
    advertise_url: str | None,
    token_env: str,
    token_file: Path | None,
    insecure_no_auth: bool,
    cors_origin: tuple[str, ...],
    max_body_mb: int,
    lost_after_s: float,
    heartbeats_per_s: float,
    batches_per_s: float,
    start_timeout_s: float,
    allow_inline_code: bool,
    log_level: str,
    **operator_flags: Any,
) -> None:
    """Run the Client Microservice: REST APIs for frontend, monitor and workers.

    A submitted configuration is untrusted: it reaches files, user code, environment variables
    and targets only inside what the --allow-* options grant, and stays within the --max-*
    limits (see "Security model" in the README).
    """
    token = read_api_token(token_env, token_file)
    if token is None and not is_loopback(host) and not insecure_no_auth:
        raise click.UsageError(
            f"refusing to serve on {host} without an API token: set {token_env} or pass "
            "--token-file (or --insecure-no-auth to accept anyone who can reach the port)"
        )
    try:
        policy = operator_policy(data_dir, allow_inline_code=allow_inline_code, **operator_flags)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    settings = ServiceSettings(
        data_dir=data_dir,
        advertise_url=advertise_url or "",
        api_token=token,
        cors_origins=list(cors_origin),
        max_body_bytes=max_body_mb * 1024 * 1024,
        lost_after_s=lost_after_s,
        heartbeats_per_s=heartbeats_per_s,
        batches_per_s=batches_per_s,
        start_timeout_s=start_timeout_s,
        policy=policy,
    )
    try:
        store = open_store(store_url or str(data_dir / "clientswarm.sqlite"), data_dir)
    except StoreError as exc:  # an unusable --store is bad input: one line, exit 2
        raise ConfigError([str(exc)]) from exc
    if not operator_flags["allow_paths"]:
        (data_dir / INPUTS_DIR).mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_service(
            store, settings, host=host, port=port, log_level=log_level
        ) as svc:
            auth = "bearer token required" if token else "no token (open API)"
            click.echo(f"clientswarm service listening on {svc.url} ({auth})")
            sys.stdout.flush()
            await stop.wait()
        store.close()

    try:
        aio.run(main())
    except OSError as exc:
        raise ClientswarmError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
