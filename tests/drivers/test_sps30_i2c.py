"""SPS30 on I2C: byte-exact commands, CRC per word, chip model, driver on a fake bus, cases."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError
from edgeagent.drivers.sensirion import words_with_crc
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sps30 import GOLDEN_DATA, GOLDEN_VALUES, integer_values
from edgeagent.drivers.sim.sps30_i2c import Sps30Chip, conformance_driver
from edgeagent.drivers.sps30 import (
    MAX_MASS,
    MAX_NUMBER,
    MAX_SIZE,
    STATUS_FAN,
    STATUS_LASER,
    STATUS_SPEED,
    decode_integer_values,
    decode_values,
)
from edgeagent.drivers.sps30_i2c import (
    ADDRESS,
    CMD_AUTO_CLEANING,
    CMD_CLEAR_STATUS,
    CMD_DATA_READY,
    CMD_FAN_CLEANING,
    CMD_READ_STATUS,
    CMD_READ_VALUES,
    CMD_RESET,
    CMD_SERIAL,
    CMD_SLEEP,
    CMD_STOP,
    CMD_VERSION,
    CMD_WAKE,
    START_FLOAT,
    START_U16,
    Sps30I2c,
    Sps30I2cConfig,
    decode_read,
    decode_u32_read,
    u32_words,
)
from golden import load_case

CASES = Path(__file__).parent / "cases" / "sps30_i2c"
GOLDEN_READ = words_with_crc(*(int.from_bytes(GOLDEN_DATA[i:i + 2], "big")
                               for i in range(0, len(GOLDEN_DATA), 2)))
# constructed (no integer capture exists): the capture's values rounded, size 835 nm
INTEGER_WORDS = (5, 9, 13, 13, 26, 37, 42, 42, 43, 835)
INTEGER_READ = bytes.fromhex("00 05 74 00 09 09 00 0D CD 00 0D CD 00 1A 19 00 25 F2 00 2A DC"
                             " 00 2A DC 00 2B ED 03 43 C2")
OPEN_WRITES = [CMD_WAKE, CMD_WAKE, CMD_STOP, CMD_SERIAL, CMD_VERSION, CMD_AUTO_CLEANING,
               CMD_READ_STATUS]


# --- byte-exact protocol (sensors.md §1.1, §2.3.1) -------------------------------------------

def test_start_float_is_byte_exact():
    assert START_FLOAT.hex(" ") == "00 10 03 00 ac"


def test_start_integer_is_byte_exact():
    assert bytes.fromhex("00 10 05 00 F6") == START_U16  # sensors.md §2.3.1 worked example


@pytest.mark.parametrize(("word", "wire"), [
    (0x0000, "00 00 81"), (0x0001, "00 01 B0"), (0x0300, "03 00 AC"), (0x0500, "05 00 F6")])
def test_word_crc_vectors(word, wire):
    assert words_with_crc(word) == bytes.fromhex(wire)


def test_auto_cleaning_write_vector():
    assert bytes.fromhex("80 04") + words_with_crc(0x0009, 0x3A80) == bytes.fromhex(
        "80 04 00 09 09 3A 80 A7")
    assert CMD_AUTO_CLEANING + u32_words(604_800) == bytes.fromhex("80 04 00 09 09 3A 80 A7")
    assert decode_u32_read(bytes.fromhex("00 09 09 3A 80 A7")) == 604_800


@pytest.mark.parametrize(("wire", "register"), [
    ("00 00 81 00 00 81", 0), ("00 00 81 00 10 C2", STATUS_FAN),
    ("00 00 81 00 20 07", STATUS_LASER), ("00 20 07 00 00 81", STATUS_SPEED)])
def test_status_register_reads(wire, register):
    assert decode_u32_read(bytes.fromhex(wire)) == register


def test_u32_read_errors():
    with pytest.raises(FrameError, match="CRC mismatch in word 1"):
        decode_u32_read(bytes.fromhex("00 00 81 00 10 C3"))
    with pytest.raises(FrameError, match="expected 6 bytes, got 3"):
        decode_u32_read(bytes.fromhex("00 00 81"))


def test_integer_read_decodes_with_the_size_in_micrometres():
    assert words_with_crc(*INTEGER_WORDS) == INTEGER_READ
    values = decode_read(INTEGER_READ, "integer")
    assert values == decode_integer_values(struct.pack(">10H", *INTEGER_WORDS))
    assert (values["pm25"], values["n10"], values["typical_size"]) == (9.0, 43.0, 0.835)
    with pytest.raises(FrameError, match="expected 30 bytes, got 60"):
        decode_read(GOLDEN_READ, "integer")
    with pytest.raises(FrameError, match="expected 60 bytes, got 30"):
        decode_read(INTEGER_READ)


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


def test_chip_answers_in_the_format_chosen_at_start():
    clock = FakeClock()
    chip = Sps30Chip(clock)
    chip.values = (5.2, 9.467, 12.5, 13.49, 26.3, 37.0, 41.52, 42.41, 42.54, 0.835)
    chip.write(START_U16)
    chip.write(CMD_READ_VALUES)
    assert chip.read(30) == words_with_crc(5, 9, 12, 13, 26, 37, 42, 42, 43, 835)
    chip.write(CMD_STOP)
    chip.write(START_FLOAT)
    chip.write(CMD_READ_VALUES)
    assert len(chip.read(60)) == 60 and decode_read(chip.read(60))["pm25"] == pytest.approx(9.467)


def test_chip_status_register_is_byte_exact_and_clears():
    chip = Sps30Chip(FakeClock())
    chip.write(CMD_READ_STATUS)
    assert chip.read(6) == bytes.fromhex("00 00 81 00 00 81")
    chip.status = STATUS_FAN | STATUS_SPEED
    assert chip.read(6) == bytes.fromhex("00 20 07 00 10 C2")  # pointer kept
    chip.write(CMD_CLEAR_STATUS)
    chip.write(CMD_READ_STATUS)
    assert chip.read(6) == bytes.fromhex("00 00 81 00 00 81")


def test_chip_firmware_version_and_gating():
    chip = Sps30Chip(FakeClock(), firmware=(2, 1))
    chip.write(CMD_VERSION)
    assert chip.read(3) == words_with_crc(0x0201)
    with pytest.raises(OSError):
        chip.write(CMD_READ_STATUS)  # firmware 2.2 command
    old = Sps30Chip(FakeClock(), firmware=(1, 0))
    with pytest.raises(OSError):
        old.write(START_U16)
    assert old.state == "idle"


@pytest.mark.parametrize(("firmware", "before_reset"), [((2, 2), 86_400), ((2, 1), 604_800)])
def test_chip_auto_cleaning_interval_read_back(firmware, before_reset):
    chip = Sps30Chip(FakeClock(), firmware=firmware)
    chip.write(CMD_AUTO_CLEANING)
    assert chip.read(6) == bytes.fromhex("00 09 09 3A 80 A7")
    chip.write(CMD_AUTO_CLEANING + u32_words(86_400))
    chip.write(CMD_AUTO_CLEANING)
    assert decode_u32_read(chip.read(6)) == before_reset  # fw < 2.2: the old value
    chip.write(CMD_RESET)
    chip.write(CMD_AUTO_CLEANING)
    assert decode_u32_read(chip.read(6)) == 86_400  # NVM: kept across the reset


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
    assert writes == [*OPEN_WRITES, START_FLOAT]
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
    assert (config.output_format, config.auto_cleaning_interval, config.status_interval) == (
        "float", None, 60.0)
    assert len(Sps30I2c.streams(config)) == 10
    integer = Sps30I2cConfig.model_validate({**Sps30I2c.sample_config, "output_format": "integer",
                                             "auto_cleaning_interval": "4d"})
    assert Sps30I2c.streams(integer) == Sps30I2c.streams(config)  # same names and units
    assert integer.cleaning_seconds == 345_600


# --- integer format, fan cleaning, status register: driver on the chip model ---------------

def writes_of(bus: FakeI2cBus) -> list[bytes]:
    return [data for kind, _, data in bus.log if kind == "write"]


def test_integer_format_end_to_end():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, bus = make(chip, clock, warmup=0, output_format="integer")
        await driver.open()
        got = await driver.read()
        await driver.close()
        return writes_of(bus), got, chip

    writes, got, chip = run(scenario())
    assert writes[len(OPEN_WRITES)] == START_U16 and chip.format == 0x0500
    assert bytes.fromhex("03 00") in writes
    expected = dict(zip(decode_values(GOLDEN_DATA), integer_values(GOLDEN_VALUES), strict=True))
    expected["typical_size"] /= 1000
    assert {r.stream: r.value for r in got} == expected
    assert expected["pm25"] == 9.0 and expected["typical_size"] == 0.835


def test_integer_format_on_old_firmware_is_a_permanent_error():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, bus = make(Sps30Chip(clock, firmware=(1, 0)), clock, output_format="integer")
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return caught.value, bus

    error, bus = run(scenario())
    assert not error.retryable and "firmware 1.0" in str(error) and "2.0" in str(error)
    assert bus.closed and START_U16 not in writes_of(bus)


def test_auto_cleaning_interval_is_written_verified_and_not_rewritten(caplog):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, bus = make(chip, clock, warmup=0, auto_cleaning_interval="1d")
        await driver.open()
        described = driver.describe()
        await driver.close()
        first = writes_of(bus)
        bus.log.clear()
        await driver.open()  # a reopen (duty cycle, recovery) finds it set: no NVM write
        await driver.close()
        return chip, first, writes_of(bus), described

    with caplog.at_level(logging.INFO, logger="edgeagent.driver"):
        chip, first, second, described = run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        "SPS30 on I2C bus 1 address 0x69: auto-cleaning interval set to 1d (was 7d)"]
    write = bytes.fromhex("80 04 00 01 B0 51 80 E8")  # 86 400 s = 0x00015180
    assert first[5:8] == [CMD_AUTO_CLEANING, write, CMD_AUTO_CLEANING]
    assert write not in second and chip.cleaning_writes == 1
    assert chip.auto_cleaning_interval == 86_400
    assert described["sensor_auto_cleaning_interval"] == "1d"
    assert described["auto_cleaning_interval"] == "1d"


def test_auto_cleaning_off_and_leave_alone():
    async def scenario(option):
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, _ = make(chip, clock, **option)
        await driver.open()
        await driver.close()
        return chip.auto_cleaning_interval, chip.cleaning_writes, driver.describe()

    assert run(scenario({"auto_cleaning_interval": 0}))[:2] == (0, 1)
    interval, writes, described = run(scenario({}))
    assert (interval, writes) == (604_800, 0)
    assert described["sensor_auto_cleaning_interval"] == "7d"


def test_old_firmware_is_reset_before_the_interval_is_verified():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock, firmware=(2, 1))
        driver, bus = make(chip, clock, auto_cleaning_interval="2d")
        await driver.open()
        await driver.close()
        return writes_of(bus), driver.describe()

    writes, described = run(scenario())
    index = writes.index(CMD_AUTO_CLEANING + u32_words(172_800))
    assert writes[index + 1:index + 3] == [CMD_RESET, CMD_AUTO_CLEANING]
    assert CMD_READ_STATUS not in writes  # firmware 2.1 has no status register
    assert described["firmware"] == "2.1" and described["device_status"] is None


class StubbornChip(Sps30Chip):
    """Acknowledges interval writes but keeps the old value (a write that does not stick)."""

    def write(self, data: bytes) -> None:
        if data[:2] == CMD_AUTO_CLEANING and len(data) > 2:
            return
        super().write(data)


def test_an_interval_that_does_not_stick_is_a_driver_error_naming_both_values():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, bus = make(StubbornChip(clock), clock, auto_cleaning_interval="1d")
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return caught.value, bus

    error, bus = run(scenario())
    assert "86400 s (1d)" in str(error) and "604800 s (7d)" in str(error)
    assert "0x69" in str(error) and bus.closed


def test_fan_failure_is_a_driver_error_at_the_first_check_after_start():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, bus = make(chip, clock, warmup=0)
        await driver.open()
        opened_at = clock.monotonic()
        assert await driver.read()  # 1 s after start: no check due yet
        chip.status = STATUS_FAN  # the fan stops
        got = [await driver.read() for _ in range(3)]  # 2, 3, 4 s
        with pytest.raises(DriverError) as caught:
            await driver.read()  # 5 s: the status register is read first
        checked_at = clock.monotonic() - opened_at
        await driver.close()
        return caught.value, got, chip, checked_at, driver.describe(), writes_of(bus)

    error, got, chip, checked_at, described, writes = run(scenario())
    assert all(got) and checked_at == pytest.approx(5.0, abs=0.01)  # + the 5 ms clear
    assert "fan failure (device status bit 4)" in str(error) and error.retryable
    assert not isinstance(error, FrameError) and "0x69" in str(error)
    assert writes[-3:-1] == [CMD_READ_STATUS, CMD_CLEAR_STATUS] and chip.status == 0
    assert described["device_status"] == ["fan_failure"]


def test_laser_failure_found_at_open_fails_the_open_and_clears_the_register():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        chip.status = STATUS_LASER
        driver, bus = make(chip, clock)
        with pytest.raises(DriverError, match=r"laser failure \(device status bit 5\)"):
            await driver.open()
        assert bus.closed and chip.status == 0 and chip.state == "idle"
        await driver.open()  # register cleared: the next open re-tests the sensor
        await driver.close()

    run(scenario())


def test_status_checks_follow_status_interval():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, bus = make(chip, clock, warmup=0, status_interval="10s")
        await driver.open()
        bus.log.clear()
        for _ in range(30):  # 1 … 30 s after start
            await driver.read()
        await driver.close()
        return writes_of(bus).count(CMD_READ_STATUS)

    assert run(scenario()) == 3  # at 5, 15 and 25 s


def test_speed_warning_keeps_the_values_and_warns_once(caplog):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        log = logging.getLogger("test.sps30_i2c")
        config = Sps30I2cConfig(id="pm", driver="sps30_i2c", warmup=0, status_interval="2s")
        driver = Sps30I2c(config, DriverContext(clock=clock, log=log, i2c=FakeBuses(
            FakeI2cBus(1, {ADDRESS: chip}))))
        chip.status = STATUS_SPEED | 0x8000_0001  # and two reserved bits, to be ignored
        await driver.open()
        during = [await driver.read() for _ in range(10)]  # checks at 0 (open), 5, 7, 9 s
        described = driver.describe()
        chip.status = 0
        after = [await driver.read() for _ in range(3)]
        await driver.close()
        return during, described, after, driver.describe()

    with caplog.at_level(logging.INFO, logger="test.sps30_i2c"):
        during, described, after, later = run(scenario())
    assert all(during) and all(after)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bit 21" in warnings[0].getMessage()
    assert described["device_status"] == ["fan_speed_warning"]
    assert later["device_status"] == []
    assert any("back in range" in r.getMessage() for r in caplog.records)


def test_manual_fan_cleaning_freezes_the_values_for_ten_seconds():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, bus = make(chip, clock, warmup=0)
        await driver.open()
        assert await driver.read()
        await driver.start_fan_cleaning()
        got = [await driver.read() for _ in range(12)]
        await driver.close()
        with pytest.raises(DriverError, match="not open"):
            await driver.start_fan_cleaning()
        return got, writes_of(bus)

    got, writes = run(scenario())
    assert CMD_FAN_CLEANING in writes
    assert [g is not None for g in got] == [False] * 9 + [True] * 3  # until 10 s after


def test_manual_fan_cleaning_outside_measurement_is_refused():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sps30Chip(clock)
        driver, _ = make(chip, clock)
        await driver.open()
        chip.state = "idle"  # e.g. stopped behind the driver's back
        with pytest.raises(DriverError, match="NACK"):
            await driver.start_fan_cleaning()
        await driver.close()

    run(scenario())


def test_describe_before_open_and_after():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, _ = make(Sps30Chip(clock, serial="SN9"), clock)
        before = driver.describe()
        await driver.open()
        await driver.close()
        return before, driver.describe()

    before, after = run(scenario())
    assert (before["firmware"], before["device_status"], before["serial_number"]) == (
        None, None, None)
    assert after["firmware"] == "2.2" and after["device_status"] == []
    assert after["sensor_auto_cleaning_interval"] == "7d" and after["output_format"] == "float"


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
    config, wire, (expected,) = loaded
    if "error" in expected:
        with pytest.raises(FrameError, match=expected["error"]):
            decode_read(wire, config.output_format)
    else:
        got = decode_read(wire, config.output_format)
        assert {k: round(v, 4) for k, v in got.items()} == expected


# --- properties: the integer read decoder raises nothing but FrameError ----------------------

@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=36), st.integers(0, 2**32))
def test_integer_read_never_raises_anything_but_frame_error(noise, seed):
    rng = random.Random(seed)
    words = [rng.choice((0, rng.randrange(3000), rng.randrange(65536))) for _ in range(10)]
    for raw in (noise, words_with_crc(*words)):
        try:
            values = decode_read(raw, "integer")
        except FrameError:
            continue
        assert list(values) == list(decode_values(GOLDEN_DATA))  # the ten streams, wire order
        assert all(0 <= values[k] <= MAX_MASS for k in ("pm1", "pm25", "pm4", "pm10"))
        assert all(0 <= values[k] <= MAX_NUMBER for k in ("n0_5", "n1_0", "n2_5", "n4_0", "n10"))
        assert 0 <= values["typical_size"] <= MAX_SIZE
        if raw != noise:  # well-formed: exactly the words, size in µm
            assert [values[k] for k in list(values)[:9]] == words[:9]
            assert values["typical_size"] == words[9] / 1000
