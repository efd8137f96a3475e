"""The simulated engine's scheduler: admission by sequence slots and KV-cache room, and preemption.

The model, a simplified vLLM V1 scheduler:

- KV cache: ``kv_cache_tokens`` tokens. A running sequence holds its prompt tokens plus the
  tokens it has generated so far; token ``k`` counts as generated from its deadline on (see
  :mod:`clientswarm.mock.engine`). Usage is ``held / kv_cache_tokens``, computed when read
  (``/metrics``, ``/mock/stats``) from the running sequences' deadlines; nothing is counted per
  token.
- Admission, first come first served: the sequence at the head of the queue is admitted when
  fewer than ``max_concurrency`` run and its prompt (for a preempted one, its prompt and the
  tokens it had generated) fits in the free room; otherwise it waits, and so does everyone
  behind it. A request that could never fit (prompt plus output over the whole cache) is refused
  with HTTP 400 before it queues, as vLLM refuses a prompt beyond ``max_model_len``.
- Preemption: when the next token of a running sequence would take the cache past its capacity,
  the youngest running sequence (the last admitted, maybe the growing one itself) is preempted:
  it frees all it holds, counts in ``vllm:num_preemptions`` and goes back to the head of the
  queue. Re-admitted, it recomputes its prompt and its generated tokens
  (``prefill_ms_per_token`` each) and its next token is due one inter-token gap later: its client
  sees one longer gap. A sequence alone always fits, so the oldest always makes progress.
- Prefix cache: at its first admission a prompt is looked up in :mod:`clientswarm.mock.prefix`;
  its first token's delay is the TTFT draw plus ``prefill_ms_per_token`` per uncached prompt
  token. A re-admitted sequence is not looked up again.
- Cost: while the prompts and planned outputs of the running sequences add up to no more than the
  capacity (the usual case with the default capacity), no preemption can happen: admission is
  O(1) and no timer is set. Only past that is the moment of the next overflow computed from the
  running sequences' deadlines, and a timer set for it.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import chain

from clientswarm.mock.engine import Engine
from clientswarm.mock.histograms import EngineHistograms
from clientswarm.mock.prefix import PrefixCache
from clientswarm.mock.settings import MockSettings


class SequenceState(enum.Enum):
    """Where a sequence is in the scheduler."""

    NEW = "new"
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"


class EngineSequence:
    """One request's sequence: its prompt, planned output and token deadlines."""

    __slots__ = (
        "_admission",
        "_timer",
        "_wake",
        "deadlines",
        "first_admitted_at",
        "kept",
        "observed",
        "prompt_tokens",
        "queued_at",
        "state",
        "tokens",
        "words",
    )

    def __init__(self, words: Sequence[str], prompt_tokens: int, tokens: int) -> None:
        self.words = words
        """The prompt's tokens, as the prefix cache keys them (may be empty: no lookup hits)."""
        self.prompt_tokens = prompt_tokens
        self.tokens = tokens
        """Output tokens it will generate in all."""
        self.state = SequenceState.NEW
        self.deadlines: list[float] = []
        """Loop time of each output token (later ones redrawn after a preemption)."""
        self.kept = 0
        """Tokens generated before its last preemption."""
        self.observed = 0
        """Tokens whose inter-token gaps have been observed."""
        self.queued_at = 0.0
        self.first_admitted_at: float | None = None
        self._admission: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def held_tokens(self, at: float) -> int:
        """KV tokens it holds at loop time ``at`` while running (tokens due at ``at`` count)."""
        return self.prompt_tokens + bisect_right(self.deadlines, at)


def _wake_up(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)


class Scheduler:
    """Admits sequences by slots and KV room, preempts the youngest on overflow (see module)."""

    def __init__(self, settings: MockSettings, engine: Engine, histograms: EngineHistograms):
        self.max_concurrency = settings.max_concurrency
        self.capacity_tokens = settings.kv_cache_tokens
        self.prefix = PrefixCache(settings.prefix_block_tokens, settings.prefix_cache_blocks)
        self.preemptions = 0
        self.max_running = 0
        self.max_waiting = 0
        self.max_held_tokens = 0
        self._prefill_s_per_token = settings.prefill_ms_per_token / 1000.0
        self._engine = engine
        self._histograms = histograms
        self._running: dict[EngineSequence, None] = {}  # admission order: the youngest is last
        self._waiting: deque[EngineSequence] = deque()
        self._reserved_tokens = 0  # running prompts plus planned outputs: a bound on held
        self._overflow: asyncio.TimerHandle | None = None

    @property
    def running(self) -> int:
        """Sequences running now."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Sequences queued now (preempted ones included)."""
        return len(self._waiting)

    def fits(self, prompt_tokens: int, tokens: int) -> bool:
        """Whether a sequence of that size fits in the KV cache at all."""
        return prompt_tokens + tokens <= self.capacity_tokens

    def held_tokens(self) -> int:
        """KV tokens the running sequences hold now."""
        now = asyncio.get_running_loop().time()
        self._settle(now)
        held = self._held(now)
        self.max_held_tokens = max(self.max_held_tokens, held)
        return held

    def kv_usage(self) -> float:
        """Fraction of the KV cache held now (0 to 1)."""
        return self.held_tokens() / self.capacity_tokens

    @asynccontextmanager
    async def running_sequence(self, sequence: EngineSequence) -> AsyncIterator[EngineSequence]:
        """Queue ``sequence``, yield once admitted, and free what it holds on the way out."""
        try:
            await self._admit(sequence)
            yield sequence
        finally:
            self.leave(sequence)

    async def reach(self, sequence: EngineSequence, index: int) -> None:
        """Return once output token ``index`` is generated, through preemptions and re-admission."""
        loop = asyncio.get_running_loop()
        while True:
            if sequence.state is SequenceState.WAITING and sequence._admission is not None:
                await sequence._admission
            deadline = sequence.deadlines[index]
            self._settle(min(deadline, loop.time()))
            if sequence.state is not SequenceState.RUNNING:
                continue
            if loop.time() >= deadline or await self._sleep(sequence, deadline):
                break
        self._observe_gaps(sequence, index + 1)

    def finish(self, sequence: EngineSequence) -> None:
        """Record a sequence that generated all its tokens: prefill, decode, inference times."""
        first = sequence.deadlines[0]
        last = sequence.deadlines[-1]
        admitted = sequence.first_admitted_at if sequence.first_admitted_at is not None else first
        self._histograms.prefill.observe(first - admitted)
        self._histograms.decode.observe(last - first)
        self._histograms.inference.observe(last - admitted)
        self.leave(sequence)

    def leave(self, sequence: EngineSequence) -> None:
        """Take ``sequence`` out (finished, failed or abandoned); idempotent."""
        state = sequence.state
        if state is SequenceState.DONE:
            return
        now = asyncio.get_running_loop().time()
        self._settle(now)
        state = sequence.state
        sequence.state = SequenceState.DONE
        if sequence._timer is not None:
            sequence._timer.cancel()
        if state is SequenceState.WAITING:
            self._waiting.remove(sequence)
        elif state is SequenceState.RUNNING:
            self._note_peak(now)
            self._stop(sequence)
        self._admit_waiting(now)

    # --- internals -------------------------------------------------------------------------

    async def _admit(self, sequence: EngineSequence) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        sequence.queued_at = now
        self._settle(now)
        self._enqueue(sequence, at_head=False)
        self._admit_waiting(now)
        if sequence.state is SequenceState.WAITING and sequence._admission is not None:
            await sequence._admission

    def _enqueue(self, sequence: EngineSequence, *, at_head: bool) -> None:
        sequence.state = SequenceState.WAITING
        sequence._admission = asyncio.get_running_loop().create_future()
        if at_head:
            self._waiting.appendleft(sequence)
        else:
            self._waiting.append(sequence)
        self.max_waiting = max(self.max_waiting, len(self._waiting))

    def _held(self, at: float) -> int:
        return sum(sequence.held_tokens(at) for sequence in self._running)

    def _note_peak(self, now: float) -> None:
        if self._reserved_tokens > self.max_held_tokens:  # else the peak cannot have risen
            self.max_held_tokens = max(self.max_held_tokens, self._held(now))

    def _admit_waiting(self, now: float) -> None:
        while self._waiting and len(self._running) < self.max_concurrency:
            head = self._waiting[0]
            need = head.prompt_tokens + head.kept
            room_for_all = self._reserved_tokens + head.prompt_tokens + head.tokens
            if room_for_all > self.capacity_tokens and (
                self._held(now) + need > self.capacity_tokens
            ):
                break
            self._waiting.popleft()
            self._start(head, now)
        self._arm_overflow(now)

    def _start(self, sequence: EngineSequence, now: float) -> None:
        if sequence.first_admitted_at is None:
            sequence.first_admitted_at = now
            self._histograms.queue.observe(now - sequence.queued_at)
            cached = self.prefix.lookup(sequence.words)
            prefill_s = (sequence.prompt_tokens - cached) * self._prefill_s_per_token
            sequence.deadlines = self._engine.token_deadlines(now, sequence.tokens, prefill_s)
        else:
            recompute_s = (sequence.prompt_tokens + sequence.kept) * self._prefill_s_per_token
            remaining = sequence.tokens - sequence.kept
            sequence.deadlines[sequence.kept :] = self._engine.resumed_deadlines(
                now, remaining, recompute_s
            )
        sequence.state = SequenceState.RUNNING
        self._running[sequence] = None
        self._reserved_tokens += sequence.prompt_tokens + sequence.tokens
        self.max_running = max(self.max_running, len(self._running))
        admission = sequence._admission
        if admission is not None and not admission.done():
            admission.set_result(None)

    def _stop(self, sequence: EngineSequence) -> None:
        del self._running[sequence]
        self._reserved_tokens -= sequence.prompt_tokens + sequence.tokens

    def _arm_overflow(self, now: float) -> None:
        """Set a timer for the next moment the running sequences outgrow the cache, if any."""
        if self._overflow is not None:
            self._overflow.cancel()
            self._overflow = None
        if self._reserved_tokens <= self.capacity_tokens:
            return
        room = self.capacity_tokens - self._held(now)
        upcoming = chain.from_iterable(
            sequence.deadlines[bisect_right(sequence.deadlines, now) :]
            for sequence in self._running
        )
        if room < 0:
            at = now
        else:
            soonest = heapq.nsmallest(room + 1, upcoming)
            if len(soonest) <= room:
                return
            at = soonest[-1]
        self._overflow = asyncio.get_running_loop().call_at(at, self._on_overflow, at)

    def _settle(self, now: float) -> None:
        """Apply an overflow that is due by ``now`` but whose timer has not run yet."""
        overflow = self._overflow
        if overflow is not None and overflow.when() <= now:
            overflow.cancel()
            self._on_overflow(overflow.when())

    def _on_overflow(self, at: float) -> None:
        self._overflow = None
        before = sum(
            sequence.prompt_tokens + bisect_left(sequence.deadlines, at)
            for sequence in self._running
        )  # the peak, just before the token that overflows
        self.max_held_tokens = max(self.max_held_tokens, before)
        while self._running and self._held(at) > self.capacity_tokens:
            self._preempt(next(reversed(self._running)), at)
        self._admit_waiting(at)

    def _preempt(self, sequence: EngineSequence, at: float) -> None:
        self._stop(sequence)
        sequence.kept = bisect_left(sequence.deadlines, at)  # its token due at ``at`` is lost
        self.preemptions += 1
        self._enqueue(sequence, at_head=True)
        wake, timer = sequence._wake, sequence._timer
        if timer is not None:
            timer.cancel()
        if wake is not None and not wake.done():
            wake.set_result(False)

    async def _sleep(self, sequence: EngineSequence, deadline: float) -> bool:
        """Sleep until ``deadline``; False when preempted first. Costs as ``asyncio.sleep`` does."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[bool] = loop.create_future()
        sequence._wake = wake
        timer = sequence._timer = loop.call_at(deadline, _wake_up, wake)
        try:
            return await wake
        finally:
            sequence._wake = None
            sequence._timer = None
            timer.cancel()

    def _observe_gaps(self, sequence: EngineSequence, upto: int) -> None:
        deadlines = sequence.deadlines
        observe = self._histograms.itl.observe
        for k in range(max(sequence.observed, 1), upto):
            observe(deadlines[k] - deadlines[k - 1])
        sequence.observed = max(sequence.observed, upto)
