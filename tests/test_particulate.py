"""PM sensor features run by the supervisor: warm-up discards, duty cycling, the humidity link
(high-humidity flag and corrections) and their config checks.

The PM sensor is an SPS30 chip model on a fake I2C bus, the humidity source an SHT4x model on
the same bus; time is a FakeClock stepped event by event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from conftest import async_wait_for, run_stepped, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import ConfigError, validate_config
from edgeagent.driver import load_driver
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.sht4x import Sht4xChip
from edgeagent.drivers.sim.sps30_i2c import Sps30Chip
from edgeagent.humidity import make_correction
from edgeagent.supervisor import Agent, RunningSensor
from edgeagent.windows import ClosedWindow, SensorWindows

PM = 0x69
RHT = 0x44
ALIGNED = 1_767_225_600.0
START = 1000.0


def pm_sensor(entry: dict, clock: FakeClock, chip: Sps30Chip, closed: list[ClosedWindow]):
    cls = load_driver("sps30_i2c")
    config = cls.Config.model_validate({"id": "pm", "driver": "sps30_i2c", "bus": 1, **entry})
    duty = config.duty_cycle
    windows = SensorWindows(config.id, cls.streams(config), config.window, config.interval,
                            clock, duty=1.0 if duty is None else
                            (duty.measure - config.warmup) / duty.period)

    async def release(windows: list[ClosedWindow]) -> None:
        closed.extend(windows)

    async def event(kind, message, **details):
        pass

    return RunningSensor(config, cls, clock, windows, release, event,
                         i2c=FakeBuses(FakeI2cBus(1, {PM: chip})))


def step(clock: FakeClock, sensor: RunningSensor, until: Callable[[], bool],
         watch: Callable[[], None] = lambda: None) -> None:
    """Run the sensor alone, advancing fake time whenever it waits, until ``until()``."""
    async def scenario():
        task = asyncio.create_task(sensor.run())
        while True:
            await async_wait_for(lambda: clock.sleepers >= 1, 10, "the sensor to wait")
            watch()
            if until():
                break
            clock.advance_to_next()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_readings_in_the_warm_up_are_discarded_and_counted():
    clock = FakeClock(start_mono=START, auto_advance=False)
    closed: list[ClosedWindow] = []
    sensor = pm_sensor({"warmup": "5s", "window": "60s"}, clock, Sps30Chip(clock), closed)
    step(clock, sensor, lambda: sensor.readings + sensor.warmup_discarded >= 10)
    # the SPS30 has new values every second from 1 s after start: 1 … 4 s are in the warm-up
    assert sensor.warmup_discarded == 4
    assert sensor.readings == 6  # 5, 6, … 10 s
    assert sensor.health()["warmup_discarded"] == 4


def test_duty_cycle_measures_then_sleeps_with_the_fan_off():
    clock = FakeClock(start_mono=START, auto_advance=False)
    chip = Sps30Chip(clock)
    closed: list[ClosedWindow] = []
    sensor = pm_sensor({"warmup": "5s", "window": "60s",
                        "duty_cycle": {"period": "60s", "measure": "20s"}}, clock, chip, closed)
    timeline: list[tuple[float, str, str]] = []

    def watch() -> None:
        timeline.append((clock.monotonic() - START, chip.state, sensor.state.value))

    step(clock, sensor, lambda: clock.monotonic() >= START + 150, watch)
    def chip_states(low: float, high: float) -> set[str]:
        return {chip_state for t, chip_state, _ in timeline if low <= t < high}

    # awake 20 s of every 60 s; asleep the chip is idle: fan and laser off
    assert chip_states(2, 20) == chip_states(62, 80) == chip_states(122, 140) == {"measurement"}
    assert chip_states(20.01, 60) == chip_states(80.01, 120) == {"idle"}
    assert {state for t, _, state in timeline if 20.01 < t < 60} == {"sleeping"}
    assert not [t for t, _, _ in timeline if 20.1 < t < 60]  # one sleep until the next cycle
    assert sensor.cycles == 3 and sensor.health()["duty_cycles"] == 3  # asleep at 20, 80, 140
    # per cycle: values at 1 … 20 s after opening, 1 … 4 s discarded as warm-up
    assert sensor.warmup_discarded == 3 * 4
    assert sensor.readings == 3 * 16
    full = [w for w in closed if not w.partial]
    assert full and all(w.stats["pm25"].n == 16 for w in full)
    assert all(w.coverage == 1.0 for w in full)  # complete against the duty cycle's share


def climate_agent(broker_port: int, tmp_path, link: dict, pm: Sps30Chip, rht: Sht4xChip,
                  clock: FakeClock) -> Agent:
    config = validate_config({
        "gateway": {"id": "rh-gw"},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "tls": {"enabled": False}},
        "state_dir": str(tmp_path / "state"), "health": {"interval": "1h"},
        "sensors": [
            {"id": "pm", "driver": "sps30_i2c", "bus": 1, "warmup": 0, "window": "60s",
             "humidity": link},
            {"id": "rht", "driver": "sht4x", "bus": 1, "window": "60s"}]})
    return Agent(config, clock=clock, i2c=FakeBuses(FakeI2cBus(1, {PM: pm, RHT: rht})))


def run_agent(agent: Agent, clock: FakeClock, seconds: float,
              at: Callable[[float], None]) -> None:
    run_stepped(agent, clock, START + seconds, sleepers=4, each=lambda now: at(now - START))


@pytest.mark.broker
def test_pm_is_corrected_with_the_humidity_of_another_sensor_and_flagged_in_fog(
        broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, "edgeagent/v1/rh-gw")
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    pm, rht = Sps30Chip(clock), Sht4xChip(clock)
    rht.set_values(15.0, 80.0)
    agent = climate_agent(broker.port, tmp_path, {"source": "rht", "correction":
                                                  "kappa-koehler", "kappa": 0.4}, pm, rht,
                          clock)

    def weather(t: float) -> None:
        if t >= 60:
            rht.set_values(12.0, 97.0)  # fog in the second window

    run_agent(agent, clock, 125, weather)
    wait_for(lambda: len(recorder.of("data/pm")) >= 2, 5, "two PM windows")
    first, second = recorder.of("data/pm")[:2]
    raw = first["values"]["pm25"]
    (corrected,) = [c for c in first["corrections"] if c["stream"] == "pm25"]
    factor = 1 + (0.4 / 1.65) / (100 / 80 - 1)
    assert corrected["mean"] == pytest.approx(raw["mean"] / factor, abs=0.01)
    assert corrected["method"] == "kappa-koehler" and corrected["parameters"]["kappa"] == 0.4
    assert corrected["humidity"] == {"sensor": "rht", "stream": "relativeHumidity"}
    assert raw["n"] - 1 <= corrected["n"] <= raw["n"]  # the very first sample may lack RH
    assert {c["stream"] for c in first["corrections"]} == {"pm1", "pm25", "pm4", "pm10"}
    assert "flags" not in raw
    assert second["values"]["pm25"]["flags"] == ["high_humidity"]
    assert second["values"]["pm25"]["mean"] == pytest.approx(raw["mean"])  # raw kept
    assert second["corrections"] == []  # above rh_max (95 %) nothing is corrected
    assert second["values"]["n0_5"]["flags"] == ["high_humidity"]  # counts see droplets too


@pytest.mark.broker
def test_a_stale_humidity_source_is_not_used(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, "edgeagent/v1/rh-gw")
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    pm, rht = Sps30Chip(clock), Sht4xChip(clock)
    rht.set_values(15.0, 50.0)
    agent = climate_agent(broker.port, tmp_path, {"source": "rht", "correction":
                                                  "kappa-koehler", "max_age": "10s"}, pm, rht,
                          clock)

    def unplug(t: float) -> None:
        if t >= 5 and rht.present:
            rht.go_absent()

    run_agent(agent, clock, 65, unplug)
    wait_for(lambda: len(recorder.of("data/pm")) >= 1, 5, "a PM window")
    (corrected,) = [c for c in recorder.of("data/pm")[0]["corrections"] if c["stream"] == "pm25"]
    assert 3 <= corrected["n"] <= 15  # only samples within 10 s of the last RH reading


def test_the_correction_applies_to_mass_not_number_concentrations():
    correction = make_correction("kappa-koehler")
    assert correction.correct("pm25", 10.0, 0.0) == pytest.approx(10.0)
    assert correction.correct("n0_5", 10.0, 50.0) is None


def config_issues(*sensors: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_config({"gateway": {"id": "gw"}, "mqtt": {"host": "127.0.0.1"},
                         "sensors": list(sensors)})
    return [str(issue) for issue in caught.value.issues]


SPS = {"id": "pm", "driver": "sps30_i2c", "bus": 1}
RH = {"id": "rht", "driver": "sht4x", "bus": 1}


@pytest.mark.parametrize(("entry", "expected"), [
    ({**SPS, "duty_cycle": {"period": "5min", "measure": "20s"}},
     "sensors[0].duty_cycle.measure: must be longer than the warm-up (20s <= 30s)"),
    ({**SPS, "duty_cycle": {"period": "40s", "measure": "40s"}},
     "sensors[0].duty_cycle.period: must be longer than measure (40s <= 40s)"),
    ({**SPS, "duty_cycle": {"period": "10min", "measure": "1min"}},
     "sensors[0].duty_cycle.period: must not be longer than the window (600s > 60s)"),
    ({"id": "pm", "driver": "pms5003", "port": "/dev/serial0", "model": "pms3003",
      "mode": "active", "duty_cycle": {"period": "60s", "measure": "40s"}},
     "sensors[0].duty_cycle: the Plantower PMS5003 cannot be put to sleep by command"),
    ({**SPS, "humidity": {"correction": "kappa-koehler"}},
     "sensors[0].humidity.source: the Sensirion SPS30 (I2C) measures no humidity"),
    ({**SPS, "humidity": {"source": "nope"}},
     "sensors[0].humidity.source: no other sensor with id 'nope' (sensors: rht)"),
    ({**SPS, "humidity": {"source": "rht", "correction": "epa-barkjohn-2021"}},
     "sensors[0].humidity.correction: epa-barkjohn-2021 is fitted on Plantower CF=1 values"),
    ({"id": "pm", "driver": "pms5003", "port": "/dev/serial0",
      "humidity": {"source": "rht", "correction": "epa-barkjohn-2021"}},
     "sensors[0].humidity.correction: epa-barkjohn-2021 is fitted on CF=1 values: set basis"),
    ({**SPS, "humidity": {"source": "rht", "correction": "epa-barkjohn-2021", "kappa": 0.3}},
     "sensors[0].humidity.kappa: kappa applies only to kappa-koehler"),
])
def test_config_explains_what_is_wrong_with_a_pm_feature(entry, expected):
    issues = config_issues(entry, RH)
    assert any(issue.startswith(expected) for issue in issues), issues


def test_config_refuses_a_humidity_source_without_humidity_and_a_shared_power_pin():
    issues = config_issues({**SPS, "humidity": {"source": "other"},
                            "power": {"gpio": 17}},
                           {"id": "other", "driver": "simulated", "quantities": ["pm"],
                            "power": {"gpio": 17}})
    assert any("sensor 'other' (edgeagent simulator) has no relativeHumidity stream" in i
               for i in issues), issues
    assert any(i.startswith("sensors[1].power.gpio: GPIO17 already switches sensors[0]")
               for i in issues), issues


def test_a_valid_pm_config_with_every_feature_is_accepted():
    config = validate_config({
        "gateway": {"id": "gw"}, "mqtt": {"host": "127.0.0.1"},
        "sensors": [{"id": "pm", "driver": "pms5003", "port": "/dev/serial0", "basis": "cf1",
                     "window": "5min", "duty_cycle": {"period": "5min", "measure": "1min"},
                     "humidity": {"source": "rht", "correction": "epa-barkjohn-2021"},
                     "power": {"gpio": 17, "active_high": False}}, RH]})
    pm = config.sensors[0]
    assert pm.duty_cycle.measure == 60 and pm.humidity.max_age == 120  # type: ignore[attr-defined]
    assert pm.power is not None and pm.power.off_time == 3.0
