"""The thermal counter drivers (AMG8833, MLX90640) on their chip models: streams per counting
config, counts per frame, frame errors, health figures and a missing TFLite runtime."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest

from edgeagent.clock import FakeClock
from edgeagent.config import ConfigError, validate_config
from edgeagent.driver import DriverContext, DriverError, FrameError
from edgeagent.drivers.amg8833 import Amg8833, Amg8833Config
from edgeagent.drivers.sim.amg8833 import Amg8833Chip, fake_bus
from edgeagent.drivers.sim.i2cbus import FakeBuses

RUNTIMES = ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
            "tflite_runtime.interpreter", "tensorflow", "tensorflow.lite")


def amg(clock, scene, **options):
    config = Amg8833Config.model_validate({"id": "door", "driver": "amg8833", **options})
    chip = Amg8833Chip(clock, scene=scene)
    return Amg8833(config, DriverContext(clock=clock, i2c=FakeBuses(fake_bus(chip)))), chip


def person_at(row: float):
    """An empty 21 °C floor with a warm head at (row, column 3.5), moving with time."""
    rows, cols = np.mgrid[0:8, 0:8]

    def scene(t: float) -> np.ndarray:
        r = row(t) if callable(row) else row
        return 21.0 + 10.0 * np.exp(-((rows - r) ** 2 + (cols - 3.5) ** 2) / 1.2)
    return scene


def test_streams_follow_the_counting_config():
    plain = Amg8833Config.model_validate({"id": "a", "driver": "amg8833"})
    assert [s.name for s in Amg8833.streams(plain)] == ["occupancy"]
    full = Amg8833Config.model_validate({
        "id": "a", "driver": "amg8833",
        "counting": {"line": {"start": [0, 0.5], "end": [1, 0.5]},
                     "zones": [{"name": "queue", "rect": [0, 0, 1, 0.5]}]}})
    specs = {s.name: s for s in Amg8833.streams(full)}
    assert list(specs) == ["peopleIn", "peopleOut", "occupancy", "occupancy_queue"]
    assert specs["occupancy_queue"].statistics == ("max",)
    assert all(s.quantity.value == "people_count" for s in specs.values())
    assert Amg8833.sample_interval(full) == pytest.approx(0.1)
    assert Amg8833.sample_interval(full.model_copy(update={"fps": 1})) == 1.0


def test_a_person_walking_down_the_frame_is_counted_in_once():
    clock = FakeClock(auto_advance=True)
    start = clock.monotonic()
    walk = person_at(lambda t: min(8.5, max(-1.5, -1.5 + (t - start - 3.0) * 2.0)))

    async def scenario():
        driver, _ = amg(clock, walk, detector="blobs",
                        counting={"line": {"start": [0, 0.5], "end": [1, 0.5]}})
        await driver.open()
        totals = {"peopleIn": 0.0, "peopleOut": 0.0}
        peak = 0.0
        for _ in range(90):  # 9 s at 10 fps: 3 s empty floor, then the walk
            for reading in await driver.read():
                if reading.stream in totals:
                    totals[reading.stream] += reading.value
                else:
                    peak = max(peak, reading.value)
        health = driver.health()
        await driver.close()
        return totals, peak, health

    totals, peak, health = asyncio.run(scenario())
    assert totals == {"peopleIn": 1.0, "peopleOut": 0.0}
    assert peak == 1.0
    assert health["frames"] == 90 and health["detector"] == "blobs"
    assert health["fps"] == pytest.approx(10.0, rel=0.01)
    assert health["dropped_frames"] == 0
    assert set(health) <= {"frames", "dropped_frames", "fps", "inference_ms",
                           "inference_ms_max", "detector", "runtime"}


def test_an_overflowing_frame_is_a_dropped_frame_not_a_crash():
    clock = FakeClock(auto_advance=True)

    async def scenario():
        driver, chip = amg(clock, lambda t: np.full((8, 8), 21.0), detector="blobs")
        await driver.open()
        await driver.read()
        chip.scene = lambda t: np.full((8, 8), 95.0)  # beyond the pixel range: STAT overflow
        with pytest.raises(FrameError, match="overflow"):
            await driver.read()
        return driver.health()["dropped_frames"]

    assert asyncio.run(scenario()) == 1


def test_a_missing_tflite_runtime_is_a_config_error_naming_the_install(monkeypatch):
    for name in RUNTIMES:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    entry = {"id": "door", "driver": "amg8833", "window": "5min"}
    base = {"gateway": {"id": "gw"}, "mqtt": {"host": "127.0.0.1", "tls": {"enabled": False}}}
    with pytest.raises(ConfigError) as caught:
        validate_config({**base, "sensors": [entry]})
    assert "sensors[0].detector" in str(caught.value)
    assert "pip install 'edgeagent[thermal]'" in str(caught.value)
    assert "detector: blobs" in str(caught.value)
    validate_config({**base, "sensors": [{**entry, "detector": "blobs"}]})  # runs without one


def test_open_without_a_runtime_fails_once_and_for_good(monkeypatch):
    for name in RUNTIMES:
        monkeypatch.setitem(sys.modules, name, None)
    clock = FakeClock(auto_advance=True)
    driver, _ = amg(clock, lambda t: np.full((8, 8), 21.0), detector="cnn")
    with pytest.raises(DriverError, match="edgeagent\\[thermal\\]") as caught:
        asyncio.run(driver.open())
    assert caught.value.retryable is False
