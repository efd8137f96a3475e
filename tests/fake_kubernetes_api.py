"""A FAKE Kubernetes API server for the tests: not Kubernetes, only enough of it to test against.

No real Kubernetes can run where the tests run, so :class:`FakeKubernetesApi` serves a small,
stateful imitation of the Kubernetes REST API over real HTTP on 127.0.0.1, for clients such as
``lightkube.AsyncClient`` loaded from :meth:`FakeKubernetesApi.write_kubeconfig`. It runs an
aiohttp server on its own event loop in a background thread, and runs each pod's first container
as a real child process on this machine.

What it serves (namespaced only; everything else is a 404 ``Status``):

* Secrets (core v1): create, get, list, merge patch, delete.
* Jobs (batch/v1, ``completionMode: Indexed`` only): create, get, list, delete (with
  ``propagationPolicy`` Foreground, Background or Orphan, Orphan being the batch/v1 default).
* Pods (core v1): get, list, and the ``log`` subresource.

A job controller creates one pod per completion index, runs its container
(``command`` + ``args``; ``command[0]`` may be rewritten, e.g. ``python`` to this interpreter),
and keeps pod and Job status up to date with real field names: phases, container states, Job
conditions, ``completedIndexes``/``failedIndexes``, ``activeDeadlineSeconds``,
``ttlSecondsAfterFinished``, ``backoffLimit``/``backoffLimitPerIndex``. It never retries a failed
pod. Owned objects are garbage-collected when their owners are gone. Errors are real ``Status``
objects (401, 403 for the ``forbidden`` verbs, 404, 405, 409, 415, 422).

Scenario controls (:meth:`FakeKubernetesApi.oom_kill`, :meth:`FakeKubernetesApi.evict`), state
inspection (:meth:`FakeKubernetesApi.objects`, :attr:`FakeKubernetesApi.requests`) and
:meth:`FakeKubernetesApi.wait_until` are for the test thread. The pytest fixture
``fake_kubernetes`` yields a started fake and stops it after the test.

Not emulated: watches, other resources and verbs, images (containers need a ``command``; an
image named ``fake.invalid/...`` fails to pull by default), volumes, resource limits, container
restarts, ``podFailurePolicy``, ``successPolicy``, ``suspend`` (those three are rejected with 422).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import pytest
import yaml
from aiohttp import web

Obj = dict[str, Any]

USER = "system:serviceaccount:clientswarm:clientswarm"
NODE_NAME = "fake-node"
NODE_IP = "127.0.0.1"
TICK_S = 0.02
MAX_INT32 = 2147483647
DEFAULT_GRACE_S = 30
EVICTION_GRACE_S = 2.0
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PATH = re.compile(
    r"^/(api/v1|apis/batch/v1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?$"
)
_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")
_SELECTOR_REQUIREMENT = re.compile(
    r"^\s*(?P<not>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|!=|=)\s*(?P<value>[A-Za-z0-9_.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True)
class _Resource:
    plural: str
    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``jobs.batch`` or ``pods``, as error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Job.batch`` or ``Secret``, as validation errors name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def prefix(self) -> str:
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"


JOBS = _Resource("jobs", "batch", "v1", "Job")
PODS = _Resource("pods", "", "v1", "Pod")
SECRETS = _Resource("secrets", "", "v1", "Secret")
_RESOURCES = {r.plural: r for r in (JOBS, PODS, SECRETS)}

# (resource, named, subresource) -> {HTTP method: verb}
_VERBS: dict[tuple[str, bool, str | None], dict[str, str]] = {
    ("secrets", False, None): {"GET": "list", "POST": "create"},
    ("secrets", True, None): {"GET": "get", "PATCH": "patch", "DELETE": "delete"},
    ("jobs", False, None): {"GET": "list", "POST": "create"},
    ("jobs", True, None): {"GET": "get", "DELETE": "delete"},
    ("pods", False, None): {"GET": "list"},
    ("pods", True, None): {"GET": "get"},
    ("pods", True, "log"): {"GET": "get"},
}


@dataclass
class RecordedRequest:
    """One request the fake answered (``path`` without the query string)."""

    method: str
    path: str
    query: dict[str, str]
    status: int


# --------------------------------------------------------------------------- errors


class _ApiError(Exception):
    """Answered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _details(resource: _Resource, name: str | None = None, **extra: Any) -> Obj:
    details: Obj = {}
    if name:
        details["name"] = name
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.plural
    details.update(extra)
    return details


def _not_found(resource: _Resource, name: str) -> _ApiError:
    return _ApiError(
        404, "NotFound", f'{resource.qualified} "{name}" not found', _details(resource, name)
    )


def _bad_request(message: str) -> _ApiError:
    return _ApiError(400, "BadRequest", message)


@dataclass
class _FieldError:
    field: str
    kind: str  # "Required value" | "Invalid value" | "Unsupported value" | "Forbidden"
    detail: str
    value: Any = None

    _CAUSES = {
        "Required value": "FieldValueRequired",
        "Invalid value": "FieldValueInvalid",
        "Unsupported value": "FieldValueNotSupported",
        "Forbidden": "FieldValueForbidden",
    }

    def message(self) -> str:
        if self.kind in ("Invalid value", "Unsupported value"):
            return f"{self.kind}: {json.dumps(self.value)}: {self.detail}"
        return f"{self.kind}: {self.detail}"

    def cause(self) -> Obj:
        return {"reason": self._CAUSES[self.kind], "message": self.message(), "field": self.field}


def _invalid(resource: _Resource, name: str, errors: list[_FieldError]) -> _ApiError:
    texts = [f"{e.field}: {e.message()}" for e in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: Obj = {"name": name} if name else {}
    if resource.group:
        details["group"] = resource.group
    details["kind"] = resource.kind
    details["causes"] = [e.cause() for e in errors]
    return _ApiError(
        422, "Invalid", f'{resource.qualified_kind} "{name}" is invalid: {joined}', details
    )


class _ConfigError(Exception):
    """A container cannot be created from its configuration (``CreateContainerConfigError``)."""


# --------------------------------------------------------------------------- helpers


def _rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _rfc3339_nano(t: float) -> str:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


def _intervals(indexes: Iterable[int]) -> str:
    """Kubernetes' compressed index list: ``0-2,5``; two neighbours are written ``3,4``."""
    parts: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = ordered[i], ordered[j]
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}")
        i = j + 1
    return ",".join(parts)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: Obj = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, ``$$`` is a literal ``$``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if text[i + 1] == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env[name] if name in env else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _split_selector(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


@dataclass(frozen=True)
class _Requirement:
    """One requirement of a selector: ``op`` is exists, !exists, =, !=, in or notin."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, found: str | None) -> bool:
        if self.op == "exists":
            return found is not None
        if self.op == "!exists":
            return found is None
        if self.op in ("=", "in"):
            return found in self.values
        return found not in self.values  # "!=" and "notin" also match a missing key


def _label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate for a label selector (equality and set-based forms)."""
    requirements: list[_Requirement] = []
    for part in _split_selector(selector):
        match = _SELECTOR_REQUIREMENT.match(part)
        if match is None or (match["not"] and (match["op"] or match["setop"])):
            raise _bad_request(f"unable to parse requirement: {part!r}: invalid label selector")
        key = match["key"]
        if match["not"]:
            requirements.append(_Requirement(key, "!exists"))
        elif match["op"]:
            op = "=" if match["op"] in ("=", "==") else "!="
            requirements.append(_Requirement(key, op, frozenset({match["value"]})))
        elif match["setop"]:
            values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(_Requirement(key, match["setop"], values))
        else:
            requirements.append(_Requirement(key, "exists"))

    def matches(labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels.get(r.key)) for r in requirements)

    return matches


_FIELD_SELECTORS: dict[str, frozenset[str]] = {
    "pods": frozenset({"status.phase", "spec.nodeName", "spec.restartPolicy", "status.podIP"}),
    "secrets": frozenset({"type"}),
    "jobs": frozenset({"status.successful"}),
}


def _field_value(obj: Obj, path: str) -> str:
    if path == "status.successful":
        return str(obj.get("status", {}).get("succeeded", 0))
    node: Any = obj
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return "" if node is None else str(node)


def _field_matcher(resource: _Resource, selector: str) -> Callable[[Obj], bool]:
    """A predicate for a field selector (``=``, ``==``, ``!=`` on the supported fields)."""
    requirements: list[_Requirement] = []
    allowed = _FIELD_SELECTORS[resource.plural] | {"metadata.name", "metadata.namespace"}
    for part in _split_selector(selector):
        match = re.match(r"^\s*([A-Za-z.]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if match is None:
            raise _bad_request(f"invalid field selector: {part!r}")
        path, op, value = match.groups()
        if path not in allowed:
            raise _bad_request(f"field label not supported: {path}")
        requirements.append(_Requirement(path, "!=" if op == "!=" else "=", frozenset({value})))

    def matches(obj: Obj) -> bool:
        return all(r.matches(_field_value(obj, r.key)) for r in requirements)

    return matches


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _condition(
    ctype: str, status: str, reason: str | None, message: str | None, *, probed: bool = False
) -> Obj:
    """A condition; Job conditions carry a ``lastProbeTime``, pod conditions a null one."""
    now = _rfc3339()
    cond: Obj = {"type": ctype, "status": status, "lastProbeTime": now if probed else None}
    cond["lastTransitionTime"] = now
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


# --------------------------------------------------------------------------- runtime state


@dataclass
class _LogLine:
    mono: float
    wall: float
    text: str


@dataclass
class _Pod:
    """What the fake kubelet knows about one pod, beyond its API object."""

    namespace: str
    name: str
    uid: str
    job_uid: str | None
    index: int | None
    work_dir: Path
    log_path: Path
    container: str
    image: str
    state: str = "waiting"  # "waiting" | "running" | "terminated"
    waiting_reason: str = "ContainerCreating"
    waiting_message: str | None = None
    pull_failed_at: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    container_id: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None
    terminated_message: str | None = None
    oom_killed: bool = False
    evicted_message: str | None = None
    deleting: bool = False
    kill_at: float | None = None
    counted: bool = False
    start_time: str = field(default_factory=_rfc3339)
    conditions: dict[str, Obj] = field(default_factory=dict)
    log_lines: list[_LogLine] = field(default_factory=list)
    log_offset: int = 0
    log_partial: bytes = b""

    @property
    def phase(self) -> str:
        if self.state == "terminated":
            if self.evicted_message is not None or self.exit_code != 0:
                return "Failed"
            return "Succeeded"
        return "Running" if self.state == "running" else "Pending"

    @property
    def terminal(self) -> bool:
        return self.state == "terminated"

    def set_condition(
        self, ctype: str, status: str, reason: str | None = None, message: str | None = None
    ) -> None:
        old = self.conditions.get(ctype)
        new = _condition(ctype, status, reason, message)
        if old is not None and old["status"] == status:
            new["lastTransitionTime"] = old["lastTransitionTime"]
        self.conditions[ctype] = new

    def catch_up_log(self) -> None:
        """Read what the container wrote since the last call, timestamping complete lines."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.log_offset)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self.log_offset += len(data)
        chunks = (self.log_partial + data).split(b"\n")
        self.log_partial = chunks.pop()
        mono, wall = time.monotonic(), time.time()
        for chunk in chunks:
            self.log_lines.append(_LogLine(mono, wall, chunk.decode("utf-8", "replace") + "\n"))

    def flush_log(self) -> None:
        """After the container exited: its last line needs no newline to count."""
        self.catch_up_log()
        if self.log_partial:
            text = self.log_partial.decode("utf-8", "replace")
            self.log_lines.append(_LogLine(time.monotonic(), time.time(), text))
            self.log_partial = b""


@dataclass
class _Job:
    """What the fake job controller knows about one Job."""

    namespace: str
    name: str
    uid: str
    completions: int
    parallelism: int
    backoff_limit: int
    backoff_limit_per_index: int | None
    max_failed_indexes: int | None
    active_deadline_s: float | None
    ttl_s: float | None
    started_mono: float | None = None
    start_time: str | None = None
    completion_time: str | None = None
    pods: dict[int, str] = field(default_factory=dict)
    succeeded: set[int] = field(default_factory=set)
    failed_indexes: set[int] = field(default_factory=set)
    failed_count: int = 0
    target: tuple[str, str, str] | None = None  # (final condition, reason, message)
    finished_mono: float | None = None
    foreground_deleting: bool = False
    conditions: list[Obj] = field(default_factory=list)


# --------------------------------------------------------------------------- the fake


class FakeKubernetesApi:
    """A fake, stateful Kubernetes API server with a fake job controller and kubelet (tests only).

    Thread-safety: the HTTP handlers and the controller run on the fake's own event loop thread;
    every public method may be called from any other thread. All state is guarded by one lock.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        token: str = "fake-token",
        forbidden: Iterable[tuple[str, str]] = (),
        unpullable: Callable[[str], bool] = lambda image: image.startswith("fake.invalid/"),
        commands: Mapping[str, str] | None = None,
        pod_env: Mapping[str, str] | None = None,
        pull_backoff_after_s: float = 0.3,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.token = token
        self.forbidden: frozenset[tuple[str, str]] = frozenset(forbidden)
        self.unpullable = unpullable
        self.commands: dict[str, str] = dict(
            commands
            if commands is not None
            else {"python": sys.executable, "python3": sys.executable}
        )
        self.pod_env: dict[str, str] = dict(pod_env or {})
        self.pull_backoff_after_s = pull_backoff_after_s
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # internal errors of the fake itself; stop() raises on them
        self._lock = threading.RLock()
        self._requests_lock = threading.Lock()
        self._store: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in _RESOURCES}
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._resource_version = 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._controller_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeKubernetesApi already started")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="fake-kubernetes-api", daemon=True
        )
        self._thread.start()
        try:
            port = asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=15)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Kill every pod process and stop the server. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=15)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._kill_all_processes()
        if loop is not None and not loop.is_running():
            loop.close()
        if self.errors:
            raise RuntimeError(
                "the fake Kubernetes API failed internally:\n" + "\n".join(self.errors)
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _serve(self) -> int:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._controller_task = asyncio.get_running_loop().create_task(self._controller())
        return int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        if self._controller_task is not None:
            self._controller_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._controller_task
        self._kill_all_processes()
        if self._runner is not None:
            await self._runner.cleanup()

    def _kill_all_processes(self) -> None:
        with self._lock:
            procs = [p.proc for p in self._pods.values() if p.proc is not None]
        for proc in procs:
            _kill_group(proc.pid, signal.SIGKILL)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    async def _controller(self) -> None:
        while True:
            try:
                with self._lock:
                    self._tick()
            except Exception as e:  # a bug in the fake: keep serving, report at stop()
                self.errors.append(f"controller: {type(e).__name__}: {e}")
            await asyncio.sleep(TICK_S)

    # ------------------------------------------------------------------ test-thread API

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """A kubeconfig pointing at this fake with its bearer token (``KubeConfig.from_file``)."""
        if not self.url:
            raise RuntimeError("start the FakeKubernetesApi before writing a kubeconfig")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake-kubernetes", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {
                        "cluster": "fake-kubernetes",
                        "user": "fake-user",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def objects(self, resource: str, namespace: str = "default") -> list[Obj]:
        """Deep copies of the stored ``jobs``, ``pods`` or ``secrets`` of a namespace, by name."""
        if resource not in _RESOURCES:
            raise ValueError(f"unknown resource {resource!r}: one of {sorted(_RESOURCES)}")
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._store[resource].items())
                if ns == namespace
            ]

    def pod_names(self, namespace: str = "default") -> list[str]:
        with self._lock:
            return sorted(name for ns, name in self._store["pods"] if ns == namespace)

    def oom_kill(self, namespace: str, pod: str) -> None:
        """SIGKILL the pod's container as the OOM killer would; returns once it is terminated."""
        with self._lock:
            state = self._running_pod(namespace, pod)
            assert state.proc is not None
            state.oom_killed = True
            _kill_group(state.proc.pid, signal.SIGKILL)
        self.wait_until(lambda: self._pod_settled(namespace, pod), timeout_s=10)

    def evict(
        self, namespace: str, pod: str, message: str = "The node was low on resource: memory. "
    ) -> None:
        """Evict the pod as the kubelet does under node pressure (SIGTERM, SIGKILL after 2 s)."""
        with self._lock:
            state = self._pods.get((namespace, pod))
            if state is None:
                raise LookupError(f"no pod {namespace}/{pod} in the fake Kubernetes API")
            if state.terminal:
                raise ValueError(f"pod {namespace}/{pod} has already terminated")
            state.evicted_message = message
            state.set_condition("DisruptionTarget", "True", "TerminationByKubelet", message)
            if state.state == "running" and state.proc is not None:
                state.proc.send_signal(signal.SIGTERM)
                state.kill_at = time.monotonic() + EVICTION_GRACE_S
            else:
                self._terminate_unstarted(state)
            self._refresh_pod(state)

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Poll ``predicate`` every 50 ms; AssertionError (with the fake's state) on timeout."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(predicate, timeout_s))
            time.sleep(0.05)

    async def wait_until_async(
        self, predicate: Callable[[], bool], timeout_s: float = 30.0
    ) -> None:
        """:meth:`wait_until` for async tests whose own event loop must keep running meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_message(predicate, timeout_s))
            await asyncio.sleep(0.05)

    def _timeout_message(self, predicate: Callable[[], bool], timeout_s: float) -> str:
        name = getattr(predicate, "__qualname__", repr(predicate))
        return (
            f"fake Kubernetes API: condition {name} not met within {timeout_s} s\n"
            + self.describe()
        )

    def describe(self) -> str:
        """A one-line-per-object summary of the jobs and pods, for failure messages."""
        lines: list[str] = []
        with self._lock:
            for (ns, name), obj in sorted(self._store["jobs"].items()):
                conds = [c["type"] for c in obj.get("status", {}).get("conditions", [])]
                deleting = " deleting" if "deletionTimestamp" in obj["metadata"] else ""
                lines.append(f"  job {ns}/{name}{deleting} conditions={conds}")
            for (ns, name), pod in sorted(self._pods.items()):
                lines.append(
                    f"  pod {ns}/{name} phase={pod.phase} state={pod.state}"
                    f" waiting={pod.waiting_reason} exit={pod.exit_code} deleting={pod.deleting}"
                )
        return "\n".join(lines) or "  (no jobs, no pods)"

    def _running_pod(self, namespace: str, pod: str) -> _Pod:
        state = self._pods.get((namespace, pod))
        if state is None:
            raise LookupError(f"no pod {namespace}/{pod} in the fake Kubernetes API")
        if state.state != "running" or state.proc is None:
            raise ValueError(f"pod {namespace}/{pod} has no running container ({state.phase})")
        return state

    def _pod_settled(self, namespace: str, pod: str) -> bool:
        with self._lock:
            state = self._pods.get((namespace, pod))
            return state is None or state.terminal

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse
        try:
            response = await self._dispatch(request)
        except _ApiError as e:
            response = self._json(e.status(), e.code)
        except Exception as e:  # a bug in the fake: answer 500 and report at stop()
            self.errors.append(f"{request.method} {request.path_qs}: {type(e).__name__}: {e}")
            error = _ApiError(500, "InternalError", f"fake Kubernetes API bug: {e}", {})
            response = self._json(error.status(), 500)
        with self._requests_lock:
            self.requests.append(
                RecordedRequest(request.method, request.path, dict(request.query), response.status)
            )
        return response

    @staticmethod
    def _json(
        data: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            body=json.dumps(data).encode(),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            raise _ApiError(401, "Unauthorized", "Unauthorized")
        match = _PATH.match(request.path)
        resource = _RESOURCES.get(match[3]) if match else None
        if match is None or resource is None or resource.prefix != match[1]:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource", {})
        namespace, name, sub = match[2], match[4], match[5]
        verbs = _VERBS.get((resource.plural, name is not None, sub))
        if verbs is None:
            raise _ApiError(404, "NotFound", "the server could not find the requested resource", {})
        verb = verbs.get(request.method)
        if verb is None:
            raise _ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                {},
            )
        rbac_resource = f"{resource.plural}/{sub}" if sub else resource.plural
        if (verb, rbac_resource) in self.forbidden:
            named = f' "{name}"' if name else ""
            raise _ApiError(
                403,
                "Forbidden",
                f'{resource.qualified}{named} is forbidden: User "{USER}" cannot {verb} resource'
                f' "{rbac_resource}" in API group "{resource.group}"'
                f' in the namespace "{namespace}"',
                _details(resource, name),
            )
        if _truthy(request.query.get("watch")):
            raise _ApiError(
                405, "MethodNotAllowed", "the fake Kubernetes API does not implement watch", {}
            )
        dry_run = request.query.get("dryRun") == "All"
        if verb == "list":
            return self._json(self._list(resource, namespace, request.query))
        if verb == "get" and sub == "log":
            assert name is not None
            return await self._log(request, namespace, name)
        if verb == "get":
            assert name is not None
            with self._lock:
                return self._json(copy.deepcopy(self._get(resource, namespace, name)))
        if verb == "create":
            body = await self._body(request, resource)
            with self._lock:
                if resource is JOBS:
                    return self._json(self._create_job(namespace, body, dry_run), 201)
                return self._json(self._create_secret(namespace, body, dry_run), 201)
        if verb == "patch":
            assert name is not None
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in MERGE_PATCH_TYPES:
                raise _ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types"
                    f" include: {', '.join(MERGE_PATCH_TYPES)}",
                    {},
                )
            body = await self._body(request, resource)
            with self._lock:
                return self._json(self._patch_secret(namespace, name, body, dry_run))
        assert verb == "delete" and name is not None
        options = await self._delete_options(request)
        with self._lock:
            status, payload, headers = self._delete(resource, namespace, name, options, dry_run)
        return self._json(payload, status, headers)

    @staticmethod
    async def _body(request: web.Request, resource: _Resource) -> Any:
        raw = await request.read()
        if not raw:
            raise _bad_request("the body of the request was empty")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise _bad_request(
                f"the object provided is unrecognized (must be of type {resource.kind}): {e}"
            ) from e

    @staticmethod
    async def _delete_options(request: web.Request) -> Obj:
        options: Obj = {}
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as e:
                raise _bad_request(f"invalid DeleteOptions body: {e}") from e
            if not isinstance(body, dict):
                raise _bad_request("invalid DeleteOptions body: not an object")
            options.update(body)
        query = request.query
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "gracePeriodSeconds" in query:
            try:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            except ValueError as e:
                raise _bad_request(f"invalid gracePeriodSeconds: {e}") from e
        if "orphanDependents" in query:
            options["orphanDependents"] = _truthy(query["orphanDependents"])
        return options

    # ------------------------------------------------------------------ generic storage

    def _next_rv(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _get(self, resource: _Resource, namespace: str, name: str) -> Obj:
        obj = self._store[resource.plural].get((namespace, name))
        if obj is None:
            raise _not_found(resource, name)
        return obj

    def _list(self, resource: _Resource, namespace: str, query: Mapping[str, str]) -> Obj:
        labels = _label_matcher(query.get("labelSelector", ""))
        fields = _field_matcher(resource, query.get("fieldSelector", ""))
        with self._lock:
            items = []
            for (ns, _), obj in sorted(self._store[resource.plural].items()):
                if ns != namespace or not labels(obj["metadata"].get("labels") or {}):
                    continue
                if not fields(obj):
                    continue
                item = copy.deepcopy(obj)
                # Items of a list come without apiVersion and kind, as from the real API server.
                item.pop("apiVersion", None)
                item.pop("kind", None)
                items.append(item)
            return {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self._resource_version)},
                "items": items,
            }

    def _new_object(self, resource: _Resource, namespace: str, body: Any) -> Obj:
        """Validate the common parts of a create body; the object with server-set metadata."""
        if not isinstance(body, dict):
            raise _bad_request(
                f"the object provided is unrecognized (must be of type {resource.kind})"
            )
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != resource.api_version:
            raise _bad_request(
                f"the API version in the data ({api_version}) does not match the expected API"
                f" version ({resource.api_version})"
            )
        if kind and kind != resource.kind:
            raise _bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({resource.kind})"
            )
        meta = body.get("metadata") or {}
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the"
                " request"
            )
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = self._unique_name(resource, namespace, str(meta["generateName"]))
        errors: list[_FieldError] = []
        if not name:
            errors.append(
                _FieldError("metadata.name", "Required value", "name or generateName is required")
            )
        elif not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            errors.append(
                _FieldError(
                    "metadata.name",
                    "Invalid value",
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric"
                    " characters, '-' or '.', and must start and end with an alphanumeric"
                    " character",
                    name,
                )
            )
        elif resource is JOBS and len(name) > 63:
            errors.append(
                _FieldError(
                    "metadata.name", "Invalid value", "must be no more than 63 characters", name
                )
            )
        errors += _validate_labels(meta.get("labels"), "metadata.labels")
        errors += _validate_annotations(meta.get("annotations"), "metadata.annotations")
        errors += _validate_owner_references(meta.get("ownerReferences"))
        if errors:
            raise _invalid(resource, name if isinstance(name, str) else "", errors)
        new_meta: Obj = {"name": name}
        if meta.get("generateName"):
            new_meta["generateName"] = meta["generateName"]
        new_meta["namespace"] = namespace
        new_meta["uid"] = str(uuid.uuid4())
        new_meta["resourceVersion"] = ""  # set when stored
        if resource is JOBS:
            new_meta["generation"] = 1
        new_meta["creationTimestamp"] = _rfc3339()
        for key in ("labels", "annotations", "ownerReferences", "finalizers"):
            if meta.get(key):
                new_meta[key] = copy.deepcopy(meta[key])
        obj: Obj = {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": new_meta}
        for key, value in body.items():
            if key not in ("apiVersion", "kind", "metadata", "status"):
                obj[key] = copy.deepcopy(value)
        return obj

    def _store_new(self, resource: _Resource, obj: Obj) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self._store[resource.plural]:
            raise _ApiError(
                409,
                "AlreadyExists",
                f'{resource.qualified} "{key[1]}" already exists',
                _details(resource, key[1]),
            )
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._store[resource.plural][key] = obj

    def _unique_name(self, resource: _Resource, namespace: str, prefix: str) -> str:
        while True:
            name = prefix + "".join(random.choices(_SUFFIX_ALPHABET, k=5))
            if (namespace, name) not in self._store[resource.plural]:
                return name

    def _all_uids(self) -> set[str]:
        return {
            obj["metadata"]["uid"] for objects in self._store.values() for obj in objects.values()
        }

    # ------------------------------------------------------------------ secrets

    def _create_secret(self, namespace: str, body: Any, dry_run: bool) -> Obj:
        obj = self._new_object(SECRETS, namespace, body)
        self._normalize_secret(obj, obj["metadata"]["name"])
        if dry_run:
            obj["metadata"].pop("resourceVersion")
            return obj
        self._store_new(SECRETS, obj)
        return copy.deepcopy(obj)

    @staticmethod
    def _normalize_secret(obj: Obj, name: str) -> None:
        """``stringData`` into base64 ``data`` (then dropped), key and base64 checks."""
        data = obj.get("data") or {}
        string_data = obj.pop("stringData", None) or {}
        if not isinstance(data, dict) or not isinstance(string_data, dict):
            raise _bad_request("data and stringData must be objects")
        errors: list[_FieldError] = []
        merged: dict[str, str] = {}
        for key, value in data.items():
            try:
                base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError) as e:
                raise _bad_request(f"illegal base64 data in Secret key {key!r}: {e}") from e
            merged[key] = str(value)
        for key, value in string_data.items():
            merged[key] = base64.b64encode(str(value).encode()).decode()
        for key in merged:
            if not _SECRET_KEY.match(key):
                errors.append(
                    _FieldError(
                        f"data[{key}]",
                        "Invalid value",
                        "a valid config key must consist of alphanumeric characters, '-', '_'"
                        " or '.'",
                        key,
                    )
                )
        if errors:
            raise _invalid(SECRETS, name, errors)
        if merged:
            obj["data"] = merged
        else:
            obj.pop("data", None)
        obj.setdefault("type", "Opaque")

    def _patch_secret(self, namespace: str, name: str, patch: Any, dry_run: bool) -> Obj:
        current = self._get(SECRETS, namespace, name)
        if not isinstance(patch, dict):
            raise _bad_request("a merge patch for a Secret must be a JSON object")
        patch_meta = patch.get("metadata") or {}
        if not isinstance(patch_meta, dict):
            raise _bad_request("metadata must be an object")
        rv = patch_meta.get("resourceVersion")
        if rv is not None and rv != current["metadata"]["resourceVersion"]:
            raise _ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {SECRETS.qualified} "{name}": the object has'
                " been modified; please apply your changes to the latest version and try again",
                _details(SECRETS, name),
            )
        if patch_meta.get("name") not in (None, name):
            raise _bad_request(
                f"the name of the object ({patch_meta['name']}) does not match the name on the"
                f" URL ({name})"
            )
        if patch_meta.get("namespace") not in (None, namespace):
            raise _bad_request(
                "the namespace of the provided object does not match the namespace sent on the"
                " request"
            )
        patched = _merge_patch(current, patch)
        for key in ("uid", "creationTimestamp", "resourceVersion", "deletionTimestamp"):
            if key in current["metadata"]:
                patched["metadata"][key] = current["metadata"][key]
            else:
                patched["metadata"].pop(key, None)
        patched["apiVersion"], patched["kind"] = SECRETS.api_version, SECRETS.kind
        meta = patched["metadata"]
        errors = _validate_labels(meta.get("labels"), "metadata.labels")
        errors += _validate_annotations(meta.get("annotations"), "metadata.annotations")
        errors += _validate_owner_references(meta.get("ownerReferences"))
        if current.get("immutable") and (
            patched.get("data") != current.get("data") or "stringData" in patched
        ):
            errors.append(
                _FieldError("data", "Forbidden", "field is immutable when `immutable` is set")
            )
        if errors:
            raise _invalid(SECRETS, name, errors)
        self._normalize_secret(patched, name)
        if patched == current or dry_run:
            return copy.deepcopy(patched)
        patched["metadata"]["resourceVersion"] = self._next_rv()
        self._store["secrets"][(namespace, name)] = patched
        self._collect_garbage()  # new ownerReferences may name owners that are gone
        return copy.deepcopy(patched)

    # ------------------------------------------------------------------ deletion

    def _delete(
        self, resource: _Resource, namespace: str, name: str, options: Obj, dry_run: bool
    ) -> tuple[int, Obj, dict[str, str]]:
        obj = self._get(resource, namespace, name)
        preconditions = options.get("preconditions") or {}
        for key in ("uid", "resourceVersion"):
            wanted = preconditions.get(key)
            if wanted is not None and wanted != obj["metadata"][key]:
                raise _ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: {key.upper() if key == 'uid' else key} in precondition:"
                    f" {wanted}, {key.upper() if key == 'uid' else key} in object meta:"
                    f" {obj['metadata'][key]}",
                    _details(resource, name),
                )
        policy = options.get("propagationPolicy")
        headers: dict[str, str] = {}
        if policy is None and "orphanDependents" in options:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            if resource is JOBS:
                # The real batch/v1 default: the Job's pods are orphaned, with this warning.
                policy = "Orphan"
                headers["Warning"] = (
                    '299 - "child pods are preserved by default when jobs are deleted; set'
                    " propagationPolicy=Background to remove them or set"
                    ' propagationPolicy=Orphan to suppress this warning"'
                )
            else:
                policy = "Background"
        if policy not in ("Foreground", "Background", "Orphan"):
            raise _invalid(
                _Resource("deleteoptions", "meta.k8s.io", "v1", "DeleteOptions"),
                "",
                [
                    _FieldError(
                        "propagationPolicy",
                        "Unsupported value",
                        'supported values: "Foreground", "Background", "Orphan"',
                        policy,
                    )
                ],
            )
        grace = options.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or grace < 0):
            raise _bad_request(f"invalid gracePeriodSeconds: {grace!r}")
        if obj["metadata"].get("deletionTimestamp"):
            # Already being deleted (foreground): deleting again changes nothing.
            return 200, copy.deepcopy(obj), headers
        success: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": _details(resource, name, uid=obj["metadata"]["uid"]),
        }
        if policy in ("Foreground", "Orphan"):
            shown = copy.deepcopy(obj)
            shown["metadata"]["deletionTimestamp"] = _rfc3339()
            shown["metadata"]["deletionGracePeriodSeconds"] = 0
            finalizer = "foregroundDeletion" if policy == "Foreground" else "orphan"
            shown["metadata"]["finalizers"] = [*obj["metadata"].get("finalizers", []), finalizer]
            if dry_run:
                return 200, shown, headers
            uid = obj["metadata"]["uid"]
            if policy == "Foreground" and resource is JOBS:
                shown["metadata"]["resourceVersion"] = self._next_rv()
                self._store["jobs"][(namespace, name)] = shown
                self._jobs[(namespace, name)].foreground_deleting = True
                self._delete_dependents(uid, grace)
                self._tick_job(self._jobs[(namespace, name)], time.monotonic())
                return 200, copy.deepcopy(shown), headers
            if policy == "Orphan":
                self._orphan_dependents(uid)
            else:
                self._delete_dependents(uid, grace)
            self._remove_object(resource, namespace, name)
            return 200, shown, headers
        if dry_run:
            return 200, success, headers
        self._delete_dependents(obj["metadata"]["uid"], grace)
        self._remove_object(resource, namespace, name)
        return 200, success, headers

    def _remove_object(self, resource: _Resource, namespace: str, name: str) -> None:
        self._store[resource.plural].pop((namespace, name), None)
        if resource is JOBS:
            self._jobs.pop((namespace, name), None)
        elif resource is PODS:
            self._pods.pop((namespace, name), None)
        self._collect_garbage()

    def _dependents(self, uid: str) -> Iterator[tuple[_Resource, Obj]]:
        for plural, objects in self._store.items():
            for obj in list(objects.values()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    yield _RESOURCES[plural], obj

    def _delete_dependents(self, uid: str, grace: int | None) -> None:
        for resource, obj in list(self._dependents(uid)):
            meta = obj["metadata"]
            if resource is PODS:
                pod = self._pods.get((meta["namespace"], meta["name"]))
                if pod is not None:
                    self._delete_pod(pod, grace)
            else:
                self._store[resource.plural].pop((meta["namespace"], meta["name"]), None)

    def _orphan_dependents(self, uid: str) -> None:
        for _, obj in list(self._dependents(uid)):
            meta = obj["metadata"]
            meta["ownerReferences"] = [r for r in meta["ownerReferences"] if r.get("uid") != uid]
            if not meta["ownerReferences"]:
                del meta["ownerReferences"]
            meta["resourceVersion"] = self._next_rv()

    def _collect_garbage(self) -> None:
        """Delete every object none of whose owners exists any more (pods gracefully)."""
        while True:
            uids = self._all_uids()
            removed = False
            for plural, objects in self._store.items():
                for key, obj in list(objects.items()):
                    refs = obj["metadata"].get("ownerReferences") or []
                    if not refs or any(ref.get("uid") in uids for ref in refs):
                        continue
                    if plural == "pods":
                        pod = self._pods.get(key)
                        if pod is not None and not pod.deleting:
                            self._delete_pod(pod, None)
                    elif objects.pop(key, None) is not None:
                        if plural == "jobs":
                            self._jobs.pop(key, None)
                        removed = True
            if not removed:
                return

    # ------------------------------------------------------------------ jobs

    def _create_job(self, namespace: str, body: Any, dry_run: bool) -> Obj:
        obj = self._new_object(JOBS, namespace, body)
        name, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            raise _invalid(JOBS, name, [_FieldError("spec.template", "Required value", "")])
        errors = _validate_job_spec(spec)
        if errors:
            raise _invalid(JOBS, name, errors)
        template = spec["template"]
        template_meta = template.setdefault("metadata", {})
        user_labels = dict(template_meta.get("labels") or {})
        if not obj["metadata"].get("labels") and user_labels:
            obj["metadata"]["labels"] = dict(user_labels)  # batch/v1 defaulting
        per_index = spec.get("backoffLimitPerIndex")
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", MAX_INT32 if per_index is not None else 6)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        spec.setdefault("suspend", False)
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        template_meta["labels"] = {
            **user_labels,
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
        pod_spec = template["spec"]
        pod_spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
        pod_spec.setdefault("dnsPolicy", "ClusterFirst")
        pod_spec.setdefault("schedulerName", "default-scheduler")
        pod_spec.setdefault("securityContext", {})
        for container in pod_spec["containers"]:
            image = str(container["image"])
            tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
            latest = not tagged or image.endswith(":latest")
            container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            container.setdefault("resources", {})
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
        obj["status"] = {}
        if dry_run:
            obj["metadata"].pop("resourceVersion")
            return obj
        self._store_new(JOBS, obj)
        response = copy.deepcopy(obj)
        ttl = spec.get("ttlSecondsAfterFinished")
        deadline = spec.get("activeDeadlineSeconds")
        job = _Job(
            namespace=namespace,
            name=name,
            uid=uid,
            completions=int(spec["completions"]),
            parallelism=int(spec["parallelism"]),
            backoff_limit=int(spec["backoffLimit"]),
            backoff_limit_per_index=None if per_index is None else int(per_index),
            max_failed_indexes=spec.get("maxFailedIndexes"),
            active_deadline_s=None if deadline is None else float(deadline),
            ttl_s=None if ttl is None else float(ttl),
        )
        self._jobs[(namespace, name)] = job
        self._tick_job(job, time.monotonic())
        return response

    def _tick_job(self, job: _Job, now: float) -> None:
        key = (job.namespace, job.name)
        obj = self._store["jobs"].get(key)
        if obj is None:
            return
        if job.foreground_deleting:
            if not any(True for _ in self._dependents(job.uid)):
                self._remove_object(JOBS, *key)
            return
        if job.finished_mono is not None:
            if job.ttl_s is not None and now - job.finished_mono >= job.ttl_s:
                self._delete(
                    JOBS, job.namespace, job.name, {"propagationPolicy": "Background"}, False
                )
            return
        if job.started_mono is None:
            job.started_mono, job.start_time = now, _rfc3339()
        pods = self._job_pods(job)
        for pod in pods:
            if pod.counted or not pod.terminal or pod.deleting:
                continue
            pod.counted = True
            assert pod.index is not None
            if pod.phase == "Succeeded":
                job.succeeded.add(pod.index)
            else:
                job.failed_count += 1
                if job.backoff_limit_per_index is not None:
                    job.failed_indexes.add(pod.index)
        if job.target is None:
            if (
                job.active_deadline_s is not None
                and now - job.started_mono >= job.active_deadline_s
            ):
                self._fail_job(
                    job, "DeadlineExceeded", "Job was active longer than specified deadline"
                )
            elif job.backoff_limit_per_index is None and job.failed_count > job.backoff_limit:
                self._fail_job(
                    job, "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
            elif (
                job.max_failed_indexes is not None
                and len(job.failed_indexes) > job.max_failed_indexes
            ):
                self._fail_job(
                    job,
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes",
                )
        if job.target is None:
            active = sum(1 for p in pods if not p.terminal and not p.deleting)
            for index in range(job.completions):
                if active >= job.parallelism:
                    break
                if index not in job.pods:
                    self._create_pod(job, obj, index)
                    active += 1
            done = job.succeeded | job.failed_indexes
            if len(done) >= job.completions:
                if job.failed_indexes:
                    self._fail_job(job, "FailedIndexes", "Job has failed indexes")
                else:
                    job.target = (
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    )
                    job.conditions.append(
                        _condition("SuccessCriteriaMet", "True", *job.target[1:], probed=True)
                    )
        pods = self._job_pods(job)
        if job.target is not None and all(p.terminal and not p.deleting for p in pods):
            final, reason, message = job.target
            job.conditions.append(_condition(final, "True", reason, message, probed=True))
            job.finished_mono = now
            if final == "Complete":
                job.completion_time = _rfc3339()
        self._refresh_job(job, obj, pods)

    def _fail_job(self, job: _Job, reason: str, message: str) -> None:
        job.target = ("Failed", reason, message)
        job.conditions.append(_condition("FailureTarget", "True", reason, message, probed=True))
        for pod in self._job_pods(job):
            if not pod.terminal and not pod.deleting:
                pod.counted = True  # the job controller counts the pods it terminates as failed
                job.failed_count += 1
                self._delete_pod(pod, None)

    def _job_pods(self, job: _Job) -> list[_Pod]:
        found = (self._pods.get((job.namespace, name)) for name in job.pods.values())
        return [pod for pod in found if pod is not None]

    def _refresh_job(self, job: _Job, obj: Obj, pods: list[_Pod]) -> None:
        active = [p for p in pods if not p.terminal and not p.deleting]
        status: Obj = {}
        if job.conditions:
            status["conditions"] = copy.deepcopy(job.conditions)
        if job.start_time:
            status["startTime"] = job.start_time
        if job.completion_time:
            status["completionTime"] = job.completion_time
        if active:
            status["active"] = len(active)
        if job.succeeded:
            status["succeeded"] = len(job.succeeded)
        if job.failed_count:
            status["failed"] = job.failed_count
        if job.succeeded:
            status["completedIndexes"] = _intervals(job.succeeded)
        if job.backoff_limit_per_index is not None:
            status["failedIndexes"] = _intervals(job.failed_indexes)
        status["terminating"] = sum(1 for p in pods if p.deleting)
        status["uncountedTerminatedPods"] = {}
        status["ready"] = sum(1 for p in active if p.state == "running")
        if status != obj.get("status"):
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = self._next_rv()

    # ------------------------------------------------------------------ pods

    def _create_pod(self, job: _Job, job_obj: Obj, index: int) -> _Pod:
        template = copy.deepcopy(job_obj["spec"]["template"])
        prefix = f"{job.name}-{index}-"
        name = self._unique_name(PODS, job.namespace, prefix)
        index_text = str(index)
        labels = {
            **(template["metadata"].get("labels") or {}),
            "batch.kubernetes.io/job-completion-index": index_text,
        }
        annotations = {
            **(template["metadata"].get("annotations") or {}),
            "batch.kubernetes.io/job-completion-index": index_text,
        }
        if job.backoff_limit_per_index is not None:
            annotations["batch.kubernetes.io/job-index-failure-count"] = "0"
        spec = template["spec"]
        spec["hostname"] = f"{job.name}-{index}"
        spec["nodeName"] = NODE_NAME
        for container in spec["containers"]:
            env = container.setdefault("env", [])
            if not any(var.get("name") == "JOB_COMPLETION_INDEX" for var in env):
                env.append(
                    {
                        "name": "JOB_COMPLETION_INDEX",
                        "valueFrom": {
                            "fieldRef": {
                                "apiVersion": "v1",
                                "fieldPath": "metadata.annotations"
                                "['batch.kubernetes.io/job-completion-index']",
                            }
                        },
                    }
                )
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": prefix,
                "namespace": job.namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": "",
                "creationTimestamp": _rfc3339(),
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": JOBS.api_version,
                        "kind": JOBS.kind,
                        "name": job.name,
                        "uid": job.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": _qos_class(spec)},
        }
        self._store_new(PODS, obj)
        container = spec["containers"][0]
        pod = _Pod(
            namespace=job.namespace,
            name=name,
            uid=obj["metadata"]["uid"],
            job_uid=job.uid,
            index=index,
            work_dir=self.work_dir / "pods" / job.namespace / name,
            log_path=self.work_dir / "logs" / f"{job.namespace}_{name}_{container['name']}.log",
            container=str(container["name"]),
            image=str(container["image"]),
        )
        self._pods[(job.namespace, name)] = pod
        job.pods[index] = name
        self._start_container(pod)
        self._refresh_pod(pod)
        return pod

    def _start_container(self, pod: _Pod) -> None:
        obj = self._store["pods"][(pod.namespace, pod.name)]
        container = obj["spec"]["containers"][0]
        if self.unpullable(pod.image):
            pod.waiting_reason = "ErrImagePull"
            pod.waiting_message = (
                f'failed to pull and unpack image "{pod.image}": failed to resolve reference'
                f' "{pod.image}": {pod.image}: not found'
            )
            pod.pull_failed_at = time.monotonic()
            return
        try:
            env = self._container_env(obj, container)
        except _ConfigError as e:
            pod.waiting_reason, pod.waiting_message = "CreateContainerConfigError", str(e)
            return
        command = [_expand(str(a), env) for a in container.get("command") or []]
        args = [_expand(str(a), env) for a in container.get("args") or []]
        pod.container_id = "containerd://" + uuid.uuid4().hex + uuid.uuid4().hex
        pod.started_at = _rfc3339()
        if not command:
            self._start_failed(
                pod,
                "the fake Kubernetes API cannot run image entrypoints:"
                f' container "{pod.container}" has no command',
            )
            return
        argv = [self.commands.get(command[0], command[0]), *command[1:], *args]
        proc_env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        proc_env.update(self.pod_env)
        proc_env["HOSTNAME"] = str(obj["spec"].get("hostname") or pod.name)
        proc_env.update(env)
        pod.work_dir.mkdir(parents=True, exist_ok=True)
        pod.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with pod.log_path.open("ab") as log:
                pod.proc = subprocess.Popen(
                    argv,
                    cwd=pod.work_dir,
                    env=proc_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                detail = f'exec: "{command[0]}": executable file not found in $PATH'
            else:
                detail = f'exec: "{command[0]}": {e.strerror}'
            self._start_failed(
                pod,
                "failed to create containerd task: failed to create shim task: OCI runtime create"
                f" failed: runc create failed: unable to start container process: {detail}:"
                " unknown",
            )
            return
        pod.state = "running"

    def _start_failed(self, pod: _Pod, message: str) -> None:
        pod.state, pod.exit_code = "terminated", 128
        pod.terminated_reason, pod.terminated_message = "StartError", message
        pod.finished_at = pod.started_at

    def _container_env(self, obj: Obj, container: Obj) -> dict[str, str]:
        namespace = obj["metadata"]["namespace"]
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = str(source.get("prefix", ""))
            if "secretRef" in source:
                ref = source["secretRef"]
                secret = self._store["secrets"].get((namespace, ref.get("name")))
                if secret is None:
                    if ref.get("optional"):
                        continue
                    raise _ConfigError(f'secret "{ref.get("name")}" not found')
                for key, value in (secret.get("data") or {}).items():
                    env[prefix + key] = base64.b64decode(value).decode("utf-8", "replace")
            elif "configMapRef" in source:
                ref = source["configMapRef"]
                if not ref.get("optional"):
                    raise _ConfigError(f'configmap "{ref.get("name")}" not found')
        for var in container.get("env") or []:
            name = str(var["name"])
            source = var.get("valueFrom")
            if not source:
                env[name] = _expand(str(var.get("value", "")), env)
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self._store["secrets"].get((namespace, ref.get("name")))
                data = (secret or {}).get("data") or {}
                if secret is None or ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    if secret is None:
                        raise _ConfigError(f'secret "{ref.get("name")}" not found')
                    raise _ConfigError(
                        f"couldn't find key {ref.get('key')} in Secret"
                        f" {namespace}/{ref.get('name')}"
                    )
                env[name] = base64.b64decode(data[ref["key"]]).decode("utf-8", "replace")
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                if not ref.get("optional"):
                    raise _ConfigError(f'configmap "{ref.get("name")}" not found')
            elif "fieldRef" in source:
                env[name] = _field_ref(obj, str(source["fieldRef"].get("fieldPath", "")))
        return env

    def _terminate_unstarted(self, pod: _Pod) -> None:
        pod.state, pod.exit_code = "terminated", 137
        pod.terminated_reason = "ContainerStatusUnknown"
        pod.terminated_message = "The container could not be located when the pod was terminated"
        pod.finished_at = _rfc3339()

    def _delete_pod(self, pod: _Pod, grace: int | None) -> None:
        """Graceful deletion: SIGTERM now, SIGKILL after the grace period, gone once exited."""
        obj = self._store["pods"].get((pod.namespace, pod.name))
        if obj is None:
            return
        if grace is None:
            grace = int(obj["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_S))
        now = time.monotonic()
        if pod.deleting:
            if pod.kill_at is not None and now + grace < pod.kill_at:
                pod.kill_at = now + grace
            return
        pod.deleting = True
        obj["metadata"]["deletionTimestamp"] = _rfc3339(time.time() + grace)
        obj["metadata"]["deletionGracePeriodSeconds"] = grace
        obj["metadata"]["resourceVersion"] = self._next_rv()
        if pod.state == "running" and pod.proc is not None:
            if grace == 0:
                _kill_group(pod.proc.pid, signal.SIGKILL)
            else:
                pod.proc.send_signal(signal.SIGTERM)
            pod.kill_at = now + grace
        else:
            self._remove_object(PODS, pod.namespace, pod.name)

    def _tick_pod(self, pod: _Pod, now: float) -> None:
        if pod.state == "waiting":
            if (
                pod.waiting_reason == "ErrImagePull"
                and pod.pull_failed_at is not None
                and now - pod.pull_failed_at >= self.pull_backoff_after_s
            ):
                pod.waiting_reason = "ImagePullBackOff"
                pod.waiting_message = f'Back-off pulling image "{pod.image}"'
            elif pod.waiting_reason == "CreateContainerConfigError" and not pod.deleting:
                self._start_container(pod)  # the kubelet retries: the Secret may exist by now
        if pod.state == "running" and pod.proc is not None:
            pod.catch_up_log()
            code = pod.proc.poll()
            if code is None:
                if pod.kill_at is not None and now >= pod.kill_at:
                    _kill_group(pod.proc.pid, signal.SIGKILL)
                    pod.kill_at = None
            else:
                _kill_group(pod.proc.pid, signal.SIGKILL)  # the rest of the container goes too
                pod.flush_log()
                pod.state = "terminated"
                pod.exit_code = 128 - code if code < 0 else code
                pod.finished_at = _rfc3339()
                if pod.oom_killed:
                    pod.terminated_reason = "OOMKilled"
                else:
                    pod.terminated_reason = "Completed" if pod.exit_code == 0 else "Error"
        if pod.deleting and pod.state != "running":
            self._remove_object(PODS, pod.namespace, pod.name)
        else:
            self._refresh_pod(pod)

    def _refresh_pod(self, pod: _Pod) -> None:
        obj = self._store["pods"].get((pod.namespace, pod.name))
        if obj is None:
            return
        status = self._pod_status(pod, obj)
        if status != obj.get("status"):
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = self._next_rv()

    def _pod_status(self, pod: _Pod, obj: Obj) -> Obj:
        unready = f"containers with unready status: [{pod.container}]"
        if pod.state == "running":
            pod.set_condition("PodReadyToStartContainers", "True")
            pod.set_condition("Initialized", "True")
            pod.set_condition("Ready", "True")
            pod.set_condition("ContainersReady", "True")
        elif pod.state == "waiting":
            pod.set_condition("PodReadyToStartContainers", "True")
            pod.set_condition("Initialized", "True")
            pod.set_condition("Ready", "False", "ContainersNotReady", unready)
            pod.set_condition("ContainersReady", "False", "ContainersNotReady", unready)
        else:
            reason = "PodCompleted" if pod.phase == "Succeeded" else "PodFailed"
            pod.set_condition("PodReadyToStartContainers", "False")
            pod.set_condition("Initialized", "True", reason if reason == "PodCompleted" else None)
            pod.set_condition("Ready", "False", reason)
            pod.set_condition("ContainersReady", "False", reason)
        pod.set_condition("PodScheduled", "True")
        order = [
            "DisruptionTarget",
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        container: Obj = {"name": pod.container, "state": {}, "lastState": {}}
        image_id = ""
        if pod.state == "waiting":
            waiting: Obj = {"reason": pod.waiting_reason}
            if pod.waiting_message:
                waiting["message"] = pod.waiting_message
            container["state"] = {"waiting": waiting}
        elif pod.state == "running":
            container["state"] = {"running": {"startedAt": pod.started_at}}
        else:
            terminated: Obj = {"exitCode": pod.exit_code, "reason": pod.terminated_reason}
            if pod.terminated_message:
                terminated["message"] = pod.terminated_message
            if pod.started_at:
                terminated["startedAt"] = pod.started_at
            terminated["finishedAt"] = pod.finished_at
            if pod.container_id:
                terminated["containerID"] = pod.container_id
            container["state"] = {"terminated": terminated}
        if pod.started_at:
            digest = hashlib.sha256(pod.image.encode()).hexdigest()
            image_id = f"{pod.image.split(':')[0]}@sha256:{digest}"
        container["ready"] = pod.state == "running" and not pod.deleting
        container["restartCount"] = 0
        container["image"] = pod.image
        container["imageID"] = image_id
        if pod.container_id and pod.state != "waiting":
            container["containerID"] = pod.container_id
        container["started"] = pod.state == "running"
        status: Obj = {"phase": pod.phase}
        status["conditions"] = [
            copy.deepcopy(pod.conditions[c]) for c in order if c in pod.conditions
        ]
        if pod.evicted_message is not None and pod.terminal:
            status["message"] = pod.evicted_message
            status["reason"] = "Evicted"
        status["hostIP"] = NODE_IP
        status["hostIPs"] = [{"ip": NODE_IP}]
        status["podIP"] = NODE_IP
        status["podIPs"] = [{"ip": NODE_IP}]
        status["startTime"] = pod.start_time
        status["containerStatuses"] = [container]
        status["qosClass"] = obj.get("status", {}).get("qosClass", "BestEffort")
        return status

    # ------------------------------------------------------------------ logs

    async def _log(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        query = request.query
        with self._lock:
            obj = self._get(PODS, namespace, name)
            pod = self._pods[(namespace, name)]
            names = [str(c["name"]) for c in obj["spec"]["containers"]]
            container = query.get("container") or names[0]
            if container not in names:
                raise _bad_request(f"container {container} is not valid for pod {name}")
            if "container" not in query and len(names) > 1:
                raise _bad_request(
                    f"a container name must be specified for pod {name}, choose one of:"
                    f" [{' '.join(names)}]"
                )
            if _truthy(query.get("previous")):
                raise _bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            if container != pod.container or (pod.state == "waiting"):
                reason = pod.waiting_reason if container == pod.container else "ContainerCreating"
                if reason in ("ErrImagePull", "ImagePullBackOff"):
                    reason = "trying and failing to pull image"
                raise _bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: {reason}'
                )
            pod.catch_up_log()
            lines = self._select_log_lines(pod, query)
        timestamps = _truthy(query.get("timestamps"))
        limit = int(query["limitBytes"]) if query.get("limitBytes", "").isdigit() else None

        def render(selected: list[_LogLine]) -> bytes:
            return "".join(
                (f"{_rfc3339_nano(line.wall)} " if timestamps else "") + line.text
                for line in selected
            ).encode()

        if not _truthy(query.get("follow")):
            body = render(lines)
            return web.Response(
                body=body[:limit] if limit is not None else body,
                content_type="text/plain",
                charset="utf-8",
            )
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            await response.write(render(lines))
            async for more in self._follow(pod):
                await response.write(render(more))
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped following
        return response

    async def _follow(self, pod: _Pod) -> AsyncIterator[list[_LogLine]]:
        with self._lock:
            seen = len(pod.log_lines)
        while not self._stopping:
            await asyncio.sleep(0.05)
            with self._lock:
                pod.catch_up_log()
                new, seen = pod.log_lines[seen:], len(pod.log_lines)
                done = pod.state != "running" or (pod.namespace, pod.name) not in self._pods
            if new:
                yield new
            if done:
                return

    @staticmethod
    def _select_log_lines(pod: _Pod, query: Mapping[str, str]) -> list[_LogLine]:
        lines = list(pod.log_lines)
        if pod.log_partial and pod.state == "running":
            text = pod.log_partial.decode("utf-8", "replace")
            lines.append(_LogLine(time.monotonic(), time.time(), text))
        since = query.get("sinceSeconds")
        if since and since.isdigit():
            cutoff = time.monotonic() - int(since)
            lines = [line for line in lines if line.mono >= cutoff]
        tail = query.get("tailLines")
        if tail is not None and tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = lines[len(lines) - int(tail) :] if int(tail) else []
        return lines

    # ------------------------------------------------------------------ controller tick

    def _tick(self) -> None:
        now = time.monotonic()
        for pod in list(self._pods.values()):
            if (pod.namespace, pod.name) in self._pods:
                self._tick_pod(pod, now)
        for job in list(self._jobs.values()):
            self._tick_job(job, now)
        self._collect_garbage()


# --------------------------------------------------------------------------- validation


def _validate_labels(labels: Any, path: str) -> list[_FieldError]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [_FieldError(path, "Invalid value", "must be a map of strings", labels)]
    errors: list[_FieldError] = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if (
            (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)))
            or len(name) > 63
            or not _LABEL_NAME.match(name)
        ):
            errors.append(
                _FieldError(
                    path,
                    "Invalid value",
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and"
                    " must start and end with an alphanumeric character",
                    key,
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errors.append(
                _FieldError(
                    path,
                    "Invalid value",
                    "a valid label must be an empty string or consist of alphanumeric"
                    " characters, '-', '_' or '.', and must start and end with an alphanumeric"
                    " character",
                    value,
                )
            )
    return errors


def _validate_annotations(annotations: Any, path: str) -> list[_FieldError]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        return [_FieldError(path, "Invalid value", "must be a map of strings", annotations)]
    return []


def _validate_owner_references(refs: Any) -> list[_FieldError]:
    if refs is None:
        return []
    if not isinstance(refs, list):
        return [_FieldError("metadata.ownerReferences", "Invalid value", "must be a list", refs)]
    errors: list[_FieldError] = []
    for i, ref in enumerate(refs):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(key):
                errors.append(
                    _FieldError(f"metadata.ownerReferences[{i}].{key}", "Required value", "")
                )
    if sum(1 for ref in refs if isinstance(ref, dict) and ref.get("controller")) > 1:
        errors.append(
            _FieldError(
                "metadata.ownerReferences",
                "Invalid value",
                "Only one reference can have Controller set to true",
                refs,
            )
        )
    return errors


def _validate_job_spec(spec: Obj) -> list[_FieldError]:
    errors: list[_FieldError] = []
    mode = spec.setdefault("completionMode", "NonIndexed")
    if mode != "Indexed":
        errors.append(
            _FieldError(
                "spec.completionMode",
                "Unsupported value",
                'the fake Kubernetes API supports only "Indexed"',
                mode,
            )
        )
    completions = spec.get("completions")
    if completions is None:
        errors.append(
            _FieldError("spec.completions", "Required value", "when completion mode is Indexed")
        )
    elif not isinstance(completions, int) or completions < 0:
        errors.append(
            _FieldError("spec.completions", "Invalid value", "must be non-negative", completions)
        )
    for key in ("parallelism", "backoffLimit", "backoffLimitPerIndex", "maxFailedIndexes"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            errors.append(
                _FieldError(f"spec.{key}", "Invalid value", "must be non-negative", value)
            )
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            errors.append(
                _FieldError(f"spec.{key}", "Invalid value", "must be non-negative", value)
            )
    for key in ("podFailurePolicy", "successPolicy", "managedBy"):
        if spec.get(key) is not None:
            errors.append(
                _FieldError(
                    f"spec.{key}", "Forbidden", "not implemented by the fake Kubernetes API"
                )
            )
    if spec.get("suspend"):
        errors.append(
            _FieldError("spec.suspend", "Forbidden", "not implemented by the fake Kubernetes API")
        )
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errors.append(
            _FieldError(
                "spec.maxFailedIndexes",
                "Required value",
                "must be specified when backoffLimitPerIndex is specified",
            )
        )
    template = spec.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        errors.append(_FieldError("spec.template.spec", "Required value", ""))
        return errors
    if template.get("metadata") is not None and not isinstance(template["metadata"], dict):
        errors.append(_FieldError("spec.template.metadata", "Invalid value", "", None))
        return errors
    template_meta = template.get("metadata") or {}
    errors += _validate_labels(template_meta.get("labels"), "spec.template.metadata.labels")
    errors += _validate_annotations(
        template_meta.get("annotations"), "spec.template.metadata.annotations"
    )
    pod_spec = template["spec"]
    restart = pod_spec.get("restartPolicy")
    if restart is None:
        errors.append(
            _FieldError(
                "spec.template.spec.restartPolicy",
                "Required value",
                'valid values: "OnFailure", "Never"',
            )
        )
    elif restart not in ("Never", "OnFailure"):
        errors.append(
            _FieldError(
                "spec.template.spec.restartPolicy",
                "Unsupported value",
                'supported values: "OnFailure", "Never"',
                restart,
            )
        )
    elif restart == "OnFailure" and spec.get("backoffLimitPerIndex") is not None:
        errors.append(
            _FieldError(
                "spec.backoffLimitPerIndex",
                "Forbidden",
                "when restartPolicy is OnFailure (the fake never restarts containers anyway)",
            )
        )
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        errors.append(_FieldError("spec.template.spec.containers", "Required value", ""))
        return errors
    for i, container in enumerate(containers):
        path = f"spec.template.spec.containers[{i}]"
        if not isinstance(container, dict):
            errors.append(_FieldError(path, "Invalid value", "must be an object", container))
            continue
        cname = container.get("name")
        if not cname:
            errors.append(_FieldError(f"{path}.name", "Required value", ""))
        elif not isinstance(cname, str) or len(cname) > 63 or not _DNS_LABEL.match(cname):
            errors.append(
                _FieldError(
                    f"{path}.name",
                    "Invalid value",
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric"
                    " characters or '-', and must start and end with an alphanumeric character",
                    cname,
                )
            )
        if not container.get("image"):
            errors.append(_FieldError(f"{path}.image", "Required value", ""))
        for j, var in enumerate(container.get("env") or []):
            if not isinstance(var, dict) or not var.get("name"):
                errors.append(_FieldError(f"{path}.env[{j}].name", "Required value", ""))
    return errors


def _qos_class(spec: Obj) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers", [])]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k) is not None
        and (r.get("requests") or r.get("limits") or {}).get(k) == r["limits"][k]
        for r in resources
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _field_ref(obj: Obj, path: str) -> str:
    meta = obj["metadata"]
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": NODE_NAME,
        "spec.serviceAccountName": obj["spec"].get("serviceAccountName", "default"),
        "status.podIP": NODE_IP,
        "status.hostIP": NODE_IP,
    }
    if path in simple:
        return str(simple[path] or "")
    match = _FIELD_LABEL.match(path)
    if match:
        return str((meta.get(match[1]) or {}).get(match[2], ""))
    raise _ConfigError(f'unsupported fieldPath "{path}" in the fake Kubernetes API')


# --------------------------------------------------------------------------- fixture


@pytest.fixture
def fake_kubernetes(tmp_path: Path) -> Iterator[FakeKubernetesApi]:
    """A started :class:`FakeKubernetesApi` working under ``tmp_path``; stopped after the test."""
    with FakeKubernetesApi(tmp_path / "fake-kubernetes") as api:
        yield api
