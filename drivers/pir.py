"""PIR motion sensor (HC-SR501 and similar) on a GPIO pin through gpiozero: motion, not counts.

Chip: any passive-infrared module with a digital output (HC-SR501, AM312, …); also the OUT pin of
a presence radar. A PIR sees warm bodies *moving*; it cannot tell one person from ten.
Bus: GPIO (BCM numbering), 3.3 V logic — the module's output must not exceed 3.3 V. gpiozero's
``MotionSensor`` samples the pin ``sample_rate`` times a second in its own thread and is active
while the mean of the last ``queue_len`` samples exceeds ``threshold``; its callbacks hand the
edges to this driver under a lock.
Units: ``motion`` in % — each reading is 100 if motion was seen during that ``interval`` else
0, so a window mean is the share of intervals with motion; ``motionEvents`` is a count of PIR
activations (rising edges). Neither is a number of people.
Datasheet: HC-SR501 module notes (⚠ module-dependent: hold time, retrigger jumper, ~60 s
warm-up with spurious triggers); gpiozero 2.0 MotionSensor; see docs/drivers/pir.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    Pacer,
    QuantityClass,
    Reading,
    SensorConfig,
    StatKind,
    StreamSpec,
)
from edgeagent.units import DurationOrZero

FIRST_SAMPLE_MARGIN = 3.0  # × the time the sampler needs to fill its queue once, at least 1 s


class PirConfig(SensorConfig):
    """A PIR sensor entry."""

    driver: Literal["pir"]
    pin: int = Field(ge=0, le=53, description="BCM GPIO number of the PIR output")
    warmup: DurationOrZero = Field(60.0, description="Readings discarded after every start: a "
                                   "PIR triggers spuriously for about a minute after power-on")
    pull_up: bool = Field(False, description="Pull-up instead of pull-down (open-collector "
                          "modules; HC-SR501 drives its output push-pull)")
    queue_len: int = Field(1, ge=1, le=100, description="Samples averaged by gpiozero (debounce, "
                           "not hold: the module stretches its own pulse)")
    sample_rate: float = Field(10.0, gt=0, le=1000, description="Pin samples per second")
    threshold: float = Field(0.5, gt=0, lt=1, description="Mean of the queue above this = "
                             "motion")

    @model_validator(mode="after")
    def _pin_is_not_the_power_switch(self) -> PirConfig:
        if self.power is not None and self.power.gpio == self.pin:
            raise ValueError(f"pin {self.pin} is also the power switch output (power.gpio): "
                             "the PIR needs its own input pin")
        return self


class MotionTally:
    """Edges from gpiozero's sampling thread, taken once per interval by the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rising = 0
        self._seen = False  # motion at any time since the last take

    def edge(self, active: bool) -> None:
        """A transition seen by the sampler (called from gpiozero's thread)."""
        with self._lock:
            if active:
                self._rising += 1
                self._seen = True

    @property
    def pending(self) -> int:
        """Rising edges not taken yet."""
        with self._lock:
            return self._rising

    def take(self, active_now: bool) -> tuple[float, int]:
        """Return (motion 100/0, rising edges) since the last take and start a new interval."""
        with self._lock:
            rising, seen = self._rising, self._seen or active_now
            self._rising, self._seen = 0, active_now
        return (100.0 if seen else 0.0), rising


class Pir(Driver):
    """PIR motion driver: share of intervals with motion and activations; never people."""

    Config = PirConfig
    model: ClassVar[str] = "PIR motion sensor"
    transport: ClassVar[str] = "gpio"
    sample_config: ClassVar[dict[str, Any]] = {"id": "hall-motion", "driver": "pir", "pin": 17}

    def __init__(self, config: PirConfig, context: DriverContext, *,
                 pin_factory: Any = None) -> None:
        """Store the config; ``pin_factory`` is gpiozero's (None = its default, e.g. lgpio)."""
        super().__init__(config, context)
        self.config: PirConfig = config
        self.pin_factory = pin_factory
        self.device: Any = None
        self.tally = MotionTally()
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: PirConfig) -> list[StreamSpec]:  # type: ignore[override]
        """Motion share and PIR activations (motion activity, not a number of people)."""
        return [StreamSpec("motion", "%", QuantityClass.PRESENCE, StatKind.LINEAR,
                           "share of intervals with motion seen by the PIR (motion activity, "
                           "NOT a number of people)", ("mean",)),
                StreamSpec("motionEvents", "count", QuantityClass.PRESENCE, StatKind.COUNTER,
                           "PIR activations: motion activity, NOT a number of people")]

    @property
    def where(self) -> str:
        """``PIR on GPIO17`` for messages."""
        return f"PIR on GPIO{self.config.pin}"

    async def open(self) -> None:
        """Claim the pin, start gpiozero's sampler and wait for its first sample.

        Raises:
            DriverError: gpiozero missing, no GPIO on this machine, the pin in use, or the
                sampler never produced a sample.
        """
        if self.device is not None:
            return
        try:
            from gpiozero import MotionSensor
        except ImportError as exc:
            raise DriverError(f"{self.where}: gpiozero is not installed (pip install "
                              "'edgeagent[gpio]' or apt install python3-gpiozero)",
                              retryable=False) from exc
        cfg = self.config
        tally = MotionTally()
        try:
            device = MotionSensor(cfg.pin, pull_up=cfg.pull_up, queue_len=cfg.queue_len,
                                  sample_rate=cfg.sample_rate, threshold=cfg.threshold,
                                  pin_factory=self.pin_factory)
        except Exception as exc:  # gpiozero raises many types: BadPinFactory, GPIOPinInUse …
            raise DriverError(f"{self.where}: cannot read the pin: {type(exc).__name__}: {exc}",
                              retryable=False) from exc
        device.when_motion = lambda: tally.edge(True)
        device.when_no_motion = lambda: tally.edge(False)
        self.device, self.tally = device, tally
        # callbacks fire only on transitions after the first full queue: wait for it, so an
        # edge right after open is not lost (sensors.md §5.6)
        limit = max(1.0, FIRST_SAMPLE_MARGIN * cfg.queue_len / cfg.sample_rate)
        if not await asyncio.to_thread(_first_sample, device, limit):
            await self.close()
            raise DriverError(f"{self.where}: gpiozero's sampler gave no sample within "
                              f"{limit:g} s")
        self._pacer.start(self.context.clock.monotonic() + cfg.interval)

    async def read(self) -> list[Reading] | None:
        """Wait one interval on the clock; return motion (100/0) and the activations in it."""
        if self.device is None:
            raise DriverError(f"{self.where} is not open")
        await self._pacer.wait(self.context.clock)
        device = self.device
        if device is None:  # closed while waiting
            raise DriverError(f"{self.where} is not open")
        motion, events = self.tally.take(bool(device.motion_detected))
        now = self.context.clock.monotonic()
        return [Reading("motion", motion, now), Reading("motionEvents", float(events), now)]

    async def close(self) -> None:
        """Stop the sampler and release the pin; idempotent."""
        device, self.device = self.device, None
        if device is not None:
            device.close()


def _first_sample(device: Any, limit: float) -> bool:
    """Block (worker thread) until the sampler has decided a first state, or ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        # the first full queue sets one of the two events without firing a callback
        if device.wait_for_no_motion(0.005) or device.wait_for_motion(0):
            return True
    return False
