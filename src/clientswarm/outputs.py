"""Where commands write their results, checked before anything runs.

Every path a command writes to is checked up front: a file where a directory is wanted, a
directory that cannot be created or written, a missing parent directory: each is one line
(a :class:`~clientswarm.errors.ConfigError`, exit 2), never a traceback after the run.

``clientswarm run`` never mixes two runs in one directory: a directory that holds an earlier
run's files (:data:`RUN_FILES`) is refused unless ``--overwrite``, which removes exactly those
files first (the user's own files stay). Without ``-o``, each run gets a new directory.

This module stays light (no service code): ``run`` uses it before its workers start.
"""

from __future__ import annotations

import re
import tempfile
from datetime import datetime
from pathlib import Path

from clientswarm.errors import ConfigError

RUN_FILES = (
    "summary.json",
    "timeseries.json",
    "config.json",
    "report.html",
    "samples.jsonl",
    "samples.parquet",
    "samples.csv",
)
"""The files a run writes in its directory (besides its workers' logs); any of them there means
the directory holds an earlier run."""

LOGS_DIR = "logs"
"""The folder of the workers' logs in a run's directory: one folder per cluster id."""

_CLUSTER_ID = re.compile(r"^[0-9a-f]{12}$")
_WORKER_LOG = re.compile(r"^worker-\d+\.log$")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def earlier_run_files(directory: Path) -> list[Path]:
    """The files of an earlier run in ``directory`` (empty when there is none)."""
    found = [directory / name for name in RUN_FILES]
    found.append(directory / ".summary.json.tmp")  # a run stopped while writing it
    return [path for path in found if path.is_file() or path.is_symlink()]


def remove_earlier_run(directory: Path) -> None:
    """Remove what an earlier run wrote in ``directory``: :data:`RUN_FILES` and its workers'
    log folders (``logs/<cluster id>/worker-N.log``); nothing else."""
    for path in earlier_run_files(directory):
        path.unlink()
    logs = directory / LOGS_DIR
    if not logs.is_dir() or logs.is_symlink():
        return
    for cluster in logs.iterdir():
        if not _CLUSTER_ID.match(cluster.name) or cluster.is_symlink() or not cluster.is_dir():
            continue
        for log in cluster.iterdir():
            if _WORKER_LOG.match(log.name) and (log.is_file() or log.is_symlink()):
                log.unlink()
        _remove_if_empty(cluster)
    _remove_if_empty(logs)


def _remove_if_empty(directory: Path) -> None:
    if not any(directory.iterdir()):
        directory.rmdir()


def _writable(directory: Path, label: str) -> None:
    """ConfigError unless a file can be created in ``directory``."""
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ConfigError([f"{label} {directory}: cannot write there: {_why(exc)}"]) from None


def prepare_run_dir(directory: Path, *, overwrite: bool = False, label: str = "--output") -> Path:
    """Make ``directory`` ready for a run's results and return it: created (with its parents)
    if needed, writable, and holding no earlier run (whose files ``overwrite`` removes).
    ConfigError (one line) when it cannot be: ``label`` names the option that gave it."""
    if directory.exists() and not directory.is_dir():
        raise ConfigError([f"{label} {directory}: is a file, not a directory"])
    if directory.is_dir():
        earlier = earlier_run_files(directory)
        if earlier and not overwrite:
            names = ", ".join(path.name for path in earlier)
            raise ConfigError(
                [
                    f"{label} {directory} holds an earlier run ({names}): give another "
                    "directory, or --overwrite to replace that run"
                ]
            )
        if earlier or overwrite:
            try:
                remove_earlier_run(directory)
            except OSError as exc:
                raise ConfigError(
                    [f"{label} {directory}: cannot remove the earlier run: {_why(exc)}"]
                ) from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError([f"{label} {directory}: cannot create it: {_why(exc)}"]) from None
    _writable(directory, label)
    return directory


def new_run_dir(parent: Path, name: str, now: datetime | None = None) -> Path:
    """A new directory ``parent/<name>-<YYYYmmdd-HHMMSS>`` for a run's results, created here:
    a second run in the same second gets ``…-2`` (then ``-3``, …), never the first one's."""
    stamp = f"{name}-{(now or datetime.now()):%Y%m%d-%H%M%S}"
    if parent.exists() and not parent.is_dir():
        raise ConfigError([f"results directory {parent}: is a file, not a directory"])
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError([f"results directory {parent}: cannot create it: {_why(exc)}"]) from None
    for attempt in range(1, 1000):
        directory = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(
                [f"results directory {directory}: cannot create it: {_why(exc)}"]
            ) from None
        _writable(directory, "results directory")
        return directory
    raise ConfigError([f"results directory {parent}: {stamp}-… all exist; give --output"])


def check_output_file(path: Path, *, label: str = "--output") -> None:
    """ConfigError (one line) unless ``path`` can be written as a file: not a directory, in
    an existing, writable directory."""
    if path.is_dir():
        raise ConfigError([f"{label} {path}: is a directory, not a file"])
    parent = path.parent
    if not parent.exists():
        raise ConfigError([f"{label} {path}: no such directory: {parent}"])
    if not parent.is_dir():
        raise ConfigError([f"{label} {path}: {parent} is a file, not a directory"])
    _writable(parent, f"{label} {path}: directory")


__all__ = [
    "LOGS_DIR",
    "RUN_FILES",
    "check_output_file",
    "earlier_run_files",
    "new_run_dir",
    "prepare_run_dir",
    "remove_earlier_run",
]
