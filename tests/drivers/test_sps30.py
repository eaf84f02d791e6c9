"""SPS30 (SHDLC): byte-exact frames, stuffing, parser faults, simulator, driver through a pty."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.sim.sps30 import (
    GOLDEN_DATA,
    PtySps30,
    Sps30Simulator,
    conformance_driver,
)
from edgeagent.drivers.sps30 import (
    CMD_AUTO_CLEANING,
    CMD_DEVICE_INFO,
    CMD_FAN_CLEANING,
    CMD_READ,
    CMD_RESET,
    CMD_SLEEP,
    CMD_START,
    CMD_STATUS,
    CMD_STOP,
    CMD_VERSION,
    CMD_WAKE,
    ShdlcParser,
    ShdlcReply,
    Sps30,
    Sps30Config,
    checksum,
    decode_miso,
    decode_values,
    miso_frame,
    mosi_frame,
    stuff,
    unstuff,
)

# real capture, sensors.md §2.3.2 (NC1.0 = 42 13 FC 85 goes out stuffed as 42 7D 33 FC 85)
GOLDEN = bytes.fromhex(
    "7E 00 03 00 28 40 A7 83 20 41 17 77 BB 41 4A 5F 83 41 54 8D DD 41 D2 83 3E 42 7D 33 FC 85"
    " 42 26 17 22 42 29 A4 D9 42 2A 29 BC 3F 55 B7 E7 9E 7E")
GOLDEN_REPLY = ShdlcReply(CMD_READ, 0, GOLDEN_DATA, 0x9E)
GOLDEN_ROUNDED = {"pm1": 5.235, "pm25": 9.467, "pm4": 12.648, "pm10": 13.285, "n0_5": 26.31,
                  "n1_0": 37.00, "n2_5": 41.52, "n4_0": 42.41, "n10": 42.54,
                  "typical_size": 0.835}
EMPTY_READ = bytes.fromhex("7E 00 03 00 00 FC 7E")
NOT_ALLOWED_START = bytes.fromhex("7E 00 00 43 00 BC 7E")
WAKE = bytes.fromhex("FF 7E 00 7D 31 00 EE 7E")
STOP = bytes.fromhex("7E 00 01 00 FE 7E")
SERIAL = bytes.fromhex("7E 00 D0 01 03 2B 7E")
START = bytes.fromhex("7E 00 00 02 01 03 F9 7E")
READ = bytes.fromhex("7E 00 03 00 FC 7E")


def replies(items: list) -> list[ShdlcReply]:
    return [item for item in items if isinstance(item, ShdlcReply)]


def errors(items: list) -> list[str]:
    return [str(item) for item in items if isinstance(item, FrameError)]


# --- byte-exact protocol ---------------------------------------------------------------------

@pytest.mark.parametrize(("cmd", "data", "wire"), [
    (CMD_START, b"\x01\x03", "7E 00 00 02 01 03 F9 7E"),
    (CMD_START, b"\x01\x05", "7E 00 00 02 01 05 F7 7E"),
    (CMD_STOP, b"", "7E 00 01 00 FE 7E"),
    (CMD_READ, b"", "7E 00 03 00 FC 7E"),
    (CMD_SLEEP, b"", "7E 00 10 00 EF 7E"),
    (CMD_WAKE, b"", "7E 00 7D 31 00 EE 7E"),
    (CMD_FAN_CLEANING, b"", "7E 00 56 00 A9 7E"),
    (CMD_AUTO_CLEANING, b"\x00", "7E 00 80 01 00 7D 5E 7E"),
    (CMD_DEVICE_INFO, b"\x00", "7E 00 D0 01 00 2E 7E"),
    (CMD_DEVICE_INFO, b"\x03", "7E 00 D0 01 03 2B 7E"),
    (CMD_VERSION, b"", "7E 00 D1 00 2E 7E"),
    (CMD_STATUS, b"\x00", "7E 00 D2 01 00 2C 7E"),
    (CMD_RESET, b"", "7E 00 D3 00 2C 7E")])
def test_host_frames_are_byte_exact(cmd, data, wire):
    assert mosi_frame(cmd, data) == bytes.fromhex(wire)


def test_checksum_of_the_datasheet_start_frame():
    assert checksum(bytes.fromhex("00 00 02 01 03")) == 0xF9
    assert checksum(GOLDEN[1:-2].replace(b"\x7d\x33", b"\x13")) == 0x9E


def test_golden_capture_decodes_to_the_documented_values():
    (reply,) = ShdlcParser().feed(GOLDEN, 0.0)
    assert reply == GOLDEN_REPLY
    values = decode_values(reply.data)
    for name, documented in GOLDEN_ROUNDED.items():  # as many digits as sensors.md prints
        assert values[name] == pytest.approx(documented, abs=0.0051 if name[0] == "n" else 0.0006)
    assert struct.pack(">f", values["n1_0"]) == bytes.fromhex("4213FC85")


def test_sensor_frames_are_byte_exact():
    assert miso_frame(CMD_READ, 0, GOLDEN_DATA) == GOLDEN
    assert miso_frame(CMD_READ) == EMPTY_READ
    assert miso_frame(CMD_START, 0x43) == NOT_ALLOWED_START


@pytest.mark.parametrize("frame", [EMPTY_READ, NOT_ALLOWED_START])
def test_short_documented_replies(frame):
    (reply,) = ShdlcParser().feed(frame, 0.0)
    assert reply.data == b""


# --- stuffing --------------------------------------------------------------------------------

def test_stuffing_of_the_four_special_bytes():
    assert stuff(bytes.fromhex("7E 7D 11 13 00")) == bytes.fromhex("7D 5E 7D 5D 7D 31 7D 33 00")


def test_unstuffing_is_one_pass():
    # a literal 7D 31 in the data goes out as 7D 5D 31 and must come back as 7D 31, not 11
    assert stuff(b"\x7d\x31") == bytes.fromhex("7D 5D 31")
    assert unstuff(bytes.fromhex("7D 5D 31")) == b"\x7d\x31"


@pytest.mark.parametrize("seed", range(50))
def test_stuffing_round_trip(seed):
    rng = random.Random(seed)
    data = bytes(rng.choice([0x7E, 0x7D, 0x11, 0x13, rng.randrange(256)]) for _ in range(60))
    assert unstuff(stuff(data)) == data
    frame = miso_frame(CMD_READ, 0, data)
    assert frame.count(0x7E) == 2  # only the two flags: every inner 7E is stuffed
    assert ShdlcParser().feed(frame, 0.0) == [ShdlcReply(CMD_READ, 0, data, frame_chk(data))]


def frame_chk(data: bytes) -> int:
    return checksum(bytes([0, CMD_READ, 0, len(data)]) + data)


@pytest.mark.parametrize("inner", ["7D", "7D 00", "00 03 00 00 7D"])
def test_bad_escapes_are_frame_errors(inner):
    assert isinstance(decode_miso(bytes.fromhex(inner)), FrameError)


# --- parser faults ---------------------------------------------------------------------------

@pytest.mark.parametrize("cut", range(1, len(GOLDEN)))
def test_frame_split_at_every_position(cut):
    parser = ShdlcParser()
    assert parser.feed(GOLDEN[:cut], 0.0) == []
    assert parser.feed(GOLDEN[cut:], 0.1) == [GOLDEN_REPLY]


def test_back_to_back_frames():
    out = ShdlcParser().feed(EMPTY_READ + GOLDEN + EMPTY_READ, 0.0)
    assert len(replies(out)) == 3 and not errors(out)


def test_leading_garbage_is_skipped_silently():
    assert ShdlcParser().feed(b"\x00\x42\x13\xff" + GOLDEN, 0.0) == [GOLDEN_REPLY]


def test_bad_checksum_is_reported_and_the_next_frame_is_fine():
    out = ShdlcParser().feed(Sps30Simulator.corrupt(GOLDEN) + GOLDEN, 0.0)
    assert len(errors(out)) == 1 and "checksum" in errors(out)[0]
    assert replies(out) == [GOLDEN_REPLY]


def test_truncated_frame_followed_by_a_good_frame():
    out = ShdlcParser().feed(GOLDEN[:20] + GOLDEN, 0.0)
    assert replies(out) == [GOLDEN_REPLY]
    assert len(errors(out)) == 1


def test_wrong_length_field_is_rejected():
    bad = bytearray(EMPTY_READ)
    bad[4] = 0x01
    assert "length" in errors(ShdlcParser().feed(bytes(bad), 0.0))[0]


def test_stall_mid_frame_drops_the_partial_frame():
    parser = ShdlcParser()
    assert parser.feed(GOLDEN[:10], 0.0) == []
    out = parser.feed(GOLDEN[10:], 0.6)
    assert "partial frame dropped" in errors(out)[0]
    assert not replies(out)
    assert parser.feed(GOLDEN, 0.7) == [GOLDEN_REPLY]


def test_overlong_frame_is_dropped():
    out = ShdlcParser().feed(b"\x7e" + b"\x01" * 600 + b"\x7e" + GOLDEN, 0.0)
    assert "longer" in errors(out)[0]
    assert replies(out) == [GOLDEN_REPLY]


@pytest.mark.parametrize("raw", [
    struct.pack(">10f", float("nan"), *[1.0] * 9),
    struct.pack(">10f", -1.0, *[1.0] * 9),
    struct.pack(">10f", 5000.0, *[1.0] * 9),
    struct.pack(">10f", *[1.0] * 9, 50.0),
    GOLDEN_DATA[:20]])
def test_implausible_values_are_frame_errors(raw):
    with pytest.raises(FrameError):
        decode_values(raw)


# --- property: never raises, never invents a frame -------------------------------------------

KINDS = ("frame", "garbage", "flipped", "truncated", "empty")
pieces = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2**32)), min_size=1,
                  max_size=6)


def build(kind: str, seed: int) -> bytes:
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(rng.choice((0, 40, rng.randrange(60)))))
    for _ in range(min(len(data), 4)):  # make stuffing happen
        data[rng.randrange(len(data))] = rng.choice((0x7E, 0x7D, 0x11, 0x13))
    data = bytes(data)
    frame = miso_frame(rng.randrange(256), rng.choice([0, 0x43, 0x80]), data)
    if kind == "frame":
        return frame
    if kind == "garbage":
        return rng.randbytes(rng.randint(0, 80))
    if kind == "flipped":
        bit = rng.randrange(len(frame) * 8)
        flipped = bytearray(frame)
        flipped[bit // 8] ^= 1 << (bit % 8)
        return bytes(flipped)
    if kind == "empty":
        return b"\x7e\x7e"
    return frame[:rng.randint(1, len(frame) - 1)]


@settings(max_examples=10_000, deadline=None)
@given(pieces, st.integers(1, 40))
def test_parser_never_raises_and_never_yields_a_bad_checksum(spec, cut):
    stream = b"".join(build(kind, seed) for kind, seed in spec)
    parser, out = ShdlcParser(), []
    for start in range(0, len(stream), cut):
        out += parser.feed(stream[start:start + cut], now=0.0)
    assert all(isinstance(item, ShdlcReply | FrameError) for item in out)
    for reply in replies(out):
        body = bytes([0, reply.command, reply.state, len(reply.data)]) + reply.data
        assert reply.checksum == checksum(body)
        assert miso_frame(reply.command, reply.state, reply.data)[1:-1] in stream
    sent = [build(kind, seed) for kind, seed in spec if kind == "frame"]
    if [kind for kind, _ in spec] == ["frame"] * len(spec):
        assert len(replies(out)) == len(sent)


# --- simulator -------------------------------------------------------------------------------

def answer(sim: Sps30Simulator, frame: bytes) -> ShdlcReply:
    (reply,) = ShdlcParser().feed(sim.handle(frame), 0.0)
    assert isinstance(reply, ShdlcReply)
    return reply


def test_simulator_state_machine():
    sim = Sps30Simulator()
    assert answer(sim, READ).error == 0x43  # reading before Start
    assert answer(sim, STOP).error == 0x43
    assert answer(sim, mosi_frame(CMD_FAN_CLEANING)).error == 0x43
    assert answer(sim, START).error == 0
    assert answer(sim, START).error == 0x43  # Start only in Idle
    assert answer(sim, mosi_frame(CMD_SLEEP)).error == 0x43  # Sleep only in Idle
    assert answer(sim, READ).data == GOLDEN_DATA
    assert answer(sim, STOP).error == 0 and sim.state == "idle"
    assert answer(sim, mosi_frame(CMD_SLEEP)).error == 0 and sim.state == "sleep"


def test_simulator_answers_the_golden_capture_byte_exact():
    sim = Sps30Simulator()
    sim.handle(START)
    assert sim.handle(READ) == GOLDEN


def test_simulator_new_data_once_a_second():
    clock = FakeClock()
    sim = Sps30Simulator(clock=clock)
    sim.handle(START)
    assert sim.handle(READ) == EMPTY_READ
    clock.advance(1.0)
    assert answer(sim, READ).data == GOLDEN_DATA
    assert sim.handle(READ) == EMPTY_READ
    clock.advance(1.0)
    assert answer(sim, mosi_frame(CMD_FAN_CLEANING)).error == 0
    clock.advance(5.0)
    assert sim.handle(READ) == EMPTY_READ  # frozen during the 10 s of cleaning
    clock.advance(5.0)
    assert answer(sim, READ).data == GOLDEN_DATA


def test_simulator_interface_is_dead_in_sleep_until_the_wake_pulse():
    sim = Sps30Simulator()
    sim.handle(mosi_frame(CMD_SLEEP))
    assert sim.handle(READ) == b""  # first byte switches the interface on and is lost
    assert sim.state == "sleep"
    assert answer(sim, mosi_frame(CMD_WAKE)).error == 0 and sim.state == "idle"
    sim.handle(mosi_frame(CMD_SLEEP))
    assert answer(sim, WAKE).error == 0 and sim.state == "idle"


def test_simulator_accepts_the_datasheet_unstuffed_wake_frame():
    sim = Sps30Simulator()
    sim.handle(mosi_frame(CMD_SLEEP))
    assert answer(sim, b"\xff" + bytes.fromhex("7E 00 11 00 EE 7E")).error == 0
    assert sim.state == "idle"


def test_simulator_information_and_errors():
    sim = Sps30Simulator(serial="ABC123")
    assert answer(sim, mosi_frame(CMD_DEVICE_INFO, b"\x00")).data == b"00080000\0"
    assert answer(sim, mosi_frame(CMD_DEVICE_INFO, b"\x03")).data == b"ABC123\0"
    assert answer(sim, mosi_frame(CMD_AUTO_CLEANING, b"\x00")).data == bytes.fromhex("00093A80")
    assert answer(sim, mosi_frame(0x42)).error == 0x02
    assert answer(sim, mosi_frame(CMD_START, b"\x01\x07")).error == 0x04
    assert answer(sim, mosi_frame(CMD_START, b"\x01")).error == 0x01
    assert sim.handle(Sps30Simulator.corrupt(START)) == b""  # ignored
    sim.status_flag = True
    reply = answer(sim, mosi_frame(CMD_VERSION))
    assert reply.device_error and reply.error == 0


# --- configuration ---------------------------------------------------------------------------

def test_config_defaults_and_streams():
    config = Sps30Config.model_validate(Sps30.sample_config)
    assert (config.baudrate, config.warmup, config.read_timeout) == (115200, 30.0, 3.0)
    with pytest.raises(ValidationError):
        Sps30Config.model_validate({**Sps30.sample_config, "baudrate": 9600})
    streams = Sps30.streams(config)
    assert [s.name for s in streams] == ["pm1", "pm25", "pm4", "pm10", "n0_5", "n1_0", "n2_5",
                                         "n4_0", "n10", "typical_size"]
    assert {s.unit for s in streams} == {"ug/m3", "/cm3", "um"}
    assert all(s.quantity is QuantityClass.PARTICULATE and s.kind is StatKind.LINEAR
               for s in streams)


# --- the driver through a pty ----------------------------------------------------------------

def run(coro, timeout: float = 10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def make(pty: PtySps30, clock: FakeClock, **options) -> Sps30:
    config = Sps30Config(id="pm", driver="sps30", port=pty.port, **options)
    return Sps30(config, DriverContext(clock=clock))


def test_open_sequence_is_byte_exact_and_values_arrive():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30(Sps30Simulator(clock=clock, serial="SN42")) as pty:
            driver = make(pty, clock, warmup=0)
            await driver.open()
            opened = bytes(pty.received)
            readings = await driver.read()
            await driver.close()
            await wait_until(lambda: pty.sim.state == "idle")
            return opened, readings, driver.serial_number, pty

    opened, readings, serial, pty = run(scenario())
    assert opened == WAKE + STOP + SERIAL + START
    assert serial == "SN42"
    assert {r.stream: round(r.value, 3) for r in readings}["pm25"] == 9.467
    assert len({r.t_monotonic for r in readings}) == 1
    assert pty.received.endswith(READ + STOP)  # close stops the measurement


def test_read_paces_on_the_clock_and_empty_reply_is_none():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0, interval=0.5)
            await driver.open()
            t0 = clock.monotonic()
            got = [await driver.read() for _ in range(4)]
            elapsed = clock.monotonic() - t0
            await driver.close()
            return got, elapsed

    got, elapsed = run(scenario())
    assert [g is not None for g in got] == [True, False, True, False]  # 1 Hz data, 2 Hz polls
    assert elapsed == pytest.approx(2.5)


def test_sensor_left_measuring_is_stopped_and_restarted():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        sim.state = "measurement"
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0)
            await driver.open()
            await driver.close()
            return sim.executed

    assert run(scenario())[:3] == [CMD_WAKE, CMD_STOP, CMD_DEVICE_INFO]


def test_sleeping_sensor_is_woken():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        sim.state, sim.interface_on = "sleep", False
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0)
            await driver.open()
            readings = await driver.read()
            await driver.close()
            return readings

    assert run(scenario())


def test_state_byte_error_is_a_driver_error_with_its_meaning():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0)
            await driver.open()
            sim.force_state = 0x43
            with pytest.raises(DriverError) as caught:
                await driver.read()
            await driver.close()
            return caught.value

    error = run(scenario())
    assert not isinstance(error, FrameError)
    assert "0x43" in str(error) and "not allowed in the current state" in str(error)


def test_bad_frame_is_a_frame_error_and_the_driver_recovers():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0, read_timeout=0.3)
            await driver.open()
            sim.faults.append("garbage")  # between frames: skipped silently
            first = await driver.read()
            sim.faults.append("corrupt")
            with pytest.raises(FrameError, match="checksum"):
                await driver.read()
            sim.faults.append("truncate")
            with pytest.raises(FrameError, match="cut short"):
                await driver.read()
            after = await driver.read()
            await driver.close()
            return first, after

    first, after = run(scenario())
    assert first and after


def test_timeout_is_a_driver_error_naming_the_port():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30(Sps30Simulator(clock=clock)) as pty:
            driver = make(pty, clock, warmup=0, read_timeout=0.3)
            await driver.open()
            pty.mute = True
            with pytest.raises(DriverError) as caught:
                await driver.read()
            await driver.close()
            return pty.port, caught.value

    port, error = run(scenario())
    assert port in str(error) and "no answer" in str(error)


def test_silent_sensor_fails_open_and_releases_the_port():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30() as pty:
            pty.mute = True
            driver = make(pty, clock, read_timeout=0.2)
            with pytest.raises(DriverError, match="wake-up"):
                await driver.open()
            received = bytes(pty.received)
            await driver.close()
            return received

    # FF + wake, then the wake frame twice (sensors.md §2.3.2)
    assert run(scenario()).startswith(WAKE + WAKE[1:] * 2)


def test_missing_port_read_before_open_and_close_twice():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver = Sps30(Sps30Config(id="pm", driver="sps30", port="/dev/no-such-sps30"),
                       DriverContext(clock=clock))
        with pytest.raises(DriverError, match="not open"):
            await driver.read()
        with pytest.raises(DriverError, match="/dev/no-such-sps30"):
            await driver.open()
        await driver.close()
        await driver.close()

    run(scenario())


def test_conformance_hook_gives_a_working_unopened_driver():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with conformance_driver(clock) as driver:
            await driver.open()
            got = [await driver.read() for _ in range(3)]
            await driver.close()
            await driver.close()
            return got

    assert all(run(scenario()))
