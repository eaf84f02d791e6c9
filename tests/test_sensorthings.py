"""SensorThings encoder (edgeagent/encoders/sensorthings.py): create-Observation messages.

Every Observation produced here is validated against
``tests/sensorthings_schemas/observation.schema.json`` (closed, draft 2020-12, written from
OGC 18-088 v1.1; its source is in the schema's ``description``), and its ``parameters`` keys
against the set the encoder documents.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from edgeagent.encoders import Encoded, Encoder
from edgeagent.encoders.sensorthings import (
    OM_MEASUREMENT,
    PLACEHOLDER_PREFIX,
    STATISTICS,
    SensorThingsEncoder,
    datastream_export,
    observations_topic,
    parse_key,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "contract_examples"
EXAMPLE = json.loads((EXAMPLES / "data.json").read_text())
MANIFEST = json.loads((EXAMPLES / "manifest.json").read_text())
SCHEMA = json.loads((ROOT / "tests" / "sensorthings_schemas" / "observation.schema.json")
                    .read_text(encoding="utf-8"))
OBSERVATION = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
#: The contract's own schema of what this encoder publishes (deploy/asyncapi.yaml, channel
#: sensorthingsObservations): narrower than the standard's Observation.
CONTRACT_SCHEMA = json.loads((ROOT / "deploy" / "schemas" / "sensorthings-observation.schema.json")
                             .read_text(encoding="utf-8"))
CONTRACT = Draft202012Validator(CONTRACT_SCHEMA, format_checker=FormatChecker())
PARAMETER_KEYS = {"gateway", "sensor", "stream", "statistic", "seq", "store", "n", "coverage",
                  "window_s", "clock", "partial", "simulated"}
OPTIONAL_PARAMETER_KEYS = {"flags", "k", "dp"}
MAPPING = {"pm-north/pm25": 42, "pm-north/pm25:max": 43, "pm-north/laeq": 44,
           "pm-north/people:sum": 45}


def topic(datastream_id: int | str) -> str:
    return observations_topic(datastream_id)


def check(message: Encoded) -> dict[str, Any]:
    """Decode one message and validate it; returns the Observation."""
    observation = json.loads(message.payload)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OBSERVATION.iter_errors(observation)]
    assert not errors, errors
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in CONTRACT.iter_errors(observation)]
    assert not errors, errors
    keys = set(observation["parameters"])
    assert PARAMETER_KEYS <= keys <= PARAMETER_KEYS | OPTIONAL_PARAMETER_KEYS
    assert message.topic.startswith("v1.1/Datastreams(")
    assert message.topic.endswith(")/Observations")
    return observation


def encode(body: dict[str, Any], mapping: dict[str, int | str] | None = None,
           suffix: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    encoder = SensorThingsEncoder(MAPPING if mapping is None else mapping)
    messages = encoder.encode(suffix or f"data/{body['sensor']}", body)
    return [(m.topic, check(m)) for m in messages]


def with_values(values: dict[str, Any], **window: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["values"] = values
    body["window"].update(window)
    return body


# --- the schema itself -------------------------------------------------------------------


def test_schema_is_closed_draft_2020_12_and_cites_its_source() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["additionalProperties"] is False
    assert "https://docs.ogc.org/is/18-088/18-088.html" in SCHEMA["description"]


@pytest.mark.parametrize("broken", [
    {"resultTime": "2026-01-01T10:01:00Z", "result": 1},  # no phenomenonTime
    {"phenomenonTime": "2026-01-01T10:00:00Z", "resultTime": None},  # no result
    {"phenomenonTime": "2026-01-01T10:00:00Z", "resultTime": None, "result": 1, "unit": "x"},
    {"phenomenonTime": "2026-01-01T10:00:00Z", "resultTime": None, "result": 1, "@iot.id": 1},
    {"phenomenonTime": "2026-01-01T10:00:00/2026-01-01T10:01:00", "resultTime": None,
     "result": 1},  # no offset
    {"phenomenonTime": "2026-01-01T10:00:00Z", "resultTime": "2026-01-01T10:00:00Z/"
     "2026-01-01T10:01:00Z", "result": 1},  # resultTime must be an instant
    {"phenomenonTime": "2026-01-01T10:00:00Z", "resultTime": None, "result": 1,
     "parameters": [1]},
])
def test_schema_rejects(broken: dict[str, Any]) -> None:
    assert list(OBSERVATION.iter_errors(broken))


def test_schema_accepts_the_standards_shapes() -> None:
    for good in [
        {"phenomenonTime": "2014-12-31T11:59:59.00+08:00", "resultTime": None, "result": 70.4},
        {"phenomenonTime": "2026-01-01T10:00:00Z/2026-01-01T10:01:00Z",
         "resultTime": "2026-01-01T10:01:02Z", "result": 58.3, "validTime":
         "2026-01-01T10:00:00Z/2026-01-02T10:00:00Z", "resultQuality": [{"x": 1}],
         "parameters": {"n": 600}, "FeatureOfInterest": {"@iot.id": 7}},
    ]:
        assert not list(OBSERVATION.iter_errors(good))


# --- encoding ----------------------------------------------------------------------------


def test_contract_schema_lists_exactly_the_keys_sent() -> None:
    parameters = CONTRACT_SCHEMA["properties"]["parameters"]
    assert set(parameters["properties"]) == PARAMETER_KEYS | OPTIONAL_PARAMETER_KEYS
    assert set(parameters["required"]) == PARAMETER_KEYS
    assert set(CONTRACT_SCHEMA["properties"]) == {"phenomenonTime", "resultTime", "result",
                                                   "parameters"}
    assert parameters["properties"]["statistic"]["enum"] == list(STATISTICS)
    for example in CONTRACT_SCHEMA["examples"]:
        assert OBSERVATION.is_valid(example)


def test_contract_schema_accepts_flags_k_and_dp() -> None:
    body = with_values({
        "pm25": {"unit": "ug/m3", "quantity": "particulate", "n": 59, "mean": 8.1,
                 "flags": ["stuck", "high_humidity"]},
        "people": {"unit": "count", "quantity": "people_count", "n": 60, "sum": 7,
                   "suppressed": False, "k": 5,
                   "dp": {"epsilon": 0.5, "mechanism": "geometric"}},
    }, start="2026-01-01T10:00:10.250Z", partial=True, clock="rtc")
    found = encode(body)  # check() validates against both schemas
    assert [set(o["parameters"]) - PARAMETER_KEYS for _, o in found] == [{"dp", "k"}, {"flags"}]


def test_is_an_encoder_with_absolute_topics() -> None:
    encoder = SensorThingsEncoder(MAPPING)
    assert isinstance(encoder, Encoder)
    assert encoder.name == "sensorthings"
    assert SensorThingsEncoder.absolute_topics is True


def test_contract_example() -> None:
    result = encode(EXAMPLE)
    assert [t for t, _ in result] == [topic(44), topic(42), topic(43)]  # laeq, pm25 mean, max
    _, laeq = result[0]
    assert laeq == {
        "phenomenonTime": "2026-01-01T10:00:00Z/2026-01-01T10:01:00Z",
        "resultTime": "2026-01-01T10:01:00Z",
        "result": 55.1,
        "parameters": {"gateway": "ams-oost-lp0412", "sensor": "pm-north", "stream": "laeq",
                       "statistic": "mean", "seq": 17,
                       "store": "3f2a9c4e8b7d4e1f9a6b5c4d3e2f1a0b", "n": 60, "coverage": 0.98,
                       "window_s": 60, "clock": "synced", "partial": False,
                       "simulated": False},
    }
    assert [o["result"] for _, o in result[1:]] == [8.12, 10.0]
    assert all(o["parameters"]["seq"] == 17 for _, o in result)


def test_payload_is_compact_sorted_and_deterministic() -> None:
    encoder = SensorThingsEncoder(MAPPING)
    first = encoder.encode("data/pm-north", EXAMPLE)
    assert first == encoder.encode("data/pm-north", copy.deepcopy(EXAMPLE))
    text = first[0].payload.decode()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def test_several_statistics_per_stream() -> None:
    mapping = {"pm-north/pm25": 1, "pm-north/pm25:min": 2, "pm-north/pm25:max": 3,
               "pm-north/pm25:stddev": 4, "pm-north/laeq:max": 5}
    result = encode(EXAMPLE, mapping)
    assert [(t, o["parameters"]["statistic"], o["result"]) for t, o in result] == [
        (topic(5), "max", 71.3), (topic(1), "mean", 8.12), (topic(2), "min", 7.0),
        (topic(3), "max", 10.0), (topic(4), "stddev", 0.81)]


def test_percentiles_of_a_level_stream() -> None:
    lafast = {"unit": "dB", "quantity": "noise", "n": 600, "mean": 60.2, "l10": 64.0,
              "l50": 58.1, "l90": 51.3}
    mapping = {f"pm-north/laf:{s}": i for i, s in enumerate(("l10", "l50", "l90"))}
    result = encode(with_values({"laf": lafast}), mapping)
    assert [o["result"] for _, o in result] == [64.0, 58.1, 51.3]


@pytest.mark.parametrize("people", [
    {"unit": "count", "quantity": "people_count", "n": 60, "sum": None, "suppressed": True,
     "suppressed_reason": "below_k", "k": 5},
    {"unit": "count", "quantity": "people_count", "n": 300, "sum": None, "suppressed": True,
     "suppressed_reason": "dp_budget"},
    {"unit": "count", "quantity": "people_count", "n": 20, "sum": None, "suppressed": True,
     "suppressed_reason": "short_window", "k": 5},
], ids=["below_k", "dp_budget", "short_window"])
def test_suppressed_count_gives_no_observation(people: dict[str, Any]) -> None:
    assert encode(with_values({"people": people}), {"pm-north/people:sum": 9}) == []


def test_suppressed_stream_gives_nothing_even_if_a_value_slipped_through() -> None:
    # Defence in depth: "suppressed" wins over any number next to it.
    pm = {"unit": "ug/m3", "quantity": "particulate", "n": 3, "mean": 0.0, "suppressed": True,
          "suppressed_reason": "short_window"}
    assert encode(with_values({"pm25": pm}), {"pm-north/pm25": 1}) == []


def test_null_and_absent_statistics_give_no_observation() -> None:
    pm = {"unit": "ug/m3", "quantity": "particulate", "n": 0}  # n = 0: no statistic at all
    laeq = {"unit": "dB", "quantity": "noise", "n": 60, "mean": None, "max": 70.0}
    result = encode(with_values({"pm25": pm, "laeq": laeq}),
                    {"pm-north/pm25": 1, "pm-north/laeq": 2, "pm-north/laeq:max": 3,
                     "pm-north/laeq:min": 4})
    assert [(t, o["result"]) for t, o in result] == [(topic(3), 70.0)]


def test_published_count_and_dp_context() -> None:
    people = {"unit": "count", "quantity": "people_count", "n": 300, "sum": 37,
              "dp": {"epsilon": 0.1, "mechanism": "geometric"}, "suppressed": False}
    [(_, observation)] = encode(with_values({"people": people}), {"pm-north/people:sum": 9})
    assert observation["result"] == 37
    assert isinstance(observation["result"], int)
    assert observation["parameters"]["dp"] == {"epsilon": 0.1, "mechanism": "geometric"}


def test_flags_and_k_travel_in_parameters() -> None:
    pm = {"unit": "ug/m3", "quantity": "particulate", "n": 59, "mean": 80.0,
          "flags": ["high_humidity"]}
    [(_, observation)] = encode(with_values({"pm25": pm}), {"pm-north/pm25": 1})
    assert observation["parameters"]["flags"] == ["high_humidity"]
    people = {"unit": "count", "quantity": "people_count", "n": 60, "sum": 12, "k": 5,
              "suppressed": False}
    [(_, counted)] = encode(with_values({"people": people}), {"pm-north/people:sum": 2})
    assert counted["parameters"]["k"] == 5


def test_unmapped_streams_and_sensors_are_not_sent() -> None:
    assert encode(EXAMPLE, {"pm-south/pm25": 1}) == []  # another sensor
    assert encode(EXAMPLE, {}) == []
    only_pm = encode(EXAMPLE, {"pm-north/pm25": 1})
    assert [o["parameters"]["stream"] for _, o in only_pm] == ["pm25"]
    # A statistic the policy did not publish, mapped anyway: nothing.
    assert encode(EXAMPLE, {"pm-north/pm25:l90": 1, "pm-north/pm25:sum": 2}) == []


def test_partial_window_phenomenon_time_is_the_true_interval() -> None:
    body = with_values(copy.deepcopy(EXAMPLE["values"]), start="2026-01-01T10:00:17.250Z",
                       end="2026-01-01T10:01:00Z", partial=True)
    result = encode(body, {"pm-north/pm25": 1})
    [(_, observation)] = result
    assert observation["phenomenonTime"] == "2026-01-01T10:00:17.250Z/2026-01-01T10:01:00Z"
    assert observation["resultTime"] == "2026-01-01T10:01:00Z"
    assert observation["parameters"]["partial"] is True
    assert observation["parameters"]["window_s"] == 60


def test_unsynced_clock_is_stated() -> None:
    body = with_values(copy.deepcopy(EXAMPLE["values"]), clock="unsynced",
                       start="1970-01-01T00:02:00Z", end="1970-01-01T00:03:00Z")
    [(_, observation)] = encode(body, {"pm-north/pm25": 1})
    assert observation["parameters"]["clock"] == "unsynced"


@pytest.mark.parametrize("name", ["events", "health"])
def test_events_and_health_give_nothing(name: str) -> None:
    body = json.loads((EXAMPLES / f"{name}.json").read_text())
    encoder = SensorThingsEncoder(MAPPING)
    assert encoder.encode(name, body) == []
    assert encoder.encode("manifest", MANIFEST) == []
    assert encoder.encode("status", {}) == []


def test_topic_must_name_the_body_sensor() -> None:
    with pytest.raises(ValueError, match="does not name"):
        SensorThingsEncoder(MAPPING).encode("data/pm-south", EXAMPLE)


# --- topics and mapping ------------------------------------------------------------------


def test_topics() -> None:
    assert topic(42) == "v1.1/Datastreams(42)/Observations"
    assert topic(0) == "v1.1/Datastreams(0)/Observations"
    assert topic("ds-7") == "v1.1/Datastreams('ds-7')/Observations"
    [message] = SensorThingsEncoder({"pm-north/pm25": "ab12"}).encode("data/pm-north", EXAMPLE)
    assert message.topic == "v1.1/Datastreams('ab12')/Observations"
    assert not message.topic.startswith("edgeagent/")


@pytest.mark.parametrize("bad", [-1, True, 1.5, "", "a/b", "a+b", "a#", "it's",
                                 f"{PLACEHOLDER_PREFIX}datastream:x>", None])
def test_ids_that_cannot_be_a_topic_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        SensorThingsEncoder({"pm-north/pm25": bad})


def test_mapping_keys() -> None:
    assert parse_key("pm-north/pm25") == ("pm-north", "pm25", "mean")
    assert parse_key("pm-north/pm25:max") == ("pm-north", "pm25", "max")
    assert parse_key("mic/laf:l90") == ("mic", "laf", "l90")
    for bad in ["pm-north", "pm-north/", "PM/pm25", "pm-north/pm25:median", "a/b:max:min",
                "pm-north/pm25/x"]:
        with pytest.raises(ValueError):
            parse_key(bad)
    with pytest.raises(ValueError, match="same Datastream source"):
        SensorThingsEncoder({"pm-north/pm25": 1, "pm-north/pm25:mean": 2})


# --- the export --------------------------------------------------------------------------


def test_export_deep_insert_structure() -> None:
    export = datastream_export(MANIFEST, base={})
    thing = export["thing"]
    assert thing["name"] == "ams-oost-lp0412"
    assert thing["description"] == MANIFEST["purpose"]
    assert thing["properties"]["edgeagent:topic_root"] == "edgeagent/v1/ams-oost-lp0412"
    [location] = thing["Locations"]
    assert location["encodingType"] == "application/geo+json"
    assert location["location"] == {"type": "Point", "coordinates": [4.918, 52.3595]}
    assert location["name"] == "Oosterpark noord"
    # One Sensor per model, one ObservedProperty per stream; Datastreams refer to them.
    assert list(export["sensors"]) == ["<sensor:Plantower PMS5003>"]
    assert list(export["observedProperties"]) == ["<observedProperty:pm25>"]
    sensor = export["sensors"]["<sensor:Plantower PMS5003>"]
    assert {"name", "description", "encodingType", "metadata"} <= set(sensor)
    prop = export["observedProperties"]["<observedProperty:pm25>"]
    assert prop["definition"].startswith("http://dd.eionet.europa.eu/vocabulary/aq/pollutant/")
    assert prop["description"] == "PM2.5 mass concentration, atmospheric environment"
    for datastream in thing["Datastreams"]:
        assert {"name", "description", "observationType", "unitOfMeasurement", "Sensor",
                "ObservedProperty", "properties"} <= set(datastream)
        assert datastream["observationType"] == OM_MEASUREMENT
        assert datastream["Sensor"] == {"@iot.id": "<sensor:Plantower PMS5003>"}
        assert datastream["ObservedProperty"] == {"@iot.id": "<observedProperty:pm25>"}
    names = [d["name"] for d in thing["Datastreams"]]
    assert len(set(names)) == len(names)
    json.dumps(export, allow_nan=False)  # ready to POST: plain JSON


def test_export_has_every_declared_stream_and_statistic_with_units() -> None:
    export = datastream_export(MANIFEST, base={})
    declared = {(s["id"], st_["name"], stat) for s in MANIFEST["sensors"]
                for st_ in s["streams"] for stat in st_["statistics"]}
    exported = {(d["properties"]["edgeagent:sensor"], d["properties"]["edgeagent:stream"],
                 d["properties"]["edgeagent:statistic"]) for d in export["thing"]["Datastreams"]}
    assert exported == declared
    assert {parse_key(k) for k in export["mapping"]} == declared
    assert set(export["mapping"]) == {"pm-north/pm25", "pm-north/pm25:min", "pm-north/pm25:max",
                                      "pm-north/pm25:stddev"}
    for datastream in export["thing"]["Datastreams"]:
        assert datastream["unitOfMeasurement"] == {
            "name": "microgram per cubic metre", "symbol": "ug/m3",
            "definition": "http://qudt.org/vocab/unit/MicroGM-PER-M3"}
        assert datastream["properties"]["edgeagent:key"] in export["mapping"]


def test_export_mapping_has_placeholders_the_encoder_refuses_then_accepts_real_ids() -> None:
    export = datastream_export(MANIFEST, base={})
    assert all(v.startswith(PLACEHOLDER_PREFIX) for v in export["mapping"].values())
    with pytest.raises(ValueError, match="placeholder"):
        SensorThingsEncoder(export["mapping"])
    # The platform creates the entities and puts the assigned ids in the config.
    assigned = {key: 100 + i for i, key in enumerate(sorted(export["mapping"]))}
    result = encode(EXAMPLE, assigned)
    assert sorted(o["parameters"]["statistic"] for _, o in result) == [
        "max", "mean", "min", "stddev"]


def test_export_inline_is_one_self_contained_post() -> None:
    export = datastream_export(MANIFEST, base={}, inline=True)
    assert export["sensors"] == {} and export["observedProperties"] == {}
    for datastream in export["thing"]["Datastreams"]:
        assert datastream["Sensor"]["name"] == "Plantower PMS5003"
        assert datastream["ObservedProperty"]["name"] == "PM2.5"
    assert PLACEHOLDER_PREFIX + "sensor" not in json.dumps(export["thing"])


def test_export_several_sensors_share_models_and_properties() -> None:
    manifest = copy.deepcopy(MANIFEST)
    south = copy.deepcopy(manifest["sensors"][0])
    south["id"] = "pm-south"
    noise = {"id": "mic", "driver": "microphone", "model": "Generic I2S microphone",
             "simulated": False, "window_s": 60, "duty_cycle": None, "humidity": None,
             "streams": [{"name": "laeq", "description": "LAeq", "unit": "dB",
                          "quantity": "noise", "kind": "energetic",
                          "statistics": ["mean", "max"], "k": None},
                         {"name": "people", "description": "people passing", "unit": "count",
                          "quantity": "people_count", "kind": "counter",
                          "statistics": ["sum"], "k": 5}]}
    manifest["sensors"] += [south, noise]
    export = datastream_export(manifest, base={})
    assert len(export["sensors"]) == 2
    assert set(export["observedProperties"]) == {"<observedProperty:pm25>",
                                                 "<observedProperty:laeq>",
                                                 "<observedProperty:people>"}
    assert len(export["thing"]["Datastreams"]) == 4 + 4 + 2 + 1
    by_key = {d["properties"]["edgeagent:key"]: d for d in export["thing"]["Datastreams"]}
    assert "energy mean (Leq)" in by_key["mic/laeq"]["description"]
    assert by_key["mic/people:sum"]["unitOfMeasurement"]["symbol"] == "{count}"
    assert by_key["mic/laeq"]["unitOfMeasurement"]["symbol"] == "dB"


def test_export_base_fields_and_no_site() -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["site"] = None
    export = datastream_export(manifest, base={
        "thing": {"properties": {"theme": ["Air"]}},
        "datastream": {"properties": {"isOpenData": True}}})
    assert "Locations" not in export["thing"]
    assert export["thing"]["properties"]["theme"] == ["Air"]
    assert export["thing"]["properties"]["edgeagent:gateway"] == "ams-oost-lp0412"
    for datastream in export["thing"]["Datastreams"]:
        assert datastream["properties"]["isOpenData"] is True
        assert "edgeagent:key" in datastream["properties"]
    with pytest.raises(ValueError, match="unknown keys"):
        datastream_export(MANIFEST, base={"things": {}})


def test_export_refuses_to_guess_a_unit() -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["sensors"][0]["streams"][0]["unit"] = "furlong"
    with pytest.raises(ValueError, match="furlong"):
        datastream_export(manifest, base={})


# --- property: nothing null or suppressed ever becomes a result --------------------------

_values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.integers(-5, 500))


@st.composite
def streams(draw: st.DrawFn) -> dict[str, Any]:
    stream: dict[str, Any] = {"unit": "ug/m3", "quantity": "particulate",
                              "n": draw(st.integers(0, 600))}
    for statistic in draw(st.sets(st.sampled_from(STATISTICS))):
        stream[statistic] = draw(_values)
    suppressed = draw(st.sampled_from([None, False, True]))
    if suppressed is not None:
        stream["suppressed"] = suppressed
    if suppressed:
        stream["suppressed_reason"] = "below_k"
        if draw(st.booleans()):  # a gate that behaves: every statistic null
            stream.update({s: None for s in STATISTICS if s in stream})
    return stream


@settings(max_examples=500, deadline=None)
@given(values=st.dictionaries(st.sampled_from(["pm25", "pm10", "people", "laeq"]), streams(),
                              max_size=4),
       mapped=st.sets(st.tuples(st.sampled_from(["pm25", "pm10", "people", "laeq"]),
                                st.sampled_from(STATISTICS))))
def test_no_observation_carries_a_null_or_suppressed_value(
        values: dict[str, Any], mapped: set[tuple[str, str]]) -> None:
    mapping = {f"pm-north/{s}:{stat}": i for i, (s, stat) in enumerate(sorted(mapped))}
    body = with_values(values)
    result = encode(body, mapping)
    sent = {(o["parameters"]["stream"], o["parameters"]["statistic"]) for _, o in result}
    assert len(sent) == len(result)
    for _, observation in result:
        stream = values[observation["parameters"]["stream"]]
        value = stream[observation["parameters"]["statistic"]]
        assert stream.get("suppressed", False) is False
        assert value is not None and observation["result"] == value
    # And everything mapped and published is sent.
    expected = {(s, stat) for s, stat in mapped if s in values
                and values[s].get("suppressed", False) is False
                and values[s].get(stat) is not None}
    assert sent == expected
