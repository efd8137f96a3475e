"""Backing off after connection failures: when a client that could not connect sends again.

Without it, a closed-loop client with no think time against a closed port fails, records and
retries as fast as its loop turns (hundreds of thousands of error samples in seconds).

- **What backs off**: a request that got no answer at all because the connection failed:
  refused, reset or dropped before any HTTP status, DNS failure (a sample whose error kind is
  ``connection`` and that has no HTTP status, :func:`failed_to_connect`). HTTP errors, timeouts
  (a connect timeout has already waited ``target.timeout_s``), in-stream errors and protocol
  errors do not: the target answered, or was given all the time it may take.
- **How long**: :data:`BACKOFF_INITIAL_S` after the first failure, doubling with each failure
  in a row up to :data:`BACKOFF_MAX_S`; each wait is drawn uniformly from ``[d/2, d]`` (jitter,
  so clients that failed together do not retry together) from the client's own generator
  (:func:`backoff_rng`, seeded from the cluster seed and the client id, separate from its
  think-time generator so a failure does not change the prompts or think times that follow).
- **Until when**: the first answer of any kind (an HTTP status, even an error, or a success)
  ends it and resets the doubling. A failure that arrives while the client is already backing
  off (another of its requests, sent before or together with the failed one) does not extend it.
- **Timing**: the wait never moves a scheduled time. A closed-loop client's next send is
  scheduled at "answer + think time" as always and goes out when the backoff ends if that is
  later; an open-loop arrival due while its client backs off is held and sent when the backoff
  ends, with its scheduled time kept. Either way the sample's schedule lag (send - scheduled)
  shows the wait, so a run that backed off is flagged as not trustworthy.

Pure: no I/O, no asyncio; the worker (:mod:`clientswarm.worker.runtime`) applies it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from clientswarm.metrics.sample import ERROR_CONNECTION, Sample

BACKOFF_INITIAL_S = 0.05
"""The wait after a client's first connection failure in a row."""

BACKOFF_MAX_S = 5.0
"""The longest wait, however many connection failures in a row."""


def failed_to_connect(sample: Sample) -> bool:
    """Whether ``sample`` is an interaction that got no answer because the connection failed."""
    return sample.error_kind == ERROR_CONNECTION and sample.http_status is None


def backoff_rng(seed: int, client_id: int) -> random.Random:
    """The jitter generator of client ``client_id`` of a cluster seeded with ``seed``."""
    return random.Random(f"clientswarm-backoff:{seed}:{client_id}")


@dataclass(slots=True)
class ConnectBackoff:
    """One client's backoff after connection failures (times in the worker's clock, ns)."""

    rng: random.Random
    initial_s: float = BACKOFF_INITIAL_S
    max_s: float = BACKOFF_MAX_S
    failures: int = 0
    """Connection failures in a row, counting at most one per backoff."""
    until_ns: int = field(default=0)
    """The client sends nothing before this time (0: not backing off)."""

    def delay_s(self) -> float:
        """The longest the current wait may be: ``initial_s * 2**(failures-1)``, capped."""
        if self.failures < 1:
            return 0.0
        # min() before the power would overflow after ~1000 failures; the exponent is capped.
        return min(self.max_s, self.initial_s * 2.0 ** min(self.failures - 1, 64))

    def failed(self, now_ns: int) -> None:
        """A request of this client failed to connect at ``now_ns``: back off from then."""
        if now_ns < self.until_ns:
            return  # already backing off: one failure per backoff doubles it
        self.failures += 1
        bound_s = self.delay_s()
        wait_s = bound_s * (0.5 + 0.5 * self.rng.random())
        self.until_ns = now_ns + int(wait_s * 1e9)

    def answered(self) -> None:
        """A request of this client got an answer: the backoff ends and its doubling restarts."""
        self.failures = 0
        self.until_ns = 0

    def observe(self, sample: Sample) -> None:
        """Update from an interaction's sample (steps of user-defined interactions are not
        interactions and are ignored; so are outcomes that say nothing about connecting)."""
        if sample.step:
            return
        if failed_to_connect(sample):
            self.failed(sample.end_ns)
        elif sample.status == "ok" or sample.http_status is not None:
            self.answered()
