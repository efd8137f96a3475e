"""What the start-up path of ``clientswarm run`` loads, and the collector pause around it."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clientswarm.imports import NATIVE_THREAD_VARIABLES, collections_paused


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


def blas_threads_in(argv: list[str], env: dict[str, str]) -> str:
    """``OPENBLAS_NUM_THREADS`` as a clientswarm entry point leaves it in its own process."""
    code = (
        "import os, sys\n"
        f"sys.argv = {argv!r}\n"
        "from clientswarm.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS', '-'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return out.stdout.split()[-1]


def test_commands_ask_numpys_blas_for_one_thread_unless_the_user_said(tmp_path: Path) -> None:
    # numpy's OpenBLAS would start a thread per core on import, taking ~0.1 s of CPU from the
    # core the other process of a run is loading its code on.
    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    env = {k: v for k, v in os.environ.items() if k not in NATIVE_THREAD_VARIABLES}
    argv = ["clientswarm", "validate", str(config)]
    assert blas_threads_in(argv, env) == "1"
    assert blas_threads_in(argv, {**env, "OPENBLAS_NUM_THREADS": "4"}) == "4"


def test_the_worker_module_asks_for_one_blas_thread() -> None:
    env = {k: v for k, v in os.environ.items() if k not in NATIVE_THREAD_VARIABLES}
    code = "import os, clientswarm.worker.__main__; print(os.environ['OPENBLAS_NUM_THREADS'])"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    assert out.stdout.split()[-1] == "1"
