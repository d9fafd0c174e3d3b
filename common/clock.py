"""The time a conversation reads: a clock it is given, so unit tests run on virtual time instead of sleeping.

``Clock`` is what agents/ depends on: ``now()`` (seconds, monotonic) and ``sleep(s)``. A session runs on
``MONOTONIC`` (the machine's monotonic clock, the same one asyncio's loop reads); a unit test gives the
conversation a ``VirtualClock`` and moves time itself (``advance``), or lets it jump from timer to timer while
it waits for something (``run``). Virtual time passes only when the test says so: a slow machine, a loaded CI
run or a thread that takes long never changes what a test sees.

Timeouts: the conversation's own waits on time (the tool round's filler, the barge-in judgement's pace, the
wait for the client's word on a playing reply) are ``clock.sleep`` raced with the work (``first_of``). The
asyncio timeouts left in agents/ guard real threads and real sockets, where only real time makes sense: the
compressed-audio decoder's flush (agents/audio_input.py), an http tool's request and an MCP server's connection
and calls (agents/tools/; a tool call's elapsed_ms is real time too, ``perf_counter`` in toolbox.py).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")
SETTLE_YIELDS = 50  # loop turns that let every task woken by a timer run until it waits again


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: ``time.monotonic()`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


MONOTONIC = MonotonicClock()


class VirtualClock:
    """Time that moves only when the test moves it. ``sleep`` registers a timer; ``advance`` fires the timers
    due in order, letting the loop settle after each, so what runs at which time is the same on every run."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time ``seconds`` on, waking each sleeper at its own time (and what they start, in turn)."""
        until = self._now + seconds
        await settle()
        while self._next_due() <= until:
            self._fire_next()
            await settle()
        self._now = max(self._now, until)

    async def run(self, work: Awaitable[T], limit_s: float = 3600.0) -> T:
        """Await ``work``; whenever everything else waits on a timer, time jumps to the next one (at most
        ``limit_s`` virtual seconds). Work in threads or on sockets is waited for in real time."""
        task = asyncio.ensure_future(work)
        deadline = self._now + limit_s
        while not task.done():
            await settle()
            if task.done():
                break
            due = self._next_due()
            if due <= deadline:
                self._fire_next()
            elif due != float("inf"):  # only timers past the limit are left
                self._now = deadline
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise TimeoutError(f"not done after {limit_s} virtual seconds")
            else:
                await asyncio.wait({task}, timeout=0.01)  # a thread or socket: no virtual time passes
        return task.result()

    def _next_due(self) -> float:
        while self._timers and self._timers[0][2].done():  # a cancelled sleeper leaves its timer behind
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else float("inf")

    def _fire_next(self) -> None:
        when, _, future = heapq.heappop(self._timers)
        self._now = max(self._now, when)
        future.set_result(None)


async def settle() -> None:
    """Let every ready task run until it waits again."""
    for _ in range(SETTLE_YIELDS):
        await asyncio.sleep(0)


async def first_of(clock: Clock, seconds: float | None, *waits: Awaitable[object]) -> bool:
    """Wait for the first of ``waits`` to finish, at most ``seconds`` on ``clock`` (None: no limit). True when
    one finished, False on the timeout; the others (never the work they wait on if shielded) are cancelled."""
    tasks = {asyncio.ensure_future(w) for w in waits}
    timer = asyncio.ensure_future(clock.sleep(seconds)) if seconds is not None else None
    try:
        done, _ = await asyncio.wait(tasks | ({timer} if timer else set()), return_when=asyncio.FIRST_COMPLETED)
        return bool(done & tasks)
    finally:
        for task in (*tasks, timer):
            if task is not None and not task.done():
                task.cancel()
