"""Inter-token latencies packed as little-endian float64: the store's column and the tail of a
packed sample batch (:mod:`clientswarm.metrics.wire`).

Exact, 8 bytes per gap (a third of JSON text), and packed or unpacked in about a microsecond
for 64 gaps.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=4096)
def float64s(count: int) -> struct.Struct:
    """The ``struct`` of ``count`` little-endian float64 values (``<Nd``)."""
    return struct.Struct(f"<{count}d")


def pack_itl(itl_s: Sequence[float]) -> bytes:
    """Inter-token latencies as little-endian float64 bytes."""
    return float64s(len(itl_s)).pack(*itl_s) if itl_s else b""


def unpack_itl(data: bytes | None) -> list[float]:
    """The inverse of :func:`pack_itl` (``None`` or empty → ``[]``)."""
    if not data:
        return []
    if len(data) % 8:
        raise ValueError(f"itl_s must be packed float64 values, got {len(data)} bytes")
    return list(float64s(len(data) // 8).unpack(data))


__all__ = ["float64s", "pack_itl", "unpack_itl"]
