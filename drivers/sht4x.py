"""Sensirion SHT4x (SHT40 / SHT41 / SHT45) temperature and humidity sensor on I2C.

Chip: Sensirion SHT4x, address 0x44 (SHT4x-A parts) or 0x45 (-B parts), 3.3 V.
Bus: I2C (``/dev/i2c-N``), single-byte commands without clock stretching: write the measure
command, wait the conversion time (the chip NACKs its address meanwhile), read 6 bytes
``T_msb T_lsb CRC RH_msb RH_lsb CRC`` with the Sensirion CRC-8 per word.
Units: temperature in °C (``Cel``), relative humidity in % (``%RH``, 0–100).
Datasheet: Sensirion SHT4x datasheet; byte-level notes in sensors.md §3.2; see
docs/drivers/sht4x.md.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field

from edgeagent.clock import Clock
from edgeagent.driver import (
    DriverContext,
    FrameError,
    SensorConfig,
)
from edgeagent.drivers.sensirion import (
    ANSWER_LENGTH,
    HUMIDITY,
    TEMPERATURE,
    SensirionRht,
    address_validator,
    check_words,
)
from edgeagent.i2c import I2cDevice

ADDRESSES = (0x44, 0x45)
CMD_MEASURE = {"high": 0xFD, "medium": 0xF6, "low": 0xE0}  # T + RH, no heater
# datasheet maxima 8.3 / 4.5 / 1.6 ms, rounded up (as ESPHome and Adafruit do)
MEASURE_SECONDS = {"high": 0.010, "medium": 0.005, "low": 0.002}
CMD_READ_SERIAL = 0x89
READ_SERIAL_SECONDS = 0.010
CMD_SOFT_RESET = 0x94
SOFT_RESET_SECONDS = 0.001


def temperature_celsius(word: int) -> float:
    """Return °C from a raw temperature word: −45 + 175 · S / 65 535."""
    return -45.0 + 175.0 * word / 65535.0


def relative_humidity(word: int) -> float:
    """Return %RH from a raw humidity word: −6 + 125 · S / 65 535, clipped to 0–100."""
    # the formula spans −6 … 119 %RH; the datasheet says to crop values outside 0–100 %RH
    return min(100.0, max(0.0, -6.0 + 125.0 * word / 65535.0))


def decode_measurement(raw: bytes) -> dict[str, float]:
    """Return temperature and relative humidity from a 6-byte answer.

    Raises:
        FrameError: wrong length or a CRC mismatch.
    """
    if len(raw) != ANSWER_LENGTH:
        raise FrameError(f"expected {ANSWER_LENGTH} bytes, got {len(raw)}")
    temperature_word, humidity_word = check_words(raw)
    return {TEMPERATURE: temperature_celsius(temperature_word),
            HUMIDITY: relative_humidity(humidity_word)}


def _yaml_off(value: object) -> object:
    return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class Sht4xConfig(SensorConfig):
    """An SHT4x sensor entry."""

    driver: Literal["sht4x"]
    bus: int = Field(1, ge=0, description="I2C bus number: /dev/i2c-<bus>")
    address: Annotated[Literal[0x44, 0x45], address_validator(*ADDRESSES)] = Field(
        0x44, description="0x44 (SHT4x-A) or 0x45 (SHT4x-B)")
    precision: Literal["high", "medium", "low"] = Field(
        "high", description="Repeatability: measure command FD / F6 / E0")
    heater: Annotated[Literal["off"], BeforeValidator(_yaml_off)] = Field(
        "off", description="Heater pulses are not supported yet")


class Sht4x(SensirionRht):
    """Sensirion SHT4x driver: one triggered measurement per ``interval``."""

    Config = Sht4xConfig
    model: ClassVar[str] = "Sensirion SHT4x"
    family: ClassVar[str] = "SHT4x"
    identity: ClassVar[str] = "serial number"
    transport: ClassVar[str] = "i2c"
    sample_config: ClassVar[dict[str, Any]] = {"id": "climate", "driver": "sht4x", "bus": 1}

    scan_addresses: ClassVar[tuple[int, ...]] = ADDRESSES
    scan_order: ClassVar[int] = 40  # a 1-byte command: an SHT3x at the address ignores it

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read the serial number (``89``, read only): two words, each with a valid CRC."""
        await device.write(bytes([CMD_READ_SERIAL]))
        await clock.sleep(READ_SERIAL_SECONDS)
        check_words(await device.read(ANSWER_LENGTH))  # FrameError if it is not an SHT4x
        return {"model": cls.model, "detail": "serial number read"}

    def __init__(self, config: Sht4xConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sht4xConfig = config
        self.serial_number: int | None = None

    async def _identify(self, device: I2cDevice) -> None:
        clock = self.context.clock
        await device.write(bytes([CMD_SOFT_RESET]))
        await clock.sleep(SOFT_RESET_SECONDS)
        await device.write(bytes([CMD_READ_SERIAL]))
        await clock.sleep(READ_SERIAL_SECONDS)
        high, low = check_words(await device.read(ANSWER_LENGTH))
        self.serial_number = high << 16 | low
        self.context.log.debug("SHT4x on %s, serial number 0x%08X", device.where,
                               self.serial_number)

    def _measure(self) -> tuple[bytes, float]:
        precision = self.config.precision
        return bytes([CMD_MEASURE[precision]]), MEASURE_SECONDS[precision]

    def _decode(self, raw: bytes) -> dict[str, float]:
        return decode_measurement(raw)
