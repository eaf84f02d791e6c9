"""SPS30 I2C chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, byte for byte.

Idle / Measurement / Sleep; the last command sets a read pointer that repeated reads re-read
(sensors.md §2.3.1). New values once a second on an injected clock, announced by the
data-ready flag; Read Measured Values always returns the latest. In Sleep the interface is off:
the first transfer wakes it and is NACKed, then ``11 03`` returns to Idle. Model assumptions,
not from the datasheet: unknown commands, bad argument CRCs and reads without a pointer NACK;
Stop in Idle and Start in Measurement are ignored.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext, FrameError
from edgeagent.drivers.sensirion import check_words, words_with_crc
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack
from edgeagent.drivers.sim.sps30 import FAN_CLEANING_SECONDS, GOLDEN_VALUES
from edgeagent.drivers.sps30 import NEW_DATA_PERIOD
from edgeagent.drivers.sps30_i2c import (
    ADDRESS,
    CMD_DATA_READY,
    CMD_FAN_CLEANING,
    CMD_READ_VALUES,
    CMD_RESET,
    CMD_SERIAL,
    CMD_SLEEP,
    CMD_START,
    CMD_STOP,
    CMD_WAKE,
    FORMAT_FLOAT_WORD,
    Sps30I2c,
    Sps30I2cConfig,
)

FORMAT_U16_WORD = 0x0500
CMD_PRODUCT_TYPE = b"\xd0\x02"
CMD_VERSION = b"\xd1\x00"


def _ascii_words(text: bytes, length: int) -> bytes:
    raw = text.ljust(length, b"\0")
    return words_with_crc(*(int.from_bytes(raw[i:i + 2], "big") for i in range(0, length, 2)))


class Sps30Chip:
    """One simulated SPS30 on I2C; plug it into ``FakeI2cBus(1, {0x69: chip})``."""

    def __init__(self, clock: Clock, serial: str = "3C5F2A1B9D0E7711") -> None:
        self.clock = clock
        self.serial = serial
        self.state = "idle"
        self.interface_on = True
        self.present = True
        self.values: tuple[float, ...] = GOLDEN_VALUES
        self.format = FORMAT_FLOAT_WORD
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
        """Powered again: Idle, interface on."""
        self.present, self.state, self.interface_on, self._pointer = True, "idle", True, b""

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
            if self.state == "idle":
                self.state, self.format = "measurement", words[0]
                self._started_at, self._delivered = self._now(), 0
        elif command == CMD_STOP:
            self.state = "idle" if self.state == "measurement" else self.state
        elif command in (CMD_DATA_READY, CMD_READ_VALUES, CMD_SERIAL, CMD_PRODUCT_TYPE,
                         CMD_VERSION):
            self._pointer = command
        elif command == CMD_SLEEP and self.state == "idle":
            self.state, self.interface_on = "sleep", False
        elif command == CMD_WAKE:
            self.state = "idle" if self.state == "sleep" else self.state
        elif command == CMD_FAN_CLEANING and self.state == "measurement":
            self._cleaning_until = self._now() + FAN_CLEANING_SECONDS
        elif command == CMD_RESET:
            self.state = "idle"
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
        else:
            answer = words_with_crc(0x0202)  # firmware 2.2
        return answer[:length].ljust(length, b"\xff")  # beyond the answer SDA stays high

    def _now(self) -> float:
        return self.clock.monotonic()

    def _new_update(self) -> int:
        if self.state != "measurement" or self._now() < self._cleaning_until:
            return self._delivered  # values frozen
        return int((self._now() - self._started_at) / NEW_DATA_PERIOD + 1e-9)

    def _values(self) -> bytes:
        self._delivered = max(self._delivered, self._new_update())
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
