"""Acceptance: a pty-fed SPS30 (SHDLC) with 10 % injected faults through the whole agent,
stepped on fake time, to a real mosquitto: published means are those of the valid replies."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from conftest import async_wait_for, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sim.sps30 import GOLDEN_VALUES, PtySps30, Sps30Simulator
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0
ROOT = "edgeagent/v1/sps-gw"
SECONDS = 180


def values_at(k: int) -> tuple[float, ...]:
    """The golden capture, with PM2.5 and PM10 varying per second (keeps PM1 <= PM2.5)."""
    values = list(GOLDEN_VALUES)
    values[1] = values[0] + 0.5 + 0.1 * (k % 11)
    values[3] = values[1] + 1.0 + 0.2 * (k % 7)
    values[2] = (values[1] + values[3]) / 2
    return tuple(values)


def test_sps30_with_10_percent_faults(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    rng = random.Random(5)
    faults = dict(zip(sorted(rng.sample(range(2, SECONDS - 1), SECONDS // 10)),
                      ["corrupt", "garbage"] * 9, strict=True))
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    used: dict[int, tuple[float, ...]] = {}

    async def scenario() -> Agent:
        async with PtySps30(Sps30Simulator(clock=clock)) as sim:
            sim.sim.values = values_at(0)
            config = validate_config({
                "gateway": {"id": "sps-gw"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
                "state_dir": str(tmp_path / "state"), "health": {"interval": "1h"},
                "sensors": [{"id": "pm", "driver": "sps30", "port": sim.port, "warmup": 0,
                             "window": "60s", "interval": "1s"}]})
            agent = Agent(config, clock=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            while clock.monotonic() < START + SECONDS:
                await async_wait_for(lambda: clock.sleepers >= 3, 10, "the agent to wait")
                before = clock.monotonic()
                now = clock.advance_to_next()
                k = round(now - START)
                if now > before and abs(now - START - k) < 1e-6 and k < SECONDS:
                    sim.sim.values = values_at(k)
                    if k in faults:
                        sim.sim.faults.append(faults[k])
                    if faults.get(k) != "corrupt":
                        used[k] = values_at(k)
            await async_wait_for(lambda: len(recorder.of("data/pm")) >= 3, 10, "3 windows")
            stop.set()
            await asyncio.wait_for(task, 10)
            return agent

    agent = asyncio.run(scenario())
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    messages = recorder.of("data/pm")[:3]
    corrupt = sum(1 for kind in faults.values() if kind == "corrupt")
    errors = sum(m["errors"] for m in messages)
    assert errors == agent.sensors[0].frame_errors
    # every corrupted reply is counted; random garbage may also hold a 7E flag (one more error)
    assert corrupt <= errors <= len(faults)
    for index, message in enumerate(messages):
        expected = [v for k, v in used.items() if 60 * index <= k < 60 * (index + 1)]
        pm25 = message["values"]["pm25"]
        assert pm25["n"] == message["values"]["pm10"]["n"] == len(expected)
        assert pm25["mean"] == pytest.approx(statistics.fmean(v[1] for v in expected), abs=0.01)
        assert message["values"]["pm10"]["mean"] == pytest.approx(
            statistics.fmean(v[3] for v in expected), abs=0.01)
