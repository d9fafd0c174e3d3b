"""A token bucket: how much of something a client may send, as a rate with a burst allowance.

Used for a socket's control messages and its audio seconds. The clock is injected so the rule is tested
without sleeping. Nothing waits here: what does not fit is refused at once (a websocket behind Ray Serve's
proxy has no backpressure, so delaying a flooder would only pile its bytes up in memory).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # the most tokens held (and spent at once)
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self._tokens = self.burst
        self._at = self.clock()

    @property
    def level(self) -> float:
        """The share of the burst available now, 0 to 1."""
        self._refill()
        return self._tokens / self.burst

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self, amount: float = 1.0) -> bool:
        """Spend ``amount`` tokens if they are there; False (nothing spent) when they are not."""
        self._refill()
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True
