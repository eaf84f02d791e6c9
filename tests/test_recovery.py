"""The recovery ladder: resync → reinit → I2C bus reset → power cycle → failed (and probed).

A sensor on a fake bus behind a power switch on gpiozero's MockFactory latches up; the ladder
must bring it back with the step that actually helps, report every step as an event and count
it in health, and never need an agent restart.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest
from gpiozero import Device, OutputDevice
from gpiozero.pins.mock import MockFactory, MockPin

from conftest import async_wait_for, run_stepped, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.driver import load_driver
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, SwitchedChip
from edgeagent.drivers.sim.pms5003 import PtyPms5003
from edgeagent.drivers.sim.sen5x import Sen5xChip
from edgeagent.drivers.sim.sht4x import Sht4xChip
from edgeagent.i2c import reset_bus
from edgeagent.supervisor import Agent, RunningSensor, SensorState
from edgeagent.windows import SensorWindows

GPIO = 17
ADDRESS = 0x44


@pytest.fixture
def gpio():
    """gpiozero on its mock pin factory, reset after the test."""
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


def power_ons(pin: MockPin) -> Callable[[], int]:
    """Count off→on edges of a mock output pin (a real supply switch being cycled)."""
    def count() -> int:
        states = [s.state for s in pin.states]
        return sum(1 for a, b in itertools.pairwise(states) if not a and b)
    return count


def switched_sht4x(clock: FakeClock, factory: MockFactory) -> SwitchedChip:
    pin = factory.pin(GPIO)
    return SwitchedChip(lambda: Sht4xChip(clock), address=ADDRESS, power_ons=power_ons(pin),
                        powered=lambda: bool(pin.state))


def make_sensor(entry: dict, clock: FakeClock, bus: FakeI2cBus, events: list, **kwargs):
    cls = load_driver(entry["driver"])
    config = cls.Config.model_validate(entry)
    windows = SensorWindows(config.id, cls.streams(config), config.window, config.interval,
                            clock)

    async def release(closed):
        pass

    async def event(kind, message, **details):
        events.append((kind, details.get("step"), details.get("attempt"), message))

    return RunningSensor(config, cls, clock, windows, release, event, rand=lambda: 1.0,
                         i2c=FakeBuses(bus), **kwargs)


POWERED = {"id": "rht", "driver": "sht4x", "bus": 1,
           "power": {"gpio": GPIO, "off_time": "3s", "boot_time": "1s"}}


def run_until_recovered(sensor: RunningSensor, events: list,
                        trouble: Callable[[], None]) -> None:
    """Run the sensor, cause ``trouble`` after 3 readings, stop 3 readings after recovery."""
    async def scenario():
        task = asyncio.create_task(sensor.run())
        await async_wait_for(lambda: sensor.readings >= 3, 10, "3 readings")
        trouble()
        await async_wait_for(lambda: any(e[0] == "sensor_recovered" for e in events), 10,
                             "the recovery")
        seen = sensor.readings
        await async_wait_for(lambda: sensor.readings >= seen + 3, 10, "readings again")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_latched_up_sensor_is_brought_back_by_a_power_cycle(gpio):
    clock = FakeClock(auto_advance=True)
    chip = switched_sht4x(clock, gpio)
    events: list = []
    sensor = make_sensor(POWERED, clock, FakeI2cBus(1, {ADDRESS: chip}), events)
    run_until_recovered(sensor, events, chip.latch)
    steps = [(kind, step, attempt) for kind, step, attempt, _ in events]
    assert steps == [("sensor_fault", None, None),
                     ("sensor_recovery", "reinit", 1), ("sensor_recovery", "reinit", 2),
                     ("sensor_recovery", "bus_reset", 3), ("sensor_recovery", "power_cycle", 4),
                     ("sensor_recovered", None, None)]
    assert "no answer from I2C bus 1 address 0x44" in events[0][3]
    assert "no chip acknowledged" not in events[3][3]  # the latched chip ACKs nothing …
    assert "GPIO17 (power switch of rht) switched off for 3s" in events[4][3]
    health = sensor.health()
    assert health["recovery"] == {"resync": 0, "reinit": 2, "bus_reset": 1, "power_cycle": 1}
    assert health["power"] == {"gpio": GPIO, "on": True} and health["state"] == "ok"
    assert chip.boots == 3  # first power-on at start, then the ladder's power cycle
    assert [s.state for s in gpio.pin(GPIO).states][-2:] == [False, True]


def test_a_stuck_bus_is_cleared_by_the_general_call_reset_before_any_power_cycle(gpio):
    clock = FakeClock(auto_advance=True)
    chip = switched_sht4x(clock, gpio)
    events: list = []
    sensor = make_sensor(POWERED, clock, FakeI2cBus(1, {ADDRESS: chip}), events)
    run_until_recovered(sensor, events, lambda: chip.latch(cleared_by="general_call"))
    steps = [step for kind, step, _, _ in events if kind == "sensor_recovery"]
    assert steps == ["reinit", "reinit", "bus_reset"]
    assert "general-call reset sent" in events[3][3]
    assert sensor.recovery["power_cycle"] == 0


def test_a_failed_sensor_is_probed_and_comes_back_when_replugged():
    clock = FakeClock(auto_advance=False)  # stepped by hand: the probe timing is asserted
    chip = Sht4xChip(clock)
    events: list = []
    sensor = make_sensor({"id": "rht", "driver": "sht4x", "bus": 1}, clock,
                         FakeI2cBus(1, {ADDRESS: chip}), events, restart_limit=3)

    async def step_until(condition: Callable[[], bool]) -> None:
        while True:
            await async_wait_for(lambda: clock.sleepers >= 1, 10, "the sensor to wait")
            if condition():
                return
            clock.advance_to_next()

    async def scenario():
        task = asyncio.create_task(sensor.run())
        await step_until(lambda: sensor.readings >= 3)
        chip.go_absent()  # unplugged
        await step_until(lambda: sensor.state is SensorState.FAILED)
        failed_at = clock.monotonic()
        await step_until(lambda: sensor.recovery["bus_reset"] == 3)  # two probes: still absent
        probes = clock.monotonic() - failed_at
        chip.come_back()  # replugged by the technician
        await step_until(lambda: sensor.state is SensorState.OK)
        back_at = clock.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return back_at - failed_at, probes

    back_after, probed_for = asyncio.run(scenario())
    kinds = [kind for kind, _, _, _ in events]
    assert kinds == ["sensor_fault", "sensor_recovery", "sensor_recovery", "sensor_recovery",
                     "sensor_failed", "sensor_recovered"]  # probes are counted, not announced
    assert 1200 <= probed_for < 1201  # a probe every 600 s
    assert 1800 <= back_after < 1802  # the third probe (bus reset, open) finds it again
    assert sensor.recovery["bus_reset"] == 1 + 3


def test_an_unusable_power_pin_is_reported_and_the_ladder_goes_on_without_it(gpio):
    squatter = OutputDevice(GPIO)  # something else holds the pin
    clock = FakeClock(auto_advance=True)
    events: list = []
    chip = Sht4xChip(clock)
    sensor = make_sensor(POWERED, clock, FakeI2cBus(1, {ADDRESS: chip}), events)

    async def scenario():
        task = asyncio.create_task(sensor.run())
        await async_wait_for(lambda: sensor.readings >= 2, 10, "readings")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    squatter.close()
    assert events[0][0] == "sensor_fault" and "GPIO17 (power switch of rht)" in events[0][3]
    assert sensor.health()["power"] is None


def test_bus_reset_reports_whether_any_chip_took_the_general_call():
    clock = FakeClock(auto_advance=True)
    silent = FakeBuses(FakeI2cBus(1, {ADDRESS: Sht4xChip(clock)}))
    assert "no chip acknowledged" in asyncio.run(reset_bus(1, silent))
    chip = SwitchedChip(lambda: Sht4xChip(clock), address=ADDRESS, power_ons=lambda: 0,
                        powered=lambda: True)
    chip.latch(cleared_by="general_call")
    listening = FakeI2cBus(1, {ADDRESS: chip})
    assert "general-call reset sent" in asyncio.run(reset_bus(1, FakeBuses(listening)))
    assert chip.latched is None and ("write", 0x00, b"\x06") in listening.log


@pytest.mark.broker
def test_the_ladder_runs_inside_the_agent_and_publishes_its_steps(gpio, broker,
                                                                  recorder_factory, tmp_path):
    root = "edgeagent/v1/ladder-gw"
    recorder = recorder_factory(broker.port, root)
    clock = FakeClock(start_wall=1_767_225_600.0, start_mono=1000.0, auto_advance=False)
    chip = switched_sht4x(clock, gpio)
    config = validate_config({
        "gateway": {"id": "ladder-gw"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
        "state_dir": str(tmp_path / "state"), "health": {"interval": "30s"},
        "sensors": [{**POWERED, "window": "60s", "interval": "1s"}]})
    agent = Agent(config, clock=clock, i2c=FakeBuses(FakeI2cBus(1, {ADDRESS: chip})))

    def trouble(now: float) -> None:
        if now >= 1070.0 and chip.boots == 2 and not chip.latched:  # in the second window
            chip.latch()

    run_stepped(agent, clock, 1000.0 + 250.0, each=trouble)
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    wait_for(lambda: len(recorder.of("data/rht")) >= 4, 5, "four windows")
    ladder = [(e["type"], e["details"].get("step")) for e in recorder.of("events")
              if e["type"].startswith("sensor_")]
    assert ladder == [("sensor_fault", None), ("sensor_recovery", "reinit"),
                      ("sensor_recovery", "reinit"), ("sensor_recovery", "bus_reset"),
                      ("sensor_recovery", "power_cycle"), ("sensor_recovered", None)]
    windows = recorder.of("data/rht")
    assert len(windows) >= 4 and all(w["values"]["temperature"]["n"] for w in windows[:4])
    last = recorder.of("health")[-1]["sensors"]["rht"]
    assert last["state"] == "ok" and last["recovery"]["power_cycle"] == 1
    assert last["power"] == {"gpio": GPIO, "on": True}


def test_an_unplugged_usb_serial_adapter_comes_back_without_an_agent_restart(tmp_path):
    """USB-serial unplugged: the port vanishes; plugged back: the same stable name returns."""
    clock = FakeClock(auto_advance=True)
    port = tmp_path / "ttyUSB0"  # like /dev/serial/by-id/usb-…: udev's name for the adapter
    plugged = PtyPms5003()
    port.symlink_to(plugged.port)
    events: list = []
    entry = {"id": "pm", "driver": "pms5003", "port": str(port), "warmup": 0,
             "read_timeout": "300ms"}
    cls = load_driver("pms5003")
    config = cls.Config.model_validate(entry)

    async def release(closed):
        pass

    async def event(kind, message, **details):
        events.append((kind, details.get("step"), message))

    sensor = RunningSensor(config, cls, clock, SensorWindows(
        "pm", cls.streams(config), config.window, config.interval, clock), release, event,
        rand=lambda: 1.0)

    async def scenario():
        nonlocal plugged
        plugged.start()
        task = asyncio.create_task(sensor.run())
        await async_wait_for(lambda: sensor.readings >= 3, 10, "3 readings")
        plugged.close()  # unplugged: the device node disappears with it
        port.unlink()
        await async_wait_for(lambda: any(e[0] == "sensor_fault" for e in events), 10,
                             "the fault")
        before = sensor.readings
        plugged = PtyPms5003()  # plugged back in: a new tty behind the same name
        port.symlink_to(plugged.port)
        plugged.start()
        await async_wait_for(lambda: any(e[0] == "sensor_recovered" for e in events), 20,
                             "the recovery")
        await async_wait_for(lambda: sensor.readings >= before + 3, 10, "readings again")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        plugged.close()

    asyncio.run(scenario())
    assert sensor.state is SensorState.OK
    assert sensor.recovery["reinit"] >= 1 and sensor.recovery["bus_reset"] == 0  # not I2C


def test_an_error_that_retrying_cannot_fix_fails_at_once_without_climbing_the_ladder():
    clock = FakeClock(auto_advance=True)
    events: list = []
    chip = Sen5xChip(clock, variant="SEN54")
    sensor = make_sensor({"id": "air", "driver": "sen5x", "bus": 1, "variant": "SEN55"},
                         clock, FakeI2cBus(1, {0x69: chip}), events, failed_probe=None)
    asyncio.run(asyncio.wait_for(sensor.run(), 5))
    assert [kind for kind, _, _, _ in events] == ["sensor_fault", "sensor_failed"]
    assert "the sensor is a SEN54" in events[0][3] and "set variant: SEN54" in events[0][3]
    assert sensor.state is SensorState.FAILED and sensor.restarts == 0
    assert sensor.recovery == {"resync": 0, "reinit": 0, "bus_reset": 0, "power_cycle": 0}
