"""Acceptance: an I2C sensor on a fake bus (chip model at the bus boundary) through the whole
agent, stepped on fake time, to a real mosquitto: the published means equal the values the
chip reported."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from conftest import async_wait_for, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sim.bme280 import Bme280Chip
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
ROOT = "edgeagent/v1/i2c-gw"


class RecordingChip(Bme280Chip):
    """Reports a new temperature and humidity at every conversion and remembers them."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.reported: list[tuple[float, float, float]] = []

    def _start(self, *args: int) -> None:
        index = len(self.reported)
        self.temperature = 18.0 + 0.25 * (index % 9)
        self.humidity = 40.0 + 1.5 * (index % 5)
        self.reported.append((self.clock.monotonic(), self.temperature, self.humidity))
        super()._start(*args)


def test_bme280_on_a_fake_bus_publishes_the_window_means(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    clock = FakeClock(start_wall=ALIGNED, auto_advance=False)
    chip = RecordingChip(clock)
    config = validate_config({
        "gateway": {"id": "i2c-gw"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
        "state_dir": str(tmp_path / "state"), "health": {"interval": "1h"},
        "sensors": [{"id": "climate", "driver": "bme280", "bus": 1, "oversampling": 16,
                     "window": "60s", "interval": "1s"}]})
    agent = Agent(config, clock=clock, i2c=FakeBuses(FakeI2cBus(1, {0x76: chip})))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        # sensor, window ticker and health loop all wait on the clock: step event by event
        while clock.monotonic() < 1000.0 + 180.0:
            await async_wait_for(lambda: clock.sleepers >= 3, 10, "the agent to wait")
            clock.advance_to_next()
        await async_wait_for(lambda: len(recorder.of("data/climate")) >= 3, 10, "3 windows")
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    messages = recorder.of("data/climate")[:3]
    assert [m["window"]["start"] for m in messages] == [
        "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"]
    for index, message in enumerate(messages):
        window = [r for r in chip.reported if 60 * index <= r[0] - 1000.0 < 60 * (index + 1)]
        assert message["values"]["temperature"]["n"] == len(window) == 60
        temperature = statistics.fmean(r[1] for r in window)
        humidity = statistics.fmean(r[2] for r in window)
        assert message["values"]["temperature"]["mean"] == pytest.approx(temperature, abs=0.01)
        assert message["values"]["relativeHumidity"]["mean"] == pytest.approx(humidity, abs=0.05)
        assert message["values"]["temperature"]["unit"] == "Cel"
        assert message["values"]["pressure"]["mean"] == pytest.approx(1013.25, abs=0.02)
        assert message["coverage"] == 1.0 and message["errors"] == 0
