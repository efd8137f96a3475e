"""Schemathesis hooks of ``test_api_contract.py`` (loaded by path through SCHEMATHESIS_HOOKS).

- ``filter_failure``: a configuration valid by the published schema may still get a 422 from
  the routes that take one, for what JSON Schema cannot say — the rules across fields
  (min <= max, a stop condition, ``vary`` against the interaction's parameters…) and what the
  operator's flags allow (paths, variables, targets, modules, limits): documented 422s. Such a
  rejection is dropped here only when this process's own validator confirms it; a schema-valid
  value of a single field that the validator refuses stays a failure (the schema is looser).
- ``filter_body``: of the configurations the service would run, only small, short ones are
  sent, so that the clusters schemathesis creates stay bounded in time and work.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

from clientswarm.config.load import TraceLoadConfig
from clientswarm.config.loader import validate_config_data
from clientswarm.config.models import ClusterConfig, GroupConfig
from clientswarm.errors import ConfigError
from clientswarm.load.trace import replayed

CONFIG_ROUTES = {
    ("POST", "/api/v1/clusters"),
    ("POST", "/api/v1/validate"),
    ("POST", "/api/v1/repeats"),
}
RUNNING_ROUTES = ("/api/v1/clusters", "/api/v1/repeats")
"""The routes that run the configuration they take."""

# Validator rules across fields, which JSON Schema cannot state (by their messages).
ACROSS_FIELDS = re.compile(
    "|".join(
        [
            r"^[^:]*\.vary\b",  # names and values checked against the interaction's parameters
            r"must be <= max",
            r"must be >= min",
            r"a group needs a stop condition",
            r"an open load needs a rate",
            r"give either rate or stages",
            r"a stage asks for \d+ clients",
            r"stage_warmup_s needs stages",
            r"stage_warmup_s \(.*\) must be shorter than every stage",
            r"stage_warmup_s cannot be combined with stop.requests",
            r"a sweep needs exactly one of rates, concurrencies or points",
            r"drain_s applies to an automatic sweep",
            r"ends by itself: remove stop",
            r"an automatic sweep needs clients of at least 2",
            r"a capacity search needs an SLO",
            r"must be at least start_rate",
            r"groups \* prompts_per_group = .* prompts, more than the",
            r"applies to a rates sweep, not to concurrencies",
            r"stage_warmup_s \(.*\) must be shorter than stage_s",
            r"give one prompt source",
            r"group names must be unique",
            r"source is the text of a file: interaction",
            r"image: required",
            r"a toleration with",
            r"a toleration without a key",
            r"tolerationSeconds needs effect",
            r"give exactly one of",
            r"give the target \(target: \{url: …\}\) or several targets by name",
            r"target: required when there are several targets",
            r"is not a target of this configuration",
            r"submit_via: rest needs rest",
            r"more than once",
            r"must be <= window",  # abort.min_requests
            r"is known only at the end of the run",  # a threshold with abort: true
            r"a trace load needs exactly one of path",
            r"a trace load sets each request's prompt length",
            r"burstiness applies to arrival: gamma",
            r"give url or urls, not both",
            r"give one audio source, not audio and files",
            r"bytes of pixels, more than the",
            r"bytes of samples, more than",
            r"a replica is listed more than once",
            r"keeps them in files: use sample_path: service",  # an adaptive group
            r"never sees them with sample_path: files",  # an OTLP samples export
        ]
    )
)

MAX_ARRIVALS = 2000
"""Most interactions one group of a created cluster may be scheduled to send."""
MAX_SECONDS = 20.0
"""Longest a created cluster may be planned to run (warm-up included)."""


def single_field_problems(body: Any) -> list[str]:
    """The validator's problems with ``body`` that the published schema should have excluded."""
    try:
        validate_config_data(body)
    except ConfigError as exc:
        return [line for line in exc.problems if not ACROSS_FIELDS.search(line)]
    return []


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a documented 422 of a schema-valid configuration."""
    if failure.code != "ST202" or (case.method.upper(), case.path) not in CONFIG_ROUTES:
        return True
    return bool(single_field_problems(case.body))


def _light(group: GroupConfig, warmup_s: float) -> bool:
    duration_s = group.duration_s
    if duration_s is not None and duration_s + warmup_s > MAX_SECONDS:
        return False
    if isinstance(group.load, TraceLoadConfig):
        return _light_trace(group.load)
    if group.load.kind == "closed":
        return duration_s is not None or (group.stop.requests or 0) <= MAX_ARRIVALS
    rates = [stage.rate for stage in group.load.stages] or [group.load.rate or 0.0]
    if duration_s is None:
        arrivals = (group.stop.requests or 0) + max(rates) * warmup_s
    else:
        arrivals = max(rates) * (duration_s + warmup_s)
    return arrivals <= MAX_ARRIVALS


def _light_trace(load: TraceLoadConfig) -> bool:
    """A trace sent inline with few requests over a short time (a path is not read here: the
    service refuses a missing or malformed file)."""
    try:
        window = replayed(load)
    except ConfigError:
        return True  # refused before anything runs
    return len(window) <= MAX_ARRIVALS and window.span_s / load.speedup <= MAX_SECONDS


def light(body: Any) -> bool:
    """Whether the cluster of ``body`` (if any) runs a small, short load."""
    try:
        config: ClusterConfig = validate_config_data(body)
    except ConfigError:
        return True  # refused before anything runs
    return all(_light(group, config.warmup_s) for group in config.groups)


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """Send only light configurations to the route that runs them."""
    operation = context.operation
    if operation is None or operation.method.upper() != "POST":
        return True
    return operation.path not in RUNNING_ROUTES or light(body)
