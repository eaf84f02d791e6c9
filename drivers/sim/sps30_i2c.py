"""SPS30 I2C chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, byte for byte.

Idle / Measurement / Sleep; the last command sets a read pointer that repeated reads re-read
(sensors.md §2.3.1). New values once a second on an injected clock, announced by the
data-ready flag; Read Measured Values always returns the latest, in the format chosen at Start
(float or integer). In Sleep the interface is off: the first transfer wakes it and is NACKed,
then ``11 03`` returns to Idle. Also modelled: fan cleaning (10 s without new values), the
auto-cleaning interval ``80 04`` (kept in "NVM"; firmware < 2.2 reads back the old value until a
reset), the device status register ``D2 06`` / ``D2 10`` (tests set :attr:`Sps30Chip.status`)
and the firmware version ``D1 00``. Model assumptions, not from the datasheet: unknown
commands, bad argument CRCs and reads without a pointer NACK; Stop in Idle and Start in
Measurement are ignored; firmware < 2.2 NACKs ``D2 06``, firmware < 2.0 NACKs the integer
Start; Reset and power-up clear the status register.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext, FrameError
from edgeagent.drivers.sensirion import check_words, words_with_crc
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack
from edgeagent.drivers.sim.sps30 import (
    DEFAULT_CLEANING_INTERVAL,
    FAN_CLEANING_SECONDS,
    FIRMWARE,
    GOLDEN_VALUES,
    integer_values,
)
from edgeagent.drivers.sps30 import (
    MIN_FIRMWARE_READBACK,
    MIN_FIRMWARE_STATUS,
    MIN_FIRMWARE_U16,
    NEW_DATA_PERIOD,
)
from edgeagent.drivers.sps30_i2c import (
    ADDRESS,
    CMD_AUTO_CLEANING,
    CMD_CLEAR_STATUS,
    CMD_DATA_READY,
    CMD_FAN_CLEANING,
    CMD_PRODUCT_TYPE,
    CMD_READ_STATUS,
    CMD_READ_VALUES,
    CMD_RESET,
    CMD_SERIAL,
    CMD_SLEEP,
    CMD_START,
    CMD_STOP,
    CMD_VERSION,
    CMD_WAKE,
    FORMAT_FLOAT_WORD,
    FORMAT_U16_WORD,
    Sps30I2c,
    Sps30I2cConfig,
)


def _u32_words(value: int) -> bytes:
    return words_with_crc(value >> 16, value & 0xFFFF)


def _ascii_words(text: bytes, length: int) -> bytes:
    raw = text.ljust(length, b"\0")
    return words_with_crc(*(int.from_bytes(raw[i:i + 2], "big") for i in range(0, length, 2)))


class Sps30Chip:
    """One simulated SPS30 on I2C; plug it into ``FakeI2cBus(1, {0x69: chip})``."""

    def __init__(self, clock: Clock, serial: str = "3C5F2A1B9D0E7711",
                 firmware: tuple[int, int] = FIRMWARE) -> None:
        self.clock = clock
        self.serial = serial
        self.firmware = firmware
        self.state = "idle"
        self.interface_on = True
        self.present = True
        self.values: tuple[float, ...] = GOLDEN_VALUES
        self.format = FORMAT_FLOAT_WORD
        self.status = 0  # device status register (u32); tests set bits, e.g. STATUS_FAN
        self.auto_cleaning_interval = DEFAULT_CLEANING_INTERVAL  # in NVM
        self.reported_cleaning_interval = DEFAULT_CLEANING_INTERVAL  # what 80 04 reads
        self.cleaning_writes = 0  # NVM writes of the interval
        self._pointer = b""
        self._started_at = 0.0
        self._delivered = 0
        self._cleaning_until = -1.0
        self._corrupt_word: int | None = None

    def corrupt_next_crc(self, word: int = 0) -> None:
        """Flip one bit of the CRC of ``word`` in the next values read, once."""
        self._corrupt_word = word

    def go_absent(self) -> None:
        """Unplugged or unpowered: NACK everything."""
        self.present = False

    def come_back(self) -> None:
        """Powered again: Idle, interface on, status register cleared."""
        self.present, self.state, self.interface_on, self._pointer = True, "idle", True, b""
        self._restart()

    def _restart(self) -> None:
        self.status = 0
        self.reported_cleaning_interval = self.auto_cleaning_interval

    def write(self, data: bytes) -> None:
        """Execute a 16-bit command, with argument words and CRCs."""
        if not self.present:
            raise nack(ADDRESS)
        if not self.interface_on:
            self.interface_on = True  # the low pulse on SDA switches the interface on
            raise nack(ADDRESS)
        command, args = data[:2], data[2:]
        try:
            words = check_words(args)
        except FrameError:
            raise nack(ADDRESS) from None
        if self.state == "sleep" and command != CMD_WAKE:
            raise nack(ADDRESS)
        self._pointer = b""
        if command == CMD_START and words in ([FORMAT_FLOAT_WORD], [FORMAT_U16_WORD]):
            if words[0] == FORMAT_U16_WORD and self.firmware < MIN_FIRMWARE_U16:
                raise nack(ADDRESS)
            if self.state == "idle":
                self.state, self.format = "measurement", words[0]
                self._started_at, self._delivered = self._now(), 0
        elif command == CMD_STOP:
            self.state = "idle" if self.state == "measurement" else self.state
        elif command == CMD_AUTO_CLEANING and len(words) == 2:
            self.auto_cleaning_interval = words[0] << 16 | words[1]
            self.cleaning_writes += 1
            if self.firmware >= MIN_FIRMWARE_READBACK:
                self.reported_cleaning_interval = self.auto_cleaning_interval
        elif command == CMD_READ_STATUS and self.firmware < MIN_FIRMWARE_STATUS:
            raise nack(ADDRESS)
        elif command == CMD_CLEAR_STATUS and not words:
            self.status = 0
        elif not words and command in (CMD_DATA_READY, CMD_READ_VALUES, CMD_SERIAL,
                                       CMD_PRODUCT_TYPE, CMD_VERSION, CMD_AUTO_CLEANING,
                                       CMD_READ_STATUS):
            self._pointer = command
        elif command == CMD_SLEEP and self.state == "idle":
            self.state, self.interface_on = "sleep", False
        elif command == CMD_WAKE:
            self.state = "idle" if self.state == "sleep" else self.state
        elif command == CMD_FAN_CLEANING and self.state == "measurement":
            self._cleaning_until = self._now() + FAN_CLEANING_SECONDS
        elif command == CMD_RESET:
            self.state = "idle"
            self._restart()
        else:
            raise nack(ADDRESS)

    def read(self, length: int) -> bytes:
        """Read at the pointer; the pointer stays, so a repeated read re-reads it."""
        if not self.present or not self.interface_on or not self._pointer:
            raise nack(ADDRESS)
        if self._pointer == CMD_DATA_READY:
            answer = words_with_crc(int(self._new_update() > self._delivered))
        elif self._pointer == CMD_READ_VALUES:
            answer = self._values()
        elif self._pointer == CMD_SERIAL:
            answer = _ascii_words(self.serial.encode("ascii"), 32)
        elif self._pointer == CMD_PRODUCT_TYPE:
            answer = _ascii_words(b"00080000", 8)
        elif self._pointer == CMD_AUTO_CLEANING:
            answer = _u32_words(self.reported_cleaning_interval)
        elif self._pointer == CMD_READ_STATUS:
            answer = _u32_words(self.status)
        else:
            answer = words_with_crc(self.firmware[0] << 8 | self.firmware[1])
        return answer[:length].ljust(length, b"\xff")  # beyond the answer SDA stays high

    def _now(self) -> float:
        return self.clock.monotonic()

    def _new_update(self) -> int:
        if self.state != "measurement" or self._now() < self._cleaning_until:
            return self._delivered  # values frozen
        return int((self._now() - self._started_at) / NEW_DATA_PERIOD + 1e-9)

    def _values(self) -> bytes:
        self._delivered = max(self._delivered, self._new_update())
        if self.format == FORMAT_U16_WORD:
            raw = struct.pack(">10H", *integer_values(self.values))
        else:
            raw = struct.pack(">10f", *self.values)
        answer = bytearray(words_with_crc(*(int.from_bytes(raw[i:i + 2], "big")
                                            for i in range(0, len(raw), 2))))
        if self._corrupt_word is not None:
            answer[3 * self._corrupt_word + 2] ^= 0x01
            self._corrupt_word = None
        return bytes(answer)


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Sps30I2c]:
    """Yield a driver wired to a simulated chip at bus 1 address 0x69, not yet opened."""
    chip = Sps30Chip(clock)
    config = Sps30I2cConfig(id="sps30-i2c-conf", driver="sps30_i2c", bus=1, warmup=0)
    yield Sps30I2c(config, DriverContext(clock=clock,
                                         i2c=FakeBuses(FakeI2cBus(1, {ADDRESS: chip}))))
