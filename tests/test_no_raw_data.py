"""Acceptance: no frame, target list or track is written to disk, logged or published.

Each counting sensor runs through the whole agent (debug logging on, a real outbox on disk,
a real mosquitto) with a person standing at a position that produces distinctive numbers.
Afterwards the published payloads, every file of the state directory and every log record
are searched for those numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from conftest import async_wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.hilink import END_CONFIG
from edgeagent.drivers.sim.ld2450 import Ld2450Simulator, PtyLd2450
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0


def everything_written(state_dir: Path, caplog: pytest.LogCaptureFixture,
                       payloads: list[bytes]) -> str:
    """All bytes the gateway wrote or sent, as one searchable text."""
    files = [p.read_bytes() for p in state_dir.rglob("*") if p.is_file()]
    logs = [record.getMessage() + repr(record.args) for record in caplog.records]
    return "\n".join([b.decode("latin-1") for b in files + payloads] + logs)


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
                pty.send_report(clock.monotonic())
                await async_wait_for(lambda k=k: running.readings == k + 1, 10, f"frame {k}")
            await async_wait_for(lambda: len(recorder.of("data/entrance")) >= 1
                                 and recorder.of("health"), 10, "a window and health")
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    (window,) = recorder.of("data/entrance")[:1]
    assert window["values"]["occupancy"]["n"] == 100  # the person was seen in every frame
    text = everything_written(state, caplog, [json.dumps(doc).encode()
                                              for _, doc, _ in recorder.messages])
    assert "entrance" in text  # the search does see the gateway's output
    for number in ("1234", "1.234", "2345", "2.345", "1.23", "2.34"):
        assert number not in text, f"a target coordinate ({number}) left the driver"
