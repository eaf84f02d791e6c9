"""Panasonic Grid-EYE AMG8833 8×8 thermal array as a people counter (I2C).

Chip: AMG8833, 60° field of view, address 0x69 (Adafruit breakout) or 0x68, 3.3 V.
Bus: I2C; register layer in :mod:`edgeagent.drivers.amg8833_device` (sensors.md §5.1).
Output: ``peopleIn``/``peopleOut`` across the configured line, ``occupancy`` and one
``occupancy_<zone>`` per zone — counts only; frames stay in memory (docs/drivers/amg8833.md,
models/MODEL_CARD.md).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from edgeagent.clock import Clock
from edgeagent.drivers.amg8833_device import (
    ADDRESSES,
    PCTL_NORMAL,
    PCTL_SLEEP,
    PCTL_STANDBY_10S,
    PCTL_STANDBY_60S,
    REG_AVE,
    REG_FPSC,
    REG_PCTL,
    REG_TTHL,
    WARM_UP_SECONDS,
    Amg8833Device,
    thermistor_celsius,
)
from edgeagent.drivers.sensirion import address_validator
from edgeagent.drivers.thermal import ThermalArrayDriver, ThermalConfig
from edgeagent.i2c import I2cDevice
from edgeagent.units import DurationOrZero

PCTL_MODES = (PCTL_NORMAL, PCTL_SLEEP, PCTL_STANDBY_60S, PCTL_STANDBY_10S)
AVE_MAMOD = 0x20  # AVE bit 5 (twice moving average); the other bits read 0
#: The chip's own temperature range (°C) that counts as plausible when identifying it.
THERMISTOR_PLAUSIBLE = (-20.0, 80.0)


class Amg8833Config(ThermalConfig):
    """An AMG8833 entry."""

    driver: Literal["amg8833"]
    address: Annotated[Literal[0x68, 0x69], address_validator(*ADDRESSES)] = Field(
        0x69, description="0x69 (AD_SELECT high, Adafruit default) or 0x68")
    fps: Literal[10, 1] = Field(10, description="Frame rate: 10 for counting, 1 for occupancy")
    warmup: DurationOrZero = Field(WARM_UP_SECONDS, description="Readings discarded after "
                                   "every start: the output settles ~15 s after power-on")


class Amg8833(ThermalArrayDriver):
    """AMG8833 people counter: 10 frames per second through the thermal counting pipeline."""

    Config = Amg8833Config
    model = "Panasonic AMG8833"
    sensor: ClassVar[str] = "amg8833"
    shape: ClassVar[tuple[int, int]] = (8, 8)
    limit: ClassVar[str] = "8×8 pixels: people closer than a pixel apart count as one"
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "door-1", "driver": "amg8833", "window": "5min",
        "counting": {"line": {"start": [0, 0.5], "end": [1, 0.5]}}}

    scan_addresses: ClassVar[tuple[int, ...]] = ADDRESSES
    scan_order: ClassVar[int] = 10  # 1-byte register pointers: the Sensirion chips at 0x69 NACK

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read PCTL, FPSC, AVE and the thermistor (read only) and check they are plausible.

        The AMG8833 has no ID register: the power mode must be one of the four, FPSC and AVE
        only their documented bits, the thermistor a 12-bit value of -20 … 80 °C.
        """
        pctl = (await device.write_read(bytes([REG_PCTL]), 1))[0]
        fpsc = (await device.write_read(bytes([REG_FPSC]), 1))[0]
        ave = (await device.write_read(bytes([REG_AVE]), 1))[0]
        lo, hi = await device.write_read(bytes([REG_TTHL]), 2)
        low, high = THERMISTOR_PLAUSIBLE
        if (pctl not in PCTL_MODES or fpsc & ~0x01 or ave & ~AVE_MAMOD or hi & 0xF0
                or not low <= thermistor_celsius(lo, hi) <= high):
            return None
        result: dict[str, Any] = {
            "model": cls.model, "detail": f"registers plausible, {1 if fpsc else 10} fps"}
        if pctl != PCTL_NORMAL:
            result["note"] = "in sleep or stand-by mode: the driver switches it to normal mode"
        return result

    @classmethod
    def sample_interval(cls, config: Amg8833Config) -> float:  # type: ignore[override]
        """One frame per 1/fps seconds."""
        return 1.0 / config.fps

    def make_device(self) -> Amg8833Device:
        """The register layer on the configured bus."""
        return Amg8833Device(self.config.bus, self.config.address, self.context.i2c,
                             clock=self.context.clock, fps=self.config.fps)
