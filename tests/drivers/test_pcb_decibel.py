"""PCB Artists decibel meter: chip model, history alignment, driver on a fake bus, golden cases.

Golden cases (cases/pcb_decibel/<case>/) are driver sessions against scripted module replies:
``wire.hex`` holds the bytes the module sends, in the order the driver reads them;
``expected.jsonl`` is the whole bus transcript and what ``read()`` returned, one object per
line: ``{"write": "07 00 7D"}`` (a write transaction), ``{"write": "14", "read": 100}`` (a
register read: write the address, repeated start, read n bytes from wire.hex), ``{"reading":
"laeq", "value": 60.0, "t": 1.625}`` (t in s after open began), ``{"none": true}`` and
``{"error": "substring"}`` (a DriverError or FrameError). The session ends where the script
has no bytes left for the next read.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.pcb_decibel import (
    HISTORY_LENGTH,
    PcbDecibel,
    PcbDecibelConfig,
    level_db,
    mismatches_allowed,
    new_entries,
    tolerance,
)
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.pcb_decibel import (
    DEFAULT_LEVELS,
    PcbDecibelChip,
    conformance_driver,
    fake_bus,
    to_register,
)
from golden import case_names, load_case, matches

CASES = Path(__file__).parent / "cases" / "pcb_decibel"
START = 1000.0  # FakeClock's monotonic start
ADDRESS = 0x48
TAVG = {"fast": 0.125, "slow": 1.0}


def run(scenario: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 10.0) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


def config(**overrides: Any) -> PcbDecibelConfig:
    return PcbDecibelConfig(**{**PcbDecibel.sample_config, **overrides})


def rig(clock: FakeClock | None = None, chip: PcbDecibelChip | None = None, **overrides: Any
        ) -> tuple[PcbDecibel, PcbDecibelChip, FakeI2cBus, FakeClock]:
    clock = clock or FakeClock(start_mono=START, auto_advance=True)
    chip = chip or PcbDecibelChip(clock)
    bus = fake_bus(chip)
    driver = PcbDecibel(config(**overrides), DriverContext(clock=clock, i2c=FakeBuses(bus)))
    return driver, chip, bus, clock


def register(chip: PcbDecibelChip, reg: int, n: int = 1) -> bytes:
    chip.write(bytes([reg]))
    return chip.read(n)


def stepped(levels: list[int], tavg: float, origin: float = START) -> Callable[[float, str], float]:
    """A scene that plays ``levels`` (cycled) one per Tavg tick, the same for every weighting."""
    return lambda t, _w: levels[round((t - origin) / tavg) % len(levels)]


async def collect(driver: PcbDecibel, polls: int) -> list[tuple[float, float]]:
    """Read until ``polls`` history polls have been handed out completely."""
    out: list[tuple[float, float]] = []
    done = 0
    while done < polls:
        readings = await driver.read()
        if readings:
            out.extend((r.t_monotonic, r.value) for r in readings)
        if not driver._pending:  # the poll's levels are all out
            done += 1
    return out


def produced_after(chip: PcbDecibelChip, t0: float, t1: float) -> list[tuple[float, float]]:
    return [(t, float(v)) for t, v in chip.produced if t0 < t <= t1 + 1e-9]


def same_levels(got: list[tuple[float, float]], produced: list[tuple[float, float]],
                tavg: float) -> bool:
    """The same levels in the same order, each stamped at most one Tavg after its tick."""
    return len(got) == len(produced) and all(
        value == level and -1e-9 <= t - tick < tavg
        for (t, value), (tick, level) in zip(got, produced, strict=True))


# --- chip model: the reference table's transactions, byte for byte ---------------------------

def test_model_power_up_defaults():
    chip = PcbDecibelChip(FakeClock(start_mono=START))
    assert register(chip, 0x00, 16) == bytes.fromhex(
        "31 5A 17 C0 DE AA 02 03 E8 00 00 00 00 2D 55 12")  # VERSION … GAIN (45, 85, 18)
    assert register(chip, 0x14, HISTORY_LENGTH) == bytes(HISTORY_LENGTH)
    assert (chip.weighting, chip.tavg_ms, chip.powered_down) == ("A", 1000, False)


def test_model_read_level_0a_gives_3c_for_60_db():
    clock = FakeClock(start_mono=START)
    chip = PcbDecibelChip(clock)
    chip.set_level(60.0)
    clock.advance(0.999)
    assert register(chip, 0x0A) == b"\x00"  # no valid level in the first second
    clock.advance(0.001)
    assert register(chip, 0x0A) == b"\x3c"  # the vendor's i2cget example: 0x3C = 60 dB
    assert register(chip, 0x14) == b"\x3c"


@pytest.mark.parametrize(("level", "byte"), [(59.49, 59), (59.5, 60), (60.4, 60), (-3.0, 0),
                                             (300.0, 255)])
def test_model_reports_whole_db(level, byte):
    assert to_register(level) == byte


@pytest.mark.parametrize("writes", [["07 00 7D"], ["07 00", "08 7D"]], ids=["one", "two"])
def test_model_fast_averaging(writes):
    clock = FakeClock(start_mono=START)
    chip = PcbDecibelChip(clock)
    chip.write(bytes.fromhex(writes[0]))
    if len(writes) == 2:
        assert chip.tavg_ms == 1000  # TAVG_HIGH alone changes nothing: TAVG_LOW applies both
        chip.write(bytes.fromhex(writes[1]))
    assert chip.tavg_ms == 125
    assert register(chip, 0x07, 2) == b"\x00\x7d"
    clock.advance(2.0)
    assert [round(t - START, 3) for t, _ in chip.produced[-3:]] == [1.75, 1.875, 2.0]


@pytest.mark.parametrize(("write", "weighting"), [("06 04", "C"), ("06 00", "Z"), ("06 02", "A")])
def test_model_weighting_takes_effect_after_one_tavg(write, weighting):
    clock = FakeClock(start_mono=START)
    chip = PcbDecibelChip(clock)
    clock.advance(2.0)
    chip.write(bytes.fromhex("06 02" if weighting != "A" else "06 04"))  # start elsewhere
    clock.advance(1.0)
    assert chip.weighting != weighting
    chip.write(bytes.fromhex(write))
    assert register(chip, 0x06) == bytes.fromhex(write)[1:]
    clock.advance(0.999)
    assert chip.weighting != weighting and chip.produced[-1][1] != DEFAULT_LEVELS[weighting]
    clock.advance(0.001)
    assert chip.weighting == weighting
    assert chip.produced[-1][1] == DEFAULT_LEVELS[weighting]


def test_model_history_shifts_one_entry_per_tavg_and_drops_the_oldest():
    clock = FakeClock(start_mono=START)
    chip = PcbDecibelChip(clock, valid_after=0.0,
                          schedule=lambda t, _w: 35 + round(t - START) % 80)
    clock.advance(130.0)
    history = register(chip, 0x14, HISTORY_LENGTH)
    assert history[0] == 35 + 130 % 80 and history[99] == 35 + 31 % 80  # _0 newest, 100 kept
    assert list(history) == [35 + k % 80 for k in range(130, 30, -1)]
    chip.write(b"\x09\x04")  # clear history
    assert register(chip, 0x14, HISTORY_LENGTH) == bytes(HISTORY_LENGTH)
    assert register(chip, 0x09) == b"\x00"  # write-only, self-clearing


def test_model_min_max_and_clear_min_max_09_02():
    clock = FakeClock(start_mono=START)
    levels = [50, 70, 40, 60]
    chip = PcbDecibelChip(clock, valid_after=0.0, schedule=stepped(levels, 1.0))
    assert register(chip, 0x0B, 2) == b"\x00\x00"  # undefined before the first level: 0 here
    clock.advance(4.0)
    assert register(chip, 0x0A, 3) == bytes([50, 40, 70])  # DECIBEL, MIN, MAX
    chip.write(b"\x09\x02")
    assert register(chip, 0x0B, 2) == b"\x00\x00"
    clock.advance(1.0)
    assert register(chip, 0x0A, 3) == bytes([70, 70, 70])
    assert register(chip, 0x14) == bytes([70])  # the history was not touched by 09 02


def test_model_power_down_until_a_system_reset_09_08():
    clock = FakeClock(start_mono=START)
    chip = PcbDecibelChip(clock)
    chip.write(b"\x07\x00\x7d")
    clock.advance(3.0)
    chip.write(b"\x06\x01")  # power down (A-weighting bits cleared: Z pending, never ticks)
    frozen = register(chip, 0x14, HISTORY_LENGTH)
    ticks = len(chip.produced)
    clock.advance(5.0)
    chip.write(b"\x06\x00")  # writing 0 to bit 0 does nothing
    assert chip.powered_down and register(chip, 0x06) == b"\x01"
    assert register(chip, 0x14, HISTORY_LENGTH) == frozen and len(chip.produced) == ticks
    chip.write(b"\x05\x55")
    chip.write(b"\x09\x08")  # system reset: the only way out
    assert not chip.powered_down and chip.system_resets == 1
    assert register(chip, 0x05, 4) == bytes.fromhex("AA 02 03 E8")  # defaults again
    clock.advance(1.0)
    assert register(chip, 0x0A) == bytes([55])  # a level again, after the first second


def test_model_write_auto_increments_and_read_only_registers_ignore_writes():
    clock = FakeClock(start_mono=START)
    chip = PcbDecibelChip(clock)
    chip.write(bytes.fromhex("0D 28 5A 20"))  # THR_MIN 40, THR_MAX 90, GAIN 32 in one write
    assert register(chip, 0x0D, 3) == bytes([40, 90, 32])
    chip.write(bytes.fromhex("00 99 99 99 99 99"))  # VERSION and ID are read-only
    chip.write(bytes.fromhex("0A 99 99 99"))  # so are DECIBEL, MIN, MAX
    assert register(chip, 0x00, 5) == bytes.fromhex("31 5A 17 C0 DE")
    assert register(chip, 0x0A, 3) == b"\x00\x00\x00"
    chip.write(b"\x0a")
    assert chip.read(1) + chip.read(1) == b"\x00\x00"  # the pointer moves on after a read
    chip.write(b"")  # an address-only probe is acknowledged


def test_model_absent_and_faults():
    clock = FakeClock(start_mono=START)
    chip = PcbDecibelChip(clock)
    chip.go_absent()
    with pytest.raises(OSError) as caught:
        chip.write(b"\x00")
    assert caught.value.errno == 121  # EREMOTEIO, as Linux reports a NACK
    chip.come_back()
    chip.stuck_high = 0x80
    assert register(chip, 0x05) == b"\xaa" and register(chip, 0x00) == b"\xb1"
    chip.stuck_high = 0
    chip.corrupt_next_read(1)
    assert register(chip, 0x00, 3) == bytes.fromhex("31 A5 17")


# --- history alignment and level decoding ----------------------------------------------------

def test_new_entries_examples():
    old = bytes([60] * 8 + [0] * 92)
    new = bytes([61, 62] + [60] * 8 + [0] * 90)
    assert new_entries(old, new, 2.0) == 2
    assert new_entries(old, new, 2.9) == 2  # exact beats a 1-byte-off fit nearer the clock
    assert new_entries(old, old, 0.2) == 0
    assert new_entries(old, bytes([70] * 100), 8.0) is None  # nothing lines up
    one_bit = bytearray(new)
    one_bit[30] ^= 0x04
    assert new_entries(old, bytes(one_bit), 2.0) == 2  # one differing byte is a bit error
    one_bit[31] ^= 0x04
    assert new_entries(old, bytes(one_bit), 2.0) is None  # two are not
    short = bytes([1] * 90 + [2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert new_entries(short, bytes([0] * 85) + short[:15], 85.0) == 85
    assert new_entries(short, bytes([0] * 85) + short[:14] + b"\x00", 85.0) is None  # < 20
    assert new_entries(old, bytes([70] * 100), 99.0) == HISTORY_LENGTH  # overrun: all new
    steady = bytes([55] * 100)
    assert new_entries(steady, steady, 8.0) == 8  # ambiguous content: the clock decides
    assert new_entries(steady, steady, 7.5) == 7  # ties go to the smaller count
    assert new_entries(steady, steady, 11.0) == 11
    with pytest.raises(ValueError, match="99 and 100"):
        new_entries(old[:99], new, 2.0)


def test_new_entries_does_not_accept_an_alignment_far_from_the_clock():
    old = bytes([60] * 50 + [50] * 50)
    new = bytes([70] * 30 + [60] * 50 + [50] * 20)
    assert new_entries(old, new, 30.0) == 30
    assert tolerance(8.0) == pytest.approx(2.4)
    assert new_entries(old, new, 8.0) is None  # 30 new levels cannot have come in 1 s


def test_level_db_range():
    assert level_db(0x3C) == 60.0 and level_db(35) == 35.0 and level_db(120) == 120.0
    for raw, message in ((0, "level 0 dB"), (34, "implausible level 34 dB"),
                         (121, "implausible level 121 dB"), (255, "255 dB")):
        with pytest.raises(FrameError, match=message):
            level_db(raw)


LEVELS = bytes([0, 55, 56, 60])  # few values: steady and periodic scenes, the hard cases


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None)
@given(pattern=st.binary(min_size=1, max_size=6), phase=st.integers(0, 5),
       shift=st.integers(0, HISTORY_LENGTH - 1), jitter_tenths=st.integers(-30, 30),
       flip=st.integers(-1, HISTORY_LENGTH - 1))
def test_new_entries_property(pattern, phase, shift, jitter_tenths, flip):
    # two snapshots of one level sequence, newest first, taken ``shift`` ticks apart
    levels = [LEVELS[b % len(LEVELS)] for b in pattern]
    timeline = bytes(levels[(i + phase) % len(levels)] for i in range(HISTORY_LENGTH + shift))
    previous, current = timeline[shift:shift + HISTORY_LENGTH], timeline[:HISTORY_LENGTH]
    if flip >= 0:  # one bit error in the new read
        current = current[:flip] + bytes([current[flip] ^ 0x01]) + current[flip + 1:]
    expected = max(0.0, shift + jitter_tenths / 10)
    got = new_entries(previous, current, expected)
    if got is not None and got < HISTORY_LENGTH:  # whatever it answers is a real alignment
        overlap = HISTORY_LENGTH - got
        differing = sum(a != b for a, b in zip(current[got:], previous[:overlap], strict=True))
        assert differing <= mismatches_allowed(overlap)
        assert abs(got - expected) <= tolerance(expected)
    elif got == HISTORY_LENGTH:
        assert expected + tolerance(expected) >= HISTORY_LENGTH
    if abs(jitter_tenths) < 5 and flip < 0:
        assert got == shift  # exact timing: always the true count
    if abs(jitter_tenths) < 5 and 0 <= flip < shift - tolerance(expected):
        assert got == shift  # a bit error in a new level does not move the alignment


@settings(max_examples=2_000, deadline=None, derandomize=True, database=None)
@given(previous=st.binary(min_size=HISTORY_LENGTH, max_size=HISTORY_LENGTH),
       current=st.binary(min_size=HISTORY_LENGTH, max_size=HISTORY_LENGTH),
       expected_tenths=st.integers(0, 1500))
def test_new_entries_never_fails_on_arbitrary_bytes(previous, current, expected_tenths):
    got = new_entries(previous, current, expected_tenths / 10)
    assert got is None or 0 <= got <= HISTORY_LENGTH


# --- driver: config, streams, open ----------------------------------------------------------

def test_config_defaults_and_validation():
    cfg = config()
    assert (cfg.bus, cfg.address, cfg.weighting, cfg.averaging, cfg.interval) == (
        1, 0x48, "A", "fast", 1.0)
    assert config(averaging="slow", interval="50s").interval == 50.0
    assert config(interval="500ms").interval == 0.5
    for bad in ({"address": 0x49}, {"weighting": "B"}, {"averaging": "impulse"},
                {"interval": "100ms"}, {"interval": "7s"}, {"averaging": "slow", "interval": "51s"},
                {"averaging": "slow", "interval": "0.5s"}, {"bus": -1}, {"no_such": 1}):
        with pytest.raises(ValidationError):
            config(**bad)


@pytest.mark.parametrize(("weighting", "name"), [("A", "laeq"), ("C", "lceq"), ("Z", "lzeq")])
@pytest.mark.parametrize("averaging", ["fast", "slow"])
def test_streams_and_sample_interval(weighting, name, averaging):
    cfg = config(weighting=weighting, averaging=averaging)
    [spec] = PcbDecibel.streams(cfg)
    assert (spec.name, spec.unit, spec.quantity, spec.kind, spec.statistics) == (
        name, "dB", QuantityClass.NOISE, StatKind.LEVEL, None)
    tavg = "125 ms (fast)" if averaging == "fast" else "1 s (slow)"
    assert f"{weighting}-weighted sound level averaged by the module over {tavg}, integer dB" \
        in spec.description
    assert PcbDecibel.sample_interval(cfg) == TAVG[averaging]


@pytest.mark.parametrize(("weighting", "control"), [("A", 0x02), ("C", 0x04), ("Z", 0x00)])
@pytest.mark.parametrize(("averaging", "tavg"), [("fast", "00 7D"), ("slow", "03 E8")])
def test_open_is_byte_exact(weighting, control, averaging, tavg):
    async def scenario():
        driver, chip, bus, clock = rig(weighting=weighting, averaging=averaging)
        cleared_at = []
        write = chip.write

        def spy(data: bytes) -> None:
            if data[:1] == b"\x09":
                cleared_at.append(clock.monotonic())
            write(data)

        chip.write = spy  # type: ignore[method-assign]
        await driver.open()
        return bus.log, chip, cleared_at, driver

    log, chip, cleared_at, driver = run(scenario)
    wire = [(op, data.hex(" ").upper()) for op, address, data in log if address == ADDRESS]
    assert wire == [
        ("write", "00"), ("read", "31 5A 17 C0 DE"),
        ("write", "05 AA"), ("write", "05"), ("read", "AA"),
        ("write", "05 55"), ("write", "05"), ("read", "55"),
        ("write", "06"), ("read", "02 03 E8"),
        ("write", f"07 {tavg}"), ("write", f"06 {control:02X}"),
        ("write", "05"), ("read", f"55 {control:02X} {tavg}"),
        ("write", "09 06"),
        ("write", "14"), ("read", " ".join(["00"] * HISTORY_LENGTH))]
    # 1.5 × the longer Tavg in force (the module came up with 1000 ms) before the clear
    assert cleared_at == [pytest.approx(START + 1.5)]
    assert (chip.weighting, chip.tavg_ms, chip.powered_down) == (
        weighting, int(TAVG[averaging] * 1000), False)
    assert driver.describe()["version"] == "0x31"


def test_reopen_settles_for_the_new_tavg_only():
    async def scenario():
        driver, _, _, clock = rig()
        await driver.open()
        await driver.close()
        before = clock.monotonic()
        await driver.open()
        return clock.monotonic() - before

    assert run(scenario) == pytest.approx(0.1875)  # 1.5 × 125 ms: the module was at fast


def test_describe_before_and_after_open():
    described = PcbDecibel(config(), None).describe()  # type: ignore[arg-type]
    assert described["model"] == "PCB Artists I2C decibel sound level meter"
    assert {k: described[k] for k in ("bus", "address", "weighting", "averaging", "tavg_ms",
                                      "version", "unique_id")} == {
        "bus": 1, "address": "0x48", "weighting": "A", "averaging": "fast", "tavg_ms": 125,
        "version": None, "unique_id": None}

    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        driver, _, _, _ = rig(clock, PcbDecibelChip(clock, version=0x32, unique_id=0xCAFE),
                              averaging="slow")
        await driver.open()
        return driver.describe()

    described = run(scenario)
    assert (described["version"], described["unique_id"], described["tavg_ms"]) == (
        "0x32", "0x0000CAFE", 1000)
    assert "spectrum" in described["variant"]


def test_unknown_version_is_logged_not_refused(caplog):
    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        driver, _, _, _ = rig(clock, PcbDecibelChip(clock, version=0x41))
        await driver.open()
        return await driver.read()

    assert run(scenario)[0].value == 55.0
    assert "unknown decibel meter VERSION 0x41" in caplog.text


# --- driver: readings ------------------------------------------------------------------------

@pytest.mark.parametrize("weighting", ["A", "C", "Z"])
@pytest.mark.parametrize("averaging", ["fast", "slow"])
def test_every_weighting_and_averaging_delivers_each_level_once(weighting, averaging):
    tavg = TAVG[averaging]

    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock, schedule=lambda t, w: DEFAULT_LEVELS[w] + round(
            (t - START) / tavg) % 7)
        driver, _, _, _ = rig(clock, chip, weighting=weighting, averaging=averaging)
        await driver.open()
        opened = clock.monotonic()
        got = await collect(driver, 5)
        return got, produced_after(chip, opened, clock.monotonic())

    got, produced = run(scenario)
    assert len(got) == 5 * round(1.0 / tavg)
    assert same_levels(got, produced, tavg)  # nothing lost or repeated
    assert all(v - DEFAULT_LEVELS[weighting] in range(7) for _, v in got)  # this weighting's scene
    assert [b - a for (a, _), (b, _) in itertools.pairwise(got)] == pytest.approx(
        [tavg] * (len(got) - 1))


@pytest.mark.parametrize(("averaging", "interval", "steady"), [
    ("fast", 1.0, False), ("fast", 1.0, True), ("fast", 3.0, False), ("fast", 6.25, True),
    ("slow", 10.0, False), ("slow", 50.0, True)])
def test_no_level_lost_or_repeated_across_polls(averaging, interval, steady):
    tavg = TAVG[averaging]
    rng = random.Random(7)
    levels = [55] * 10 if steady else [rng.randint(40, 90) for _ in range(997)]

    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock, schedule=stepped(levels, tavg))
        driver, _, _, _ = rig(clock, chip, averaging=averaging, interval=interval)
        await driver.open()
        opened = clock.monotonic()
        got = await collect(driver, 12)
        return got, produced_after(chip, opened, clock.monotonic())

    got, produced = run(scenario, timeout=30)
    assert len(got) == 12 * round(interval / tavg)
    assert same_levels(got, produced, tavg)


def test_late_and_irregular_polls_lose_nothing():
    rng = random.Random(3)
    levels = [rng.randint(40, 90) for _ in range(1009)]

    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock, schedule=stepped(levels, 0.125))
        driver, _, _, _ = rig(clock, chip)
        await driver.open()
        opened = clock.monotonic()
        got = []
        for _ in range(40):  # the agent is busy now and then: polls up to 9 s apart
            clock.advance(rng.choice([0.0, 0.0, 0.06, 0.3, 2.0, 8.0]))
            got += await collect(driver, 1)
        return got, produced_after(chip, opened, clock.monotonic())

    got, produced = run(scenario, timeout=30)
    assert same_levels(got, produced, 0.125)


def test_a_poll_later_than_the_history_loses_levels_but_never_repeats(caplog):
    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock, schedule=stepped(list(range(40, 90)), 0.125))
        driver, _, _, _ = rig(clock, chip)
        await driver.open()
        await collect(driver, 1)
        clock.advance(20.0)  # the agent stalls: 160 levels, 60 of them gone from the queue
        got = await collect(driver, 1)
        return got, chip

    got, chip = run(scenario)
    assert len(got) == HISTORY_LENGTH
    assert same_levels(got, produced_after(chip, got[0][0] - 0.125, got[-1][0]), 0.125)
    assert "about 60 levels lost" in caplog.text


def test_timestamps_are_monotonic_and_one_instant_per_reading():
    async def scenario():
        driver, _, _, _ = rig()
        await driver.open()
        batches = [await driver.read() for _ in range(24)]
        return batches

    batches = run(scenario)
    assert all(len(b) == 1 for b in batches)
    times = [b[0].t_monotonic for b in batches]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_polls_are_paced_once_per_interval():
    async def scenario():
        driver, _, bus, clock = rig(interval=2.0)
        await driver.open()
        bus.log.clear()
        polls = []
        write = bus.write

        def spy(address: int, data: bytes) -> None:
            if data == b"\x14":
                polls.append(clock.monotonic())
            write(address, data)

        bus.write = spy  # type: ignore[method-assign]
        await collect(driver, 3)
        return polls

    # the first poll one interval after the clear at 1.5 s (1.5 × the module's 1000 ms)
    assert run(scenario) == pytest.approx([START + 3.5, START + 5.5, START + 7.5])


def test_zeros_before_the_first_level_are_skipped_not_errors():
    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock, valid_after=2.6)  # a module slower than "about 1 s"
        chip.set_level(60.0)
        driver, _, _, _ = rig(clock, chip)
        await driver.open()
        results = [await driver.read() for _ in range(12)]
        return results, chip

    results, chip = run(scenario)
    assert results[0] is None  # poll 1 (2.5 s after open): 8 zeros, skipped
    assert [v for t, v in chip.produced if START + 1.5 < t <= START + 2.5] == [0] * 8
    levels = [r[0] for r in results[1:]]
    assert levels[0].t_monotonic == pytest.approx(START + 2.625)  # the first valid tick
    assert {r.value for r in levels} == {60.0} and len(levels) == 11


def test_a_zero_after_levels_and_out_of_range_levels_are_frame_errors():
    levels = [60, 0, 20, 121, 120, 35, 60, 60]

    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock, schedule=stepped(levels, 0.125, origin=START + 1.625))
        driver, _, _, _ = rig(clock, chip)
        await driver.open()
        outcomes: list[Any] = []
        for _ in range(16):
            try:
                outcomes.append((await driver.read())[0].value)
            except FrameError as exc:
                outcomes.append(str(exc).split(":")[0].split(" (")[0])
        return outcomes

    assert run(scenario) == [60.0, "level 0 dB", "implausible level 20 dB",
                             "implausible level 121 dB", 120.0, 35.0, 60.0, 60.0] * 2


class GlitchyHistory(PcbDecibelChip):
    """A module on a long cable: the next history reads get these bytes flipped, one set each."""

    def __init__(self, clock: FakeClock, **options: Any) -> None:
        super().__init__(clock, **options)
        self.flips: list[tuple[int, ...]] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        if data == bytes([0x14]) and self.flips:
            self.corrupt_next_read(*self.flips.pop(0))


@pytest.mark.parametrize(("flips", "re_reads", "errors"), [
    ([(40,)], 0, []),  # one bad byte in the overlap: tolerated, and by the next poll too
    ([(40, 41)], 1, []),  # two: the re-read lines up
    ([(40, 41), (50, 51)], 2, []),  # the second re-read lines up
    ([(40, 41), (50, 51), (60, 61)], 2, ["never twice alike"]),  # the next poll recovers
    ([(3,)], 0, ["implausible level"]),  # a new level garbled: one frame error, one lost
], ids=["one-byte", "two-bytes", "twice", "three-times", "new-level"])
def test_glitches_on_the_bus(flips, re_reads, errors):
    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = GlitchyHistory(clock, schedule=stepped([50, 60, 70], 0.125))
        driver, _, bus, _ = rig(clock, chip)
        await driver.open()
        opened = clock.monotonic()
        got = await collect(driver, 2)
        chip.flips = list(flips)
        raised = []
        while clock.monotonic() < opened + 5.0 or driver._pending:  # five polls in all
            try:
                readings = await driver.read()
            except FrameError as exc:
                raised.append(str(exc))
                continue
            got += [(r.t_monotonic, r.value) for r in readings or []]
        history_reads = sum(1 for op, _, data in bus.log if op == "write" and data == b"\x14")
        return got, produced_after(chip, opened, clock.monotonic()), raised, history_reads

    got, produced, raised, history_reads = run(scenario)
    assert len(raised) == len(errors) and all(
        want in have for have, want in zip(raised, errors, strict=True))
    assert history_reads == 1 + 5 + re_reads  # open, five polls (a failed one's levels come later)
    if errors == ["implausible level"]:
        assert raised[0].startswith("implausible level 205 dB")  # 50 ^ 0xFF
        del produced[16 + 4]  # DBHISTORY_3 of the third poll
    assert same_levels(got, produced, 0.125)


def test_a_history_cleared_behind_the_drivers_back_is_one_frame_error_then_resync():
    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock, schedule=stepped([50, 60, 70, 80, 45], 0.125))
        driver, _, _, _ = rig(clock, chip)
        await driver.open()
        await collect(driver, 1)
        chip.write(b"\x09\x04")  # another program clears the history
        with pytest.raises(FrameError, match="does not continue the previous poll"):
            await driver.read()
        resumed = clock.monotonic()
        got = await collect(driver, 2)
        return got, produced_after(chip, resumed, clock.monotonic())

    got, produced = run(scenario)
    assert same_levels(got, produced, 0.125) and len(got) == 16


def test_scratch_test_failure_names_bus_and_address():
    async def scenario():
        driver, chip, bus, _ = rig()
        chip.stuck_high = 0x80
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return caught.value, bus

    error, bus = run(scenario)
    assert not isinstance(error, FrameError)
    assert str(error).startswith("bus test failed at I2C bus 1 address 0x48: wrote 0x55 to "
                                 "SCRATCH (0x05), read back D5")
    assert "ADS1115" in str(error)
    assert bus.closed


class WrongScratch(PcbDecibelChip):
    """Something at 0x48 that does not keep what is written to 0x05."""

    def _register(self, register: int) -> int:
        value = super()._register(register)
        return value ^ 0x10 if register == 0x05 else value


def test_scratch_reading_back_the_wrong_byte_fails_with_the_byte():
    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        driver, _, bus, _ = rig(clock, WrongScratch(clock))
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return str(caught.value), bus

    message, bus = run(scenario)
    assert "wrote 0xAA to SCRATCH (0x05), read back BA" in message
    assert [data for op, _, data in bus.log if op == "write"] == [b"\x00", b"\x05\xaa", b"\x05"]


@pytest.mark.parametrize("configured_bus", [1, 2])
def test_nack_at_open_is_a_driver_error_naming_bus_and_address(configured_bus):
    async def scenario():
        clock = FakeClock(start_mono=START, auto_advance=True)
        chip = PcbDecibelChip(clock)
        chip.go_absent()
        buses = FakeBuses(fake_bus(chip, 1), FakeI2cBus(2))
        driver = PcbDecibel(config(bus=configured_bus), DriverContext(clock=clock, i2c=buses))
        with pytest.raises(DriverError) as caught:
            await driver.open()
        with pytest.raises(DriverError, match="not open"):
            await driver.read()
        return caught.value

    error = run(scenario)
    assert not isinstance(error, FrameError)
    assert f"I2C bus {configured_bus} address 0x48" in str(error) and "NACK" in str(error)


def test_module_gone_during_measurement_then_back():
    async def scenario():
        driver, chip, _, _ = rig()
        await driver.open()
        first = await driver.read()
        await collect(driver, 1)
        chip.go_absent()
        with pytest.raises(DriverError) as caught:
            await driver.read()
        await driver.close()
        chip.come_back()
        await driver.open()
        again = await collect(driver, 1)
        await driver.close()
        return first, caught.value, again

    first, error, again = run(scenario)
    assert not isinstance(error, FrameError) and "I2C bus 1 address 0x48" in str(error)
    assert first[0].value == 55.0 and {v for _, v in again} == {55.0}


def test_a_brown_out_is_noticed_by_the_scratch_marker_even_with_default_settings():
    async def scenario():
        driver, chip, _, _ = rig(averaging="slow")  # A + 1000 ms = the module's defaults
        await driver.open()
        await collect(driver, 2)
        chip.power_cycle()
        with pytest.raises(DriverError) as caught:
            await driver.read()
        await driver.close()
        await driver.open()
        return caught.value, await collect(driver, 2)

    error, again = run(scenario)
    assert not isinstance(error, FrameError)
    assert "SCRATCH 0xAA, CONTROL 0x02, TAVG 1000 ms" in str(error)
    assert "the module reset itself" in str(error) and [v for _, v in again] == [55.0, 55.0]


def test_a_powered_down_module_is_woken_at_open():
    async def scenario():
        driver, chip, bus, _ = rig()
        chip.write(b"\x06\x03")  # someone powered it down
        await driver.open()
        writes = [data for op, _, data in bus.log if op == "write" and len(data) > 1]
        return chip, writes, await collect(driver, 1)

    chip, writes, got = run(scenario)
    assert writes[:4] == [b"\x05\xaa", b"\x05\x55", b"\x09\x08", b"\x05\x55"]
    assert chip.system_resets == 1 and not chip.powered_down
    assert [v for _, v in got] == [55.0] * 8


def test_close_leaves_the_module_measuring_and_is_idempotent():
    async def scenario():
        driver, chip, bus, clock = rig()
        with pytest.raises(DriverError, match="I2C bus 1 address 0x48 is not open"):
            await driver.read()
        await driver.close()  # before open
        await driver.open()
        await driver.read()
        writes = len([e for e in bus.log if e[0] == "write"])
        await driver.close()
        await driver.close()
        clock.advance(2.0)
        return chip, bus, writes, len([e for e in bus.log if e[0] == "write"])

    chip, bus, writes_before, writes_after = run(scenario)
    assert bus.closed and writes_after == writes_before  # close writes nothing
    assert not chip.powered_down and chip.history[0] == 55


def test_conformance_hook():
    async def scenario():
        async with conformance_driver(FakeClock(auto_advance=True)) as driver:
            await driver.open()
            readings = await driver.read()
            await driver.close()
            return readings

    [reading] = run(scenario)
    assert (reading.stream, reading.value) == ("laeq", 55.0)


# --- golden cases: driver sessions against scripted module replies ---------------------------

class EndOfScript(Exception):
    """The script has no bytes left for the next read: the session is over."""


class ScriptedBus:
    """An :class:`edgeagent.i2c.I2cBus` that answers reads from ``wire`` and logs transfers."""

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self.position = 0
        self.transcript: list[dict[str, Any]] = []

    def _take(self, length: int) -> bytes:
        if self.position + length > len(self.wire):
            raise EndOfScript
        out = self.wire[self.position:self.position + length]
        self.position += length
        return out

    def write(self, address: int, data: bytes) -> None:
        assert address == ADDRESS
        self.transcript.append({"write": data.hex(" ").upper()})

    def read(self, address: int, length: int) -> bytes:
        assert address == ADDRESS
        out = self._take(length)
        self.transcript.append({"read": length})
        return out

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        assert address == ADDRESS
        out = self._take(length)
        self.transcript.append({"write": data.hex(" ").upper(), "read": length})
        return out

    def close(self) -> None:
        pass


def session(cfg: PcbDecibelConfig, wire: bytes) -> tuple[list[dict[str, Any]], ScriptedBus]:
    bus = ScriptedBus(wire)
    clock = FakeClock(start_mono=START, auto_advance=True)
    driver = PcbDecibel(cfg, DriverContext(clock=clock, i2c=lambda _number: bus))
    out = bus.transcript

    async def scenario() -> None:
        try:
            await driver.open()
        except DriverError as exc:
            out.append({"error": str(exc)})
            return
        while True:
            try:
                readings = await driver.read()
            except EndOfScript:
                break
            except FrameError as exc:
                out.append({"error": str(exc)})
                continue
            except DriverError as exc:
                out.append({"error": str(exc)})
                break
            if readings is None:
                out.append({"none": True})
            for r in readings or []:
                out.append({"reading": r.stream, "value": r.value,
                            "t": round(r.t_monotonic - START, 6)})
        await driver.close()

    run(scenario)
    return out, bus


def test_there_are_cases():
    names = set(case_names("pcb_decibel"))
    assert {"fast-a-weighting", "slow-c-weighting", "fast-z-weighting-reopen",
            "scratch-bit-stuck", "address-0x49"} <= names and len(names) >= 8


@pytest.mark.parametrize("case", case_names("pcb_decibel"), ids=str)
def test_case(case: str):
    loaded = load_case(CASES / case, PcbDecibelConfig)
    if loaded is None:
        return  # a config error case, checked by load_case
    cfg, wire, expected = loaded
    got, bus = session(cfg, wire)
    assert matches(got, expected), "\n".join(
        f"{'  ' if i < len(expected) and matches([g], [expected[i]]) else '≠ '}{g}"
        for i, g in enumerate(got))
    assert bus.position == len(bus.wire), "wire.hex has bytes the driver never read"


def test_cases_carry_the_reference_tables_transactions():
    writes = {line["write"] for name in case_names("pcb_decibel")
              if (CASES / name / "expected.jsonl").exists()
              for line in load_case(CASES / name, PcbDecibelConfig)[2]  # type: ignore[index]
              if "write" in line and "read" not in line}
    # sensors.md §4.1: fast 07 00 7D, C 06 04, Z 06 00, A 06 02, wake 09 08; 09 06 = clear
    # history (bit 2) + clear MIN/MAX (bit 1, the table's 09 02)
    assert {"07 00 7D", "07 03 E8", "06 04", "06 00", "06 02", "09 06", "09 08"} <= writes
    assert math.isclose(level_db(0x3C), 60.0)
