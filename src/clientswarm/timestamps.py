"""Wall-clock instants as the summary and the API show them: RFC 3339 strings in UTC.

The store keeps epoch seconds (floats); every document a user reads (``summary.json``,
``GET …/results``, the cluster views) shows them as ``2026-12-07T05:13:18.123Z``: UTC,
millisecond precision, ``Z`` suffix, which every JSON consumer and ``date -d`` parses.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(epoch_s: float | None) -> str | None:
    """``epoch_s`` (Unix seconds) as an RFC 3339 UTC string with milliseconds; None stays None."""
    if epoch_s is None:
        return None
    instant = datetime.fromtimestamp(epoch_s, tz=UTC)
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_s(text: str) -> float:
    """The Unix seconds of an RFC 3339 string (as :func:`rfc3339` writes it, or any offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


__all__ = ["epoch_s", "rfc3339"]
