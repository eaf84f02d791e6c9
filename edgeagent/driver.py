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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeagent.clock import Clock
from edgeagent.units import Duration, DurationOrZero

if TYPE_CHECKING:  # both import this module: only for the annotations of the scan hooks
    from edgeagent.i2c import I2cDevice
    from edgeagent.scan import UartProbe

ENTRY_POINT_GROUP = "edgeagent.drivers"


class QuantityClass(StrEnum):
    """Privacy classes: each has its own policy (minimum window, statistics, k)."""

    PARTICULATE = "particulate"
    CLIMATE = "climate"
    NOISE = "noise"
    PEOPLE_COUNT = "people_count"
    PRESENCE = "presence"  # someone there / motion (radar, PIR): never a number of people


class StatKind(StrEnum):
    """How samples of a stream are combined over a window."""

    LINEAR = "linear"  # mean, min, max, stddev
    ENERGETIC = "energetic"  # dB: energy mean (Leq), min, max
    COUNTER = "counter"  # events per sample interval: sum
    LEVEL = "level"  # dB levels for percentiles: energy mean, min, max, l10/l50/l90
    OCCUPANCY = "occupancy"  # people present at once, per frame: mean, max (k applies to max)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One quantity a sensor measures, e.g. ``pm25`` in ``ug/m3``."""

    name: str
    unit: str
    quantity: QuantityClass
    kind: StatKind = StatKind.LINEAR
    description: str = ""
    #: The statistics that mean something for this stream (None: all of its kind), e.g.
    #: ``("max",)`` for a per-sample maximum such as LAFmax.
    statistics: tuple[str, ...] | None = None


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


class PowerConfig(BaseModel):
    """A GPIO output that switches the sensor's supply (MOSFET, relay or USB hub port power)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpio: int = Field(ge=0, le=53, description="BCM GPIO number of the switch output")
    active_high: bool = Field(True, description="True if a high level turns the sensor on")
    off_time: Duration = Field(3.0, description="How long the supply stays off in a power cycle")
    boot_time: DurationOrZero = Field(2.0, description="Wait after power-on before the driver "
                                      "opens the sensor")


class DutyCycle(BaseModel):
    """Measure for ``measure`` (warm-up included) out of every ``period``; sleep the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Duration = Field(description="Length of one measure-and-sleep cycle")
    measure: Duration = Field(description="Awake time per cycle, warm-up included")


class HumidityLink(BaseModel):
    """Where a PM sensor's humidity comes from, and which correction uses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(None, description="Id of a sensor on this gateway with a "
                               "relativeHumidity stream; omit for the PM sensor's own")
    correction: Literal["none", "epa-barkjohn-2021", "kappa-koehler"] = Field(
        "none", description="Correction published next to the raw values (never instead)")
    kappa: float | None = Field(None, gt=0, le=1.5, description="Hygroscopicity for "
                                "kappa-koehler (default of the method)")
    max_age: Duration = Field(120.0, description="An older humidity reading is not used")


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
    warmup: DurationOrZero = Field(0.0, description="Readings discarded after every start "
                                   "(counted in health as warmup_discarded)")
    power: PowerConfig | None = Field(None, description="GPIO power switch: lets the recovery "
                                      "ladder power-cycle a hung sensor")


class ParticulateConfig(SensorConfig):
    """A laser particulate sensor: warm-up after every start; ``close`` stops fan and laser.

    The supervisor, not the driver, discards and counts readings during warm-up, so a driver
    with this config returns every valid reading.
    """

    warmup: DurationOrZero = Field(30.0, description="Readings discarded after every start or "
                                   "wake (fan and laser settle)")
    duty_cycle: DutyCycle | None = Field(None, description="Sleep between measurements to save "
                                         "the laser; None = measure all the time")
    humidity: HumidityLink | None = Field(None, description="Humidity source for the RH flag and "
                                          "an optional correction")


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
    #: The agent's state directory (stored calibrations), None when there is none.
    state_dir: Path | None = None


class Driver(abc.ABC):
    """Base class of all drivers. Construction stores only; I/O starts in :meth:`open`."""

    Config: ClassVar[type[SensorConfig]] = SensorConfig
    #: Human name of the sensor model, e.g. "Plantower PMS5003".
    model: ClassVar[str]
    #: True only for drivers that invent data; every message then says so.
    simulated: ClassVar[bool] = False
    #: A minimal valid config entry, used by docs, examples and the conformance test.
    sample_config: ClassVar[dict[str, Any]]
    #: How the sensor is attached: "uart", "i2c" (config has ``bus``), "gpio" or "none".
    transport: ClassVar[str] = "none"

    def __init__(self, config: SensorConfig, context: DriverContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    @abc.abstractmethod
    def streams(cls, config: SensorConfig) -> list[StreamSpec]:
        """The streams this configuration produces (no I/O)."""

    @classmethod
    def sleeps_when_closed(cls, config: SensorConfig) -> bool:
        """True if :meth:`close` puts the sensor to sleep (fan, laser off): duty cycling works."""
        return isinstance(config, ParticulateConfig)

    @classmethod
    def correction_problem(cls, config: SensorConfig, method: str) -> str | None:
        """Why a humidity correction does not fit this sensor's output; None if it does."""
        if method == "epa-barkjohn-2021":
            return (f"{method} is fitted on Plantower CF=1 values only; use kappa-koehler for "
                    f"the {cls.model}")
        return None

    @classmethod
    def config_problems(cls, config: SensorConfig) -> list[tuple[tuple[str, ...], str]]:
        """What in this entry cannot work on this machine: (path in the entry, message) pairs.

        For problems a field validator cannot see, e.g. a missing optional runtime.
        """
        return []

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

    @classmethod
    def model_of(cls, config: SensorConfig) -> str:
        """The hardware this entry describes, for messages and the manifest (default: model)."""
        return cls.model

    @classmethod
    def message_meta(cls, config: SensorConfig, state_dir: Path | None) -> dict[str, Any]:
        """Extra top-level fields of this sensor's data messages (e.g. its calibration)."""
        return {}

    @classmethod
    async def calibrate(cls, config: SensorConfig, context: DriverContext, reference: float,
                        seconds: float) -> str:
        """Measure a reference (e.g. a 94 dB calibrator), store the result; say what was done.

        Raises:
            DriverError: the sensor cannot be calibrated this way, or the measurement failed.
        """
        raise DriverError(f"the {cls.model} has nothing to calibrate", retryable=False)

    def health(self) -> dict[str, float | int]:
        """Driver figures for the health message (e.g. frame rate, inference latency)."""
        return {}

    # -- ``edgeagent scan`` hooks ---------------------------------------------------------------
    # A driver that can be found by ``edgeagent scan`` sets ``scan_baud`` (UART) or
    # ``scan_addresses`` (I2C) and overrides the hooks below. The default is "not scannable".
    # Every hook answers a dict when it recognised its sensor, None otherwise:
    #   "model"  (str, required) what was found, e.g. "Plantower PMS5003" or "Bosch BMP280";
    #   "frames" (int) valid frames seen (streams only; the scan wants at least two);
    #   "detail" (str) how it was recognised, e.g. "product name SEN55";
    #   "note"   (str) a caveat in plain words, e.g. "asleep: power-cycle it";
    #   "config" (dict) fields to add to ``sample_config`` in the snippet (port, bus and
    #            address are filled in by the scan); None = this driver cannot use the find.
    # Hooks send only documented read / identification commands, never a setting, and do not
    # log or return raw bytes or serial numbers.

    #: UART speed at which :meth:`recognise_stream` and :meth:`query_uart` apply (None: the
    #: driver is not looked for on serial ports).
    scan_baud: ClassVar[int | None] = None
    #: I2C addresses :meth:`identify_i2c` is tried at (empty: not looked for on I2C buses).
    scan_addresses: ClassVar[tuple[int, ...]] = ()
    #: Order among the drivers tried at one I2C address, lowest first; the first that
    #: recognises its chip ends the probing of that address. Drivers whose ID read is the
    #: gentlest for the other chips at the address go first (e.g. a 1-byte register pointer,
    #: which 16-bit-command chips ignore, before a 16-bit command).
    scan_order: ClassVar[int] = 50

    @classmethod
    def recognise_stream(cls, data: bytes) -> dict[str, Any] | None:
        """Look for this sensor's frames in bytes read passively at :attr:`scan_baud`.

        For sensors that stream on their own. ``data`` is everything one listening window
        received, starting anywhere; nothing was sent to the port. Return the finding (with
        ``frames``) if at least one valid frame is in it, else None. Default: None.
        """
        return None

    @classmethod
    async def query_uart(cls, probe: UartProbe) -> dict[str, Any] | None:
        """Ask a silent port at :attr:`scan_baud` for this sensor's identity; default None.

        Only for sensors with a documented read-only identification or query command (e.g.
        the SPS30's SHDLC "device information"). Called only when no sensor streams on the
        port. ``probe.exchange(command, seconds, done)`` writes ``command`` and returns what
        arrives until ``done(received)`` is true or ``seconds`` pass.
        """
        return None

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Identify the chip at ``device`` (one of :attr:`scan_addresses`); default None.

        Use documented read / ID commands only and wait their execution time on ``clock``.
        Return None if the chip is not this driver's; a NACK (DriverError) or garbled answer
        (FrameError) may simply propagate: the scan reads both as "not this driver's chip".
        """
        return None

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
