"""The per-app state of a mock server: settings, engine, scheduler, fault injector and counters."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from aiohttp import web

from clientswarm.mock.engine import Engine
from clientswarm.mock.faults import FaultInjector
from clientswarm.mock.histograms import EngineHistograms
from clientswarm.mock.metrics import MockMetrics
from clientswarm.mock.scheduler import Scheduler
from clientswarm.mock.settings import MockSettings


class MockState:
    """Everything the route handlers of one mock server share.

    Timing and faults draw from separate children of one seed, so changing a fault rate does not
    change the timing a seed produces.
    """

    __slots__ = ("answering", "engine", "faults", "metrics", "scheduler", "settings")

    def __init__(self, settings: MockSettings) -> None:
        timing_seed, fault_seed = np.random.SeedSequence(settings.seed).spawn(2)
        self.settings = settings
        self.engine = Engine(settings, np.random.default_rng(timing_seed))
        histograms = EngineHistograms()
        self.scheduler = Scheduler(settings, self.engine, histograms)
        self.faults = FaultInjector(
            np.random.default_rng(fault_seed),
            error_rate_500=settings.error_rate_500,
            error_rate_429=settings.error_rate_429,
            stream_error_rate=settings.stream_error_rate,
            drop_rate=settings.drop_rate,
        )
        self.metrics = MockMetrics(settings.model, self.scheduler, histograms)
        self.answering: set[asyncio.Task[Any]] = set()
        """Handler tasks of the generation requests in progress (cancelled on close)."""


STATE_KEY: web.AppKey[MockState] = web.AppKey("clientswarm_mock_state", MockState)
"""Where :func:`clientswarm.mock.server.create_app` keeps the :class:`MockState`."""
