"""PIR simulation: gpiozero's MockFactory for the real code path, and a step-by-step model.

The driver itself always runs on gpiozero; tests give it a ``MockFactory`` and drive the mock
pin (:func:`conformance_driver`). :class:`SampledPir` replays gpiozero's sampling rule
(queue of ``queue_len`` samples, active while the mean exceeds ``threshold``, no callback for
the first state) one sample at a time, so golden cases are exact without a sampling thread.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator
from statistics import fmean

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.pir import MotionTally, Pir, PirConfig

CONFORMANCE_PIN = 17


class SampledPir:
    """What gpiozero's MotionSensor makes of a sequence of pin samples, fed to a tally."""

    def __init__(self, tally: MotionTally, queue_len: int = 1, threshold: float = 0.5) -> None:
        self.tally = tally
        self.threshold = threshold
        self.active = False
        self._queue: deque[int] = deque(maxlen=queue_len)
        self._last: bool | None = None  # gpiozero's indeterminate first state

    def sample(self, level: int) -> None:
        """One pin sample (0 low, 1 high) taken by the sampling thread."""
        self._queue.append(level)
        if len(self._queue) < (self._queue.maxlen or 1):
            return  # partial=False: nothing is decided before the queue is full
        active = fmean(self._queue) > self.threshold
        previous, self._last, self.active = self._last, active, active
        if previous is not None and previous != active:
            self.tally.edge(active)


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Pir]:
    """Yield a driver on a MockFactory pin (warmup 0, fast sampler), not yet opened."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    config = PirConfig(id="pir-conf", driver="pir", pin=CONFORMANCE_PIN, warmup=0,
                       sample_rate=100)
    try:
        yield Pir(config, DriverContext(clock=clock), pin_factory=factory)
    finally:
        factory.close()
