import asyncio
import json

import pytest
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import QuantityClass, Reading, StatKind, StreamSpec
from edgeagent.outbox import Outbox
from edgeagent.privacy import ClassPolicy, PrivacyConfig, PrivacyGate, Released
from edgeagent.windows import SensorWindows

PM = StreamSpec("pm25", "ug/m3", QuantityClass.PARTICULATE)
PEOPLE = StreamSpec("people", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER)
META = {"driver": "simulated", "model": "m", "simulated": True}


def window_with(values_by_stream, length=300.0, streams=(PM, PEOPLE)):
    clock = FakeClock(start_wall=1_767_225_600.0)
    windows = SensorWindows("s", list(streams), length, 1.0, clock)
    for i in range(int(length)):
        windows.add([Reading(name, values[i % len(values)], clock.monotonic())
                     for name, values in values_by_stream.items()])
        clock.advance(1)
    (closed,) = windows.close_due()
    return closed


def test_only_allowed_statistics_leave():
    privacy = PrivacyConfig(classes={
        QuantityClass.PARTICULATE: ClassPolicy(min_window=60, statistics=("mean",))})
    released = PrivacyGate(privacy, "gw").release_window(
        window_with({"pm25": [1.0, 3.0], "people": [1.0]}), META)
    assert set(released.body["values"]["pm25"]) == {"unit", "quantity", "n", "mean"}
    assert released.body["values"]["pm25"]["mean"] == 2.0


def test_counts_below_k_are_suppressed_as_null_never_zero():
    gate = PrivacyGate(PrivacyConfig(preset="strict"), "gw")
    sparse = [0.0] * 299 + [1.0]  # 1 person in 5 minutes: below k = 5
    values = gate.release_window(window_with({"pm25": [1.0], "people": sparse}),
                                 META).body["values"]["people"]
    assert values["suppressed"] is True and values["sum"] is None and values["k"] == 5
    busy = gate.release_window(window_with({"pm25": [1.0], "people": [1.0]}),
                               META).body["values"]["people"]
    assert busy["suppressed"] is False and busy["sum"] == 300


def test_zero_people_is_also_suppressed():
    gate = PrivacyGate(PrivacyConfig(preset="strict"), "gw")
    people = gate.release_window(window_with({"pm25": [1.0], "people": [0.0]}),
                                 META).body["values"]["people"]
    assert people["sum"] is None and people["suppressed"]


def test_gate_refuses_a_window_below_the_policy_minimum():
    gate = PrivacyGate(PrivacyConfig(preset="strict"), "gw")
    short = window_with({"pm25": [1.0], "people": [1.0]}, length=60)
    with pytest.raises(PermissionError, match="below the 300s minimum for people_count"):
        gate.release_window(short, META)


@pytest.mark.parametrize("word", ["raw", "samples", "tracks", "values"])
def test_policy_refuses_raw_statistics(word):
    with pytest.raises(ValidationError, match="raw or per-object data"):
        ClassPolicy(min_window=60, statistics=(word,))


def test_overrides_below_the_legal_floor_are_reported():
    privacy = PrivacyConfig(classes={
        QuantityClass.PEOPLE_COUNT: ClassPolicy(min_window=10, statistics=("sum",), k=2)})
    problems = dict(privacy.problems())
    assert "at least 60s" in problems["privacy.classes.people_count.min_window"]
    assert "at least 3" in problems["privacy.classes.people_count.k"]


def test_released_cannot_be_forged():
    with pytest.raises(PermissionError, match="only by the privacy gate"):
        Released("data/x", "data/x", {"values": {"raw": [1, 2, 3]}}, object())


def test_outbox_refuses_anything_that_did_not_pass_the_gate(tmp_path):
    async def scenario():
        outbox = await Outbox.open(tmp_path / "o.sqlite3", 1 << 20)
        try:
            for fake in ({"topic": "data/x", "payload": "raw"}, b"raw bytes", "x"):
                with pytest.raises(TypeError, match="only messages released by the privacy"):
                    await outbox.put(fake)  # type: ignore[arg-type]
            forged = object.__new__(Released)  # bypasses __init__ and __post_init__
            object.__setattr__(forged, "_seal", object())
            with pytest.raises(TypeError):
                await outbox.put(forged)
            assert (await outbox.stats()).depth == 0
            gate = PrivacyGate(PrivacyConfig(preset="strict"), "gw")
            event = gate.release_event("agent_started", "hi", time=1.0, clock="synced")
            assert await outbox.put(event) == 0
            (row,) = await outbox.peek()
            assert json.loads(row.payload)["type"] == "agent_started"
        finally:
            await outbox.close()

    asyncio.run(scenario())


def test_event_details_keep_scalars_only():
    gate = PrivacyGate(PrivacyConfig(), "gw")
    event = gate.release_event("sensor_fault", "x", time=0.0, clock="synced",
                               details={"port": "/dev/ttyS0", "frame": [1, 2, 3]})  # type: ignore[dict-item]
    assert event.body["details"] == {"port": "/dev/ttyS0"}


def test_partial_window_shorter_than_the_minimum_is_suppressed_for_every_stream():
    clock = FakeClock(start_wall=1_767_225_600.0 + 250)  # starts 50 s before a boundary
    windows = SensorWindows("s", [PM, PEOPLE], 300, 1.0, clock)
    closed = []
    for _ in range(60):
        closed += windows.add([Reading("pm25", 8.0, clock.monotonic()),
                               Reading("people", 3.0, clock.monotonic())])
        clock.advance(1)
    (first,) = closed
    assert first.partial and first.end - first.start == 50
    privacy = PrivacyConfig(preset="strict")
    values = PrivacyGate(privacy, "gw").release_window(first, META).body["values"]
    for name in ("pm25", "people"):
        assert values[name]["suppressed"] is True
        assert values[name]["suppressed_reason"] == "short_window"
    assert values["people"]["sum"] is None  # 150 people, but in a 50 s slice: withheld
    assert all(values["pm25"][s] is None for s in ("mean", "min", "max", "stddev"))
    assert values["pm25"]["n"] == 50


def test_plausibility_flags_pass_the_gate_and_match_the_schema():
    from edgeagent import contract

    clock = FakeClock(start_wall=1_767_225_600.0)
    windows = SensorWindows("s", [PM], 60, 1.0, clock)
    closed = []
    for _ in range(4 * 60):  # a frozen sensor: the same value for four minutes
        closed += windows.add([Reading("pm25", 7.0, clock.monotonic())])
        clock.advance(1)
    gate = PrivacyGate(PrivacyConfig(preset="strict"), "gw")
    bodies = [gate.release_window(w, META).body for w in closed]
    assert [b["values"]["pm25"].get("flags") for b in bodies] == [None, None, ["stuck"]]
    message = {"seq": 2, "store": "0" * 32, **bodies[-1]}
    assert contract.problems("data", message) == []


def test_level_streams_publish_percentiles_and_a_stream_can_narrow_its_statistics():
    laf = StreamSpec("LAF", "dB", QuantityClass.NOISE, StatKind.LEVEL)
    lafmax = StreamSpec("LAFmax", "dB", QuantityClass.NOISE, StatKind.LEVEL,
                        statistics=("max",))
    released = PrivacyGate(PrivacyConfig(), "gw").release_window(window_with(
        {"LAF": [50.0, 60.0, 70.0], "LAFmax": [55.0, 72.5]}, length=60, streams=(laf, lafmax)),
        META)
    values = released.body["values"]
    assert set(values["LAF"]) == {"unit", "quantity", "n", "mean", "min", "max",
                                  "l10", "l50", "l90"}
    assert (values["LAF"]["l90"], values["LAF"]["l50"], values["LAF"]["l10"]) == (
        50.0, 60.0, 70.0)
    assert set(values["LAFmax"]) == {"unit", "quantity", "n", "max"}
    assert values["LAFmax"]["max"] == 72.5
    strict = PrivacyConfig(classes={QuantityClass.NOISE: ClassPolicy(
        min_window=60, statistics=("mean",))})
    assert PrivacyGate(strict, "gw").allowed(laf) == (["mean"], None)  # the policy decides


# --- occupancy and presence ------------------------------------------------------------------

OCCUPANCY = StreamSpec("occupancy", "count", QuantityClass.PEOPLE_COUNT, StatKind.OCCUPANCY)
PRESENCE = StreamSpec("presence", "%", QuantityClass.PRESENCE, statistics=("mean",))


def _values(preset, by_stream, streams, length=300.0):
    gate = PrivacyGate(PrivacyConfig(preset=preset), "gw")
    return gate.release_window(window_with(by_stream, length, streams), META).body["values"]


def test_occupancy_publishes_mean_and_peak_and_counters_only_their_sum():
    values = _values("strict", {"people": [0.0, 1.0], "occupancy": [4.0, 6.0]},
                     (PEOPLE, OCCUPANCY))
    assert values["occupancy"] == {"unit": "count", "quantity": "people_count", "n": 300,
                                   "mean": 5.0, "max": 6.0, "k": 5, "suppressed": False}
    assert set(values["people"]) == {"unit", "quantity", "n", "sum", "k", "suppressed"}


def test_occupancy_whose_peak_is_below_k_is_suppressed():
    values = _values("strict", {"occupancy": [0.0, 1.0, 4.0]}, (OCCUPANCY,))
    assert values["occupancy"]["suppressed"] is True
    assert values["occupancy"]["suppressed_reason"] == "below_k"
    assert values["occupancy"]["mean"] is None and values["occupancy"]["max"] is None


def test_occupancy_is_not_released_under_differential_privacy():
    # DP noises counts only; an un-noised occupancy would undo it, so none of it leaves
    values = _values("research-dp", {"occupancy": [9.0]}, (OCCUPANCY,))
    assert set(values["occupancy"]) == {"unit", "quantity", "n"}
    wide = PrivacyConfig(preset="research-dp", classes={QuantityClass.PEOPLE_COUNT: ClassPolicy(
        min_window=300, statistics=("sum", "mean", "max"),
        dp={"epsilon": 0.1, "daily_budget": 30})})
    assert PrivacyGate(wide, "gw").allowed(OCCUPANCY) == ([], None)


def test_presence_share_has_no_k_and_its_own_class():
    values = _values("strict", {"presence": [0.0, 100.0, 100.0, 100.0]}, (PRESENCE,))
    assert values["presence"] == {"unit": "%", "quantity": "presence", "n": 300, "mean": 75.0}


def test_crowd_safety_allows_ten_second_count_windows_and_strict_does_not():
    ten = _values("crowd-safety", {"people": [1.0]}, (PEOPLE,), length=10.0)
    assert ten["people"]["sum"] == 10 and ten["people"]["k"] == 3
    with pytest.raises(PermissionError, match="below the 300s minimum"):
        _values("strict", {"people": [1.0]}, (PEOPLE,), length=10.0)
    floor = PrivacyConfig(preset="crowd-safety", classes={
        QuantityClass.PEOPLE_COUNT: ClassPolicy(min_window=5, statistics=("sum",), k=3)})
    assert floor.problems() == [("privacy.classes.people_count.min_window",
                                 "must be at least 10s for people_count under preset "
                                 "crowd-safety (got 5s)")]
