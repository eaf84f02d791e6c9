import math
import statistics

import pytest

from edgeagent.clock import ClockQuality, FakeClock
from edgeagent.driver import QuantityClass, Reading, StatKind, StreamSpec
from edgeagent.windows import SensorWindows, StreamStats

PM = StreamSpec("pm25", "ug/m3", QuantityClass.PARTICULATE)
DB = StreamSpec("laeq", "dB", QuantityClass.NOISE, StatKind.ENERGETIC)
PEOPLE = StreamSpec("people", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER)
ALIGNED = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of 60


def feed(windows, clock, values, stream="pm25", step=1.0):
    closed = []
    for value in values:
        closed += windows.add([Reading(stream, value, clock.monotonic())])
        clock.advance(step)
    return closed


def test_linear_statistics_match_the_textbook():
    stats = StreamStats(StatKind.LINEAR)
    values = [3.0, 7.5, 8.0, 12.25, 0.0, 9.0]
    for v in values:
        stats.add(v)
    result = stats.result()
    assert result["mean"] == pytest.approx(statistics.fmean(values))
    assert result["stddev"] == pytest.approx(statistics.stdev(values))
    assert (result["min"], result["max"]) == (0.0, 12.25)


def test_energetic_mean_is_the_energy_average_not_the_arithmetic_one():
    stats = StreamStats(StatKind.ENERGETIC)
    for v in (50.0, 60.0):
        stats.add(v)
    expected = 10 * math.log10((10**5 + 10**6) / 2)
    assert stats.result()["mean"] == pytest.approx(expected)
    assert stats.result()["mean"] > 57  # far above the arithmetic 55


def test_counter_sums_and_empty_window_has_no_statistics():
    stats = StreamStats(StatKind.COUNTER)
    assert stats.result() == {}
    for v in (1, 0, 4):
        stats.add(v)
    assert stats.result()["sum"] == 5


def test_windows_are_aligned_to_whole_multiples_and_cut_on_monotonic_time():
    clock = FakeClock(start_wall=ALIGNED)
    windows = SensorWindows("s", [PM], 60, 1.0, clock)
    closed = feed(windows, clock, [float(i) for i in range(125)])
    assert len(closed) == 2
    first, second = closed
    assert (first.start, first.end) == (ALIGNED, ALIGNED + 60)
    assert (second.start, second.end) == (ALIGNED + 60, ALIGNED + 120)
    assert not first.partial and first.coverage == 1.0
    assert first.stats["pm25"].n == 60
    assert first.stats["pm25"].result()["mean"] == pytest.approx(statistics.fmean(range(60)))
    assert first.clock is ClockQuality.SYNCED


def test_first_window_after_start_is_partial_and_ends_on_the_boundary():
    clock = FakeClock(start_wall=ALIGNED + 45)
    windows = SensorWindows("s", [PM], 60, 1.0, clock)
    closed = feed(windows, clock, [1.0] * 20)
    assert len(closed) == 1
    assert closed[0].partial
    assert (closed[0].start, closed[0].end) == (ALIGNED + 45, ALIGNED + 60)
    assert closed[0].stats["pm25"].n == 15
    assert closed[0].coverage == pytest.approx(1.0)


def test_wall_clock_step_does_not_stretch_the_window_but_realigns_the_next():
    clock = FakeClock(start_wall=ALIGNED)
    windows = SensorWindows("s", [PM], 60, 1.0, clock)
    feed(windows, clock, [1.0] * 30)
    clock.jump_wall(3600 + 17)  # NTP corrects the clock by an hour and a bit
    closed = feed(windows, clock, [1.0] * 31)
    assert len(closed) == 1 and closed[0].stats["pm25"].n == 60  # cut on monotonic time
    closed = feed(windows, clock, [1.0] * 61)
    realigned = closed[0]
    assert realigned.partial and realigned.start == pytest.approx(ALIGNED + 60 + 3617)
    assert realigned.end % 60 == 0


def test_coverage_counts_missing_samples_and_errors_are_per_window():
    clock = FakeClock(start_wall=ALIGNED)
    windows = SensorWindows("s", [PM], 10, 1.0, clock)
    for i in range(10):
        if i % 2:
            windows.count_error()
        else:
            windows.add([Reading("pm25", 1.0, clock.monotonic())])
        clock.advance(1)
    (closed,) = windows.close_due()
    assert closed.coverage == pytest.approx(0.5)
    assert closed.errors == 5


def test_silent_sensor_still_gets_empty_windows_closed():
    clock = FakeClock(start_wall=ALIGNED)
    windows = SensorWindows("s", [PM, PEOPLE], 10, 1.0, clock)
    assert windows.next_deadline == clock.monotonic() + 10  # opens the window
    clock.advance(35)
    closed = windows.close_due()
    assert len(closed) == 3
    assert all(w.stats["pm25"].n == 0 and w.coverage == 0 for w in closed)


def test_clock_quality_is_the_worst_seen_during_the_window():
    clock = FakeClock(start_wall=ALIGNED)
    windows = SensorWindows("s", [PM], 10, 1.0, clock)
    feed(windows, clock, [1.0] * 3)
    clock.set_quality(ClockQuality.UNSYNCED)
    feed(windows, clock, [1.0])
    clock.set_quality(ClockQuality.SYNCED)
    closed = feed(windows, clock, [1.0] * 7)
    assert closed[0].clock is ClockQuality.UNSYNCED


def test_close_partial_on_shutdown_carries_true_end_and_skips_empty():
    clock = FakeClock(start_wall=ALIGNED)
    windows = SensorWindows("s", [PM], 60, 1.0, clock)
    feed(windows, clock, [2.0] * 12)
    window = windows.close_partial()
    assert window is not None and window.partial
    assert window.end == pytest.approx(ALIGNED + 12)
    assert windows.close_partial() is None


def test_undeclared_stream_is_a_loud_error():
    clock = FakeClock()
    windows = SensorWindows("s", [PM], 60, 1.0, clock)
    with pytest.raises(KeyError, match="undeclared stream 'pm10'"):
        windows.add([Reading("pm10", 1.0, clock.monotonic())])


def test_fake_clock_steps_sleepers_in_deadline_order():
    import asyncio

    async def scenario():
        clock = FakeClock(start_mono=0.0)
        woke = []

        async def sleeper(name, seconds):
            await clock.sleep(seconds)
            woke.append((name, clock.monotonic()))

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 2.0), ("a", 0.5))]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert clock.sleepers == 2
        clock.advance_to_next()
        await asyncio.sleep(0)
        clock.advance_to_next()
        await asyncio.gather(*tasks)
        assert clock.advance_to_next() == 2.0  # nobody left: time stays
        return woke

    assert asyncio.run(scenario()) == [("a", 0.5), ("b", 2.0)]


def test_pacer_keeps_the_rhythm_and_does_not_burst_after_a_late_sample():
    import asyncio

    from edgeagent.driver import Pacer

    async def scenario():
        clock = FakeClock(start_mono=0.0, auto_advance=True)
        pacer = Pacer(2.0)
        pacer.start(0.0)
        times = []
        for late in (0, 0, 5.0, 0, 0):
            await pacer.wait(clock)
            times.append(clock.monotonic())
            clock.advance(late)  # a slow sample (e.g. a long I2C conversion)
        return times

    assert asyncio.run(scenario()) == [0.0, 2.0, 4.0, 9.0, 11.0]


def test_a_frozen_sensor_is_flagged_stuck_after_three_identical_windows():
    clock = FakeClock(start_wall=ALIGNED)
    pm10 = StreamSpec("pm10", "ug/m3", QuantityClass.PARTICULATE)
    windows = SensorWindows("s", [PM, pm10, PEOPLE], 10, 1.0, clock)

    def window(pm25: list[float], pm10_values: list[float]):
        closed = []
        for a, b in zip(pm25, pm10_values, strict=True):
            now = clock.monotonic()
            closed += windows.add([Reading("pm25", a, now), Reading("pm10", b, now),
                                   Reading("people", 0.0, now)])
            clock.advance(1)
        return closed

    frozen = ([8.0] * 10, [12.0] * 10)
    flags = []
    for _ in range(5):
        flags += [w.flags for w in window(*frozen)]
    flags += [w.flags for w in window([8.0] * 10, [12.0] * 9 + [13.0])]  # it moves again
    flags += [w.flags for w in window(*frozen)]
    # windows close when the next one starts: the list runs one window behind the loop
    assert flags[1] == {} and flags[2] == {"pm25": ["stuck"], "pm10": ["stuck"]}
    assert flags[3] == flags[4] == {"pm25": ["stuck"], "pm10": ["stuck"]}
    assert flags[5] == {} and flags[0] == {}


def test_one_constant_stream_alone_is_not_stuck():
    clock = FakeClock(start_wall=ALIGNED)
    pm10 = StreamSpec("pm10", "ug/m3", QuantityClass.PARTICULATE)
    windows = SensorWindows("s", [PM, pm10], 10, 1.0, clock)
    closed = []
    for i in range(60):  # PM2.5 at 0 in clean air, PM10 varies
        now = clock.monotonic()
        closed += windows.add([Reading("pm25", 0.0, now), Reading("pm10", float(i % 3), now)])
        clock.advance(1)
    assert all(w.flags == {} for w in closed)


def test_level_streams_give_the_energy_mean_and_percentile_levels():
    stats = StreamStats(StatKind.LEVEL)
    levels = [40.0 + 0.5 * i for i in range(100)]  # 40.0 … 89.5 dB, one each
    for level in reversed(levels):  # order does not matter
        stats.add(level)
    result = stats.result()
    energy = statistics.fmean(10 ** (level / 10) for level in levels)
    assert result["mean"] == pytest.approx(10 * math.log10(energy))
    assert (result["min"], result["max"]) == (40.0, 89.5)
    # LN: exceeded by N % of the samples (nearest rank of the (100 - N)th percentile)
    for name, share in (("l10", 10), ("l50", 50), ("l90", 90)):
        assert sum(level > result[name] + 1e-9 for level in levels) == share
    assert result["l10"] == pytest.approx(84.5)
    assert result["l50"] == pytest.approx(64.5) and result["l90"] == pytest.approx(44.5)


def test_percentiles_of_a_single_level_and_of_sub_bin_values():
    one = StreamStats(StatKind.LEVEL)
    one.add(61.04)
    assert {k: one.result()[k] for k in ("l10", "l50", "l90")} == pytest.approx(
        {"l10": 61.0, "l50": 61.0, "l90": 61.0})  # 0.1 dB bins
    assert StreamStats(StatKind.LEVEL).result() == {}
