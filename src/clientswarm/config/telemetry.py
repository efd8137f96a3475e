"""Telemetry export: a run's metrics and samples sent over OpenTelemetry (OTLP/HTTP).

The service exports (it has every committed sample and the live statistics): see
:mod:`clientswarm.service.telemetry` for what is sent and when. Credentials for the endpoint
come from environment variables of the service, by name, like a target's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from clientswarm.config.base import ENV_NAME_PATTERN, HEADER_NAME_PATTERN, URL_PATTERN, StrictModel

Signal = Literal["metrics", "samples"]
"""What is exported: the run's metrics (OTLP metrics), its samples (one OTLP span each)."""

SIGNALS: tuple[Signal, ...] = ("metrics", "samples")

ATTRIBUTE_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"
AttributeKey = Annotated[str, Field(pattern=ATTRIBUTE_KEY_PATTERN, max_length=255)]


def _keys_by_name(schema: dict[str, Any], pattern: str) -> None:
    """A mapping's schema that says every key matches ``pattern`` and every value is a string
    (pydantic writes ``patternProperties``, which lets other keys through with any value)."""
    schema.pop("patternProperties", None)
    schema["propertyNames"] = {"pattern": pattern, "maxLength": 255}
    schema["additionalProperties"] = {"type": "string"}


class OtlpConfig(StrictModel):
    """An OTLP/HTTP endpoint (protobuf encoding) and what to send it."""

    endpoint: str = Field(
        max_length=2048,
        description="Base URL of the OTLP/HTTP receiver, e.g. http://otel-collector:4318; "
        "metrics go to <endpoint>/v1/metrics, samples to <endpoint>/v1/traces",
        json_schema_extra={"pattern": URL_PATTERN},
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra={"propertyNames": {"pattern": HEADER_NAME_PATTERN.pattern}},
        description="Extra HTTP headers sent as written; shown redacted by the service. Put "
        "credentials in headers_from_env instead",
    )
    headers_from_env: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra={
            "propertyNames": {"pattern": HEADER_NAME_PATTERN.pattern},
            "additionalProperties": {"type": "string", "pattern": ENV_NAME_PATTERN.pattern},
        },
        description="Extra HTTP headers whose value is read from an environment variable of "
        "the service, by name, e.g. {Authorization: OTLP_AUTH} (never the value itself)",
    )
    export: list[Signal] = Field(
        default_factory=lambda: list(SIGNALS),
        min_length=1,
        max_length=2,
        description="What to export: metrics (counters, histograms, throughput gauges per "
        "group) and/or samples (one span per request)",
    )
    interval_s: float = Field(
        default=5.0, ge=0.5, le=300, description="Seconds between exports during the run"
    )
    timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="How long one export request may take"
    )
    resource: dict[AttributeKey, str] = Field(
        default_factory=dict,
        max_length=64,
        json_schema_extra=lambda schema: _keys_by_name(schema, ATTRIBUTE_KEY_PATTERN),
        description="Resource attributes added to everything exported, e.g. "
        "{deployment.environment: staging}; service.name is clientswarm unless given",
    )
    max_queue: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="Samples waiting to be exported at most; more (the endpoint is slower than "
        "the run) are dropped and counted in an event, never held up",
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, url: str) -> str:
        if not re.match(URL_PATTERN, url):
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:4318"
            )
        return url.rstrip("/")

    @field_validator("headers", "headers_from_env")
    @classmethod
    def _check_header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for header in headers:
            if not HEADER_NAME_PATTERN.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
        return headers

    @field_validator("headers_from_env")
    @classmethod
    def _check_env_names(cls, names: dict[str, str]) -> dict[str, str]:
        for header, name in names.items():
            if not ENV_NAME_PATTERN.match(name):
                raise ValueError(
                    f"{header}: must be the name of an environment variable that holds the "
                    "value (letters, digits and '_'); never the value itself"
                )
        return names

    @field_validator("export")
    @classmethod
    def _unique(cls, signals: list[Signal]) -> list[Signal]:
        return list(dict.fromkeys(signals))

    def url(self, signal: Signal) -> str:
        """Where ``signal`` is posted (the OTLP/HTTP paths)."""
        return f"{self.endpoint}/v1/{'traces' if signal == 'samples' else 'metrics'}"


class TelemetryConfig(StrictModel):
    """Where the run's telemetry goes besides the service's own ``/metrics``."""

    otlp: OtlpConfig | None = Field(
        default=None,
        description="Export over OpenTelemetry (OTLP/HTTP, protobuf): {endpoint, headers, "
        "headers_from_env, export, interval_s, timeout_s, resource, max_queue}; needs the "
        "otel extra (pip install 'clientswarm[otel]')",
    )


__all__ = ["OtlpConfig", "Signal", "TelemetryConfig"]
