"""Acceptance: a pty-fed SDS011 (query mode) with 10 % injected faults through the whole agent,
stepped on fake time, to a real mosquitto: the published means are those of the valid answers
and every corrupted frame is counted."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from conftest import async_wait_for, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sim.sds011 import PtySds011, Sds011Simulator
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0
ROOT = "edgeagent/v1/sds-gw"
SAMPLES = 180


def values_at(k: int) -> tuple[float, float]:
    return 5.0 + 0.1 * (k % 13), 9.0 + 0.3 * (k % 7)


def test_sds011_query_mode_with_10_percent_faults(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    rng = random.Random(11)
    faults = dict(zip(sorted(rng.sample(range(1, SAMPLES), SAMPLES // 10)),
                      ["checksum", "truncated", "mid-frame"] * 6, strict=True))
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)

    async def scenario() -> Agent:
        async with PtySds011(Sds011Simulator(seed=3)) as sim:
            sim.sim.set_values(*values_at(0))
            config = validate_config({
                "gateway": {"id": "sds-gw"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
                "state_dir": str(tmp_path / "state"), "health": {"interval": "1h"},
                "sensors": [{"id": "pm", "driver": "sds011", "port": sim.port, "mode": "query",
                             "warmup": 0, "window": "60s", "interval": "1s"}]})
            agent = Agent(config, clock=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            while clock.monotonic() < START + SAMPLES:
                await async_wait_for(lambda: clock.sleepers >= 3, 10, "the agent to wait")
                before = clock.monotonic()
                now = clock.advance_to_next()
                k = round(now - START)
                if now > before and abs(now - START - k) < 1e-6 and k < SAMPLES:
                    sim.sim.set_values(*values_at(k))
                    junk = Sds011Simulator.encode_frame(*values_at(k + 50), sim.sim.device_id)
                    if faults.get(k) == "checksum":  # a bad frame just before the answer
                        sim.emit(Sds011Simulator.corrupt(junk))
                    elif faults.get(k) == "truncated":
                        sim.emit(Sds011Simulator.partial(junk, 6))
                    elif faults.get(k) == "mid-frame":  # the tail of a frame, no header
                        sim.emit(junk[4:])
            await async_wait_for(lambda: len(recorder.of("data/pm")) >= 3, 10, "3 windows")
            stop.set()
            await asyncio.wait_for(task, 10)
            return agent

    agent = asyncio.run(scenario())
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    messages = recorder.of("data/pm")[:3]
    counted = sum(1 for kind in faults.values() if kind != "mid-frame")  # a tail is skipped
    assert sum(m["errors"] for m in messages) == counted == agent.sensors[0].frame_errors
    for index, message in enumerate(messages):
        expected = [values_at(k) for k in range(60 * index, 60 * (index + 1))]
        pm25, pm10 = message["values"]["pm25"], message["values"]["pm10"]
        assert pm25["n"] == 60, "every query was answered and used exactly once"
        assert pm25["mean"] == pytest.approx(statistics.fmean(v[0] for v in expected), abs=0.01)
        assert pm10["mean"] == pytest.approx(statistics.fmean(v[1] for v in expected), abs=0.01)
        assert pm25["max"] == max(v[0] for v in expected)  # no value from a corrupted frame
