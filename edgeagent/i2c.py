"""I2C for drivers: smbus2 calls on a worker thread, behind a seam for a fake bus in tests.

A driver talks to one chip through :class:`I2cDevice`. The bus underneath comes from a
:data:`BusFactory` in the driver's context: :func:`open_smbus` on a gateway (``/dev/i2c-N``), a
fake bus with chip models in tests (``drivers/sim/i2cbus.py``). A NACK (``OSError``, usually
errno 121 EREMOTEIO) becomes a :class:`~edgeagent.driver.DriverError` naming bus and address.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Protocol

from edgeagent.driver import DriverError


class I2cBus(Protocol):
    """Blocking raw transfers on one bus (what smbus2's ``i2c_rdwr`` offers)."""

    def write(self, address: int, data: bytes) -> None:
        """One write transaction."""

    def read(self, address: int, length: int) -> bytes:
        """One read transaction."""

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        """Write then read with a repeated start (register reads)."""

    def close(self) -> None:
        """Release the bus."""


BusFactory = Callable[[int], I2cBus]


class SmbusBus:
    """``/dev/i2c-N`` through smbus2 raw messages (no 32-byte SMBus block limit)."""

    def __init__(self, number: int) -> None:
        from smbus2 import SMBus  # imported here: only gateways with I2C sensors need it

        self.number = number
        self._bus = SMBus(number)

    def write(self, address: int, data: bytes) -> None:
        """One write transaction."""
        from smbus2 import i2c_msg

        self._bus.i2c_rdwr(i2c_msg.write(address, data))

    def read(self, address: int, length: int) -> bytes:
        """One read transaction."""
        from smbus2 import i2c_msg

        message = i2c_msg.read(address, length)
        self._bus.i2c_rdwr(message)
        return bytes(message)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        """Write then read with a repeated start."""
        from smbus2 import i2c_msg

        message = i2c_msg.read(address, length)
        self._bus.i2c_rdwr(i2c_msg.write(address, data), message)
        return bytes(message)

    def close(self) -> None:
        """Close the device file."""
        self._bus.close()


def open_smbus(number: int) -> I2cBus:
    """The real bus ``/dev/i2c-<number>``."""
    return SmbusBus(number)


GENERAL_CALL_ADDRESS = 0x00
GENERAL_CALL_RESET = b"\x06"


async def reset_bus(number: int, factory: BusFactory = open_smbus) -> str:
    """Bus recovery: a fresh handle on bus ``number`` and the I2C general-call reset.

    The general call (address 0x00, byte 0x06, I2C specification §3.1.14) makes every chip
    that supports it (Sensirion SHT3x/SHT4x, SPS30, SEN5x …) reset as after power-on; chips
    that ignore it are unaffected. Returns what happened, for the recovery event.

    Raises:
        DriverError: the bus cannot be opened at all.
    """
    probe = I2cDevice(number, GENERAL_CALL_ADDRESS, factory)
    await probe.open()
    try:
        await probe.write(GENERAL_CALL_RESET)
        return f"I2C bus {number} re-opened, general-call reset sent"
    except DriverError:
        return f"I2C bus {number} re-opened; no chip acknowledged the general-call reset"
    finally:
        await probe.close()


class I2cDevice:
    """One chip at one address. Calls run on a worker thread, one at a time per device."""

    def __init__(self, bus: int, address: int, factory: BusFactory = open_smbus) -> None:
        self.bus_number = bus
        self.address = address
        self._factory = factory
        self._bus: I2cBus | None = None
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        """``bus 1 address 0x44`` for messages."""
        return f"I2C bus {self.bus_number} address 0x{self.address:02X}"

    async def open(self) -> None:
        """Open the bus (idempotent); errors say how to enable I2C on a Pi."""
        if self._bus is not None:
            return
        number = self.bus_number
        try:
            self._bus = await asyncio.to_thread(self._factory, number)
        except FileNotFoundError as exc:
            raise DriverError(f"I2C bus {number} (/dev/i2c-{number}) does not exist: enable "
                              "I2C (sudo raspi-config nonint do_i2c 0) and check the bus "
                              "number") from exc
        except PermissionError as exc:
            raise DriverError(f"no permission for /dev/i2c-{number}: add the service user to "
                              "the 'i2c' group") from exc
        except OSError as exc:
            raise DriverError(f"cannot open I2C bus {number}: {exc.strerror or exc}") from exc

    async def _call(self, method: str, *args: object) -> bytes | None:
        if self._bus is None:
            raise DriverError(f"{self.where} is not open")
        fn = getattr(self._bus, method)
        async with self._lock:
            try:
                return await asyncio.to_thread(fn, self.address, *args)
            except OSError as exc:
                if exc.errno in (errno.EREMOTEIO, errno.ENXIO, errno.EIO):
                    raise DriverError(f"no answer from {self.where} (NACK: sensor absent, "
                                      "busy, asleep or miswired)") from exc
                raise DriverError(f"{self.where}: {exc.strerror or exc}") from exc

    async def write(self, data: bytes) -> None:
        """Write bytes (a command, possibly with arguments)."""
        await self._call("write", data)

    async def read(self, length: int) -> bytes:
        """Read ``length`` bytes."""
        return await self._call("read", length) or b""

    async def write_read(self, data: bytes, length: int) -> bytes:
        """Write then read with a repeated start (register access)."""
        return await self._call("write_read", data, length) or b""

    async def close(self) -> None:
        """Release the bus; idempotent."""
        bus, self._bus = self._bus, None
        if bus is not None:
            await asyncio.to_thread(bus.close)
