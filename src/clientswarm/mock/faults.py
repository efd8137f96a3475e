"""Injected faults: which one a request gets, and the vLLM-shaped error bodies the mock sends.

Each faultable request makes exactly one uniform draw from the seeded generator; the unit interval
is cut into consecutive slices of width ``error_rate_500``, ``error_rate_429``,
``stream_error_rate`` and ``drop_rate`` (the rest means no fault). What a client sees:

- ``http_500`` / ``http_429``: that status at once, body ``{"object": "error", ...}``.
- ``stream_error``: in a stream, some tokens then ``data: {"error": {...}}`` and ``data: [DONE]``.
  A non-stream request drawn for it gets (and is counted as) ``http_500``.
- ``drop``: the TCP connection is closed: mid-stream after some tokens, or before any response.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import orjson


class FaultKind(enum.StrEnum):
    """A kind of injected fault; the value is its label in stats and metrics."""

    HTTP_500 = "http_500"
    HTTP_429 = "http_429"
    STREAM_ERROR = "stream_error"
    DROP = "drop"


class FaultInjector:
    """Draws at most one fault per request from fixed rates and a seeded generator."""

    __slots__ = ("_edges", "_rng")

    def __init__(
        self,
        rng: np.random.Generator,
        *,
        error_rate_500: float = 0.0,
        error_rate_429: float = 0.0,
        stream_error_rate: float = 0.0,
        drop_rate: float = 0.0,
    ) -> None:
        self._rng = rng
        rates = (
            (FaultKind.HTTP_500, error_rate_500),
            (FaultKind.HTTP_429, error_rate_429),
            (FaultKind.STREAM_ERROR, stream_error_rate),
            (FaultKind.DROP, drop_rate),
        )
        edges: list[tuple[float, FaultKind]] = []
        upper = 0.0
        for kind, rate in rates:
            if rate > 0:
                upper += rate
                edges.append((upper, kind))
        self._edges = tuple(edges)

    @property
    def enabled(self) -> bool:
        """Whether any fault can happen at all."""
        return bool(self._edges)

    def draw(self, *, stream: bool) -> FaultKind | None:
        """The fault for the next request (``None``: answer it properly)."""
        if not self._edges:
            return None
        u = float(self._rng.random())
        for upper, kind in self._edges:
            if u < upper:
                if kind is FaultKind.STREAM_ERROR and not stream:
                    return FaultKind.HTTP_500
                return kind
        return None


def fault_after_tokens(tokens: int) -> int:
    """After how many streamed tokens a mid-stream fault strikes (at least one, at most all)."""
    return max(1, tokens // 2)


_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 429: "TooManyRequestsError"}


def error_type(status: int) -> str:
    """The vLLM error ``type`` for an HTTP status."""
    return _ERROR_TYPES.get(status, "InternalServerError")


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    """The vLLM JSON error body: ``{"object": "error", "message", "type", "param", "code"}``."""
    body: dict[str, Any] = {
        "object": "error",
        "message": message,
        "type": error_type(status),
        "param": param,
        "code": status,
    }
    return orjson.dumps(body)


def stream_error_event(message: str, status: int = 500) -> bytes:
    """The in-stream error event ``data: {"error": {...}}`` (without the trailing ``[DONE]``)."""
    error = {"message": message, "type": error_type(status), "param": None, "code": status}
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"
