"""The preflight's checks of the targets: run where the clients will run, before they start.

:func:`run_preflight` checks every target of a
:class:`~clientswarm.protocol.preflight.PreflightPlan` at once, each bounded by the plan's
timeout, and reports each finding as a :class:`~clientswarm.protocol.preflight.PreflightCheck`:

- ``url`` (error): the url of a target of OpenAI interactions ends in ``/v1``, so requests
  would go to ``/v1/v1/…``; the message gives the url to write instead;
- ``answers`` (error): nothing answers at the target's host and port (refused, unknown host,
  no answer within the timeout): one line naming ``host:port`` and the error;
- ``api_key`` (warning): ``api_key_env`` (or a ``headers_from_env`` variable) names a
  variable unset where the clients run: requests go without it;
- ``auth`` (error): ``GET /v1/models`` answered 401 or 403, with the key or without it;
- ``model`` (error): the server does not serve a model the interactions send; the message
  lists those it serves (a server without ``/v1/models`` gets a warning: nothing to compare).

Targets of other interactions (``hello``, ``http``, user-defined) are asked ``GET`` of their
url: any HTTP answer counts as answering. The service, ``clientswarm run`` and worker 0 (on
Slurm and Kubernetes) all call this module; it imports neither of them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httptools
import orjson

from clientswarm import __version__
from clientswarm.protocol.preflight import (
    PreflightCheck,
    PreflightLevel,
    PreflightPlan,
    PreflightReport,
    PreflightTarget,
)

MAX_BODY_BYTES = 1 << 20
"""The most of a ``/v1/models`` answer read."""

MAX_MODELS_LISTED = 12
"""The most served models a message lists."""


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _shown(url: str) -> str:
    """``url`` for a message: without its user and password."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _label(entry: PreflightTarget, url: str) -> str:
    """``target at host:port`` (``target 'name' at …`` when the configuration names several)."""
    where = _host_port(url)
    named = entry.name != "default"
    return f"target {entry.name!r} at {where}" if named else f"target at {where}"


def _headers(entry: PreflightTarget, env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The headers the clients send (as :func:`clientswarm.worker.runtime.target_headers`
    builds them from ``env``) and the variables they name that ``env`` lacks."""
    target = entry.target
    headers = dict(target.headers)
    unset: list[str] = []
    for header, name in target.headers_from_env.items():
        value = env.get(name)
        if value is None:
            unset.append(name)
        else:
            headers[header] = value
    if target.api_key_env:
        key = env.get(target.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif target.api_key_env not in unset:
            unset.insert(0, target.api_key_env)
    return headers, unset


class _NoAnswer(Exception):
    """The target closed the connection, or answered what is not HTTP."""


@dataclass
class _Answer:
    """An HTTP answer as ``httptools`` parses it (its callbacks fill it)."""

    reason: bytearray = field(default_factory=bytearray)
    body: bytearray = field(default_factory=bytearray)
    head: bool = False
    complete: bool = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_headers_complete(self) -> None:
        self.head = True

    def on_body(self, body: bytes) -> None:
        self.body += body[: MAX_BODY_BYTES - len(self.body)]

    def on_message_complete(self) -> None:
        self.complete = True


async def http_get(url: str, headers: Mapping[str, str]) -> tuple[int, str, bytes]:
    """``GET url`` on a connection of its own: status, reason and (the start of) the body.

    A small HTTP/1.1 GET (``httptools``, as :mod:`clientswarm.interactions.http1` parses its
    answers) rather than aiohttp, which the service does not load: the preflight runs while
    ``clientswarm run`` starts, and must not make it load more. The caller bounds it in time.
    OSError (refused, unknown host, TLS), :class:`_NoAnswer`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    context = ssl.create_default_context() if https else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if context else None
    )
    try:
        shown_host = f"[{host}]" if ":" in host else host
        default_port = parts.port is None or parts.port == (443 if https else 80)
        lines = [
            f"GET {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
            f"Host: {shown_host}" + ("" if default_port else f":{port}"),
            f"User-Agent: clientswarm/{__version__}",
            "Accept: application/json",
            "Connection: close",
        ]
        skip = {"host", "connection", "content-length", "transfer-encoding"}
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in skip]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        while not answer.complete and len(answer.body) < MAX_BODY_BYTES:
            data = await reader.read(1 << 16)
            if not data:  # closed: the end of an answer without a length, else cut off
                if not answer.head:
                    raise _NoAnswer("it closed the connection without an answer")
                break
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise _NoAnswer(f"it did not answer HTTP/1.1 ({exc})") from None
        return parser.get_status_code(), answer.reason.decode("latin-1"), bytes(answer.body)
    finally:
        writer.close()


def _describe(exc: BaseException, timeout_s: float) -> str:
    """One line for why a connection failed."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s (preflight_timeout_s)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _models_served(body: bytes) -> list[str] | None:
    """The ids of an OpenAI ``/v1/models`` answer; ``None`` when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    cards = data.get("data") if isinstance(data, dict) else None
    if not isinstance(cards, list):
        return None
    return [c["id"] for c in cards if isinstance(c, dict) and isinstance(c.get("id"), str)]


def _listing(models: list[str]) -> str:
    if not models:
        return "none"
    shown = ", ".join(repr(m[:200]) for m in models[:MAX_MODELS_LISTED])
    more = len(models) - MAX_MODELS_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


class _Checker:
    """The checks of one target; each finding is added to :attr:`checks`."""

    def __init__(
        self, entry: PreflightTarget, env: Mapping[str, str], timeout_s: float, url: str
    ) -> None:
        self.entry = entry
        self.env = env
        self.timeout_s = timeout_s
        self.url = url
        """The URL checked: the target's, or one of its replicas'."""
        self.label = _label(entry, url)
        self.checks: list[PreflightCheck] = []

    def add(self, check: str, level: PreflightLevel, message: str) -> None:
        self.checks.append(
            PreflightCheck(target=self.entry.name, check=check, level=level, message=message)
        )

    async def run(self) -> list[PreflightCheck]:
        entry, url = self.entry, self.url
        shown = _shown(url)
        headers, unset = _headers(entry, self.env)
        for name in unset:
            self.add(
                "api_key",
                "warning",
                f"{self.label}: {name} is not set where the clients run, so requests go without it",
            )
        v1_suffix = entry.openai and urlsplit(url).path.rstrip("/").endswith("/v1")
        if v1_suffix:
            fixed = shown.rstrip("/").removesuffix("/v1")
            self.add(
                "url",
                "error",
                f"{self.label}: target.url {shown} ends in /v1, so requests would go to "
                f"{shown}/v1/chat/completions (404); write url: {fixed}",
            )
        probe = url + "/v1/models" if entry.openai and not v1_suffix else url + "/"
        try:
            async with asyncio.timeout(self.timeout_s):
                status, reason, body = await http_get(probe, headers)
        except (TimeoutError, OSError, _NoAnswer) as exc:
            self.add(
                "answers",
                "error",
                f"{self.label} does not answer: {_describe(exc, self.timeout_s)}",
            )
            return self.checks
        if not entry.openai or v1_suffix:
            answer = f"HTTP {status} to GET {urlsplit(probe).path or '/'}"
            self.add("answers", "passed", f"{self.label} answers ({answer})")
            return self.checks
        self._judge_models(status, reason, body, unset)
        return self.checks

    def _judge_models(self, status: int, reason: str, body: bytes, unset: list[str]) -> None:
        """What ``GET /v1/models`` answered: auth refused, the models served, or no list."""
        target = self.entry.target
        if status in (401, 403):
            key_env = target.api_key_env
            if key_env is None:
                fix = "it needs an API key: name the variable that holds it in target.api_key_env"
            elif key_env in unset:
                fix = f"{key_env} is not set where the clients run; set it to the target's key"
            else:
                fix = f"it refused the API key from {key_env}"
            answered = f"{self.label} answered {status} {reason} to GET /v1/models"
            self.add("auth", "error", f"{answered}: {fix}")
            return
        self.add("answers", "passed", f"{self.label} answers (HTTP {status} to GET /v1/models)")
        served = _models_served(body) if status == 200 else None
        if served is None:
            if self.entry.models:
                self.add(
                    "model",
                    "warning",
                    f"{self.label} answered HTTP {status} to GET /v1/models, not a model list: "
                    f"model {_listing(self.entry.models)} not checked",
                )
            return
        for model in self.entry.models:
            if model in served:
                self.add("model", "passed", f"{self.label} serves model {model!r}")
            else:
                self.add(
                    "model",
                    "error",
                    f"{self.label} does not serve model {model!r}; it serves: {_listing(served)}",
                )


async def run_preflight(
    plan: PreflightPlan, env: Mapping[str, str], *, where: str = ""
) -> PreflightReport:
    """Check every target of ``plan`` at once (each replica of a target with ``urls``), the
    headers' variables read from ``env`` (the environment the clients run with); never raises
    for what a target does or does not do."""
    found = await asyncio.gather(
        *(
            _Checker(entry, env, plan.timeout_s, url).run()
            for entry in plan.targets
            for url in entry.target.replica_urls
        )
    )
    return PreflightReport(checks=[check for checks in found for check in checks], where=where)


__all__ = ["http_get", "run_preflight"]
