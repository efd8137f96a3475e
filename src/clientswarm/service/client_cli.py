"""The CLI as a client of a running service: submit, status, stop, results, samples.

Every command takes ``--service URL`` (env ``CLIENTSWARM_SERVICE``, default
``http://127.0.0.1:8080``) and sends ``CLIENTSWARM_API_TOKEN`` as bearer token when it is set.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clientswarm.errors import ClientswarmError, ConfigError
from clientswarm.interactions.sse import SSEDecoder
from clientswarm.reports.progress import ProgressDisplay
from clientswarm.reports.table import render_summary, report_console
from clientswarm.service.lifecycle import ClusterStatus
from clientswarm.service.progress_events import plan_of, progress_of_event
from clientswarm.timestamps import epoch_s
from clientswarm.verdict import exit_code, launch_failure, verdict

DEFAULT_SERVICE = "http://127.0.0.1:8080"
FINAL = tuple(s.value for s in ClusterStatus if s.final)

service_option = click.option(
    "--service",
    envvar="CLIENTSWARM_SERVICE",
    default=DEFAULT_SERVICE,
    show_default=True,
    help="Base URL of the service (env CLIENTSWARM_SERVICE).",
)


class ServiceClient:
    """A small synchronous client of the frontend API."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token if token is not None else os.environ.get("CLIENTSWARM_API_TOKEN")
        self.timeout_s = timeout_s

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> urllib.request.Request:
        """A prepared request to ``path`` under /api/v1."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        url = f"{self.base_url}/api/v1{path}"
        return urllib.request.Request(url, data=body, method=method, headers=headers)

    def open(self, req: urllib.request.Request) -> Any:
        """Send ``req``; an error answer becomes a ClientswarmError (ConfigError for 422)."""
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            error = _error_of(exc)
            if exc.code == 422 and error.get("problems"):
                raise ConfigError(list(error["problems"])) from None
            message = error.get("message") or exc.reason
            raise ClientswarmError(
                f"{req.get_method()} {req.full_url}: {exc.code} {message}"
            ) from None
        except urllib.error.URLError as exc:
            raise ClientswarmError(
                f"cannot reach the service at {self.base_url}: {exc.reason}; is `clientswarm "
                "serve` running there? (--service URL)"
            ) from None

    def json(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> Any:
        """Send a request and decode its JSON answer."""
        with self.open(self.request(method, path, body, content_type)) as response:
            data = response.read()
        return json.loads(data) if data else None


def _error_of(exc: urllib.error.HTTPError) -> dict[str, Any]:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _client(service: str) -> ServiceClient:
    return ServiceClient(service)


PROGRESS_INTERVAL_S = 0.5
"""Seconds between two events of the progress stream that ``submit --wait`` asks for."""


def wait_for(client: ServiceClient, cluster_id: str, console: Console) -> dict[str, Any]:
    """Follow a cluster until its results are final, printing its status as it changes and
    showing its progress (:mod:`clientswarm.reports.progress`) from the service's progress
    stream; a service without one is polled for the status alone."""
    view = client.json("GET", f"/clusters/{cluster_id}")
    plan = plan_of(view.get("config") or {})
    last = _print_status(console, cluster_id, view, None)
    try:
        with ProgressDisplay(console) as display:
            for event in progress_stream(client, cluster_id, PROGRESS_INTERVAL_S):
                last = _print_status(console, cluster_id, event, last)
                if event.get("status") not in FINAL:  # the status line says how it ended
                    display.update(progress_of_event(event, plan))
        return dict(client.json("GET", f"/clusters/{cluster_id}"))
    except (ClientswarmError, OSError, http.client.HTTPException, ValueError):
        pass  # no stream (an older service), or it broke off: poll
    while True:
        view = client.json("GET", f"/clusters/{cluster_id}")
        last = _print_status(console, cluster_id, view, last)
        if view["status"] in FINAL:
            return dict(view)
        time.sleep(1.0)


def _print_status(console: Console, cluster_id: str, view: dict[str, Any], last: str | None) -> str:
    """Print the cluster's status (and why) when it differs from ``last``; return it."""
    line = f"{view['status']}" + (f" ({view['reason']})" if view.get("reason") else "")
    if line != last:
        console.print(f"{cluster_id}: {line}", style="dim")
    return line


def progress_stream(
    client: ServiceClient, cluster_id: str, interval_s: float
) -> Iterator[dict[str, Any]]:
    """The events of ``GET …/progress`` (one every ``interval_s``), up to the ``end`` one."""
    req = client.request("GET", f"/clusters/{cluster_id}/progress?interval_s={interval_s}")
    req.add_header("Accept", "text/event-stream")
    decoder = SSEDecoder()
    with client.open(req) as response:
        while chunk := response.read1(1 << 16):
            for event in decoder.feed(chunk):
                yield json.loads(event.data)
                if event.event == "end":
                    return
    raise ClientswarmError(f"the progress stream of cluster {cluster_id} ended early")


@click.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@service_option
@click.option("--wait", is_flag=True, help="Follow the cluster until it finishes; show results.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate FILE with the service and print what its spawner would submit; start nothing.",
)
@click.option(
    "--repeat",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Run the cluster this many times, one after another (seeds seed, seed+1, …): a "
    "repeat series (POST /api/v1/repeats); with --wait, each statistic's mean and confidence "
    "interval across the runs, as `run --repeat`.",
)
@click.option("--same-seed", is_flag=True, help="With --repeat: the same seed for every run.")
@click.option(
    "--confidence",
    default=0.95,
    show_default=True,
    type=click.FloatRange(0.5, 0.999),
    help="With --repeat: the confidence of the intervals.",
)
def submit_command(
    file: Path,
    service: str,
    wait: bool,
    dry_run: bool,
    repeat: int,
    same_seed: bool,
    confidence: float,
) -> None:
    """Submit the cluster of FILE to a running service; print its id.

    With --repeat N, a repeat series: N clusters of FILE one after another; its id is printed.
    """
    client = _client(service)
    content_type = "application/json" if file.suffix == ".json" else "application/yaml"
    if dry_run:
        from clientswarm.config.loader import load_config_file
        from clientswarm.spawners.registry import render_submission

        client.json("POST", "/validate", file.read_bytes(), content_type)
        click.echo(render_submission(load_config_file(file), service_url=service), nl=False)
        return
    body = file.read_bytes()
    inlined = with_user_sources(body, file.parent)
    if inlined is not None:
        body, content_type = inlined, "application/json"
    if repeat > 1:
        from clientswarm.service.repeats_cli import submit_series

        submit_series(
            client,
            body,
            content_type,
            count=repeat,
            same_seed=same_seed,
            confidence=confidence,
            wait=wait,
        )
        return
    created = client.json("POST", "/clusters", body, content_type)
    click.echo(created["id"])
    if wait:
        console = Console(stderr=True)
        wait_for(client, created["id"], console)
        summary = client.json("GET", f"/clusters/{created['id']}/results")
        output = report_console()
        cause = launch_failure(summary)
        if cause is not None:  # nothing ran: the cause, not empty tables
            click.echo(f"error: the cluster failed: {cause}", err=True)
        else:
            render_summary(summary, output)
        code = exit_code(summary)
        style = "bold green" if code == 0 else "bold red"
        output.print(Text(f"verdict: {verdict(summary)}", style=style), soft_wrap=True)
        sys.exit(code)


def with_user_sources(body: bytes, base_dir: Path) -> bytes | None:
    """The config as the service should get it (as JSON), or None when nothing needs changing.

    Paths the config gives relative to its own folder become absolute, so a service on this
    machine (or on a shared filesystem, like a Slurm login node) finds the same files: a
    dataset's ``path`` and a ``tokenizer``. A trace load's file travels as its ``data`` (up
    to :data:`MAX_INLINE_TRACE_BYTES`). A readable ``file:`` interaction also travels with
    its source, so a service on another machine can run it; a service that finds the same file
    at that absolute path runs it without accepting inline code (see ``clientswarm serve
    --allow-inline-code``).
    """
    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError:
        return None  # the service reports the syntax error with its line
    groups = data.get("groups") if isinstance(data, dict) else None
    changed = False
    for group in groups if isinstance(groups, list) else []:
        load = group.get("load") if isinstance(group, dict) else None
        if isinstance(load, dict):
            changed |= _inline_trace(load, base_dir)
        interaction = group.get("interaction") if isinstance(group, dict) else None
        if not isinstance(interaction, dict):
            continue
        changed |= _absolute(interaction, "tokenizer", base_dir)
        if isinstance(interaction.get("dataset"), dict):
            changed |= _absolute(interaction["dataset"], "path", base_dir)
        kind = interaction.get("kind")
        if "source" in interaction or not isinstance(kind, str):
            continue
        if not kind.startswith("file:") or kind.count(":") < 2:
            continue
        relative, name = kind[len("file:") :].rsplit(":", 1)
        path = (base_dir / relative).resolve()
        try:
            interaction["source"] = path.read_text()
        except OSError:
            continue  # the service says what is missing
        interaction["kind"] = f"file:{path}:{name}"
        changed = True
    return json.dumps(data).encode() if changed else None


MAX_INLINE_TRACE_BYTES = 32 * 1024 * 1024
"""A larger trace is left as a path (the service reads it, if it may)."""


def _inline_trace(load: dict[str, Any], base_dir: Path) -> bool:
    """A trace load's readable file travels as ``data`` (its format named, since the data has
    no extension to tell it); True if ``load`` changed."""
    path_value = load.get("path")
    if load.get("kind") != "trace" or not isinstance(path_value, str) or "data" in load:
        return False
    path = (base_dir / path_value).expanduser().resolve()
    try:
        if path.stat().st_size > MAX_INLINE_TRACE_BYTES:
            return _absolute(load, "path", base_dir)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return _absolute(load, "path", base_dir)  # the service says what is wrong
    if "format" not in load:
        load["format"] = "azure" if path.suffix.lower() in (".csv", ".tsv") else "mooncake"
    del load["path"]
    load["data"] = text
    return True


def _absolute(fields: dict[str, Any], key: str, base_dir: Path) -> bool:
    """Make ``fields[key]``, a path relative to ``base_dir``, absolute; True if it changed."""
    value = fields.get(key)
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return False
    fields[key] = str((base_dir / value).resolve())
    return True


@click.command("status")
@click.argument("cluster_id", required=False)
@service_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON the service answered.")
def status_command(cluster_id: str | None, service: str, as_json: bool) -> None:
    """List clusters, or show one cluster's status, workers and groups."""
    client = _client(service)
    data = client.json("GET", f"/clusters/{cluster_id}" if cluster_id else "/clusters")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    console = report_console()
    if cluster_id is None:
        table = Table("id", "name", "status", "created", "elapsed s", "reason")
        for c in data:
            created = _local_time(c.get("created_at"))
            elapsed = f"{c['elapsed_s']:.1f}" if c.get("elapsed_s") is not None else ""
            table.add_row(c["id"], c["name"], c["status"], created, elapsed, c.get("reason") or "")
        console.print(table)
        return
    console.print(
        f"{data['id']} {data['name']}: [bold]{data['status']}[/bold] {data.get('reason') or ''}"
    )
    workers = Table("worker", "state", "pid", "samples", "in flight", "error", title="workers")
    for w in data["workers"]:
        workers.add_row(
            str(w["index"]),
            w["state"],
            str(w.get("pid") or ""),
            str(w["samples"]),
            str(w["in_flight"]),
            (w.get("error") or "")[:80],
        )
    console.print(workers)
    groups = Table("group", "interaction", "load", "clients", "client states", title="groups")
    for g in data["groups"]:
        states = ", ".join(f"{k} {v}" for k, v in g["client_states"].items())
        groups.add_row(g["name"], g["interaction"], g["load"], str(g["clients"]), states)
    console.print(groups)


def _local_time(instant: str | float | None) -> str:
    """An instant of the API (RFC 3339; epoch seconds from an older service) in local time."""
    if instant is None:
        return ""
    seconds = epoch_s(instant) if isinstance(instant, str) else float(instant)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


@click.command("stop")
@click.argument("cluster_id")
@service_option
@click.option("--group", help="Stop only this group's clients.")
@click.option("--client", "client_id", type=int, help="Stop only this client.")
def stop_command(cluster_id: str, service: str, group: str | None, client_id: int | None) -> None:
    """Stop a cluster (or one of its groups, or one client)."""
    client = _client(service)
    if group is not None and client_id is not None:
        raise click.UsageError("give --group or --client, not both")
    if group is not None:
        answer = client.json("POST", f"/clusters/{cluster_id}/groups/{group}/stop")
        click.echo(f"stopped {len(answer['stopped'])} client(s) of group {group!r}")
    elif client_id is not None:
        client.json("POST", f"/clusters/{cluster_id}/clients/{client_id}/stop")
        click.echo(f"stopped client {client_id}")
    else:
        client.json("POST", f"/clusters/{cluster_id}/stop")
        click.echo(f"stopping cluster {cluster_id}")


@click.command("results")
@click.argument("cluster_id")
@service_option
@click.option("--json", "as_json", is_flag=True, help="Print summary.json instead of tables.")
def results_command(cluster_id: str, service: str, as_json: bool) -> None:
    """Show a cluster's statistics (final once it finished, partial before)."""
    summary = _client(service).json("GET", f"/clusters/{cluster_id}/results")
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        render_summary(summary, report_console())


@click.command("samples")
@click.argument("cluster_id")
@service_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl")
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), help="File to write (default stdout)."
)
def samples_command(cluster_id: str, service: str, fmt: str, output: Path | None) -> None:
    """Download a cluster's raw samples (streamed)."""
    from clientswarm.outputs import check_output_file

    if output is not None:
        check_output_file(output)  # before asking the service
    client = _client(service)
    req = client.request("GET", f"/clusters/{cluster_id}/samples?format={fmt}")
    req.add_header("Accept", "*/*")
    with client.open(req) as response:
        try:
            sink = output.open("wb") if output is not None else sys.stdout.buffer
        except OSError as exc:
            raise ConfigError([f"--output {output}: {exc.strerror or exc}"]) from None
        try:
            while chunk := response.read(1 << 16):
                sink.write(chunk)
        finally:
            if output is not None:
                sink.close()
