"""The path and query parameters of the service's routes, each bounded.

A parameter outside its bounds is a 422 that names it: never a value that reaches the store
(an integer past 64 bits, a NUL byte in a string) to fail there as a 500.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from clientswarm.config.models import NAME_PATTERN
from clientswarm.service.lifecycle import ClusterStatus

ClusterId = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=64,
        description="The cluster's id, as its creation returned it",
    ),
]
"""A cluster's id (the service makes 12 hexadecimal digits)."""

ClientId = Annotated[
    int, Path(ge=0, le=2**31 - 1, description="The client's id within its cluster (from 0)")
]
"""A client's id within its cluster."""

WorkerIndex = Annotated[
    int, Path(ge=0, le=1_000_000, description="The worker's index within its cluster (from 0)")
]
"""A worker's index within its cluster."""

GroupName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=64, description="The name of a group")
]
"""A group's name, as the configuration gave it."""

GroupFilter = Annotated[
    str | None,
    Query(pattern=NAME_PATTERN, max_length=64, description="only clients of this group"),
]
"""An optional group name in a query."""

StatusFilter = Annotated[
    str | None,
    Query(pattern=r"^[a-z_]+$", max_length=32, description="only those in this status"),
]
"""An optional state (of a client) in a query."""

ClusterStatusFilter = Annotated[
    ClusterStatus | None, Query(description="only clusters in this status")
]
"""An optional cluster status in a query: any other value is a 422 that lists the valid ones."""

EventId = Annotated[
    int, Query(ge=0, le=2**63 - 1, description="only events after the one with this id")
]
"""An event id in a query."""
