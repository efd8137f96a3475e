"""Service-level objectives: what a request must meet to count towards goodput."""

from __future__ import annotations

from pydantic import Field

from clientswarm.config.base import StrictModel


class SLOConfig(StrictModel):
    """Service-level objectives: a request meets them all or it does not count towards goodput."""

    ttft_s: float | None = Field(default=None, gt=0, description="Max time to first token")
    tpot_s: float | None = Field(default=None, gt=0, description="Max time per output token")
    itl_s: float | None = Field(default=None, gt=0, description="Max mean inter-token latency")
    e2e_s: float | None = Field(default=None, gt=0, description="Max end-to-end latency")

    def bounds(self) -> dict[str, float]:
        """The objectives that are set, by metric name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


__all__ = ["SLOConfig"]
