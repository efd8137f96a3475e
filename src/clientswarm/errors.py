"""Exceptions raised by clientswarm.

The tree: each class, the module that defines it (none: this one) and what it means. A built-in
in parentheses is a second base, kept so that an ``except`` of it written before the class
joined the tree still catches it::

    ClientswarmError                         the root: catch it to handle every clientswarm failure
    ├── ConfigError                          a configuration is invalid (one line per problem)
    ├── SpawnerError                         a spawner could not start, follow or stop its workers
    ├── WorkerError                          a worker failed to run its assignment
    │   ├── ServiceAuthError                 worker.internal_api: the service refused the token
    │   ├── ServiceRejectedError             worker.internal_api: a call refused for good
    │   └── ServiceUnreachableError          worker.internal_api: the service did not answer
    ├── StoreError                           store.records: the store refused an operation
    │   ├── StoreUnavailable                 store.records: the database failed (retry)
    │   ├── StoreInUse                       store.records: another service owns the store
    │   └── BatchRejected                    store.records: the database refused a batch's value
    ├── BatchFormatError (ValueError)        metrics.wire: a sample batch in no valid form
    ├── TickFormatError (ValueError)         metrics.ticks: a worker's tick of tallies, invalid
    ├── SampleFileError                      reports.samplefiles: a sample file unreadable
    ├── NotFound                             service.reads: no such cluster, client, group (404)
    ├── Conflict                             service.manager: not in the cluster's status (409)
    ├── Gone                                 service.manager: the cluster let the worker go (410)
    ├── Busy                                 service.manager: at an operator's limit (429)
    ├── IngestBusy                           service.ingest: too many batches to commit (503)
    ├── PresetError (ValueError)             service.presets: a spawner preset cannot be used
    ├── TargetError                          interactions.streaming: the target answered an error
    │   └── HttpStatusError                  interactions.user: an HTTP error status (check=True)
    ├── Http1Error                           interactions.http1: an answer that is not HTTP/1.1
    ├── ConnectionDropped (ConnectionError)  interactions.http1: closed mid-answer
    ├── EventTooLarge (ValueError)           interactions.sse: an SSE event past its bound
    ├── StepFailed                           interactions.user: a step of a user journey failed
    ├── ScrapeFailed                         enginescrape: an engine's metrics page unread
    ├── ExportFailed                         service.telemetry: an OTLP export not accepted
    ├── ThresholdError (ValueError)          a threshold expression that is not valid
    └── InvalidRequest (ValueError)          mock.wire: a request the mock target cannot serve

Where a class is caught, not its place in the tree, decides what it does. ``TargetError``,
``Http1Error``, ``ConnectionDropped`` and ``EventTooLarge`` are raised while one request is
performed and caught there: they become a failed sample, its error kind decided by
:func:`clientswarm.interactions.http.classify_exception` (which tests the specific classes,
never the root). ``ScrapeFailed`` becomes an ``engine_metrics`` event of the cluster (the run
goes on), ``ExportFailed`` a ``telemetry`` event. ``ThresholdError`` becomes a line of a
``ConfigError`` (the configuration's ``thresholds``). ``StepFailed`` fails the journey of a
user-defined interaction unless the interaction catches it. ``BatchFormatError`` is a 422 of
the internal API, ``InvalidRequest`` a 400 of the mock target. None of them reaches the CLI's
handler of ``ClientswarmError``.

Private signals stay out of the tree on purpose and derive from ``Exception``:
``_DuplicateKey`` and ``_OutOfBounds`` (config.loader), ``_DatasetProblems``
(interactions.prompts), ``_TooLarge`` (service.bodylimit) and ``_NoAnswer`` (preflight).
Each carries a result from a ``raise`` to the one ``except`` of its own module that turns it
into a ``ConfigError``, an answer or a failed check; outside the tree, no handler of
``ClientswarmError`` on the way can take it instead.

A failed request against the target is never an exception that ends the run: it is a recorded
sample with ``status == "error"`` and an ``error_kind``.
"""

from __future__ import annotations


class ClientswarmError(Exception):
    """Root of every error raised by clientswarm."""


class ConfigError(ClientswarmError):
    """A configuration is invalid; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        self.locations: list[dict[str, object]] | None = None
        """Where each problem is in the text it came from (``message``, ``line``,
        ``column``), when that text was at hand (:mod:`clientswarm.config.locate`)."""
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


class FileProblems:
    """The problems of a file, one per bad line or entry: the first ``limit`` of them, then
    how many more there are (a file with a thousand bad lines gives six lines, not a page)."""

    def __init__(self, limit: int = 5) -> None:
        self.limit = limit
        self.first: list[str] = []
        self.total = 0

    def add(self, problem: str) -> None:
        """Note one more problem."""
        self.total += 1
        if len(self.first) < self.limit:
            self.first.append(problem)

    @property
    def lines(self) -> list[str]:
        """The problems to show, ending with ``… and N more`` when some are left out."""
        more = self.total - len(self.first)
        return self.first + ([f"… and {more} more"] if more else [])


class SpawnerError(ClientswarmError):
    """A spawner could not start, follow or stop its workers."""


class WorkerError(ClientswarmError):
    """A worker failed to run its assignment."""


class ThresholdError(ClientswarmError, ValueError):
    """A threshold expression that is not valid (:mod:`clientswarm.thresholds`); the message
    says what is wrong and what is valid."""
