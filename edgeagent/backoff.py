"""Full-jitter exponential backoff and a restart budget, shared by drivers and MQTT."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable


def backoff_delay(attempt: int, *, base: float = 1.0, factor: float = 2.0, cap: float = 60.0,
                  rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): uniform in [0, min(cap, …)]."""
    return rand() * min(cap, base * factor ** min(attempt, 32))


class RestartBudget:
    """At most ``limit`` restarts within ``period`` seconds; after that the part has failed."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self._times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Record a restart at ``now``; False when the budget is exhausted."""
        while self._times and now - self._times[0] > self.period:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True
