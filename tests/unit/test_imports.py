"""What the start-up path of ``clientswarm run`` loads, and the collector pause around it."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from clientswarm.imports import collections_paused


def loaded_after(*modules: str) -> set[str]:
    """Top-level packages loaded by a fresh interpreter importing ``modules``."""
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def test_the_service_and_run_start_without_rich_or_pyarrow() -> None:
    # Both load only once the workers have sent their first requests: the progress line, the
    # report and a Parquet file come later (bench/startup.py measures the start-up).
    loaded = loaded_after("clientswarm.run.cli", "clientswarm.run.local", "clientswarm.service.app")
    assert "fastapi" in loaded  # the check sees what was imported
    assert not loaded & {"rich", "pyarrow"}, loaded & {"rich", "pyarrow"}


def test_run_starts_its_workers_before_it_loads_the_service() -> None:
    # What ``clientswarm run`` loads until its workers have started: the workers load their
    # stack meanwhile, so none of the service's belongs here.
    loaded = loaded_after(
        "clientswarm.run.cli", "clientswarm.run.start", "clientswarm.config.loader"
    )
    assert "pydantic" in loaded
    service = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "aiohttp", "numpy", "rich"}
    assert not loaded & service, loaded & service


def test_validating_a_configuration_loads_no_client_or_numeric_stack() -> None:
    loaded = loaded_after("clientswarm.config.loader")
    assert "pydantic" in loaded
    assert not loaded & {"aiohttp", "numpy", "fastapi", "sqlalchemy"}


@pytest.mark.parametrize("enabled", [True, False])
def test_collections_paused_restores_the_collector_state(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with collections_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), collections_paused():
            raise RuntimeError("an import failed")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
