"""Base of the configuration models, and the patterns several of them check."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""The name of an environment variable."""
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""The name of an HTTP header (an RFC 9110 token)."""
URL_PATTERN = r"^https?://[^/\s\x00-\x1f\x7f\x85]+(/[^\s\x00-\x1f\x7f\x85]*)?$"
"""An http(s) URL with a host (the control characters spelled out: JSON Schema's regular
expressions count fewer characters as spaces than Python's)."""


class StrictModel(BaseModel):
    """Base of every configuration model: unknown fields are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
