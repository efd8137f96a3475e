"""The per-sample values a comparison needs, read from a samples file (Parquet, JSONL or CSV)
as the statistics measure them (:mod:`clientswarm.reports.compare`)."""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from clientswarm.errors import ConfigError

TARGET_GROUP = "target"
"""The one group of a run's target compared alone (``DIR@NAME``)."""


@dataclass(frozen=True, slots=True)
class SampleValues:
    """The per-sample values a comparison needs, measured as the statistics measure them:
    ``ok`` marks the successful interactions outside any warm-up and not cut off by a stop
    (steps of user-defined interactions are left out, as from group statistics)."""

    group: np.ndarray
    stage: np.ndarray
    ok: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    itl_counts: np.ndarray
    itl_values: np.ndarray
    target: np.ndarray | None = None
    """Each sample's target (None: files written before samples named it: all ``default``)."""

    def of_target(self, name: str) -> SampleValues:
        """The samples of target ``name`` only, as one group named :data:`TARGET_GROUP`."""
        mine = (
            np.full(len(self.ok), name == "default", dtype=np.bool_)
            if self.target is None
            else np.asarray(self.target == name, dtype=np.bool_)
        )
        return dataclasses.replace(
            self,
            group=np.full(len(self.ok), TARGET_GROUP, dtype=object),
            stage=np.zeros(len(self.ok), dtype=np.int64),
            ok=self.ok & mine,
        )

    def values(self, metric: str, group: str | None, stage: int | None = None) -> np.ndarray:
        """The values of ``metric`` of the measured samples of ``group`` (every group: None),
        and of ``stage`` when given."""
        rows = self.ok.copy()
        if group is not None:
            rows &= self.group == group
        if stage is not None:
            rows &= self.stage == stage
        if metric == "itl_s":
            gaps: np.ndarray = self.itl_values[np.repeat(rows, self.itl_counts)]
            return gaps
        values: np.ndarray = getattr(self, metric)[rows]
        finite: np.ndarray = values[~np.isnan(values)]
        return finite


def _float(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)


def _truthy(value: Any) -> bool:
    return value in (True, "True", "true", "1", 1)


def _from_rows(rows: Iterable[Mapping[str, Any]], itl_text: bool) -> SampleValues:
    group: list[str] = []
    target: list[str] = []
    stage: list[int] = []
    ok: list[bool] = []
    ttft: list[float] = []
    tpot: list[float] = []
    e2e: list[float] = []
    counts: list[int] = []
    gaps: list[float] = []
    for row in rows:
        raw = row.get("itl_s") or []
        itl: list[Any] = (orjson.loads(str(raw)) if raw else []) if itl_text else list(raw)
        kept = not (
            _truthy(row.get("warmup"))
            or _truthy(row.get("step"))
            or row.get("error_kind") == "cancelled"
        )
        group.append(str(row.get("group")))
        target.append(str(row.get("target") or "default"))
        stage.append(int(row.get("stage") or 0))
        ok.append(kept and row.get("status") == "ok")
        ttft.append(_float(row.get("ttft_s")))
        tpot.append(_float(row.get("tpot_s")))
        e2e.append(_float(row.get("e2e_s")))
        counts.append(len(itl))
        gaps.extend(float(g) for g in itl)
    return SampleValues(
        group=np.array(group, dtype=object),
        stage=np.array(stage, dtype=np.int64),
        ok=np.array(ok, dtype=np.bool_),
        ttft_s=np.array(ttft, dtype=np.float64),
        tpot_s=np.array(tpot, dtype=np.float64),
        e2e_s=np.array(e2e, dtype=np.float64),
        itl_counts=np.array(counts, dtype=np.int64),
        itl_values=np.array(gaps, dtype=np.float64),
        target=np.array(target, dtype=object),
    )


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ConfigError([f"{path}:{number}: not a sample: {exc}"]) from None
            if not isinstance(row, dict):
                raise ConfigError([f"{path}:{number}: not a sample"])
            yield row


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="") as f:
        yield from csv.DictReader(f)


def _parquet_values(path: Path) -> SampleValues:
    import pyarrow.compute as pc  # slow to import: only when a Parquet file is read
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's errors have no common base
        raise ConfigError([f"{path}: not a Parquet samples file: {exc}"]) from None
    present = set(parquet.schema_arrow.names)
    needed = {"group", "status", "ttft_s", "tpot_s", "e2e_s", "itl_s"}
    if not needed <= present:
        missing = ", ".join(sorted(needed - present))
        raise ConfigError([f"{path}: not a samples file of clientswarm (no {missing})"])
    optional = ("stage", "warmup", "step", "error_kind", "target")
    wanted = [*needed, *(c for c in optional if c in present)]
    table = parquet.read(columns=wanted)
    n = table.num_rows

    def column(name: str) -> np.ndarray:
        return np.asarray(table.column(name).to_numpy(zero_copy_only=False))

    def flag(name: str) -> np.ndarray:
        if name not in present:
            return np.zeros(n, dtype=np.bool_)
        return np.asarray(table.column(name).fill_null(False).to_numpy(), dtype=np.bool_)

    excluded = flag("warmup") | flag("step")
    if "error_kind" in present:
        excluded |= np.asarray(column("error_kind") == "cancelled", dtype=np.bool_)
    itl = table.column("itl_s").combine_chunks()
    return SampleValues(
        group=column("group").astype(object),
        stage=(
            np.asarray(table.column("stage").fill_null(0).to_numpy(), dtype=np.int64)
            if "stage" in present
            else np.zeros(n, dtype=np.int64)
        ),
        ok=np.asarray(column("status") == "ok", dtype=np.bool_) & ~excluded,
        ttft_s=np.asarray(table.column("ttft_s").to_numpy(zero_copy_only=False), dtype=float),
        tpot_s=np.asarray(table.column("tpot_s").to_numpy(zero_copy_only=False), dtype=float),
        e2e_s=np.asarray(table.column("e2e_s").to_numpy(zero_copy_only=False), dtype=float),
        itl_counts=np.asarray(pc.list_value_length(itl).fill_null(0).to_numpy(), dtype=np.int64),
        itl_values=np.asarray(itl.flatten().to_numpy(zero_copy_only=False), dtype=float),
        target=column("target").astype(object) if "target" in present else None,
    )


def read_sample_values(path: Path) -> SampleValues:
    """The values of a samples file (``.parquet``, ``.jsonl`` or ``.csv``, by its suffix)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return _parquet_values(path)
        if suffix in (".jsonl", ".ndjson"):
            return _from_rows(_jsonl_rows(path), itl_text=False)
        if suffix == ".csv":
            return _from_rows(_csv_rows(path), itl_text=True)
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
        raise ConfigError([f"{path}: not a samples file of clientswarm: {exc}"]) from None
    raise ConfigError([f"{path}: unknown samples format; expected .parquet, .jsonl or .csv"])
