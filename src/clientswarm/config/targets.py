"""The target of a configuration: the service under test, its replicas, and where its engine
metrics are read (``target:``, or each entry of ``targets:``)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from clientswarm.config.base import (
    ENV_NAME_PATTERN,
    HEADER_NAME_PATTERN,
    URL_PATTERN,
    StrictModel,
)

MetricsUrl = Annotated[str, Field(max_length=2048, json_schema_extra={"pattern": URL_PATTERN})]
"""A metrics page's URL (checked by :meth:`EngineMetricsConfig._check_urls`; the schema says
what it checks)."""


class EngineMetricsConfig(StrictModel):
    """Reading the target's engine metrics (its Prometheus page) during the run.

    Written as ``false`` (do not), ``true`` (the default: the target's own ``/metrics``, if it
    has one), a URL, a list of URLs (the replicas of a target behind one address), or this
    mapping. Known engines (vLLM, SGLang, TGI) are recognised by their metric names; ``series``
    adds any other by name.
    """

    enabled: bool = Field(default=True, description="Scrape the engine's metrics")
    urls: list[MetricsUrl] = Field(
        default_factory=list,
        max_length=64,
        description="Metrics pages to scrape, e.g. http://10.0.0.5:8000/metrics (one per "
        "replica); none: the target's url + /metrics, if it answers",
    )
    interval_s: float = Field(default=1.0, ge=0.1, le=60, description="Seconds between scrapes")
    series: list[Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=200)]] = (
        Field(
            default_factory=list,
            max_length=100,
            description="Other metrics to keep, by name (summed over their labels)",
        )
    )
    scraper: Literal["auto", "service", "worker"] = Field(
        default="auto",
        description="Who scrapes: the service (it must reach the target), worker 0 (it "
        "reaches what the clients reach), or auto: the service for local workers, else worker 0",
    )

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(URL_PATTERN, url):
                raise ValueError(
                    f"{url!r} must be an http:// or https:// URL with a host, e.g. "
                    "http://127.0.0.1:8000/metrics"
                )
        return urls


def _coerce_metrics(value: Any) -> Any:
    if value is False:
        return {"enabled": False}
    if value is True or value is None:
        return {}
    if isinstance(value, str):
        return {"urls": [value]}
    if isinstance(value, list):
        return {"urls": value}
    return value


EngineMetrics = Annotated[
    EngineMetricsConfig,
    BeforeValidator(
        _coerce_metrics,
        json_schema_input_type=bool
        | MetricsUrl
        | Annotated[list[MetricsUrl], Field(max_length=64)]
        | EngineMetricsConfig,
    ),
]


class TargetConfig(StrictModel):
    """The Server Microservice under test (vLLM or any OpenAI-compatible server).

    ``urls`` lists replicas of one deployment (each request goes to one of them, spread by
    ``balance``); ``url`` is then the first one.
    """

    url: str = Field(
        description="Base URL of the target, e.g. http://127.0.0.1:8000 (or urls: replicas)",
        json_schema_extra={"pattern": URL_PATTERN},  # the schema says what _check_url checks
    )
    urls: (
        list[Annotated[str, Field(max_length=2048, json_schema_extra={"pattern": URL_PATTERN})]]
        | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Replicas of the target, e.g. [http://10.0.0.5:8000, http://10.0.0.6:8000]: "
        "each request goes to one, spread by balance; per-replica statistics beside the "
        "target's (give url or urls)",
    )
    balance: Literal["round_robin", "least_in_flight"] = Field(
        default="round_robin",
        description="How the requests of each worker are spread over urls: each replica in "
        "turn, or the one with the fewest of its requests in flight",
    )
    model: str | None = Field(
        default=None, description="Model name sent in OpenAI requests; none sends no model field"
    )
    api_key_env: str | None = Field(
        default=None,
        json_schema_extra={"pattern": ENV_NAME_PATTERN.pattern},
        description=(
            "Name of the environment variable that holds the API key (never the key itself)"
        ),
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Total timeout of one request")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers sent as written; shown redacted by the service. Put "
        "credentials in headers_from_env instead",
    )
    headers_from_env: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={
            "propertyNames": {"pattern": HEADER_NAME_PATTERN.pattern},
            "additionalProperties": {"type": "string", "pattern": ENV_NAME_PATTERN.pattern},
        },
        description="Extra HTTP headers whose value is read from an environment variable of "
        "the workers, by name, e.g. {X-Api-Key: TARGET_KEY} (never the value itself)",
    )
    hello_path: str = Field(
        default="/",
        json_schema_extra={"pattern": "^/"},
        description="Path of the target's hello-world route",
    )
    max_event_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        le=1 << 26,
        description="Largest SSE event (or line) a stream may send, in bytes (1 KiB to 64 MiB); "
        "a longer one fails the request as a protocol error instead of growing without bound",
    )
    metrics: EngineMetrics = Field(
        default_factory=EngineMetricsConfig,
        description="The engine's Prometheus metrics, scraped during the run: false, true "
        "(default: url + /metrics, if it answers), a URL, a list of URLs, or {urls, "
        "interval_s, series, scraper}",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if not re.match(URL_PATTERN, url):
            raise ValueError(
                "must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000"
            )
        return url.rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _url_of_replicas(cls, data: Any) -> Any:
        """``urls`` alone gives ``url`` (its first); both must agree."""
        if not isinstance(data, dict) or not isinstance(data.get("urls"), list):
            return data
        urls = data["urls"]
        if urls and "url" not in data and isinstance(urls[0], str):
            return {**data, "url": urls[0]}
        url = data.get("url")
        if urls and isinstance(url, str) and url.rstrip("/") != str(urls[0]).rstrip("/"):
            raise ValueError(
                f"give url or urls, not both (url {url!r} is not the first of urls); "
                "with urls, url is their first"
            )
        return data

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, urls: list[str] | None) -> list[str] | None:
        if urls is None:
            return None
        for url in urls:
            if not re.match(URL_PATTERN, url):
                raise ValueError(
                    f"{url!r} must be an http:// or https:// URL with a host, e.g. "
                    "http://127.0.0.1:8000"
                )
        stripped = [url.rstrip("/") for url in urls]
        if len(set(stripped)) != len(stripped):
            raise ValueError("a replica is listed more than once")
        return stripped

    @property
    def replica_urls(self) -> list[str]:
        """Every URL requests go to: ``urls``, or ``url`` alone."""
        return list(self.urls) if self.urls else [self.url]

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, name: str | None) -> str | None:
        # The value may be the key itself pasted by mistake: never echo it back.
        if name is None or ENV_NAME_PATTERN.match(name):
            return name
        wrapped = re.match(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$", name)
        if wrapped:
            raise ValueError(f"write the variable name alone, without '$': {wrapped.group(1)}")
        raise ValueError(
            "must be the name of an environment variable that holds the key "
            "(letters, digits and '_'), e.g. VLLM_API_KEY; never the key itself"
        )

    @field_validator("headers_from_env")
    @classmethod
    def _check_header_envs(cls, names: dict[str, str]) -> dict[str, str]:
        for header, name in names.items():
            if not HEADER_NAME_PATTERN.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
            if not ENV_NAME_PATTERN.match(name):
                raise ValueError(
                    f"{header}: must be the name of an environment variable that holds the "
                    "value (letters, digits and '_'); never the value itself"
                )
        return names

    @property
    def env_names(self) -> list[str]:
        """The environment variables this target's credentials are read from."""
        names = [self.api_key_env] if self.api_key_env else []
        return names + [name for name in self.headers_from_env.values() if name not in names]

    @field_validator("hello_path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with '/'")
        return path


__all__ = ["EngineMetrics", "EngineMetricsConfig", "MetricsUrl", "TargetConfig"]
