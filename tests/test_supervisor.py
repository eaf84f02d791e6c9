import asyncio
import json

import pytest

from conftest import simulated_config, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.driver import DriverError, load_driver
from edgeagent.supervisor import Agent, RunningSensor, SensorState
from edgeagent.windows import SensorWindows


def running_sensor(entry, clock, events, released, **kwargs):
    cls = load_driver(entry["driver"])
    config = cls.Config.model_validate(entry)
    windows = SensorWindows(config.id, cls.streams(config), config.window, config.interval,
                            clock)

    async def release(closed):
        released.extend(closed)

    async def event(kind, message, **details):
        events.append((kind, message, clock.monotonic()))

    kwargs.setdefault("failed_probe", None)
    return RunningSensor(config, cls, clock, windows, release, event, rand=lambda: 1.0,
                         **kwargs)


def test_a_faulty_driver_is_restarted_until_its_budget_is_spent():
    clock = FakeClock(auto_advance=True)
    events, released = [], []
    sensor = running_sensor({"id": "s", "driver": "simulated", "quantities": ["pm"],
                             "fail_every": 5}, clock, events, released)
    asyncio.run(asyncio.wait_for(sensor.run(), 5))
    kinds = [k for k, _, _ in events]
    assert sensor.state is SensorState.FAILED
    assert sensor.restarts == 5
    assert kinds == (["sensor_fault"] + ["sensor_recovery", "sensor_recovered"] * 5
                     + ["sensor_failed"])
    assert sensor.recovery["reinit"] == 5  # each fault followed a good reading: ladder restarts
    assert "simulated fault after 5 reads" in events[0][1]
    assert sensor.readings == 6 * 4  # four good reads per life, six lives
    assert sensor.health()["last_error"] == "simulated fault after 5 reads"


def test_backoff_grows_while_the_sensor_stays_missing():
    clock = FakeClock(auto_advance=True)
    events, released = [], []
    start = clock.monotonic()
    sensor = running_sensor({"id": "pm", "driver": "pms5003", "port": "/dev/ttyNOPE9"},
                            clock, events, released, restart_limit=6, restart_period=3600)
    asyncio.run(asyncio.wait_for(sensor.run(), 5))
    assert sensor.state is SensorState.FAILED
    # rand() = 1: full delays 1, 2, 4, 8, 16, 32 s between the seven attempts
    assert clock.monotonic() - start == pytest.approx(63)
    (fault,) = [m for k, m, _ in events if k == "sensor_fault"]
    assert "/dev/ttyNOPE9" in fault and "no such device" in fault
    assert [k for k, _, _ in events][-1] == "sensor_failed"


def test_startup_error_policy_stops_with_the_reason():
    clock = FakeClock(auto_advance=True)
    sensor = running_sensor({"id": "pm", "driver": "pms5003", "port": "/dev/ttyNOPE9",
                             "startup": "error"}, clock, [], [])
    with pytest.raises(DriverError, match="sensor pm: cannot open serial port /dev/ttyNOPE9"):
        asyncio.run(sensor.run())


def test_startup_ignore_policy_gives_up_at_once():
    clock = FakeClock(auto_advance=True)
    events = []
    sensor = running_sensor({"id": "pm", "driver": "pms5003", "port": "/dev/ttyNOPE9",
                             "startup": "ignore"}, clock, events, [])
    asyncio.run(sensor.run())
    assert sensor.state is SensorState.FAILED and sensor.restarts == 0


def test_a_driver_bug_is_contained_and_reported():
    clock = FakeClock(auto_advance=True)
    events = []
    sensor = running_sensor({"id": "s", "driver": "simulated", "quantities": ["pm"],
                             "fail_every": 3, "fail_with": "crash"}, clock, events, [],
                            restart_limit=1)
    asyncio.run(sensor.run())
    assert events[0][0] == "sensor_fault"
    assert "driver crashed: RuntimeError: simulated bug after 3 reads" in events[0][1]


@pytest.mark.broker
def test_one_crashing_sensor_does_not_stop_the_others(broker, recorder_factory, tmp_path):
    root = "edgeagent/v1/test-gw"
    recorder = recorder_factory(broker.port, root)
    data = simulated_config(broker.port, tmp_path / "state")
    data["sensors"][1].update(fail_every=2, fail_with="crash")
    agent = Agent(validate_config(data))

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.to_thread(wait_for, lambda: len(agent.sensors) == 2 and
                                agent.sensors[1].state is SensorState.FAILED, 20, "failed")
        await asyncio.to_thread(wait_for, lambda: any(
            h["sensors"]["crowd"]["state"] == "failed" for h in recorder.of("health")), 5)
        stop.set()
        await task

    asyncio.run(scenario())
    air = recorder.seqs("data/air")
    assert len(air) >= 3 and air == list(range(len(air)))
    faults = [e for e in recorder.of("events") if e["type"] == "sensor_fault"]
    assert faults and faults[0]["sensor"] == "crowd"
    assert [e["type"] for e in recorder.of("events")].count("sensor_failed") == 1
    health = recorder.of("health")[-1]
    assert health["sensors"]["air"]["state"] in ("ok", "stopped")
    assert health["sensors"]["crowd"]["restarts"] == 5
    assert json.dumps(health)  # plain JSON all the way
