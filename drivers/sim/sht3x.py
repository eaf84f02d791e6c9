"""SHT3x chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, byte for byte.

Commands (16-bit): single shot ``24 00`` / ``24 0B`` / ``24 16`` (no clock stretching) and
``2C 06`` / ``2C 0D`` / ``2C 10`` (stretching), soft reset ``30 A2``, status ``F3 2D`` / clear
``30 41``, heater ``30 6D`` / ``30 66``, serial number ``37 80`` / ``36 82``, break ``30 93``.
Timing runs on an injected clock (datasheet maxima: 15 / 6 / 4 ms, reset 1.5 ms): while busy the
chip NACKs, except that a read after a stretching command is served (the real chip would hold
SCL low until done; counted in :attr:`Sht3xChip.stretched_reads`). After an answer has been
read, reads NACK until the next command. An unknown command is acknowledged and sets status
bit 1 ("last command not processed"). Periodic mode is not modelled.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.sensirion import words_with_crc
from edgeagent.drivers.sht3x import (
    CMD_MEASURE,
    CMD_READ_STATUS,
    CMD_SOFT_RESET,
    Sht3x,
    Sht3xConfig,
)
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack
from edgeagent.drivers.sim.sensirion import SensirionRhtChip, to_word

MEASURE_SECONDS = {"high": 0.015, "medium": 0.006, "low": 0.004}
# command -> (repeatability, clock stretching)
MEASURE_COMMANDS = {**{command: (name, False) for name, command in CMD_MEASURE.items()},
                    b"\x2c\x06": ("high", True), b"\x2c\x0d": ("medium", True),
                    b"\x2c\x10": ("low", True)}
SOFT_RESET_SECONDS = 0.0015
CMD_CLEAR_STATUS = b"\x30\x41"
CMD_HEATER_ON = b"\x30\x6d"
CMD_HEATER_OFF = b"\x30\x66"
CMD_READ_SERIAL = (b"\x37\x80", b"\x36\x82")  # with / without clock stretching
CMD_BREAK = b"\x30\x93"  # stops periodic mode; harmless in single-shot mode
STATUS_ALERT_PENDING = 0x8000
STATUS_HEATER_ON = 0x2000
STATUS_RH_ALERT = 0x0800
STATUS_T_ALERT = 0x0400
STATUS_RESET_DETECTED = 0x0010
STATUS_COMMAND_FAILED = 0x0002
STATUS_AFTER_RESET = STATUS_ALERT_PENDING | STATUS_RESET_DETECTED  # 0x8010
STATUS_CLEARED_BY_CLEAR = (STATUS_ALERT_PENDING | STATUS_RH_ALERT | STATUS_T_ALERT
                           | STATUS_RESET_DETECTED)



def raw_temperature(celsius: float) -> int:
    """Return the word the chip sends for ``celsius`` (inverse of −45 + 175 · S / 65 535)."""
    return to_word((celsius + 45.0) * 65535.0 / 175.0)


def raw_humidity(percent: float) -> int:
    """Return the word the chip sends for ``percent`` %RH (inverse of 100 · S / 65 535)."""
    return to_word(percent * 65535.0 / 100.0)


class Sht3xChip(SensirionRhtChip):
    """One simulated SHT3x; plug it into ``FakeI2cBus(1, {0x44: chip})``."""

    MEASURE_SECONDS = MEASURE_SECONDS

    def __init__(self, clock: Clock, *, address: int = 0x44, seed: int = 0,
                 serial_number: int = 0x0D5A9C31) -> None:
        super().__init__(clock, address=address, seed=seed, serial_number=serial_number)
        self.status = STATUS_AFTER_RESET
        self.stretched_reads = 0
        self._stretching = False

    def _words(self, temperature: float, humidity: float) -> tuple[int, int]:
        return raw_temperature(temperature), raw_humidity(humidity)

    def come_back(self) -> None:
        """Plugged in again, freshly powered: idle, status as after a reset."""
        super().come_back()
        self.status = STATUS_AFTER_RESET

    def write(self, data: bytes) -> None:
        """Execute a 16-bit command."""
        if not self.present or self._busy():
            raise nack(self.address)
        command = bytes(data)
        self._stretching = False
        if command != CMD_READ_STATUS:
            self.status &= ~STATUS_COMMAND_FAILED
        if command in MEASURE_COMMANDS:
            repeatability, self._stretching = MEASURE_COMMANDS[command]
            self._start(self.conversion_seconds[repeatability], self._measurement())
        elif command == CMD_SOFT_RESET:
            self.status = STATUS_AFTER_RESET
            self._start(SOFT_RESET_SECONDS, b"")
        elif command == CMD_READ_STATUS:
            self._start(0.0, words_with_crc(self.status))
        elif command == CMD_CLEAR_STATUS:
            self.status &= ~STATUS_CLEARED_BY_CLEAR
        elif command in (CMD_HEATER_ON, CMD_HEATER_OFF):
            self.status = (self.status | STATUS_HEATER_ON if command == CMD_HEATER_ON
                           else self.status & ~STATUS_HEATER_ON)
        elif command in CMD_READ_SERIAL:
            serial = self.serial_number
            self._start(0.0, words_with_crc(serial >> 16, serial & 0xFFFF))
        elif command != CMD_BREAK:
            self.status |= STATUS_COMMAND_FAILED

    def read(self, length: int) -> bytes:
        """Hand out the pending answer once; NACK while converting or when there is none."""
        busy = self._busy()
        if not self.present or not self._answer or (busy and not self._stretching):
            raise nack(self.address)
        if busy:
            self.stretched_reads += 1
            self._busy_until = -math.inf
        answer, self._answer = self._answer, b""
        return answer[:length].ljust(length, b"\xff")  # beyond the answer SDA stays high



@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Sht3x]:
    """Yield a driver wired to a simulated chip at bus 1 address 0x44, not yet opened."""
    chip = Sht3xChip(clock, seed=1)
    config = Sht3xConfig(id="sht3x-conf", driver="sht3x", bus=1)
    yield Sht3x(config, DriverContext(clock=clock, i2c=FakeBuses(FakeI2cBus(1, {0x44: chip}))))
