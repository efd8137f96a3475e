"""One measured interaction: timestamps, token counts, outcome.

All ``*_ns`` times are Unix epoch nanoseconds derived from the worker's monotonic clock
(``time.perf_counter_ns()``) plus one wall-clock anchor per worker, so intervals between two
times of one worker are monotonic-clock exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

TokenSource = Literal["usage", "tokenizer", "chunks"]
Status = Literal["ok", "error"]

# Error kinds recorded on failed samples; ``http_<status>`` covers every HTTP error status.
ERROR_CONNECTION = "connection"  # refused, reset or dropped before the answer was complete
ERROR_TIMEOUT = "timeout"  # target.timeout_s elapsed
ERROR_STREAM = "stream_error"  # an ``{"error": …}`` event inside an SSE stream
ERROR_PROTOCOL = "protocol"  # the answer was not what the OpenAI API promises
ERROR_CANCELLED = "cancelled"  # the run stopped while the request was in flight
ERROR_CLIENT = "client"  # the interaction itself raised (e.g. a user-defined one)


def http_error_kind(status: int) -> str:
    """The error kind of an HTTP error status, e.g. ``http_429``."""
    return f"http_{status}"


@dataclass(slots=True)
class Sample:
    """One measured interaction, or one step inside a user-defined interaction (``step``).

    A run of a user-defined interaction records one sample for the whole interaction (named
    after it) plus one per step (``step=True``, named after the step). Group statistics count
    interactions; steps are summarised by name.
    """

    group: str
    client: int
    worker: int
    name: str
    scheduled_ns: int
    sent_ns: int
    end_ns: int
    status: Status = "ok"
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    token_source: TokenSource | None = None
    itl_s: list[float] = field(default_factory=list)
    error_kind: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    stage: int = 0
    warmup: bool = False
    #: A step inside a user-defined interaction (a ``ctx.measure`` span or a helper's LLM call),
    #: ``name`` being the step's name. Group statistics count interactions; steps are
    #: summarised by name, under their group's ``steps``.
    step: bool = False

    @property
    def ok(self) -> bool:
        """True when the interaction succeeded."""
        return self.status == "ok"

    @property
    def ttft_s(self) -> float | None:
        """Seconds from send to the first content token."""
        if self.first_token_ns is None:
            return None
        return (self.first_token_ns - self.sent_ns) / 1e9

    @property
    def e2e_s(self) -> float:
        """Seconds from send to the end of the answer."""
        return (self.end_ns - self.sent_ns) / 1e9

    @property
    def schedule_lag_s(self) -> float:
        """Seconds the send came after its scheduled time."""
        return (self.sent_ns - self.scheduled_ns) / 1e9

    @property
    def tpot_s(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1); None below two output tokens."""
        ttft = self.ttft_s
        if ttft is None or self.output_tokens is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - ttft) / (self.output_tokens - 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """Rebuild a sample from :meth:`to_dict` output."""
        return cls(**data)
