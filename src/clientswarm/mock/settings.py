"""Settings of the mock target: every ``clientswarm mock-server`` option, with its default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from clientswarm.errors import ConfigError

Distribution = Literal["normal", "lognormal", "exponential", "constant"]
"""Shape of a delay distribution; see :mod:`clientswarm.mock.sampling`."""

DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)


@dataclass(frozen=True, slots=True)
class MockSettings:
    """How the mock target behaves: timing, capacity, injected faults and identity.

    Delays are in milliseconds, rates are probabilities per request in ``[0, 1]`` whose sum is at
    most 1. The KV cache (``kv_cache_tokens``), the prefix cache (``prefix_block_tokens``,
    ``prefix_cache_blocks``) and ``prefill_ms_per_token`` are modelled by
    :mod:`clientswarm.mock.scheduler`; their defaults leave timing as without them. ``host`` and
    ``port`` are used by the CLI; :func:`start_mock_server` takes its own.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "mock-model"
    seed: int = 0
    output_tokens: int = 128
    tokens_per_chunk: int = 1
    ttft_ms: float = 50.0
    ttft_std_ms: float = 0.0
    itl_ms: float = 10.0
    itl_std_ms: float = 0.0
    distribution: Distribution = "normal"
    max_concurrency: int = 256
    kv_cache_tokens: int = 1_000_000
    prefix_block_tokens: int = 16
    prefix_cache_blocks: int = 100_000
    prefill_ms_per_token: float = 0.0
    error_rate_500: float = 0.0
    error_rate_429: float = 0.0
    stream_error_rate: float = 0.0
    drop_rate: float = 0.0
    embedding_dim: int = 16
    embedding_ms: float = 0.0

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems, source="mock-server")

    def problems(self) -> list[str]:
        """One readable line per invalid field (empty when the settings are valid)."""
        problems: list[str] = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port: {self.port} is not a TCP port (0..65535; 0 picks a free one)")
        for name in (
            "output_tokens",
            "tokens_per_chunk",
            "max_concurrency",
            "kv_cache_tokens",
            "prefix_block_tokens",
            "prefix_cache_blocks",
            "embedding_dim",
        ):
            value = getattr(self, name)
            if value < 1:
                problems.append(f"{name}: {value} must be at least 1")
        for name in (
            "ttft_ms",
            "ttft_std_ms",
            "itl_ms",
            "itl_std_ms",
            "prefill_ms_per_token",
            "embedding_ms",
        ):
            value = getattr(self, name)
            if not value >= 0:
                problems.append(f"{name}: {value} must be >= 0 milliseconds")
        if self.distribution not in DISTRIBUTIONS:
            choices = ", ".join(DISTRIBUTIONS)
            problems.append(f"distribution: {self.distribution!r} is not one of {choices}")
        rates = self.fault_rates()
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                problems.append(f"{name}: {rate} must be a probability in [0, 1]")
        if sum(rates.values()) > 1.0 + 1e-9:
            problems.append(
                f"fault rates add up to {sum(rates.values()):g}; their sum must be at most 1"
            )
        return problems

    def fault_rates(self) -> dict[str, float]:
        """The fault probabilities by option name."""
        return {
            "error_rate_500": self.error_rate_500,
            "error_rate_429": self.error_rate_429,
            "stream_error_rate": self.stream_error_rate,
            "drop_rate": self.drop_rate,
        }

    def replace(self, **changes: Any) -> MockSettings:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
