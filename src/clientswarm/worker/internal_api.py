"""The worker's HTTP client of the service's internal API (:mod:`clientswarm.protocol.internal`):
one call at a time, with retries, and the errors that end a worker.

Retries (:class:`RetryPolicy`: 0.2 s doubling to at most 5 s, each delay jittered down by up to
half so a restarted service is not hit by the whole fleet at once; a Retry-After the service
sends is waited at least, spread over up to half again). Connection errors, timeouts and HTTP
408, 425, 429 and 5xx are transient:

- ``register`` retries for ``register_timeout_s`` (120 s), then fails: the URL is probably wrong;
- assignment polls, sample batches and ``/finish`` retry indefinitely (or for
  ``outage_limit_s`` when set), because the service may be restarting and nothing
  unacknowledged may be dropped; a batch keeps its ``seq`` until acknowledged;
- a heartbeat that fails is logged and the next one goes out one interval later: never fatal.

Errors, all :class:`~clientswarm.errors.WorkerError`::

    ServiceAuthError         401/403: the token is missing or wrong (fatal, on any call)
    ServiceRejectedError     any other refusal or a malformed answer (fatal, except heartbeats)
    ServiceUnreachableError  still unreachable after the allowed time
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from clientswarm.errors import WorkerError
from clientswarm.protocol.internal import TOKEN_ENV, worker_path

log = logging.getLogger("clientswarm.worker")

M = TypeVar("M", bound=BaseModel)

TRANSIENT_STATUSES = frozenset({408, 425, 429})
MAX_RETRY_AFTER_S = 30.0
"""The longest Retry-After a worker honours (the service says 1 to 30 s)."""
_BODY_TAIL_CHARS = 300


class ServiceAuthError(WorkerError):
    """The service refused the worker's token (HTTP 401 or 403)."""


class ServiceRejectedError(WorkerError):
    """The service refused a call for good, or answered something the protocol does not allow."""


class ServiceUnreachableError(WorkerError):
    """The service could not be reached (or kept failing) for longer than allowed."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff: ``initial_s * factor**(attempt-1)``, at most ``max_s``.

    Each delay is shortened by a random fraction of up to ``jitter``.
    """

    initial_s: float = 0.2
    max_s: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))
        return delay * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class WorkerEndpoint:
    """Who this worker is to the service: its URL, cluster, index and the cluster's token."""

    service_url: str
    cluster_id: str
    index: int
    token: str = field(repr=False)  # never in logs

    def url(self, action: str) -> str:
        """The absolute URL of one internal call, e.g. ``…/workers/0/register``."""
        return self.service_url.rstrip("/") + worker_path(self.cluster_id, self.index, action)

    @classmethod
    def from_env(cls, service_url: str, cluster_id: str, index: int) -> WorkerEndpoint:
        """An endpoint whose token comes from :data:`TOKEN_ENV`; a WorkerError when unset."""
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            raise WorkerError(
                f"{TOKEN_ENV} is not set: the worker needs its cluster's token in that "
                "environment variable (the spawner sets it)"
            )
        return cls(service_url, cluster_id, index, token)


@dataclass(frozen=True, slots=True)
class ServiceWorkerOptions:
    """How patient the worker is with the service (see the module docstring).

    ``request_timeout_s`` bounds one HTTP call (a heartbeat: twice the interval, 2 s at least);
    ``outage_limit_s`` ``None`` retries batches, polls and ``/finish`` for as long as it takes.
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    register_timeout_s: float = 120.0
    request_timeout_s: float = 30.0
    outage_limit_s: float | None = None


class InternalApiClient:
    """Calls of the internal API with retries; remembers the first fatal error.

    Once :attr:`failure` is set (by an auth error here, or by a caller through :meth:`fail`)
    every later call raises it at once and :attr:`failed` is set, so the worker stops.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: WorkerEndpoint,
        options: ServiceWorkerOptions,
    ) -> None:
        self._session = session
        self._endpoint = endpoint
        self._options = options
        self._rng = random.Random()
        self.failure: WorkerError | None = None
        self.failed = asyncio.Event()

    def fail(self, exc: WorkerError) -> WorkerError:
        """Record ``exc`` as the worker's fatal error (the first one wins); return it."""
        if self.failure is None:
            self.failure = exc
            self.failed.set()
        return self.failure

    async def call(
        self,
        method: str,
        action: str,
        body: bytes | None = None,
        *,
        accept: Collection[int] = (200,),
        retry: bool = True,
        limit_s: float | None = None,
        timeout_s: float | None = None,
        media_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """One call; return ``(status, body)`` for a status in ``accept``.

        Transient failures are retried per the policy while ``retry`` (for ``limit_s``, by
        default the options' ``outage_limit_s``; ``None`` is forever); without ``retry`` the
        first one raises :class:`ServiceUnreachableError`.
        """
        url = self._endpoint.url(action)
        what = f"{method} {url}"
        limit_s = self._options.outage_limit_s if limit_s is None else limit_s
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._options.request_timeout_s)
        first_failure: float | None = None
        attempt = 0
        while True:
            if self.failure is not None:
                raise self.failure
            attempt += 1
            asked_wait_s: float | None = None
            try:
                async with self._session.request(
                    method, url, data=body, headers=self._headers(body, media_type), timeout=timeout
                ) as response:
                    status, data = response.status, await response.read()
                    asked_wait_s = _retry_after_s(response.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if status in accept:
                    if attempt > 1:
                        log.info("%s succeeded after %d attempts", what, attempt)
                    return status, data
                if status in (401, 403):
                    raise self.fail(_auth_error(status, what, data))
                if status < 500 and status not in TRANSIENT_STATUSES:
                    raise ServiceRejectedError(
                        f"the service refused {what}: HTTP {status} {tail(data)}"
                    )
                problem = f"HTTP {status} {tail(data)}"
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            if not retry or (limit_s is not None and now - first_failure >= limit_s):
                waited = f" for {now - first_failure:.0f} s" if retry else ""
                raise ServiceUnreachableError(
                    f"the service did not answer {what}{waited} ({attempt} attempt(s); last "
                    f"error: {problem}); check that it runs and that the worker can reach it"
                )
            if attempt == 1 or attempt % 10 == 0:
                log.warning("%s failed (attempt %d: %s); retrying", what, attempt, problem)
            delay_s = self._options.retry.delay_s(attempt, self._rng)
            if asked_wait_s is not None:  # the service said when: not before (spread out)
                delay_s = max(delay_s, asked_wait_s * self._rng.uniform(1.0, 1.5))
            await asyncio.sleep(delay_s)

    def _headers(self, body: bytes | None, media_type: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._endpoint.token}"}
        if body is not None:
            headers["Content-Type"] = media_type
        return headers


def parse_reply(model: type[M], data: bytes, what: str) -> M:
    """Validate a reply of the service; a malformed one is a :class:`ServiceRejectedError`."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise ServiceRejectedError(
            f"the service's answer to {what} is not a valid {model.__name__}: "
            f"{exc.errors()[0]['msg']} {tail(data)}"
        ) from exc


def _retry_after_s(value: str | None) -> float | None:
    """A Retry-After header's delay in seconds (at most :data:`MAX_RETRY_AFTER_S`), or None
    when absent or not a number of seconds."""
    try:
        return None if value is None else min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None


def tail(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= _BODY_TAIL_CHARS else text[:_BODY_TAIL_CHARS] + "…"


def _auth_error(status: int, what: str, data: bytes) -> ServiceAuthError:
    reason = "no token reached it" if status == 401 else "the token is not this cluster's"
    return ServiceAuthError(
        f"the service refused the worker's token on {what} (HTTP {status}: {reason}) "
        f"{tail(data)}; {TOKEN_ENV} must hold the token the service gave this cluster"
    )


__all__ = [
    "TRANSIENT_STATUSES",
    "InternalApiClient",
    "RetryPolicy",
    "ServiceAuthError",
    "ServiceRejectedError",
    "ServiceUnreachableError",
    "ServiceWorkerOptions",
    "WorkerEndpoint",
    "parse_reply",
    "tail",
]
