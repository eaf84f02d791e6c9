"""SHT3x: worked example, byte-exact commands, timing, faults, and the driver on a fake bus."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from itertools import pairwise

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.sensirion import words_with_crc
from edgeagent.drivers.sht3x import (
    MEASURE_SECONDS,
    SOFT_RESET_SECONDS,
    Sht3x,
    Sht3xConfig,
    decode_measurement,
    relative_humidity,
    temperature_celsius,
)
from edgeagent.drivers.sim import sht3x as sim
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sht3x import Sht3xChip, conformance_driver, raw_humidity, raw_temperature

WORKED = bytes.fromhex("66 66 93 80 00 A2")  # sensors.md §3.1 ✔: 25.00 °C, 50.00 %RH
STATUS_AFTER_RESET = bytes.fromhex("80 10 E1")  # alert pending + reset detected
SOFT_RESET, READ_STATUS = b"\x30\xa2", b"\xf3\x2d"
LSB_T, LSB_RH = 175 / 65535, 100 / 65535
NO_ANSWER = "no answer from I2C bus 1 address 0x44"


def run(scenario: Callable, timeout: float = 5.0):
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


def rig(clock: FakeClock | None = None, *, chip_address: int = 0x44, **overrides):
    """A driver on bus 1 with one simulated SHT3x; auto-advancing fake time by default."""
    clock = clock or FakeClock(auto_advance=True)
    chip = Sht3xChip(clock, address=chip_address, seed=3)
    bus = FakeI2cBus(1, {chip_address: chip})
    config = Sht3xConfig(**{**Sht3x.sample_config, **overrides})
    return Sht3x(config, DriverContext(clock=clock, i2c=FakeBuses(bus))), chip, bus


class TimedChip:
    """Passes transfers to a chip model and notes the fake time of each."""

    def __init__(self, chip: Sht3xChip) -> None:
        self.chip, self.events = chip, []

    def write(self, data: bytes) -> None:
        self.events.append((self.chip.clock.monotonic(), "write", bytes(data)))
        self.chip.write(data)

    def read(self, length: int) -> bytes:
        data = self.chip.read(length)
        self.events.append((self.chip.clock.monotonic(), "read", data))
        return data


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let tasks and bus worker threads run (real time) until ``condition`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def values(readings) -> dict[str, float]:
    return {r.stream: r.value for r in readings}


def measure(chip: Sht3xChip, clock: FakeClock, command: bytes = b"\x24\x00") -> bytes:
    chip.write(command)
    clock.advance(0.015)
    return chip.read(6)


# --- worked example and conversion formulas --------------------------------------------------

def test_worked_example_decodes_to_the_documented_values():
    decoded = decode_measurement(WORKED)
    assert decoded["temperature"] == 25.0  # 0x6666 = 26214 = 0.4 × 65535 exactly
    assert decoded["relativeHumidity"] == pytest.approx(50.00, abs=0.005)  # SHT4x: 56.50


@pytest.mark.parametrize(("word", "celsius"), [(0, -45.0), (0x6666, 25.0), (0xFFFF, 130.0)])
def test_temperature_at_the_range_ends(word, celsius):
    assert temperature_celsius(word) == celsius


@pytest.mark.parametrize(("word", "percent"), [(0, 0.0), (1, 0.00152590), (0x8000, 50.00076295),
                                               (0xFFFE, 99.99847410), (0xFFFF, 100.0)])
def test_humidity_spans_exactly_0_to_100(word, percent):
    assert relative_humidity(word) == pytest.approx(percent, abs=1e-7)


def test_inverse_formulas_give_the_worked_example_words():
    assert raw_temperature(25.0) == 0x6666 and raw_humidity(50.0) == 0x8000
    assert raw_temperature(-100.0) == 0 and raw_temperature(200.0) == 0xFFFF
    assert raw_humidity(-1.0) == 0 and raw_humidity(101.0) == 0xFFFF


@pytest.mark.parametrize("celsius", [-40.0, -0.01, 0.0, 21.37, 59.99, 125.0])
@pytest.mark.parametrize("percent", [0.0, 0.5, 33.3, 99.5, 100.0])
def test_encode_then_decode_is_within_half_a_step(celsius, percent):
    decoded = decode_measurement(words_with_crc(raw_temperature(celsius), raw_humidity(percent)))
    assert abs(decoded["temperature"] - celsius) <= LSB_T / 2
    assert abs(decoded["relativeHumidity"] - percent) <= LSB_RH / 2


@pytest.mark.parametrize("raw", [WORKED[:3], WORKED + b"\x00\x00\x00", b""])
def test_answer_of_the_wrong_length_is_a_frame_error(raw):
    with pytest.raises(FrameError, match=f"expected 6 bytes, got {len(raw)}"):
        decode_measurement(raw)


def crc_ok(group: bytes) -> bool:
    crc = 0xFF
    for byte in group[:2]:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc == group[2]


def with_crcs(raw: bytes, which: int) -> bytes:
    """Give word 0 (bit 0 of ``which``) and/or word 1 (bit 1) their correct CRC."""
    frame = bytearray(raw)
    for word in (0, 1):
        if which >> word & 1:
            frame[3 * word + 2] = words_with_crc(int.from_bytes(frame[3 * word:3 * word + 2],
                                                                "big"))[2]
    return bytes(frame)


@settings(max_examples=10_000, deadline=None)
@given(st.binary(min_size=7, max_size=7))  # 6 answer bytes + which CRCs to make valid
def test_decode_never_returns_a_value_from_a_frame_with_a_bad_crc(drawn):
    frame = with_crcs(drawn[:6], drawn[6] & 3)  # all four good/bad CRC combinations occur
    valid = crc_ok(frame[0:3]) and crc_ok(frame[3:6])
    try:
        decoded = decode_measurement(frame)
    except FrameError:
        assert not valid
        return
    assert valid
    temperature_word, humidity_word = int.from_bytes(frame[0:2]), int.from_bytes(frame[3:5])
    assert decoded == {"temperature": -45 + 175 * temperature_word / 65535,
                       "relativeHumidity": 100 * humidity_word / 65535}


# --- chip model ------------------------------------------------------------------------------

def test_model_nacks_while_converting_and_after_the_answer_was_read():
    clock = FakeClock()
    chip = Sht3xChip(clock)
    chip.set_values(25.0, 50.0)
    chip.write(b"\x24\x00")
    with pytest.raises(OSError) as early:
        chip.read(6)
    assert early.value.errno == errno.EREMOTEIO
    with pytest.raises(OSError):
        chip.write(READ_STATUS)  # busy: not even the address is acknowledged
    clock.advance(0.015)
    assert chip.read(6) == WORKED
    with pytest.raises(OSError):
        chip.read(6)


@pytest.mark.parametrize(("command", "seconds"), [
    (b"\x24\x00", 0.015), (b"\x24\x0b", 0.006), (b"\x24\x16", 0.004)])
def test_model_conversion_times_without_stretching(command, seconds):
    clock = FakeClock()
    chip = Sht3xChip(clock)
    chip.write(command)
    clock.advance(seconds - 1e-4)
    with pytest.raises(OSError):
        chip.read(6)
    clock.advance(1e-4)
    assert len(chip.read(6)) == 6


@pytest.mark.parametrize("command", [b"\x2c\x06", b"\x2c\x0d", b"\x2c\x10"])
def test_model_stretching_commands_answer_at_once_and_are_counted(command):
    chip = Sht3xChip(FakeClock())
    chip.write(command)
    assert len(chip.read(6)) == 6 and chip.stretched_reads == 1


def test_model_status_register():
    clock = FakeClock()
    chip = Sht3xChip(clock)

    def status() -> int:
        chip.write(READ_STATUS)
        return int.from_bytes(chip.read(3)[:2], "big")

    assert status() == 0x8010  # power-up: alert pending, reset detected
    chip.write(b"\x30\x41")
    assert status() == 0x0000
    chip.write(b"\x30\x6d")
    assert status() == 0x2000  # heater on
    chip.write(b"\x12\x34")  # not a command: acknowledged, flagged in bit 1
    assert status() == 0x2002
    assert status() == 0x2002  # reading the status does not clear the flag
    chip.write(b"\x30\x66")
    assert status() == 0x0000
    chip.write(SOFT_RESET)
    with pytest.raises(OSError):
        chip.write(READ_STATUS)  # still resetting
    clock.advance(0.0015)
    assert status() == 0x8010


def test_model_serial_number_break_and_reset_drop_the_pending_answer():
    clock = FakeClock()
    chip = Sht3xChip(clock, serial_number=0xCAFE0001)
    for command in (b"\x37\x80", b"\x36\x82"):
        chip.write(command)
        assert chip.read(6) == words_with_crc(0xCAFE, 0x0001)
    chip.write(b"\x30\x93")  # break: accepted
    chip.write(b"\x24\x00")
    clock.advance(0.015)
    chip.write(SOFT_RESET)
    clock.advance(0.0015)
    with pytest.raises(OSError):
        chip.read(6)


def test_model_faults_and_fixed_words():
    clock = FakeClock()
    chip = Sht3xChip(clock)
    chip.raw_words = (0x6666, 0x8000)
    chip.corrupt_next_crc(0)
    assert measure(chip, clock) == WORKED[:2] + bytes([WORKED[2] ^ 0x01]) + WORKED[3:]
    chip.write(b"\x24\x00")
    clock.advance(0.015)
    chip.go_absent()
    for transfer in (lambda: chip.read(6), lambda: chip.write(READ_STATUS)):
        with pytest.raises(OSError):
            transfer()
    chip.come_back()  # powered again: the measurement before the outage is gone
    with pytest.raises(OSError):
        chip.read(6)
    assert measure(chip, clock) == WORKED


def test_model_random_walk_is_seeded_slow_and_plausible():
    def walk(seed: int) -> list[dict[str, float]]:
        clock = FakeClock()
        chip = Sht3xChip(clock, seed=seed)
        return [decode_measurement(measure(chip, clock)) for _ in range(500)]

    first = walk(7)
    assert first == walk(7) and first != walk(8)
    assert all(-10 <= v["temperature"] <= 40 and 5 <= v["relativeHumidity"] <= 95 for v in first)
    assert all(abs(a["temperature"] - b["temperature"]) < 0.2 for a, b in pairwise(first))
    assert len({v["temperature"] for v in first}) > 100


# --- config, streams -------------------------------------------------------------------------

def test_sample_config_defaults_and_yaml_hex_addresses():
    config = Sht3xConfig.model_validate(Sht3x.sample_config)
    assert (config.bus, config.address, config.repeatability) == (1, 0x44, "high")
    entry = yaml.safe_load("id: climate\ndriver: sht3x\naddress: 0x45\n")
    assert entry["address"] == 69 and Sht3xConfig.model_validate(entry).address == 0x45


@pytest.mark.parametrize(("key", "value", "message"), [
    ("address", 0x46, r"must be 0x44 or 0x45 \(got 0x46\)"),
    ("repeatability", "ultra", "'high', 'medium' or 'low'"),
    ("bus", -1, "greater than or equal to 0"),
    ("precision", "high", "Extra inputs are not permitted"),
    ("heater", "off", "Extra inputs are not permitted")])
def test_bad_options_are_named(key, value, message):
    with pytest.raises(ValidationError, match=message):
        Sht3xConfig(**{**Sht3x.sample_config, key: value})


def test_streams_and_describe():
    config = Sht3xConfig(**Sht3x.sample_config)
    specs = Sht3x.streams(config)
    assert [(s.name, s.unit) for s in specs] == [("temperature", "Cel"),
                                                 ("relativeHumidity", "%RH")]
    assert {(s.quantity, s.kind) for s in specs} == {(QuantityClass.CLIMATE, StatKind.LINEAR)}
    assert all(s.description for s in specs)
    described = Sht3x(config, DriverContext(clock=FakeClock())).describe()
    assert described["model"] == "Sensirion SHT3x" and described["address"] == "0x44"


# --- driver on the fake bus ------------------------------------------------------------------

@pytest.mark.parametrize(("repeatability", "command"), [
    ("high", b"\x24\x00"), ("medium", b"\x24\x0b"), ("low", b"\x24\x16")])
def test_open_and_read_are_byte_exact_and_never_stretch(repeatability, command):
    async def scenario():
        driver, chip, bus = rig(repeatability=repeatability)
        chip.set_values(25.0, 50.0)
        await driver.open()
        readings = await driver.read()
        await driver.close()
        return driver, chip, readings, bus

    driver, chip, readings, bus = run(scenario)
    assert bus.log == [("write", 0x44, SOFT_RESET), ("write", 0x44, READ_STATUS),
                       ("read", 0x44, STATUS_AFTER_RESET),
                       ("write", 0x44, command), ("read", 0x44, WORKED)]
    assert driver.status == 0x8010 and chip.stretched_reads == 0 and bus.closed
    assert values(readings) == {"temperature": 25.0,
                                "relativeHumidity": pytest.approx(50.0, abs=0.005)}


def test_address_0x45_is_used_on_the_wire():
    async def scenario():
        driver, _, bus = rig(chip_address=0x45, address=0x45)
        await driver.open()
        await driver.read()
        await driver.close()
        return bus

    assert {address for _, address, _ in run(scenario).log} == {0x45}


def test_readings_carry_the_values_and_the_instant_of_the_measure_command():
    async def scenario():
        clock = FakeClock(start_mono=500.0, auto_advance=True)
        driver, chip, bus = rig(clock)
        timed = bus.chips[0x44] = TimedChip(chip)
        chip.set_values(23.45, 41.2)
        await driver.open()
        readings = await driver.read()
        await driver.close()
        return readings, timed.events

    readings, events = run(scenario)
    assert values(readings) == {"temperature": pytest.approx(23.45, abs=LSB_T / 2),
                                "relativeHumidity": pytest.approx(41.2, abs=LSB_RH / 2)}
    measure_sent = next(t for t, kind, data in events if data == b"\x24\x00")
    assert {r.t_monotonic for r in readings} == {measure_sent}


@pytest.mark.parametrize("repeatability", ["high", "medium", "low"])
def test_driver_waits_the_datasheet_maximum_before_reading(repeatability):
    assert MEASURE_SECONDS[repeatability] >= sim.MEASURE_SECONDS[repeatability]
    assert SOFT_RESET_SECONDS >= sim.SOFT_RESET_SECONDS

    async def scenario():
        driver, chip, bus = rig(repeatability=repeatability)
        timed = bus.chips[0x44] = TimedChip(chip)
        await driver.open()
        assert await driver.read()
        await driver.close()
        return timed.events

    events = run(scenario)
    (t_write, _, _), (t_read, _, _) = events[-2:]
    assert t_read - t_write == pytest.approx(MEASURE_SECONDS[repeatability])
    reset_at, status_at = events[0][0], events[1][0]
    assert status_at - reset_at == pytest.approx(SOFT_RESET_SECONDS)


def test_chip_slower_than_the_driver_waits_is_a_driver_error_naming_bus_and_address():
    async def scenario():
        driver, chip, _ = rig()
        chip.conversion_seconds["high"] = MEASURE_SECONDS["high"] + 0.0001
        await driver.open()
        with pytest.raises(DriverError) as caught:
            await driver.read()
        chip.conversion_seconds["high"] = MEASURE_SECONDS["high"]  # exactly in time: fine
        readings = await driver.read()
        await driver.close()
        return caught.value, readings

    error, readings = run(scenario)
    assert not isinstance(error, FrameError)
    assert str(error).startswith(f"{NO_ANSWER} (NACK")
    assert readings


def test_reads_are_paced_once_per_interval():
    async def scenario():
        clock = FakeClock(start_mono=100.0, auto_advance=True)
        driver, _, bus = rig(clock, interval=2.0)
        await driver.open()
        opened_at = clock.monotonic()
        times = [(await driver.read())[0].t_monotonic for _ in range(4)]
        await driver.close()
        return opened_at, times, bus

    opened_at, times, bus = run(scenario)
    assert times == pytest.approx([opened_at + 2.0 * k for k in range(4)])
    assert sum(data == b"\x24\x00" for kind, _, data in bus.log if kind == "write") == 4


def test_next_read_waits_for_the_interval_on_a_manual_clock():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, _, bus = rig(clock, interval=1.0)
        await driver.open()
        await driver.read()
        clock.auto_advance = False
        measured = len(bus.log)
        reading = asyncio.create_task(driver.read())
        await until(lambda: clock.sleepers == 1)
        clock.advance(0.98)  # 16 ms of the interval went on the first conversion
        await asyncio.sleep(0.01)
        assert len(bus.log) == measured and clock.sleepers == 1, "measured too early"
        clock.advance(0.004)
        await until(lambda: len(bus.log) == measured + 1 and clock.sleepers == 1)
        assert bus.log[-1] == ("write", 0x44, b"\x24\x00")  # now converting: the read waits
        clock.advance(MEASURE_SECONDS["high"])
        assert await reading
        await driver.close()

    run(scenario)


@pytest.mark.parametrize("word", [0, 1])
def test_crc_error_is_a_frame_error_and_the_next_read_is_fine(word):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, chip, _ = rig(clock)
        chip.set_values(25.0, 50.0)
        await driver.open()
        chip.corrupt_next_crc(word)
        with pytest.raises(FrameError, match=f"CRC mismatch in word {word}"):
            await driver.read()
        failed_at = clock.monotonic()
        readings = await driver.read()
        await driver.close()
        return failed_at, readings

    failed_at, readings = run(scenario)
    assert values(readings)["temperature"] == 25.0
    assert readings[0].t_monotonic >= failed_at + 0.98  # still paced: no busy loop on errors


def test_chip_absent_at_open_names_bus_and_address_and_releases_the_bus():
    async def scenario():
        bus = FakeI2cBus(1, {})
        driver = Sht3x(Sht3xConfig(**Sht3x.sample_config),
                       DriverContext(clock=FakeClock(auto_advance=True), i2c=FakeBuses(bus)))
        with pytest.raises(DriverError) as caught:
            await driver.open()
        await driver.close()
        return caught.value, bus

    error, bus = run(scenario)
    assert not isinstance(error, FrameError)
    assert str(error) == (f"{NO_ANSWER} (NACK: sensor absent, busy, asleep or miswired)")
    assert bus.closed


def test_wrong_address_names_the_configured_address():
    async def scenario():
        driver, _, _ = rig(address=0x45)  # the chip sits at 0x44
        with pytest.raises(DriverError, match="I2C bus 1 address 0x45"):
            await driver.open()

    run(scenario)


def test_bad_status_crc_fails_open_as_a_driver_error():
    class BadStatus(TimedChip):
        def read(self, length: int) -> bytes:
            data = self.chip.read(length)
            return data[:2] + bytes([data[2] ^ 0xFF])

    async def scenario():
        driver, chip, bus = rig()
        bus.chips[0x44] = BadStatus(chip)
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return caught.value, bus

    error, bus = run(scenario)
    assert type(error) is DriverError and bus.closed
    assert str(error).startswith("I2C bus 1 address 0x44: bad status register answer: "
                                 "CRC mismatch")


def test_chip_disappearing_and_coming_back():
    async def scenario():
        driver, chip, bus = rig()
        await driver.open()
        assert await driver.read()
        chip.go_absent()
        with pytest.raises(DriverError, match=NO_ANSWER) as gone:
            await driver.read()
        await driver.close()
        with pytest.raises(DriverError, match=NO_ANSWER):
            await driver.open()  # still unplugged
        chip.come_back()
        log_before = len(bus.log)
        await driver.open()
        readings = await driver.read()
        await driver.close()
        return gone.value, readings, bus.log[log_before:]

    gone, readings, log = run(scenario)
    assert not isinstance(gone, FrameError)
    assert values(readings).keys() == {"temperature", "relativeHumidity"}
    assert [data for _, _, data in log][:3] == [SOFT_RESET, READ_STATUS, STATUS_AFTER_RESET]


def test_read_before_open_and_close_twice():
    async def scenario():
        driver, _, bus = rig()
        await driver.close()  # before open
        with pytest.raises(DriverError, match="SHT3x on I2C bus 1 address 0x44 is not open"):
            await driver.read()
        await driver.open()
        await driver.close()
        await driver.close()
        assert bus.closed
        with pytest.raises(DriverError, match="not open"):
            await driver.read()

    run(scenario)


def test_conformance_hook_gives_a_working_unopened_driver():
    async def scenario():
        async with conformance_driver(FakeClock(auto_advance=True)) as driver:
            with pytest.raises(DriverError, match="not open"):
                await driver.read()
            await driver.open()
            batches = [values(await driver.read()) for _ in range(3)]
            await driver.close()
            return batches

    batches = run(scenario)
    assert all(-10 <= b["temperature"] <= 40 and 5 <= b["relativeHumidity"] <= 95
               for b in batches)
    assert len({b["temperature"] for b in batches}) > 1  # the random walk moves
