"""Every registered driver meets the same contract (style guide §3.3)."""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import re
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import Driver, SensorConfig, available_drivers, load_driver

REPO = Path(__file__).resolve().parent.parent
NAMES = sorted(available_drivers())


def test_the_spine_drivers_are_registered():
    assert {"pms5003", "simulated"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_static_contract(name):
    cls = load_driver(name)
    module = sys.modules[cls.__module__]
    assert cls.__module__ == f"edgeagent.drivers.{name}", "module name = entry-point name"
    assert module.__doc__ and len(module.__doc__.strip()) > 40, "module docstring: chip, bus"
    assert cls.__doc__, "class docstring"
    assert issubclass(cls, Driver) and issubclass(cls.Config, SensorConfig)
    assert cls.Config.model_config.get("extra") == "forbid"
    assert isinstance(cls.model, str) and cls.model
    config = cls.Config.model_validate(cls.sample_config)
    assert config.driver == name
    with pytest.raises(ValidationError, match="extra"):
        cls.Config.model_validate({**cls.sample_config, "no_such_option": 1})
    with pytest.raises(ValidationError):
        cls.Config.model_validate({**cls.sample_config, "driver": "other"})
    streams = cls.streams(config)
    assert streams, "a driver produces at least one stream"
    assert len({s.name for s in streams}) == len(streams)
    for spec in streams:
        assert re.fullmatch(r"[a-z][A-Za-z0-9_]{0,31}", spec.name)
        assert spec.unit
    json.dumps(cls(config, None).describe(), default=str)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_each_driver_has_simulator_tests_docs_and_golden_cases(name):
    cls = load_driver(name)
    sim = importlib.import_module(f"edgeagent.drivers.sim.{name}")
    assert callable(sim.conformance_driver)
    assert (REPO / "tests" / "drivers" / f"test_{name}.py").exists()
    assert (REPO / "docs" / "drivers" / f"{name}.md").exists()
    if not cls.simulated:  # real hardware: golden wire captures from the datasheet
        cases = REPO / "tests" / "drivers" / "cases" / name
        assert any(cases.glob("*/wire.hex")), f"no golden cases in {cases}"


@pytest.mark.parametrize("name", NAMES)
def test_shared_behaviour_against_the_simulator(name):
    cls = load_driver(name)
    sim = importlib.import_module(f"edgeagent.drivers.sim.{name}")
    declared_for = cls.streams

    async def scenario():
        clock = FakeClock(auto_advance=True)
        async with sim.conformance_driver(clock) as driver:
            await driver.close()  # safe before open
            await driver.open()
            batches = []
            for _ in range(50):
                readings = await driver.read()
                if readings:
                    batches.append(readings)
                if len(batches) == 3:
                    break
            await driver.close()
            await driver.close()  # idempotent
            return driver, batches

    driver, batches = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert len(batches) == 3, "three samples within 50 reads"
    declared = {s.name for s in declared_for(driver.config)}
    for readings in batches:
        assert {r.stream for r in readings} <= declared
        assert all(math.isfinite(r.value) for r in readings)
        assert len({r.t_monotonic for r in readings}) == 1, "one sample = one instant"
