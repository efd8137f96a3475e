"""Token-length distributions for synthetic prompts and outputs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, model_validator

from clientswarm.config.base import StrictModel

if TYPE_CHECKING:  # numpy is imported where lengths are drawn: validation does not need it
    import numpy as np

MAX_TOKENS = 10_000_000
"""Most tokens one length may ask for (the longest context windows hold about this many)."""


class FixedLength(StrictModel):
    """Always the same number of tokens."""

    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1, le=MAX_TOKENS, description="Number of tokens")

    def sample(self, rng: np.random.Generator, n: int) -> list[int]:
        """Draw ``n`` lengths."""
        return [self.value] * n


class UniformLength(StrictModel):
    """Uniform integer lengths in [min, max]."""

    kind: Literal["uniform"] = "uniform"
    min: int = Field(ge=1, le=MAX_TOKENS)
    max: int = Field(ge=1, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self

    def sample(self, rng: np.random.Generator, n: int) -> list[int]:
        """Draw ``n`` lengths."""
        return [int(x) for x in rng.integers(self.min, self.max + 1, size=n)]


class NormalLength(StrictModel):
    """Normal lengths, rounded and clipped to [min, max]."""

    kind: Literal["normal"] = "normal"
    mean: float = Field(gt=0)
    std: float = Field(ge=0)
    min: int = Field(default=1, ge=1, le=MAX_TOKENS)
    max: int | None = Field(default=None, ge=1, le=MAX_TOKENS)

    def sample(self, rng: np.random.Generator, n: int) -> list[int]:
        """Draw ``n`` lengths."""
        hi = self.max if self.max is not None else 2**31 - 1
        import numpy as np

        return [int(x) for x in np.clip(np.rint(rng.normal(self.mean, self.std, n)), self.min, hi)]


class LognormalLength(StrictModel):
    """Log-normal lengths with the given mean and standard deviation, clipped to [min, max]."""

    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    std: float = Field(gt=0)
    min: int = Field(default=1, ge=1, le=MAX_TOKENS)
    max: int | None = Field(default=None, ge=1, le=MAX_TOKENS)

    def sample(self, rng: np.random.Generator, n: int) -> list[int]:
        """Draw ``n`` lengths."""
        sigma2 = math.log(1.0 + (self.std / self.mean) ** 2)
        mu = math.log(self.mean) - sigma2 / 2.0
        hi = self.max if self.max is not None else 2**31 - 1
        raw = rng.lognormal(mu, math.sqrt(sigma2), n)
        import numpy as np

        return [int(x) for x in np.clip(np.rint(raw), self.min, hi)]


def coerce_length(value: Any) -> Any:
    """Let a bare integer stand for a fixed length: ``input_tokens: 128`` (or ``128.0``: JSON
    Schema counts it as an integer too)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return {"kind": "fixed", "value": value}
    return value


_LengthUnion = Annotated[
    FixedLength | UniformLength | NormalLength | LognormalLength, Discriminator("kind")
]

# Discriminator() rather than Field(discriminator=...): the latter is lost when the alias is
# wrapped again (``LengthDist | None``), which silently disabled the bare-integer shorthand there.
# json_schema_input_type lets editors accept the shorthand too.
LengthDist = Annotated[
    _LengthUnion,
    BeforeValidator(
        coerce_length,
        json_schema_input_type=Annotated[int, Field(ge=1, le=MAX_TOKENS)] | _LengthUnion,
    ),
]
