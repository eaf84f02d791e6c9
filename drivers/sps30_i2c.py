"""Sensirion SPS30 particulate matter sensor on I2C (address 0x69, at most 100 kHz).

Chip: Sensirion SPS30, SEL pin to GND selects I2C; 5 V supply, external pull-ups.
Bus: I2C (``/dev/i2c-N``) with 16-bit commands; every 2-byte data word is followed by the
Sensirion CRC-8. Start measurement ``00 10 03 00 AC`` (float) or ``00 10 05 00 F6`` (integer),
poll the data-ready flag ``02 02``, read measured values ``03 00`` (60 bytes float / 30 bytes
integer, words with CRC), stop ``01 04``; auto-cleaning interval ``80 04``, device status
register ``D2 06`` (read) / ``D2 10`` (clear), fan cleaning ``56 07``, version ``D1 00``.
Units: PM1.0 / PM2.5 / PM4.0 / PM10 in µg/m³, number concentrations PM0.5 … PM10 in #/cm³
(``/cm3``), typical particle size in µm; decoded by :data:`edgeagent.drivers.sps30.DECODERS`.
Datasheet: Sensirion SPS30 datasheet v2.0 §4 and §6; sensors.md §2.3.1 and §2.3.3 (prefer
UART on a Pi); see docs/drivers/sps30_i2c.md.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from edgeagent.clock import Clock
from edgeagent.driver import (
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    Reading,
    StreamSpec,
)
from edgeagent.drivers.sensirion import (
    SensirionI2cDriver,
    address_validator,
    check_words,
    words_with_crc,
)
from edgeagent.drivers.sps30 import (
    DECODERS,
    FIRST_STATUS_CHECK_S,
    MIN_FIRMWARE_READBACK,
    MIN_FIRMWARE_STATUS,
    NEW_DATA_PERIOD,
    PRODUCT_TYPE,
    Sps30Options,
    StatusMonitor,
    cleaning_mismatch,
    firmware_problem,
    firmware_text,
    value_streams,
)
from edgeagent.i2c import I2cDevice
from edgeagent.units import format_duration

ADDRESS = 0x69
CMD_START = b"\x00\x10"
CMD_STOP = b"\x01\x04"
CMD_DATA_READY = b"\x02\x02"
CMD_READ_VALUES = b"\x03\x00"
CMD_SLEEP = b"\x10\x01"
CMD_WAKE = b"\x11\x03"
CMD_FAN_CLEANING = b"\x56\x07"
CMD_AUTO_CLEANING = b"\x80\x04"  # read: pointer only; write: + two words (u32 BE) with CRCs
CMD_PRODUCT_TYPE = b"\xd0\x02"
CMD_SERIAL = b"\xd0\x33"
CMD_VERSION = b"\xd1\x00"
CMD_READ_STATUS = b"\xd2\x06"  # firmware >= 2.2
CMD_CLEAR_STATUS = b"\xd2\x10"
CMD_RESET = b"\xd3\x04"
FORMAT_FLOAT_WORD = 0x0300  # start argument: output format 0x03 (float), then 0x00
FORMAT_U16_WORD = 0x0500  # start argument: output format 0x05 (uint16), then 0x00
FORMAT_WORDS = {"float": FORMAT_FLOAT_WORD, "integer": FORMAT_U16_WORD}
START_FLOAT = CMD_START + words_with_crc(FORMAT_FLOAT_WORD)  # 00 10 03 00 AC
START_U16 = CMD_START + words_with_crc(FORMAT_U16_WORD)  # 00 10 05 00 F6
START_SECONDS = 0.020  # execution times, datasheet maxima
STOP_SECONDS = 0.020
WAKE_SECONDS = 0.005
RESET_SECONDS = 0.100
FAN_CLEANING_SECONDS = 0.005
CLEANING_READ_SECONDS = 0.005  # 80 04 read: < 5 ms before the answer is ready
CLEANING_WRITE_SECONDS = 0.020  # 80 04 write: < 20 ms (NVM)
CLEAR_STATUS_SECONDS = 0.005
READY_LENGTH = 3  # one word + CRC
VALUES_LENGTHS = {"float": 60, "integer": 30}  # 20 / 10 words + CRC
VALUES_LENGTH = VALUES_LENGTHS["float"]
VERSION_LENGTH = 3  # major, minor + CRC
U32_LENGTH = 6  # two words + CRC: auto-cleaning interval, device status register
SERIAL_LENGTH = 48  # up to 32 ASCII characters, NUL-terminated, in words with CRC
PRODUCT_TYPE_LENGTH = 12  # "00080000": 4 words with CRC
PRODUCT_TYPE_SECONDS = 0.005  # no execution time given; the info reads take < 5 ms


def words_to_bytes(words: list[int]) -> bytes:
    """Join 16-bit words into big-endian bytes."""
    return b"".join(word.to_bytes(2, "big") for word in words)


def decode_read(raw: bytes, output_format: str = "float") -> dict[str, float]:
    """Return the ten values from a measured-values read (CRC per word, then BE values).

    ``output_format`` "float" expects 60 bytes (float32), "integer" 30 bytes (uint16).

    Raises:
        FrameError: wrong length, a CRC mismatch or an implausible value.
    """
    expected = VALUES_LENGTHS[output_format]
    if len(raw) != expected:
        raise FrameError(f"expected {expected} bytes, got {len(raw)}")
    return DECODERS[output_format](words_to_bytes(check_words(raw)))


def decode_u32_read(raw: bytes) -> int:
    """A u32 from a 6-byte read (two words with CRC, most significant word first).

    Raises:
        FrameError: wrong length or a CRC mismatch.
    """
    if len(raw) != U32_LENGTH:
        raise FrameError(f"expected {U32_LENGTH} bytes, got {len(raw)}")
    high, low = check_words(raw)
    return high << 16 | low


def u32_words(value: int) -> bytes:
    """A u32 as the two words with CRC that a write carries."""
    return words_with_crc(value >> 16, value & 0xFFFF)


class Sps30I2cConfig(Sps30Options):
    """An SPS30 sensor entry (I2C)."""

    driver: Literal["sps30_i2c"]
    bus: int = Field(1, ge=0, description="I2C bus number: /dev/i2c-<bus>")
    address: Annotated[Literal[0x69], address_validator(ADDRESS)] = Field(
        ADDRESS, description="Fixed 0x69")


class Sps30I2c(SensirionI2cDriver):
    """Sensirion SPS30 driver over I2C: float or integer output, data-ready polled."""

    Config = Sps30I2cConfig
    model: ClassVar[str] = "Sensirion SPS30 (I2C)"
    transport: ClassVar[str] = "i2c"
    family: ClassVar[str] = "SPS30"
    stop_command: ClassVar[bytes | None] = CMD_STOP
    sample_config: ClassVar[dict[str, Any]] = {"id": "pm-i2c", "driver": "sps30_i2c", "bus": 1}

    scan_addresses: ClassVar[tuple[int, ...]] = (ADDRESS,)
    scan_order: ClassVar[int] = 60  # after the AMG8833 and SEN5x, which share 0x69

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read the product type (``D0 02``, read only): ASCII "00080000" in words with CRC."""
        await device.write(CMD_PRODUCT_TYPE)
        await clock.sleep(PRODUCT_TYPE_SECONDS)
        raw = words_to_bytes(check_words(await device.read(PRODUCT_TYPE_LENGTH)))
        product = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        if not product.startswith(PRODUCT_TYPE):
            return None
        return {"model": cls.model, "detail": f"product type {product}",
                "note": "the SPS30 is more reliable on its UART (SEL floating) on a Pi; on I2C "
                        "give it its own bus at 100 kHz or less"}

    def __init__(self, config: Sps30I2cConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sps30I2cConfig = config
        self.serial_number: str | None = None
        self.firmware: tuple[int, int] | None = None
        self.sensor_cleaning_interval: int | None = None  # seconds, as read back at open
        self._pacer = Pacer(config.interval)
        self._status: StatusMonitor | None = None  # None: not open or firmware < 2.2

    @classmethod
    def streams(cls, config: Sps30I2cConfig) -> list[StreamSpec]:
        """Mass PM1–PM10, number concentrations PM0.5–PM10 and typical particle size."""
        return value_streams()

    def describe(self) -> dict[str, Any]:
        """Return the settings with the address in hex and what open read (None before).

        ``device_status`` lists the flags of the last status register reading
        (``fan_speed_warning``, ``laser_failure``, ``fan_failure``; ``[]`` = all fine).
        """
        return {**super().describe(), "address": f"0x{self.config.address:02X}",
                "serial_number": self.serial_number,
                "firmware": firmware_text(self.firmware),
                "sensor_auto_cleaning_interval": None if self.sensor_cleaning_interval is None
                else format_duration(self.sensor_cleaning_interval),
                "device_status": None if self._status is None else self._status.last}

    async def open(self) -> None:
        """Open the bus, wake, stop, identify, set fan cleaning, check status, start."""
        clock = self.context.clock
        device = I2cDevice(self.config.bus, self.config.address, self.context.i2c)
        self._status = None
        step = "serial number"
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
            step = "firmware version"
            await device.write(CMD_VERSION)
            (version,) = check_words(await device.read(VERSION_LENGTH))
            self.firmware = (version >> 8, version & 0xFF)
            problem = firmware_problem(self.firmware, self.config.output_format, device.where)
            if problem is not None:
                raise problem
            step = "auto-cleaning interval"
            await self._set_auto_cleaning(device)
            if self.firmware >= MIN_FIRMWARE_STATUS:
                step = "device status"
                self._status = StatusMonitor(device.where, self.config.status_interval,
                                             self.context.log)
                await self._check_status(device)
            await device.write(CMD_START + words_with_crc(FORMAT_WORDS[self.config.output_format]))
            await clock.sleep(START_SECONDS)
        except FrameError as exc:  # nothing to count at open: the sensor is unusable
            await device.close()
            raise DriverError(f"{device.where}: bad {step} answer: {exc}") from exc
        except BaseException:
            await device.close()
            raise
        self._device = device
        self._pacer.start(clock.monotonic() + NEW_DATA_PERIOD)
        if self._status is not None:
            self._status.schedule(clock.monotonic() + FIRST_STATUS_CHECK_S)

    async def _read_auto_cleaning(self, device: I2cDevice) -> int:
        await device.write(CMD_AUTO_CLEANING)
        await self.context.clock.sleep(CLEANING_READ_SECONDS)
        return decode_u32_read(await device.read(U32_LENGTH))

    async def _set_auto_cleaning(self, device: I2cDevice) -> None:
        """Read the interval; write and verify the configured one if it differs (NVM)."""
        clock = self.context.clock
        current = before = await self._read_auto_cleaning(device)
        wanted = self.config.cleaning_seconds
        if wanted is not None and current != wanted:
            await device.write(CMD_AUTO_CLEANING + u32_words(wanted))
            await clock.sleep(CLEANING_WRITE_SECONDS)
            assert self.firmware is not None
            if self.firmware < MIN_FIRMWARE_READBACK:  # reads back the old value until reset
                await device.write(CMD_RESET)
                await clock.sleep(RESET_SECONDS)
            current = await self._read_auto_cleaning(device)
            if current != wanted:
                raise cleaning_mismatch(device.where, wanted, current)
            self.context.log.info("SPS30 on %s: auto-cleaning interval set to %s (was %s)",
                                  device.where, format_duration(wanted),
                                  format_duration(before))
        self.sensor_cleaning_interval = current

    async def _check_status(self, device: I2cDevice) -> None:
        assert self._status is not None
        await device.write(CMD_READ_STATUS)
        register = decode_u32_read(await device.read(U32_LENGTH))
        failure = self._status.seen(register, self.context.clock.monotonic())
        if failure is not None:
            with contextlib.suppress(DriverError):  # FAN is sticky: let the next open re-test
                await device.write(CMD_CLEAR_STATUS)
                await self.context.clock.sleep(CLEAR_STATUS_SECONDS)
            raise failure

    async def check_status(self) -> None:
        """Read the device status register now (firmware >= 2.2); clear and raise on a failure.

        Raises:
            DriverError: fan failure (bit 4) or laser failure (bit 5), naming the bit; or the
                sensor is not open, has older firmware, or NACKs.
            FrameError: a CRC mismatch in the answer.
        """
        device = self._require_open()
        if self._status is None:
            raise DriverError(f"{device.where}: the device status register needs firmware "
                              "2.2 or later")
        await self._check_status(device)

    async def start_fan_cleaning(self) -> None:
        """Run the fan at full speed for 10 s now (only while measuring); no new values then.

        Raises:
            DriverError: NACK (the sensor is not measuring, asleep or absent).
        """
        device = self._require_open()
        await device.write(CMD_FAN_CLEANING)
        await self.context.clock.sleep(FAN_CLEANING_SECONDS)

    async def read(self) -> list[Reading] | None:
        """Poll data-ready; None if nothing is new; FrameError on a bad CRC.

        Every ``status_interval`` (first 5 s after start) the status register is read first.

        Raises:
            DriverError: NACK, or a fan or laser failure in the device status register.
        """
        device = self._require_open()
        clock = self.context.clock
        await self._pacer.wait(self.context.clock)
        if self._status is not None and self._status.due(clock.monotonic()):
            await self._check_status(device)  # a failure raises before any value is read
        await device.write(CMD_DATA_READY)
        (ready,) = check_words(await device.read(READY_LENGTH))
        if not ready:
            return None  # nothing new since the last read, or fan cleaning in progress
        t = clock.monotonic()
        output_format = self.config.output_format
        await device.write(CMD_READ_VALUES)
        values = decode_read(await device.read(VALUES_LENGTHS[output_format]), output_format)
        return [Reading(name, value, t) for name, value in values.items()]
