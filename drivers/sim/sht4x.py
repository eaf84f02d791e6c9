"""SHT4x chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, byte for byte.

Commands: measure ``FD`` / ``F6`` / ``E0``, the six heater-then-measure commands, read serial
number ``89``, soft reset ``94``. Timing runs on an injected clock (datasheet maxima: measure
8.3 / 4.5 / 1.6 ms, reset 1 ms); while busy the chip NACKs its address, and after an answer
has been read, reads NACK until the next command. Model assumptions, not from the datasheet:
the serial number is ready 1 ms after ``89``, an unknown command byte is NACKed, and the
heater's warming of the sensor is not modelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.sensirion import words_with_crc
from edgeagent.drivers.sht4x import CMD_MEASURE, CMD_READ_SERIAL, CMD_SOFT_RESET, Sht4x, Sht4xConfig
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack
from edgeagent.drivers.sim.sensirion import SensirionRhtChip, to_word

MEASURE_SECONDS = {"high": 0.0083, "medium": 0.0045, "low": 0.0016}
# heater 200 / 110 / 20 mW for 1 s or 0.1 s, then a high-precision measurement
HEATER_SECONDS = {0x39: 1.0, 0x32: 0.1, 0x2F: 1.0, 0x24: 0.1, 0x1E: 1.0, 0x15: 0.1}
SOFT_RESET_SECONDS = 0.001
READ_SERIAL_SECONDS = 0.001
PRECISION_BY_COMMAND = {command: precision for precision, command in CMD_MEASURE.items()}



def raw_temperature(celsius: float) -> int:
    """Return the word the chip sends for ``celsius`` (inverse of −45 + 175 · S / 65 535)."""
    return to_word((celsius + 45.0) * 65535.0 / 175.0)


def raw_humidity(percent: float) -> int:
    """Return the word the chip sends for ``percent`` %RH (inverse of −6 + 125 · S / 65 535)."""
    return to_word((percent + 6.0) * 65535.0 / 125.0)


class Sht4xChip(SensirionRhtChip):
    """One simulated SHT4x; plug it into ``FakeI2cBus(1, {0x44: chip})``."""

    MEASURE_SECONDS = MEASURE_SECONDS

    def __init__(self, clock: Clock, *, address: int = 0x44, seed: int = 0,
                 serial_number: int = 0x1234ABCD) -> None:
        super().__init__(clock, address=address, seed=seed, serial_number=serial_number)

    def _words(self, temperature: float, humidity: float) -> tuple[int, int]:
        return raw_temperature(temperature), raw_humidity(humidity)

    def write(self, data: bytes) -> None:
        """Execute a one-byte command."""
        if not self.present or self._busy() or len(data) != 1:
            raise nack(self.address)
        command = data[0]
        if command in PRECISION_BY_COMMAND:
            self._start(self.conversion_seconds[PRECISION_BY_COMMAND[command]], self._measurement())
        elif command in HEATER_SECONDS:
            seconds = HEATER_SECONDS[command] + self.conversion_seconds["high"]
            self._start(seconds, self._measurement())
        elif command == CMD_READ_SERIAL:
            serial = self.serial_number
            self._start(READ_SERIAL_SECONDS, words_with_crc(serial >> 16, serial & 0xFFFF))
        elif command == CMD_SOFT_RESET:
            self._start(SOFT_RESET_SECONDS, b"")
        else:
            raise nack(self.address)

    def read(self, length: int) -> bytes:
        """Hand out the pending answer once; NACK while busy or when there is none."""
        if not self.present or self._busy() or not self._answer:
            raise nack(self.address)
        answer, self._answer = self._answer, b""
        return answer[:length].ljust(length, b"\xff")  # beyond the answer SDA stays high



@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Sht4x]:
    """Yield a driver wired to a simulated chip at bus 1 address 0x44, not yet opened."""
    chip = Sht4xChip(clock, seed=1)
    config = Sht4xConfig(id="sht4x-conf", driver="sht4x", bus=1)
    yield Sht4x(config, DriverContext(clock=clock, i2c=FakeBuses(FakeI2cBus(1, {0x44: chip}))))
