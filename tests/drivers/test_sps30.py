"""SPS30 (SHDLC): byte-exact frames, stuffing, parser faults, simulator, driver through a pty."""

from __future__ import annotations

import asyncio
import logging
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
    GOLDEN_VALUES,
    PtySps30,
    Sps30Simulator,
    conformance_driver,
    integer_values,
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
    MAX_MASS,
    MAX_NUMBER,
    MAX_SIZE,
    STATUS_FAN,
    STATUS_LASER,
    STATUS_NAMES,
    STATUS_SPEED,
    ShdlcParser,
    ShdlcReply,
    Sps30,
    Sps30Config,
    StatusMonitor,
    checksum,
    decode_integer_values,
    decode_miso,
    decode_status,
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
START_INTEGER = bytes.fromhex("7E 00 00 02 01 05 F7 7E")
VERSION = bytes.fromhex("7E 00 D1 00 2E 7E")
READ_CLEANING = bytes.fromhex("7E 00 80 01 00 7D 5E 7E")  # CHK 7E stuffed (datasheet example)
STATUS = bytes.fromhex("7E 00 D2 01 00 2C 7E")  # read, keep the bits (datasheet example)
STATUS_AND_CLEAR = bytes.fromhex("7E 00 D2 01 01 2B 7E")
RESET = bytes.fromhex("7E 00 D3 00 2C 7E")
OPENED = WAKE + STOP + SERIAL + VERSION + READ_CLEANING + STATUS
# constructed (no integer capture exists): the capture's values rounded, size 835 nm
INTEGER_DATA = struct.pack(">10H", 5, 9, 13, 13, 26, 37, 42, 42, 43, 835)


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
    (CMD_AUTO_CLEANING, bytes(5), "7E 00 80 05 00 00 00 00 00 7A 7E"),  # write 0: datasheet
    (CMD_AUTO_CLEANING, b"\x00\x00\x09\x3a\x80", "7E 00 80 05 00 00 09 3A 80 B7 7E"),
    (CMD_DEVICE_INFO, b"\x00", "7E 00 D0 01 00 2E 7E"),
    (CMD_DEVICE_INFO, b"\x03", "7E 00 D0 01 03 2B 7E"),
    (CMD_VERSION, b"", "7E 00 D1 00 2E 7E"),
    (CMD_STATUS, b"\x00", "7E 00 D2 01 00 2C 7E"),
    (CMD_STATUS, b"\x01", "7E 00 D2 01 01 2B 7E"),
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
    # datasheet v2.0 §5.3.7 and §5.3.10 example answers
    assert miso_frame(CMD_STATUS, 0, bytes(5)).hex(" ") == "7e 00 d2 00 05 00 00 00 00 00 28 7e"
    assert miso_frame(CMD_AUTO_CLEANING, 0, bytes(4)).hex(" ") == "7e 00 80 00 04 00 00 00 00 7b 7e"
    assert miso_frame(CMD_AUTO_CLEANING).hex(" ") == "7e 00 80 00 00 7f 7e"


# --- integer output format and the status register -------------------------------------------

def test_integer_values_in_whole_units_and_the_size_in_micrometres():
    values = decode_integer_values(INTEGER_DATA)
    assert values == {"pm1": 5.0, "pm25": 9.0, "pm4": 13.0, "pm10": 13.0, "n0_5": 26.0,
                      "n1_0": 37.0, "n2_5": 42.0, "n4_0": 42.0, "n10": 43.0,
                      "typical_size": 0.835}
    assert list(values) == list(decode_values(GOLDEN_DATA))  # the same streams, same order


@pytest.mark.parametrize(("raw", "message"), [
    (INTEGER_DATA[:18] + b"\xff\xff", "implausible value typical_size"),
    (b"\x07\xd1" + INTEGER_DATA[2:], "implausible value pm1"),  # 2001 µg/m³
    (INTEGER_DATA[:8] + b"\x17\x71" + INTEGER_DATA[10:], "implausible value n0_5"),  # 6001
    (INTEGER_DATA[:19], "19 bytes, expected 20"),
    (GOLDEN_DATA, "40 bytes, expected 20")])
def test_bad_integer_values_are_frame_errors(raw, message):
    with pytest.raises(FrameError, match=message):
        decode_integer_values(raw)


@pytest.mark.parametrize(("register", "names"), [
    (0, []),
    (STATUS_SPEED, ["fan_speed_warning"]),
    (STATUS_LASER, ["laser_failure"]),
    (STATUS_FAN, ["fan_failure"]),
    (0x0020_0030, ["fan_speed_warning", "laser_failure", "fan_failure"]),
    (0xFFFF_FFFF & ~(STATUS_SPEED | STATUS_LASER | STATUS_FAN), []),  # reserved bits ignored
    (0xFFFF_FFFF, ["fan_speed_warning", "laser_failure", "fan_failure"])])
def test_status_register_bits(register, names):
    assert decode_status(register) == names


def test_status_monitor_errors_warnings_and_schedule(caplog):
    log = logging.getLogger("test.monitor")
    monitor = StatusMonitor("/dev/x", 60.0, log)
    assert monitor.last is None and not monitor.due(1e9)
    monitor.schedule(5.0)
    assert not monitor.due(4.9) and monitor.due(5.0)
    with caplog.at_level(logging.INFO, logger="test.monitor"):
        assert monitor.seen(STATUS_SPEED, 5.0) is None
        assert monitor.seen(STATUS_SPEED, 65.0) is None
        assert monitor.seen(0, 125.0) is None
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert monitor.next_at == 185.0 and monitor.last == []
    both = monitor.seen(STATUS_FAN | STATUS_LASER, 200.0)
    assert isinstance(both, DriverError) and both.retryable
    assert "SPS30 on /dev/x: fan failure (device status bit 4)" in str(both)
    assert "laser failure (device status bit 5)" in str(both)
    assert monitor.last == ["laser_failure", "fan_failure"]


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

@settings(max_examples=10_000, deadline=None)
@given(st.binary(max_size=24))
def test_integer_decoder_never_raises_anything_but_frame_error(raw):
    try:
        values = decode_integer_values(raw)
    except FrameError:
        return
    words = struct.unpack(">10H", raw)  # only 20 bytes decode
    assert [values[name] for name in list(values)[:9]] == list(words[:9])
    assert values["typical_size"] * 1000 == pytest.approx(words[9])
    assert all(0 <= v <= MAX_MASS for v in list(values.values())[:4])
    assert all(0 <= v <= MAX_NUMBER for v in list(values.values())[4:9])
    assert 0 <= values["typical_size"] <= MAX_SIZE


@settings(max_examples=10_000, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_status_decoder_names_exactly_the_documented_bits(register):
    names = decode_status(register)
    assert names == [name for bit, name in STATUS_NAMES.items() if register & bit]
    assert decode_status(register & (STATUS_SPEED | STATUS_LASER | STATUS_FAN)) == names


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
    sim.status = STATUS_FAN
    reply = answer(sim, mosi_frame(CMD_VERSION))
    assert reply.device_error and reply.error == 0
    sim.status = STATUS_SPEED  # a warning: not an error flag, no STATE bit 7
    assert not answer(sim, mosi_frame(CMD_VERSION)).device_error


def test_simulator_answers_integer_values_after_an_integer_start():
    sim = Sps30Simulator()
    assert answer(sim, START_INTEGER).error == 0
    reply = answer(sim, READ)
    assert reply.data == struct.pack(">10H", *integer_values(GOLDEN_VALUES))
    assert decode_integer_values(reply.data)["typical_size"] == 0.835


def test_simulator_status_register_read_and_clear():
    sim = Sps30Simulator()
    sim.status = STATUS_FAN | STATUS_SPEED
    assert sim.handle(STATUS) == bytes.fromhex("7E 00 D2 80 05 00 20 00 10 00 78 7E")
    reply = answer(sim, STATUS_AND_CLEAR)
    assert reply.data == bytes.fromhex("00 20 00 10 00") and not reply.device_error
    assert sim.status == 0
    assert sim.handle(STATUS) == bytes.fromhex("7E 00 D2 00 05 00 00 00 00 00 28 7E")
    assert answer(sim, mosi_frame(CMD_STATUS, b"\x02")).error == 0x04
    assert answer(sim, mosi_frame(CMD_STATUS)).error == 0x01


def test_simulator_firmware_gating():
    old = Sps30Simulator(firmware=(2, 1))
    assert answer(old, mosi_frame(CMD_VERSION)).data[:2] == b"\x02\x01"
    assert answer(old, STATUS).error == 0x02  # no status register before firmware 2.2
    ancient = Sps30Simulator(firmware=(1, 0))
    assert answer(ancient, START_INTEGER).error == 0x04 and ancient.state == "idle"


@pytest.mark.parametrize(("firmware", "before_reset"), [((2, 2), 0), ((2, 1), 604_800)])
def test_simulator_auto_cleaning_read_back(firmware, before_reset):
    sim = Sps30Simulator(firmware=firmware)
    assert answer(sim, mosi_frame(CMD_AUTO_CLEANING, bytes(5))).error == 0
    assert answer(sim, READ_CLEANING).data == before_reset.to_bytes(4, "big")
    assert answer(sim, RESET).error == 0
    assert answer(sim, READ_CLEANING).data == bytes(4)  # NVM: kept across the reset


# --- configuration ---------------------------------------------------------------------------

def test_config_defaults_and_streams():
    config = Sps30Config.model_validate(Sps30.sample_config)
    assert (config.baudrate, config.warmup, config.read_timeout) == (115200, 30.0, 3.0)
    with pytest.raises(ValidationError):
        Sps30Config.model_validate({**Sps30.sample_config, "baudrate": 9600})
    assert (config.output_format, config.auto_cleaning_interval, config.status_interval) == (
        "float", None, 60.0)
    for bad in ({"output_format": "double"}, {"auto_cleaning_interval": "1.5s"},
                {"auto_cleaning_interval": 2**32}, {"auto_cleaning_interval": -1},
                {"status_interval": 0}):
        with pytest.raises(ValidationError):
            Sps30Config.model_validate({**Sps30.sample_config, **bad})
    week = Sps30Config.model_validate({**Sps30.sample_config, "auto_cleaning_interval": "7d"})
    off = Sps30Config.model_validate({**Sps30.sample_config, "auto_cleaning_interval": 0})
    assert (week.cleaning_seconds, off.cleaning_seconds, config.cleaning_seconds) == (
        604_800, 0, None)
    assert week.model_dump(mode="json")["auto_cleaning_interval"] == "7d"
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
    assert opened == OPENED + START
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


# --- integer format, fan cleaning, status register: the driver through a pty ----------------

def make_logged(pty: PtySps30, clock: FakeClock, log: logging.Logger, **options) -> Sps30:
    config = Sps30Config(id="pm", driver="sps30", port=pty.port, **options)
    return Sps30(config, DriverContext(clock=clock, log=log))


def test_integer_format_end_to_end():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30(Sps30Simulator(clock=clock)) as pty:
            driver = make(pty, clock, warmup=0, output_format="integer")
            await driver.open()
            opened = bytes(pty.received)
            readings = await driver.read()
            await driver.close()
            return opened, readings, pty.sim.format

    opened, readings, sent_format = run(scenario())
    assert opened == OPENED + START_INTEGER and sent_format == 0x05
    expected = dict(zip(decode_values(GOLDEN_DATA), integer_values(GOLDEN_VALUES), strict=True))
    expected["typical_size"] /= 1000
    assert {r.stream: r.value for r in readings} == expected
    assert (expected["pm25"], expected["typical_size"]) == (9.0, 0.835)


def test_integer_format_on_old_firmware_is_a_permanent_error():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30(Sps30Simulator(clock=clock, firmware=(1, 0))) as pty:
            driver = make(pty, clock, output_format="integer")
            with pytest.raises(DriverError) as caught:
                await driver.open()
            return caught.value, bytes(pty.received)

    error, received = run(scenario())
    assert not error.retryable and "firmware 1.0" in str(error)
    assert START_INTEGER not in received


def test_auto_cleaning_interval_is_written_verified_and_not_rewritten():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0, auto_cleaning_interval="1d")
            await driver.open()
            described = driver.describe()
            await driver.close()
            first = bytes(pty.received)
            pty.received.clear()
            await driver.open()  # a reopen (duty cycle, recovery) finds it set: no NVM write
            await driver.close()
            return sim, first, bytes(pty.received), described

    sim, first, second, described = run(scenario())
    write = mosi_frame(CMD_AUTO_CLEANING, b"\x00" + (86_400).to_bytes(4, "big"))
    assert write == bytes.fromhex("7E 00 80 05 00 00 01 51 80 A8 7E")
    assert READ_CLEANING + write + READ_CLEANING in first
    assert write not in second and sim.cleaning_writes == 1
    assert sim.auto_cleaning_interval == 86_400
    assert described["sensor_auto_cleaning_interval"] == "1d"


def test_old_firmware_is_reset_before_the_interval_is_verified():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock, firmware=(2, 1))
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0, auto_cleaning_interval=0)
            await driver.open()
            readings = await driver.read()
            await driver.close()
            return sim, bytes(pty.received), readings, driver.describe()

    sim, received, readings, described = run(scenario())
    assert mosi_frame(CMD_AUTO_CLEANING, bytes(5)) + RESET + READ_CLEANING in received
    assert STATUS not in received and sim.auto_cleaning_interval == 0 and readings
    assert described["sensor_auto_cleaning_interval"] == "0s"
    assert described["firmware"] == "2.1" and described["device_status"] is None


class StubbornSimulator(Sps30Simulator):
    """Acknowledges interval writes but keeps the old value (a write that does not stick)."""

    def _execute(self, cmd: int, data: bytes) -> tuple[int, bytes]:
        if cmd == CMD_AUTO_CLEANING and len(data) == 5:
            return 0, b""
        return super()._execute(cmd, data)


def test_an_interval_that_does_not_stick_is_a_driver_error_naming_both_values():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30(StubbornSimulator(clock=clock)) as pty:
            driver = make(pty, clock, auto_cleaning_interval="1d")
            with pytest.raises(DriverError) as caught:
                await driver.open()
            await wait_until(lambda: pty.received.endswith(STOP))  # released: close sent Stop
            return caught.value, pty.port

    error, port = run(scenario())
    assert "86400 s (1d)" in str(error) and "604800 s (7d)" in str(error) and port in str(error)


def test_fan_failure_on_state_bit_7_is_a_driver_error_at_the_next_read():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0)
            await driver.open()
            first = await driver.read()  # 1 s: no check due
            pty.received.clear()
            sim.status = STATUS_FAN  # the fan stops; every reply now has STATE bit 7
            with pytest.raises(DriverError) as caught:
                await driver.read()  # 2 s: bit 7 on the values reply -> status read
            sent = bytes(pty.received)
            await driver.close()
            return first, caught.value, sent, sim.status, driver.describe()

    first, error, sent, status_after, described = run(scenario())
    assert first and error.retryable and not isinstance(error, FrameError)
    assert "fan failure (device status bit 4)" in str(error)
    assert sent == READ + STATUS + STATUS_AND_CLEAR  # read, keep; then clear (sticky FAN)
    assert status_after == 0 and described["device_status"] == ["fan_failure"]


def test_laser_failure_found_at_open_fails_the_open_and_clears_the_register():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        sim.status = STATUS_LASER
        async with PtySps30(sim) as pty:
            driver = make(pty, clock)
            with pytest.raises(DriverError, match=r"laser failure \(device status bit 5\)"):
                await driver.open()
            assert sim.status == 0 and sim.state == "idle"
            await driver.open()  # cleared: the next open re-tests the sensor
            await driver.close()

    run(scenario())


def test_speed_warning_keeps_the_values_and_warns_once(caplog):
    log = logging.getLogger("test.sps30")

    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        sim.status = STATUS_SPEED  # a warning: no STATE bit 7, found by the periodic check
        async with PtySps30(sim) as pty:
            driver = make_logged(pty, clock, log, warmup=0, status_interval="2s")
            await driver.open()
            during = [await driver.read() for _ in range(10)]  # checks at open, 5, 7, 9 s
            described = driver.describe()
            statuses = bytes(pty.received).count(STATUS)
            sim.status = 0
            after = [await driver.read() for _ in range(3)]
            await driver.close()
            return during, described, statuses, after, driver.describe()

    with caplog.at_level(logging.INFO, logger="test.sps30"):
        during, described, statuses, after, later = run(scenario())
    assert all(during) and all(after) and statuses == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "fan speed out of range (device status bit 21)" in (
        warnings[0].getMessage())
    assert described["device_status"] == ["fan_speed_warning"]
    assert later["device_status"] == []


def test_old_firmware_reports_state_bit_7_once_without_the_status_register(caplog):
    log = logging.getLogger("test.sps30.old")

    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock, firmware=(2, 0))
        async with PtySps30(sim) as pty:
            driver = make_logged(pty, clock, log, warmup=0)
            await driver.open()
            sim.status = STATUS_FAN
            got = [await driver.read() for _ in range(6)]
            await driver.close()
            return got, bytes(pty.received)

    with caplog.at_level(logging.WARNING, logger="test.sps30.old"):
        got, received = run(scenario())
    assert all(got) and STATUS not in received
    assert len(caplog.records) == 1 and "STATE bit 7" in caplog.records[0].getMessage()


def test_manual_fan_cleaning_freezes_the_values_for_ten_seconds():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Sps30Simulator(clock=clock)
        async with PtySps30(sim) as pty:
            driver = make(pty, clock, warmup=0)
            await driver.open()
            assert await driver.read()
            await driver.start_fan_cleaning()
            got = [await driver.read() for _ in range(12)]
            await driver.stop()
            with pytest.raises(DriverError, match="0x43"):  # only while measuring
                await driver.start_fan_cleaning()
            await driver.close()
            return got, sim.executed

    got, executed = run(scenario())
    assert CMD_FAN_CLEANING in executed
    assert [g is not None for g in got] == [False] * 9 + [True] * 3  # until 10 s after


def test_status_checks_follow_status_interval():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30(Sps30Simulator(clock=clock)) as pty:
            driver = make(pty, clock, warmup=0, status_interval="10s")
            await driver.open()
            pty.received.clear()
            for _ in range(30):  # 1 … 30 s after start
                await driver.read()
            await driver.close()
            return bytes(pty.received).count(STATUS)

    assert run(scenario()) == 3  # at 5, 15 and 25 s


def test_describe_before_open_and_after():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtySps30(Sps30Simulator(clock=clock, serial="SN9")) as pty:
            driver = make(pty, clock)
            before = driver.describe()
            await driver.open()
            await driver.close()
            return before, driver.describe()

    before, after = run(scenario())
    assert (before["firmware"], before["device_status"], before["serial_number"]) == (
        None, None, None)
    assert (after["firmware"], after["device_status"], after["serial_number"]) == (
        "2.2", [], "SN9")
    assert after["sensor_auto_cleaning_interval"] == "7d" and after["output_format"] == "float"
