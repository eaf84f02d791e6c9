"""SHT4x: worked examples, byte-exact commands, timing, faults, and the driver on a fake bus."""

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
from edgeagent.drivers.sht4x import (
    MEASURE_SECONDS,
    READ_SERIAL_SECONDS,
    SOFT_RESET_SECONDS,
    Sht4x,
    Sht4xConfig,
    decode_measurement,
    relative_humidity,
    temperature_celsius,
)
from edgeagent.drivers.sim import sht4x as sim
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sht4x import Sht4xChip, conformance_driver, raw_humidity, raw_temperature

WORKED = bytes.fromhex("66 66 93 80 00 A2")  # sensors.md §3.2 ✔: 25.00 °C, 56.50 %RH
SERIAL = words_with_crc(0x1234, 0xABCD)  # the model's default serial number 0x1234ABCD
LSB_T, LSB_RH = 175 / 65535, 125 / 65535
NO_ANSWER = "no answer from I2C bus 1 address 0x44"


def run(scenario: Callable, timeout: float = 5.0):
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


def rig(clock: FakeClock | None = None, *, chip_address: int = 0x44, **overrides):
    """A driver on bus 1 with one simulated SHT4x; auto-advancing fake time by default."""
    clock = clock or FakeClock(auto_advance=True)
    chip = Sht4xChip(clock, address=chip_address, seed=4)
    bus = FakeI2cBus(1, {chip_address: chip})
    config = Sht4xConfig(**{**Sht4x.sample_config, **overrides})
    return Sht4x(config, DriverContext(clock=clock, i2c=FakeBuses(bus))), chip, bus


class TimedChip:
    """Passes transfers to a chip model and notes the fake time of each."""

    def __init__(self, chip: Sht4xChip) -> None:
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


# --- worked examples and conversion formulas -------------------------------------------------

def test_worked_example_decodes_to_the_documented_values():
    decoded = decode_measurement(WORKED)
    assert decoded["temperature"] == 25.0  # 0x6666 = 26214 = 0.4 × 65535 exactly
    assert decoded["relativeHumidity"] == pytest.approx(56.50, abs=0.005)  # SHT3x: 50.00


@pytest.mark.parametrize(("word", "celsius"), [(0, -45.0), (0x6666, 25.0), (0xFFFF, 130.0)])
def test_temperature_at_the_range_ends(word, celsius):
    assert temperature_celsius(word) == celsius


@pytest.mark.parametrize(("word", "percent"), [
    (0, 0.0),  # formula: −6 %RH, clipped
    (3145, 0.0),  # formula: −0.0013 %RH, clipped
    (3146, 0.00061036),  # the first word above 0 %RH
    (55573, 99.99870298),  # the last word below 100 %RH
    (55574, 100.0),  # formula: 100.0006 %RH, clipped
    (0xFFFF, 100.0),  # formula: 119 %RH, clipped
])
def test_humidity_is_clipped_to_0_100(word, percent):
    assert relative_humidity(word) == pytest.approx(percent, abs=1e-7)


def test_inverse_formulas_give_the_worked_example_words():
    assert raw_temperature(25.0) == 0x6666 and raw_humidity(56.5) == 0x8000
    assert raw_temperature(-100.0) == 0 and raw_temperature(200.0) == 0xFFFF
    assert raw_humidity(-10.0) == 0 and raw_humidity(150.0) == 0xFFFF


@pytest.mark.parametrize("celsius", [-40.0, -0.01, 0.0, 21.37, 59.99, 125.0])
@pytest.mark.parametrize("percent", [0.0, 0.5, 33.3, 99.5, 100.0])
def test_encode_then_decode_is_within_half_a_step(celsius, percent):
    decoded = decode_measurement(words_with_crc(raw_temperature(celsius), raw_humidity(percent)))
    assert abs(decoded["temperature"] - celsius) <= LSB_T / 2
    assert abs(decoded["relativeHumidity"] - percent) <= LSB_RH / 2


@pytest.mark.parametrize("raw", [WORKED[:5], WORKED + b"\x00", b""])
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
                       "relativeHumidity": min(100, max(0, -6 + 125 * humidity_word / 65535))}


# --- chip model ------------------------------------------------------------------------------

def test_model_nacks_while_converting_and_after_the_answer_was_read():
    clock = FakeClock()
    chip = Sht4xChip(clock)
    chip.set_values(25.0, 56.5)
    chip.write(b"\xfd")
    with pytest.raises(OSError) as early:
        chip.read(6)
    assert early.value.errno == errno.EREMOTEIO
    with pytest.raises(OSError):
        chip.write(b"\xfd")  # busy: not even the address is acknowledged
    clock.advance(0.0083)
    assert chip.read(6) == WORKED
    with pytest.raises(OSError):
        chip.read(6)


@pytest.mark.parametrize(("command", "seconds"), [
    (b"\xfd", 0.0083), (b"\xf6", 0.0045), (b"\xe0", 0.0016),
    (b"\x39", 1.0083), (b"\x32", 0.1083), (b"\x2f", 1.0083), (b"\x24", 0.1083),
    (b"\x1e", 1.0083), (b"\x15", 0.1083)])
def test_model_conversion_times(command, seconds):
    clock = FakeClock()
    chip = Sht4xChip(clock)
    chip.write(command)
    clock.advance(seconds - 1e-4)
    with pytest.raises(OSError):
        chip.read(6)
    clock.advance(1e-4)
    assert len(chip.read(6)) == 6


def test_model_serial_number_soft_reset_and_unknown_commands():
    clock = FakeClock()
    chip = Sht4xChip(clock, serial_number=0xCAFE0001)
    chip.write(b"\x89")
    clock.advance(0.001)
    assert chip.read(6) == words_with_crc(0xCAFE, 0x0001)
    chip.write(b"\xfd")
    clock.advance(0.01)
    chip.write(b"\x94")  # reset drops the pending measurement
    with pytest.raises(OSError):
        chip.write(b"\x89")  # still resetting
    clock.advance(0.001)
    with pytest.raises(OSError):
        chip.read(6)
    for bad in (b"\x00", b"\xfd\x00", b""):
        with pytest.raises(OSError):
            chip.write(bad)


def test_model_faults_and_fixed_words():
    clock = FakeClock()
    chip = Sht4xChip(clock)
    chip.raw_words = (0x6666, 0x8000)
    chip.corrupt_next_crc(1)
    chip.write(b"\xfd")
    clock.advance(0.01)
    assert chip.read(6) == WORKED[:5] + bytes([WORKED[5] ^ 0x01])
    chip.write(b"\xfd")
    clock.advance(0.01)
    chip.go_absent()
    for transfer in (lambda: chip.read(6), lambda: chip.write(b"\x89")):
        with pytest.raises(OSError):
            transfer()
    chip.come_back()  # powered again: the measurement before the outage is gone
    with pytest.raises(OSError):
        chip.read(6)
    chip.write(b"\xfd")
    clock.advance(0.01)
    assert chip.read(6) == WORKED


def test_model_random_walk_is_seeded_slow_and_plausible():
    def walk(seed: int) -> list[dict[str, float]]:
        clock, out = FakeClock(), []
        chip = Sht4xChip(clock, seed=seed)
        for _ in range(500):
            chip.write(b"\xfd")
            clock.advance(0.01)
            out.append(decode_measurement(chip.read(6)))
        return out

    first = walk(7)
    assert first == walk(7) and first != walk(8)
    assert all(-10 <= v["temperature"] <= 40 and 5 <= v["relativeHumidity"] <= 95 for v in first)
    assert all(abs(a["temperature"] - b["temperature"]) < 0.2 for a, b in pairwise(first))
    assert len({v["temperature"] for v in first}) > 100


# --- config, streams -------------------------------------------------------------------------

def test_sample_config_defaults_and_yaml_hex_addresses():
    config = Sht4xConfig.model_validate(Sht4x.sample_config)
    assert (config.bus, config.address, config.precision, config.heater) == (1, 0x44, "high",
                                                                              "off")
    entry = yaml.safe_load("id: climate\ndriver: sht4x\naddress: 0x45\n")
    assert entry["address"] == 69 and Sht4xConfig.model_validate(entry).address == 0x45
    assert Sht4xConfig(**{**Sht4x.sample_config, "address": "0x45"}).address == 0x45
    bare_off = yaml.safe_load("id: climate\ndriver: sht4x\nheater: off\n")
    assert bare_off["heater"] is False and Sht4xConfig.model_validate(bare_off).heater == "off"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("address", 0x46, r"must be 0x44 or 0x45 \(got 0x46\)"),
    ("precision", "ultra", "'high', 'medium' or 'low'"),
    ("heater", "on", "'off'"),
    ("bus", -1, "greater than or equal to 0"),
    ("repeatability", "high", "Extra inputs are not permitted")])
def test_bad_options_are_named(key, value, message):
    with pytest.raises(ValidationError, match=message):
        Sht4xConfig(**{**Sht4x.sample_config, key: value})


def test_streams_and_describe():
    config = Sht4xConfig(**Sht4x.sample_config)
    specs = Sht4x.streams(config)
    assert [(s.name, s.unit) for s in specs] == [("temperature", "Cel"),
                                                 ("relativeHumidity", "%RH")]
    assert {(s.quantity, s.kind) for s in specs} == {(QuantityClass.CLIMATE, StatKind.LINEAR)}
    assert all(s.description for s in specs)
    described = Sht4x(config, DriverContext(clock=FakeClock())).describe()
    assert described["model"] == "Sensirion SHT4x" and described["address"] == "0x44"


# --- driver on the fake bus ------------------------------------------------------------------

@pytest.mark.parametrize(("precision", "command"), [("high", 0xFD), ("medium", 0xF6),
                                                    ("low", 0xE0)])
def test_open_and_read_are_byte_exact(precision, command):
    async def scenario():
        driver, chip, bus = rig(precision=precision)
        chip.set_values(25.0, 56.5)
        await driver.open()
        readings = await driver.read()
        await driver.close()
        return driver, readings, bus

    driver, readings, bus = run(scenario)
    assert bus.log == [("write", 0x44, b"\x94"), ("write", 0x44, b"\x89"), ("read", 0x44, SERIAL),
                       ("write", 0x44, bytes([command])), ("read", 0x44, WORKED)]
    assert driver.serial_number == 0x1234ABCD and bus.closed
    assert values(readings) == {"temperature": 25.0,
                                "relativeHumidity": pytest.approx(56.5, abs=0.005)}


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
    measure_sent = next(t for t, kind, data in events if data == b"\xfd")
    assert {r.t_monotonic for r in readings} == {measure_sent}


@pytest.mark.parametrize("precision", ["high", "medium", "low"])
def test_driver_waits_the_datasheet_maximum_before_reading(precision):
    assert MEASURE_SECONDS[precision] >= sim.MEASURE_SECONDS[precision]

    async def scenario():
        driver, chip, bus = rig(precision=precision)
        timed = bus.chips[0x44] = TimedChip(chip)
        await driver.open()
        assert await driver.read()
        await driver.close()
        return timed.events

    events = run(scenario)
    (t_write, _, _), (t_read, _, _) = events[-2:]
    assert t_read - t_write == pytest.approx(MEASURE_SECONDS[precision])
    reset_at, serial_at, serial_read_at = (t for t, _, _ in events[:3])
    assert serial_at - reset_at == pytest.approx(SOFT_RESET_SECONDS)
    assert SOFT_RESET_SECONDS >= sim.SOFT_RESET_SECONDS
    assert serial_read_at - serial_at == pytest.approx(READ_SERIAL_SECONDS)
    assert READ_SERIAL_SECONDS >= sim.READ_SERIAL_SECONDS


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
    assert sum(data == b"\xfd" for kind, _, data in bus.log if kind == "write") == 4


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
        clock.advance(0.98)  # 10 ms of the interval went on the first conversion
        await asyncio.sleep(0.01)
        assert len(bus.log) == measured and clock.sleepers == 1, "measured too early"
        clock.advance(0.01)
        await until(lambda: len(bus.log) == measured + 1 and clock.sleepers == 1)
        assert bus.log[-1] == ("write", 0x44, b"\xfd")  # now converting: the read waits
        clock.advance(MEASURE_SECONDS["high"])
        assert await reading
        await driver.close()

    run(scenario)


@pytest.mark.parametrize("word", [0, 1])
def test_crc_error_is_a_frame_error_and_the_next_read_is_fine(word):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, chip, _ = rig(clock)
        chip.set_values(25.0, 56.5)
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
    assert readings[0].t_monotonic >= failed_at + 0.99  # still paced: no busy loop on errors


def test_chip_absent_at_open_names_bus_and_address_and_releases_the_bus():
    async def scenario():
        bus = FakeI2cBus(1, {})
        driver = Sht4x(Sht4xConfig(**Sht4x.sample_config),
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


def test_bad_serial_number_crc_fails_open_as_a_driver_error():
    class BadSerial(TimedChip):
        def read(self, length: int) -> bytes:
            data = self.chip.read(length)
            return data[:2] + bytes([data[2] ^ 0xFF]) + data[3:]

    async def scenario():
        driver, chip, bus = rig()
        bus.chips[0x44] = BadSerial(chip)
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return caught.value, bus

    error, bus = run(scenario)
    assert type(error) is DriverError and bus.closed
    assert str(error).startswith("I2C bus 1 address 0x44: bad serial number answer: CRC mismatch")


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
    assert [data for _, _, data in log][:2] == [b"\x94", b"\x89"]  # reset and serial again


def test_read_before_open_and_close_twice():
    async def scenario():
        driver, _, bus = rig()
        await driver.close()  # before open
        with pytest.raises(DriverError, match="SHT4x on I2C bus 1 address 0x44 is not open"):
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
