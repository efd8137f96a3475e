"""Generate the Grafana dashboard deploy/grafana/clientswarm.json from the code.

    python scripts/grafana_dashboard.py           write deploy/grafana/clientswarm.json
    python scripts/grafana_dashboard.py --check   write nothing; exit 1 if the file is stale

Every query is built from a :class:`Series`, looked up among the series that the service's
collector really exports over a populated live registry (``exported_families()`` of
scripts/docs_reference.py, the source of the metrics reference too); histogram names come from
``clientswarm.service.prometheus.HISTOGRAMS``. A metric or label that is not exported stops the
generator with one line naming it: a renamed metric breaks this script, not silently the
dashboard. ``tests/unit/test_grafana_dashboard.py`` fails when the committed file differs from
what this produces, and ``tests/integration/test_grafana_promql.py`` runs every query against a
real Prometheus scraping a real run.

The dashboard's variables: ``datasource`` (any Prometheus), ``cluster`` (cluster ids) and
``group`` (client groups of those clusters), both multi-select with All (``.*``). Queries
use ``$__rate_interval``, so set the data source's scrape interval (``timeInterval``) to the
real one. The output is deterministic: no timestamps, nothing of this machine.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clientswarm.service.prometheus import HISTOGRAMS

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = Path("deploy/grafana/clientswarm.json")
UID = "clientswarm"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The labels a panel's series are split by: cluster_name rides along for the legend.
BY_GROUP = ("cluster", "cluster_name", "group")
LEGEND_GROUP = "{{cluster_name}} {{group}}"
QUANTILES = (0.5, 0.9, 0.99)
#: Dashboard variables and the label each one filters.
FILTERS = {"cluster": "cluster", "group": "group"}
GRID_COLUMNS = 24


class DashboardError(Exception):
    """A query names a metric or label that the service does not export."""


# -- the exported series ------------------------------------------------------------------------


@functools.cache
def exported_series() -> dict[str, frozenset[str]]:
    """Every series name the service's collector exports, with its label names."""
    spec = importlib.util.spec_from_file_location(
        "docs_reference", Path(__file__).with_name("docs_reference.py")
    )
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    series: dict[str, set[str]] = {}
    for family in reference.exported_families():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


@dataclass(frozen=True)
class Series:
    """One exported series (``clientswarm_requests_total``, ``…_seconds_bucket``) and its labels."""

    name: str
    labels: frozenset[str]

    @classmethod
    def named(cls, name: str) -> Series:
        """The exported series ``name``; :class:`DashboardError` when there is none."""
        exported = exported_series()
        if name not in exported:
            raise DashboardError(
                f"{name} is not exported by clientswarm.service.prometheus (exported: "
                f"{', '.join(sorted(exported))}): update scripts/grafana_dashboard.py"
            )
        return cls(name, exported[name])

    def check(self, labels: Sequence[str]) -> None:
        """Fail unless the series has every one of ``labels``."""
        missing = [label for label in labels if label not in self.labels]
        if missing:
            raise DashboardError(
                f"{self.name} has no label {', '.join(missing)} (its labels: "
                f"{', '.join(sorted(self.labels))}): update scripts/grafana_dashboard.py"
            )

    def select(self, **matchers: str) -> str:
        """The series filtered by the dashboard's variables (where it has their labels) and by
        ``matchers`` (label → exact value)."""
        self.check(list(matchers))
        parts = [f'{label}=~"${var}"' for var, label in FILTERS.items() if label in self.labels]
        parts += [f'{label}="{value}"' for label, value in matchers.items()]
        return f"{self.name}{{{', '.join(parts)}}}" if parts else self.name


def by(series: Series, labels: Sequence[str]) -> str:
    """``sum by (labels)``, once the series is known to have them."""
    series.check(labels)
    return f"sum by ({', '.join(labels)})"


def summed(
    name: str, labels: Sequence[str] = BY_GROUP, *, over: str | None = "rate", **matchers: str
) -> str:
    """A series summed by ``labels``: of its per-second ``rate`` (or ``increase``) over the rate
    window for a counter, of its value (``over=None``) for a gauge."""
    s = Series.named(name)
    inner = s.select(**matchers)
    if over is not None:
        inner = f"{over}({inner}[$__rate_interval])"
    return f"{by(s, labels)} ({inner})"


def quantile(q: float, histogram: str, labels: Sequence[str] = BY_GROUP) -> str:
    """The ``q`` quantile of a histogram over the rate window, merged over workers by ``labels``."""
    return f"histogram_quantile({q}, {summed(f'{histogram}_bucket', ('le', *labels))})"


def step_histogram(metric: str) -> str:
    """The name of a step histogram: ``clientswarm_step_`` then the interaction one's rest."""
    return "clientswarm_step_" + HISTOGRAMS[metric][0].removeprefix("clientswarm_")


# -- panels -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One target of a panel: a PromQL expression and its legend."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """A panel before layout: what it shows, in which unit, how wide (of 24 columns)."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    kind: str = "timeseries"
    threshold: float | None = None


def split(name: str, extra: Sequence[str] = (), *, over: str | None = "rate") -> Query:
    """``name`` summed by cluster and group and ``extra`` labels, with a legend naming them."""
    legend = " ".join([LEGEND_GROUP, *(f"{{{{{label}}}}}" for label in extra)])
    return Query(summed(name, (*BY_GROUP, *extra), over=over), legend)


def percentiles(
    histogram: str, qs: Sequence[float], extra: Sequence[str] = ()
) -> tuple[Query, ...]:
    """Quantiles ``qs`` of a histogram by cluster, group and ``extra`` labels."""
    legend = " ".join([LEGEND_GROUP, *(f"{{{{{label}}}}}" for label in extra)])
    return tuple(
        Query(quantile(q, histogram, (*BY_GROUP, *extra)), f"{legend} p{round(q * 100)}")
        for q in qs
    )


def latency(title: str, metric: str, what: str) -> Panel:
    """p50, p90 and p99 of one of :data:`HISTOGRAMS` (by its key, e.g. ``ttft_s``)."""
    return Panel(
        title,
        f"{what} p50, p90 and p99 by cluster and group, merged from every worker's histogram "
        "buckets over the rate window. Bucket bounds limit the precision; the cluster's "
        "results hold the exact values.",
        "s",
        percentiles(HISTOGRAMS[metric][0], QUANTILES),
    )


def step_latency(title: str, metric: str, what: str) -> Panel:
    """p50 and p99 of a step histogram, by step."""
    return Panel(
        title,
        f"{what} of the steps of user-defined interactions (a ctx.measure span, a helper's LLM "
        "call, a conversation's turn), p50 and p99 by step.",
        "s",
        percentiles(step_histogram(metric), (0.5, 0.99), ("step",)),
    )


def rows() -> list[tuple[str, list[Panel]]]:
    """The dashboard's rows and their panels, top to bottom."""
    requests = "clientswarm_requests_total"
    error_ratio = f"{summed(requests, outcome='error')} / {summed(requests)}"
    ttft_buckets = summed(f"{HISTOGRAMS['ttft_s'][0]}_bucket", ("le",), over="increase")
    workers = summed("clientswarm_workers", ("cluster", "cluster_name", "state"), over=None)
    throughput = [
        Panel(
            "Request rate",
            "Measured requests completed per second (succeeded and failed) by cluster and "
            "group. Warm-up and cancelled requests are not counted.",
            "reqps",
            (split(requests),),
        ),
        Panel(
            "Succeeded and failed",
            "Measured requests per second by outcome (ok, error).",
            "reqps",
            (split(requests, ("outcome",)),),
        ),
        Panel(
            "Output tokens/s",
            "Output tokens per second of successful measured requests.",
            "suffix: tok/s",
            (split("clientswarm_output_tokens_total"),),
        ),
        Panel(
            "Input tokens/s",
            "Input (prompt) tokens per second of successful measured requests.",
            "suffix: tok/s",
            (split("clientswarm_input_tokens_total"),),
        ),
    ]
    errors = [
        Panel(
            "Error ratio",
            "Share of measured requests that failed.",
            "percentunit",
            (Query(error_ratio, LEGEND_GROUP),),
            width=8,
        ),
        Panel(
            "Errors by kind",
            "Failed measured requests per second by error kind (timeout, connection, "
            "http_<status>, ...).",
            "reqps",
            (split("clientswarm_errors_total", ("kind",)),),
            width=8,
        ),
        Panel(
            "Excluded requests",
            "Requests per second left out of the statistics, by reason: during warm-up, or "
            "cut off by a stop (cancelled).",
            "reqps",
            (split("clientswarm_excluded_requests_total", ("reason",)),),
            width=8,
        ),
    ]
    latencies = [
        latency("TTFT", "ttft_s", "Time to first token"),
        latency("ITL", "itl_s", "Inter-token latency"),
        latency("TPOT", "tpot_s", "Time per output token after the first"),
        latency("E2E", "e2e_s", "End-to-end latency of successful requests"),
        Panel(
            "TTFT distribution",
            "Time to first token of the selected clusters and groups: requests per bucket in "
            "each rate window.",
            "short",
            (Query(ttft_buckets, "{{le}}"),),
            width=24,
            kind="heatmap",
        ),
    ]
    generator = [
        Panel(
            "Active clients",
            "Clients running now, by cluster and group.",
            "short",
            (split("clientswarm_active_clients", over=None),),
            width=8,
        ),
        Panel(
            "Requests in flight (estimate)",
            "Mean successful requests in flight, by Little's law: seconds of E2E latency "
            "completed per second. Failed requests are not in it; clientswarm exports no "
            "in-flight gauge.",
            "short",
            (split(f"{HISTOGRAMS['e2e_s'][0]}_sum"),),
            width=8,
        ),
        Panel(
            "Schedule lag",
            "How late requests were sent after their scheduled time, p50 and p99: the load "
            "generator's health. Above the 50 ms line the generator is the bottleneck, not the "
            "server.",
            "s",
            percentiles(HISTOGRAMS["schedule_lag_s"][0], (0.5, 0.99)),
            width=8,
            threshold=0.05,
        ),
        Panel(
            "Workers by state",
            "Workers of each cluster by state (pending, registered, running, then how each "
            "ended). Filtered by cluster only: workers have no group.",
            "short",
            (Query(workers, "{{cluster_name}} {{state}}"),),
        ),
        Panel(
            "Clusters by status",
            "Clusters the service follows, by status: all of them, whatever the cluster and "
            "group variables say (this series has no such labels).",
            "short",
            (Query(summed("clientswarm_clusters", ("status",), over=None), "{{status}}"),),
        ),
    ]
    steps = [
        Panel(
            "Step rate",
            "Measured steps completed per second (a ctx.measure span, a helper's LLM call, a "
            "conversation's turn), by step.",
            "reqps",
            (split("clientswarm_step_requests_total", ("step",)),),
        ),
        Panel(
            "Step errors by kind",
            "Failed measured steps per second, by step and error kind.",
            "reqps",
            (split("clientswarm_step_errors_total", ("step", "kind")),),
        ),
        step_latency("Step TTFT", "ttft_s", "Time to first token"),
        step_latency("Step E2E", "e2e_s", "End-to-end latency"),
    ]
    return [
        ("Throughput", throughput),
        ("Errors", errors),
        ("Latency", latencies),
        ("Load generator", generator),
        ("Steps of user-defined interactions", steps),
    ]


# -- the JSON model -----------------------------------------------------------------------------


def layout(sections: list[tuple[str, list[Panel]]]) -> Iterator[dict[str, Any]]:
    """Rows and panels with ids and grid positions: left to right, wrapping at 24 columns."""
    ids = iter(range(1, 1000))
    y = 0
    for title, panels in sections:
        yield {
            "type": "row",
            "id": next(ids),
            "title": title,
            "collapsed": False,
            "gridPos": {"h": 1, "w": GRID_COLUMNS, "x": 0, "y": y},
            "panels": [],
        }
        y += 1
        x = 0
        line_h = 0
        for panel in panels:
            if x + panel.width > GRID_COLUMNS:
                x, y, line_h = 0, y + line_h, 0
            grid = {"h": panel.height, "w": panel.width, "x": x, "y": y}
            yield render_panel(panel, next(ids), grid)
            x += panel.width
            line_h = max(line_h, panel.height)
        y += line_h


def render_panel(panel: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    """One panel of the Grafana JSON model."""
    targets = [
        {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": True,
            "refId": chr(ord("A") + i),
            **({"format": "heatmap"} if panel.kind == "heatmap" else {}),
        }
        for i, query in enumerate(panel.queries)
    ]
    out: dict[str, Any] = {
        "type": panel.kind,
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
    }
    if panel.kind == "heatmap":
        out["fieldConfig"] = {"defaults": {"unit": panel.unit}, "overrides": []}
        out["options"] = {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"mode": "single", "yHistogram": True},
            "yAxis": {"unit": "s"},
        }
    else:
        out["fieldConfig"] = {"defaults": _field_defaults(panel), "overrides": []}
        out["options"] = {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    out["targets"] = targets
    return out


def _field_defaults(panel: Panel) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
    }
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if panel.threshold is not None:
        custom["thresholdsStyle"] = {"mode": "line"}
        steps.append({"color": "red", "value": panel.threshold})
    return {
        "unit": panel.unit,
        "min": 0,
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "thresholds": {"mode": "absolute", "steps": steps},
    }


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def templating() -> list[dict[str, Any]]:
    """The variables: the data source, then clusters, then the groups of those clusters."""
    requests = Series.named("clientswarm_requests_total")
    requests.check(list(FILTERS.values()))
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "options": [],
            "refresh": 1,
            "regex": "",
            "hide": 0,
        },
        _variable("cluster", "Cluster", f"label_values({requests.name}, cluster)"),
        _variable("group", "Group", f'label_values({requests.name}{{cluster=~"$cluster"}}, group)'),
    ]


def dashboard() -> dict[str, Any]:
    """The whole Grafana dashboard (JSON model, schema version 39)."""
    return {
        "uid": UID,
        "title": "clientswarm",
        "description": "Live load of clientswarm clusters: throughput, errors, latencies "
        "(TTFT, ITL, TPOT, E2E), the load generator's health. Generated by "
        "scripts/grafana_dashboard.py.",
        "tags": ["clientswarm", "llm", "load-testing"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "refresh": "5s",
        "timezone": "browser",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [],
        "templating": {"list": templating()},
        "panels": list(layout(rows())),
    }


def render() -> str:
    """The dashboard file's content."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def is_stale(root: Path = ROOT) -> bool:
    """Whether the committed dashboard differs from what the code gives now."""
    target = root / DASHBOARD
    return not target.is_file() or target.read_text(encoding="utf-8") != render()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the file is stale"
    )
    args = parser.parse_args(argv)
    try:
        content = render()
    except DashboardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    target = ROOT / DASHBOARD
    current = target.read_text(encoding="utf-8") if target.is_file() else None
    if args.check:
        if current != content:
            print(
                f"{DASHBOARD} is stale: run `python scripts/grafana_dashboard.py`", file=sys.stderr
            )
            return 1
        return 0
    if current != content:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        print(f"wrote {DASHBOARD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
