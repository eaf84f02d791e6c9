"""LD2410: report decoding, simulator and its ACKs, the driver through a real pty (config mode,
parameters, engineering mode, throttling), golden cases."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import ValidationError

import golden
from conftest import async_wait_for
from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.hilink import (
    ENABLE_CONFIG,
    END_CONFIG,
    FIRMWARE,
    Ack,
    ack_frame,
    command_frame,
)
from edgeagent.drivers.ld2410 import (
    ENGINEERING_OFF,
    ENGINEERING_ON,
    GATE_SENSITIVITY,
    QUERY_RESOLUTION,
    READ_PARAMETERS,
    SET_GATES,
    SET_RESOLUTION,
    Ld2410,
    Ld2410Config,
    Ld2410Report,
    decode_parameters,
    gates_value,
    ld2410_parser,
    readings_of,
)
from edgeagent.drivers.sim.ld2410 import Ld2410Simulator, Ld2410Target, PtyLd2410
from golden import case_names, load_case, matches, parsed_both_ways

H = bytes.fromhex
BASIC = H("F4 F3 F2 F1 0D 00 02 AA 02 51 00 00 00 00 3B 00 00 55 00 F8 F7 F6 F5")
ENABLE = H("FD FC FB FA 04 00 FF 00 01 00 04 03 02 01")
ENABLE_ACK = H("FD FC FB FA 08 00 FF 01 00 00 01 00 40 00 04 03 02 01")
END_ACK = H("FD FC FB FA 04 00 FE 01 00 00 04 03 02 01")
SET_8_8_5 = H("FD FC FB FA 14 00 60 00 00 00 08 00 00 00 01 00 08 00 00 00 02 00 05 00 00 00 "
              "04 03 02 01")
PARAMS_ACK_HEAD = H("FD FC FB FA 1C 00 61 01 00 00 AA 08 08 08")


def config(**overrides) -> Ld2410Config:
    return Ld2410Config.model_validate({"id": "hall-presence", "driver": "ld2410",
                                        "port": "/dev/ttyAMA0", **overrides})


# --- decoding ---------------------------------------------------------------------------------

def test_datasheet_basic_example():
    (report,) = ld2410_parser().feed(BASIC, 0.0)
    assert report == Ld2410Report(2, 81, 0, 0, 59, 0)
    assert report.present and report.still and not report.moving
    assert {r.stream: r.value for r in readings_of(report, 1.0)} == {
        "presence": 100.0, "motion": 0.0, "stillPresence": 100.0}


def test_simulator_encodes_the_basic_example_from_the_field_table():
    assert Ld2410Simulator.encode_report(Ld2410Report(2, 81, 0, 0, 59, 0)) == BASIC
    assert len(BASIC) == 23


def test_engineering_frame_is_45_bytes_with_length_35():
    sim = Ld2410Simulator(lambda t: Ld2410Target(3, 180, 30, 175, 55, 180))
    sim.engineering = True
    frame = sim.report(0.0)
    assert len(frame) == 45 and frame[4:8] == H("23 00 01 AA")
    (report,) = ld2410_parser().feed(frame, 0.0)
    assert report.engineering and len(report.moving_gates) == len(report.still_gates) == 9
    assert report.moving_gates[2] == 30 and report.still_gates[2] == 55
    assert report.extra == b"\x00\x01"


@pytest.mark.parametrize("state", range(4))
def test_state_components(state):
    report = Ld2410Report(state, 0, 0, 0, 0, 0)
    values = {r.stream: r.value for r in readings_of(report, 0.0)}
    assert values == {"presence": 100.0 * (state != 0), "motion": 100.0 * (state & 1),
                      "stillPresence": 100.0 * bool(state & 2)}


def test_engineering_frame_errors():
    sim = Ld2410Simulator(lambda t: Ld2410Target(1, 100, 50, 0, 0, 100))
    sim.engineering = True
    frame = bytearray(sim.report(0.0))
    frame[17] = 12  # max moving gate 12
    assert "12 as max gate" in str(ld2410_parser().feed(bytes(frame), 0.0)[0])
    frame[17], frame[4] = 8, 20  # length 20 cannot hold 2 × 9 gates
    short = bytes(frame[:6]) + bytes(frame[6:6 + 18]) + b"\x55\x00" + frame[-4:]
    assert "cannot hold 9 + 9 gate energies" in str(ld2410_parser().feed(short, 0.0)[0])


def test_read_parameters_ack_decodes():
    ack = ld2410_parser().feed(ack_frame(READ_PARAMETERS, 0,
                                         Ld2410Simulator().parameters_data()), 0.0)[0]
    params = decode_parameters(ack)
    assert (params.max_gate, params.max_moving_gate, params.max_still_gate,
            params.no_one_duration) == (8, 8, 8, 5)
    assert len(params.moving_sensitivity) == len(params.still_sensitivity) == 9
    with pytest.raises(ValueError, match="not AA"):
        decode_parameters(Ack(READ_PARAMETERS, 0, b"\x00" * 24))


def test_set_gates_value_is_the_datasheet_send_example():
    assert command_frame(SET_GATES, gates_value(8, 8, 5)) == SET_8_8_5


# --- config and streams ----------------------------------------------------------------------

def test_defaults_and_validation():
    cfg = config()
    assert (cfg.baudrate, cfg.engineering, cfg.max_gate, cfg.no_one_duration, cfg.interval) == (
        256_000, False, None, None, 1.0)
    assert config(no_one_duration="2min").no_one_duration == 120
    for bad, message in ((dict(max_gate=1), "greater than or equal to 2"),
                         (dict(no_one_duration="1.5s"), "whole seconds"),
                         (dict(no_one_duration="20h"), "65535s"),
                         (dict(baudrate=9601), "256000")):
        with pytest.raises(ValidationError, match=message):
            config(**bad)


def test_streams_are_presence_shares_never_people():
    specs = Ld2410.streams(config())
    assert [s.name for s in specs] == ["presence", "motion", "stillPresence"]
    for spec in specs:
        assert (spec.unit, spec.quantity, spec.kind, spec.statistics) == (
            "%", QuantityClass.PRESENCE, StatKind.LINEAR, ("mean",))
        assert "not a number of people" in spec.description


# --- simulator -------------------------------------------------------------------------------

def test_simulator_config_mode_acks_are_the_datasheet_bytes():
    sim = Ld2410Simulator()
    assert sim.handle(command_frame(READ_PARAMETERS)) == b""  # outside config: ignored
    assert sim.handle(ENABLE) == ENABLE_ACK
    params = sim.handle(command_frame(READ_PARAMETERS))
    assert params.startswith(PARAMS_ACK_HEAD) and params.endswith(H("05 00 04 03 02 01"))
    assert len(params) == 4 + 2 + 0x1C + 4
    assert sim.handle(SET_8_8_5) == H("FD FC FB FA 04 00 60 01 00 00 04 03 02 01")
    assert sim.handle(command_frame(ENGINEERING_ON)) == H(
        "FD FC FB FA 04 00 62 01 00 00 04 03 02 01")
    assert sim.engineering
    assert sim.handle(command_frame(ENGINEERING_OFF)) == ack_frame(ENGINEERING_OFF)
    assert sim.handle(command_frame(END_CONFIG)) == END_ACK


def test_simulator_parameters_validate_and_persist_engineering_does_not():
    sim = Ld2410Simulator()
    sim.handle(ENABLE)
    assert sim.handle(command_frame(SET_GATES, gates_value(4, 3, 30))) == ack_frame(SET_GATES)
    assert (sim.max_moving_gate, sim.max_still_gate, sim.no_one_duration) == (4, 3, 30)
    assert sim.handle(command_frame(SET_GATES, gates_value(9, 3, 30))) == ack_frame(SET_GATES, 1)
    assert sim.handle(command_frame(SET_GATES, b"\x00")) == ack_frame(SET_GATES, 1)
    sens = H("00 00 03 00 00 00 01 00 28 00 00 00 02 00 28 00 00 00")
    assert sim.handle(command_frame(GATE_SENSITIVITY, sens)) == ack_frame(GATE_SENSITIVITY)
    assert sim.moving_sensitivity[3] == sim.still_sensitivity[3] == 40
    assert sim.handle(command_frame(SET_RESOLUTION, b"\x01\x00")) == ack_frame(SET_RESOLUTION)
    assert sim.handle(command_frame(QUERY_RESOLUTION)) == ack_frame(QUERY_RESOLUTION, 0,
                                                                   b"\x01\x00")
    sim.handle(command_frame(ENGINEERING_ON))
    sim.power_cycle()
    assert not sim.engineering and not sim.config_mode
    assert (sim.max_moving_gate, sim.no_one_duration) == (4, 30)


def test_simulator_firmware_version():
    sim = Ld2410Simulator()
    sim.handle(ENABLE)
    ack = ld2410_parser().feed(sim.handle(command_frame(FIRMWARE)), 0.0)[0]
    from edgeagent.drivers.hilink import firmware_version
    assert firmware_version(ack) == "V2.04.23022511"


# --- the driver through a real pty -----------------------------------------------------------

def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_open_sends_enable_firmware_engineering_off_end_and_nothing_else():
    async def scenario():
        async with PtyLd2410(Ld2410Simulator()) as pty:
            driver = Ld2410(config(port=pty.port), DriverContext(FakeClock()))
            await driver.open()
            await driver.close()
            return bytes(pty.received), driver.describe()

    sent, described = run(scenario())
    assert sent == (ENABLE + command_frame(FIRMWARE) + command_frame(ENGINEERING_OFF)
                    + command_frame(END_CONFIG))
    assert described["firmware"] == "V2.04.23022511" and "radar_parameters" not in described


def test_engineering_and_gates_are_sent_only_when_they_differ():
    async def scenario(sim: Ld2410Simulator, **options):
        async with PtyLd2410(sim) as pty:
            driver = Ld2410(config(port=pty.port, **options), DriverContext(FakeClock()))
            await driver.open()
            await driver.close()
            return [c.word for c in sim.commands], driver.describe()

    sim = Ld2410Simulator()
    words, described = run(scenario(sim, engineering=True, max_gate=6, no_one_duration="10s"))
    assert words == [ENABLE_CONFIG, FIRMWARE, READ_PARAMETERS, SET_GATES, ENGINEERING_ON,
                     END_CONFIG]
    assert (sim.max_moving_gate, sim.max_still_gate, sim.no_one_duration) == (6, 6, 10)
    assert described["radar_parameters"] == {"max_moving_gate": 6, "max_still_gate": 6,
                                             "no_one_duration_s": 10}
    sim.power_cycle()  # engineering mode is lost at power-off: the next open sends it again
    assert not sim.engineering
    sim.commands.clear()
    words, _ = run(scenario(sim, engineering=True, max_gate=6, no_one_duration="10s"))
    assert SET_GATES not in words and ENGINEERING_ON in words and sim.engineering
    sim.commands.clear()
    words, _ = run(scenario(sim, no_one_duration="10s"))  # max gate: left as the radar has it
    assert SET_GATES not in words


def test_readings_are_throttled_to_the_interval_with_the_latest_state():
    state = {"now": Ld2410Target()}

    async def scenario():
        clock = FakeClock(start_mono=0.0)
        async with PtyLd2410(Ld2410Simulator(lambda t: state["now"])) as pty:
            driver = Ld2410(config(port=pty.port), DriverContext(clock))
            await driver.open()
            readings = []

            async def reader():
                while True:
                    batch = await driver.read()
                    readings.append((round(clock.monotonic(), 1), batch))

            task = asyncio.create_task(reader())
            for k in range(1, 31):  # 3 s of reports at 10 Hz, each received at its own time
                clock.advance(0.1)
                state["now"] = Ld2410Target(1, 200, 50, 0, 0, 200) if k >= 12 else (
                    Ld2410Target())
                pty.send_report(clock.monotonic())
                await async_wait_for(lambda k=k: driver.health()["frames"] == k, 5, "a frame")
            task.cancel()
            health = driver.health()
            await driver.close()
            return readings, health

    readings, health = run(scenario())
    # one per interval on the grid from open (t = 0), the first frame at once
    assert [t for t, _ in readings] == [0.1, 1.0, 2.0, 3.0]
    assert [{r.stream: r.value for r in batch}["motion"] for _, batch in readings] == [
        0.0, 0.0, 100.0, 100.0]
    assert health == {"frames": 30, "bad_frames": 0}


def test_engineering_reports_and_acks_interleaved_through_the_pty():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        sim = Ld2410Simulator(lambda t: Ld2410Target(3, 180, 30, 175, 55, 180),
                              reports_in_config_mode=True)
        async with PtyLd2410(sim) as pty:
            driver = Ld2410(config(port=pty.port, engineering=True), DriverContext(clock))
            stream = asyncio.create_task(pty.run_reports(clock, pause=0.002))
            await driver.open()
            batches = [await driver.read() for _ in range(3)]
            stream.cancel()
            await driver.close()
            return batches

    batches = run(scenario())
    assert all({r.stream: r.value for r in b} == {"presence": 100.0, "motion": 100.0,
                                                  "stillPresence": 100.0} for b in batches)


def test_a_refused_command_and_a_missing_ack_are_clear_errors():
    async def scenario(deaf: bool):
        sim = Ld2410Simulator()
        sim.deaf = deaf
        sim.execute = lambda command: ack_frame(command.word, 1)  # type: ignore[method-assign]
        async with PtyLd2410(sim) as pty:
            driver = Ld2410(config(port=pty.port, ack_timeout="50ms"), DriverContext(FakeClock()))
            with pytest.raises(DriverError) as caught:
                await driver.open()
            return str(caught.value), pty.port

    message, port = run(scenario(False))
    assert message == f"LD2410 on {port} refused engineering mode off (0x0063): status 1"
    message, port = run(scenario(True))
    assert message.startswith(f"LD2410 on {port}: no ACK to enable configuration (0x00FF)")


def test_bad_frames_are_raised_and_counted():
    async def scenario():
        clock = FakeClock()
        async with PtyLd2410(Ld2410Simulator()) as pty:
            driver = Ld2410(config(port=pty.port), DriverContext(clock))
            await driver.open()
            pty.emit(BASIC[:7] + b"\xab" + BASIC[8:])
            with pytest.raises(FrameError, match="head byte 0xAB"):
                await driver.read()
            pty.emit(BASIC)
            good = await driver.read()
            health = driver.health()
            await driver.close()
            return good, health

    good, health = run(scenario())
    assert [r.value for r in good] == [100.0, 0.0, 100.0]
    assert health == {"frames": 1, "bad_frames": 1}


def test_silence_is_a_driver_error():
    async def scenario():
        async with PtyLd2410(Ld2410Simulator()) as pty:
            driver = Ld2410(config(port=pty.port, read_timeout="100ms"),
                            DriverContext(FakeClock()))
            await driver.open()
            with pytest.raises(DriverError, match=f"no report from LD2410 on {pty.port}"):
                await driver.read()
            await driver.close()

    run(scenario())


def test_distances_are_never_logged(caplog):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with PtyLd2410(Ld2410Simulator(lambda t: Ld2410Target(3, 4321, 30, 1234, 55,
                                                                    4321))) as pty:
            driver = Ld2410(config(port=pty.port, engineering=True),
                            DriverContext(clock, logging.getLogger("edgeagent.test")))
            stream = asyncio.create_task(pty.run_reports(clock, pause=0.002))
            await driver.open()
            for _ in range(2):
                await driver.read()
            stream.cancel()
            await driver.close()

    with caplog.at_level(logging.DEBUG):
        run(scenario())
    assert "4321" not in caplog.text and "1234" not in caplog.text


# --- golden cases ----------------------------------------------------------------------------

CASES = case_names("ld2410")


def outcome(items: list, config: Ld2410Config) -> list[dict]:
    """Errors, decoded fields (test only: they are never published) and the readings; ACKs."""
    out: list[dict] = []
    for item in items:
        if isinstance(item, FrameError):
            out.append({"error": str(item)})
        elif isinstance(item, Ack):
            out.append({"ack": f"{item.command:04X}", "status": item.status})
        else:
            decoded = {"state": item.state, "moving": [item.moving_distance, item.moving_energy],
                       "still": [item.still_distance, item.still_energy],
                       "detection": item.detection_distance}
            if item.engineering:
                decoded.update(moving_gates=list(item.moving_gates),
                               still_gates=list(item.still_gates), extra=item.extra.hex())
            out.append({**decoded, **{r.stream: r.value for r in readings_of(item, 0.0)}})
    return out


def test_there_are_cases():
    assert len(CASES) >= 8
    assert any((golden.CASES / "ld2410" / case / "init.err").exists() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: str):
    loaded = load_case(golden.CASES / "ld2410" / case, Ld2410Config)
    if loaded is None:
        return
    config, wire, expected = loaded
    whole, single = parsed_both_ways(ld2410_parser, wire)
    assert matches(outcome(whole, config), expected), outcome(whole, config)
    assert matches(outcome(single, config), expected), outcome(single, config)
