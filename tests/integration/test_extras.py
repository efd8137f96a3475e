"""The optional extras: the base install runs ``run`` and ``serve`` on SQLite, and a feature that
needs an extra that is not installed says which, in one line, when its configuration is checked.

Real ``clientswarm`` processes run without the extras' packages: a ``sitecustomize`` put first
on their ``PYTHONPATH`` sets ``sys.modules[name] = None`` for each, so that importing one fails
as it does where it is not installed (the dev install has every extra; a fresh venv with the
base install takes half a minute to install). Workers of the local spawner start with the
service's minimal environment, without that ``PYTHONPATH``: what is checked here is the
command, the service and its store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service_process import ServiceProcess

CLI = Path(sys.executable).parent / "clientswarm"

BLOCKER = """\
import os
import sys

for name in os.environ.get("CLIENTSWARM_TEST_BLOCKED", "").split(","):
    if name:
        sys.modules[name] = None  # import name now raises ImportError, as when not installed
"""

KUBERNETES = """\
name: pods
target: {url: "http://127.0.0.1:9", model: mock-model}
spawner: {kind: kubernetes, workers: 1, image: "clientswarm:latest"}
groups:
  - name: hello
    interaction: {kind: hello}
    load: {kind: open, rate: 1, arrival: constant}
    stop: {duration_s: 1}
"""

LOCAL = """\
name: base
target: {url: "http://127.0.0.1:9", model: mock-model}
spawner: {kind: local, workers: 1}
groups:
  - name: hello
    interaction: {kind: hello}
    load: {kind: open, rate: 5, arrival: constant}
    stop: {duration_s: 1}
"""

KUBERNETES_EXTRA = "pip install 'clientswarm[kubernetes]'"
POSTGRES_EXTRA = "pip install 'clientswarm[postgres]'"

pytestmark = pytest.mark.skipif(not CLI.exists(), reason=f"{CLI} is not installed")


def without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """The environment of a process in which ``modules`` cannot be imported."""
    site = tmp_path / "blocked-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "CLIENTSWARM_TEST_BLOCKED": ",".join(modules)}


def clientswarm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_the_blocker_makes_the_packages_unimportable(tmp_path: Path) -> None:
    # Else every test below could pass with the packages loaded after all; and the dev install
    # (make test) has every extra, so without the blocker they load.
    code = (
        "try:\n    import {}\nexcept ImportError:\n    print('missing')\nelse:\n    print('loaded')"
    )
    for module in ("lightkube", "psycopg"):
        for env, expected in (
            (without(tmp_path, "lightkube", "psycopg"), "missing"),
            (None, "loaded"),
        ):
            result = subprocess.run(
                [sys.executable, "-c", code.format(module)], env=env, capture_output=True, text=True
            )
            assert result.stdout.strip() == expected, (module, result.stderr)


def test_a_postgresql_store_without_psycopg_names_the_extra(tmp_path: Path) -> None:
    env = without(tmp_path, "psycopg")
    result = clientswarm(
        env,
        "serve",
        "--store",
        "postgresql://bench:secret@127.0.0.1:9/clientswarm",
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        "0",
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the store postgresql://bench:***@127.0.0.1:9/clientswarm ")
    assert line.endswith(POSTGRES_EXTRA)
    assert "secret" not in line


def test_running_a_kubernetes_config_without_lightkube_names_the_extra(tmp_path: Path) -> None:
    config = tmp_path / "pods.yaml"
    config.write_text(KUBERNETES)
    env = without(tmp_path, "lightkube")
    for command in (
        ["run", str(config), "--output", str(tmp_path / "out")],
        ["render", str(config)],
    ):
        result = clientswarm(env, *command)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.splitlines() == [
            "error: spawner.kind: 'kubernetes' needs the lightkube package, which is not "
            f"installed here: {KUBERNETES_EXTRA}"
        ], command
    assert not (tmp_path / "out").exists(), "the run started before the check"


def test_the_service_answers_422_for_a_kubernetes_config_without_lightkube(
    tmp_path: Path,
) -> None:
    env = without(tmp_path, "lightkube", "psycopg")
    with ServiceProcess(tmp_path / "data", env=env) as service:
        for path in ("/validate", "/clusters"):
            status, body = service.api("POST", path, KUBERNETES, content_type="application/yaml")
            assert status == 422, body
            message = body["error"]["message"]
            assert message.startswith("invalid configuration: spawner.kind: 'kubernetes' ")
            assert message.endswith(KUBERNETES_EXTRA)
        status, clusters = service.api("GET", "/clusters")
        assert (status, clusters) == (200, []), "nothing was created"


def test_the_base_install_runs_a_local_cluster_on_sqlite(tmp_path: Path) -> None:
    config = tmp_path / "base.yaml"
    config.write_text(LOCAL)
    env = without(tmp_path, "lightkube", "psycopg", "opentelemetry.proto")
    out = tmp_path / "out"
    result = clientswarm(env, "run", str(config), "--mock", "--output", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "summary.json").exists()
