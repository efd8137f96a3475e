"""Seeded delay distributions for the mock target's TTFT and inter-token latency.

Every shape is parametrised by the same two numbers, a mean and a standard deviation:

- ``constant``: always the mean.
- ``normal``: Normal(mean, std), clipped at 0; a std of 0 is the constant.
- ``lognormal``: the log-normal whose own mean and std are the given ones (its median is below the
  mean); a std of 0 is the constant.
- ``exponential``: Exponential with the given mean (its std equals its mean; ``std`` is ignored).

Samples are never negative.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from clientswarm.mock.settings import DISTRIBUTIONS, Distribution

FloatArray = npt.NDArray[np.float64]


class DelaySampler:
    """Draws delays in seconds from one distribution, using a caller-owned seeded generator."""

    __slots__ = ("_distribution", "_mean_s", "_mu", "_rng", "_sigma", "_std_s")

    def __init__(
        self,
        distribution: Distribution,
        mean_ms: float,
        std_ms: float,
        rng: np.random.Generator,
    ) -> None:
        if distribution not in DISTRIBUTIONS:
            choices = ", ".join(DISTRIBUTIONS)
            raise ValueError(f"distribution {distribution!r} is not one of {choices}")
        if mean_ms < 0 or std_ms < 0:
            raise ValueError(f"mean ({mean_ms} ms) and std ({std_ms} ms) must be >= 0")
        self._rng = rng
        self._mean_s = mean_ms / 1000.0
        self._std_s = std_ms / 1000.0
        self._distribution: Distribution = distribution
        if distribution in ("normal", "lognormal") and self._std_s == 0.0:
            self._distribution = "constant"
        if self._mean_s == 0.0:
            self._distribution = "constant"
        self._mu = 0.0
        self._sigma = 0.0
        if self._distribution == "lognormal":
            # Moments of the log-normal matched to the requested mean and std.
            sigma2 = math.log1p((self._std_s / self._mean_s) ** 2)
            self._sigma = math.sqrt(sigma2)
            self._mu = math.log(self._mean_s) - sigma2 / 2.0

    @property
    def mean_s(self) -> float:
        """The configured mean, in seconds."""
        return self._mean_s

    def sample_s(self, count: int) -> FloatArray:
        """``count`` delays in seconds (an empty array for ``count <= 0``)."""
        if count <= 0:
            return np.empty(0, dtype=np.float64)
        match self._distribution:
            case "constant":
                return np.full(count, self._mean_s, dtype=np.float64)
            case "normal":
                drawn = self._rng.normal(self._mean_s, self._std_s, count)
                return np.maximum(drawn, 0.0)
            case "lognormal":
                return self._rng.lognormal(self._mu, self._sigma, count)
            case "exponential":
                return self._rng.exponential(self._mean_s, count)
        raise AssertionError(self._distribution)  # pragma: no cover

    def one_s(self) -> float:
        """One delay in seconds."""
        return float(self.sample_s(1)[0])
