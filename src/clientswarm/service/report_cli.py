"""The ``clientswarm report`` command: rebuilds the HTML report of a run (a result directory of
``clientswarm run``, offline, or a cluster of a service, fetched over its REST API) and prints
its tables again. It lives beside the service's other client commands because it may reach a
service; the report itself (:mod:`clientswarm.reports.html`) knows nothing of services."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from clientswarm.errors import ClientswarmError, ConfigError

DEFAULT_SERVICE = "http://127.0.0.1:8080"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _read_json(path: Path, ref: str, *, required: bool) -> Any:
    if not path.is_file():
        if required:
            raise ConfigError(
                [f"{ref}: not a result directory of clientswarm run (it has no {path.name})"]
            )
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{ref}: cannot read {path.name}: {exc}"]) from None


def report_from_directory(directory: Path, ref: str) -> tuple[dict[str, Any], str]:
    """The summary and the rebuilt report page of the result directory ``directory``."""
    from clientswarm.reports.html import render_report

    if not directory.is_dir():
        raise ConfigError([f"{ref}: not a directory"])
    summary = _read_json(directory / "summary.json", ref, required=True)
    if not isinstance(summary, dict) or not isinstance(summary.get("groups"), dict):
        raise ConfigError([f"{ref}: summary.json is not a clientswarm summary (no groups)"])
    timeseries = _read_json(directory / "timeseries.json", ref, required=False)
    config = _read_json(directory / "config.json", ref, required=False)
    return summary, render_report(
        summary,
        timeseries if isinstance(timeseries, dict) else None,
        config if isinstance(config, dict) else None,
    )


def report_from_service(cluster_id: str, service: str) -> tuple[dict[str, Any], str]:
    """The summary and the report page of the cluster ``cluster_id`` of the service."""
    from clientswarm.service.client_cli import ServiceClient

    client = ServiceClient(service)
    try:
        summary = client.json("GET", f"/clusters/{cluster_id}/results")
        request = client.request("GET", f"/clusters/{cluster_id}/report")
        request.add_header("Accept", "text/html")
        with client.open(request) as response:
            page = response.read().decode("utf-8")
    except ConfigError:
        raise
    except ClientswarmError as exc:
        raise ConfigError(
            [f"{cluster_id}: no result directory of that name; as a cluster of the service: {exc}"]
        ) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("groups"), dict):
        raise ConfigError([f"{cluster_id}: the service's results are not a summary"])
    return summary, page


@click.command("report")
@click.argument("run", metavar="DIR|ID")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the report (default: DIR/report.html, or report-ID.html here).",
)
@click.option(
    "--service",
    envvar="CLIENTSWARM_SERVICE",
    default=DEFAULT_SERVICE,
    show_default=True,
    help="Base URL of the service when a cluster id is given (env CLIENTSWARM_SERVICE).",
)
def report_command(run: str, output: Path | None, service: str) -> None:
    """Rebuild the HTML report of a run and print its tables again.

    DIR is a result directory of `clientswarm run` (read offline); anything else that looks
    like an id is a cluster of the service at --service.
    """
    from clientswarm.reports.table import render_summary, report_console

    path = Path(run)
    if path.exists() or not _ID.match(run):
        if not path.exists():
            raise ConfigError([f"{run}: no such directory"])
        summary, page = report_from_directory(path, run)
        target = output or path / "report.html"
    else:
        summary, page = report_from_service(run, service)
        target = output or Path(f"report-{run}.html")
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot write the report to {target}: {exc.strerror or exc}"]) from None
    console = report_console()
    render_summary(summary, console)
    console.print(f"report: {target}")


__all__ = ["report_command", "report_from_directory", "report_from_service"]
