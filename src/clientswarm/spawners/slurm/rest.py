"""slurmrestd as a backend: submit, follow and cancel job arrays over HTTP or a unix socket.

Paths (``<ver>`` is ``rest.api_version``, ``v0.0.38`` on Slurm 22.05)::

    POST   /slurm/<ver>/job/submit   {"script": …, "job": {…}}  → {"job_id": 123, "errors": []}
    GET    /slurm/<ver>/job/<id>     → {"jobs": [every task of the array], "errors": []}
    DELETE /slurm/<ver>/job/<id>     cancel the whole array

Authentication: over a unix socket with ``rest_auth/local`` nothing is sent (slurmrestd trusts
the socket's owner). With ``rest.jwt_env`` the JWT from that variable is sent as
``X-SLURM-USER-TOKEN`` with ``X-SLURM-USER-NAME``. Entries of a reply's ``errors`` list become
a :class:`SpawnerError`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from collections.abc import Mapping
from typing import Any

import aiohttp

from clientswarm.config.spawners import SlurmRestConfig
from clientswarm.errors import SpawnerError
from clientswarm.spawners.slurm.states import TaskStatus, parse_jobs_json

REST_TIMEOUT_S = 30.0
_ESLURM_INVALID_JOB_ID = 2017
_ESLURM_ALREADY_DONE = 2021


def rest_where(rest: SlurmRestConfig) -> str:
    """slurmrestd's address for messages: its URL or ``unix:<socket>``."""
    return rest.url.rstrip("/") if rest.url else f"unix:{rest.socket}"


def rest_headers(
    rest: SlurmRestConfig, environ: Mapping[str, str], default_user: str
) -> dict[str, str]:
    """The headers of every request: the JWT and user name when ``rest.jwt_env`` is set. Pure."""
    headers = {"Accept": "application/json"}
    if rest.jwt_env is None:
        return headers
    token = environ.get(rest.jwt_env, "")
    if not token:
        raise SpawnerError(
            f"{rest.jwt_env} is not set: slurmrestd at {rest_where(rest)} needs a JWT there "
            "(e.g. from `scontrol token`), or remove rest.jwt_env"
        )
    headers["X-SLURM-USER-NAME"] = rest.user_name or default_user
    headers["X-SLURM-USER-TOKEN"] = token
    return headers


def reply_errors(reply: Mapping[str, Any]) -> list[tuple[int | None, str]]:
    """``(error_code, text)`` of each entry of a reply's ``errors`` list."""
    found: list[tuple[int | None, str]] = []
    for entry in reply.get("errors") or []:
        if not isinstance(entry, Mapping):
            found.append((None, str(entry)))
            continue
        code = entry.get("error_code", entry.get("error_number"))
        parts = [str(entry[k]) for k in ("error", "description", "source") if entry.get(k)]
        found.append((code if isinstance(code, int) else None, ": ".join(parts) or str(entry)))
    return found


def _is_unknown_job(errors: list[tuple[int | None, str]]) -> bool:
    return any(
        code == _ESLURM_INVALID_JOB_ID
        or "invalid job id" in text.lower()
        or "unable to find" in text.lower()
        for code, text in errors
    )


class SlurmRest:
    """A slurmrestd client for one ``rest`` configuration."""

    via = "rest"

    def __init__(
        self,
        rest: SlurmRestConfig,
        environ: Mapping[str, str] | None = None,
        timeout_s: float = REST_TIMEOUT_S,
    ) -> None:
        self.rest = rest
        self.environ = environ if environ is not None else os.environ
        self.timeout_s = timeout_s

    def path(self, *parts: str) -> str:
        """``/slurm/<ver>/<parts…>``."""
        return "/".join(["", "slurm", self.rest.api_version, *parts])

    async def request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One request; the HTTP status and the decoded JSON reply."""
        headers = rest_headers(self.rest, self.environ, self.rest.user_name or getpass.getuser())
        connector = aiohttp.UnixConnector(path=self.rest.socket) if self.rest.socket else None
        base = "http://localhost" if self.rest.socket else (self.rest.url or "").rstrip("/")
        where = f"{method} {path} at {rest_where(self.rest)}"
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.request(method, base + path, json=body, headers=headers) as response,
            ):
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SpawnerError(f"slurmrestd did not answer {where}: {exc!r}") from exc
        try:
            reply = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            raise SpawnerError(
                f"slurmrestd answered {where} with HTTP {status} and no JSON: {text[-500:]!r}"
            ) from None
        if not isinstance(reply, dict):
            raise SpawnerError(f"slurmrestd answered {where} with unexpected JSON: {text[-500:]!r}")
        return status, reply

    @staticmethod
    def _raise(what: str, status: int, reply: Mapping[str, Any]) -> None:
        errors = reply_errors(reply)
        if errors or status >= 400:
            said = "; ".join(text for _, text in errors) or f"HTTP {status}"
            raise SpawnerError(f"{what}: slurmrestd says {said}")

    async def submit(self, script: str, job: Mapping[str, Any]) -> str:
        """Submit the array; its job id."""
        status, reply = await self.request(
            "POST", self.path("job", "submit"), {"script": script, "job": job}
        )
        job_id = reply.get("job_id")
        if reply_errors(reply) and isinstance(job_id, int) and job_id > 0:
            # Submitted but with a complaint (e.g. left held): leave nothing behind.
            with contextlib.suppress(SpawnerError):
                await self.cancel(str(job_id))
        self._raise("Slurm refused the job array", status, reply)
        if not isinstance(job_id, int):
            raise SpawnerError(f"slurmrestd accepted the job array but sent no job id: {reply}")
        return str(job_id)

    async def tasks(self, job_id: str) -> dict[int, TaskStatus]:
        """The tasks of array ``job_id`` by index; empty when Slurm no longer knows the job."""
        status, reply = await self.request("GET", self.path("job", job_id))
        if _is_unknown_job(reply_errors(reply)):
            return {}
        self._raise(f"could not read the state of Slurm job {job_id}", status, reply)
        try:
            return parse_jobs_json(reply, job_id)
        except ValueError as exc:
            raise SpawnerError(f"unexpected reply for Slurm job {job_id}: {exc}") from exc

    async def cancel(self, job_id: str) -> None:
        """Cancel the whole array; a job that has already ended is not an error."""
        status, reply = await self.request("DELETE", self.path("job", job_id))
        errors = reply_errors(reply)
        if _is_unknown_job(errors) or any(code == _ESLURM_ALREADY_DONE for code, _ in errors):
            return
        self._raise(f"could not cancel Slurm job {job_id}", status, reply)
