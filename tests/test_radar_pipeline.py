"""Acceptance: an LD2450 simulator behind a real pty, people walking across the counting line,
through the whole agent on fake time (crowd-safety preset, 10 s windows, k = 3) to a real
mosquitto: the published peopleIn/peopleOut sums are the true crossings, small counts are
suppressed, and no target position leaves the gateway."""

from __future__ import annotations

import asyncio

import pytest

from conftest import async_wait_for, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.hilink import END_CONFIG
from edgeagent.drivers.sim.ld2450 import Ld2450Simulator, PtyLd2450, walkers
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0
ROOT = "edgeagent/v1/radar-gw"
FRAMES = 215  # 21.5 s at 10 Hz: two whole 10 s windows


def at(seconds: float) -> float:
    return START + seconds


# window 1 [0, 10 s): three people walk in side by side, one more walks in, one walks out
# window 2 [10, 20 s): one person walks in
SCENE = walkers([
    (at(1.0), (-1200.0, 800.0), (-1200.0, 3500.0), 1.2),
    (at(1.0), (0.0, 800.0), (0.0, 3500.0), 1.2),
    (at(1.0), (1200.0, 800.0), (1200.0, 3500.0), 1.2),
    (at(5.0), (400.0, 700.0), (600.0, 3600.0), 1.4),
    (at(7.0), (-300.0, 3600.0), (-500.0, 800.0), 1.3),
    (at(12.0), (200.0, 900.0), (200.0, 3400.0), 1.0),
])


def test_ld2450_crossings_reach_the_broker_with_k_suppression(broker, recorder_factory,
                                                             tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)

    async def scenario() -> Agent:
        async with PtyLd2450(Ld2450Simulator(SCENE)) as pty:
            config = validate_config({
                "gateway": {"id": "radar-gw"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
                "state_dir": str(tmp_path / "state"), "health": {"interval": "1h"},
                "privacy": {"preset": "crowd-safety"},
                "sensors": [{"id": "entrance", "driver": "ld2450", "port": pty.port,
                             "window": "10s", "warmup": 0,
                             "counting": {"line": {"start": [-2.5, 2.0], "end": [2.5, 2.0]}}}]})
            agent = Agent(config, clock=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await async_wait_for(lambda: any(c.word == END_CONFIG for c in pty.sim.commands)
                                 and not pty.sim.config_mode, 10, "the driver to configure")
            running = agent.sensors[0]
            for k in range(FRAMES):
                await async_wait_for(lambda: clock.sleepers >= 2, 10, "the agent to wait")
                clock.advance(at(k / 10) - clock.monotonic())
                if k == 0:  # the first reports may be dropped as the driver leaves config mode
                    extra = await pty.send_until_counted(clock.monotonic(),
                                                         lambda: running.readings) - 1
                    continue
                pty.send_report(clock.monotonic())
                await async_wait_for(lambda n=k + 1 + extra: running.readings == n, 10,
                                     f"frame {k}")
            await async_wait_for(lambda: len(recorder.of("data/entrance")) >= 2, 10,
                                 "2 windows")
            stop.set()
            await asyncio.wait_for(task, 10)
            return agent

    agent = asyncio.run(scenario())
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    assert agent.sensors[0].frame_errors == 0
    first, second = recorder.of("data/entrance")[:2]
    assert first["window"]["seconds"] == 10
    values = first["values"]
    assert values["peopleIn"]["sum"] == 4 and values["peopleIn"]["suppressed"] is False
    assert values["peopleIn"]["k"] == 3 and values["peopleIn"]["n"] == 100
    # one person out: fewer than k = 3, so the count is withheld, never published as 1 or 0
    assert values["peopleOut"]["suppressed"] is True and values["peopleOut"]["sum"] is None
    assert values["occupancy"]["max"] == 3 and values["occupancy"]["suppressed"] is False
    assert values["occupancy"]["mean"] == pytest.approx(1.1, abs=0.1)  # ~11 person-seconds
    later = second["values"]
    assert later["peopleIn"]["suppressed"] is True and later["peopleIn"]["sum"] is None
    assert later["peopleOut"]["suppressed"] is True
    assert later["occupancy"]["suppressed"] is True  # at most one person at once: below k
    # nothing but the declared count statistics left: no coordinates, targets or tracks
    allowed = {"unit", "quantity", "n", "sum", "mean", "max", "k", "suppressed",
               "suppressed_reason"}
    for message in recorder.of("data/entrance"):
        assert set(message["values"]) == {"peopleIn", "peopleOut", "occupancy"}
        assert all(set(entry) <= allowed for entry in message["values"].values())
    manifest = str(recorder.of("manifest")[-1])
    assert "HLK-LD2450" in manifest and "at most 3 people" in manifest
