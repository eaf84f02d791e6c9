"""SDS011: byte-exact protocol, parser faults, simulator, the driver through a real pty, fuzzing."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.sds011 import (
    CMD_FIRMWARE,
    CMD_QUERY_DATA,
    CMD_REPORT_MODE,
    CMD_SET_ID,
    CMD_SLEEP_WORK,
    CMD_WORKING_PERIOD,
    Sds011,
    Sds011Config,
    Sds011Frame,
    Sds011Parser,
    Sds011Reply,
    frame_values,
    sds_command,
)
from edgeagent.drivers.sim.sds011 import PtySds011, Sds011Simulator, conformance_driver

# real capture, sensors.md §2.1
GOLDEN = bytes.fromhex("AA C0 06 00 06 00 58 D9 3D AB")
GOLDEN_FRAME = Sds011Frame(0.6, 0.6, 0x58D9)
# datasheet example: sleep addressed to sensor A160, and its reply
SLEEP_A160 = bytes.fromhex("AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 A1 60 08 AB")
SLEEP_A160_REPLY = bytes.fromhex("AA C5 06 01 00 00 A1 60 08 AB")


def broadcast(bytes_2_to_4: str, checksum: str) -> bytes:
    """The §2.1 broadcast form: AA B4, bytes 2–4, ten 00, FF FF, checksum, AB."""
    return bytes.fromhex(f"AA B4 {bytes_2_to_4} {'00 ' * 10} FF FF {checksum} AB")


SLEEP = broadcast("06 01 00", "05")
WAKE = broadcast("06 01 01", "06")
QUERY_SLEEP_STATE = broadcast("06 00 00", "04")
QUERY_MODE = broadcast("02 01 01", "02")
ACTIVE_MODE = broadcast("02 01 00", "01")
QUERY_DATA = broadcast("04 00 00", "02")
FIRMWARE = broadcast("07 00 00", "05")
PERIOD_5 = broadcast("08 01 05", "0C")
CONTINUOUS = broadcast("08 01 00", "07")

HIGH = Sds011Simulator.encode_frame(123.4, 567.8)
HIGH_FRAME = Sds011Frame(123.4, 567.8, 0x58D9)


def errors(items: list) -> list[str]:
    return [str(item) for item in items if isinstance(item, FrameError)]


def frames(items: list) -> list[Sds011Frame]:
    return [item for item in items if isinstance(item, Sds011Frame)]


# --- byte-exact protocol: every ✔ example of §2.1 --------------------------------------------

def test_golden_capture_decodes_to_the_documented_values():
    assert Sds011Parser().feed(GOLDEN, 0.0) == [GOLDEN_FRAME]
    assert GOLDEN_FRAME.device_id == 0x58D9


def test_simulator_encodes_the_golden_capture():
    assert Sds011Simulator.encode_frame(0.6, 0.6, 0x58D9) == GOLDEN


def test_datasheet_sleep_example_addressed_to_a160():
    assert sds_command(CMD_SLEEP_WORK, bytes([1, 0]), 0xA160) == SLEEP_A160
    assert len(SLEEP_A160) == 19
    assert Sds011Parser().feed(SLEEP_A160_REPLY, 0.0) == [
        Sds011Reply(CMD_SLEEP_WORK, b"\x01\x00\x00", 0xA160)]
    assert Sds011Simulator(device_id=0xA160).handle(SLEEP_A160) == SLEEP_A160_REPLY


def test_broadcast_sleep_in_full():
    assert sds_command(CMD_SLEEP_WORK, bytes([1, 0])) == bytes.fromhex(
        "AA B4 06 01 00 00 00 00 00 00 00 00 00 00 00 FF FF 05 AB")


@pytest.mark.parametrize(("code", "data", "wire"), [
    (CMD_SLEEP_WORK, [1, 0], SLEEP), (CMD_SLEEP_WORK, [1, 1], WAKE),
    (CMD_SLEEP_WORK, [0, 0], QUERY_SLEEP_STATE), (CMD_REPORT_MODE, [1, 1], QUERY_MODE),
    (CMD_REPORT_MODE, [1, 0], ACTIVE_MODE), (CMD_QUERY_DATA, [], QUERY_DATA),
    (CMD_FIRMWARE, [], FIRMWARE), (CMD_WORKING_PERIOD, [1, 5], PERIOD_5),
    (CMD_WORKING_PERIOD, [1, 0], CONTINUOUS)], ids=lambda v: v.hex() if isinstance(v, bytes)
    else None)
def test_broadcast_commands_are_byte_exact(code, data, wire):
    assert sds_command(code, bytes(data)) == wire


def test_set_id_puts_the_new_id_in_data12_and_data13():
    wire = sds_command(CMD_SET_ID, bytes(10) + b"\xa1\x60", 0x58D9)
    assert wire[13:15] == b"\xa1\x60" and wire[15:17] == b"\x58\xd9"
    assert wire[17] == sum(wire[2:17]) & 0xFF and len(wire) == 19


def test_command_with_too_much_data_is_refused():
    with pytest.raises(ValueError, match="12 data bytes"):
        sds_command(CMD_SET_ID, bytes(13))


@pytest.mark.parametrize(("reply", "decoded"), [
    ("AA C5 02 01 01 00 58 D9 35 AB", Sds011Reply(CMD_REPORT_MODE, b"\x01\x01\x00", 0x58D9)),
    ("AA C5 08 01 05 00 58 D9 3F AB", Sds011Reply(CMD_WORKING_PERIOD, b"\x01\x05\x00", 0x58D9)),
    ("AA C5 07 12 0B 10 58 D9 65 AB", Sds011Reply(CMD_FIRMWARE, b"\x12\x0b\x10", 0x58D9)),
    ("AA C5 05 00 00 00 A1 60 06 AB", Sds011Reply(CMD_SET_ID, b"\x00\x00\x00", 0xA160))])
def test_replies_decode(reply, decoded):
    assert Sds011Parser().feed(bytes.fromhex(reply), 0.0) == [decoded]


def test_values_are_little_endian_tenths():
    wire = bytes.fromhex("AA C0 D2 04 2E 16") + b"\x58\xd9"  # 0x04D2 = 1234, 0x162E = 5678
    wire += bytes([sum(wire[2:8]) & 0xFF, 0xAB])
    assert wire == HIGH
    assert Sds011Parser().feed(wire, 0.0) == [HIGH_FRAME]
    assert frame_values(HIGH_FRAME) == {"pm25": 123.4, "pm10": 567.8}


# --- parser faults ---------------------------------------------------------------------------

@pytest.mark.parametrize("cut", range(1, len(GOLDEN)))
def test_frame_split_at_every_position(cut):
    parser = Sds011Parser()
    assert parser.feed(GOLDEN[:cut], 0.0) == []
    assert parser.feed(GOLDEN[cut:], 0.1) == [GOLDEN_FRAME]


def test_frame_fed_byte_by_byte():
    parser = Sds011Parser()
    assert [item for byte in GOLDEN for item in parser.feed(bytes([byte]), 0.0)] == [
        GOLDEN_FRAME]


def test_back_to_back_frames_and_a_reply_between():
    out = Sds011Parser().feed(GOLDEN + SLEEP_A160_REPLY + HIGH + GOLDEN, 0.0)
    assert out == [GOLDEN_FRAME, Sds011Reply(CMD_SLEEP_WORK, b"\x01\x00\x00", 0xA160),
                   HIGH_FRAME, GOLDEN_FRAME]


def test_leading_garbage_is_skipped_silently():
    assert Sds011Parser().feed(b"\x00\xff\x13\xaa\xaa\xab\x10" + GOLDEN, 0.0) == [GOLDEN_FRAME]


def test_garbage_containing_a_header_costs_an_error_not_the_frame():
    out = Sds011Parser().feed(b"\xaa\xc0\x01\xaa\xc5" + GOLDEN, 0.0)
    assert frames(out) == [GOLDEN_FRAME]
    assert errors(out) and all("bad checksum" in e for e in errors(out))


def test_header_byte_right_before_the_frame():
    assert Sds011Parser().feed(b"\xaa" + GOLDEN, 0.0) == [GOLDEN_FRAME]


def test_bad_checksum_is_reported_and_the_next_frame_is_fine():
    parser = Sds011Parser()
    out = parser.feed(Sds011Simulator.corrupt(GOLDEN), 0.0)
    assert [str(e) for e in out] == ["bad checksum: frame says C2, bytes 2–7 sum to 3D"]
    assert parser.feed(GOLDEN, 0.1) == [GOLDEN_FRAME]


def test_bad_checksum_is_rejected_before_the_tail_arrives():
    parser = Sds011Parser()
    out = parser.feed(Sds011Simulator.corrupt(GOLDEN)[:9], 0.0)
    assert len(out) == 1 and "bad checksum" in str(out[0])
    assert parser.feed(GOLDEN, 0.0) == [GOLDEN_FRAME]


def test_bad_tail_is_reported():
    out = Sds011Parser().feed(GOLDEN[:9] + b"\x00" + GOLDEN, 0.0)
    assert errors(out) == ["bad tail 00 (expected AB)"] and out[-1] == GOLDEN_FRAME


def test_truncated_frame_followed_by_a_good_frame():
    out = Sds011Parser().feed(Sds011Simulator.partial(GOLDEN, 6) + GOLDEN, 0.0)
    assert len(errors(out)) == 1
    assert out[-1] == GOLDEN_FRAME


def test_stall_mid_frame_drops_the_partial_frame():
    clock = FakeClock()
    parser = Sds011Parser()
    assert parser.feed(GOLDEN[:5], clock.monotonic()) == []
    clock.advance(0.6)
    out = parser.feed(GOLDEN[5:], clock.monotonic())
    assert [str(e) for e in out] == [
        "partial frame dropped: 5 bytes, then more than 0.5 s of silence"]
    assert parser.feed(GOLDEN, clock.monotonic()) == [GOLDEN_FRAME]


def test_short_pause_mid_frame_is_tolerated():
    clock = FakeClock()
    parser = Sds011Parser()
    parser.feed(GOLDEN[:5], clock.monotonic())
    clock.advance(0.45)
    assert parser.feed(GOLDEN[5:], clock.monotonic()) == [GOLDEN_FRAME]


def test_stall_is_noticed_without_new_bytes():
    parser = Sds011Parser()
    parser.feed(GOLDEN[:5], 10.0)
    assert parser.feed(b"", 10.2) == []
    assert "partial frame" in str(parser.feed(b"", 10.6)[0])
    assert parser.feed(b"", 11.0) == []


def test_implausible_value_is_a_frame_error():
    bad = Sds011Simulator.encode_frame(1000.0, 1000.0)
    out = Sds011Parser().feed(bad + GOLDEN, 0.0)
    assert len(out) == 2 and str(out[0]).startswith("implausible frame: PM2.5 1000")
    assert out[1] == GOLDEN_FRAME
    assert Sds011Parser().feed(Sds011Simulator.encode_frame(999.9, 999.9), 0.0) == [
        Sds011Frame(999.9, 999.9, 0x58D9)]


def test_garbage_header_glued_to_a_frame_fails_the_range_check():
    # "AA C0 | AA C0 01 00 00 00 6B AB …": checksum and tail of the false frame are right, but
    # it reads the real head as PM2.5 = 0xC0AA, out of range, so the parser resyncs inside it
    real = bytes.fromhex("AA C0 01 00 00 00 6B AB 17 AB")
    out = Sds011Parser().feed(b"\xaa\xc0" + real, 0.0)
    assert [type(item) for item in out] == [FrameError, Sds011Frame]
    assert "implausible" in str(out[0]) and out[1] == Sds011Frame(0.1, 0.0, 0x6BAB)


def test_documented_limit_a_false_frame_overlapping_a_real_one_wins():
    # 7 garbage bytes whose sum makes the real head AA C0 a valid checksum, and a real frame
    # whose PM2.5 low byte is AB (the false tail): the parser cannot tell which one is real
    real = Sds011Simulator.encode_frame(17.1, 1.6)
    assert real[:3] == b"\xaa\xc0\xab"
    out = Sds011Parser().feed(bytes.fromhex("AA C0 16 00 00 00 00") + real, 0.0)
    assert out == [Sds011Frame(2.2, 0.0, 0x00AA)]  # the false frame; the real one is lost


# --- simulator -------------------------------------------------------------------------------

def test_simulator_sets_report_mode_and_answers_queries_only_in_query_mode():
    sim = Sds011Simulator()
    sim.set_values(123.4, 567.8)
    assert sim.mode == "active" and sim.handle(QUERY_DATA) == b""
    assert sim.handle(QUERY_MODE) == bytes.fromhex("AA C5 02 01 01 00 58 D9 35 AB")
    assert sim.mode == "query" and sim.active_frame() is None
    assert sim.handle(QUERY_DATA) == HIGH
    assert sim.handle(broadcast("02 00 00", "00")) == bytes.fromhex(
        "AA C5 02 00 01 00 58 D9 34 AB")  # query the mode: still polled
    assert sim.handle(ACTIVE_MODE) == bytes.fromhex("AA C5 02 01 00 00 58 D9 34 AB")
    assert sim.active_frame() == HIGH


def test_simulator_sleep_silences_data_and_still_answers_wake():
    sim = Sds011Simulator()
    sim.handle(QUERY_MODE)
    assert sim.handle(SLEEP) == bytes.fromhex("AA C5 06 01 00 00 58 D9 38 AB")
    assert sim.sleeping and sim.active_frame() is None
    assert sim.handle(QUERY_DATA + ACTIVE_MODE + FIRMWARE) == b""
    assert sim.mode == "query"
    assert sim.handle(QUERY_SLEEP_STATE) == bytes.fromhex("AA C5 06 00 00 00 58 D9 37 AB")
    assert sim.handle(WAKE) == bytes.fromhex("AA C5 06 01 01 00 58 D9 39 AB")
    assert not sim.sleeping and len(sim.handle(QUERY_DATA)) == 10


def test_simulator_working_period_sets_the_active_cadence():
    sim = Sds011Simulator()
    assert sim.report_interval == 1.0
    assert sim.handle(PERIOD_5) == bytes.fromhex("AA C5 08 01 05 00 58 D9 3F AB")
    assert sim.working_period == 5 and sim.report_interval == 300.0
    assert sim.handle(sds_command(CMD_WORKING_PERIOD, bytes([1, 31]))) == bytes.fromhex(
        "AA C5 08 01 05 00 58 D9 3F AB")  # out of range: unchanged
    sim.power_cycle()
    assert sim.working_period == 5  # survives power-off (drv)
    assert sim.handle(CONTINUOUS) and sim.report_interval == 1.0


def test_simulator_firmware_reply():
    sim = Sds011Simulator(firmware=(18, 11, 16))
    assert sim.handle(FIRMWARE) == Sds011Simulator.encode_reply(CMD_FIRMWARE, b"\x12\x0b\x10")


def test_simulator_set_id_and_addressing():
    sim = Sds011Simulator()
    set_id = sds_command(CMD_SET_ID, bytes(10) + b"\xa1\x60", 0x58D9)
    assert sim.handle(set_id) == bytes.fromhex("AA C5 05 00 00 00 A1 60 06 AB")
    assert sim.device_id == 0xA160
    assert Sds011Parser().feed(sim.next_frame(), 0.0)[0].device_id == 0xA160
    # addressed to the old ID or another sensor: ignored; to the new ID or broadcast: answered
    assert sim.handle(sds_command(CMD_SLEEP_WORK, bytes([1, 0]), 0x58D9)) == b""
    assert sim.handle(sds_command(CMD_SLEEP_WORK, bytes([1, 0]), 0x1234)) == b""
    assert not sim.sleeping
    assert sim.handle(SLEEP_A160) == SLEEP_A160_REPLY and sim.sleeping
    assert sim.handle(WAKE) and not sim.sleeping
    sim.power_cycle()
    assert sim.device_id == 0xA160


def test_simulator_ignores_bad_checksum_and_bad_tail_and_finds_split_commands():
    sim = Sds011Simulator()
    assert sim.handle(QUERY_MODE[:17] + b"\x00\xab") == b""
    assert sim.handle(QUERY_MODE[:18] + b"\x00") == b""
    assert sim.mode == "active"
    assert sim.handle(b"\xaa\x00\xaa" + QUERY_MODE[:5]) == b""  # stray bytes, then a split
    assert sim.handle(QUERY_MODE[5:]) == bytes.fromhex("AA C5 02 01 01 00 58 D9 35 AB")


def test_simulator_power_cycle_forgets_query_mode_and_wakes():
    sim = Sds011Simulator()
    sim.handle(QUERY_MODE + SLEEP)
    sim.power_cycle()
    assert sim.mode == "active" and not sim.sleeping and sim.active_frame() is not None


def test_simulator_sends_zeros_while_warming_up():
    sim = Sds011Simulator(warmup_frames=2)
    sim.set_values(5.0, 8.0)
    parser = Sds011Parser()
    first = [parser.feed(sim.next_frame(), 0.0)[0] for _ in range(3)]
    assert [(f.pm25, f.pm10) for f in first] == [(0.0, 0.0), (0.0, 0.0), (5.0, 8.0)]
    sim.handle(SLEEP + WAKE)
    assert parser.feed(sim.next_frame(), 0.0)[0].pm25 == 0.0


def test_random_walk_is_seeded_and_plausible():
    a, b = Sds011Simulator(seed=3), Sds011Simulator(seed=3)
    stream = b"".join(a.next_frame() for _ in range(300))
    assert stream == b"".join(b.next_frame() for _ in range(300))
    out = Sds011Parser().feed(stream, 0.0)
    assert len(frames(out)) == 300
    assert all(0 < f.pm25 <= f.pm10 <= 999.9 for f in frames(out))


def test_fault_helpers():
    corrupted = Sds011Simulator.corrupt(GOLDEN)
    assert corrupted[:8] == GOLDEN[:8] and corrupted[8] != GOLDEN[8] and corrupted[9] == 0xAB
    assert Sds011Simulator.partial(GOLDEN, 5) == GOLDEN[:5]
    assert len(Sds011Simulator.garbage(50, random.Random(1))) == 50


# --- config, streams -------------------------------------------------------------------------

def config(**overrides) -> Sds011Config:
    return Sds011Config(**{**Sds011.sample_config, **overrides})


def test_sample_config_and_defaults():
    cfg = config()
    assert (cfg.baudrate, cfg.mode, cfg.working_period, cfg.device_id, cfg.warmup,
            cfg.read_timeout) == (9600, "query", 0, None, 30.0, 5.0)
    assert cfg.target_id == 0xFFFF and cfg.accepts(0x1234)
    with pytest.raises(ValidationError, match="9600"):
        config(baudrate=115200)
    with pytest.raises(ValidationError):
        config(port=None)


@pytest.mark.parametrize(("period", "ok"), [(0, True), (1, True), (30, True), (31, False),
                                            (-1, False)])
def test_working_period_range(period, ok):
    if ok:
        assert config(mode="active", working_period=period, window="30min").working_period == (
            period)
    else:
        with pytest.raises(ValidationError, match="than or equal to"):
            config(mode="active", working_period=period, window="30min")


def test_working_period_needs_active_mode_and_a_window_as_long():
    with pytest.raises(ValidationError, match="needs mode: active"):
        config(working_period=5, window="5min")
    with pytest.raises(ValidationError, match=r"window \(4min\) must be at least the working "
                       r"period \(5min\)"):
        config(mode="active", working_period=5, window="4min")
    assert config(mode="active", working_period=1).window == 60.0


def test_device_id_is_four_hex_digits():
    cfg = config(device_id="a160")
    assert cfg.device_id == "A160" and cfg.target_id == 0xA160
    assert cfg.accepts(0xA160) and not cfg.accepts(0x58D9)
    for bad in ("A16", "A1600", "G160", "0xA1"):
        with pytest.raises(ValidationError, match="4 hex digits"):
            config(device_id=bad)
    with pytest.raises(ValidationError, match="broadcast"):
        config(device_id="ffff")
    with pytest.raises(ValidationError, match=r'in quotes, e\.g\. "1234"'):
        config(device_id=1234)


def test_streams_and_describe():
    specs = Sds011.streams(config())
    assert [(s.name, s.unit) for s in specs] == [("pm25", "ug/m3"), ("pm10", "ug/m3")]
    assert {(s.quantity, s.kind) for s in specs} == {(QuantityClass.PARTICULATE, StatKind.LINEAR)}
    assert all(s.description for s in specs)
    described = Sds011(config(), DriverContext(clock=FakeClock())).describe()
    assert described["model"] == "Nova Fitness SDS011" and described["warmup"] == "30s"


def test_coverage_interval_follows_mode_and_working_period():
    assert Sds011.sample_interval(config(interval=2.0)) == 2.0
    assert Sds011.sample_interval(config(mode="active")) == 1.0
    assert Sds011.sample_interval(config(mode="active", interval=5.0)) == 5.0
    assert Sds011.sample_interval(config(mode="active", working_period=5, window="10min")) == 300


def test_read_timeout_allows_for_the_working_period():
    def timeout(**overrides) -> float:
        driver = Sds011(config(**overrides), DriverContext(clock=FakeClock()))
        return driver.effective_read_timeout()

    assert timeout() == 5.0 and timeout(mode="active") == 5.0
    assert timeout(mode="active", working_period=2, window="2min") == 130.0
    assert timeout(mode="active", working_period=1, read_timeout="5min") == 300.0


# --- driver through a real pty ---------------------------------------------------------------

def run(scenario: Callable, timeout: float = 5.0):
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


async def wait_until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def driver_for(pty: PtySds011, clock: FakeClock | None = None, **overrides) -> Sds011:
    cfg = config(port=pty.port, **{"warmup": 0, **overrides})
    return Sds011(cfg, DriverContext(clock=clock or FakeClock()))


def test_query_read_returns_the_simulator_values():
    async def scenario():
        async with PtySds011() as pty:
            pty.sim.set_values(123.4, 567.8)
            driver = driver_for(pty, FakeClock(start_mono=500.0))
            await driver.open()
            readings = await driver.read()
            await driver.close()
            await wait_until(lambda: pty.sim.sleeping)
            return readings, pty

    readings, pty = run(scenario)
    assert [(r.stream, r.value, r.t_monotonic) for r in readings] == [
        ("pm25", 123.4, 500.0), ("pm10", 567.8, 500.0)]
    assert bytes(pty.received) == WAKE + QUERY_MODE + CONTINUOUS + QUERY_DATA + SLEEP


def test_open_sends_wake_mode_and_period_and_close_sends_sleep():
    async def scenario():
        async with PtySds011() as pty:
            driver = driver_for(pty, mode="active", working_period=5, window="10min")
            await driver.open()
            await wait_until(lambda: len(pty.received) >= 3 * 19)
            sent_by_open = bytes(pty.received)
            await driver.close()
            await wait_until(lambda: pty.sim.sleeping)
            return sent_by_open, bytes(pty.received), pty.sim

    sent_by_open, sent, sim = run(scenario)
    assert sent_by_open == WAKE + ACTIVE_MODE + PERIOD_5
    assert sent == WAKE + ACTIVE_MODE + PERIOD_5 + SLEEP
    assert (sim.mode, sim.working_period) == ("active", 5)


def test_commands_are_addressed_to_the_configured_device_id():
    async def scenario():
        async with PtySds011(Sds011Simulator(device_id=0xA160)) as pty:
            pty.sim.set_values(1.5, 2.5)
            driver = driver_for(pty, device_id="A160")
            await driver.open()
            readings = await driver.read()
            await driver.close()
            await wait_until(lambda: pty.sim.sleeping)
            return readings, bytes(pty.received)

    readings, sent = run(scenario)
    assert [r.value for r in readings] == [1.5, 2.5]
    commands = [sent[i:i + 19] for i in range(0, len(sent), 19)]
    assert len(commands) == 5 and all(c[15:17] == b"\xa1\x60" for c in commands)
    assert commands[0] == sds_command(CMD_SLEEP_WORK, bytes([1, 1]), 0xA160)


def test_frames_and_replies_from_another_device_id_are_ignored():
    async def scenario():
        async with PtySds011(Sds011Simulator(device_id=0xA160)) as pty:
            driver = driver_for(pty, mode="active", device_id="1234", read_timeout=0.3)
            await driver.open()
            await wait_until(lambda: len(pty.received) >= 3 * 19)
            pty.emit(Sds011Simulator.encode_frame(9.9, 9.9, 0xA160)
                     + Sds011Simulator.encode_reply(CMD_REPORT_MODE, b"\x01\x00\x00", 0xA160))
            with pytest.raises(DriverError) as caught:
                await driver.read()
            await driver.close()
            return caught.value, pty.sim

    error, sim = run(scenario)
    assert not sim.sleeping  # the sensor did not hear the sleep addressed to 1234
    assert str(error).endswith("frames came only from device ID A160, not 1234)")


def test_active_mode_reads_emitted_frames_and_replies_are_consumed():
    async def scenario():
        async with PtySds011() as pty:
            driver = driver_for(pty, mode="active")
            await driver.open()
            pty.emit(GOLDEN[:4])
            pty.emit(GOLDEN[4:] + Sds011Simulator.encode_reply(CMD_REPORT_MODE, b"\x01\x00\x00")
                     + HIGH)
            first, second = await driver.read(), await driver.read()
            await driver.close()
            return first, second, bytes(pty.received)

    first, second, sent = run(scenario)
    assert [r.value for r in first] == [0.6, 0.6]
    assert [r.value for r in second] == [123.4, 567.8]
    assert QUERY_DATA not in sent


def test_active_mode_follows_the_simulated_cadence():
    async def scenario():
        clock = FakeClock(start_mono=0.0)
        async with PtySds011() as pty:
            driver = driver_for(pty, clock, mode="active")
            await driver.open()
            await wait_until(lambda: pty.sim.mode == "active" and len(pty.received) >= 57)
            streamer = asyncio.create_task(pty.run_active(clock))
            times = []
            for _ in range(3):
                times.append((await driver.read())[0].t_monotonic)
                await wait_until(lambda: clock.sleepers == 1)
                clock.advance(1.0)
            streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streamer
            await driver.close()
            return times

    assert run(scenario) == [0.0, 1.0, 2.0]


def test_bad_frame_raises_frame_error_and_the_good_one_follows():
    async def scenario():
        async with PtySds011() as pty:
            driver = driver_for(pty, mode="active")
            await driver.open()
            pty.emit(b"\x00\x13" + Sds011Simulator.corrupt(GOLDEN) + GOLDEN)
            with pytest.raises(FrameError, match="checksum"):
                await driver.read()
            good = await driver.read()
            await driver.close()
            return good

    assert [r.value for r in run(scenario)] == [0.6, 0.6]


def test_all_zero_frames_count_as_warming_up():
    async def scenario():
        async with PtySds011(Sds011Simulator(warmup_frames=2)) as pty:
            pty.sim.set_values(4.2, 6.1)
            driver = driver_for(pty, FakeClock(auto_advance=True))
            await driver.open()
            results = [await driver.read() for _ in range(3)]
            await driver.close()
            return results

    results = run(scenario)
    assert results[:2] == [None, None] and [r.value for r in results[2]] == [4.2, 6.1]


def test_query_mode_polls_once_per_interval_on_the_clock():
    async def scenario():
        async with PtySds011() as pty:
            clock = FakeClock(start_mono=100.0, auto_advance=True)
            driver = driver_for(pty, clock, interval=2.0)
            await driver.open()
            times = [(await driver.read())[0].t_monotonic for _ in range(4)]
            await driver.close()
            return times, pty

    times, pty = run(scenario)
    assert times == [100.0, 102.0, 104.0, 106.0]
    assert bytes(pty.received).count(QUERY_DATA) == 4


def test_sleeping_sensor_times_out_naming_the_port():
    async def scenario():
        async with PtySds011() as pty:
            driver = driver_for(pty, read_timeout=0.3)
            await driver.open()
            await driver.sleep()
            with pytest.raises(DriverError) as caught:
                await driver.read()
            await driver.close()
            return caught.value, pty.port

    error, port = run(scenario)
    assert not isinstance(error, FrameError)
    assert str(error) == (f"no data from SDS011 on {port} for 0.3s "
                          "(check wiring TX/RX and the 5 V supply)")


def test_usb_adapter_timeout_mentions_brltty(tmp_path):
    async def scenario():
        async with PtySds011() as pty:
            port = tmp_path / "ttyUSB7"
            port.symlink_to(pty.port)
            pty.sim.sleeping = True
            driver = Sds011(config(port=str(port), read_timeout=0.3, mode="active"),
                            DriverContext(clock=FakeClock()))
            await driver.open()
            with pytest.raises(DriverError) as caught:
                await driver.read()
            await driver.close()
            return str(caught.value), str(port)

    error, port = run(scenario)
    assert error.startswith(f"no data from SDS011 on {port} for 0.3s")
    assert "brltty may have claimed the CH341 USB adapter" in error


def test_reopen_after_power_cycle_sends_query_mode_again():
    async def scenario():
        async with PtySds011() as pty:
            driver = driver_for(pty)
            await driver.open()
            assert await driver.read()
            await driver.close()
            pty.sim.power_cycle()
            await driver.open()
            readings = await driver.read()
            await driver.close()
            return readings, pty.sim.mode

    readings, mode = run(scenario)
    assert readings and mode == "query"


def test_missing_port_is_a_driver_error_naming_the_port():
    driver = Sds011(config(port="/dev/ttySDS-missing"), DriverContext(clock=FakeClock()))
    with pytest.raises(DriverError, match="/dev/ttySDS-missing"):
        run(driver.open)
    run(driver.close)


def test_read_before_open_and_close_twice():
    async def scenario():
        async with PtySds011() as pty:
            driver = driver_for(pty)
            with pytest.raises(DriverError, match="not open"):
                await driver.read()
            await driver.close()
            await driver.open()
            await driver.close()
            await driver.close()
            await wait_until(lambda: pty.sim.sleeping)
            return bytes(pty.received)

    assert run(scenario).count(SLEEP) == 1


def test_conformance_hook_gives_a_working_unopened_driver():
    async def scenario():
        async with conformance_driver(FakeClock(auto_advance=True)) as driver:
            with pytest.raises(DriverError):
                await driver.read()
            await driver.open()
            readings = await driver.read()
            await driver.close()
            await driver.close()
            return readings

    readings = run(scenario)
    assert [r.stream for r in readings] == ["pm25", "pm10"] and all(r.value > 0 for r in readings)


# --- property: the parser against an independent window scan -------------------------------

def valid_windows(stream: bytes) -> dict[int, Sds011Frame | Sds011Reply]:
    """Every offset where 10 bytes form a valid frame (head, type, sum8, tail, range)."""
    found: dict[int, Sds011Frame | Sds011Reply] = {}
    for i in range(len(stream) - 9):
        w = stream[i:i + 10]
        if w[0] != 0xAA or w[1] not in (0xC0, 0xC5) or w[9] != 0xAB or w[8] != sum(w[2:8]) % 256:
            continue
        device_id = w[6] * 256 + w[7]
        if w[1] == 0xC5:
            found[i] = Sds011Reply(w[2], w[3:6], device_id)
        elif max(w[2] + w[3] * 256, w[4] + w[5] * 256) <= 9999:
            found[i] = Sds011Frame((w[2] + w[3] * 256) / 10, (w[4] + w[5] * 256) / 10, device_id)
    return found


def leftmost_first(found: dict[int, Sds011Frame | Sds011Reply]) -> list:
    """What a resynchronising parser must return: valid windows, leftmost wins on overlap."""
    out, free_from = [], 0
    for i in sorted(found):
        if i >= free_from:
            out.append(found[i])
            free_from = i + 10
    return out


def ends_in_a_partial_frame(stream: bytes, found: dict[int, Sds011Frame | Sds011Reply]) -> bool:
    """Whether a resynchronising parser still holds an undecided frame after ``stream``."""
    i = 0
    while i < len(stream):
        if i in found:
            i += 10
            continue
        w = stream[i:i + 10]
        if (w[0] == 0xAA and len(w) < 10 and (len(w) < 2 or w[1] in (0xC0, 0xC5))
                and (len(w) < 9 or w[8] == sum(w[2:8]) % 256)):
            return True
        i += 1
    return False


HEADER_RICH = b"\xaa\xc0\xc5\xab\x00\xff"  # bytes that lead the parser into deep states
KINDS = ("frame", "reply", "noise", "header-rich", "flipped", "inserted", "truncated",
         "out-of-range")


def make_chunk(recipe: int, blob: bytes) -> tuple[str, bool, bytes]:
    """Turn a recipe byte and some drawn bytes into (kind, gap before it, bytes)."""
    kind, gap = KINDS[recipe % len(KINDS)], recipe // len(KINDS) % 4 == 3
    if kind == "noise":
        return "garbage", gap, blob
    if kind == "header-rich":
        return "garbage", gap, bytes(HEADER_RICH[b % len(HEADER_RICH)] for b in blob)
    p = blob.ljust(9, b"\x00")
    device_id = int.from_bytes(p[4:6], "big")
    if kind == "out-of-range":  # checksum and tail right, a value above 999.9 µg/m³
        pm25 = 10_000 + int.from_bytes(p[0:2], "little") % 55_536
        return "garbage", gap, Sds011Simulator.encode_frame(pm25 / 10, p[2] / 10, device_id)
    if kind == "reply" or (kind != "frame" and p[8] % 2):
        frame = bytearray(Sds011Simulator.encode_reply(p[0], p[1:4], device_id))
    else:
        pm25, pm10 = (int.from_bytes(p[i:i + 2], "little") % 10_000 for i in (0, 2))
        frame = bytearray(Sds011Simulator.encode_frame(pm25 / 10, pm10 / 10, device_id))
    if kind in ("frame", "reply"):
        return "intact", gap, bytes(frame)
    if kind == "flipped":  # one to three bit flips anywhere in the frame
        for bit in {b % 80 for b in p[6:6 + 1 + p[7] % 3]}:
            frame[bit // 8] ^= 1 << (bit % 8)
    elif kind == "inserted":
        frame[p[6] % 11:p[6] % 11] = p[7:8 + p[8] % 3]
    else:
        del frame[1 + p[6] % 9:]
    return "garbage", gap, bytes(frame)


def decode(program: bytes) -> tuple[list[tuple[str, bool, bytes]], list[int]]:
    """Read one drawn byte string as the test input (one draw per example keeps 10 000 fast).

    Byte 0 picks two feed() piece sizes; then each chunk is a recipe byte, a length byte and
    that many bytes for :func:`make_chunk`.
    """
    head = program[:1] or b"\x00"
    piece_sizes = [1 + head[0] % 13, 1 + head[0] // 13 % 13]
    chunks, i = [], 1
    while i < len(program):
        size = program[i + 1] % 16 if i + 1 < len(program) else 0
        chunks.append(make_chunk(program[i], program[i + 2:i + 2 + size]))
        i += 2 + size
    return chunks, piece_sizes


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None)
@given(program=st.binary(min_size=32, max_size=96))
def test_parser_recovers_every_intact_frame_and_invents_none(program):
    chunks, piece_sizes = decode(program)
    # a chunk with gap=True arrives more than 0.5 s after the previous bytes: the stall rule
    # drops any partial frame, so the parser must treat each such segment on its own
    segments: list[list[tuple[str, bytes]]] = []
    for kind, gap, data in chunks:
        if gap or not segments:
            segments.append([])
        segments[-1].append((kind, data))
    parser, now, got, expected, required, left_partial = Sds011Parser(), 0.0, [], [], [], []
    for segment in segments:
        stream = b"".join(data for _, data in segment)
        found = valid_windows(stream)
        expected += leftmost_first(found)
        left_partial.append(ends_in_a_partial_frame(stream, found))
        offset = 0
        for kind, data in segment:
            # the guarantee: an intact frame is lost only to a valid frame overlapping it
            # from the left (checksum and tail right by chance)
            if kind == "intact" and not any(q in found for q in range(offset - 9, offset)):
                required.append(found[offset])
            offset += len(data)
        now += 0.6
        got += parser.feed(b"", now)  # the stall is noticed even before new bytes arrive
        sizes = iter(piece_sizes * (len(stream) + 1))
        start = 0
        while start < len(stream):
            size = next(sizes)
            got += parser.feed(stream[start:start + size], now)
            start += size
            now += 0.01
    items = [item for item in got if not isinstance(item, FrameError)]
    assert items == expected
    assert not Counter(required) - Counter(items), "an intact frame was lost"
    messages = [str(e) for e in got if isinstance(e, FrameError)]
    assert all(m.startswith(("bad checksum", "bad tail", "implausible", "partial frame"))
               for m in messages)
    # each partial frame left before a gap is dropped; the last one is still waiting
    assert sum(m.startswith("partial frame") for m in messages) == sum(left_partial[:-1])


def test_a_corrupted_answer_is_reported_quickly_not_after_the_read_timeout():
    async def scenario():
        async with PtySds011(Sds011Simulator(seed=2)) as pty:
            clock = FakeClock(auto_advance=True)
            driver = Sds011(Sds011Config(id="s", driver="sds011", port=pty.port, warmup=0,
                                         read_timeout=30), DriverContext(clock=clock))
            await driver.open()
            await asyncio.sleep(0.05)  # let the simulator take the open sequence
            pty.sim.sleeping = True  # the query goes unanswered: only the bad frame arrives
            loop = asyncio.get_running_loop()
            pty.emit(Sds011Simulator.corrupt(Sds011Simulator.encode_frame(1.0, 2.0)))
            started = loop.time()
            with pytest.raises(FrameError):
                await driver.read()
            waited = loop.time() - started
            await driver.close()
            return waited

    assert asyncio.run(scenario()) < 5  # ~0.2 s, not the 30 s read timeout
