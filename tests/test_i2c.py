import asyncio
import errno

import pytest

from edgeagent.driver import DriverError
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack
from edgeagent.i2c import I2cDevice


class Register8:
    """A tiny 8-bit register file with auto-increment, like many sensor chips."""

    def __init__(self) -> None:
        self.registers = bytearray(range(256))
        self.pointer = 0
        self.busy = False

    def write(self, data: bytes) -> None:
        if self.busy:
            raise nack(0x76)
        self.pointer = data[0]
        for offset, value in enumerate(data[1:]):
            self.registers[(self.pointer + offset) % 256] = value

    def read(self, length: int) -> bytes:
        start = self.pointer
        self.pointer = (start + length) % 256
        return bytes(self.registers[(start + i) % 256] for i in range(length))


def run(coro):
    return asyncio.run(coro)


def test_register_access_through_the_fake_bus_is_logged_byte_exact():
    chip = Register8()
    bus = FakeI2cBus(1, {0x76: chip})

    async def scenario():
        device = I2cDevice(1, 0x76, FakeBuses(bus))
        await device.open()
        await device.write(bytes([0xF4, 0x27]))
        data = await device.write_read(bytes([0xF3]), 3)
        await device.close()
        await device.close()
        return data

    assert run(scenario()) == bytes([0xF3, 0x27, 0xF5])
    assert bus.log == [("write", 0x76, b"\xf4\x27"), ("write", 0x76, b"\xf3"),
                       ("read", 0x76, b"\xf3\x27\xf5")]
    assert bus.closed


def test_absent_or_busy_chip_is_a_driver_error_naming_bus_and_address():
    chip = Register8()

    async def scenario():
        device = I2cDevice(1, 0x44, FakeBuses(FakeI2cBus(1, {0x76: chip})))
        await device.open()
        with pytest.raises(DriverError, match=r"no answer from I2C bus 1 address 0x44 \(NACK"):
            await device.read(2)
        busy = I2cDevice(1, 0x76, FakeBuses(FakeI2cBus(1, {0x76: chip})))
        await busy.open()
        chip.busy = True
        with pytest.raises(DriverError, match="I2C bus 1 address 0x76"):
            await busy.write(b"\x00")

    run(scenario())


def test_missing_bus_and_permission_problems_say_what_to_do():
    async def missing():
        await I2cDevice(3, 0x44, FakeBuses()).open()

    with pytest.raises(DriverError, match=r"/dev/i2c-3\) does not exist: enable I2C"):
        run(missing())

    def forbidden(number):
        raise PermissionError(errno.EACCES, "Permission denied")

    async def denied():
        await I2cDevice(1, 0x44, forbidden).open()

    with pytest.raises(DriverError, match="'i2c' group"):
        run(denied())


def test_use_before_open_is_an_error():
    with pytest.raises(DriverError, match="is not open"):
        run(I2cDevice(1, 0x44, FakeBuses()).read(1))
