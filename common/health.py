"""Health that means something: a model deployment is healthy when its model answers a tiny probe in time.

Serve calls ``check_health`` every ``health_check_period_s`` and restarts a replica after a few failures. A probe
is real model work, so ``HealthProbe`` keeps it cheap: a probe that passed, or a real request the model
answered (``served``), counts as healthy for ``fresh_s``; only a replica that has been idle that long is probed,
and one probe runs at a time. A probe that raises, or that does not answer within ``timeout_s`` (a hung model
thread, a lost GPU), fails the check with ``Unhealthy``, naming the deployment and what went wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from common.clock import MONOTONIC, Clock

PROBE_TIMEOUT_S = 20.0  # below Serve's health_check_timeout_s (30 s by default)
PROBE_FRESH_S = 30.0


class Unhealthy(RuntimeError):
    """The replica cannot serve; the message names it and says why (Serve logs it and replaces the replica)."""


class HealthProbe:
    def __init__(self, name: str, probe: Callable[[], Awaitable[None]], *, timeout_s: float = PROBE_TIMEOUT_S,
                 fresh_s: float = PROBE_FRESH_S, clock: Clock = MONOTONIC) -> None:
        self.name = name
        self._probe = probe
        self._timeout_s = timeout_s
        self._fresh_s = fresh_s
        self._clock = clock
        self._last_ok: float | None = None
        self._running: asyncio.Task[None] | None = None
        self.probes = 0  # probes run (for tests and operators)

    def served(self) -> None:
        """A real request was answered by the model: as good as a probe."""
        self._last_ok = self._clock.now()

    async def check(self) -> None:
        """Return when the model answered recently or answers a probe now; raise ``Unhealthy`` otherwise."""
        if self._last_ok is not None and self._clock.now() - self._last_ok < self._fresh_s:
            return
        if self._running is None or self._running.done():
            self.probes += 1
            self._running = asyncio.ensure_future(self._probe())
        try:
            # Shielded: a probe stuck in a model thread is not started again by every check while it hangs.
            await asyncio.wait_for(asyncio.shield(self._running), self._timeout_s)
        except TimeoutError:
            raise Unhealthy(f"{self.name}: the model did not answer a probe within {self._timeout_s:.0f} s") from None
        except Exception as exc:
            raise Unhealthy(f"{self.name}: the model failed a probe ({type(exc).__name__}: {exc})") from None
        self.served()
