"""Acceptance: no frame, target list or track is written to disk, logged or published.

A thermal array and a radar each run through the whole agent (debug logging on, a real outbox
on disk, a real mosquitto) with a person standing where the raw data has distinctive numbers.
Afterwards the published payloads, every file of the state directory and every log record
are searched for those numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import async_wait_for, run_stepped
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.hilink import END_CONFIG
from edgeagent.drivers.sim.amg8833 import Amg8833Chip
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.ld2450 import Ld2450Simulator, PtyLd2450
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0


def everything_written(state_dir: Path, caplog: pytest.LogCaptureFixture,
                       messages: list[tuple[str, Any, bool]]) -> str:
    """All bytes the gateway wrote or sent, as one searchable text.

    Random ids (the outbox's ``store``, the config hash) and health's figures of the real
    machine (loop lag, ack latency, CPU, memory, free disk, board) are blanked first: they are
    noise that could contain the digits.
    """
    noise: set[str] = set()
    docs = []
    for _, doc, _ in messages:
        if isinstance(doc, dict):
            noise.update(str(doc[key]) for key in ("store", "config_hash") if key in doc)
            if "loop_lag_ms" in doc:  # health: the real machine's figures are noise here
                doc = {**doc, "loop_lag_ms": None, "process": None, "board": None,
                       "mqtt": {**doc["mqtt"], "ack_latency_ms": None},
                       "storage": {**doc["storage"], "free_bytes": None}}
        docs.append(json.dumps(doc))
    files = [p.read_bytes().decode("latin-1") for p in state_dir.rglob("*") if p.is_file()]
    logs = [record.getMessage() + repr(record.args) for record in caplog.records]
    text = "\n".join(files + docs + logs)
    for value in noise:
        text = text.replace(value, "")
    return text


def test_radar_targets_never_leave_the_driver(broker, recorder_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    root = "edgeagent/v1/leak-gw"
    recorder = recorder_factory(broker.port, root)
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    target = (-1234.0, 2345.0)  # mm: stands still, 1.234 m left, 2.345 m out
    state = tmp_path / "state"

    async def scenario() -> None:
        async with PtyLd2450(Ld2450Simulator(lambda t: [target])) as pty:
            config = validate_config({
                "gateway": {"id": "leak-gw"}, "log": {"level": "debug"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
                "state_dir": str(state), "health": {"interval": "5s"},
                "privacy": {"preset": "crowd-safety"},
                "sensors": [{"id": "entrance", "driver": "ld2450", "port": pty.port,
                             "window": "10s", "warmup": 0,
                             "counting": {"line": {"start": [-2.5, 1.0], "end": [2.5, 1.0]},
                                          "zones": [{"name": "door",
                                                     "rect": [-2, 2, 0, 3]}]}}]})
            agent = Agent(config, clock=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await async_wait_for(lambda: any(c.word == END_CONFIG for c in pty.sim.commands)
                                 and not pty.sim.config_mode, 10, "the driver to configure")
            running = agent.sensors[0]
            for k in range(125):
                await async_wait_for(lambda: clock.sleepers >= 2, 10, "the agent to wait")
                clock.advance(START + k / 10 - clock.monotonic())
                if k == 0:  # the first reports may be dropped as the driver leaves config mode
                    extra = await pty.send_until_counted(clock.monotonic(),
                                                         lambda: running.readings) - 1
                    continue
                pty.send_report(clock.monotonic())
                await async_wait_for(lambda n=k + 1 + extra: running.readings == n, 10,
                                     f"frame {k}")
            await async_wait_for(lambda: len(recorder.of("data/entrance")) >= 1
                                 and recorder.of("health"), 10, "a window and health")
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    (window,) = recorder.of("data/entrance")[:1]
    assert window["values"]["occupancy"]["n"] == 100  # the person was seen in every frame
    text = everything_written(state, caplog, recorder.messages)
    assert "entrance" in text  # the search does see the gateway's output
    for number in ("1234", "1.234", "2345", "2.345", "1.23", "2.34"):
        assert number not in text, f"a target coordinate ({number}) left the driver"


def test_thermal_frames_never_leave_the_driver(broker, recorder_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    recorder = recorder_factory(broker.port, "edgeagent/v1/leak-gw")
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    frame = np.full((8, 8), 21.5)
    frame[2:5, 3:6] = 29.25  # a person standing, seen from above ...
    frame[3, 4] = 33.75  # ... with a distinctive head temperature
    chip = Amg8833Chip(clock, scene=lambda t: frame)
    state = tmp_path / "state"
    config = validate_config({
        "gateway": {"id": "leak-gw"}, "log": {"level": "debug"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
        "state_dir": str(state), "health": {"interval": "5s"},
        "privacy": {"preset": "crowd-safety"},
        "sensors": [{"id": "door", "driver": "amg8833", "window": "10s", "warmup": 0,
                     "counting": {"line": {"start": [0, 0.5], "end": [1, 0.5]},
                                  "zones": [{"name": "desk", "rect": [0, 0, 1, 0.5]}]}}]})
    agent = Agent(config, clock=clock, i2c=FakeBuses(FakeI2cBus(1, {0x69: chip})))
    run_stepped(agent, clock, START + 21.0,
                then=lambda: len(recorder.of("data/door")) >= 2 and recorder.of("health"))
    assert recorder.of("health")[-1]["sensors"]["door"]["driver"]["frames"] > 150
    text = everything_written(state, caplog, recorder.messages)
    assert "door" in text
    for number in ("33.75", "29.25", "3375", "2925"):
        assert number not in text, f"a pixel temperature ({number}) left the driver"
