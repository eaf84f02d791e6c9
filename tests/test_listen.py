"""``edgeagent listen``: live values from the simulators, counters, retries, JSON, exit codes.

UART tests use the pty PMS5003 simulator in active mode: the test sends each frame itself and
waits for the line it causes, so nothing depends on timing. I2C and microphone tests step a
manual FakeClock event by event. Real time stays well under a second per test.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import serial

from conftest import async_wait_for
from edgeagent import listen as listen_module
from edgeagent.clock import FakeClock
from edgeagent.drivers.microphone import Microphone, MicrophoneConfig
from edgeagent.drivers.pms5003 import Pms5003, Pms5003Config
from edgeagent.drivers.sht4x import Sht4x, Sht4xConfig
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.microphone import tone, write_wav
from edgeagent.drivers.sim.pms5003 import Pms5003Simulator, PtyPms5003
from edgeagent.drivers.sim.sht4x import Sht4xChip
from edgeagent.listen import SERVICE_HINT, ListenSummary, listen

MODE_ACTIVE = bytes.fromhex("42 4D E1 00 01 01 71")  # the driver's last open command
VALUES = {"pm_cf1": (5, 10, 15), "pm_atm": (5, 10, 15), "counts": (900, 300, 60, 8, 2, 1)}
GOOD_LINE = "pm1 5.00 ug/m3, pm25 10.00 ug/m3, pm10 15.00 ug/m3"


def corrupted(kind: str, frame: bytes) -> bytes:
    """As in test_pms5003_pipeline: a flipped checksum byte or a wrong length word."""
    if kind == "checksum":
        return Pms5003Simulator.corrupt(frame)
    assert kind == "length"
    return frame[:2] + b"\x00\x1d" + frame[4:]


def pms_config(port: str, **extra: Any) -> Pms5003Config:
    return Pms5003Config(**{"id": "air", "driver": "pms5003", "port": port, "mode": "active",
                            "warmup": 0, **extra})


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


async def next_line(out: io.StringIO, action: Callable[[], None], what: str) -> str:
    """Do ``action`` and return the first line it makes listen print."""
    before = len(lines(out))
    action()
    await async_wait_for(lambda: len(lines(out)) > before, 5, what)
    return lines(out)[before]


async def stepped(task: asyncio.Task[ListenSummary], clock: FakeClock, sleepers: int,
                  each: Callable[[], None] | None = None) -> ListenSummary:
    """Jump the manual clock to the next deadline whenever listen waits on it, until done."""
    while not task.done():
        await async_wait_for(lambda: task.done() or clock.sleepers >= sleepers, 5,
                             "listen to wait on the clock")
        if each is not None:
            each()
        clock.advance_to_next()
    return await task


def pms_session(kinds: list[str], *, as_json: bool) -> tuple[ListenSummary, str, list[bytes]]:
    """Send one frame per kind ("ok", "checksum", "length"); end with --seconds 30."""
    sent: list[bytes] = []

    async def scenario() -> tuple[ListenSummary, str]:
        clock, out = FakeClock(), io.StringIO()
        async with PtyPms5003(Pms5003Simulator(seed=3)) as sim:
            sim.sim.set_values(**VALUES)
            task = asyncio.create_task(listen(pms_config(sim.port), Pms5003, clock=clock,
                                              out=out, seconds=30, as_json=as_json))
            await async_wait_for(lambda: MODE_ACTIVE in sim.received, 5, "the driver opens")
            for kind in kinds:
                frame = sim.sim.next_frame()
                sent.append(frame)
                data = frame if kind == "ok" else corrupted(kind, frame)
                await next_line(out, lambda d=data: sim.emit(d), f"the line for {kind}")
            clock.advance(30)  # --seconds 30 on the injected clock
            summary = await asyncio.wait_for(task, 5)
        return summary, out.getvalue()

    summary, text = asyncio.run(scenario())
    return summary, text, sent


def assert_nothing_raw(text: str, frames: list[bytes]) -> None:
    lowered = text.lower()
    assert "424d" not in lowered and "42 4d" not in lowered
    for frame in frames:
        assert frame.hex() not in lowered
        assert frame[4:16].hex() not in lowered


# -- UART: values, bad frames, summary --------------------------------------------------------
def test_pty_pms5003_values_and_bad_frame_counter():
    summary, text, frames = pms_session(["ok", "checksum", "ok", "length", "ok", "ok"],
                                        as_json=False)
    out = text.splitlines()
    assert out[0].endswith("pm1 (ug/m3), pm25 (ug/m3), pm10 (ug/m3); Ctrl-C to stop")
    assert "listening to air (Plantower PMS5003, port /dev/" in out[0]
    assert re.search(r"air open \(attempt 1\)$", out[1])
    body = out[2:-1]
    assert len(body) == 6
    assert all(re.match(r"\d\d:\d\d:\d\d  ", line) for line in body)
    assert body[0].endswith(f"{GOOD_LINE}  [samples 1, bad frames 0, last error: none]")
    assert "bad frame: bad checksum" in body[1]
    assert re.search(r"  bad frame: bad checksum: frame says [0-9A-F]{4}, bytes sum to "
                     r"[0-9A-F]{4}  \[samples 1, bad frames 1\]$", body[1])
    assert "bad frame length 29 for model pms5003" in body[3]
    assert body[5].endswith("[samples 4, bad frames 2, last error: bad frame length 29 for "
                            "model pms5003 (expected 28 for data or 4 for an ack)]")
    assert (summary.samples, summary.bad_frames, summary.failed_opens) == (4, 2, 0)
    assert out[-1] == ("4 samples, 2 bad frames (33.3 %), last error: bad frame length 29 "
                       "for model pms5003 (expected 28 for data or 4 for an ack)")
    assert summary.exit_code == 0
    assert_nothing_raw(text, frames)


def test_json_mode_parses_line_by_line():
    summary, text, frames = pms_session(["ok", "checksum", "ok"], as_json=True)
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["type"] for r in records] == ["start", "open", "sample", "bad_frame", "sample",
                                            "summary"]
    start = records[0]
    assert start["sensor"] == "air" and start["streams"] == {
        "pm1": "ug/m3", "pm25": "ug/m3", "pm10": "ug/m3"}
    sample = records[2]
    assert sample["values"] == {"pm1": {"value": 5.0, "unit": "ug/m3"},
                                "pm25": {"value": 10.0, "unit": "ug/m3"},
                                "pm10": {"value": 15.0, "unit": "ug/m3"}}
    assert sample["warming_up"] is False
    assert (sample["samples"], sample["bad_frames"], sample["last_error"]) == (1, 0, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", sample["time"])
    bad = records[3]
    assert bad["error"].startswith("bad checksum") and bad["bad_frames"] == 1
    assert records[4]["last_error"] == bad["error"] and records[4]["samples"] == 2
    assert records[-1] == {"type": "summary", "sensor": "air", "samples": 2,
                           "warmup_samples": 0, "bad_frames": 1, "bad_percent": 33.3,
                           "open_attempts": 1, "failed_opens": 0, "faults": 0,
                           "last_error": bad["error"], "seconds": 30.0, "exit_code": 0}
    assert summary.exit_code == 0
    assert_nothing_raw(text, frames)


def test_summary_line_and_exit_codes():
    summary = ListenSummary("air", samples=120, bad_frames=3, last_error="bad checksum")
    assert summary.line() == "120 samples, 3 bad frames (2.4 %), last error: bad checksum"
    assert summary.exit_code == 0
    nothing = ListenSummary("air", open_attempts=4, failed_opens=4, last_error="no such device")
    assert nothing.line() == ("0 samples, 0 bad frames (0.0 %), 4 failed opens of 4, "
                              "last error: no such device")
    assert nothing.exit_code == 1
    one = ListenSummary("air", samples=1, warmup_samples=1, bad_frames=1)
    assert one.line() == "1 sample (1 warming up), 1 bad frame (50.0 %), last error: none"


# -- warm-up ----------------------------------------------------------------------------------
@pytest.mark.parametrize("honour", [False, True])
def test_warmup_samples_marked_or_hidden(honour):
    async def scenario() -> tuple[ListenSummary, list[str]]:
        clock, out, stop = FakeClock(), io.StringIO(), asyncio.Event()
        async with PtyPms5003(Pms5003Simulator(seed=3)) as sim:
            sim.sim.set_values(**VALUES)
            config = pms_config(sim.port, warmup="30s")
            task = asyncio.create_task(listen(config, Pms5003, clock=clock, out=out,
                                              seconds=None, as_json=False, warmup=honour,
                                              stop=stop))
            await async_wait_for(lambda: MODE_ACTIVE in sim.received, 5, "the driver opens")
            await next_line(out, lambda: sim.emit(sim.sim.next_frame()), "a warm-up frame")
            clock.advance(31)
            await next_line(out, lambda: sim.emit(sim.sim.next_frame()), "a warm frame")
            stop.set()
            summary = await asyncio.wait_for(task, 5)
        return summary, lines(out)

    summary, out = asyncio.run(scenario())
    assert out[1].endswith("air open (attempt 1); warming up for 30 s")
    if honour:
        assert out[2].endswith("warming up: readings hidden until the configured warm-up of "
                               "30 s is over")
        assert "pm25" not in out[2]
    else:
        assert out[2].endswith(f"{GOOD_LINE}  (warming up)  [samples 1, bad frames 0, "
                               "last error: none]")
    assert out[3].endswith(f"{GOOD_LINE}  [samples 2, bad frames 0, last error: none]")
    assert (summary.samples, summary.warmup_samples) == (2, 1)
    assert out[-1] == "2 samples (1 warming up), 0 bad frames (0.0 %), last error: none"


# -- I2C --------------------------------------------------------------------------------------
def test_sht4x_on_fake_bus_values():
    async def scenario() -> tuple[ListenSummary, list[str]]:
        clock, out = FakeClock(), io.StringIO()
        chip = Sht4xChip(clock, seed=1)
        chip.set_values(21.5, 45.25)
        config = Sht4xConfig(id="climate", driver="sht4x", bus=1, interval=1)
        task = asyncio.create_task(listen(
            config, Sht4x, clock=clock, out=out, seconds=5.5, as_json=False,
            i2c=FakeBuses(FakeI2cBus(1, {0x44: chip}))))
        summary = await stepped(task, clock, sleepers=2)  # the --seconds timer and the driver
        return summary, lines(out)

    summary, out = asyncio.run(scenario())
    assert "listening to climate (Sensirion SHT4x, I2C bus 1 address 0x44): temperature " \
        "(Cel), relativeHumidity (%RH)" in out[0]
    samples = [line for line in out if "temperature" in line and "samples" in line]
    assert len(samples) == summary.samples >= 5
    assert samples[0].endswith("temperature 21.50 Cel, relativeHumidity 45.25 %RH  "
                               "[samples 1, bad frames 0, last error: none]")
    assert out[-1] == f"{summary.samples} samples, 0 bad frames (0.0 %), last error: none"
    assert summary.exit_code == 0


def test_i2c_nack_is_plain_and_retried():
    async def scenario() -> tuple[ListenSummary, list[str]]:
        clock, out = FakeClock(), io.StringIO()
        config = Sht4xConfig(id="climate", driver="sht4x", bus=1)
        task = asyncio.create_task(listen(config, Sht4x, clock=clock, out=out, seconds=5,
                                          as_json=False, i2c=FakeBuses(FakeI2cBus(1, {}))))
        return await stepped(task, clock, sleepers=2), lines(out)

    summary, out = asyncio.run(scenario())
    errors = [line for line in out if "retrying in 2 s" in line]
    assert len(errors) == summary.failed_opens >= 2
    assert "open attempt 1 failed" in errors[0] and "open attempt 2 failed" in errors[1]
    assert "no answer from I2C bus 1 address 0x44 (NACK: sensor absent, busy, asleep or " \
        "miswired); open attempt 1 failed" in errors[0]
    assert SERVICE_HINT not in "\n".join(out)  # the agent does not lock I2C buses
    assert summary.samples == 0 and summary.exit_code == 1
    assert out[-1].startswith(f"0 samples, 0 bad frames (0.0 %), {summary.failed_opens} "
                              "failed opens of")


# -- a missing port, then plugged in; a port held by the agent --------------------------------
def test_missing_port_retries_until_it_appears(tmp_path):
    port = tmp_path / "ttyPM"

    async def scenario() -> tuple[ListenSummary, list[str]]:
        clock, out, stop = FakeClock(), io.StringIO(), asyncio.Event()
        task = asyncio.create_task(listen(pms_config(str(port)), Pms5003, clock=clock,
                                          out=out, seconds=None, as_json=False, stop=stop))
        for _ in range(2):  # failed opens, each followed by a 2 s wait on the clock
            await async_wait_for(lambda: clock.sleepers >= 1, 5, "the retry wait")
            clock.advance_to_next()
        await async_wait_for(lambda: clock.sleepers >= 1, 5, "the third retry wait")
        async with PtyPms5003(Pms5003Simulator(seed=3)) as sim:
            sim.sim.set_values(**VALUES)
            os.symlink(sim.port, port)  # the cable is plugged in
            clock.advance_to_next()
            await async_wait_for(lambda: MODE_ACTIVE in sim.received, 5, "the driver opens")
            for _ in range(2):
                await next_line(out, lambda: sim.emit(sim.sim.next_frame()), "a sample")
            stop.set()  # Ctrl-C
            summary = await asyncio.wait_for(task, 5)
        return summary, lines(out)

    summary, out = asyncio.run(scenario())
    errors = [line for line in out if "retrying" in line]
    assert len(errors) == 3
    for attempt, line in enumerate(errors, 1):
        assert line.endswith(f"cannot open serial port {port}: no such device (is the sensor "
                             "plugged in and the UART enabled?); open attempt "
                             f"{attempt} failed, retrying in 2 s")
    assert out[-4].endswith("air open (attempt 4)")
    assert out[-3].endswith(f"{GOOD_LINE}  [samples 1, bad frames 0, last error: cannot open "
                            f"serial port {port}: no such device (is the sensor plugged in "
                            "and the UART enabled?)]")
    assert (summary.open_attempts, summary.failed_opens, summary.samples) == (4, 3, 2)
    assert out[-1].startswith("2 samples, 0 bad frames (0.0 %), 3 failed opens of 4, "
                              "last error: cannot open serial port")
    assert summary.exit_code == 0


def test_port_held_by_the_agent_says_stop_the_service():
    async def scenario() -> tuple[ListenSummary, list[str]]:
        clock, out = FakeClock(), io.StringIO()
        async with PtyPms5003(Pms5003Simulator(seed=3)) as sim:
            holder = serial.Serial(sim.port, 9600, exclusive=True)  # as the running agent does
            try:
                task = asyncio.create_task(listen(pms_config(sim.port), Pms5003, clock=clock,
                                                  out=out, seconds=3, as_json=False))
                summary = await stepped(task, clock, sleepers=2)
            finally:
                holder.close()
        return summary, lines(out)

    summary, out = asyncio.run(scenario())
    error = next(line for line in out if "retrying" in line)
    assert re.search(r"cannot open serial port /dev/\S+: in use by another program — "
                     r"is the edgeagent service running\? sudo systemctl stop edgeagent "
                     r"first; open attempt 1 failed, retrying in 2 s$", error)
    assert "Errno" not in error
    assert SERVICE_HINT in summary.last_error
    assert summary.samples == 0 and summary.exit_code == 1


def test_sensor_going_silent_is_reopened():
    async def scenario() -> tuple[ListenSummary, list[str]]:
        clock, out, stop = FakeClock(), io.StringIO(), asyncio.Event()
        async with PtyPms5003(Pms5003Simulator(seed=3)) as sim:
            sim.sim.set_values(**VALUES)
            config = pms_config(sim.port, read_timeout="100ms")
            task = asyncio.create_task(listen(config, Pms5003, clock=clock, out=out,
                                              seconds=None, as_json=False, stop=stop))
            await async_wait_for(lambda: MODE_ACTIVE in sim.received, 5, "the driver opens")
            await next_line(out, lambda: sim.emit(sim.sim.next_frame()), "a sample")
            sim.received.clear()
            await async_wait_for(lambda: clock.sleepers >= 1, 5, "no data, the retry wait")
            clock.advance_to_next()
            await async_wait_for(lambda: MODE_ACTIVE in sim.received, 5, "the driver reopens")
            await next_line(out, lambda: sim.emit(sim.sim.next_frame()), "a sample")
            stop.set()
            summary = await asyncio.wait_for(task, 5)
        return summary, lines(out)

    summary, out = asyncio.run(scenario())
    error = next(line for line in out if "reopening" in line)
    assert re.search(r"  no data from PMS5003 on /dev/\S+ for 0\.1s \(check wiring TX/RX and "
                     r"5 V supply\); reopening in 2 s$", error)
    assert (summary.samples, summary.faults, summary.open_attempts) == (2, 1, 2)


# -- microphone: levels only ------------------------------------------------------------------
def test_microphone_prints_levels_only(tmp_path):
    wav = write_wav(tmp_path / "tone.wav", tone(1000.0, -20.0, 2.0))
    config = MicrophoneConfig(id="noise", driver="microphone", source="wav", path=wav,
                              sensitivity=-26.0)

    async def scenario() -> tuple[ListenSummary, list[str]]:
        clock, out = FakeClock(), io.StringIO()
        task = asyncio.create_task(listen(config, Microphone, clock=clock, out=out,
                                          seconds=1.0, as_json=False, state_dir=tmp_path))
        return await stepped(task, clock, sleepers=2), lines(out)

    summary, out = asyncio.run(scenario())
    samples = [line for line in out if "laeq" in line and "samples" in line]
    assert len(samples) == summary.samples >= 6
    pattern = (r"\d\d:\d\d:\d\d  laeq \d+\.\d dB, lceq \d+\.\d dB, laf \d+\.\d dB, "
               r"lafmax \d+\.\d dB, (lafmin \d+\.\d dB, )?lasmax \d+\.\d dB  \[samples \d+, "
               r"bad frames 0, last error: none\]")
    assert all(re.fullmatch(pattern, line) for line in samples), samples
    assert "laeq 100.0 dB" in samples[-1]  # a -20 dBFS tone on a -26 dBFS microphone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.wav"]  # nothing recorded


# -- CLI glue ---------------------------------------------------------------------------------
def write_config(tmp_path: Path, port: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"""\
gateway: {{id: test-gw}}
mqtt: {{host: 127.0.0.1, port: 1883, tls: {{enabled: false}}}}
state_dir: {tmp_path / "state"}
sensors:
  - {{id: air, driver: pms5003, port: {port}, warmup: 0s}}
""", encoding="utf-8")
    return path


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgeagent")
    sub = parser.add_subparsers(dest="command", required=True)
    listen_module.add_parser(sub)
    return parser.parse_args(argv)


def test_cli_parser_and_main_exit_codes(tmp_path, capsys):
    config = write_config(tmp_path, str(tmp_path / "absent"))
    args = parse(["listen", "air", "-c", str(config), "--seconds", "0.05", "--json"])
    assert (args.sensor, args.seconds, args.json, args.warmup) == ("air", 0.05, True, False)
    assert args.func is listen_module.main
    assert listen_module.main(args) == 1  # no sample: the port is not there
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[1]["type"] == "error" and "no such device" in records[1]["error"]
    assert records[-1]["type"] == "summary" and records[-1]["exit_code"] == 1
    assert listen_module.main(parse(["listen", "nope", "-c", str(config)])) == 2
    assert "no sensor 'nope'" in capsys.readouterr().err
    args = parse(["listen", "air", "-c", str(tmp_path / "missing.yaml")])
    assert listen_module.main(args) == 78

