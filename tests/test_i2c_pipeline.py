"""Acceptance: each I2C sensor on a fake bus (its chip model at the bus boundary) through the
whole agent, stepped on fake time, to a real mosquitto: the published window means equal the
means of the values the chip reported."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import async_wait_for, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sen5x import CMD_READ_VALUES as SEN5X_READ_VALUES
from edgeagent.drivers.sen5x import VARIANT_STREAMS
from edgeagent.drivers.sim.bme280 import Bme280Chip
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sen5x import Sen5xChip
from edgeagent.drivers.sim.sht3x import Sht3xChip
from edgeagent.drivers.sim.sht4x import Sht4xChip
from edgeagent.drivers.sim.sps30_i2c import Sps30Chip
from edgeagent.drivers.sps30 import VALUE_NAMES as SPS30_NAMES
from edgeagent.drivers.sps30_i2c import CMD_READ_VALUES as SPS30_READ_VALUES
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


def run_agent(driver: str, chip: Any, address: int, options: dict[str, Any],
              set_sample: Callable[[Any, int], None], clock: FakeClock, port: int,
              state_dir: Path, recorder: Any, sensor_id: str) -> None:
    """Run the agent with one I2C sensor for 180 s of fake time, until 3 windows are out."""
    set_sample(chip, 0)
    config = validate_config({
        "gateway": {"id": "i2c-gw"},
        "mqtt": {"host": "127.0.0.1", "port": port, "tls": {"enabled": False}},
        "state_dir": str(state_dir), "health": {"interval": "1h"},
        "sensors": [{"id": sensor_id, "driver": driver, "bus": 1, "address": address,
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
                set_sample(chip, round(now - START))  # the values change on whole seconds
        await async_wait_for(lambda: len(recorder.of(f"data/{sensor_id}")) >= 3, 10,
                             "3 windows")
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")


@pytest.mark.parametrize("driver", sorted(CASES))
def test_i2c_sensor_on_a_fake_bus_publishes_the_window_means(driver, broker, recorder_factory,
                                                            tmp_path):
    make_chip, address, set_values, options = CASES[driver]
    recorder = recorder_factory(broker.port, ROOT)
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    run_agent(driver, make_chip(clock), address, options, set_values, clock, broker.port,
              tmp_path / "state", recorder, "climate")
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


# --- particulate sensors: data-ready polled, first result one second after Start -------------

def pm_schedule(k: int) -> tuple[float, float, float, float]:
    """PM1, PM2.5, PM4, PM10 in µg/m³ at sample k (multiples of 0.1: the SEN5x resolution)."""
    pm1 = 2.0 + 0.5 * (k % 7)
    pm25 = pm1 + 1.5 + 0.1 * (k % 4)
    pm4 = pm25 + 0.7
    return pm1, pm25, pm4, pm4 + 0.4 * (k % 3)


def set_sps30(chip: Sps30Chip, k: int) -> None:
    numbers = (30.0 + k % 11, 35.0 + k % 11, 36.0 + k % 11, 36.5 + k % 11, 36.6 + k % 11)
    chip.values = (*pm_schedule(k), *numbers, 0.5 + 0.05 * (k % 4))


def set_sen5x(chip: Sen5xChip, k: int) -> None:
    temperature, humidity = schedule(k)
    pm1, pm25, pm4, pm10 = pm_schedule(k)
    chip.set_values(pm1=pm1, pm25=pm25, pm4=pm4, pm10=pm10, temperature=temperature,
                    relativeHumidity=humidity, vocIndex=100.0 + 10.0 * (k % 4),
                    noxIndex=1.0 + (k % 3))


class Recording:
    """A chip model behind a tap: notes what the chip reported at each measured-values read."""

    def __init__(self, chip: Any, clock: FakeClock, values_command: bytes,
                 reported: Callable[[Any], dict[str, float]]) -> None:
        self.chip, self.clock = chip, clock
        self.values_command, self.reported = values_command, reported
        self.served: list[tuple[float, dict[str, float]]] = []
        self._command = b""

    def write(self, data: bytes) -> None:
        self._command = data[:2]
        self.chip.write(data)

    def read(self, length: int) -> bytes:
        values = self.reported(self.chip)
        answer = self.chip.read(length)
        if self._command == self.values_command:
            self.served.append((self.clock.monotonic(), values))
        return answer


PM_CASES = {
    "sps30_i2c": (Sps30Chip, SPS30_READ_VALUES, set_sps30,
                  lambda chip: dict(zip(SPS30_NAMES, chip.values, strict=True)), SPS30_NAMES),
    "sen5x": (Sen5xChip, SEN5X_READ_VALUES, set_sen5x, lambda chip: chip.reported_values(),
              VARIANT_STREAMS["SEN55"]),
}


@pytest.mark.parametrize("driver", sorted(PM_CASES))
def test_pm_sensor_on_a_fake_bus_publishes_the_means_of_what_the_chip_reported(
        driver, broker, recorder_factory, tmp_path):
    make_chip, values_command, set_values, reported, names = PM_CASES[driver]
    recorder = recorder_factory(broker.port, ROOT)
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    chip = make_chip(clock)
    tap = Recording(chip, clock, values_command, reported)
    run_agent(driver, tap, 0x69, {"warmup": 0}, lambda _, k: set_values(chip, k), clock,
              broker.port, tmp_path / "state", recorder, "air")
    for index, message in enumerate(recorder.of("data/air")[:3]):
        assert message["window"]["start"] == f"2026-01-01T00:0{index}:00Z"
        begin = START + 60.0 * index
        served = [values for t, values in tap.served if begin <= t < begin + 60.0]
        # the first result comes a second after Start: 59 samples in the first window
        assert len(served) == (59 if index == 0 else 60)
        assert message["coverage"] == round(len(served) / 60, 3) and message["errors"] == 0
        values = message["values"]
        assert set(values) == set(names)
        for name in names:
            known = [sample[name] for sample in served if name in sample]
            assert values[name]["n"] == len(known), name
            assert values[name]["mean"] == pytest.approx(statistics.fmean(known), abs=0.006)
            assert values[name]["max"] == pytest.approx(max(known), abs=0.006)
        assert values["pm25"]["unit"] == "ug/m3"
        if driver == "sen5x":
            assert values["temperature"]["unit"] == "Cel"
            if index == 0:  # NOx unknown for the first 10 s after the reset at open: no number
                assert values["noxIndex"]["n"] == 50 and values["noxIndex"]["max"] <= 3.0
            else:
                assert values["noxIndex"]["n"] == 60
