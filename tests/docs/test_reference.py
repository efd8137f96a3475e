"""The generated reference pages (docs/reference/) are what the code gives now.

``scripts/docs_reference.py`` writes them from the configuration JSON Schema, the service's
OpenAPI document, click's help and the Prometheus collector; these tests regenerate them in
memory and fail, naming the file, when a committed one differs: run ``make docs``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "docs_reference.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def generated(generator: ModuleType) -> dict[Path, str]:
    pages: dict[Path, str] = generator.generate()
    return pages


def test_every_reference_page_is_generated(generated: dict[Path, str]) -> None:
    names = sorted(path.name for path in generated)
    assert names == ["cli.md", "configuration.md", "metrics.md", "openapi.json", "rest-api.md"]


@pytest.mark.parametrize(
    "name", ["configuration.md", "rest-api.md", "openapi.json", "cli.md", "metrics.md"]
)
def test_committed_reference_is_up_to_date(generated: dict[Path, str], name: str) -> None:
    path = Path("docs/reference") / name
    committed = ROOT / path
    assert committed.is_file(), f"{path} is missing: run `make docs`"
    want = generated[path]
    have = committed.read_text(encoding="utf-8")
    if have != want:
        diff = _first_difference(have, want)
        pytest.fail(f"{path} is stale (it differs from the code): run `make docs`\n{diff}")


def _first_difference(have: str, want: str) -> str:
    for number, (a, b) in enumerate(zip(have.splitlines(), want.splitlines(), strict=False), 1):
        if a != b:
            return f"first difference at line {number}:\n  committed: {a}\n  generated: {b}"
    return "one is a prefix of the other (lines added or removed at the end)"


def test_generation_is_deterministic_and_machine_independent(
    generator: ModuleType, generated: dict[Path, str]
) -> None:
    again: dict[Path, str] = generator.generate()
    assert again == generated
    for path, content in generated.items():
        for local in (str(ROOT), str(Path.home()), sys.executable, sys.prefix):
            assert local not in content, f"{path} contains the machine-specific {local!r}"


def test_check_mode_names_a_stale_file(generator: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    for path, content in generator.generate().items():
        (tmp_path / path).write_text(content, encoding="utf-8")
    assert generator.stale(tmp_path) == []
    (tmp_path / "docs/reference/cli.md").write_text("# edited by hand\n", encoding="utf-8")
    (tmp_path / "docs/reference/openapi.json").unlink()
    assert generator.stale(tmp_path) == [
        Path("docs/reference/openapi.json"),
        Path("docs/reference/cli.md"),
    ]


def test_configuration_reference_covers_every_model_and_field(generated: dict[Path, str]) -> None:
    from clientswarm.config.loader import config_json_schema

    page = generated[Path("docs/reference/configuration.md")]
    schema = config_json_schema()
    models = {"ClusterConfig": schema, **schema["$defs"]}
    for name, model in models.items():
        assert f"## {name} {{ #{name.lower()} }}" in page, f"no section for {name}"
        section = page.split(f"{{ #{name.lower()} }}", 1)[1].split("\n## ", 1)[0]
        for field in model.get("properties", {}):
            assert f"| `{field}` |" in section, f"{name}.{field} is not in its section"


def test_rest_reference_covers_every_operation(generated: dict[Path, str]) -> None:
    import json

    document = json.loads(generated[Path("docs/reference/openapi.json")])
    page = generated[Path("docs/reference/rest-api.md")]
    for path, item in document["paths"].items():
        for method in item:
            assert f"### `{method.upper()} {path}`" in page, f"{method} {path} is not documented"
    for tag in ("frontend", "monitor", "internal"):
        assert f"{{ #{tag} }}" in page


def test_cli_reference_covers_every_command(generated: dict[Path, str]) -> None:
    from clientswarm.cli import LAZY_COMMANDS, main

    page = generated[Path("docs/reference/cli.md")]
    for name in {*main.commands, *LAZY_COMMANDS}:
        assert f"## clientswarm {name} " in page, f"clientswarm {name} is not documented"
        assert f"Usage: clientswarm {name} " in page


def test_metrics_reference_agrees_with_the_module_table(generated: dict[Path, str]) -> None:
    """The exported families are those the module docstring of service/prometheus.py lists."""
    from clientswarm.service import prometheus

    doc = prometheus.__doc__ or ""
    documented = set(re.findall(r"``(clientswarm_[a-z_]+)``", doc))
    page = generated[Path("docs/reference/metrics.md")]
    exported = set(re.findall(r"^## (clientswarm_[a-z_]+) ", page, flags=re.MULTILINE))
    assert exported, "no metric sections in metrics.md"
    assert exported == documented
