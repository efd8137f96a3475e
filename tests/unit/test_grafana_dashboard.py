"""The shipped Grafana dashboard (deploy/grafana/clientswarm.json) is what the code gives now,
and is well formed: unique ids, panels that do not overlap, queries over exported series only.

``scripts/grafana_dashboard.py`` writes it; these tests regenerate it in memory. The queries are
run against a real Prometheus in tests/integration/test_grafana_promql.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from clientswarm.service.prometheus import HISTOGRAMS, LiveRegistry, render_metrics

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "grafana_dashboard.py"
DASHBOARD = ROOT / "deploy" / "grafana" / "clientswarm.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: PromQL's words that look like metric names in an expression.
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "le"}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_dashboard", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows included, and the panels of collapsed rows."""
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p.get("targets", [])]


def exported_names() -> set[str]:
    """Every series name in the service's real exposition over a populated registry."""
    from clientswarm.metrics.sample import Sample

    registry = LiveRegistry()
    live = registry.get_or_create("c1", "run", groups=["chat"], group_targets={"chat": "default"})
    sent = 1_700_000_000 * 10**9
    samples = [
        Sample(
            group="chat",
            client=0,
            worker=0,
            name="chat" if not step else "retrieve",
            scheduled_ns=sent,
            sent_ns=sent,
            end_ns=sent + 10**9,
            status="ok" if ok else "error",
            first_token_ns=sent + 10**8 if ok else None,
            output_tokens=3 if ok else None,
            input_tokens=2 if ok else None,
            itl_s=[0.1, 0.1] if ok else [],
            error_kind=None if ok else "timeout",
            step=step,
        )
        for step in (False, True)
        for ok in (True, False)
    ]
    live.add(samples, 1_700_000_001.0)
    live.set_workers({"running": 1})
    live.set_active_clients("chat", 1)
    text = render_metrics(registry).decode()
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1].isalpha()}


def test_committed_dashboard_is_up_to_date(generator: ModuleType) -> None:
    assert DASHBOARD.is_file(), "deploy/grafana/clientswarm.json is missing: run the generator"
    if DASHBOARD.read_text(encoding="utf-8") != generator.render():
        pytest.fail(
            "deploy/grafana/clientswarm.json is stale (it differs from the code): run "
            "`.venv/bin/python scripts/grafana_dashboard.py`"
        )
    assert generator.is_stale() is False


def test_check_mode_flags_a_stale_file(generator: ModuleType, tmp_path: Path) -> None:
    target = tmp_path / generator.DASHBOARD
    target.parent.mkdir(parents=True)
    assert generator.is_stale(tmp_path)
    target.write_text(generator.render(), encoding="utf-8")
    assert not generator.is_stale(tmp_path)
    target.write_text("{}\n", encoding="utf-8")
    assert generator.is_stale(tmp_path)


def test_generator_refuses_a_metric_or_label_that_is_not_exported(generator: ModuleType) -> None:
    with pytest.raises(generator.DashboardError, match="clientswarm_ttft_secs_bucket is not"):
        generator.quantile(0.99, "clientswarm_ttft_secs")
    with pytest.raises(generator.DashboardError, match="clientswarm_workers has no label group"):
        generator.summed("clientswarm_workers", ("group",), over=None)


def test_dashboard_settings(board: dict[str, Any]) -> None:
    assert board["uid"] == "clientswarm" and board["title"] == "clientswarm"
    assert board["schemaVersion"] == 39
    assert board["time"] == {"from": "now-30m", "to": "now"}
    assert board["refresh"] == "5s"


def test_panel_ids_are_unique(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_and_do_not_overlap(board: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


def test_every_panel_has_what_a_reader_needs(board: dict[str, Any]) -> None:
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert title and panel["description"], title
        assert panel["fieldConfig"]["defaults"]["unit"], f"{title} has no unit"
        legend = panel["options"]["legend"]
        assert legend.get("showLegend", legend.get("show")) is True, f"{title} has no legend"
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], f"{title} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["expr"] and target["refId"] and target["legendFormat"], title
            assert target["datasource"] == DATASOURCE, title


def test_queries_use_only_exported_series(board: dict[str, Any]) -> None:
    exported = exported_names()
    assert {f"{name}_bucket" for name, _, _ in HISTOGRAMS.values()} <= exported
    used = set()
    for expr in exprs(board):
        without_strings = re.sub(r'"[^"]*"', "", expr)
        without_labels = re.sub(r"\{[^}]*\}|\([a-z_, ]*\)\s*\(|\[[^]]*\]", "(", without_strings)
        names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels)) - PROMQL_WORDS
        assert names, expr
        assert names <= exported, f"{expr} uses {names - exported}, not exported"
        used |= names
    families = {name.removesuffix("_total") for name in exported if "_step_" not in name}
    assert {"clientswarm_requests", "clientswarm_errors", "clientswarm_workers"} <= families
    for name in ("clientswarm_requests_total", "clientswarm_errors_total"):
        assert name in used


def test_every_variable_used_is_defined(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]}
    assert defined == {"datasource", "cluster", "group"}
    texts = [*exprs(board), json.dumps(board["panels"]), json.dumps(board["templating"])]
    used = {m for text in texts for m in re.findall(r"\$\{?(\w+)", text)}
    assert {u for u in used if not u.startswith("__")} <= defined
    assert {"cluster", "group", "datasource"} <= used


def test_variables(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("cluster", "group"):
        var = variables[name]
        assert var["type"] == "query" and var["multi"] and var["includeAll"], name
        assert var["allValue"] == ".*"
        assert var["query"].startswith("label_values(") and var["query"].endswith(f", {name})")
        assert var["datasource"] == DATASOURCE


def test_provisioning_points_at_the_dashboard_folder() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasource.yaml").read_text())
    assert datasources["apiVersion"] == 1
    assert [d["type"] for d in datasources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((PROVISIONING / "dashboards.yaml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    readme = (ROOT / "deploy" / "grafana" / "README.md").read_text()
    assert provider["options"]["path"] in readme
