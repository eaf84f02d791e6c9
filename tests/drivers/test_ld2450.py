"""LD2450: report decoding, zone filter encoding, simulator, the driver through a real pty,
counting, health and golden cases."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import ValidationError

import golden
from edgeagent.clock import FakeClock
from edgeagent.counting import PositionCounter, counting_readings
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.hilink import (
    ENABLE_CONFIG,
    END_CONFIG,
    FIRMWARE,
    MAC_ADDRESS,
    RESTART,
    SET_BAUD,
    Ack,
    ack_frame,
    command_frame,
)
from edgeagent.drivers.ld2450 import (
    MULTI_TARGET,
    QUERY_TRACKING,
    QUERY_ZONES,
    SET_ZONES,
    SINGLE_TARGET,
    Ld2450,
    Ld2450Config,
    Ld2450Report,
    Target,
    ZoneFilter,
    decode_value,
    decode_zones,
    encode_value,
    encode_zones,
    ld2450_parser,
    positions_of,
    radar_counting,
)
from edgeagent.drivers.sim.ld2450 import Ld2450Simulator, PtyLd2450, walkers
from golden import case_names, load_case, matches, parsed_both_ways

H = bytes.fromhex
EXAMPLE = H("AA FF 03 00 0E 03 B1 86 10 00 40 01") + bytes(16) + H("55 CC")
ENABLE = command_frame(ENABLE_CONFIG, b"\x01\x00")
FIRMWARE_ACK = H("FD FC FB FA 0C 00 A0 01 00 00 00 00 02 01 16 24 06 22 04 03 02 01")
MAC_ACK = H("FD FC FB FA 0A 00 A5 01 00 00 8F 27 2E B8 0F 65 04 03 02 01")
LINE = {"line": {"start": [-1.5, 2.0], "end": [1.5, 2.0]}}


def config(**overrides) -> Ld2450Config:
    return Ld2450Config.model_validate({"id": "entrance", "driver": "ld2450",
                                        "port": "/dev/ttyAMA0", **overrides})


# --- decoding: the ✔ examples of sensors.md §5.5 --------------------------------------------

def test_datasheet_report_example():
    assert ld2450_parser().feed(EXAMPLE, 0.0) == [
        Ld2450Report((Target(x=-782, y=1713, speed=-16, resolution=320),))]


def test_simulator_encodes_the_datasheet_example():
    assert Ld2450Simulator.encode_report([Target(-782, 1713, -16, 320)]) == EXAMPLE


@pytest.mark.parametrize(("raw", "value"), [(0x030E, -782), (0x86B1, 1713), (0x0010, -16),
                                            (0x8000, 0), (0x0000, 0), (0xFFFF, 32767),
                                            (0x7FFF, -32767)])
def test_inverted_sign_magnitude(raw, value):
    assert decode_value(raw) == value
    if raw != 0x0000:
        assert encode_value(value) == raw
    with pytest.raises(ValueError):
        encode_value(40_000)


def test_zone_value_is_plain_twos_complement_not_the_report_encoding():
    value = encode_zones(1, [(1000, 1000, -1000, 5000)])
    assert value[2:10] == H("E8 03 E8 03 18 FC 88 13")  # the datasheet region
    assert len(value) == 26 and value[:2] == b"\x01\x00" and value[10:] == bytes(16)
    assert decode_zones(value) == (1, [(1000, 1000, -1000, 5000)])
    # the report decoder would read 0xFC18 as +31768 mm: two decoders are needed
    assert decode_value(0xFC18) == 31768
    with pytest.raises(ValueError, match="26"):
        decode_zones(bytes(10))


def test_zone_filter_config_in_metres_and_invert_x():
    zone = ZoneFilter(mode="include", regions=[(1.0, 1.0, -1.0, 5.0)])
    assert zone.wire_value(invert_x=False)[2:10] == H("E8 03 E8 03 18 FC 88 13")
    # with invert_x the config is in the mirrored convention: x goes back negated
    assert zone.wire_value(invert_x=True)[2:10] == H("18 FC E8 03 E8 03 88 13")
    assert ZoneFilter(mode="off").wire_value(False) == bytes(26)
    assert ZoneFilter(mode="exclude", regions=[(0, 0, 1, 1)]).wire_value(False)[:2] == b"\x02\x00"


@pytest.mark.parametrize(("entry", "message"), [
    ({"mode": "include"}, "needs at least one region"),
    ({"mode": "off", "regions": [[0, 0, 1, 1]]}, "mode off takes no regions"),
    ({"mode": "include", "regions": [[0, 0, 40, 1]]}, "within ±32.767 m"),
    ({"mode": "include", "regions": [[1, 0, 1, 3]]}, "corners must differ"),
    ({"mode": "include", "regions": [[0, 0, 1, 1]] * 4}, "at most 3"),
    ({"mode": "inside", "regions": [[0, 0, 1, 1]]}, "'include', 'exclude' or 'off'"),
])
def test_zone_filter_errors(entry, message):
    with pytest.raises(ValidationError, match=message):
        config(zone_filter=entry)


def test_positions_in_metres_and_invert_x():
    report = Ld2450Report((Target(-782, 1713, -16, 320),))
    assert positions_of(report, False) == [(-0.782, 1.713)]
    assert positions_of(report, True) == [(0.782, 1.713)]


# --- config and streams ----------------------------------------------------------------------

def test_defaults():
    cfg = config()
    assert (cfg.baudrate, cfg.interval, cfg.invert_x, cfg.zone_filter, cfg.counting.line) == (
        256_000, 0.1, False, None, None)
    assert Ld2450.sample_interval(cfg) == 0.1
    with pytest.raises(ValidationError, match="256000"):
        config(baudrate=250_000)
    with pytest.raises(ValidationError, match="Extra inputs"):
        config(counting={"lines": []})


def test_streams_without_a_line_are_occupancy_only():
    specs = Ld2450.streams(config())
    assert [s.name for s in specs] == ["occupancy"]
    (occupancy,) = specs
    assert (occupancy.unit, occupancy.quantity, occupancy.kind, occupancy.statistics) == (
        "count", QuantityClass.PEOPLE_COUNT, StatKind.OCCUPANCY, ("mean", "max"))
    assert "at most 3" in occupancy.description


def test_streams_with_line_and_zones():
    cfg = config(counting={**LINE, "zones": [{"name": "door", "rect": [-1, 0, 1, 2]}]})
    specs = {s.name: s for s in Ld2450.streams(cfg)}
    assert list(specs) == ["peopleIn", "peopleOut", "occupancy", "occupancy_door"]
    assert specs["peopleIn"].kind is StatKind.COUNTER
    assert specs["occupancy_door"].statistics == ("max",)
    assert "most people at once in zone door" in specs["occupancy_door"].description
    assert all("at most 3" in s.description for s in specs.values())


def test_readings_of_one_frame():
    cfg = config(counting={**LINE, "zones": [{"name": "door", "rect": [-1, 0, 1, 2]}]})
    counter = PositionCounter(radar_counting(cfg.counting))
    readings = counting_readings(cfg.counting, counter.step([(0.0, 1.0), (2.0, 3.0)]), 5.0)
    assert {r.stream: r.value for r in readings} == {
        "peopleIn": 0, "peopleOut": 0, "occupancy": 2, "occupancy_door": 1}
    assert {r.t_monotonic for r in readings} == {5.0}


# --- simulator -------------------------------------------------------------------------------

def in_config(sim: Ld2450Simulator) -> Ld2450Simulator:
    sim.handle(ENABLE)
    return sim


def test_simulator_firmware_and_mac_acks_are_the_datasheet_examples():
    sim = in_config(Ld2450Simulator())
    assert sim.handle(command_frame(FIRMWARE)) == FIRMWARE_ACK
    assert sim.handle(command_frame(MAC_ADDRESS, b"\x01\x00")) == MAC_ACK


def test_simulator_ignores_commands_outside_config_mode():
    sim = Ld2450Simulator()
    assert sim.handle(command_frame(SINGLE_TARGET)) == b""
    assert sim.tracking == 2
    sim.handle(ENABLE)
    assert sim.handle(command_frame(SINGLE_TARGET)) == ack_frame(SINGLE_TARGET)
    assert sim.handle(command_frame(QUERY_TRACKING)) == ack_frame(QUERY_TRACKING, 0, b"\x01\x00")
    assert sim.handle(command_frame(MULTI_TARGET)) == ack_frame(MULTI_TARGET)
    assert sim.handle(command_frame(QUERY_TRACKING)) == ack_frame(QUERY_TRACKING, 0, b"\x02\x00")
    assert sim.handle(command_frame(0x0042)) == ack_frame(0x0042, 1)  # unknown: failure


def test_simulator_pauses_reports_in_config_mode():
    sim = Ld2450Simulator()
    assert sim.report(0.0) is not None
    sim.handle(ENABLE)
    assert sim.report(0.0) is None
    sim.handle(command_frame(END_CONFIG))
    assert sim.report(0.0) is not None


def test_simulator_reports_the_nearest_three_and_single_tracking_one():
    people = [(0, 5000), (-500, 1000), (1000, 2000), (300, 3000)]
    sim = Ld2450Simulator(lambda t: people)
    (report,) = ld2450_parser().feed(sim.report(1.0), 0.0)
    assert [(t.x, t.y) for t in report.targets] == [(-500, 1000), (1000, 2000), (300, 3000)]
    in_config(sim).handle(command_frame(SINGLE_TARGET))
    sim.handle(command_frame(END_CONFIG))
    (report,) = ld2450_parser().feed(sim.report(1.0), 0.0)
    assert [(t.x, t.y) for t in report.targets] == [(-500, 1000)]


def test_simulator_zone_filter_applies_at_once_and_persists():
    sim = in_config(Ld2450Simulator(lambda t: [(0, 1000), (2000, 3000)]))
    include = encode_zones(1, [(1000, 1000, -1000, 5000)])
    assert sim.handle(command_frame(SET_ZONES, include)) == ack_frame(SET_ZONES)
    assert sim.handle(command_frame(QUERY_ZONES)) == ack_frame(QUERY_ZONES, 0, include)
    assert sim.handle(command_frame(SET_ZONES, b"\x01\x00")) == ack_frame(SET_ZONES, 1)
    sim.power_cycle()
    (report,) = ld2450_parser().feed(sim.report(1.0), 0.0)
    assert [(t.x, t.y) for t in report.targets] == [(0, 1000)]
    in_config(sim).handle(command_frame(SET_ZONES, encode_zones(2, [(1000, 1000, -1000, 5000)])))
    sim.handle(command_frame(END_CONFIG))
    (report,) = ld2450_parser().feed(sim.report(1.0), 0.0)
    assert [(t.x, t.y) for t in report.targets] == [(2000, 3000)]


def test_simulator_speed_and_walkers():
    scene = walkers([(0.0, (0.0, 1000.0), (0.0, 3000.0), 1.0)])
    assert scene(-1.0) == [] and scene(1.0) == [(0.0, 2000.0)] and scene(2.5) == []
    (report,) = ld2450_parser().feed(Ld2450Simulator(scene).report(1.0), 0.0)
    assert report.targets == (Target(0, 2000, 100, 320),)  # moving away at 100 cm/s


def test_simulator_baud_rate_changes_only_after_restart():
    sim = in_config(Ld2450Simulator())
    assert sim.handle(command_frame(SET_BAUD, b"\x05\x00")) == ack_frame(SET_BAUD)
    assert sim.baudrate == 256_000
    assert sim.handle(command_frame(SET_BAUD, b"\x09\x00")) == ack_frame(SET_BAUD, 1)
    assert sim.handle(command_frame(RESTART)) == ack_frame(RESTART)
    assert sim.baudrate == 115_200 and not sim.config_mode


def test_fault_helpers():
    assert Ld2450Simulator.truncated(EXAMPLE, 7) == EXAMPLE[:7]
    import random
    assert len(Ld2450Simulator.garbage(9, random.Random(1))) == 9


# --- the driver through a real pty -----------------------------------------------------------

def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def frames_through(driver: Ld2450, pty: PtyLd2450, clock: FakeClock, count: int,
                         *, step: float = 0.1) -> list[dict]:
    """Send ``count`` reports on the fake clock; the driver's outcome for each."""
    out = []
    for _ in range(count):
        clock.advance(step)
        pty.send_report(clock.monotonic())
        try:
            readings = await driver.read()
        except FrameError as exc:
            out.append({"error": str(exc)})
            continue
        out.append({r.stream: r.value for r in readings})
    return out


def test_open_sends_the_documented_sequence_and_reads_the_firmware():
    async def scenario():
        async with PtyLd2450(Ld2450Simulator()) as pty:
            driver = Ld2450(config(port=pty.port), DriverContext(FakeClock()))
            await driver.open()
            sent = bytes(pty.received)
            described = driver.describe()
            await driver.close()
            await driver.close()
            return sent, described, pty.sim

    sent, described, sim = run(scenario())
    assert sent == (ENABLE + command_frame(FIRMWARE) + command_frame(MULTI_TARGET)
                    + command_frame(QUERY_ZONES) + command_frame(END_CONFIG))
    assert described["firmware"] == "V1.02.22062416"
    assert described["radar_zone_filter"] == "off" and described["max_targets"] == 3
    assert not sim.config_mode and sim.tracking == 2


def test_zone_filter_is_written_only_when_configured_and_different(caplog):
    async def scenario(zone_filter, stored: bytes):
        sim = Ld2450Simulator()
        sim.zones = stored
        async with PtyLd2450(sim) as pty:
            driver = Ld2450(config(port=pty.port, zone_filter=zone_filter),
                            DriverContext(FakeClock(), logging.getLogger("t")))
            await driver.open()
            await driver.close()
            return [c.word for c in sim.commands], sim.zones, driver.describe()

    wanted = {"mode": "include", "regions": [[1.0, 1.0, -1.0, 5.0]]}
    value = encode_zones(1, [(1000, 1000, -1000, 5000)])
    words, zones, described = run(scenario(wanted, bytes(26)))
    assert SET_ZONES in words and zones == value
    assert described["radar_zone_filter"] == "include (1 regions)"
    words, _, _ = run(scenario(wanted, value))
    assert SET_ZONES not in words  # already stored: zone settings persist, no flash write
    with caplog.at_level(logging.WARNING):
        words, zones, _ = run(scenario(None, value))
    assert SET_ZONES not in words and zones == value
    assert "stored zone filter (type 1, 1 regions) that this config does not set" in caplog.text
    words, zones, _ = run(scenario({"mode": "off"}, value))
    assert SET_ZONES in words and zones == bytes(26)


def test_people_walking_across_the_line_are_counted_in_and_out():
    # two people walk in (away from the radar), one walks out, on the radar's 10 Hz
    scene = walkers([(0.0, (-800.0, 800.0), (-800.0, 3600.0), 1.4),
                     (1.0, (700.0, 900.0), (900.0, 3500.0), 1.2),
                     (3.0, (0.0, 3800.0), (200.0, 600.0), 1.5)])

    async def scenario():
        clock = FakeClock(start_mono=0.0)  # the scene's times
        async with PtyLd2450(Ld2450Simulator(scene)) as pty:
            driver = Ld2450(config(port=pty.port, counting=LINE), DriverContext(clock))
            await driver.open()
            outcome = await frames_through(driver, pty, clock, 70)
            health = driver.health()
            await driver.close()
            return outcome, health

    outcome, health = run(scenario())
    assert sum(o["peopleIn"] for o in outcome) == 2
    assert sum(o["peopleOut"] for o in outcome) == 1
    assert max(o["occupancy"] for o in outcome) == 2
    assert outcome[-1]["occupancy"] == 0
    assert health["frames"] == 70 and health["fps"] == pytest.approx(10.0)
    assert health["dropped_frames"] == 0 and health["bad_frames"] == 0


def test_invert_x_mirrors_positions_for_a_diagonal_line():
    # a line along y = x: mirroring x swaps its sides, so in and out swap
    diagonal = {"line": {"start": [-3.0, -3.0], "end": [3.0, 3.0], "margin": 0.05}}
    scene = walkers([(0.0, (-1500.0, 1000.0), (1500.0, 1000.0), 1.5)])

    async def scenario(invert: bool):
        clock = FakeClock(start_mono=0.0)  # the scene's times
        async with PtyLd2450(Ld2450Simulator(scene)) as pty:
            driver = Ld2450(config(port=pty.port, counting=diagonal, invert_x=invert),
                            DriverContext(clock))
            await driver.open()
            outcome = await frames_through(driver, pty, clock, 25)
            await driver.close()
            return (sum(o["peopleIn"] for o in outcome), sum(o["peopleOut"] for o in outcome))

    assert run(scenario(False)) == (0, 1)
    assert run(scenario(True)) == (1, 0)


def test_zone_occupancy_per_frame():
    zones = {"zones": [{"name": "door", "rect": [-1, 0, 1, 2]},
                       {"name": "hall", "rect": [-3, 2, 3, 6]}]}

    async def scenario():
        clock = FakeClock()
        people = [(-500, 1000), (1200, 2500), (0, 4000)]
        async with PtyLd2450(Ld2450Simulator(lambda t: people)) as pty:
            driver = Ld2450(config(port=pty.port, counting=zones), DriverContext(clock))
            await driver.open()
            outcome = await frames_through(driver, pty, clock, 3)
            await driver.close()
            return outcome

    assert run(scenario())[-1] == {"occupancy": 3, "occupancy_door": 1, "occupancy_hall": 2}


def test_bad_frames_are_frame_errors_and_counted_and_gaps_are_dropped_frames():
    async def scenario():
        clock = FakeClock()
        async with PtyLd2450(Ld2450Simulator(lambda t: [(0, 1500)])) as pty:
            driver = Ld2450(config(port=pty.port), DriverContext(clock))
            await driver.open()
            good = await frames_through(driver, pty, clock, 2)
            pty.fault = lambda n, frame: frame[:-1] + b"\x00"  # tail lost
            bad = await frames_through(driver, pty, clock, 1)
            pty.fault = None
            after_gap = await frames_through(driver, pty, clock, 1, step=0.6)
            health = driver.health()
            await driver.close()
            return good + bad + after_gap, health

    outcome, health = run(scenario())
    assert outcome[:2] == [{"occupancy": 1}] * 2
    assert "LD2450 report frame with bad end bytes 55 00" in outcome[2]["error"]
    assert outcome[3] == {"occupancy": 1}
    assert health["bad_frames"] == 1
    assert health["dropped_frames"] == 6  # 0.1 s (bad) + 0.6 s: six frame slots without one


def test_a_long_gap_forgets_the_tracks():
    async def scenario():
        clock = FakeClock()
        async with PtyLd2450(Ld2450Simulator(lambda t: [(0, 1500)])) as pty:
            driver = Ld2450(config(port=pty.port), DriverContext(clock))
            await driver.open()
            await frames_through(driver, pty, clock, 3)
            tracks = driver._counter.active_tracks
            pty.sim.scene = lambda t: []
            await frames_through(driver, pty, clock, 1, step=2.0)
            forgotten = driver._counter.active_tracks
            await driver.close()
            return tracks, forgotten

    assert run(scenario()) == (1, 0)


def test_missing_ack_at_open_is_a_clear_error():
    async def scenario():
        async with PtyLd2450(Ld2450Simulator()) as pty:
            pty.sim.deaf = True
            driver = Ld2450(config(port=pty.port, ack_timeout="50ms"), DriverContext(FakeClock()))
            with pytest.raises(DriverError) as caught:
                await driver.open()
            await driver.close()
            return str(caught.value), pty.port

    message, port = run(scenario())
    assert message.startswith(f"LD2450 on {port}: no ACK to enable configuration (0x00FF)")


def test_silence_after_open_is_a_driver_error_naming_the_port():
    async def scenario():
        async with PtyLd2450(Ld2450Simulator()) as pty:
            driver = Ld2450(config(port=pty.port, read_timeout="100ms"),
                            DriverContext(FakeClock()))
            await driver.open()
            with pytest.raises(DriverError, match=f"no report from LD2450 on {pty.port} for "
                               "0.1s"):
                await driver.read()
            await driver.close()
            with pytest.raises(DriverError, match="is not open"):
                await driver.read()

    run(scenario())


def test_cannot_open_a_missing_port():
    driver = Ld2450(config(port="/dev/does-not-exist"), DriverContext(FakeClock()))
    with pytest.raises(DriverError, match="cannot open serial port /dev/does-not-exist"):
        run(driver.open())


def test_the_driver_never_logs_targets(caplog):
    async def scenario():
        clock = FakeClock()
        async with PtyLd2450(Ld2450Simulator(lambda t: [(-782, 1713)])) as pty:
            driver = Ld2450(config(port=pty.port, counting=LINE),
                            DriverContext(clock, logging.getLogger("edgeagent.test")))
            await driver.open()
            await frames_through(driver, pty, clock, 5)
            await driver.close()

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    assert "782" not in caplog.text and "1713" not in caplog.text and "1.713" not in caplog.text


# --- golden cases ----------------------------------------------------------------------------

CASES = case_names("ld2450")


def outcome(items: list, config: Ld2450Config) -> list[dict]:
    """What the driver makes of the parser's output: errors, targets (for the test only) and
    the readings of each report; ACKs are noted."""
    counter, out = PositionCounter(radar_counting(config.counting)), []
    for item in items:
        if isinstance(item, FrameError):
            out.append({"error": str(item)})
        elif isinstance(item, Ack):
            out.append({"ack": f"{item.command:04X}", "status": item.status})
        else:
            counts = counter.step(positions_of(item, config.invert_x))
            readings = counting_readings(config.counting, counts, 0.0)
            out.append({"targets": [[t.x, t.y, t.speed, t.resolution] for t in item.targets],
                        **{r.stream: r.value for r in readings}})
    return out


def test_there_are_cases():
    assert len(CASES) >= 8
    assert any((golden.CASES / "ld2450" / case / "init.err").exists() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: str):
    loaded = load_case(golden.CASES / "ld2450" / case, Ld2450Config)
    if loaded is None:
        return
    config, wire, expected = loaded
    whole, single = parsed_both_ways(ld2450_parser, wire)
    assert matches(outcome(whole, config), expected), outcome(whole, config)
    assert matches(outcome(single, config), expected), outcome(single, config)
