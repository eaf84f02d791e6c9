"""Sensirion SPS30 particulate matter sensor on I2C (address 0x69, at most 100 kHz).

Chip: Sensirion SPS30, SEL pin to GND selects I2C; 5 V supply, external pull-ups.
Bus: I2C (``/dev/i2c-N``) with 16-bit commands; every 2-byte data word is followed by the
Sensirion CRC-8. Start measurement ``00 10 03 00 AC`` (float), poll the data-ready flag
``02 02``, read measured values ``03 00`` (60 bytes: 20 words with CRC), stop ``01 04``.
Units: PM1.0 / PM2.5 / PM4.0 / PM10 in µg/m³, number concentrations PM0.5 … PM10 in #/cm³
(``/cm3``), typical particle size in µm; decoded by :func:`edgeagent.drivers.sps30.decode_values`.
Datasheet: Sensirion SPS30 datasheet v2.0; sensors.md §2.3.1 and §2.3.3 (prefer UART on a Pi);
see docs/drivers/sps30_i2c.md.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    ParticulateConfig,
    Reading,
    StreamSpec,
)
from edgeagent.drivers.sensirion import address_validator, check_words, words_with_crc
from edgeagent.drivers.sps30 import NEW_DATA_PERIOD, decode_values, value_streams
from edgeagent.i2c import I2cDevice

ADDRESS = 0x69
CMD_START = b"\x00\x10"
CMD_STOP = b"\x01\x04"
CMD_DATA_READY = b"\x02\x02"
CMD_READ_VALUES = b"\x03\x00"
CMD_SLEEP = b"\x10\x01"
CMD_WAKE = b"\x11\x03"
CMD_FAN_CLEANING = b"\x56\x07"
CMD_SERIAL = b"\xd0\x33"
CMD_RESET = b"\xd3\x04"
FORMAT_FLOAT_WORD = 0x0300  # start argument: output format 0x03 (float), then 0x00
START_FLOAT = CMD_START + words_with_crc(FORMAT_FLOAT_WORD)  # 00 10 03 00 AC
START_SECONDS = 0.020  # execution times, datasheet maxima
STOP_SECONDS = 0.020
WAKE_SECONDS = 0.005
RESET_SECONDS = 0.100
READY_LENGTH = 3  # one word + CRC
VALUES_LENGTH = 60  # 20 words + CRC = ten float32
SERIAL_LENGTH = 48  # up to 32 ASCII characters, NUL-terminated, in words with CRC


def words_to_bytes(words: list[int]) -> bytes:
    """Join 16-bit words into big-endian bytes."""
    return b"".join(word.to_bytes(2, "big") for word in words)


def decode_read(raw: bytes) -> dict[str, float]:
    """Return the ten values from a 60-byte read (CRC per word, then float32 BE).

    Raises:
        FrameError: wrong length, a CRC mismatch or an implausible value.
    """
    if len(raw) != VALUES_LENGTH:
        raise FrameError(f"expected {VALUES_LENGTH} bytes, got {len(raw)}")
    return decode_values(words_to_bytes(check_words(raw)))


class Sps30I2cConfig(ParticulateConfig):
    """An SPS30 sensor entry (I2C)."""

    driver: Literal["sps30_i2c"]
    bus: int = Field(1, ge=0, description="I2C bus number: /dev/i2c-<bus>")
    address: Annotated[Literal[0x69], address_validator(ADDRESS)] = Field(
        ADDRESS, description="Fixed 0x69")


class Sps30I2c(Driver):
    """Sensirion SPS30 driver over I2C: float measurement, data-ready polled once per interval."""

    Config = Sps30I2cConfig
    model: ClassVar[str] = "Sensirion SPS30 (I2C)"
    transport: ClassVar[str] = "i2c"
    sample_config: ClassVar[dict[str, Any]] = {"id": "pm-i2c", "driver": "sps30_i2c", "bus": 1}

    def __init__(self, config: Sps30I2cConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sps30I2cConfig = config
        self.serial_number: str | None = None
        self._device: I2cDevice | None = None
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: Sps30I2cConfig) -> list[StreamSpec]:
        """Mass PM1–PM10, number concentrations PM0.5–PM10 and typical particle size."""
        return value_streams()

    def describe(self) -> dict[str, Any]:
        """Return the settings with the address in hex and the serial number (after open)."""
        return {**super().describe(), "address": f"0x{self.config.address:02X}",
                "serial_number": self.serial_number}

    async def open(self) -> None:
        """Open the bus, wake the sensor, stop, read the serial number, start float output."""
        clock = self.context.clock
        device = I2cDevice(self.config.bus, self.config.address, self.context.i2c)
        try:
            await device.open()
            for _ in range(2):  # a sleeping sensor NACKs the first one (sensors.md §2.3.1)
                with contextlib.suppress(DriverError):
                    await device.write(CMD_WAKE)
                await clock.sleep(WAKE_SECONDS)
            await device.write(CMD_STOP)  # in case a previous run left it measuring
            await clock.sleep(STOP_SECONDS)
            await device.write(CMD_SERIAL)
            raw = words_to_bytes(check_words(await device.read(SERIAL_LENGTH)))
            self.serial_number = raw.split(b"\0", 1)[0].decode("ascii", "replace")
            await device.write(START_FLOAT)
            await clock.sleep(START_SECONDS)
        except FrameError as exc:  # nothing to count at open: the sensor is unusable
            await device.close()
            raise DriverError(f"{device.where}: bad serial number answer: {exc}") from exc
        except BaseException:
            await device.close()
            raise
        self._device = device
        self._pacer.start(clock.monotonic() + NEW_DATA_PERIOD)

    async def read(self) -> list[Reading] | None:
        """Poll data-ready; None if nothing is new; FrameError on a bad CRC."""
        device = self._require_open()
        clock = self.context.clock
        await self._pacer.wait(self.context.clock)
        await device.write(CMD_DATA_READY)
        (ready,) = check_words(await device.read(READY_LENGTH))
        if not ready:
            return None
        t = clock.monotonic()
        await device.write(CMD_READ_VALUES)
        values = decode_read(await device.read(VALUES_LENGTH))
        return [Reading(name, value, t) for name, value in values.items()]


    async def close(self) -> None:
        """Stop measurement (best effort) and release the bus; idempotent."""
        device, self._device = self._device, None
        if device is None:
            return
        with contextlib.suppress(DriverError):
            await device.write(CMD_STOP)
        await device.close()

    def _require_open(self) -> I2cDevice:
        if self._device is None:
            raise DriverError(f"SPS30 on I2C bus {self.config.bus} address "
                              f"0x{self.config.address:02X} is not open")
        return self._device
