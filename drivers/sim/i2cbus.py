"""A fake I2C bus at the bus boundary: one chip model per address, NACK elsewhere.

Chip models implement the device's own protocol (commands, timing, CRC) so drivers run their
real code path; see ``sht4x.py`` in this folder for an example model.
"""

from __future__ import annotations

import errno
from typing import Protocol


def nack(address: int) -> OSError:
    """The error Linux raises when nothing acknowledges an address."""
    return OSError(errno.EREMOTEIO, f"Remote I/O error (no ACK from 0x{address:02X})")


class ChipModel(Protocol):
    """What a simulated chip does with raw transfers; raise :func:`nack` to refuse."""

    def write(self, data: bytes) -> None:
        """The master wrote ``data``."""

    def read(self, length: int) -> bytes:
        """The master reads ``length`` bytes."""


class FakeI2cBus:
    """Implements :class:`edgeagent.i2c.I2cBus` over chip models; records every transfer."""

    def __init__(self, number: int = 1, chips: dict[int, ChipModel] | None = None) -> None:
        self.number = number
        self.chips: dict[int, ChipModel] = dict(chips or {})
        self.log: list[tuple[str, int, bytes]] = []
        self.closed = False

    def _chip(self, address: int) -> ChipModel:
        chip = self.chips.get(address)
        if chip is None:
            raise nack(address)
        return chip

    def write(self, address: int, data: bytes) -> None:
        """Forward a write to the chip at ``address``."""
        self.log.append(("write", address, bytes(data)))
        self._chip(address).write(bytes(data))

    def read(self, address: int, length: int) -> bytes:
        """Forward a read to the chip at ``address``."""
        data = self._chip(address).read(length)
        self.log.append(("read", address, data))
        return data

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        """Write then read (repeated start)."""
        self.write(address, data)
        return self.read(address, length)

    def close(self) -> None:
        """Mark closed (the same object can be opened again, like /dev/i2c-N)."""
        self.closed = True


class FakeBuses:
    """A :data:`~edgeagent.i2c.BusFactory` handing out fake buses by number."""

    def __init__(self, *buses: FakeI2cBus) -> None:
        self.buses = {bus.number: bus for bus in buses}

    def __call__(self, number: int) -> FakeI2cBus:
        """Open bus ``number``; a missing bus is FileNotFoundError like /dev/i2c-N."""
        if number not in self.buses:
            raise FileNotFoundError(errno.ENOENT, f"/dev/i2c-{number}")
        bus = self.buses[number]
        bus.closed = False
        return bus
