"""Coarsening (issue 9 item 2): merged statistics against brute force, privacy, the outbox."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
import statistics

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeagent import coarsen
from edgeagent.clock import FakeClock
from edgeagent.contract import problems
from edgeagent.dp import DpBudget
from edgeagent.driver import QuantityClass, Reading, StatKind, StreamSpec
from edgeagent.outbox import Outbox
from edgeagent.privacy import PrivacyConfig, PrivacyGate
from edgeagent.windows import SensorWindows

ALIGNED = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a multiple of 3600
META = {"driver": "simulated", "model": "Simulated sensor", "simulated": True}
STORE = "0" * 32
PM = StreamSpec("pm25", "ug/m3", QuantityClass.PARTICULATE)
PM10 = StreamSpec("pm10", "ug/m3", QuantityClass.PARTICULATE)
LAF = StreamSpec("laf", "dB", QuantityClass.NOISE, StatKind.LEVEL)
LAEQ = StreamSpec("laeq", "dB", QuantityClass.NOISE, StatKind.ENERGETIC)
PEOPLE = StreamSpec("people", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER)
OCCUPANCY = StreamSpec("occupancy", "count", QuantityClass.PEOPLE_COUNT, StatKind.OCCUPANCY)
STRICT = PrivacyGate(PrivacyConfig(preset="strict"), "gw")
CROWD = PrivacyGate(PrivacyConfig(preset="crowd-safety"), "gw")


def windows_of(samples: dict[str, list[list[float]]], specs, *, length=60.0, interval=1.0,
               gate=STRICT, start=ALIGNED, sensor="s1", skip=()):
    """Released bodies (with seq/store, as stored) of consecutive windows, and raw samples.

    ``samples[stream][w]`` are window w's samples of the stream, one per ``interval``;
    windows whose index is in ``skip`` are cut but not kept (a gap in time, seq continues).
    """
    clock = FakeClock(start_wall=start)
    windows = SensorWindows(sensor, list(specs), length, interval, clock)
    count = len(next(iter(samples.values())))
    per_window = int(length / interval)
    closed = []
    for w in range(count):
        for i in range(per_window):
            readings = [Reading(name, values[w][i], clock.monotonic())
                        for name, values in samples.items() if i < len(values[w])]
            closed += windows.add(readings) if readings else windows.close_due()
            clock.advance(interval)
    closed += windows.close_due()
    bodies = []
    for seq, window in enumerate(closed[:count]):
        if seq in skip:
            continue
        body = gate.release_window(window, META).body
        bodies.append({"seq": seq, "store": STORE, **body})
    return bodies


def noise(rng: random.Random, count: int, per: int, mean: float, sd: float) -> list[list[float]]:
    return [[round(rng.gauss(mean, sd), 3) for _ in range(per)] for _ in range(count)]


def flat(windows: list[list[float]]) -> list[float]:
    return [value for window in windows for value in window]


def energy_mean(values: list[float]) -> float:
    return 10 * math.log10(sum(10 ** (v / 10) for v in values) / len(values))


def nearest_rank(values: list[float], exceeded: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil((100 - exceeded) / 100 * len(ordered))) - 1]


# -- merged statistics against one long window over the same samples --------------------------


def test_fifteen_minutes_merge_exactly_like_one_long_window():
    rng = random.Random(9)
    pm = noise(rng, 15, 60, 12.0, 3.0)
    laf = noise(rng, 15, 60, 55.0, 6.0)
    laeq = noise(rng, 15, 60, 60.0, 8.0)
    bodies = windows_of({"pm25": pm, "laf": laf, "laeq": laeq}, [PM, LAF, LAEQ])
    merged = coarsen.merge(bodies, 900)

    assert problems("data", merged) == []
    assert merged["seq"] == 14
    assert merged["coarsened"] == {"from": 15, "seq_first": 0, "seq_last": 14}
    assert merged["window"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:15:00Z",
                                "seconds": 900, "clock": "synced", "partial": False}
    assert merged["coverage"] == 1.0 and merged["errors"] == 0

    values, samples = merged["values"], flat(pm)
    assert values["pm25"]["n"] == 900
    assert values["pm25"]["mean"] == pytest.approx(statistics.fmean(samples), abs=0.01)
    assert values["pm25"]["stddev"] == pytest.approx(statistics.stdev(samples), abs=0.01)
    assert values["pm25"]["min"] == round(min(samples), 2)
    assert values["pm25"]["max"] == round(max(samples), 2)
    assert "approximate" not in values["pm25"]

    for name, windows in (("laeq", laeq), ("laf", laf)):
        samples = flat(windows)
        # inputs are published to 0.1 dB: the energy mean is exact up to that rounding
        assert values[name]["mean"] == pytest.approx(energy_mean(samples), abs=0.1 + 1e-9)
        assert values[name]["mean"] > statistics.fmean(samples) + 1  # energy, not dB average
        assert (values[name]["min"], values[name]["max"]) == (round(min(samples), 1),
                                                              round(max(samples), 1))

    laf_samples = flat(laf)
    assert values["laf"]["approximate"] == ["l10", "l50", "l90"]
    for stat, exceeded in (("l10", 10), ("l50", 50), ("l90", 90)):
        inputs = [b["values"]["laf"][stat] for b in bodies]
        assert min(inputs) <= values["laf"][stat] <= max(inputs)
        # a steady sound: the approximation is close to the true percentile of all samples
        assert values["laf"][stat] == pytest.approx(nearest_rank(laf_samples, exceeded), abs=1.0)


def test_counters_sum_and_occupancy_keeps_its_peak():
    rng = random.Random(3)
    people = [[float(rng.randint(0, 2)) for _ in range(60)] for _ in range(15)]
    occupancy = [[float(rng.randint(3, 9)) for _ in range(60)] for _ in range(15)]
    bodies = windows_of({"people": people, "occupancy": occupancy}, [PEOPLE, OCCUPANCY],
                        gate=CROWD)
    assert all(not b["values"]["people"]["suppressed"] for b in bodies)
    merged = coarsen.merge(bodies, 900)
    assert problems("data", merged) == []
    values = merged["values"]
    assert values["people"]["sum"] == sum(flat(people))
    assert values["people"]["suppressed"] is False and values["people"]["k"] == 3
    assert values["occupancy"]["max"] == max(flat(occupancy))
    assert values["occupancy"]["mean"] == pytest.approx(statistics.fmean(flat(occupancy)),
                                                        abs=0.1)


def test_an_hour_of_quarter_hours_merges_again_with_the_whole_range():
    rng = random.Random(5)
    pm = noise(rng, 60, 6, 20.0, 4.0)
    bodies = windows_of({"pm25": pm}, [PM], interval=10.0)
    quarters = [coarsen.merge(bodies[i:i + 15], 900) for i in range(0, 60, 15)]
    hour = coarsen.merge(quarters, 3600)
    samples = flat(pm)
    assert problems("data", hour) == []
    assert hour["coarsened"] == {"from": 60, "seq_first": 0, "seq_last": 59}
    assert hour["window"]["seconds"] == 3600 and not hour["window"]["partial"]
    assert hour["values"]["pm25"]["n"] == 360
    assert hour["values"]["pm25"]["mean"] == pytest.approx(statistics.fmean(samples), abs=0.02)
    assert hour["values"]["pm25"]["stddev"] == pytest.approx(statistics.stdev(samples), abs=0.02)
    assert hour["values"]["pm25"]["max"] == round(max(samples), 2)


def test_gapped_windows_make_a_partial_window_with_lower_coverage():
    rng = random.Random(1)
    bodies = windows_of({"pm25": noise(rng, 15, 60, 10.0, 1.0)}, [PM], skip={5, 6, 7})
    merged = coarsen.merge(bodies, 900)
    assert merged["window"]["partial"] is True
    assert merged["coverage"] == pytest.approx(12 / 15, abs=0.001)
    assert merged["values"]["pm25"]["n"] == 12 * 60
    assert merged["coarsened"] == {"from": 12, "seq_first": 0, "seq_last": 14}
    assert problems("data", merged) == []


def test_a_merged_window_is_never_finer_than_its_inputs():
    rng = random.Random(2)
    bodies = windows_of({"pm25": noise(rng, 30, 6, 10.0, 1.0)}, [PM], interval=10.0)
    quarter = coarsen.merge(bodies[:15], 900)
    with pytest.raises(ValueError, match="coarser"):
        coarsen.merge([quarter, coarsen.merge(bodies[15:], 900)], 900)
    with pytest.raises(ValueError, match="span"):
        coarsen.merge(bodies[10:20], 900)  # crosses a quarter hour: more than 900 s
    other = windows_of({"pm25": noise(rng, 2, 6, 10.0, 1.0)}, [PM], interval=10.0, sensor="s2")
    with pytest.raises(ValueError, match="one sensor"):
        coarsen.merge([bodies[0], {**other[1], "seq": 1}], 900)


# -- privacy --------------------------------------------------------------------------------------


def test_a_suppressed_count_stays_suppressed_and_never_becomes_a_number():
    people = [[1.0] * 60 if w % 3 else [0.0] * 60 for w in range(15)]  # every 3rd: 0 < k
    bodies = windows_of({"people": people}, [PEOPLE], gate=CROWD)
    assert [b["values"]["people"]["suppressed"] for b in bodies].count(True) == 5
    merged = coarsen.merge(bodies, 900)
    entry = merged["values"]["people"]
    assert entry["sum"] is None and entry["suppressed"] is True
    assert entry["suppressed_reason"] == "below_k" and entry["k"] == 3
    assert entry["n"] == 900
    assert "dp" not in entry and "flags" not in entry and "approximate" not in entry
    assert problems("data", merged) == []


def test_mixed_reasons_keep_the_first_one():
    # the agent starts at :55: a 5 s partial first window, shorter than the 10 s minimum
    people = [[5.0] * 60 for _ in range(4)]
    people[2] = people[3] = [0.0] * 60  # the window 02:05-03:05 is below k
    bodies = windows_of({"people": people}, [PEOPLE], gate=CROWD, start=ALIGNED + 55)
    reasons = [b["values"]["people"].get("suppressed_reason") for b in bodies]
    assert reasons[0] == "short_window" and "below_k" in reasons
    entry = coarsen.merge(bodies, 900)["values"]["people"]
    assert entry["suppressed_reason"] == "short_window" and entry["sum"] is None


def test_dp_sums_add_up_and_keep_the_largest_epsilon(tmp_path):
    gate = PrivacyGate(PrivacyConfig(preset="research-dp"), "gw",
                       budget=DpBudget(tmp_path), rng=random.Random(4))
    people = [[1.0] * 30 for _ in range(3)]
    bodies = windows_of({"people": people}, [PEOPLE], length=300.0, interval=10.0, gate=gate)
    assert all("dp" in b["values"]["people"] for b in bodies)
    entry = coarsen.merge(bodies, 900)["values"]["people"]
    assert entry["sum"] == sum(b["values"]["people"]["sum"] for b in bodies)
    assert entry["dp"] == {"epsilon": 0.1, "mechanism": "geometric"}
    assert "k" not in entry


def test_merged_correction_is_weighted_like_values():
    merged_entries = coarsen.merge_corrections(
        [{"corrections": [{"stream": "pm25", "method": "m", "unit": "ug/m3", "n": 10,
                           "mean": 2.0, "min": 1.0, "max": 3.0}]},
         {"corrections": [{"stream": "pm25", "method": "m", "unit": "ug/m3", "n": 30,
                           "mean": 4.0, "min": 2.0, "max": 6.0}]},
         {"corrections": []}],
        {"pm25": {"quantity": "particulate"}})
    assert merged_entries == [{"stream": "pm25", "method": "m", "unit": "ug/m3", "n": 40,
                               "mean": 3.5, "min": 1.0, "max": 6.0}]
    changed = coarsen.merge_corrections(
        [{"corrections": [{"stream": "pm25", "method": "m", "unit": "ug/m3", "n": 1}]},
         {"corrections": [{"stream": "pm25", "method": "x", "unit": "ug/m3", "n": 1}]}],
        {"pm25": {"quantity": "particulate"}})
    assert changed == []  # the method changed inside the coarse window: left out


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=6), min_size=2, max_size=15),
       st.lists(st.lists(st.floats(0, 500, allow_nan=False), min_size=6, max_size=6),
                min_size=15, max_size=15))
def test_property_sums_and_n_are_preserved_and_extremes_exact(counts, levels):
    windows = len(counts)
    people = [[float(c) for c in window] for window in counts]
    pm = [[round(v, 2) for v in window] for window in levels[:windows]]
    bodies = windows_of({"people": people, "pm25": pm}, [PEOPLE, PM], interval=10.0,
                        gate=CROWD)
    merged = coarsen.merge(bodies, 900)
    assert problems("data", merged) == []
    people_in = [b["values"]["people"] for b in bodies]
    entry = merged["values"]["people"]
    assert entry["n"] == sum(e["n"] for e in people_in) == sum(map(len, counts))
    if any(e.get("suppressed") for e in people_in):
        assert entry["sum"] is None and entry["suppressed"] is True
    elif any(e["n"] for e in people_in):
        assert entry["sum"] == sum(map(sum, counts))
    values = merged["values"]["pm25"]
    assert values["n"] == 6 * windows
    assert values["min"] == round(min(flat(pm)), 2)
    assert values["max"] == round(max(flat(pm)), 2)
    assert values["min"] <= values["mean"] <= values["max"]


# -- the outbox ------------------------------------------------------------------------------


def pm_windows(count: int, *, start=ALIGNED, seed=0):
    """Released PM windows (1 min, 6 samples each) of sensor ``pm``, as the gate makes them."""
    rng = random.Random(seed)
    clock = FakeClock(start_wall=start)
    windows = SensorWindows("pm", [PM, PM10], 60, 10.0, clock)
    out = []
    while len(out) < count:
        for window in windows.add([Reading("pm25", round(rng.uniform(5, 25), 2),
                                           clock.monotonic()),
                                   Reading("pm10", round(rng.uniform(10, 40), 2),
                                           clock.monotonic())]):
            out.append(STRICT.release_window(window, META))
        clock.advance(10.0)
    return out[:count]


def event(n: int):
    return STRICT.release_event("sensor_fault", f"fault {n}", time=ALIGNED + n,
                                clock="synced", details={"n": n})


def announcer(kind, message, *, sensor, details):
    return STRICT.release_event(kind, message, time=ALIGNED, clock="synced", sensor=sensor,
                                details=details)


async def fill(outbox: Outbox, items):
    for item in items:
        await outbox.put(item)
        await outbox.announce_pending(announcer)  # as the agent does after every store


def stored(rows):
    return [json.loads(r.payload) for r in rows]


def data_rows(bodies):
    return [b for b in bodies if "values" in b]


def covered_seqs(bodies):
    seqs = []
    for body in bodies:
        first, last = coarsen.seq_range(body)
        seqs += range(first, last + 1)
    return seqs


def run(coro):
    return asyncio.run(coro)


def test_a_full_outbox_coarsens_instead_of_dropping(tmp_path):
    items = pm_windows(180)  # three hours of 1-min windows
    size = sum(len(json.dumps(i.body)) for i in items)

    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", size // 3 + 16384,
                                   priority_bytes=16384)
        await fill(outbox, [event(0), event(1)])
        await fill(outbox, items)
        rows = await outbox.peek(0, 1000)
        stats = await outbox.stats()
        pending = await outbox.unannounced_coarsenings()
        await outbox.close()
        return rows, stats, pending

    rows, stats, pending = run(scenario())
    bodies = stored(rows)
    data = data_rows(bodies)
    events = [b for b in bodies if "type" in b]
    assert stats.dropped == 0 and stats.coarsened > 0
    assert stats.bytes - sum(len(r.payload) for r in rows if r.stream == "events") \
        <= stats.max_bytes - stats.priority_bytes
    # nothing lost: every seq is in exactly one stored message, every sample still counted
    assert sorted(covered_seqs(data)) == list(range(180))
    assert sum(b["values"]["pm25"]["n"] for b in data) == 180 * 6
    coarse = [b for b in data if "coarsened" in b]
    assert coarse and all(b["window"]["seconds"] == 900 for b in coarse)
    assert all(problems("data", b) == [] for b in data)
    assert [b["seq"] for b in data] == sorted(b["seq"] for b in data)  # seq order kept
    # the events are untouched; every merge was announced, with its seq range
    assert [b["details"]["n"] for b in events if b["type"] == "sensor_fault"] == [0, 1]
    announced = [b for b in events if b["type"] == "outbox_coarsened"]
    assert {(a["details"]["first_seq"], a["details"]["last_seq"]) for a in announced} == {
        (b["coarsened"]["seq_first"], b["coarsened"]["seq_last"]) for b in coarse}
    for a in announced:
        assert a["sensor"] == "pm" and a["details"]["stream"] == "data/pm"
        assert a["details"]["seconds"] == 900 and a["details"]["windows"] == 15
        assert problems("events", a) == []
    assert pending == []


def test_coarse_windows_merge_again_to_hours_then_the_oldest_are_dropped(tmp_path):
    items = pm_windows(360)  # six hours

    async def scenario(data_bytes, count=360):
        path = tmp_path / f"o{data_bytes}.sqlite3"
        outbox = await Outbox.open(path, data_bytes + 16000, priority_bytes=16000)
        await fill(outbox, items[:count])
        rows = await outbox.peek(0, 1000)
        stats = await outbox.stats()
        drops = [b["details"] for b in stored(rows) if b.get("type") == "outbox_dropped"]
        pending = await outbox.unannounced_drops()
        await outbox.close()
        return data_rows(stored(rows)), stats, drops, pending

    # six hours, the last quarter hour still filling: 14 windows of 1 min, 3 quarters, 5 hours
    data, stats, _, _ = run(scenario(14 * 530 + 3 * 600 + 5 * 620 + 1000))
    assert stats.dropped == 0
    assert any(b["window"]["seconds"] == 3600 and b["coarsened"]["from"] == 60 for b in data)
    assert sorted(covered_seqs(data)) == list(range(360))

    # not even the open quarter hour fits: the oldest are dropped, as before
    data, stats, drops, pending = run(scenario(6000, count=120))
    assert stats.dropped > 0
    ranges = [d for d in drops if d["stream"] == "data/pm"] + [
        {"first_seq": d.first_seq, "last_seq": d.last_seq, "count": d.count}
        for d in pending if d.stream == "data/pm"]
    dropped = [s for d in ranges for s in range(d["first_seq"], d["last_seq"] + 1)]
    assert sum(d["count"] for d in ranges) == len(dropped)
    # every seq is still stored (maybe inside a coarse message), or announced or about to be
    # announced as dropped (a dropped coarse message takes all the seqs it stood for)
    assert sorted(covered_seqs(data) + dropped) == list(range(120))


def test_rows_handed_to_the_publisher_are_never_merged_even_after_a_restart(tmp_path):
    items = pm_windows(120)
    path = tmp_path / "o.sqlite3"
    size = sum(len(json.dumps(i.body)) for i in items)

    async def first():
        outbox = await Outbox.open(path, size, priority_bytes=8192)
        await fill(outbox, items[:40])
        claimed = await outbox.peek(0, 10, claim=True)  # sent, no PUBACK yet
        await outbox.close()  # e.g. power loss before the broker acknowledged them
        return claimed

    async def second():
        outbox = await Outbox.open(path, size // 2 + 8192, priority_bytes=8192)
        await fill(outbox, items[40:])
        rows = await outbox.peek(0, 1000)
        stats = await outbox.stats()
        await outbox.close()
        return rows, stats

    claimed = run(first())
    rows, stats = run(second())
    assert stats.coarsened > 0 and stats.dropped == 0
    kept = {r.id: r.payload for r in rows}
    assert all(kept[c.id] == c.payload for c in claimed)  # unchanged, still its own window
    first_coarse = min(coarsen.seq_range(b)[0] for b in data_rows(stored(rows))
                       if "coarsened" in b)
    assert first_coarse >= 10


def test_claimed_rows_are_never_merged_in_the_running_process(tmp_path):
    items = pm_windows(90)
    size = sum(len(json.dumps(i.body)) for i in items)

    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", size // 2 + 8192,
                                   priority_bytes=8192)
        await fill(outbox, items[:20])
        claimed = await outbox.peek(0, 5, claim=True)
        await fill(outbox, items[20:])
        rows = await outbox.peek(0, 1000)
        await outbox.close()
        return claimed, rows

    claimed, rows = run(scenario())
    kept = {r.id: r.payload for r in rows}
    assert all(kept[c.id] == c.payload for c in claimed)
    assert any("coarsened" in b for b in stored(rows))


def test_state_is_consistent_after_a_restart(tmp_path):
    items = pm_windows(200)
    path = tmp_path / "o.sqlite3"
    size = sum(len(json.dumps(i.body)) for i in items)

    async def phase(chunk):
        outbox = await Outbox.open(path, size // 3 + 8192, priority_bytes=8192)
        await fill(outbox, chunk)
        stats = await outbox.stats()
        rows = await outbox.peek(0, 1000)
        await outbox.close()
        return stats, rows

    before, _ = run(phase(items[:120]))
    reopened, _ = run(phase([]))
    after, rows = run(phase(items[120:]))
    assert (reopened.bytes, reopened.depth, reopened.coarsened) == (
        before.bytes, before.depth, before.coarsened)
    assert after.coarsened > before.coarsened and after.dropped == 0
    data = data_rows(stored(rows))
    assert sorted(covered_seqs(data)) == list(range(200))
    assert after.bytes == sum(len(r.payload) for r in rows)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT last_seq FROM sequences WHERE stream = 'data/pm'"
                          ).fetchone()[0] == 199
        assert db.execute("SELECT COUNT(*) FROM messages WHERE first_seq IS NOT NULL AND "
                          "first_seq > seq").fetchone()[0] == 0
    finally:
        db.close()


def test_events_keep_their_reserve_when_data_flood(tmp_path):
    items = pm_windows(120)

    async def scenario():
        # 8 faults (1.4 kB) and 8 merge announcements (3 kB) fit the reserve
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 24000, priority_bytes=6000)
        await fill(outbox, [event(i) for i in range(8)])
        await fill(outbox, items)
        stats = await outbox.stats()
        rows = await outbox.peek(0, 1000)
        drops = await outbox.unannounced_drops()
        await outbox.close()
        return stats, rows, drops

    stats, rows, drops = run(scenario())
    bodies = stored(rows)
    faults = [b["details"]["n"] for b in bodies if b.get("type") == "sensor_fault"]
    assert faults == list(range(8))  # data never pushed an event out
    assert drops == []
    assert all(b["details"]["stream"] != "events" for b in bodies
               if b.get("type") == "outbox_dropped")
    data_bytes = sum(len(r.payload) for r in rows if r.stream.startswith("data/"))
    assert data_bytes <= stats.max_bytes - stats.priority_bytes


def test_the_newest_quarter_hour_is_left_alone_while_it_fills():
    bodies = [{"seq": i, **b.body, "store": STORE} for i, b in enumerate(pm_windows(20))]
    rows = [(i + 1, "data/pm", b) for i, b in enumerate(bodies[:10])]
    group, again = coarsen.first_closed_group(rows, 900)
    assert group is None and again == 1  # 10 minutes of the first quarter: still open
    rows = [(i + 1, "data/pm", b) for i, b in enumerate(bodies)]
    group, again = coarsen.first_closed_group(rows, 900)
    assert group == list(range(1, 16)) and again == 1
    group, _ = coarsen.first_closed_group([*rows[:15], (None, "data/pm", bodies[15])], 900)
    assert group == list(range(1, 16))  # the message being put closes the quarter
