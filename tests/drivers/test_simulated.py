import asyncio
import itertools
import statistics

import pytest

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, StatKind
from edgeagent.drivers.simulated import Simulated, SimulatedConfig


def read_n(config, n):
    async def scenario():
        clock = FakeClock(auto_advance=True)
        driver = Simulated(config, DriverContext(clock))
        await driver.open()
        out = []
        for _ in range(n):
            out.append((clock.monotonic(), await driver.read()))
        await driver.close()
        return out

    return asyncio.run(scenario())


def test_samples_arrive_once_per_interval_on_the_injected_clock():
    config = SimulatedConfig(id="s", driver="simulated", interval=0.5, seed=1)
    samples = read_n(config, 5)
    times = [batch[0].t_monotonic for _, batch in samples]
    assert [b - a for a, b in itertools.pairwise(times)] == [0.5] * 4


def test_values_are_plausible_and_repeatable_with_a_seed():
    config = SimulatedConfig(id="s", driver="simulated", seed=42, people_per_minute=60)
    first = read_n(config, 300)
    again = read_n(config, 300)
    assert [[r.value for r in b] for _, b in first] == [[r.value for r in b] for _, b in again]
    by_stream: dict[str, list[float]] = {}
    for _, batch in first:
        for reading in batch:
            by_stream.setdefault(reading.stream, []).append(reading.value)
    assert min(by_stream["pm25"]) > 0 and max(by_stream["pm25"]) < 100
    assert all(pm10 >= pm25 for pm25, pm10 in zip(by_stream["pm25"], by_stream["pm10"],
                                                   strict=True))
    assert 40 < statistics.fmean(by_stream["laeq"]) < 70
    assert all(v == int(v) >= 0 for v in by_stream["people"])
    assert statistics.fmean(by_stream["people"]) == pytest.approx(1.0, abs=0.25)  # 60/min at 1 s


def test_streams_follow_the_chosen_quantities():
    config = SimulatedConfig(id="s", driver="simulated", quantities=("noise", "people"))
    kinds = {s.name: s.kind for s in Simulated.streams(config)}
    assert kinds == {"laeq": StatKind.ENERGETIC, "people": StatKind.COUNTER}


def test_fault_injection_raises_a_driver_error():
    config = SimulatedConfig(id="s", driver="simulated", fail_every=3, quantities=("pm",))

    async def scenario():
        driver = Simulated(config, DriverContext(FakeClock(auto_advance=True)))
        await driver.open()
        assert await driver.read() and await driver.read()
        with pytest.raises(DriverError, match="simulated fault after 3 reads"):
            await driver.read()

    asyncio.run(scenario())


def test_read_before_open_is_an_error():
    driver = Simulated(SimulatedConfig(id="s", driver="simulated"),
                       DriverContext(FakeClock(auto_advance=True)))
    with pytest.raises(DriverError, match="before open"):
        asyncio.run(driver.read())
