"""The driver contract: what a sensor module provides and what it may emit.

A driver turns bytes from its transport into :class:`Reading` s. Raw data (frames, samples)
stay inside the driver; only readings leave it. Drivers register through the entry-point
group ``edgeagent.drivers``; the core never imports a specific driver.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from edgeagent.clock import Clock
from edgeagent.units import Duration

ENTRY_POINT_GROUP = "edgeagent.drivers"


class QuantityClass(StrEnum):
    """Privacy classes: each has its own policy (minimum window, statistics, k)."""

    PARTICULATE = "particulate"
    CLIMATE = "climate"
    NOISE = "noise"
    PEOPLE_COUNT = "people_count"


class StatKind(StrEnum):
    """How samples of a stream are combined over a window."""

    LINEAR = "linear"  # mean, min, max, stddev
    ENERGETIC = "energetic"  # dB: energy mean (Leq), min, max
    COUNTER = "counter"  # events per sample interval: sum


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One quantity a sensor measures, e.g. ``pm25`` in ``ug/m3``."""

    name: str
    unit: str
    quantity: QuantityClass
    kind: StatKind = StatKind.LINEAR
    description: str = ""


@dataclass(frozen=True, slots=True)
class Reading:
    """A number for one stream at one monotonic instant. Nothing else leaves a driver."""

    stream: str
    value: float
    t_monotonic: float


class DriverError(Exception):
    """The sensor or its transport failed; the supervisor restarts the driver."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class FrameError(DriverError):
    """One frame was bad (checksum, length, garbage). Counted; the driver keeps running."""


class SensorConfig(BaseModel):
    """Fields every sensor entry has; a driver's own ``Config`` extends this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
                    description="Name in topics; lower case letters, digits, - and _")
    driver: str
    window: Duration = Field(60.0, description="Aggregation window length")
    interval: Duration = Field(1.0, description="Nominal time between samples")
    startup: str = Field("retry", pattern="^(retry|error|ignore)$",
                         description="What a failing open does: retry, error (stop agent), ignore")


def _default_i2c(number: int) -> Any:
    from edgeagent.i2c import open_smbus  # only I2C drivers need smbus2

    return open_smbus(number)


@dataclass
class DriverContext:
    """What the framework hands a driver: clock, logger and the I2C bus factory.

    The bus factory is the seam where tests put a fake bus; serial drivers open their port.
    """

    clock: Clock
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("edgeagent.driver"))
    i2c: Callable[[int], Any] = _default_i2c


class Driver(abc.ABC):
    """Base class of all drivers. Construction stores only; I/O starts in :meth:`open`."""

    Config: ClassVar[type[SensorConfig]] = SensorConfig
    #: Human name of the sensor model, e.g. "Plantower PMS5003".
    model: ClassVar[str]
    #: True only for drivers that invent data; every message then says so.
    simulated: ClassVar[bool] = False
    #: A minimal valid config entry, used by docs, examples and the conformance test.
    sample_config: ClassVar[dict[str, Any]]

    def __init__(self, config: SensorConfig, context: DriverContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    @abc.abstractmethod
    def streams(cls, config: SensorConfig) -> list[StreamSpec]:
        """The streams this configuration produces (no I/O)."""

    @classmethod
    def sample_interval(cls, config: SensorConfig) -> float:
        """Nominal seconds between samples, for coverage (default: the configured interval)."""
        return config.interval

    @abc.abstractmethod
    async def open(self) -> None:
        """Open the transport and bring the sensor into measuring state."""

    @abc.abstractmethod
    async def read(self) -> list[Reading] | None:
        """Wait for and return the next readings; None while warming up."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the transport. Idempotent and safe after a failed open."""

    def describe(self) -> dict[str, Any]:
        """Resolved settings for the startup log and the manifest."""
        return {"model": self.model, **self.config.model_dump(mode="json", exclude={"id"})}


class Pacer:
    """One sample per ``interval`` on the injected clock, for drivers that poll."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_at = 0.0

    def start(self, at: float) -> None:
        """The first sample is due at monotonic time ``at``."""
        self.next_at = at

    async def wait(self, clock: Clock) -> None:
        """Sleep until the next sample is due; after a late one there is no catch-up burst."""
        await clock.sleep(self.next_at - clock.monotonic())
        self.next_at = max(self.next_at, clock.monotonic()) + self.interval


def available_drivers() -> dict[str, Any]:
    """Entry points of all installed drivers, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_driver(name: str) -> type[Driver]:
    """Import a driver class by entry-point name; errors name the driver and the cause."""
    found = available_drivers()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise LookupError(f"unknown driver {name!r}; available: {known}")
    try:
        cls = found[name].load()
    except Exception as exc:  # a broken third-party driver must be a loud, named error
        raise ImportError(f"driver {name!r} failed to import: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ImportError(f"driver {name!r} entry point is not an edgeagent Driver class")
    return cls
