"""Every error the service returns is JSON with a readable message.

Shape: ``{"error": {"status": 422, "message": "…", "problems": ["field: …", …]}}``;
``problems`` only for invalid input, one line per problem, the same lines the CLI prints.
:class:`ErrorBody` declares that shape in the OpenAPI document, and :func:`error_responses`
the statuses a route may answer with it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from clientswarm.config.errors import show_value
from clientswarm.config.loader import MAX_ALIAS_NODES, MAX_DEPTH
from clientswarm.errors import ConfigError, SpawnerError
from clientswarm.service.manager import Busy, Conflict, Gone, NotFound
from clientswarm.store import StoreUnavailable

log = logging.getLogger("clientswarm.service")


def error_body(status: int, message: str, problems: list[str] | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"status": status, "message": message}
    if problems is not None:
        error["problems"] = problems
    return {"error": error}


def error_response(
    status: int,
    message: str,
    problems: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error response in the service's shape."""
    return JSONResponse(error_body(status, message, problems), status_code=status, headers=headers)


class ErrorDetail(BaseModel):
    """What went wrong: the status again, one readable line, and for invalid input one line per
    problem."""

    status: int = Field(ge=400, le=599, description="The HTTP status of the response")
    message: str = Field(description="What failed, what was expected and what to do")
    problems: list[str] | None = Field(
        default=None, description="Invalid input only: one line per problem, naming the field"
    )
    locations: list[ProblemAt] | None = Field(
        default=None,
        description="An invalid configuration only: each problem with its line and column in "
        "the body (1-based), for an editor",
    )


class ProblemAt(BaseModel):
    """One problem of a configuration and where it is in the text that was sent."""

    message: str
    line: int = Field(ge=1)
    column: int = Field(ge=1)


class ErrorBody(BaseModel):
    """The body of every error response of the service."""

    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request body is not UTF-8 JSON",
    401: "No bearer token: send 'Authorization: Bearer <token>'",
    403: "The bearer token is not valid here",
    404: "No such cluster (or client, group or worker of it)",
    409: "The request does not fit the cluster's status (it has finished, or it still runs)",
    410: "The cluster no longer runs, or no longer needs this worker",
    413: "The request body is larger than the service's limit (serve --max-body-mb)",
    422: "Invalid input: a path or query parameter, or the request body; one line per problem",
    429: "At one of the operator's limits: retry later (after Retry-After seconds, when given)",
    503: "The store is unavailable (full disk, lost database server): retry later",
}
"""What each error status means, for the OpenAPI document."""

CONFIG_REFUSED = (
    "Invalid configuration, one line per problem: refused by the validator (what the schema "
    "says, and rules across fields), or by this service's operator, whose flags on "
    "clientswarm serve decide what a posted configuration may reach: files outside "
    "--allow-path, variables not named by --allow-env, targets outside --allow-target, "
    "modules not named by --allow-module, inline code without --allow-inline-code, spawner "
    "options that only the presets of --spawner-preset may set, more workers or clients than "
    "--max-workers and --max-clients; files (datasets, tokenizers, user code) that cannot "
    "be read or loaded; and the parser's bounds: lists and mappings nested more than "
    f"{MAX_DEPTH} levels, YAML aliases that repeat more than {MAX_ALIAS_NODES:,} values, "
    "integers beyond 64 bits, numbers that are not finite"
)
"""The 422 of the routes that take a configuration: some of it depends on the operator."""


def error_responses(
    *statuses: int, descriptions: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``statuses``, each with :class:`ErrorBody` as its body."""
    described = {**ERROR_DESCRIPTIONS, **(descriptions or {})}
    return {status: {"model": ErrorBody, "description": described[status]} for status in statuses}


PLAIN_STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    Busy: 429,
    SpawnerError: 502,
    StoreUnavailable: 503,  # the database failed (full disk, lost server): retry later
}
"""Errors whose message is the whole answer, and their HTTP status."""


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to a JSON error with the right status."""

    @app.exception_handler(ConfigError)
    async def _config(_: Request, exc: ConfigError) -> JSONResponse:
        lines = exc.problems
        body = error_body(422, f"invalid configuration: {lines[0]}", lines)
        if exc.locations is not None:
            body["error"]["locations"] = exc.locations
        return JSONResponse(body, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        lines = [_request_problem(err) for err in exc.errors()]
        return error_response(422, f"invalid request: {lines[0]}", lines)

    async def _plain(_: Request, exc: Exception) -> JSONResponse:
        status = next(PLAIN_STATUS[k] for k in type(exc).__mro__ if k in PLAIN_STATUS)
        return error_response(status, str(exc))

    for kind in PLAIN_STATUS:
        app.add_exception_handler(kind, _plain)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: say so in the service's shape; the traceback goes to the log.
        log.error("unhandled error", exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); see the service log")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only; a
            # path served by several routes (GET and POST /clusters) supports them all.
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, str(exc.detail), headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the app serves at the request's path (asked of each route
    as the router would: included routers hide their routes behind one)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


def _request_problem(err: Any) -> str:
    """One line for a request validation error: where (query, path, body), what, the value."""
    loc = [str(part) for part in err.get("loc", ())]
    where = f"{loc[0]} {'.'.join(loc[1:])}" if len(loc) > 1 else ".".join(loc) or "request"
    line = f"{where}: {err.get('msg', 'invalid')}"
    if "input" in err and err["input"] is not None:
        line += f"; got {show_value(err['input'])}"
    return line
