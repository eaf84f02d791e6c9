"""PIR: config, the edge tally, the driver on gpiozero's MockFactory, golden sample cases."""

from __future__ import annotations

import asyncio
import json
import sys
import threading

import pytest
from gpiozero import MotionSensor
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

import golden
from conftest import async_wait_for
from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, QuantityClass, StatKind
from edgeagent.drivers.pir import MotionTally, Pir, PirConfig
from edgeagent.drivers.sim.pir import SampledPir
from golden import case_names, read_hex

PIN = 17


def config(**overrides) -> PirConfig:
    return PirConfig.model_validate({"id": "hall-motion", "driver": "pir", "pin": PIN,
                                     **overrides})


@pytest.fixture
def factory():
    made = MockFactory()
    yield made
    made.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


# --- config, streams -------------------------------------------------------------------------

def test_defaults():
    cfg = config()
    assert (cfg.warmup, cfg.queue_len, cfg.sample_rate, cfg.threshold, cfg.pull_up,
            cfg.interval) == (60.0, 1, 10.0, 0.5, False, 1.0)
    assert Pir.transport == "gpio"
    with pytest.raises(ValidationError, match="power switch output"):
        config(power={"gpio": PIN})
    assert config(power={"gpio": 27}).power.gpio == 27


def test_streams_are_motion_never_people():
    motion, events = Pir.streams(config())
    assert (motion.name, motion.unit, motion.quantity, motion.kind, motion.statistics) == (
        "motion", "%", QuantityClass.PRESENCE, StatKind.LINEAR, ("mean",))
    assert (events.name, events.unit, events.quantity, events.kind) == (
        "motionEvents", "count", QuantityClass.PRESENCE, StatKind.COUNTER)
    assert "NOT a number of people" in motion.description
    assert events.description == "PIR activations: motion activity, NOT a number of people"


# --- the tally between gpiozero's thread and the loop ----------------------------------------

def test_tally_counts_rising_edges_and_motion_seen():
    tally = MotionTally()
    assert tally.take(False) == (0.0, 0)
    tally.edge(True)
    tally.edge(False)
    tally.edge(True)
    assert tally.pending == 2
    assert tally.take(True) == (100.0, 2)
    tally.edge(False)  # still active at the last take, fell since: motion was seen
    assert tally.take(False) == (100.0, 0)
    assert tally.take(False) == (0.0, 0)


def test_tally_is_safe_across_threads():
    tally = MotionTally()

    def hammer():
        for _ in range(2000):
            tally.edge(True)
            tally.edge(False)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    taken = 0
    while any(t.is_alive() for t in threads):
        taken += tally.take(False)[1]
    for thread in threads:
        thread.join()
    assert taken + tally.take(False)[1] == 8000


# --- the driver on MockFactory ---------------------------------------------------------------

async def wait_edges(driver: Pir, n: int) -> None:
    await async_wait_for(lambda: driver.tally.pending == n, 5, f"{n} edges from gpiozero")


def test_motion_share_and_activations_on_a_mock_pin(factory):
    async def scenario():
        clock = FakeClock(start_mono=0.0, auto_advance=True)
        driver = Pir(config(sample_rate=200), DriverContext(clock), pin_factory=factory)
        await driver.open()
        pin = factory.pin(PIN)
        out = [await driver.read()]  # quiet
        pin.drive_high()  # right after open: open waited for the first sample, so it counts
        await wait_edges(driver, 1)
        out.append(await driver.read())  # still high at the reading
        pin.drive_low()
        await asyncio.to_thread(driver.device.wait_for_no_motion, 2)
        pin.drive_high()
        await wait_edges(driver, 1)
        pin.drive_low()
        await asyncio.to_thread(driver.device.wait_for_no_motion, 2)
        out.append(await driver.read())  # a pulse inside the interval
        out.append(await driver.read())  # quiet
        await driver.close()
        await driver.close()
        return out

    batches = run(scenario())
    assert [[(r.stream, r.value) for r in b] for b in batches] == [
        [("motion", 0.0), ("motionEvents", 0.0)], [("motion", 100.0), ("motionEvents", 1.0)],
        [("motion", 100.0), ("motionEvents", 1.0)], [("motion", 0.0), ("motionEvents", 0.0)]]
    assert [b[0].t_monotonic for b in batches] == [1.0, 2.0, 3.0, 4.0]  # paced on the clock


def test_the_pitfall_open_avoids_an_edge_before_the_first_sample_is_lost(factory):
    # plain gpiozero: driven high before the sampler's first sample, when_motion never fires
    sensor = MotionSensor(22, pin_factory=factory)
    fired = threading.Event()
    sensor.when_motion = fired.set
    factory.pin(22).drive_high()
    assert sensor.wait_for_motion(1)
    assert not fired.wait(0.3)
    sensor.close()


def test_pin_in_use_and_reopen_after_close(factory):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        first = Pir(config(sample_rate=200), DriverContext(clock), pin_factory=factory)
        await first.open()
        second = Pir(config(sample_rate=200), DriverContext(clock), pin_factory=factory)
        with pytest.raises(DriverError, match="PIR on GPIO17: cannot read the pin") as caught:
            await second.open()
        assert not caught.value.retryable
        await first.close()
        await second.open()  # released: the pin can be claimed again
        await second.close()
        with pytest.raises(DriverError, match="PIR on GPIO17 is not open"):
            await second.read()

    run(scenario())


def test_gpiozero_missing_is_a_clear_error(monkeypatch, factory):
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    driver = Pir(config(), DriverContext(FakeClock()), pin_factory=factory)
    with pytest.raises(DriverError, match="gpiozero is not installed") as caught:
        run(driver.open())
    assert not caught.value.retryable


# --- golden cases: pin samples as gpiozero's sampler sees them --------------------------------

CASES = case_names("pir")


def outcome(wire: bytes, cfg: PirConfig) -> list[dict]:
    """Samples through gpiozero's rule into the driver's tally; FF = one reading."""
    tally = MotionTally()
    sampler = SampledPir(tally, cfg.queue_len, cfg.threshold)
    out = []
    for byte in wire:
        if byte == 0xFF:
            motion, events = tally.take(sampler.active)
            out.append({"motion": motion, "motionEvents": float(events)})
        else:
            sampler.sample(byte)
    return out


def test_there_are_cases():
    assert len(CASES) >= 5
    assert any((golden.CASES / "pir" / case / "init.err").exists() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: str):
    folder = golden.CASES / "pir" / case
    loaded = golden.load_case(folder, PirConfig)
    if loaded is None:
        return
    cfg, wire, expected = loaded
    assert outcome(wire, cfg) == expected
    assert read_hex(folder / "wire.hex") == wire and json.dumps(expected)
