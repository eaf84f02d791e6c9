"""Golden cases for the Sensirion SHT drivers: cases/<sht4x|sht3x>/<case>/ holds config.yaml and
either wire.hex (the chip's 6-byte answer to one measurement) + expected.jsonl, or init.err.

Each answer is decoded directly and also sent through the driver by the chip model, which must
see the measure command the config asks for. Values match to 0.005, the documented 2 decimals.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, FrameError, SensorConfig
from edgeagent.drivers import sht3x, sht4x
from edgeagent.drivers.sim import sht3x as sim_sht3x
from edgeagent.drivers.sim import sht4x as sim_sht4x
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from golden import load_case

ROOT = Path(__file__).parent / "cases"
# driver module, its class, chip model, and the option that picks the measure command
DRIVERS: dict[str, tuple[ModuleType, Any, Any, str]] = {
    "sht4x": (sht4x, sht4x.Sht4x, sim_sht4x.Sht4xChip, "precision"),
    "sht3x": (sht3x, sht3x.Sht3x, sim_sht3x.Sht3xChip, "repeatability"),
}
CASES = [(name, case.name) for name in DRIVERS for case in sorted((ROOT / name).iterdir())]


def matches(got: dict, want: dict) -> bool:
    if "error" in want:
        return want["error"] in got.get("error", "")
    return got.keys() == want.keys() and all(abs(got[k] - want[k]) <= 0.005 for k in want)


def decoded(module: ModuleType, wire: bytes) -> dict:
    try:
        return module.decode_measurement(wire)
    except FrameError as exc:
        return {"error": str(exc)}


def through_the_driver(name: str, config: SensorConfig, wire: bytes) -> tuple[dict, bytes]:
    """One read with the chip answering ``wire``; the outcome and the measure command sent."""
    _, driver_class, chip_class, _ = DRIVERS[name]

    async def scenario() -> tuple[dict, bytes]:
        clock = FakeClock(auto_advance=True)
        chip = chip_class(clock, address=config.address)
        bus = FakeI2cBus(config.bus, {config.address: chip})
        driver = driver_class(config, DriverContext(clock=clock, i2c=FakeBuses(bus)))
        await driver.open()
        chip.script_next_answer(wire)
        try:
            outcome = {r.stream: r.value for r in await driver.read()}
        except FrameError as exc:
            outcome = {"error": str(exc)}
        await driver.close()
        return outcome, bus.log[-2][2]  # the write before the measurement read

    return asyncio.run(asyncio.wait_for(scenario(), 5.0))


def test_every_driver_has_value_error_and_config_cases():
    for name in DRIVERS:
        folders = list((ROOT / name).iterdir())
        assert any((f / "wire.hex").exists() for f in folders)
        assert any((f / "init.err").exists() for f in folders)
        assert any("error" in (f / "expected.jsonl").read_text() for f in folders
                   if (f / "expected.jsonl").exists())


@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{n}/{c}" for n, c in CASES])
def test_case(name: str, case: str):
    module, driver_class, _, option = DRIVERS[name]
    loaded = load_case(ROOT / name / case, driver_class.Config)
    if loaded is None:
        return  # a config error case, checked by load_case
    config, wire, (expected,) = loaded
    assert len(wire) == 6, "one measurement answer"
    assert matches(decoded(module, wire), expected), decoded(module, wire)
    outcome, command = through_the_driver(name, config, wire)
    assert matches(outcome, expected), outcome
    sent = module.CMD_MEASURE[getattr(config, option)]
    assert command == (bytes([sent]) if isinstance(sent, int) else sent)
