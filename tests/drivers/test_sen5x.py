"""SEN5x on I2C: byte-exact commands, CRC per word, unknown markers, chip model, driver on a fake
bus (every variant), golden cases and a hypothesis fuzz of the decoders (10 000 examples)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, ParticulateConfig
from edgeagent.drivers.sen5x import (
    ADDRESS,
    CMD_DATA_READY,
    CMD_FAN_CLEANING,
    CMD_PRODUCT_NAME,
    CMD_READ_VALUES,
    CMD_RESET,
    CMD_SERIAL,
    CMD_START,
    CMD_START_WITHOUT_PM,
    CMD_STOP,
    VARIANT_STREAMS,
    Sen5x,
    Sen5xConfig,
    decode_data_ready,
    decode_text,
    decode_values,
    temperature_offset_command,
    variant_of,
)
from edgeagent.drivers.sensirion import words_with_crc
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sen5x import EXAMPLE_VALUES, Sen5xChip, text_words
from golden import load_case

CASES = Path(__file__).parent / "cases" / "sen5x"
# sensors.md §2.4, worked example: the 03 C4 answer for EXAMPLE_VALUES
WORKED = bytes.fromhex("00 34 80 00 5E E0 00 7E 66 00 85 0E 11 D7 88 12 52 2A 03 E8 D4 00 0A 5A")
NAMES = VARIANT_STREAMS["SEN55"]
PM = VARIANT_STREAMS["SEN50"]


# --- byte-exact protocol (sensors.md §1.1, §2.4) ---------------------------------------------

def test_command_codes_are_byte_exact():
    assert [c.hex(" ") for c in (CMD_START, CMD_STOP, CMD_DATA_READY, CMD_READ_VALUES,
                                 CMD_PRODUCT_NAME, CMD_SERIAL, CMD_RESET)] == [
        "00 21", "01 04", "02 02", "03 c4", "d0 14", "d0 33", "d3 04"]
    # offset −1.5 °C = −300 = FE D4; slope 0 and time constant 0 s, each word with its CRC
    assert temperature_offset_command(-1.5) == bytes.fromhex("60 B2 FE D4 34 00 00 81 00 00 81")
    assert temperature_offset_command(2.0)[2:5] == words_with_crc(400)


@pytest.mark.parametrize(("word", "wire"), [
    (0x7FFF, "7F FF 8F"), (0xFFFF, "FF FF AC"), (0xFC18, "FC 18 D7"), (0x0000, "00 00 81"),
    (0x0001, "00 01 B0")])
def test_word_crc_vectors(word, wire):
    assert words_with_crc(word) == bytes.fromhex(wire)


def test_worked_example_decodes_to_its_values():
    assert decode_values(WORKED) == EXAMPLE_VALUES
    assert list(decode_values(WORKED)) == list(NAMES)  # wire order


@pytest.mark.parametrize("index", range(8))
def test_an_unknown_word_gives_no_value_for_that_stream_only(index):
    words = [int.from_bytes(WORKED[i:i + 2], "big") for i in range(0, 24, 3)]
    words[index] = 0xFFFF if index < 4 else 0x7FFF
    got = decode_values(words_with_crc(*words))
    assert set(got) == set(NAMES) - {NAMES[index]}
    assert all(got[name] == EXAMPLE_VALUES[name] for name in got)


def test_the_other_marker_is_a_number():
    words = [0x7FFF, 0, 0, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]
    with pytest.raises(FrameError, match=r"implausible value pm1 = 3276\.7"):
        decode_values(words_with_crc(*words))
    got = decode_values(words_with_crc(0, 0, 0, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF))
    assert got == {"pm1": 0.0, "pm25": 0.0, "pm4": 0.0, "pm10": 0.0, "relativeHumidity": -0.01,
                   "temperature": -0.005, "vocIndex": -0.1, "noxIndex": -0.1}


def test_bad_crc_and_length_are_frame_errors():
    bad = bytearray(WORKED)
    bad[17] ^= 0x01
    with pytest.raises(FrameError, match="word 5"):
        decode_values(bytes(bad))
    with pytest.raises(FrameError, match="24"):
        decode_values(WORKED[:21])


def test_data_ready_and_text_answers():
    assert decode_data_ready(bytes.fromhex("00 01 B0")) is True
    assert decode_data_ready(bytes.fromhex("00 00 81")) is False
    with pytest.raises(FrameError):
        decode_data_ready(bytes.fromhex("00 01 B1"))
    with pytest.raises(FrameError, match="3 bytes"):
        decode_data_ready(bytes.fromhex("00 01 B0 00 00 81"))
    assert decode_text(text_words("SEN55")) == "SEN55"
    assert len(text_words("SEN55")) == 48
    assert [variant_of(name) for name in ("SEN50", "SEN54", "sen55 ", "SEN44", "SPS30", "")] == [
        "SEN50", "SEN54", "SEN55", None, None, None]


# --- chip model ------------------------------------------------------------------------------

def started_chip(clock: FakeClock, variant: str = "SEN55") -> Sen5xChip:
    chip = Sen5xChip(clock, variant)
    chip.write(CMD_START)
    clock.advance(0.05)
    return chip


def ask(chip: Sen5xChip, clock: FakeClock, command: bytes, length: int) -> bytes:
    chip.write(command)
    clock.advance(0.02)
    return chip.read(length)


def test_chip_data_ready_follows_the_clock_and_clears_on_read():
    clock = FakeClock()
    chip = started_chip(clock)
    assert ask(chip, clock, CMD_DATA_READY, 3) == bytes.fromhex("00 00 81")
    assert ask(chip, clock, CMD_READ_VALUES, 24) == words_with_crc(0xFFFF, 0xFFFF, 0xFFFF,
                                                                   0xFFFF, 0x7FFF, 0x7FFF,
                                                                   0x7FFF, 0x7FFF)
    clock.advance(1.0)
    chip.write(CMD_DATA_READY)
    clock.advance(0.02)
    assert chip.read(3) == bytes.fromhex("00 01 B0")
    assert chip.read(3) == bytes.fromhex("00 01 B0")  # pointer kept: re-read without a write
    assert ask(chip, clock, CMD_READ_VALUES, 24) == WORKED
    assert ask(chip, clock, CMD_DATA_READY, 3) == bytes.fromhex("00 00 81")  # cleared by the read
    assert ask(chip, clock, CMD_READ_VALUES, 24) == WORKED  # always the latest values


def test_chip_nacks_like_the_sensor():
    clock = FakeClock()
    chip = Sen5xChip(clock)
    with pytest.raises(OSError):
        chip.write(CMD_READ_VALUES)  # no measured values in Idle
    with pytest.raises(OSError):
        chip.write(CMD_FAN_CLEANING)
    assert ask(chip, clock, CMD_DATA_READY, 3) == bytes.fromhex("00 00 81")  # Idle: not ready
    chip.write(CMD_PRODUCT_NAME)
    with pytest.raises(OSError):
        chip.read(48)  # before the command's execution time
    with pytest.raises(OSError):
        chip.write(b"\xab\xcd")  # unknown command
    with pytest.raises(OSError):
        chip.write(b"\x60\xb2" + bytes.fromhex("FE D4 35 00 00 81 00 00 81"))  # bad argument CRC
    chip.write(CMD_RESET)
    clock.advance(0.05)
    with pytest.raises(OSError):
        chip.write(CMD_SERIAL)  # still resetting
    clock.advance(0.05)
    assert decode_text(ask(chip, clock, CMD_SERIAL, 48)) == chip.serial
    chip.power_on()
    clock.advance(0.9)
    with pytest.raises(OSError):
        chip.write(CMD_SERIAL)  # ~1 s after power-up
    clock.advance(0.1)
    chip.write(CMD_SERIAL)
    chip.go_absent()
    with pytest.raises(OSError):
        chip.read(48)


@pytest.mark.parametrize(("variant", "known"), [
    ("SEN50", set(PM)), ("SEN54", set(VARIANT_STREAMS["SEN54"])), ("SEN55", set(NAMES))])
def test_chip_variants_name_themselves_and_send_unknown_for_what_they_lack(variant, known):
    clock = FakeClock()
    chip = started_chip(clock, variant)
    assert decode_text(ask(chip, clock, CMD_PRODUCT_NAME, 48)) == variant
    clock.advance(1.0)
    assert set(decode_values(ask(chip, clock, CMD_READ_VALUES, 24))) == known
    assert set(chip.reported_values()) == known


def test_chip_nox_is_unknown_for_ten_seconds_after_reset_and_pm_without_pm_measurement():
    clock = FakeClock()
    chip = Sen5xChip(clock)
    chip.write(CMD_RESET)
    clock.advance(0.1)
    chip.write(CMD_START)
    clock.advance(1.0)
    assert "noxIndex" not in decode_values(ask(chip, clock, CMD_READ_VALUES, 24))
    clock.advance(9.0)
    assert decode_values(ask(chip, clock, CMD_READ_VALUES, 24)) == EXAMPLE_VALUES
    chip.write(CMD_START_WITHOUT_PM)
    clock.advance(0.05)
    assert ask(chip, clock, CMD_DATA_READY, 3) == bytes.fromhex("00 00 81")  # flag cleared
    assert set(decode_values(ask(chip, clock, CMD_READ_VALUES, 24))) == set(NAMES) - set(PM)
    chip.set_values(temperature=None)
    assert "temperature" not in chip.reported_values()


def test_chip_fan_cleaning_freezes_the_values_for_ten_seconds():
    clock = FakeClock()
    chip = started_chip(clock)
    clock.advance(1.0)
    ask(chip, clock, CMD_READ_VALUES, 24)
    chip.write(CMD_FAN_CLEANING)
    for _ in range(9):
        clock.advance(1.0)
        assert ask(chip, clock, CMD_DATA_READY, 3) == bytes.fromhex("00 00 81")
    clock.advance(2.0)
    assert ask(chip, clock, CMD_DATA_READY, 3) == bytes.fromhex("00 01 B0")


# --- driver ----------------------------------------------------------------------------------

def make(chip: Sen5xChip | None, clock: FakeClock, **options) -> tuple[Sen5x, FakeI2cBus]:
    bus = FakeI2cBus(1, {ADDRESS: chip} if chip else {})
    config = Sen5xConfig(id="air", driver="sen5x", **{"warmup": 0, **options})
    return Sen5x(config, DriverContext(clock=clock, i2c=FakeBuses(bus))), bus


def writes(bus: FakeI2cBus) -> list[bytes]:
    return [data for kind, _, data in bus.log if kind == "write"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 5))


@pytest.mark.parametrize("configured", ["auto", "same"])
@pytest.mark.parametrize("variant", ["SEN50", "SEN54", "SEN55"])
def test_open_sequence_and_reads_for_every_variant(variant, configured):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sen5xChip(clock, variant, serial="SN7")
        driver, bus = make(chip, clock, variant=variant if configured == "same" else "auto",
                           interval=0.5)
        started = clock.monotonic()
        await driver.open()
        opened_after = clock.monotonic() - started
        sequence = writes(bus)
        got = [await driver.read() for _ in range(24)]  # 12 s at 2 polls per second
        await driver.close()
        await driver.close()
        return driver, chip, bus, sequence, opened_after, got

    driver, chip, bus, sequence, opened_after, got = run(scenario())
    assert sequence == [CMD_PRODUCT_NAME, CMD_SERIAL, CMD_RESET, CMD_START]
    assert opened_after == pytest.approx(0.05 + 0.05 + 0.2 + 0.05)  # the official drivers' waits
    assert (driver.product_name, driver.serial_number) == (variant, "SN7")
    assert [g is not None for g in got] == [True, False] * 12  # 1 Hz data, 2 Hz polls
    declared = {s.name for s in Sen5x.streams(driver.config)}
    assert declared == set(NAMES if configured == "auto" else VARIANT_STREAMS[variant])
    samples = [{r.stream: r.value for r in g} for g in got if g]
    assert all(len({r.t_monotonic for r in g}) == 1 for g in got if g)
    expected = {name: EXAMPLE_VALUES[name] for name in VARIANT_STREAMS[variant]}
    if variant == "SEN55":  # NOx is unknown for the first 10 s after the reset at open
        assert samples[0] == {k: v for k, v in expected.items() if k != "noxIndex"}
    assert samples[-1] == expected
    assert chip.state == "idle" and writes(bus)[-1] == CMD_STOP and bus.closed


@pytest.mark.parametrize("configured", ["auto", "SEN54"])
def test_a_stream_the_product_lacks_is_never_emitted_even_with_a_number_in_its_word(configured):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sen5xChip(clock, "SEN55", product_name="SEN54")  # names itself SEN54, sends NOx
        chip.raw_words = tuple(int.from_bytes(WORKED[i:i + 2], "big") for i in range(0, 24, 3))
        driver, _ = make(chip, clock, variant=configured)
        await driver.open()
        got = await driver.read()
        await driver.close()
        return got

    assert {r.stream for r in run(scenario())} == set(VARIANT_STREAMS["SEN54"])


def test_product_name_mismatch_is_a_clear_error_and_nothing_is_reset():
    async def scenario(product: str, variant: str):
        clock = FakeClock(auto_advance=True)
        driver, bus = make(Sen5xChip(clock, "SEN55", product_name=product), clock,
                           variant=variant)
        with pytest.raises(DriverError) as caught:
            await driver.open()
        assert bus.closed and CMD_RESET not in writes(bus)
        assert caught.value.retryable is False
        return str(caught.value)

    message = run(scenario("SEN54", "SEN55"))
    assert "is a SEN54" in message and "variant: SEN55" in message and "0x69" in message
    assert "not a SEN50, SEN54 or SEN55" in run(scenario("SPS30", "auto"))


def test_bad_identification_answer_is_a_driver_error():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sen5xChip(clock)
        chip.read = lambda length: bytes(length)  # all zero: CRC 00 is wrong for 00 00
        driver, bus = make(chip, clock)
        with pytest.raises(DriverError, match=r"bad identification answer.*CRC"):
            await driver.open()
        assert bus.closed

    run(scenario())


def test_crc_error_is_a_frame_error_then_the_next_read_succeeds():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sen5xChip(clock)
        driver, _ = make(chip, clock)
        await driver.open()
        chip.corrupt_next_crc(5)
        with pytest.raises(FrameError, match="word 5"):
            await driver.read()
        after = await driver.read()
        await driver.close()
        return after

    assert {r.stream for r in run(scenario())} == set(NAMES) - {"noxIndex"}


def test_absent_and_disappearing_sensor_nack_is_a_driver_error():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, bus = make(None, clock)
        with pytest.raises(DriverError, match=r"0x69.*NACK"):
            await driver.open()
        assert bus.closed and writes(bus) == [CMD_PRODUCT_NAME] * 2  # tried again after 1 s
        chip = Sen5xChip(clock)
        driver, bus = make(chip, clock)
        await driver.open()
        chip.go_absent()
        with pytest.raises(DriverError, match="NACK"):
            await driver.read()
        await driver.close()  # best effort: the Stop is NACKed, the bus is released anyway
        assert bus.closed
        with pytest.raises(DriverError, match="not open"):
            await driver.read()

    run(scenario())


def test_sensor_just_powered_up_or_still_stopping_is_opened_on_the_second_try():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sen5xChip(clock)
        chip.come_back()  # NACKs for its first second
        driver, bus = make(chip, clock)
        started = clock.monotonic()
        await driver.open()
        assert clock.monotonic() - started >= 1.0
        assert writes(bus)[:2] == [CMD_PRODUCT_NAME, CMD_PRODUCT_NAME]
        assert await driver.read()
        await driver.close()  # the chip is busy stopping for 160 ms …
        again, _ = make(chip, clock)
        await again.open()  # … and the next open retries its first command
        assert await again.read()
        await again.close()

    run(scenario())


def test_unknown_values_are_omitted_and_an_all_unknown_sample_is_none():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = Sen5xChip(clock)
        driver, _ = make(chip, clock)
        await driver.open()
        chip.set_values(pm10=None, temperature=None)
        partial = await driver.read()
        chip.set_values(**dict.fromkeys(NAMES))
        nothing = await driver.read()
        await driver.close()
        return partial, nothing

    partial, nothing = run(scenario())
    assert {r.stream for r in partial} == set(NAMES) - {"pm10", "temperature", "noxIndex"}
    assert nothing is None


def test_temperature_offset_is_written_after_the_reset():
    async def scenario(variant: str):
        clock = FakeClock(auto_advance=True)
        chip = Sen5xChip(clock, variant)
        driver, bus = make(chip, clock, temperature_offset=-1.5)
        await driver.open()
        got = await driver.read()
        await driver.close()
        return writes(bus), got

    sequence, got = run(scenario("SEN54"))
    assert sequence[2:5] == [CMD_RESET, temperature_offset_command(-1.5), CMD_START]
    assert {r.stream: r.value for r in got}["temperature"] == pytest.approx(23.45 - 1.5)
    with pytest.raises(DriverError, match="SEN50, which measures no temperature"):
        run(scenario("SEN50"))


def test_driver_leaves_warmup_to_the_supervisor():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver, _ = make(Sen5xChip(clock), clock, warmup=30)
        await driver.open()
        first = await driver.read()
        await driver.close()
        return driver.config, first

    config, first = run(scenario())
    assert isinstance(config, ParticulateConfig) and config.warmup == 30.0
    assert first  # valid at once: the supervisor discards and counts the warm-up readings


def test_config():
    config = Sen5xConfig.model_validate(Sen5x.sample_config)
    assert (config.bus, config.address, config.variant, config.warmup,
            config.temperature_offset) == (1, 0x69, "auto", 30.0, None)
    assert [s.name for s in Sen5x.streams(config)] == list(NAMES)
    specs = {s.name: s for s in Sen5x.streams(config)}
    assert (specs["pm25"].unit, specs["pm25"].quantity.value) == ("ug/m3", "particulate")
    assert (specs["temperature"].unit, specs["relativeHumidity"].unit) == ("Cel", "%RH")
    assert (specs["vocIndex"].unit, specs["noxIndex"].quantity.value) == ("1", "climate")
    assert Sen5x(config, None).describe()["address"] == "0x69"  # type: ignore[arg-type]


def test_recovery_duty_cycle_and_humidity_link_see_an_i2c_pm_sensor():
    from edgeagent.config import ConfigError, validate_config

    config = Sen5xConfig.model_validate(Sen5x.sample_config)
    assert Sen5x.transport == "i2c"  # the recovery ladder may reset its bus
    assert Sen5x.sleeps_when_closed(config)  # close = Stop: fan and laser off
    base = {"gateway": {"id": "gw"},
            "mqtt": {"host": "127.0.0.1", "port": 1883, "tls": {"enabled": False}}}
    own = {"id": "air", "driver": "sen5x", "humidity": {"correction": "kappa-koehler"}}
    validate_config({**base, "sensors": [{**own, "variant": "SEN55"}]})  # its own RH
    with pytest.raises(ConfigError, match="measures no humidity"):
        validate_config({**base, "sensors": [{**own, "variant": "SEN50"}]})


# --- golden cases ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_case(case: str):
    loaded = load_case(CASES / case, Sen5xConfig)
    if loaded is None:
        return  # a config error case, checked by load_case
    config, wire, (expected,) = loaded
    if "error" in expected:
        with pytest.raises(FrameError, match=expected["error"]):
            decode_values(wire)
        return
    streams = {s.name for s in Sen5x.streams(config)}
    got = {k: round(v, 4) for k, v in decode_values(wire).items() if k in streams}
    assert got == expected


# --- fuzz (hypothesis, 10 000 examples) ------------------------------------------------------

def reference_crc(pair: bytes) -> int:
    """Bitwise CRC-8 (0x31, init 0xFF), independent of the driver's table."""
    crc = 0xFF
    for byte in pair:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def all_crcs_valid(raw: bytes) -> bool:
    return len(raw) % 3 == 0 and all(reference_crc(raw[i:i + 2]) == raw[i + 2]
                                     for i in range(0, len(raw), 3))


def reference_decode(raw: bytes) -> dict[str, float] | None:
    """The datasheet table written out again; None where the driver must reject the answer."""
    out = {}
    for index, name in enumerate(NAMES):
        word = int.from_bytes(raw[3 * index:3 * index + 2], "big")
        if index < 4:
            if word == 0xFFFF:
                continue
            if word > 20000:  # > 2000 µg/m³
                return None
            out[name] = word / 10
        elif word != 0x7FFF:
            signed = word - 0x10000 if word >= 0x8000 else word
            out[name] = signed / (100 if index == 4 else 200 if index == 5 else 10)
    return out


KINDS = ("frame", "flipped", "garbage", "truncated", "extended")


def build(kind: str, seed: int) -> bytes:
    rng = random.Random(seed)
    bits = rng.getrandbits
    words = []
    for index in range(8):
        pick = bits(2)  # 0: unknown marker, 1: any 16 bits, 2–3: in range
        if index < 4:
            words.append(0xFFFF if pick == 0 else bits(16) if pick == 1 else min(bits(15), 20000))
        else:
            words.append(0x7FFF if pick == 0 else bits(16))
    frame = words_with_crc(*words)
    if kind == "frame":
        return frame
    if kind == "flipped":  # one bit anywhere: CRC-8 catches every single-bit error
        bit = rng.randrange(len(frame) * 8)
        flipped = bytearray(frame)
        flipped[bit // 8] ^= 1 << (bit % 8)
        return bytes(flipped)
    if kind == "garbage":
        return rng.randbytes(24 if bits(1) else rng.randrange(40))
    if kind == "truncated":
        return frame[:rng.randrange(len(frame))]
    return frame + rng.randbytes(rng.randrange(1, 7))


@settings(max_examples=10_000, deadline=None)
@given(st.sampled_from(KINDS), st.integers(0, 2**32))
def test_decoder_yields_only_values_from_intact_words_and_raises_only_frame_error(kind, seed):
    raw = build(kind, seed)
    try:
        got = decode_values(raw)
    except FrameError:
        got = None
    if got is not None:  # a value only ever comes from 24 bytes whose every CRC matches
        assert len(raw) == 24 and all_crcs_valid(raw)
    if kind in ("flipped", "truncated", "extended"):
        assert got is None
    if len(raw) == 24 and all_crcs_valid(raw):
        assert got == reference_decode(raw)


@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=7))
def test_data_ready_decoder_raises_only_frame_error(raw):
    try:
        ready = decode_data_ready(raw)
    except FrameError:
        return
    assert len(raw) == 3 and all_crcs_valid(raw) and ready == bool(raw[1])
