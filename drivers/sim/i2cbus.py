"""A fake I2C bus at the bus boundary: one chip model per address, NACK elsewhere.

Chip models implement the device's own protocol (commands, timing, CRC) so drivers run their
real code path; see ``sht4x.py`` in this folder for an example model.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
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


class _GeneralCall:
    """Address 0x00: a write reaches every chip with a ``general_call(data)`` method."""

    def __init__(self, chips: list[ChipModel]) -> None:
        if not chips:
            raise nack(0x00)
        self.chips = chips

    def write(self, data: bytes) -> None:
        for chip in self.chips:
            chip.general_call(data)  # type: ignore[attr-defined]

    def read(self, length: int) -> bytes:
        raise nack(0x00)  # nobody answers a read on the general-call address


class FakeI2cBus:
    """Implements :class:`edgeagent.i2c.I2cBus` over chip models; records every transfer."""

    def __init__(self, number: int = 1, chips: dict[int, ChipModel] | None = None) -> None:
        self.number = number
        self.chips: dict[int, ChipModel] = dict(chips or {})
        self.log: list[tuple[str, int, bytes]] = []
        self.closed = False

    def _chip(self, address: int) -> ChipModel:
        if address == 0x00:  # general call: every chip that implements it listens
            return _GeneralCall([c for c in self.chips.values() if hasattr(c, "general_call")])
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


class SwitchedChip:
    """A chip behind a power switch that can latch up, as real sensors do after ESD or brown-out.

    ``make`` builds the chip model; ``power_ons`` tells how many times the supply was switched
    on so far and ``powered`` whether it is on now (in tests: from gpiozero's ``MockPin``).
    While latched or unpowered the chip NACKs everything; after the next power-on it is a fresh
    chip. :meth:`latch` with ``cleared_by="general_call"`` makes a latch-up that the I2C
    general-call reset clears instead (a chip stuck in a state machine, not in its supply).
    """

    def __init__(self, make: Callable[[], ChipModel], *, address: int,
                 power_ons: Callable[[], int], powered: Callable[[], bool]) -> None:
        self.make = make
        self.address = address
        self._power_ons = power_ons
        self._powered = powered
        self._seen_power_ons = power_ons()
        self.chip = make()
        self.latched: str | None = None
        self.boots = 1

    def latch(self, cleared_by: str = "power") -> None:
        """Stop answering until ``cleared_by`` ("power" or "general_call") happens."""
        self.latched = cleared_by

    def _check(self) -> ChipModel:
        if self._power_ons() != self._seen_power_ons:  # switched off and on: a fresh boot
            self._seen_power_ons = self._power_ons()
            self.chip, self.latched = self.make(), None
            self.boots += 1
        if self.latched or not self._powered():
            raise nack(self.address)
        return self.chip

    def write(self, data: bytes) -> None:
        """Forward a write unless latched or unpowered."""
        self._check().write(data)

    def read(self, length: int) -> bytes:
        """Forward a read unless latched or unpowered."""
        return self._check().read(length)

    def general_call(self, data: bytes) -> None:
        """General-call reset (0x06): clears a state-machine latch-up, not a supply one."""
        if data == b"\x06" and self.latched == "general_call" and self._powered():
            self.chip, self.latched = self.make(), None
            self.boots += 1
