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

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    QuantityClass,
    Reading,
    SensorConfig,
    StatKind,
    StreamSpec,
)
from edgeagent.drivers.sensirion import address_validator, check_words
from edgeagent.i2c import I2cDevice

ADDRESSES = (0x44, 0x45)
CMD_MEASURE = {"high": 0xFD, "medium": 0xF6, "low": 0xE0}  # T + RH, no heater
# datasheet maxima 8.3 / 4.5 / 1.6 ms, rounded up (as ESPHome and Adafruit do)
MEASURE_SECONDS = {"high": 0.010, "medium": 0.005, "low": 0.002}
CMD_READ_SERIAL = 0x89
READ_SERIAL_SECONDS = 0.010
CMD_SOFT_RESET = 0x94
SOFT_RESET_SECONDS = 0.001
ANSWER_LENGTH = 6  # two words, each followed by its CRC
TEMPERATURE = "temperature"
HUMIDITY = "relativeHumidity"


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


class Sht4x(Driver):
    """Sensirion SHT4x driver: one triggered measurement per ``interval``."""

    Config = Sht4xConfig
    model: ClassVar[str] = "Sensirion SHT4x"
    sample_config: ClassVar[dict[str, Any]] = {"id": "climate", "driver": "sht4x", "bus": 1}

    def __init__(self, config: Sht4xConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sht4xConfig = config
        self.serial_number: int | None = None
        self._device: I2cDevice | None = None
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: Sht4xConfig) -> list[StreamSpec]:
        """Temperature in °C and relative humidity in %."""
        return [
            StreamSpec(TEMPERATURE, "Cel", QuantityClass.CLIMATE, StatKind.LINEAR,
                       "air temperature at the sensor"),
            StreamSpec(HUMIDITY, "%RH", QuantityClass.CLIMATE, StatKind.LINEAR,
                       "relative humidity in percent (0–100)"),
        ]

    def describe(self) -> dict[str, Any]:
        """Return the settings with the address in hex."""
        return {**super().describe(), "address": f"0x{self.config.address:02X}"}

    async def open(self) -> None:
        """Open the bus, soft-reset the chip and read its serial number (proves it answers)."""
        clock = self.context.clock
        device = I2cDevice(self.config.bus, self.config.address, self.context.i2c)
        try:
            await device.open()
            await device.write(bytes([CMD_SOFT_RESET]))
            await clock.sleep(SOFT_RESET_SECONDS)
            await device.write(bytes([CMD_READ_SERIAL]))
            await clock.sleep(READ_SERIAL_SECONDS)
            high, low = check_words(await device.read(ANSWER_LENGTH))
        except FrameError as exc:  # nothing to count at open: the chip is unusable
            await device.close()
            raise DriverError(f"{device.where}: bad serial number answer: {exc}") from exc
        except BaseException:  # NACK, missing bus, cancellation: release the bus
            await device.close()
            raise
        self.serial_number = high << 16 | low
        self._device = device
        self._pacer.start(clock.monotonic())
        self.context.log.debug("SHT4x on %s, serial number 0x%08X", device.where,
                               self.serial_number)

    async def read(self) -> list[Reading]:
        """Measure once; FrameError on a bad CRC, DriverError on a NACK."""
        device = self._require_open()
        clock = self.context.clock
        await self._pacer.wait(self.context.clock)
        started = clock.monotonic()
        await device.write(bytes([CMD_MEASURE[self.config.precision]]))
        # no clock stretching: the chip NACKs until done, so wait its worst-case time first
        await clock.sleep(MEASURE_SECONDS[self.config.precision])
        values = decode_measurement(await device.read(ANSWER_LENGTH))
        return [Reading(name, value, started) for name, value in values.items()]


    async def close(self) -> None:
        """Release the bus; idempotent. The chip idles by itself between measurements."""
        device, self._device = self._device, None
        if device is not None:
            await device.close()

    def _require_open(self) -> I2cDevice:
        if self._device is None:
            raise DriverError(f"SHT4x on I2C bus {self.config.bus} address "
                              f"0x{self.config.address:02X} is not open")
        return self._device
