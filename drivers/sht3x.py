"""Sensirion SHT3x (SHT30 / SHT31 / SHT35) temperature and humidity sensor on I2C.

Chip: Sensirion SHT3x-DIS, address 0x44 (ADDR pin low) or 0x45 (ADDR high), run at 3.3 V.
Bus: I2C (``/dev/i2c-N``), 16-bit commands without CRC. Single-shot measurement *without*
clock stretching (the Pi's I2C controller mishandles stretching): write the command, wait the
conversion time (the chip NACKs a read meanwhile), read 6 bytes
``T_msb T_lsb CRC RH_msb RH_lsb CRC`` with the Sensirion CRC-8 per word.
Units: temperature in °C (``Cel``), relative humidity in % (``%RH``, 0–100).
Datasheet: Sensirion SHT3x-DIS datasheet; byte-level notes in sensors.md §3.1 and §6.4; see
docs/drivers/sht3x.md.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

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
# single shot, no clock stretching; the 2C xx variants stretch and are avoided on a Pi
CMD_MEASURE = {"high": b"\x24\x00", "medium": b"\x24\x0b", "low": b"\x24\x16"}
# datasheet maxima 15 / 6 / 4 ms, plus 1 ms
MEASURE_SECONDS = {"high": 0.016, "medium": 0.007, "low": 0.005}
CMD_SOFT_RESET = b"\x30\xa2"
SOFT_RESET_SECONDS = 0.002  # datasheet maximum 1.5 ms
CMD_READ_STATUS = b"\xf3\x2d"
STATUS_LENGTH = 3  # one word and its CRC


def temperature_celsius(word: int) -> float:
    """Return °C from a raw temperature word: −45 + 175 · S / 65 535."""
    return -45.0 + 175.0 * word / 65535.0


def relative_humidity(word: int) -> float:
    """Return %RH from a raw humidity word: 100 · S / 65 535 (always within 0–100)."""
    return 100.0 * word / 65535.0


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


class Sht3xConfig(SensorConfig):
    """An SHT3x sensor entry."""

    driver: Literal["sht3x"]
    bus: int = Field(1, ge=0, description="I2C bus number: /dev/i2c-<bus>")
    address: Annotated[Literal[0x44, 0x45], address_validator(*ADDRESSES)] = Field(
        0x44, description="0x44 (ADDR pin low) or 0x45 (ADDR pin high)")
    repeatability: Literal["high", "medium", "low"] = Field(
        "high", description="Single-shot command 24 00 / 24 0B / 24 16")


class Sht3x(SensirionRht):
    """Sensirion SHT3x driver: one single-shot measurement per ``interval``."""

    Config = Sht3xConfig
    model: ClassVar[str] = "Sensirion SHT3x"
    family: ClassVar[str] = "SHT3x"
    identity: ClassVar[str] = "status register"
    transport: ClassVar[str] = "i2c"
    sample_config: ClassVar[dict[str, Any]] = {"id": "climate", "driver": "sht3x", "bus": 1}

    scan_addresses: ClassVar[tuple[int, ...]] = ADDRESSES
    scan_order: ClassVar[int] = 45  # after the SHT4x, which NACKs this 2-byte command

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read the status register (``F3 2D``, read only): one word with a valid CRC."""
        await device.write(CMD_READ_STATUS)
        check_words(await device.read(STATUS_LENGTH))  # FrameError if it is not an SHT3x
        return {"model": cls.model, "detail": "status register read"}

    def __init__(self, config: Sht3xConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sht3xConfig = config
        self.status: int | None = None

    async def _identify(self, device: I2cDevice) -> None:
        await device.write(CMD_SOFT_RESET)
        await self.context.clock.sleep(SOFT_RESET_SECONDS)
        await device.write(CMD_READ_STATUS)
        (self.status,) = check_words(await device.read(STATUS_LENGTH))
        self.context.log.debug("SHT3x on %s, status 0x%04X", device.where, self.status)

    def _measure(self) -> tuple[bytes, float]:
        # single shot without clock stretching: a read NACKs until the conversion is done
        repeatability = self.config.repeatability
        return CMD_MEASURE[repeatability], MEASURE_SECONDS[repeatability]

    def _decode(self, raw: bytes) -> dict[str, float]:
        return decode_measurement(raw)
