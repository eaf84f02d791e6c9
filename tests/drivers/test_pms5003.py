"""PMS5003: byte-exact protocol, parser faults, simulator, and the driver through a real pty."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.pms5003 import (
    CMD_MODE,
    CMD_READ,
    CMD_SLEEP,
    LAYOUTS,
    Pms5003,
    Pms5003Config,
    Pms5003Frame,
    Pms5003Parser,
    frame_values,
    pms_command,
    sum16,
)
from edgeagent.drivers.sim.pms5003 import Pms5003Simulator, PtyPms5003, conformance_driver

# real capture, sensors.md §2.2
GOLDEN = bytes.fromhex("42 4D 00 1C 00 00 00 08 00 08 00 00 00 08 00 08 "
                       "00 D2 00 46 00 2D 00 1E 00 00 00 00 97 00 02 C5")
GOLDEN_FRAME = Pms5003Frame(0, 8, 8, 0, 8, 8, 210, 70, 45, 30, 0, 0, 0x9700)
PASSIVE = bytes.fromhex("42 4D E1 00 00 01 70")
ACTIVE = bytes.fromhex("42 4D E1 00 01 01 71")
READ = bytes.fromhex("42 4D E2 00 00 01 71")
SLEEP = bytes.fromhex("42 4D E4 00 00 01 73")
WAKE = bytes.fromhex("42 4D E4 00 01 01 74")
PASSIVE_ACK = bytes.fromhex("42 4D 00 04 E1 00 01 74")

# a high-concentration frame where CF=1 and atmospheric differ
HIGH = dict(pm_cf1=(40, 61, 75), pm_atm=(33, 50, 60), counts=(6000, 1800, 350, 45, 7, 3))
HIGH_FRAME = Pms5003Simulator.encode_frame(**HIGH)


def errors(items: list) -> list[str]:
    return [str(item) for item in items if isinstance(item, FrameError)]


def frames(items: list) -> list[Pms5003Frame]:
    return [item for item in items if isinstance(item, Pms5003Frame)]


# --- byte-exact protocol ---------------------------------------------------------------------

def test_golden_capture_decodes_to_the_documented_values():
    assert Pms5003Parser().feed(GOLDEN, 0.0) == [GOLDEN_FRAME]


@pytest.mark.parametrize(("cmd", "data", "wire"), [
    (CMD_MODE, 0, PASSIVE), (CMD_MODE, 1, ACTIVE), (CMD_READ, 0, READ),
    (CMD_SLEEP, 0, SLEEP), (CMD_SLEEP, 1, WAKE)])
def test_commands_are_byte_exact(cmd, data, wire):
    assert pms_command(cmd, data) == wire


def test_simulator_encodes_the_golden_capture():
    assert Pms5003Simulator.encode_frame((0, 8, 8), (0, 8, 8), (210, 70, 45, 30, 0, 0)) == GOLDEN


# --- parser faults ---------------------------------------------------------------------------

@pytest.mark.parametrize("cut", range(1, len(GOLDEN)))
def test_frame_split_at_every_position(cut):
    parser = Pms5003Parser()
    assert parser.feed(GOLDEN[:cut], 0.0) == []
    assert parser.feed(GOLDEN[cut:], 0.1) == [GOLDEN_FRAME]


def test_frame_fed_byte_by_byte():
    parser = Pms5003Parser()
    out = [item for byte in GOLDEN for item in parser.feed(bytes([byte]), 0.0)]
    assert out == [GOLDEN_FRAME]


def test_back_to_back_frames_and_an_ack_between():
    out = Pms5003Parser().feed(GOLDEN + PASSIVE_ACK + HIGH_FRAME + GOLDEN, 0.0)
    assert out == [GOLDEN_FRAME, Pms5003Parser().feed(HIGH_FRAME, 0)[0], GOLDEN_FRAME]


def test_leading_garbage_is_skipped_silently():
    assert Pms5003Parser().feed(b"\x00\xff\x13\x42\x42\x10" + GOLDEN, 0.0) == [GOLDEN_FRAME]


def test_garbage_containing_a_header_costs_an_error_not_the_frame():
    out = Pms5003Parser().feed(b"\x42\x4d\x42\x4d" + GOLDEN, 0.0)
    assert frames(out) == [GOLDEN_FRAME]
    assert errors(out) and all("length" in e for e in errors(out))


def test_frame_starting_inside_a_rejected_frame_is_recovered():
    # a fake header claims 28 bytes and swallows the real frame's start
    out = Pms5003Parser().feed(b"\x42\x4d\x00\x1c" + GOLDEN, 0.0)
    assert len(errors(out)) == 1 and "checksum" in errors(out)[0]
    assert out[-1] == GOLDEN_FRAME


def test_bad_checksum_is_reported_and_the_next_frame_is_fine():
    parser = Pms5003Parser()
    out = parser.feed(Pms5003Simulator.corrupt(GOLDEN), 0.0)
    assert len(out) == 1 and "bad checksum" in str(out[0])
    assert parser.feed(GOLDEN, 0.1) == [GOLDEN_FRAME]


def test_bad_length_is_rejected_as_soon_as_the_length_field_is_complete():
    parser = Pms5003Parser()
    assert parser.feed(b"\x42\x4d\x00", 0.0) == []
    out = parser.feed(b"\x1d", 0.0)
    assert len(out) == 1 and "bad frame length 29" in str(out[0])
    assert parser.feed(GOLDEN, 0.0) == [GOLDEN_FRAME]


def test_truncated_frame_followed_by_a_good_frame():
    out = Pms5003Parser().feed(Pms5003Simulator.partial(GOLDEN, 20) + GOLDEN, 0.0)
    assert len(errors(out)) == 1
    assert out[-1] == GOLDEN_FRAME


def test_stall_mid_frame_drops_the_partial_frame():
    parser = Pms5003Parser()
    assert parser.feed(GOLDEN[:10], 10.0) == []
    out = parser.feed(GOLDEN[10:], 10.6)
    assert len(out) == 1 and "partial frame" in str(out[0])
    assert parser.feed(GOLDEN, 10.7) == [GOLDEN_FRAME]


def test_short_pause_mid_frame_is_tolerated():
    parser = Pms5003Parser()
    parser.feed(GOLDEN[:10], 10.0)
    assert parser.feed(GOLDEN[10:], 10.45) == [GOLDEN_FRAME]


def test_stall_is_noticed_without_new_bytes():
    parser = Pms5003Parser()
    parser.feed(GOLDEN[:10], 10.0)
    assert parser.feed(b"", 10.2) == []
    out = parser.feed(b"", 10.6)
    assert len(out) == 1 and "partial frame" in str(out[0])
    assert parser.feed(b"", 11.0) == []


def test_all_zero_counts_with_pm10_is_implausible():
    bad = Pms5003Simulator.encode_frame((0, 0, 3), (0, 0, 3), (0, 0, 0, 0, 0, 0))
    out = Pms5003Parser().feed(bad + GOLDEN, 0.0)
    assert "implausible" in str(out[0]) and out[1:] == [GOLDEN_FRAME]


def test_clean_air_with_all_zeros_is_plausible():
    clean = Pms5003Simulator.encode_frame((0, 0, 0), (0, 0, 0), (0, 0, 0, 0, 0, 0))
    assert frames(Pms5003Parser().feed(clean, 0.0))


def test_random_bytes_never_raise_and_the_parser_resynchronises():
    rng = random.Random(5003)
    parser = Pms5003Parser()
    now = 0.0
    for _ in range(2000):
        # bias towards header bytes so deep parser states are reached
        chunk = bytes(rng.choice((0x42, 0x4D, 0x00, 0x1C, 0x04, rng.randrange(256)))
                      for _ in range(rng.randrange(1, 40)))
        now += rng.choice((0.01, 0.1, 0.6))
        for item in parser.feed(chunk, now):
            assert isinstance(item, Pms5003Frame | FrameError)
    assert parser.feed(GOLDEN, now)[-1] == GOLDEN_FRAME


# --- simulator -------------------------------------------------------------------------------

def test_simulator_acks_mode_and_answers_read_only_in_passive_mode():
    sim = Pms5003Simulator()
    sim.set_values(**HIGH)
    assert sim.mode == "active"
    assert sim.handle(READ) == b""
    assert sim.handle(PASSIVE) == PASSIVE_ACK
    assert sim.mode == "passive" and sim.active_frame() is None
    assert sim.handle(READ) == HIGH_FRAME
    assert sim.handle(ACTIVE) == bytes.fromhex("42 4D 00 04 E1 01 01 75")
    assert sim.active_frame() == HIGH_FRAME


def test_simulator_sleep_silences_and_wake_resumes():
    sim = Pms5003Simulator()
    sim.handle(PASSIVE)
    assert sim.handle(SLEEP) == bytes.fromhex("42 4D 00 04 E4 00 01 77")
    assert sim.handle(READ + ACTIVE + SLEEP) == b""
    assert sim.mode == "passive" and sim.sleeping
    assert sim.handle(WAKE) == b""
    assert not sim.sleeping
    assert len(sim.handle(READ)) == 32


def test_simulator_ignores_a_command_with_bad_checksum():
    sim = Pms5003Simulator()
    assert sim.handle(PASSIVE[:-1] + b"\x00") == b""
    assert sim.mode == "active"
    assert sim.handle(b"\x42" + PASSIVE[:3]) == b""  # stray 0x42, then a split command
    assert sim.handle(PASSIVE[3:]) == PASSIVE_ACK


def test_simulator_power_cycle_forgets_passive_mode():
    sim = Pms5003Simulator()
    sim.handle(PASSIVE)
    sim.power_cycle()
    assert sim.mode == "active" and sim.active_frame() is not None


def test_random_walk_is_seeded_and_plausible():
    a, b = Pms5003Simulator(seed=3), Pms5003Simulator(seed=3)
    stream = b"".join(a.next_frame() for _ in range(200))
    assert stream == b"".join(b.next_frame() for _ in range(200))
    out = Pms5003Parser().feed(stream, 0.0)
    assert len(frames(out)) == 200
    assert all(0 < f.pm25_cf1 <= 300 and f.pm25_atm <= f.pm25_cf1 for f in frames(out))


def test_fault_helpers():
    corrupted = Pms5003Simulator.corrupt(GOLDEN)
    assert corrupted[:-1] == GOLDEN[:-1] and corrupted[-1] != GOLDEN[-1]
    assert Pms5003Simulator.partial(GOLDEN, 5) == GOLDEN[:5]
    assert len(Pms5003Simulator.garbage(50, random.Random(1))) == 50


# --- config, streams, values -----------------------------------------------------------------

def config(**overrides) -> Pms5003Config:
    return Pms5003Config(**{**Pms5003.sample_config, **overrides})


def test_sample_config_and_defaults():
    cfg = config()
    assert (cfg.baudrate, cfg.mode, cfg.basis, cfg.warmup, cfg.read_timeout) == (
        9600, "passive", "atmospheric", 30.0, 5.0)
    assert config(warmup="0s").warmup == 0.0 and config(warmup="1min").warmup == 60.0
    with pytest.raises(ValidationError, match="9600"):
        config(baudrate=115200)
    with pytest.raises(ValidationError):
        config(port=None)


def test_streams_and_describe():
    names = [s.name for s in Pms5003.streams(config())]
    assert names == ["pm1", "pm25", "pm10"]
    specs = Pms5003.streams(config(number_concentration=True))
    assert [s.name for s in specs[3:]] == ["n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10"]
    assert {s.unit for s in specs[:3]} == {"ug/m3"} and {s.unit for s in specs[3:]} == {"/cm3"}
    assert {(s.quantity, s.kind) for s in specs} == {(QuantityClass.PARTICULATE, StatKind.LINEAR)}
    described = Pms5003(config(basis="cf1"), DriverContext(clock=FakeClock())).describe()
    assert "CF=1" in described["pm_basis"] and described["warmup"] == "30s"


def test_basis_picks_the_fields_and_counts_are_per_cm3():
    frame = Pms5003Parser().feed(HIGH_FRAME, 0.0)[0]
    assert frame_values(frame, config()) == {"pm1": 33, "pm25": 50, "pm10": 60}
    assert frame_values(frame, config(basis="cf1")) == {"pm1": 40, "pm25": 61, "pm10": 75}
    counts = frame_values(frame, config(number_concentration=True))
    assert counts == {"pm1": 33, "pm25": 50, "pm10": 60, "n0_3": 60.0, "n0_5": 18.0,
                      "n1_0": 3.5, "n2_5": 0.45, "n5_0": 0.07, "n10": 0.03}


# --- driver through a real pty ---------------------------------------------------------------

def run(scenario: Callable, timeout: float = 5.0):
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


async def wait_until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def driver_for(pty: PtyPms5003, clock: FakeClock | None = None, **overrides) -> Pms5003:
    cfg = config(port=pty.port, **{"warmup": 0, **overrides})
    return Pms5003(cfg, DriverContext(clock=clock or FakeClock()))


def test_passive_read_returns_the_simulator_values():
    async def scenario():
        async with PtyPms5003() as pty:
            pty.sim.set_values(**HIGH)
            clock = FakeClock(start_mono=500.0)
            driver = driver_for(pty, clock, basis="cf1")
            await driver.open()
            readings = await driver.read()
            await driver.close()
            await wait_until(lambda: pty.sim.sleeping)
            return readings, pty

    readings, pty = run(scenario)
    assert [(r.stream, r.value, r.t_monotonic) for r in readings] == [
        ("pm1", 40.0, 500.0), ("pm25", 61.0, 500.0), ("pm10", 75.0, 500.0)]
    assert bytes(pty.received) == WAKE + PASSIVE + READ + SLEEP


def test_open_sends_wake_then_mode_and_close_sends_sleep():
    async def scenario():
        async with PtyPms5003() as pty:
            driver = driver_for(pty, mode="active")
            await driver.open()
            await wait_until(lambda: len(pty.received) >= 14)
            sent_by_open = bytes(pty.received)
            await driver.close()
            await wait_until(lambda: pty.sim.sleeping)
            return sent_by_open, bytes(pty.received)

    sent_by_open, sent = run(scenario)
    assert sent_by_open == WAKE + ACTIVE
    assert sent == WAKE + ACTIVE + SLEEP


def test_active_mode_reads_emitted_frames_and_queues_the_second():
    async def scenario():
        async with PtyPms5003() as pty:
            driver = driver_for(pty, mode="active")
            await driver.open()
            pty.emit(GOLDEN[:7])
            pty.emit(GOLDEN[7:] + HIGH_FRAME)
            first, second = await driver.read(), await driver.read()
            await driver.close()
            return first, second, bytes(pty.received)

    first, second, sent = run(scenario)
    assert [r.value for r in first] == [0.0, 8.0, 8.0]
    assert [r.value for r in second] == [33.0, 50.0, 60.0]
    assert READ not in sent


def test_bad_frame_raises_frame_error_and_the_good_one_follows():
    async def scenario():
        async with PtyPms5003() as pty:
            driver = driver_for(pty, mode="active")
            await driver.open()
            pty.emit(b"\x00\x13" + Pms5003Simulator.corrupt(GOLDEN) + GOLDEN)
            with pytest.raises(FrameError, match="checksum"):
                await driver.read()
            good = await driver.read()
            await driver.close()
            return good

    assert [r.value for r in run(scenario)] == [0.0, 8.0, 8.0]


def test_sleeping_sensor_times_out_naming_the_port():
    async def scenario():
        async with PtyPms5003() as pty:
            driver = driver_for(pty, read_timeout=0.3)
            await driver.open()
            await driver.sleep()
            with pytest.raises(DriverError) as caught:
                await driver.read()
            await driver.close()
            return caught.value, pty.port

    error, port = run(scenario)
    assert not isinstance(error, FrameError)
    assert str(error) == (f"no data from PMS5003 on {port} for 0.3s "
                          "(check wiring TX/RX and 5 V supply)")


def test_reopen_after_power_cycle_sends_passive_mode_again():
    async def scenario():
        async with PtyPms5003() as pty:
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
    assert readings and mode == "passive"


def test_missing_port_is_a_driver_error_naming_the_port():
    driver = Pms5003(config(port="/dev/ttyPMS-missing"), DriverContext(clock=FakeClock()))
    with pytest.raises(DriverError, match="/dev/ttyPMS-missing"):
        run(driver.open)
    run(driver.close)


def test_read_before_open_and_close_twice():
    async def scenario():
        async with PtyPms5003() as pty:
            driver = driver_for(pty)
            with pytest.raises(DriverError, match="not open"):
                await driver.read()
            await driver.close()
            await driver.open()
            await driver.close()
            await driver.close()

    run(scenario)


def test_number_concentration_through_the_driver():
    async def scenario():
        async with PtyPms5003() as pty:
            pty.sim.set_values(**HIGH)
            driver = driver_for(pty, number_concentration=True)
            await driver.open()
            readings = await driver.read()
            await driver.close()
            return {r.stream: r.value for r in readings}

    values = run(scenario)
    assert values["pm25"] == 50.0 and values["n0_3"] == 60.0 and values["n10"] == 0.03


def test_conformance_hook_gives_a_working_unopened_driver():
    async def scenario():
        async with conformance_driver(FakeClock()) as driver:
            with pytest.raises(DriverError):
                await driver.read()
            await driver.open()
            readings = await driver.read()
            await driver.close()
            await driver.close()
            return readings

    readings = run(scenario)
    assert [r.stream for r in readings] == ["pm1", "pm25", "pm10"]
    assert all(r.value > 0 for r in readings)


def test_passive_mode_polls_once_per_interval_on_the_clock():
    async def scenario():
        async with PtyPms5003() as pty:
            clock = FakeClock(start_mono=100.0, auto_advance=True)
            driver = driver_for(pty, clock, interval=2.0)
            await driver.open()
            times = [(await driver.read())[0].t_monotonic for _ in range(4)]
            await driver.close()
            return times, pty

    times, pty = run(scenario)
    assert times == [100.0, 102.0, 104.0, 106.0]
    assert bytes(pty.received).count(READ) == 4


def test_coverage_interval_follows_the_mode():
    assert Pms5003.sample_interval(config(mode="passive", interval=2.0)) == 2.0
    assert Pms5003.sample_interval(config(mode="active")) == 2.3  # the sensor's own cadence
    assert Pms5003.sample_interval(config(mode="active", interval=1.0)) == 1.0


# ---- variants (sensors.md §2.2 "Variants") --------------------------------------------------
# hand-written frames, one per new layout; the comments give each field's offset

T_HAND = bytes.fromhex(  # PMS5003T, length 28, 32 bytes
    "42 4D 00 1C"                      # 0-3: "BM", length 28
    "00 05 00 0C 00 0F"                # 4-9: PM1 / PM2.5 / PM10 CF=1: 5 12 15
    "00 05 00 0C 00 0F"                # 10-15: atmospheric: 5 12 15
    "04 B0 01 90 00 50 00 0A"          # 16-23: counts > 0.3 / 0.5 / 1.0 / 2.5: 1200 400 80 10
    "FF CB"                            # 24-25: temperature s16 -53 = -5.3 °C
    "02 A2"                            # 26-27: RH 674 = 67.4 %
    "97 00"                            # 28-29: data 13
    "05 8F")                           # 30-31: sum16 of bytes 0-29
ST_HAND = bytes.fromhex(  # PMS5003ST, length 36, 40 bytes
    "42 4D 00 24"                      # 0-3: "BM", length 36
    "00 05 00 0C 00 0F 00 05 00 0C 00 0F"  # 4-15: masses CF=1, atmospheric
    "04 B0 01 90 00 50 00 0A 00 02 00 01"  # 16-27: six counts 1200 400 80 10 2 1
    "00 1E"                            # 28-29: HCHO (ignored)
    "00 EB"                            # 30-31: temperature 235 = 23.5 °C
    "01 C2"                            # 32-33: RH 450 = 45.0 %
    "00 00 97 00"                      # 34-37: reserved, last data word
    "04 F8")                           # 38-39: sum16 of bytes 0-37
P3_HAND = bytes.fromhex(  # PMS3003, length 20, 24 bytes
    "42 4D 00 14"                      # 0-3: "BM", length 20
    "00 05 00 0C 00 0F 00 05 00 0C 00 0F"  # 4-15: masses CF=1, atmospheric
    "00 00 00 00 97 00"                # 16-21: undocumented, last data word 0x9700
    "01 7A")                           # 22-23: sum16 of bytes 0-21
T_FRAME = Pms5003Frame(5, 12, 15, 5, 12, 15, 1200, 400, 80, 10, None, None, 0x9700, -53, 674)
ST_FRAME = Pms5003Frame(5, 12, 15, 5, 12, 15, 1200, 400, 80, 10, 2, 1, 0x9700, 235, 450)
P3_FRAME = Pms5003Frame(5, 12, 15, 5, 12, 15, None, None, None, None, None, None, 0x9700)
MASS = dict(pm_cf1=(5, 12, 15), pm_atm=(5, 12, 15))


def test_hand_frames_match_the_documented_offsets_and_checksums():
    for raw, size in ((T_HAND, 32), (ST_HAND, 40), (P3_HAND, 24)):
        assert len(raw) == size and raw[:2] == b"BM"
        assert int.from_bytes(raw[2:4], "big") == size - 4
        assert sum16(raw[:-2]) == raw[-2:]
    assert int.from_bytes(T_HAND[24:26], "big", signed=True) == -53
    assert int.from_bytes(T_HAND[26:28], "big") == 674
    assert int.from_bytes(ST_HAND[30:32], "big") == 235
    assert int.from_bytes(ST_HAND[32:34], "big") == 450
    assert {m: LAYOUTS[m].length for m in LAYOUTS} == {
        "pms5003": 28, "pms7003": 28, "pms1003": 28, "pmsa003": 28, "pms5003s": 28,
        "pms5003t": 28, "pms3003": 20, "pms5003st": 36}


def test_simulator_encodes_the_hand_frames_byte_for_byte():
    enc = Pms5003Simulator.encode_variant
    assert enc("pms5003t", **MASS, counts=(1200, 400, 80, 10), temperature=-53,
               humidity=674) == T_HAND
    assert enc("pms5003st", **MASS, counts=(1200, 400, 80, 10, 2, 1), hcho=30,
               temperature=235, humidity=450) == ST_HAND
    assert enc("pms3003", **MASS) == P3_HAND
    assert enc("pms5003", (0, 8, 8), (0, 8, 8), (210, 70, 45, 30, 0, 0)) == GOLDEN
    with pytest.raises(ValueError, match="4 counts"):
        enc("pms5003t", **MASS, counts=(1, 1, 1, 1, 1, 1))


@pytest.mark.parametrize(("model", "raw", "frame"), [
    ("pms5003t", T_HAND, T_FRAME), ("pms5003st", ST_HAND, ST_FRAME),
    ("pms3003", P3_HAND, P3_FRAME)], ids=["5003t", "5003st", "3003"])
def test_hand_frames_decode_per_model(model, raw, frame):
    assert Pms5003Parser(model).feed(raw, 0.0) == [frame]
    parser = Pms5003Parser(model)
    assert [item for b in raw for item in parser.feed(bytes([b]), 0.0)] == [frame]


def test_t_and_rh_values_and_negative_temperature():
    t = config(model="pms5003t", number_concentration=True)
    assert frame_values(T_FRAME, t) == {
        "pm1": 5.0, "pm25": 12.0, "pm10": 15.0, "n0_3": 12.0, "n0_5": 4.0, "n1_0": 0.8,
        "n2_5": 0.1, "temperature": -5.3, "relativeHumidity": 67.4}
    st = config(model="pms5003st")
    assert frame_values(ST_FRAME, st) == {"pm1": 5.0, "pm25": 12.0, "pm10": 15.0,
                                          "temperature": 23.5, "relativeHumidity": 45.0}
    for model in ("pms5003t", "pms5003st"):
        sim = Pms5003Simulator(variant=model)
        counts = (1200, 400, 80, 10, 2, 1)
        for raw_t in (-400, -1, 0, 1, 850):  # -40.0 … 85.0 °C, s16 on the wire
            sim.set_values(**MASS, counts=counts, temperature=raw_t, humidity=999)
            (frame,) = Pms5003Parser(model).feed(sim.next_frame(), 0.0)
            values = frame_values(frame, config(model=model))
            assert values["temperature"] == raw_t / 10 and values["relativeHumidity"] == 99.9


def test_model_less_parser_reads_5003t_words_as_counts_and_frame_values_reinterprets():
    # the T frame's s16 -5.3 °C is 65 483 as a count: implausible for a PMS5003 …
    out = Pms5003Parser().feed(T_HAND, 0.0)
    assert len(out) == 1 and "cumulative" in str(out[0])
    # … so the configured model matters; a frame plausible either way is reinterpreted
    ambiguous = Pms5003Simulator.encode_variant("pms5003t", **MASS, counts=(900, 400, 300, 250),
                                                temperature=215, humidity=180)
    (frame,) = Pms5003Parser().feed(ambiguous, 0.0)
    assert (frame.n5_0, frame.n10) == (215, 180)
    assert frame_values(frame, config(model="pms5003t"))["temperature"] == 21.5
    assert Pms5003Parser().feed(ST_HAND + P3_HAND, 0.0) == [ST_FRAME, P3_FRAME]


@pytest.mark.parametrize(("model", "wrong", "length"), [
    ("pms5003", ST_HAND, 36), ("pms5003t", P3_HAND, 20), ("pms5003st", GOLDEN, 28),
    ("pms3003", GOLDEN, 28), ("pms3003", PASSIVE_ACK, 4)],
    ids=["5003-got-st", "5003t-got-3003", "5003st-got-5003", "3003-got-5003", "3003-got-ack"])
def test_length_not_matching_the_model_is_a_frame_error_then_recovery(model, wrong, length):
    good = {"pms5003": GOLDEN, "pms5003t": T_HAND, "pms5003st": ST_HAND, "pms3003": P3_HAND}
    parser = Pms5003Parser(model)
    out = parser.feed(wrong + good[model], 0.0)
    assert len(out) == 2 and isinstance(out[0], FrameError)
    assert f"bad frame length {length} for model {model}" in str(out[0])
    assert str(LAYOUTS[model].length) in str(out[0])
    assert out[1] == Pms5003Parser(model).feed(good[model], 0.0)[0]
    # the rejection happens at the length field: a header alone costs the same error
    again = parser.feed(wrong[:4] + good[model], 1.0)
    assert [str(item) for item in again[:1]] == [str(out[0])] and again[1:] == out[1:]


def test_acks_are_accepted_by_models_with_commands():
    assert Pms5003Parser("pms5003t").feed(PASSIVE_ACK + T_HAND, 0.0) == [T_FRAME]


def test_plausibility_per_variant():
    enc = Pms5003Simulator.encode_variant
    # PMS3003: no counts, so mass without counts is fine; the mass rules still hold
    assert Pms5003Parser("pms3003").feed(enc("pms3003", (0, 0, 3), (0, 0, 3)), 0.0)[0].pm10_cf1 == 3
    out = Pms5003Parser("pms3003").feed(enc("pms3003", (9, 3, 4), (1, 2, 3)), 0.0)
    assert "PM1 ≤ PM2.5 ≤ PM10" in str(out[0])
    # PMS5003T: cumulative over the four counts it sends; zero counts with PM10 still bad
    bad = enc("pms5003t", (0, 0, 3), (0, 0, 3), (0, 0, 0, 0), temperature=200, humidity=400)
    assert "all particle counts are 0" in str(Pms5003Parser("pms5003t").feed(bad, 0.0)[0])
    grows = enc("pms5003t", **MASS, counts=(10, 20, 5, 1), temperature=200, humidity=400)
    assert "cumulative" in str(Pms5003Parser("pms5003t").feed(grows, 0.0)[0])
    wet = enc("pms5003st", **MASS, counts=(6, 5, 4, 3, 2, 1), temperature=200, humidity=1001)
    assert "above 100 %" in str(Pms5003Parser("pms5003st").feed(wet, 0.0)[0])


@pytest.mark.parametrize("model", sorted(LAYOUTS))
def test_simulator_random_walk_per_variant_is_byte_exact_and_plausible(model):
    sim = Pms5003Simulator(seed=3, variant=model)
    frames_out = [sim.next_frame() for _ in range(200)]
    assert {len(f) for f in frames_out} == {LAYOUTS[model].length + 4}
    assert all(sum16(f[:-2]) == f[-2:] for f in frames_out)
    decoded = Pms5003Parser(model).feed(b"".join(frames_out), 0.0)
    assert len(frames(decoded)) == 200
    has_climate = LAYOUTS[model].climate is not None
    assert all((f.temperature is not None) == has_climate for f in frames(decoded))


def test_variant_config_streams_and_describe():
    assert config().model == "pms5003"
    with pytest.raises(ValidationError, match="no particle counts"):
        config(model="pms3003", number_concentration=True)
    with pytest.raises(ValidationError, match="no commands"):
        config(model="pms3003", mode="passive")
    with pytest.raises(ValidationError):
        config(model="pms9003")
    t = Pms5003.streams(config(model="pms5003t", number_concentration=True))
    assert [s.name for s in t] == ["pm1", "pm25", "pm10", "n0_3", "n0_5", "n1_0", "n2_5",
                                   "temperature", "relativeHumidity"]
    assert [(s.unit, s.quantity) for s in t[-2:]] == [
        ("Cel", QuantityClass.CLIMATE), ("%RH", QuantityClass.CLIMATE)]
    st = Pms5003.streams(config(model="pms5003st", number_concentration=True))
    assert [s.name for s in st][3:] == ["n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10",
                                        "temperature", "relativeHumidity"]
    assert [s.name for s in Pms5003.streams(config(model="pms5003s"))] == ["pm1", "pm25", "pm10"]
    assert [s.name for s in Pms5003.streams(config(model="pms3003"))] == ["pm1", "pm25", "pm10"]
    described = Pms5003(config(model="pms5003st"), DriverContext(clock=FakeClock())).describe()
    assert (described["model"], described["variant"]) == ("Plantower PMS5003", "pms5003st")
    p3 = Pms5003(config(model="pms3003"), DriverContext(clock=FakeClock()))
    assert p3.describe()["mode"] == "active" and p3.describe()["variant"] == "pms3003"
    assert Pms5003.sample_interval(config(model="pms3003")) == 2.3


def test_pms3003_simulator_ignores_commands():
    sim = Pms5003Simulator(variant="pms3003")
    assert sim.handle(PASSIVE + SLEEP + READ + WAKE) == b""
    assert (sim.mode, sim.sleeping) == ("active", False)
    assert len(sim.active_frame()) == 24


def test_pms3003_driver_sends_no_command_and_reads_the_stream():
    async def scenario():
        async with PtyPms5003(Pms5003Simulator(variant="pms3003")) as pty:
            driver = driver_for(pty, model="pms3003")
            await driver.open()
            pty.emit(P3_HAND + GOLDEN + P3_HAND)
            first = await driver.read()
            with pytest.raises(FrameError, match="for model pms3003"):
                await driver.read()
            second = await driver.read()
            with pytest.raises(DriverError, match="no commands"):
                await driver.sleep()
            await driver.wake()
            await driver.close()
            return first, second, bytes(pty.received)

    first, second, sent = run(scenario)
    assert [(r.stream, r.value) for r in first] == [("pm1", 5.0), ("pm25", 12.0), ("pm10", 15.0)]
    assert [r.value for r in second] == [5.0, 12.0, 15.0]
    assert sent == b""


def test_pms5003t_driver_polls_and_publishes_negative_temperature():
    async def scenario():
        async with PtyPms5003(Pms5003Simulator(variant="pms5003t")) as pty:
            pty.sim.set_values(**MASS, counts=(1200, 400, 80, 10), temperature=-53, humidity=674)
            driver = driver_for(pty, model="pms5003t")
            await driver.open()
            readings = await driver.read()
            await driver.close()
            await wait_until(lambda: pty.sim.sleeping)
            return readings, bytes(pty.received)

    readings, sent = run(scenario)
    assert {r.stream: r.value for r in readings} == {
        "pm1": 5.0, "pm25": 12.0, "pm10": 15.0, "temperature": -5.3, "relativeHumidity": 67.4}
    assert sent == WAKE + PASSIVE + READ + SLEEP


def test_pms5003st_driver_rejects_a_32_byte_frame_then_recovers():
    async def scenario():
        async with PtyPms5003(Pms5003Simulator(variant="pms5003st")) as pty:
            driver = driver_for(pty, model="pms5003st", mode="active")
            await driver.open()
            pty.emit(GOLDEN + ST_HAND)
            with pytest.raises(FrameError, match="length 28 for model pms5003st"):
                await driver.read()
            good = await driver.read()
            await driver.close()
            return good

    assert {r.stream: r.value for r in run(scenario)} == {
        "pm1": 5.0, "pm25": 12.0, "pm10": 15.0, "temperature": 23.5, "relativeHumidity": 45.0}


def test_a_corrupted_answer_to_a_poll_is_reported_quickly():
    async def scenario():
        async with PtyPms5003() as pty:
            clock = FakeClock(auto_advance=True)
            driver = driver_for(pty, clock, read_timeout=30)
            await driver.open()
            await wait_until(lambda: len(pty.received) >= 14)  # wake + passive mode taken
            pty.sim.sleeping = True  # the poll goes unanswered: only the bad frame arrives
            pty.emit(Pms5003Simulator.corrupt(pty.sim.next_frame()))
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(FrameError, match="bad checksum"):
                await driver.read()
            waited = loop.time() - started
            await driver.close()
            return waited

    assert run(scenario, timeout=40) < 5  # ~0.2 s, not the 30 s read timeout
