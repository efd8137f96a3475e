"""Access control: a bearer token for the frontend and monitor APIs, one per cluster for workers.

Tokens are compared in constant time and never logged. With no API token configured the
frontend and monitor APIs are open, which ``serve`` allows only on a loopback address unless
the user passes ``--insecure-no-auth``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.security.utils import get_authorization_scheme_param
from starlette.exceptions import HTTPException

BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def api_token_guard(expected: str | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that requires ``expected`` as bearer token (no-op when None)."""

    async def guard(request: Request) -> None:
        if expected is None:
            return
        token = bearer_token(request)
        if token is None:
            raise HTTPException(
                401, "missing bearer token: send 'Authorization: Bearer <token>'", BEARER_CHALLENGE
            )
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise HTTPException(403, "the bearer token is not valid for this service")

    return guard


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the service reachable from this machine only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
