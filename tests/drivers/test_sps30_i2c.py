"""SPS30 on I2C: byte-exact commands, CRC per word, chip model, driver on a fake bus, cases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError
from edgeagent.drivers.sensirion import words_with_crc
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sps30 import GOLDEN_DATA
from edgeagent.drivers.sim.sps30_i2c import Sps30Chip, conformance_driver
from edgeagent.drivers.sps30 import decode_values
from edgeagent.drivers.sps30_i2c import (
    ADDRESS,
    CMD_DATA_READY,
    CMD_READ_VALUES,
    CMD_SERIAL,
    CMD_SLEEP,
    CMD_STOP,
    CMD_WAKE,
    START_FLOAT,
    Sps30I2c,
    Sps30I2cConfig,
    decode_read,
)
from golden import load_case

CASES = Path(__file__).parent / "cases" / "sps30_i2c"
GOLDEN_READ = words_with_crc(*(int.from_bytes(GOLDEN_DATA[i:i + 2], "big")
                               for i in range(0, len(GOLDEN_DATA), 2)))


# --- byte-exact protocol (sensors.md §1.1, §2.3.1) -------------------------------------------

def test_start_float_is_byte_exact():
    assert START_FLOAT.hex(" ") == "00 10 03 00 ac"


@pytest.mark.parametrize(("word", "wire"), [
    (0x0000, "00 00 81"), (0x0001, "00 01 B0"), (0x0300, "03 00 AC"), (0x0500, "05 00 F6")])
def test_word_crc_vectors(word, wire):
    assert words_with_crc(word) == bytes.fromhex(wire)


def test_auto_cleaning_write_vector():
    assert bytes.fromhex("80 04") + words_with_crc(0x0009, 0x3A80) == bytes.fromhex(
        "80 04 00 09 09 3A 80 A7")


def test_first_bytes_of_a_float_read():
    assert GOLDEN_READ[:6] == bytes.fromhex("40 A7 63 83 20 09")
    assert decode_read(GOLDEN_READ) == decode_values(GOLDEN_DATA)
    assert decode_read(GOLDEN_READ)["pm1"] == pytest.approx(5.2348, abs=1e-4)


def test_bad_crc_and_length_are_frame_errors():
    bad = bytearray(GOLDEN_READ)
    bad[5] ^= 0x01
    with pytest.raises(FrameError, match="word 1"):
        decode_read(bytes(bad))
    with pytest.raises(FrameError, match="60"):
        decode_read(GOLDEN_READ[:30])


# --- chip model ------------------------------------------------------------------------------

def test_chip_data_ready_pointer_and_always_latest():
    clock = FakeClock()
    chip = Sps30Chip(clock)
    chip.write(START_FLOAT)
    chip.write(CMD_DATA_READY)
    assert chip.read(3) == bytes.fromhex("00 00 81")
    clock.advance(1.0)
    assert chip.read(3) == bytes.fromhex("00 01 B0")  # pointer kept: re-read without a write
    chip.write(CMD_READ_VALUES)
    assert chip.read(60) == GOLDEN_READ
    chip.write(CMD_DATA_READY)
    assert chip.read(3) == bytes.fromhex("00 00 81")
    chip.write(CMD_READ_VALUES)
    assert chip.read(60) == GOLDEN_READ  # I2C always returns the latest values


def test_chip_sleep_needs_the_wake_sequence():
    chip = Sps30Chip(FakeClock())
    chip.write(CMD_SLEEP)
    with pytest.raises(OSError):
        chip.write(CMD_WAKE)  # wakes the interface, NACKed
    chip.write(CMD_WAKE)
    assert chip.state == "idle"


def test_chip_rejects_bad_argument_crc_and_stop_returns_to_idle():
    chip = Sps30Chip(FakeClock())
    with pytest.raises(OSError):
        chip.write(bytes.fromhex("00 10 03 00 AD"))
    assert chip.state == "idle"
    chip.write(START_FLOAT)
    assert chip.state == "measurement"
    chip.write(CMD_STOP)
    assert chip.state == "idle"


# --- driver ----------------------------------------------------------------------------------

def make(chip: Sps30Chip | None, clock: FakeClock, **options) -> tuple[Sps30I2c, FakeI2cBus]:
    bus = FakeI2cBus(1, {ADDRESS: chip} if chip else {})
    config = Sps30I2cConfig(id="pm", driver="sps30_i2c", **options)
    return Sps30I2c(config, DriverContext(clock=clock, i2c=FakeBuses(bus))), bus


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


def test_open_sequence_and_reads():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock, serial="SN7")
        driver, bus = make(chip, clock, warmup=0, interval=0.5)
        await driver.open()
        writes = [data for kind, _, data in bus.log if kind == "write"]
        got = [await driver.read() for _ in range(4)]
        await driver.close()
        await driver.close()
        return writes, got, driver.serial_number, chip.state

    writes, got, serial, state = run(scenario())
    assert writes == [CMD_WAKE, CMD_WAKE, CMD_STOP, CMD_SERIAL, START_FLOAT]
    assert serial == "SN7"
    assert [g is not None for g in got] == [True, False, True, False]  # 1 Hz data, 2 Hz polls
    assert {r.stream: r.value for r in got[0]} == decode_values(GOLDEN_DATA)
    assert state == "idle"


def test_sleeping_sensor_is_woken_and_measures():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        chip.state, chip.interface_on = "sleep", False
        driver, _ = make(chip, clock)
        await driver.open()
        got = [await driver.read() for _ in range(2)]
        await driver.close()
        return got

    assert [g is not None for g in run(scenario())] == [True, True]


def test_crc_error_is_a_frame_error_then_reads_continue():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, _ = make(chip, clock, warmup=0)
        await driver.open()
        chip.corrupt_next_crc(3)
        with pytest.raises(FrameError, match="word 3"):
            await driver.read()
        after = await driver.read()
        await driver.close()
        return after

    assert run(scenario())


def test_absent_sensor_and_disappearing_sensor():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, bus = make(None, clock)
        with pytest.raises(DriverError, match="0x69"):
            await driver.open()
        assert bus.closed
        chip = Sps30Chip(clock)
        driver, _ = make(chip, clock, warmup=0)
        await driver.open()
        chip.go_absent()
        with pytest.raises(DriverError, match="NACK"):
            await driver.read()
        await driver.close()
        with pytest.raises(DriverError, match="not open"):
            await driver.read()

    run(scenario())


def test_config():
    config = Sps30I2cConfig.model_validate(Sps30I2c.sample_config)
    assert (config.bus, config.address, config.warmup) == (1, 0x69, 30.0)
    assert len(Sps30I2c.streams(config)) == 10


def test_conformance_hook():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with conformance_driver(clock) as driver:
            await driver.open()
            got = [await driver.read() for _ in range(3)]
            await driver.close()
            return got

    assert all(run(scenario()))


# --- golden cases ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_case(case: str):
    loaded = load_case(CASES / case, Sps30I2cConfig)
    if loaded is None:
        return  # a config error case, checked by load_case
    _, wire, (expected,) = loaded
    if "error" in expected:
        with pytest.raises(FrameError, match=expected["error"]):
            decode_read(wire)
    else:
        assert {k: round(v, 4) for k, v in decode_read(wire).items()} == expected
