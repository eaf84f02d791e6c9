"""Simulated sensors for the demo and for trying a config without hardware.

Produces plausible particulate matter (random walk around a few µg/m³), A-weighted sound
levels (dB, 1 s LAeq samples around a park-side 52 dB) and people crossings (Poisson counts
per sample interval). Every message from this driver carries ``"simulated": true``.
"""

from __future__ import annotations

import math
import random
from typing import ClassVar, Literal

from pydantic import Field

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    QuantityClass,
    Reading,
    SensorConfig,
    StatKind,
    StreamSpec,
)

Quantity = Literal["pm", "noise", "people"]

_STREAMS: dict[str, list[StreamSpec]] = {
    "pm": [StreamSpec("pm25", "ug/m3", QuantityClass.PARTICULATE, description="PM2.5"),
           StreamSpec("pm10", "ug/m3", QuantityClass.PARTICULATE, description="PM10")],
    "noise": [StreamSpec("laeq", "dB", QuantityClass.NOISE, StatKind.ENERGETIC,
                         "A-weighted equivalent level")],
    "people": [StreamSpec("people", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER,
                          "people crossing the counting line")],
}


class SimulatedConfig(SensorConfig):
    """A simulated sensor: which quantities, how busy, and a seed for repeatable runs."""

    driver: Literal["simulated"]
    quantities: tuple[Quantity, ...] = Field(("pm", "noise", "people"), min_length=1)
    people_per_minute: float = Field(6.0, ge=0, le=10_000)
    seed: int | None = None
    fail_every: int | None = Field(None, ge=1, description="raise a fault every N reads (tests)")
    fail_with: Literal["driver_error", "crash"] = Field(
        "driver_error", description="driver_error: a sensor fault; crash: a driver bug")


class Simulated(Driver):
    """Invents readings without hardware; clearly labelled as simulated."""

    Config = SimulatedConfig
    model: ClassVar[str] = "edgeagent simulator"
    simulated: ClassVar[bool] = True
    sample_config: ClassVar[dict[str, object]] = {"id": "sim", "driver": "simulated"}

    def __init__(self, config: SimulatedConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self._rng = random.Random(config.seed)
        self._pm25 = 6.0 + 4.0 * self._rng.random()
        self._reads = 0
        self._open = False
        self._next_due: float | None = None

    @classmethod
    def streams(cls, config: SimulatedConfig) -> list[StreamSpec]:  # type: ignore[override]
        """Streams of the chosen quantities."""
        return [spec for quantity in config.quantities for spec in _STREAMS[quantity]]

    async def open(self) -> None:
        """Nothing to open; start the sample clock."""
        self._open = True
        self._next_due = self.context.clock.monotonic()

    async def read(self) -> list[Reading] | None:
        """Wait one interval, then return one sample of every stream."""
        if not self._open or self._next_due is None:
            raise DriverError("simulated sensor read before open")
        clock = self.context.clock
        await clock.sleep(self._next_due - clock.monotonic())
        self._next_due += self.config.interval
        self._reads += 1
        if self.config.fail_every and self._reads % self.config.fail_every == 0:
            if self.config.fail_with == "crash":
                raise RuntimeError(f"simulated bug after {self._reads} reads")
            raise DriverError(f"simulated fault after {self._reads} reads")
        now = clock.monotonic()
        out = []
        for quantity in self.config.quantities:
            if quantity == "pm":
                self._pm25 = max(0.5, self._pm25 + self._rng.gauss(0, 0.3))
                out += [Reading("pm25", round(self._pm25, 1), now),
                        Reading("pm10", round(self._pm25 * 1.6 + self._rng.random(), 1), now)]
            elif quantity == "noise":
                out.append(Reading("laeq", round(52 + 6 * self._rng.random() ** 3
                                                 + 2 * math.sin(now / 30), 1), now))
            else:
                rate = self.config.people_per_minute / 60 * self.config.interval
                out.append(Reading("people", float(_poisson(self._rng, rate)), now))
        return out

    async def close(self) -> None:
        """Nothing to release."""
        self._open = False


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; fine for the small means of one sample interval."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
