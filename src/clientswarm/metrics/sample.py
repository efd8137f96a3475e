"""One measured interaction: timestamps, token counts, outcome.

All ``*_ns`` times are Unix epoch nanoseconds derived from the worker's monotonic clock
(``time.perf_counter_ns()``) plus one wall-clock anchor per worker, so intervals between two
times of one worker are monotonic-clock exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

from clientswarm.config.models import DEFAULT_TARGET

TokenSource = Literal["usage", "tokenizer", "chunks"]
Status = Literal["ok", "error"]

# Error kinds recorded on failed samples; ``http_<status>`` covers every HTTP error status.
ERROR_CONNECTION = "connection"  # refused, reset or dropped before the answer was complete
ERROR_TIMEOUT = "timeout"  # target.timeout_s elapsed
ERROR_STREAM = "stream_error"  # an ``{"error": …}`` event inside an SSE stream
ERROR_PROTOCOL = "protocol"  # the answer was not what the OpenAI API promises
ERROR_CANCELLED = "cancelled"  # the run stopped while the request was in flight
ERROR_CLIENT = "client"  # the interaction itself raised (e.g. a user-defined one)
ERROR_CLIENT_CANCEL = "client_cancel"  # cut on purpose by the group's ``cancel`` (a failure)


def http_error_kind(status: int) -> str:
    """The error kind of an HTTP error status, e.g. ``http_429``."""
    return f"http_{status}"


@dataclass(frozen=True, slots=True)
class Stored:
    """How the store keeps a field where its Python type does not say it all: an integer in 32
    bits, a text of at most ``max_length`` characters (unbounded text without one)."""

    int32: bool = False
    max_length: int | None = None


INT32 = Stored(int32=True)


@dataclass(slots=True)
class Sample:
    """One measured interaction, or one step inside a user-defined interaction (``step``).

    A run of a user-defined interaction records one sample for the whole interaction (named
    after it) plus one per step (``step=True``, named after the step). Group statistics count
    interactions; steps are summarised by name.

    These fields are the one declaration of a sample: the wire columns, the store's columns,
    the Parquet schema and the statistics' dtypes are derived from them
    (:mod:`clientswarm.metrics.fields`), ``Annotated`` saying what the type alone does not.
    """

    group: Annotated[str, Stored(max_length=255)]
    client: Annotated[int, INT32]
    worker: Annotated[int, INT32]
    name: Annotated[str, Stored(max_length=255)]
    scheduled_ns: int
    sent_ns: int
    end_ns: int
    status: Annotated[Status, Stored(max_length=16)] = "ok"
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    input_tokens: Annotated[int | None, INT32] = None
    output_tokens: Annotated[int | None, INT32] = None
    token_source: Annotated[TokenSource | None, Stored(max_length=16)] = None
    itl_s: list[float] = field(default_factory=list)
    error_kind: Annotated[str | None, Stored(max_length=64)] = None
    error_message: str | None = None
    http_status: Annotated[int | None, INT32] = None
    stage: Annotated[int, INT32] = 0
    warmup: bool = False
    #: A step inside a user-defined interaction (a ``ctx.measure`` span or a helper's LLM call),
    #: ``name`` being the step's name. Group statistics count interactions; steps are
    #: summarised by name, under their group's ``steps``.
    step: bool = False
    #: The name of the target the sample's group loads (a key of the configuration's
    #: ``targets``; :data:`~clientswarm.config.models.DEFAULT_TARGET` for the one ``target:``).
    #: The worker sets it on every sample its client emits, whatever the interaction built.
    target: Annotated[str, Stored(max_length=255)] = DEFAULT_TARGET
    #: Which of the target's replicas (its ``urls``, by index) the request went to; 0 for a
    #: target with one URL. Set by the worker, like ``target``.
    replica: Annotated[int, INT32] = 0

    @property
    def ok(self) -> bool:
        """True when the interaction succeeded."""
        return self.status == "ok"

    @property
    def ttft_s(self) -> float | None:
        """Seconds from send to the first content token (see :mod:`clientswarm.metrics.derive`)."""
        return self._derived("ttft_s")

    @property
    def e2e_s(self) -> float:
        """Seconds from send to the end of the answer."""
        value = self._derived("e2e_s")
        assert value is not None
        return value

    @property
    def schedule_lag_s(self) -> float:
        """Seconds the send came after its scheduled time."""
        value = self._derived("schedule_lag_s")
        assert value is not None
        return value

    @property
    def tpot_s(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1); None below two output tokens."""
        return self._derived("tpot_s")

    def _derived(self, metric: str) -> float | None:
        """One derived metric of this sample, by the vectorised definitions the statistics
        use (declared once, in :mod:`clientswarm.metrics.derive`; numpy loads on first use)."""
        from clientswarm.metrics.derive import derived_of  # keeps numpy off the worker's start

        return derived_of(self, metric)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """Rebuild a sample from :meth:`to_dict` output."""
        return cls(**data)
