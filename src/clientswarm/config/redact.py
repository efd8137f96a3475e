"""What the service shows of a configuration: header values never.

``target.headers`` (and an ``http`` interaction's ``headers``, and their varied values) may
hold a credential written into the file; the service stores the configuration to hand it to
its workers, but every view of it — cluster views, client views, events, results — shows each
header value as :data:`REDACTED`. Credentials belong in ``target.headers_from_env`` (by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"


def redact_headers(headers: Any) -> Any:
    """A header mapping with every value redacted (anything else as it is)."""
    if isinstance(headers, Mapping):
        return {name: REDACTED for name in headers}
    return headers


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready configuration (``model_dump`` or parsed JSON) with every header value
    redacted: the target's, each interaction's, varied ones and the OTLP endpoint's."""
    shown = dict(config)
    target = shown.get("target")
    if isinstance(target, Mapping):
        shown["target"] = {**target, "headers": redact_headers(target.get("headers", {}))}
    groups = shown.get("groups")
    if isinstance(groups, list):
        shown["groups"] = [_redact_group(group) for group in groups]
    telemetry = shown.get("telemetry")
    otlp = telemetry.get("otlp") if isinstance(telemetry, Mapping) else None
    if isinstance(telemetry, Mapping) and isinstance(otlp, Mapping):
        otlp = {**otlp, "headers": redact_headers(otlp.get("headers", {}))}
        shown["telemetry"] = {**telemetry, "otlp": otlp}
    return shown


def redact_vary(values: Mapping[str, Any]) -> dict[str, Any]:
    """Varied values (by parameter name or dotted path) with header values redacted."""
    return {name: _redact_varied(name, value) for name, value in values.items()}


def _redact_varied(name: str, value: Any) -> Any:
    head = name.split(".", 1)[0]
    if head != "headers":
        return value
    if "." in name:
        return REDACTED
    if isinstance(value, list):
        return [redact_headers(item) for item in value]
    return redact_headers(value)


def _redact_group(group: Any) -> Any:
    if not isinstance(group, Mapping):
        return group
    shown = dict(group)
    interaction = shown.get("interaction")
    if isinstance(interaction, Mapping) and "headers" in interaction:
        shown["interaction"] = {**interaction, "headers": redact_headers(interaction["headers"])}
    vary = shown.get("vary")
    if isinstance(vary, Mapping):
        shown["vary"] = redact_vary(vary)
    return shown


__all__ = ["REDACTED", "redact_config", "redact_headers", "redact_vary"]
