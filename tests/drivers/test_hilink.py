"""Hi-Link command framing, ACKs, the shared stream parser and the command channel; fuzzing."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverError, FrameError
from edgeagent.drivers.hilink import (
    BAUD_RATES,
    COMMAND_SPEC,
    ENABLE_CONFIG,
    END_CONFIG,
    FIRMWARE,
    Ack,
    Command,
    CommandChannel,
    FrameSpec,
    HilinkParser,
    ack_frame,
    command_frame,
    decode_ack,
    decode_command,
    firmware_data,
    firmware_version,
)
from edgeagent.drivers.ld2410 import decode_report as decode_ld2410
from edgeagent.drivers.ld2410 import ld2410_parser
from edgeagent.drivers.ld2450 import Ld2450Report, Target, ld2450_parser
from edgeagent.drivers.sim.ld2410 import Ld2410Simulator, Ld2410Target
from edgeagent.drivers.sim.ld2450 import Ld2450Simulator, PtyLd2450
from edgeagent.serialport import SerialTransport
from golden import parsed_both_ways

H = bytes.fromhex
ENABLE = H("FD FC FB FA 04 00 FF 00 01 00 04 03 02 01")
ENABLE_ACK = H("FD FC FB FA 08 00 FF 01 00 00 01 00 40 00 04 03 02 01")
END = H("FD FC FB FA 02 00 FE 00 04 03 02 01")
END_ACK = H("FD FC FB FA 04 00 FE 01 00 00 04 03 02 01")
FIRMWARE_ACK = H("FD FC FB FA 0C 00 A0 01 00 00 00 00 02 01 16 24 06 22 04 03 02 01")
REPORT = H("AA FF 03 00 0E 03 B1 86 10 00 40 01") + bytes(16) + H("55 CC")
REPORT_ITEM = Ld2450Report((Target(-782, 1713, -16, 320),))


# --- command framing: every ✔ send example of sensors.md §5.4/§5.5 ---------------------------

@pytest.mark.parametrize(("word", "value", "wire"), [
    (0x00FF, "01 00", "FD FC FB FA 04 00 FF 00 01 00 04 03 02 01"),
    (0x00FE, "", "FD FC FB FA 02 00 FE 00 04 03 02 01"),
    (0x0060, "00 00 08 00 00 00 01 00 08 00 00 00 02 00 05 00 00 00",
     "FD FC FB FA 14 00 60 00 00 00 08 00 00 00 01 00 08 00 00 00 02 00 05 00 00 00 04 03 02 01"),
    (0x0061, "", "FD FC FB FA 02 00 61 00 04 03 02 01"),
    (0x0062, "", "FD FC FB FA 02 00 62 00 04 03 02 01"),
    (0x0063, "", "FD FC FB FA 02 00 63 00 04 03 02 01"),
    (0x0064, "00 00 03 00 00 00 01 00 28 00 00 00 02 00 28 00 00 00",
     "FD FC FB FA 14 00 64 00 00 00 03 00 00 00 01 00 28 00 00 00 02 00 28 00 00 00 04 03 02 01"),
    (0x00A0, "", "FD FC FB FA 02 00 A0 00 04 03 02 01"),
    (0x00A1, "07 00", "FD FC FB FA 04 00 A1 00 07 00 04 03 02 01"),
    (0x0080, "", "FD FC FB FA 02 00 80 00 04 03 02 01"),
    (0x0090, "", "FD FC FB FA 02 00 90 00 04 03 02 01"),
], ids=lambda v: f"{v:04X}" if isinstance(v, int) else None)
def test_command_frames_are_byte_exact(word, value, wire):
    assert command_frame(word, H(value)) == H(wire)


def test_ack_frames_are_byte_exact():
    assert ack_frame(ENABLE_CONFIG, 0, H("01 00 40 00")) == ENABLE_ACK
    assert ack_frame(END_CONFIG) == END_ACK
    assert ack_frame(FIRMWARE, 0, firmware_data(0x0102, 0x22062416)) == FIRMWARE_ACK


def test_too_long_a_command_is_refused():
    with pytest.raises(ValueError, match="at most 62 value bytes"):
        command_frame(0x00C2, bytes(63))


def test_acks_decode_and_the_firmware_reads_as_documented():
    assert decode_ack(ENABLE_ACK) == Ack(ENABLE_CONFIG, 0, H("01 00 40 00"))
    assert decode_ack(END_ACK) == Ack(END_CONFIG, 0, b"")
    ack = decode_ack(FIRMWARE_ACK)
    assert ack.ok and firmware_version(ack) == "V1.02.22062416"
    assert not decode_ack(ack_frame(0x0060, 1)).ok


def test_a_command_is_not_an_ack_and_the_reverse():
    echoed = decode_ack(ENABLE)
    assert isinstance(echoed, FrameError) and "looped back" in str(echoed)
    assert decode_command(ENABLE) == Command(ENABLE_CONFIG, H("01 00"))
    assert isinstance(decode_command(ENABLE_ACK), FrameError)
    short = decode_ack(command_frame(0x01A0))  # the ACK flag but no status
    assert isinstance(short, FrameError) and "without a status" in str(short)


def test_firmware_ack_too_short_is_a_driver_error():
    with pytest.raises(DriverError, match="firmware ACK too short"):
        firmware_version(Ack(FIRMWARE, 0, b"\x00\x00"))


def test_baud_table():
    assert BAUD_RATES[7] == 256_000 and BAUD_RATES[5] == 115_200
    assert sorted(BAUD_RATES) == list(range(1, 9))


def test_frame_specs_are_checked():
    with pytest.raises(ValueError, match="either lengths or a fixed size"):
        FrameSpec("x", b"\x01", b"\x02")
    with pytest.raises(ValueError, match="first header byte"):
        HilinkParser([(COMMAND_SPEC, decode_ack), (COMMAND_SPEC, decode_command)])


# --- the stream parser -----------------------------------------------------------------------

def comparable(items: list) -> list:
    """Items with frame errors as their messages (exceptions compare by identity)."""
    return [f"error: {item}" if isinstance(item, FrameError) else item for item in items]


@pytest.mark.parametrize("cut", range(1, len(REPORT + FIRMWARE_ACK)))
def test_report_and_ack_split_at_every_position(cut):
    stream = REPORT + FIRMWARE_ACK
    parser = ld2450_parser()
    items = parser.feed(stream[:cut], 0.0) + parser.feed(stream[cut:], 0.0)
    assert items == [REPORT_ITEM, decode_ack(FIRMWARE_ACK)]


def test_byte_by_byte_equals_one_chunk():
    stream = b"\x00\xaa\xfd" + REPORT + ENABLE_ACK + REPORT[:7] + REPORT + END_ACK
    whole, single = parsed_both_ways(ld2450_parser, stream)
    assert comparable(whole) == comparable(single)
    assert [type(i) for i in whole if not isinstance(i, FrameError)] == [
        Ld2450Report, Ack, Ld2450Report, Ack]


def test_garbage_and_a_mid_frame_start_are_skipped():
    out = ld2450_parser().feed(REPORT[11:] + b"\x13\x37\xfd\xfc" + REPORT, 0.0)
    assert out == [REPORT_ITEM]


def test_impossible_length_is_rejected_at_once_and_the_parser_resyncs():
    parser = ld2450_parser()
    bad = H("FD FC FB FA FF 00")  # 255 data bytes: more than the radar's 64-byte buffer
    out = parser.feed(bad, 0.0)
    assert [str(e) for e in out] == ["command/ACK frame with impossible length 255 (expected "
                                     "2–64)"]
    assert parser.feed(ENABLE_ACK, 0.0) == [decode_ack(ENABLE_ACK)]
    assert "impossible length 1" in str(ld2450_parser().feed(H("FD FC FB FA 01 00"), 0.0)[0])


def test_bad_end_bytes_cost_an_error_not_the_next_frame():
    broken = ENABLE_ACK[:-1] + b"\x00"
    out = ld2450_parser().feed(broken + REPORT, 0.0)
    assert [str(out[0])] == ["command/ACK frame with bad end bytes 04 03 02 00 (expected "
                             "04 03 02 01)"]
    assert out[1:] == [REPORT_ITEM]


def test_a_report_with_a_bad_tail_is_an_error_and_a_frame_inside_is_found():
    # a report cut after 20 bytes, glued to a whole one: the false frame's tail is wrong
    out = ld2450_parser().feed(REPORT[:20] + REPORT, 0.0)
    assert "bad end bytes" in str(out[0]) and out[1:] == [REPORT_ITEM]


def test_stall_mid_frame_drops_the_partial_frame():
    clock = FakeClock()
    parser = ld2450_parser()
    assert parser.feed(REPORT[:12], clock.monotonic()) == []
    clock.advance(0.6)
    out = parser.feed(REPORT[12:] + REPORT, clock.monotonic())
    assert [str(e) for e in out[:1]] == [
        "partial LD2450 report frame dropped: 12 bytes, then more than 0.5 s of silence"]
    assert out[1:] == [REPORT_ITEM]


def test_a_lone_partial_header_is_dropped_silently():
    parser = ld2450_parser()
    parser.feed(b"\xaa\xff", 10.0)
    assert parser.feed(b"", 10.6) == []
    assert parser.feed(REPORT, 10.7) == [REPORT_ITEM]


def test_short_pause_mid_frame_is_tolerated():
    parser = ld2450_parser()
    parser.feed(REPORT[:5], 1.0)
    assert parser.feed(REPORT[5:], 1.45) == [REPORT_ITEM]


# --- the command channel, through a real pty -------------------------------------------------

async def channel_on(pty: PtyLd2450, timeout: float = 0.5) -> CommandChannel:
    transport = SerialTransport(pty.port, 256_000)
    await transport.open()
    clock = FakeClock()
    return CommandChannel(transport, ld2450_parser(), device="LD2450", now=clock.monotonic,
                          timeout=timeout)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_channel_config_mode_and_commands():
    async def scenario():
        async with PtyLd2450(Ld2450Simulator()) as pty:
            channel = await channel_on(pty)
            async with channel.config_mode() as enabled:
                assert enabled.data == H("01 00 40 00")
                assert pty.sim.config_mode
                firmware = await channel.command(FIRMWARE, what="read firmware version")
            assert not pty.sim.config_mode
            await channel.transport.close()
            return bytes(pty.received), firmware

    received, firmware = run(scenario())
    assert received == ENABLE + command_frame(FIRMWARE) + END
    assert firmware_version(firmware) == "V1.02.22062416"


def test_commands_outside_config_mode_are_ignored_by_the_radar():
    sim = Ld2450Simulator()
    assert sim.handle(command_frame(FIRMWARE)) == b""
    assert sim.handle(ENABLE) == ENABLE_ACK
    assert sim.handle(command_frame(FIRMWARE)) == FIRMWARE_ACK
    assert sim.handle(END) == END_ACK
    assert sim.handle(command_frame(0x0090)) == b""


def test_no_ack_names_port_and_command_and_says_what_was_seen():
    async def scenario(deaf_with_reports: bool):
        async with PtyLd2450(Ld2450Simulator()) as pty:
            pty.sim.deaf = True
            channel = await channel_on(pty, timeout=0.05)
            if deaf_with_reports:
                pty.send_report(0.0)
            with pytest.raises(DriverError) as caught:
                async with channel.config_mode():
                    pass
            await channel.transport.close()
            return str(caught.value), pty.received

    message, received = run(scenario(False))
    assert message.startswith("LD2450 on /dev/pts/") and "no ACK to enable configuration " \
        "(0x00FF) within 0.05s, 2 attempts" in message
    assert "nothing arrived" in message and received == ENABLE + ENABLE  # re-sent once
    message, _ = run(scenario(True))
    assert "report frames arrive, so the radar's TX works" in message


def test_wrong_baud_rate_hint():
    async def scenario():
        async with PtyLd2450(Ld2450Simulator()) as pty:
            pty.sim.deaf = True
            channel = await channel_on(pty, timeout=0.05)
            pty.emit(b"\x80\x00\xf8" * 10)  # what 256000-baud frames look like at 115200
            with pytest.raises(DriverError, match="30 bytes arrived but no valid frame: wrong "
                               "baud rate"):
                await channel.command(ENABLE_CONFIG, b"\x01\x00", what="enable configuration")
            await channel.transport.close()

    run(scenario())


def test_a_refused_command_is_an_error_with_its_status():
    async def scenario():
        async with PtyLd2450(Ld2450Simulator()) as pty:
            channel = await channel_on(pty)
            with pytest.raises(DriverError, match=r"refused set zone filter \(0x00C2\): status "
                               "1"):
                async with channel.config_mode():
                    await channel.command(0x00C2, b"\x07\x00", what="set zone filter")
            await asyncio.sleep(0.02)
            assert not pty.sim.config_mode  # end-config went out on the way out
            await channel.transport.close()

    run(scenario())


def test_late_acks_of_other_commands_and_reports_in_between_are_sorted():
    async def scenario():
        sim = Ld2450Simulator(reports_in_config_mode=True)
        async with PtyLd2450(sim) as pty:
            channel = await channel_on(pty)
            pty.emit(END_ACK + REPORT + b"\x00garbage")  # a stale ACK, a report, noise
            async with channel.config_mode():
                pty.send_report(0.0)
                await channel.command(FIRMWARE, what="read firmware version")
            await channel.transport.close()
            return [item for _, item in channel.inbox]

    inbox = run(scenario())
    assert inbox[0] == REPORT_ITEM and all(isinstance(i, Ld2450Report) for i in inbox)


# --- property: the parsers against an independent window scan -------------------------------

def valid_at(stream: bytes, i: int) -> tuple[int, object] | None:
    """The valid frame starting at ``i`` (size, item), checked without the parser."""
    w = stream[i:]
    if w[:4] == CMD_H and len(w) >= 6:
        length = w[4] | w[5] << 8
        size = 10 + length
        if 2 <= length <= 64 and len(w) >= size and w[size - 4:size] == CMD_F:
            word = w[6] | w[7] << 8
            if word & 0x0100 and length >= 4:
                return size, Ack(word & 0xFEFF, w[8] | w[9] << 8, bytes(w[10:size - 4]))
            return None
    if w[:4] == H("AA FF 03 00") and len(w) >= 30 and w[28:30] == H("55 CC"):
        targets = []
        for k in range(3):
            block = w[4 + 8 * k:12 + 8 * k]
            if any(block):
                x, y, s, r = struct.unpack("<4H", block)
                value = [v & 0x7FFF if v & 0x8000 else -(v & 0x7FFF) for v in (x, y, s)]
                targets.append(Target(*value, r))
        return 30, Ld2450Report(tuple(targets))
    if w[:4] == H("F4 F3 F2 F1") and len(w) >= 6:
        length = w[4] | w[5] << 8
        size = 10 + length
        if 13 <= length <= 64 and len(w) >= size and w[size - 4:size] == H("F8 F7 F6 F5"):
            item = decode_ld2410(bytes(w[:size]))
            return None if isinstance(item, FrameError) else (size, item)
    return None


CMD_H, CMD_F = H("FD FC FB FA"), H("04 03 02 01")


def leftmost_first(stream: bytes) -> list:
    out, i = [], 0
    while i < len(stream):
        found = valid_at(stream, i)
        if found is None:
            i += 1
        else:
            out.append(found[1])
            i += found[0]
    return out


HEADER_RICH = H("FD FC FB FA AA FF 03 00 F4 F3 F2 F1 04 03 02 01 55 CC F8 F7 F6 F5 00 0D 23")


def make_chunk(kind: int, blob: bytes, radar: str) -> tuple[bool, bytes]:
    """(intact, bytes) of one chunk drawn from a kind byte and some drawn bytes."""
    p = blob.ljust(12, b"\x00")
    if radar == "ld2450":
        targets = [None if p[k] % 3 == 0 else
                   Target(p[k + 3] * 40 - 5000, p[k + 6] * 30, p[k + 9] - 128, 320)
                   for k in range(3)]
        frame = Ld2450Simulator.encode_report(targets)
    else:
        sim = Ld2410Simulator(lambda t: Ld2410Target(p[0] % 4, p[1] * 3, p[2] % 101,
                                                     p[3] * 3, p[4] % 101, p[5] * 3),
                              extra=bytes(p[6] % 3))
        sim.engineering = bool(p[7] % 2)
        frame = sim.report(0.0) or b""
    kind %= 7
    if kind == 0:
        return True, frame
    if kind == 1:
        return True, ack_frame(p[0], p[1] % 2, bytes(p[2:2 + p[3] % 10]))
    if kind == 2:
        return False, blob
    if kind == 3:
        return False, bytes(HEADER_RICH[b % len(HEADER_RICH)] for b in blob)
    mutable = bytearray(frame)
    if kind == 4:  # one to three bit flips
        for bit in {b % (len(frame) * 8) for b in p[8:9 + p[9] % 3]}:
            mutable[bit // 8] ^= 1 << (bit % 8)
    elif kind == 5:
        mutable[p[8] % len(frame):p[8] % len(frame)] = p[9:10 + p[10] % 3]
    else:
        del mutable[1 + p[8] % (len(frame) - 1):]
    return False, bytes(mutable)


def decode_program(program: bytes, radar: str) -> tuple[bytes, list[bool], list[int], int]:
    chunks, i = [], 1
    while i < len(program):
        size = program[i + 1] % 24 if i + 1 < len(program) else 0
        chunks.append(make_chunk(program[i], program[i + 2:i + 2 + size], radar))
        i += 2 + size
    offsets, at = [], 0
    for _, data in chunks:
        offsets.append(at)
        at += len(data)
    return (b"".join(d for _, d in chunks), [ok for ok, _ in chunks], offsets,
            1 + (program[0] if program else 0) % 17)


def check_parser(program: bytes, radar: str) -> None:
    stream, intact, offsets, piece = decode_program(program, radar)
    parser = ld2450_parser() if radar == "ld2450" else ld2410_parser()
    got = []
    for start in range(0, len(stream), piece):
        got += parser.feed(stream[start:start + piece], 0.0)
    got += parser.feed(b"", 1.0)  # silence: what is still held is judged on its own
    items = [item for item in got if not isinstance(item, FrameError)]
    assert items == leftmost_first(stream)
    # while every chunk so far was intact, no frame is lost
    for k, ok in enumerate(intact):
        if not ok:
            break
        found = valid_at(stream, offsets[k])
        assert found is not None and found[1] in items
    assert all(str(e).startswith(("command", "ACK", "LD24", "partial")) for e in got
               if isinstance(e, FrameError))


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None)
@given(program=st.binary(min_size=24, max_size=120))
def test_ld2450_stream_parser_finds_exactly_the_valid_frames(program):
    check_parser(program, "ld2450")


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None)
@given(program=st.binary(min_size=24, max_size=120))
def test_ld2410_stream_parser_finds_exactly_the_valid_frames(program):
    check_parser(program, "ld2410")
