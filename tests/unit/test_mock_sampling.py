"""The mock target's seeded delay distributions."""

from __future__ import annotations

import numpy as np
import pytest

from clientswarm.mock.sampling import DelaySampler
from clientswarm.mock.settings import Distribution

N = 200_000


def _sampler(
    distribution: Distribution, mean_ms: float, std_ms: float, seed: int = 0
) -> DelaySampler:
    return DelaySampler(distribution, mean_ms, std_ms, np.random.default_rng(seed))


def test_constant_is_always_the_mean() -> None:
    samples = _sampler("constant", 20.0, 5.0).sample_s(100)
    assert samples.tolist() == [0.020] * 100


@pytest.mark.parametrize("distribution", ["normal", "lognormal"])
def test_zero_std_means_constant(distribution: Distribution) -> None:
    assert set(_sampler(distribution, 12.5, 0.0).sample_s(50).tolist()) == {0.0125}


def test_normal_has_the_requested_moments() -> None:
    samples = _sampler("normal", 50.0, 5.0).sample_s(N)
    assert samples.mean() == pytest.approx(0.050, rel=0.005)
    assert samples.std() == pytest.approx(0.005, rel=0.02)
    assert np.median(samples) == pytest.approx(0.050, rel=0.005)


def test_normal_is_clipped_at_zero() -> None:
    samples = _sampler("normal", 1.0, 5.0).sample_s(N)
    assert samples.min() == 0.0
    assert (samples == 0.0).mean() == pytest.approx(0.42, abs=0.01)  # P(N(1, 5) < 0)


def test_lognormal_matches_mean_and_std() -> None:
    samples = _sampler("lognormal", 40.0, 20.0).sample_s(N)
    assert samples.mean() == pytest.approx(0.040, rel=0.01)
    assert samples.std() == pytest.approx(0.020, rel=0.03)
    assert samples.min() > 0.0
    assert np.median(samples) < samples.mean()  # right-skewed


def test_exponential_has_the_mean_and_ignores_std() -> None:
    samples = _sampler("exponential", 10.0, 123.0).sample_s(N)
    assert samples.mean() == pytest.approx(0.010, rel=0.01)
    assert samples.std() == pytest.approx(0.010, rel=0.02)
    assert np.median(samples) == pytest.approx(0.010 * np.log(2), rel=0.02)


@pytest.mark.parametrize("distribution", ["normal", "lognormal", "exponential"])
def test_same_seed_same_draws(distribution: Distribution) -> None:
    first = _sampler(distribution, 30.0, 10.0, seed=42).sample_s(1000)
    again = _sampler(distribution, 30.0, 10.0, seed=42).sample_s(1000)
    other = _sampler(distribution, 30.0, 10.0, seed=43).sample_s(1000)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_zero_mean_and_empty_requests() -> None:
    assert _sampler("exponential", 0.0, 0.0).sample_s(3).tolist() == [0.0, 0.0, 0.0]
    assert _sampler("normal", 5.0, 1.0).sample_s(0).size == 0
    assert _sampler("constant", 5.0, 0.0).one_s() == 0.005


def test_rejects_unknown_distribution_and_negative_values() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="normal, lognormal, exponential, constant"):
        DelaySampler("gamma", 1.0, 1.0, rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        DelaySampler("normal", -1.0, 1.0, rng)
