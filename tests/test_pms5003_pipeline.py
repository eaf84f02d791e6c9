"""Acceptance: a pty-fed PMS5003 simulator through the whole agent to a real broker.

3 minutes of fake time at 1 frame/s, 10 % of the frames replaced by faults: bad checksum, bad
length, truncated, garbage bytes, and the tail of a frame as if the stream started mid-frame.
The published means must equal the means of the valid frames; every corrupted frame with a
header is counted, none is used; garbage and tails are skipped on the way to the next header.
"""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from conftest import async_wait_for, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sim.pms5003 import Pms5003Simulator, PtyPms5003
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
FRAMES = 180
ROOT = "edgeagent/v1/pty-gw"


GARBAGE = bytes(b for b in random.Random(5).randbytes(24) if b != 0x42)  # no header byte
SILENT = ("garbage", "mid-frame")  # no header: nothing to count, skipped on resync


def corrupted(kind: str, frame: bytes) -> bytes:
    if kind == "checksum":
        return Pms5003Simulator.corrupt(frame)
    if kind == "length":
        return frame[:2] + b"\x00\x1d" + frame[4:]
    if kind == "garbage":
        return GARBAGE
    if kind == "mid-frame":
        return frame[10:]
    return Pms5003Simulator.partial(frame, 17)  # the tail never comes


def test_pty_pms5003_three_minutes_with_10_percent_faults(broker, recorder_factory,
                                                         tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    rng = random.Random(2026)
    bad = dict(zip(sorted(rng.sample(range(1, FRAMES - 1), FRAMES * 10 // 100)),
                   ["checksum", "length", "partial", "garbage", "mid-frame", "checksum"] * 3,
                   strict=True))
    counted = sum(kind not in SILENT for kind in bad.values())
    valid: dict[int, dict[str, int]] = {}

    async def scenario() -> Agent:
        clock = FakeClock(start_wall=ALIGNED, auto_advance=False)
        async with PtyPms5003(Pms5003Simulator(seed=7)) as sim:
            config = validate_config({
                "gateway": {"id": "pty-gw"},
                "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
                "state_dir": str(tmp_path / "state"), "health": {"interval": "1h"},
                "sensors": [{"id": "pm", "driver": "pms5003", "port": sim.port,
                             "mode": "active", "warmup": 0, "window": "60s",
                             "interval": "1s"}]})  # the simulator's cadence here
            agent = Agent(config, clock=clock)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            mode_active = bytes.fromhex("42 4D E1 00 01 01 71")
            await async_wait_for(lambda: mode_active in sim.received, 10, "driver opens")
            running = agent.sensors[0]
            for i in range(FRAMES):
                frame = sim.sim.next_frame()
                if i in bad:
                    before = running.frame_errors
                    sim.emit(corrupted(bad[i], frame))
                    if bad[i] not in ("partial", *SILENT):  # partial: noticed when data resume
                        await async_wait_for(lambda b=before: running.frame_errors > b, 5)
                else:
                    valid[i] = {"pm1": frame[10] << 8 | frame[11],
                                "pm25": frame[12] << 8 | frame[13],
                                "pm10": frame[14] << 8 | frame[15]}
                    sim.emit(frame)
                    count = len(valid)
                    await async_wait_for(lambda c=count: running.readings == c, 5)
                clock.advance(1.0)
            await async_wait_for(lambda: len(recorder.of("data/pm")) == 3, 10, "3 windows")
            stop.set()
            await asyncio.wait_for(task, 10)
            return agent

    agent = asyncio.run(scenario())
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    assert recorder.invalid == []
    messages = recorder.of("data/pm")
    assert [m["seq"] for m in messages] == [0, 1, 2]
    for index, message in enumerate(messages):
        frames = [v for i, v in valid.items() if 60 * index <= i < 60 * (index + 1)]
        assert message["window"]["start"] == f"2026-01-01T00:0{index}:00Z"
        assert not message["window"]["partial"]
        for stream in ("pm1", "pm25", "pm10"):
            published = message["values"][stream]
            assert published["n"] == len(frames)
            expected = statistics.fmean(f[stream] for f in frames)
            assert abs(published["mean"] - expected) <= 0.1, (index, stream)
            assert published["min"] == min(f[stream] for f in frames)
            assert published["max"] == max(f[stream] for f in frames)
        assert message["coverage"] == pytest.approx(len(frames) / 60, abs=0.001)
    assert sum(m["errors"] for m in messages) == counted == 12
    assert agent.sensors[0].frame_errors == counted
    assert agent.sensors[0].readings == FRAMES - len(bad) == FRAMES - 18
