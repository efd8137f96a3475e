"""``clientswarm submit CONFIG --repeat N``: a repeat series on a running service.

Posts the configuration to ``POST /api/v1/repeats`` (:mod:`clientswarm.service.repeats_route`)
and prints the series' id; with ``--wait`` it follows each run's cluster as ``submit --wait``
follows one, then prints the aggregate as ``clientswarm run --repeat`` does
(:func:`clientswarm.reports.repeats.render_repeats`) and exits with the worst run's code.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from urllib.parse import urlencode

import click
from rich.console import Console

from clientswarm.reports.repeats import REPEATS_KEY, render_repeats
from clientswarm.reports.table import report_console
from clientswarm.service.client_cli import ServiceClient, wait_for

SERIES_FINAL = ("completed", "failed", "cancelled")
EXIT_FAILED = 1


def submit_series(
    client: ServiceClient,
    body: bytes,
    content_type: str,
    *,
    count: int,
    same_seed: bool,
    confidence: float,
    wait: bool,
) -> None:
    """Post a series of ``count`` runs of the configuration ``body``; print its id, and with
    ``wait`` follow it to its end (see the module docstring)."""
    query = urlencode(
        {"count": count, "same_seed": str(same_seed).lower(), "confidence": confidence}
    )
    created = client.json("POST", f"/repeats?{query}", body, content_type)
    click.echo(created["id"])
    if not wait:
        return
    view = follow_series(client, created["id"], Console(stderr=True))
    output = report_console()
    summary = view.get("summary") or {}
    repeats = summary.get(REPEATS_KEY)
    line = f"repeat series {view['id']}: {view['status']}"
    if view.get("reason"):
        line += f" ({view['reason']})"
    if repeats is None:
        click.echo(f"error: {line}; no run to aggregate", err=True)
        sys.exit(EXIT_FAILED)
    render_repeats(repeats, output)
    output.print(line, soft_wrap=True)
    codes = list(repeats["exit_codes"])
    worst = max(codes) if view["status"] == "completed" else max([EXIT_FAILED, *codes])
    sys.exit(worst)


def follow_series(client: ServiceClient, series_id: str, console: Console) -> dict[str, Any]:
    """Follow each run of the series as it comes, until the series has ended; its view."""
    followed = 0
    while True:
        view: dict[str, Any] = client.json("GET", f"/repeats/{series_id}")
        runs = view.get("runs") or []
        if followed < len(runs):
            run = runs[followed]
            console.print(
                f"run {followed + 1} of {view['count']} (seed {run['seed']}): "
                f"cluster {run['cluster']}",
                style="bold",
            )
            wait_for(client, run["cluster"], console)
            followed += 1
            continue
        if view["status"] in SERIES_FINAL:
            return view
        time.sleep(0.5)


__all__ = ["follow_series", "submit_series"]
