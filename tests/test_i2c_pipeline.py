"""Acceptance: each I2C sensor on a fake bus (its chip model at the bus boundary) through the
whole agent, stepped on fake time, to a real mosquitto: the published window means equal the
means of the values the chip reported."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable

import pytest

from conftest import async_wait_for, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sim.bme280 import Bme280Chip
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sht3x import Sht3xChip
from edgeagent.drivers.sim.sht4x import Sht4xChip
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0  # FakeClock's monotonic start
ROOT = "edgeagent/v1/i2c-gw"


def schedule(k: int) -> tuple[float, float]:
    """Temperature and humidity the chip reports at sample k."""
    return 18.0 + 0.25 * (k % 9), 40.0 + 1.5 * (k % 5)


def set_bme(chip: Bme280Chip, k: int) -> None:
    chip.temperature, chip.humidity = schedule(k)


def set_sht(chip: Sht4xChip | Sht3xChip, k: int) -> None:
    chip.set_values(*schedule(k))


CASES = {
    "bme280": (Bme280Chip, 0x76, set_bme, {"oversampling": 16}),
    "sht4x": (Sht4xChip, 0x44, set_sht, {}),
    "sht3x": (Sht3xChip, 0x44, set_sht, {}),
}


@pytest.mark.parametrize("driver", sorted(CASES))
def test_i2c_sensor_on_a_fake_bus_publishes_the_window_means(driver, broker, recorder_factory,
                                                            tmp_path):
    make_chip, address, set_values, options = CASES[driver]
    set_sample: Callable[[object, int], None] = set_values  # type: ignore[assignment]
    recorder = recorder_factory(broker.port, ROOT)
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    chip = make_chip(clock)
    set_sample(chip, 0)
    config = validate_config({
        "gateway": {"id": "i2c-gw"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
        "state_dir": str(tmp_path / "state"), "health": {"interval": "1h"},
        "sensors": [{"id": "climate", "driver": driver, "bus": 1, "address": address,
                     "window": "60s", "interval": "1s", **options}]})
    agent = Agent(config, clock=clock, i2c=FakeBuses(FakeI2cBus(1, {address: chip})))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        # sensor, window ticker and health loop all wait on the clock: step event by event
        while clock.monotonic() < START + 180.0:
            await async_wait_for(lambda: clock.sleepers >= 3, 10, "the agent to wait")
            before = clock.monotonic()
            now = clock.advance_to_next()
            if now > before and abs(now - START - round(now - START)) < 1e-6:
                set_sample(chip, round(now - START))  # the driver polls on whole seconds
        await async_wait_for(lambda: len(recorder.of("data/climate")) >= 3, 10, "3 windows")
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    for index, message in enumerate(recorder.of("data/climate")[:3]):
        assert message["window"]["start"] == f"2026-01-01T00:0{index}:00Z"
        samples = [schedule(k) for k in range(60 * index, 60 * (index + 1))]
        values = message["values"]
        assert values["temperature"]["n"] == 60 and values["temperature"]["unit"] == "Cel"
        assert values["temperature"]["mean"] == pytest.approx(
            statistics.fmean(t for t, _ in samples), abs=0.01)
        assert values["relativeHumidity"]["mean"] == pytest.approx(
            statistics.fmean(h for _, h in samples), abs=0.05)
        assert message["coverage"] == 1.0 and message["errors"] == 0
        if driver == "bme280":
            assert values["pressure"]["mean"] == pytest.approx(1013.25, abs=0.02)
