"""Home Assistant MQTT discovery: manifest → retained sensor config messages.

The templates are rendered with jinja2's ImmutableSandboxedEnvironment (the base of Home
Assistant's template environment) against real native data messages, with the variables
Home Assistant's MQTT integration provides (``value``, and ``value_json`` when the payload
parses as JSON), and the rendered text goes through the same state rules as Home Assistant's
MQTT sensor for a numeric entity: ``""`` is ignored (state kept), ``"None"`` is the unknown
state, anything else must be a number. Undefined variables raise here (StrictUndefined), so no
template depends on Home Assistant's "undefined renders as empty" behaviour.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jsonschema import Draft202012Validator, FormatChecker

from edgeagent.encoders.homeassistant import (
    SIMULATED_SUFFIX,
    UNKNOWN,
    attributes_template,
    discovery_messages,
    discovery_topics,
    removal_messages,
    supported,
    value_template,
)

EXAMPLES = Path(__file__).resolve().parent / "contract_examples"
MANIFEST: dict[str, Any] = json.loads((EXAMPLES / "manifest.json").read_text())
DATA: dict[str, Any] = json.loads((EXAMPLES / "data.json").read_text())
GATEWAY = MANIFEST["gateway"]
ROOT = MANIFEST["contract"]["topic_root"]

# --- Home Assistant facts the tests check against ------------------------------------------

#: Keys a sensor discovery payload may have: the configuration variables of the MQTT sensor
#: (https://www.home-assistant.io/integrations/sensor.mqtt/) plus the discovery-only ones
#: (``origin``, ``platform``; https://www.home-assistant.io/integrations/mqtt/#discovery-messages).
#: ``default_entity_id`` replaced ``object_id`` in Home Assistant 2025.10; ``object_id`` is
#: ignored from 2026.4 (the sensor's DISCOVERY_SCHEMA removes unknown keys, it does not reject).
SENSOR_KEYS = frozenset({
    "availability", "availability_mode", "availability_template", "availability_topic",
    "default_entity_id", "device", "device_class", "enabled_by_default", "encoding",
    "entity_category", "entity_picture", "expire_after", "force_update", "icon",
    "json_attributes_template", "json_attributes_topic", "last_reset_value_template", "name",
    "object_id", "options", "origin", "payload_available", "payload_not_available", "platform",
    "qos", "state_class", "state_topic", "suggested_display_precision", "unique_id",
    "unit_of_measurement", "value_template",
})
#: ``device`` keys (same page, "device" map; homeassistant/components/mqtt/schemas.py).
DEVICE_KEYS = frozenset({"configuration_url", "connections", "hw_version", "identifiers",
                         "manufacturer", "model", "model_id", "name", "serial_number",
                         "suggested_area", "sw_version", "via_device"})
#: ``origin`` keys (MQTT_ORIGIN_INFO_SCHEMA: name required, sw_version, support_url).
ORIGIN_KEYS = frozenset({"name", "sw_version", "support_url"})
#: Sensor device classes used here and the units Home Assistant accepts with them
#: (https://www.home-assistant.io/integrations/sensor/#device-class). Since 2025.7 a discovery
#: message with a unit outside the list is rejected. µg/m³: U+00B5 (the constant before
#: 2025.9, translated to U+03BC by later releases) or U+03BC.
DEVICE_CLASS_UNITS = {
    "pm1": {"\u00b5g/m³", "\u03bcg/m³"},
    "pm25": {"\u00b5g/m³", "\u03bcg/m³"},
    "pm10": {"\u00b5g/m³", "\u03bcg/m³"},
    "temperature": {"°C", "°F", "K"},
    "humidity": {"%"},
    "atmospheric_pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
    "sound_pressure": {"dB", "dBA"},
}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}

ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined)


def render(template: str, payload: bytes | str) -> str:
    """What Home Assistant's MqttValueTemplate renders for a received payload."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    variables: dict[str, Any] = {"value": text}
    with contextlib.suppress(ValueError):  # value_json only exists for a JSON payload
        variables["value_json"] = json.loads(text)
    return ENV.from_string(template).render(**variables)


def ha_state(template: str, payload: bytes | str, previous: float | None = None) -> float | None:
    """The state of a numeric MQTT sensor after the payload; None is Home Assistant's unknown."""
    rendered = render(template, payload)
    if rendered == "":
        return previous  # Home Assistant ignores an empty state: the old value would stay
    if rendered == UNKNOWN:
        return None
    return float(rendered)  # a numeric sensor refuses anything else


def ha_attributes(template: str, payload: bytes | str) -> dict[str, Any]:
    attributes = json.loads(render(template, payload))
    assert isinstance(attributes, dict)
    return attributes


# --- manifests and messages ----------------------------------------------------------------

def stream(name: str, unit: str, quantity: str, kind: str, statistics: list[str],
           k: int | None = None, description: str = "") -> dict[str, Any]:
    return {"name": name, "description": description, "unit": unit, "quantity": quantity,
            "kind": kind, "statistics": statistics, "k": k}


def sensor(sensor_id: str, streams: list[dict[str, Any]], *, model: str = "Plantower PMS5003",
           driver: str = "pms5003", window_s: float = 60, simulated: bool = False,
           duty_cycle: dict[str, float] | None = None) -> dict[str, Any]:
    return {"id": sensor_id, "driver": driver, "model": model, "simulated": simulated,
            "window_s": window_s, "streams": streams, "duty_cycle": duty_cycle,
            "humidity": None}


def manifest(sensors: list[dict[str, Any]], *, gateway: str = GATEWAY,
             fmt: str = "native") -> dict[str, Any]:
    body = copy.deepcopy(MANIFEST)
    body["gateway"] = gateway
    body["contract"]["format"] = fmt
    body["contract"]["topic_root"] = f"edgeagent/v1/{gateway}"
    body["privacy"]["classes"].update({
        "climate": {"min_window_s": 60, "statistics": ["mean", "min", "max", "stddev"],
                    "k": None, "decimals": 1},
        "noise": {"min_window_s": 60, "statistics": ["mean", "min", "max", "l10", "l50", "l90"],
                  "k": None, "decimals": 1},
        "presence": {"min_window_s": 60, "statistics": ["mean", "sum"], "k": None,
                     "decimals": 0},
    })
    body["sensors"] = sensors
    return body


PM = MANIFEST["sensors"][0]
CLIMATE = sensor("climate", [
    stream("temperature", "Cel", "climate", "linear", ["mean", "stddev"]),
    stream("relativeHumidity", "%RH", "climate", "linear", ["mean"]),
    stream("pressure", "hPa", "climate", "linear", ["mean"]),
], model="Bosch BME280", driver="bme280")
NOISE = sensor("mic", [
    stream("laeq", "dB", "noise", "energetic", ["mean"]),
    stream("laf", "dB", "noise", "level", ["l10", "l50", "l90"]),
    stream("lafmax", "dB", "noise", "level", ["max"]),
], model="Generic I2S MEMS microphone", driver="microphone", window_s=60)
COUNTER = sensor("gate-a", [
    stream("peopleIn", "count", "people_count", "counter", ["sum"], k=5),
    stream("peopleOut", "count", "people_count", "counter", ["sum"], k=5),
    stream("occupancy", "count", "people_count", "occupancy", ["mean", "max"], k=5),
    stream("occupancy_bench", "count", "people_count", "occupancy", ["max"], k=5),
], model="HLK LD2450", driver="ld2450", window_s=300)
PRESENCE = sensor("pir-hall", [
    stream("motion", "%", "presence", "linear", ["mean"]),
    stream("motionEvents", "count", "presence", "counter", ["sum"]),
], model="PIR", driver="pir")
SPS = sensor("sps", [
    stream("pm4", "ug/m3", "particulate", "linear", ["mean"]),
    stream("n0_5", "/cm3", "particulate", "linear", ["mean"]),
    stream("typical_size", "um", "particulate", "linear", ["mean"]),
    stream("vocIndex", "1", "climate", "linear", ["mean"]),
    stream("silent", "ug/m3", "particulate", "linear", []),  # nothing allowed: no entity
], model="Sensirion SPS30", driver="sps30", duty_cycle={"period_s": 300, "measure_s": 60,
                                                        "warmup_s": 30})
DEMO = sensor("demo", [stream("pm25", "ug/m3", "particulate", "linear", ["mean"])],
              model="edgeagent simulated sensor", driver="simulated", simulated=True,
              window_s=0.5)
FULL = manifest([PM, CLIMATE, NOISE, COUNTER, PRESENCE, SPS, DEMO])


def configs(body: dict[str, Any], **kwargs: Any) -> dict[str, dict[str, Any]]:
    return {topic: json.loads(payload) for topic, payload in discovery_messages(body, **kwargs)}


def config_of(body: dict[str, Any], sensor_id: str, stream_name: str,
              stat: str) -> dict[str, Any]:
    topic = f"homeassistant/sensor/{body['gateway']}/{sensor_id}_{stream_name}_{stat}/config"
    return configs(body)[topic]


def data(values: dict[str, Any], *, sensor_id: str = "pm-north", **window: Any) -> bytes:
    body = copy.deepcopy(DATA)
    body["sensor"] = sensor_id
    body["values"] = values
    body["window"].update(window)
    return json.dumps(body).encode()


# --- topics, ids, payload form -------------------------------------------------------------

def test_example_manifest_topics() -> None:
    topics = [topic for topic, _ in discovery_messages(MANIFEST)]
    assert topics == [f"homeassistant/sensor/ams-oost-lp0412/pm-north_pm25_{stat}/config"
                      for stat in ("mean", "min", "max", "stddev")]


def test_pm25_mean_config() -> None:
    config = config_of(MANIFEST, "pm-north", "pm25", "mean")
    templates = {key: config.pop(key) for key in ("value_template", "json_attributes_template")}
    assert templates == {"value_template": value_template("pm25", "mean"),
                         "json_attributes_template": attributes_template("pm25")}
    assert config == {
        "name": "PM2.5 mean",
        "unique_id": "edgeagent_ams-oost-lp0412_pm-north_pm25_mean",
        "object_id": "ams-oost-lp0412_pm-north_pm25_mean",
        "default_entity_id": "sensor.ams_oost_lp0412_pm_north_pm25_mean",
        "state_topic": "edgeagent/v1/ams-oost-lp0412/data/pm-north",
        "json_attributes_topic": "edgeagent/v1/ams-oost-lp0412/data/pm-north",
        "availability_topic": "edgeagent/v1/ams-oost-lp0412/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "unit_of_measurement": "\u00b5g/m\u00b3",
        "device_class": "pm25",
        "state_class": "measurement",
        "expire_after": 180,
        "suggested_display_precision": 2,
        "device": {"identifiers": ["edgeagent_ams-oost-lp0412_pm-north"],
                   "name": "ams-oost-lp0412 pm-north", "manufacturer": "Plantower",
                   "model": "Plantower PMS5003", "sw_version": "0.1.0"},
        "origin": {"name": "edgeagent", "sw_version": "0.1.0"},
    }


def test_one_entity_per_published_statistic() -> None:
    expected = {(s["id"], st_["name"], stat) for s in FULL["sensors"] for st_ in s["streams"]
                for stat in st_["statistics"]}
    topics = discovery_topics(FULL)
    assert len(topics) == len(expected) == 25
    assert {tuple(t.split("/")[3].rsplit("_", 1)) for t in topics} == {
        (f"{s}_{n}", stat) for s, n, stat in expected}
    assert not any("_silent_" in topic for topic in topics)  # a stream with no statistics


def test_topic_structure_and_ids() -> None:
    for topic, config in configs(FULL, discovery_prefix="ha/bench").items():
        prefix, component, node_id, object_id, last = topic.rsplit("/", 4)
        assert (prefix, component, node_id, last) == ("ha/bench", "sensor", GATEWAY, "config")
        assert all(c.isalnum() or c in "_-" for c in object_id)
        assert config["unique_id"] == f"edgeagent_{GATEWAY}_{object_id}"
        assert config["object_id"] == f"{GATEWAY}_{object_id}"
        entity_id = config["default_entity_id"]
        assert entity_id.startswith("sensor.")
        assert all(c.islower() or c.isdigit() or c == "_" for c in entity_id[7:])
        assert "__" not in entity_id and not entity_id.endswith("_")


def test_unique_ids_are_unique_across_sensors_and_gateways() -> None:
    other = manifest(FULL["sensors"], gateway="utrecht-zuid-01")
    ids = [c["unique_id"] for body in (FULL, other) for c in configs(body).values()]
    entity_ids = [c["default_entity_id"] for body in (FULL, other) for c in configs(body).values()]
    assert len(ids) == len(set(ids)) == 50
    assert len(entity_ids) == len(set(entity_ids))


def test_compact_sorted_deterministic_json() -> None:
    first = discovery_messages(FULL)
    assert first == discovery_messages(copy.deepcopy(FULL))
    for _, payload in first:
        canonical = json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False).encode()
        assert payload == canonical


def test_only_documented_keys() -> None:
    for config in configs(FULL).values():
        assert set(config) <= SENSOR_KEYS
        assert set(config["device"]) <= DEVICE_KEYS
        assert set(config["origin"]) <= ORIGIN_KEYS and "name" in config["origin"]
        assert config["device"]["identifiers"]  # Home Assistant needs an identifying value


CONTRACT_SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "deploy" / "schemas"
     / "homeassistant-discovery.schema.json").read_text(encoding="utf-8"))
CONTRACT = Draft202012Validator(CONTRACT_SCHEMA, format_checker=FormatChecker())


def test_configs_validate_against_the_contract_schema() -> None:
    """deploy/schemas/homeassistant-discovery.schema.json (AsyncAPI homeAssistantDiscovery)."""
    no_model = sensor("bare", [stream("pm25", "ug/m3", "particulate", "linear", ["mean"])],
                      model="")
    sent: set[str] = set()
    for body in (MANIFEST, FULL, manifest([no_model])):
        for topic, config in configs(body, discovery_prefix="test/ha").items():
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                      for e in CONTRACT.iter_errors(config)]
            assert not errors, (topic, errors)
            assert topic.startswith(f"test/ha/sensor/{body['gateway']}/")
            assert topic.endswith("/config")
            sent |= set(config)
    assert sent == set(CONTRACT_SCHEMA["properties"])  # the schema lists nothing never sent
    assert not set(configs(manifest([no_model])).popitem()[1]["device"]) & {"model",
                                                                            "manufacturer"}


def test_contract_schema_rejects_a_key_edgeagent_never_sends() -> None:
    config = next(iter(configs(MANIFEST).values()))
    assert CONTRACT.is_valid(config)
    assert not CONTRACT.is_valid({**config, "icon": "mdi:air-filter"})
    assert not CONTRACT.is_valid({**config, "qos": 0})


def test_device_class_units_and_state_class_are_valid() -> None:
    for config in configs(FULL).values():
        assert config["state_class"] == "measurement"
        assert config["state_class"] in STATE_CLASSES
        if "device_class" in config:
            assert config["unit_of_measurement"] in DEVICE_CLASS_UNITS[config["device_class"]]
        assert isinstance(config["expire_after"], int) and config["expire_after"] > 0
        assert config["suggested_display_precision"] >= 0


@pytest.mark.parametrize(("where", "unit", "device_class"), [
    (("pm-north", "pm25", "mean"), "\u00b5g/m\u00b3", "pm25"),
    (("pm-north", "pm25", "stddev"), "\u00b5g/m\u00b3", None),  # a spread, not a PM reading
    (("climate", "temperature", "mean"), "\u00b0C", "temperature"),
    (("climate", "temperature", "stddev"), "\u00b0C", None),  # no °F conversion of a spread
    (("climate", "relativeHumidity", "mean"), "%", "humidity"),
    (("climate", "pressure", "mean"), "hPa", "atmospheric_pressure"),
    (("mic", "laeq", "mean"), "dB", "sound_pressure"),
    (("mic", "laf", "l90"), "dB", "sound_pressure"),
    (("gate-a", "peopleIn", "sum"), "people", None),
    (("gate-a", "occupancy_bench", "max"), "people", None),
    (("pir-hall", "motion", "mean"), "%", None),
    (("pir-hall", "motionEvents", "sum"), None, None),  # activations, not people
    (("sps", "pm4", "mean"), "\u00b5g/m\u00b3", None),  # pm4 is too new for older releases
    (("sps", "n0_5", "mean"), "1/cm\u00b3", None),
    (("sps", "typical_size", "mean"), "\u00b5m", None),
    (("sps", "vocIndex", "mean"), None, None),
])
def test_units_and_device_classes(where: tuple[str, str, str], unit: str | None,
                                  device_class: str | None) -> None:
    config = config_of(FULL, *where)
    assert config.get("unit_of_measurement") == unit
    assert config.get("device_class") == device_class


def test_counts_are_measurements_never_running_totals() -> None:
    for stat_config in (config_of(FULL, "gate-a", "peopleIn", "sum"),
                        config_of(FULL, "pir-hall", "motionEvents", "sum")):
        assert stat_config["state_class"] == "measurement"
    assert "total_increasing" not in json.dumps(configs(FULL))


@pytest.mark.parametrize(("where", "name"), [
    (("pm-north", "pm25", "mean"), "PM2.5 mean"),
    (("climate", "relativeHumidity", "mean"), "Relative humidity mean"),
    (("mic", "laeq", "mean"), "LAeq (A-weighted) energy mean"),
    (("mic", "laf", "l10"), "LAF (A-weighted, fast) L10"),
    (("gate-a", "peopleIn", "sum"), "People in window count"),
    (("gate-a", "occupancy_bench", "max"), "Occupancy bench max"),
    (("pir-hall", "motionEvents", "sum"), "Motion events window count"),
    (("demo", "pm25", "mean"), "PM2.5 mean" + SIMULATED_SUFFIX),
])
def test_names(where: tuple[str, str, str], name: str) -> None:
    assert config_of(FULL, *where)["name"] == name


def test_expire_after_is_three_windows() -> None:
    assert config_of(FULL, "pm-north", "pm25", "mean")["expire_after"] == 180
    assert config_of(FULL, "gate-a", "peopleIn", "sum")["expire_after"] == 900
    assert config_of(FULL, "demo", "pm25", "mean")["expire_after"] == 2  # 1.5 s rounded
    assert config_of(FULL, "sps", "pm4", "mean")["expire_after"] == 900  # duty-cycle period


def test_precision_comes_from_the_class_decimals() -> None:
    assert config_of(FULL, "pm-north", "pm25", "mean")["suggested_display_precision"] == 2
    assert config_of(FULL, "climate", "pressure", "mean")["suggested_display_precision"] == 1
    assert config_of(FULL, "pir-hall", "motion", "mean")["suggested_display_precision"] == 0


def test_device_per_sensor() -> None:
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs(FULL).values()}
    assert len(devices) == len(FULL["sensors"])  # every sensor has published statistics
    pir = config_of(FULL, "pir-hall", "motion", "mean")["device"]
    assert pir == {"identifiers": [f"edgeagent_{GATEWAY}_pir-hall"],
                   "name": f"{GATEWAY} pir-hall", "model": "PIR", "sw_version": "0.1.0"}
    assert config_of(FULL, "climate", "pressure", "mean")["device"]["manufacturer"] == "Bosch"


def test_invalid_input_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        discovery_messages(MANIFEST, discovery_prefix="homeassistant/")
    with pytest.raises(ValueError, match="prefix"):
        discovery_messages(MANIFEST, discovery_prefix="home/+")
    bad = copy.deepcopy(MANIFEST)
    bad["sensors"][0]["streams"][0]["name"] = "pm25') }}{{ 1"
    with pytest.raises(ValueError, match="stream name"):
        discovery_messages(bad)
    twice = manifest([PM, PM])
    with pytest.raises(ValueError, match="share"):
        discovery_messages(twice)


# --- value templates against native data messages ------------------------------------------

def template_of(where: tuple[str, str, str]) -> str:
    return config_of(FULL, *where)["value_template"]


def test_example_data_message_renders_the_values() -> None:
    payload = (EXAMPLES / "data.json").read_bytes()
    pm = {stat: ha_state(template_of(("pm-north", "pm25", stat)), payload)
          for stat in ("mean", "min", "max", "stddev")}
    assert pm == {"mean": 8.12, "min": 7.0, "max": 10.0, "stddev": 0.81}
    assert render(template_of(("pm-north", "pm25", "mean")), payload) == "8.12"
    assert ha_state(value_template("laeq", "mean"), payload) == 55.1


def test_suppressed_count_is_unknown_never_zero() -> None:
    payload = (EXAMPLES / "data.json").read_bytes()  # people: sum null, below_k, k 5
    template = value_template("people", "sum")
    assert render(template, payload) == UNKNOWN
    assert ha_state(template, payload, previous=12.0) is None  # not the old value, not 0


@pytest.mark.parametrize("reason", ["below_k", "short_window", "dp_budget"])
def test_every_suppression_reason_is_unknown(reason: str) -> None:
    values = {"peopleIn": {"unit": "count", "quantity": "people_count", "n": 300, "sum": None,
                           "suppressed": True, "suppressed_reason": reason, "k": 5},
              "occupancy": {"unit": "count", "quantity": "people_count", "n": 300,
                            "mean": None, "max": None, "suppressed": True,
                            "suppressed_reason": reason, "k": 5}}
    payload = data(values, sensor_id="gate-a")
    for where in (("gate-a", "peopleIn", "sum"), ("gate-a", "occupancy", "mean"),
                  ("gate-a", "occupancy", "max")):
        assert render(template_of(where), payload) == UNKNOWN


def test_short_window_pm_is_unknown() -> None:
    values = {"pm25": {"unit": "ug/m3", "quantity": "particulate", "n": 22, "mean": None,
                       "min": None, "max": None, "stddev": None, "suppressed": True,
                       "suppressed_reason": "short_window"}}
    payload = data(values, start="2026-01-01T10:00:37Z", partial=True)
    assert {render(template_of(("pm-north", "pm25", s)), payload)
            for s in ("mean", "min", "max", "stddev")} == {UNKNOWN}


@pytest.mark.parametrize("values", [
    {"pm25": {"unit": "ug/m3", "quantity": "particulate", "n": 0}},  # no valid sample
    {"pm25": {"unit": "ug/m3", "quantity": "particulate", "n": 59, "min": 7.0}},  # not sent
    {},  # stream absent
    {"pm25": {"unit": "ug/m3", "quantity": "particulate", "n": 59, "mean": "8.1"}},
    {"pm25": {"unit": "ug/m3", "quantity": "particulate", "n": 59, "mean": True}},
])
def test_absent_or_non_numeric_is_unknown(values: dict[str, Any]) -> None:
    assert render(template_of(("pm-north", "pm25", "mean")), data(values)) == UNKNOWN


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'{"values": [1]}',
                                     b'{"values": {"pm25": 3}}', b"null", b""])
def test_unexpected_payloads_are_unknown_not_errors(payload: bytes) -> None:
    assert render(template_of(("pm-north", "pm25", "mean")), payload) == UNKNOWN
    attributes = ha_attributes(config_of(FULL, "pm-north", "pm25", "mean")[
        "json_attributes_template"], payload)
    assert attributes["suppressed"] is False


def test_zero_count_published_renders_zero() -> None:
    values = {"motionEvents": {"unit": "count", "quantity": "presence", "n": 60, "sum": 0}}
    assert render(template_of(("pir-hall", "motionEvents", "sum")),
                  data(values, sensor_id="pir-hall")) == "0"


def test_dp_count_renders_the_released_noisy_value() -> None:
    values = {"peopleIn": {"unit": "count", "quantity": "people_count", "n": 300, "sum": 37,
                           "dp": {"epsilon": 0.1, "mechanism": "geometric"},
                           "suppressed": False}}
    assert ha_state(template_of(("gate-a", "peopleIn", "sum")),
                    data(values, sensor_id="gate-a")) == 37


# --- attributes ------------------------------------------------------------------------------

def test_attributes_of_a_suppressed_count() -> None:
    payload = (EXAMPLES / "data.json").read_bytes()
    assert ha_attributes(attributes_template("people"), payload) == {
        "window_start": "2026-01-01T10:00:00Z", "window_end": "2026-01-01T10:01:00Z",
        "coverage": 0.98, "suppressed": True, "suppressed_reason": "below_k", "k": 5}


def test_attributes_of_a_published_value_carry_nothing_else() -> None:
    payload = (EXAMPLES / "data.json").read_bytes()
    attributes = ha_attributes(config_of(FULL, "pm-north", "pm25", "mean")[
        "json_attributes_template"], payload)
    assert attributes == {"window_start": "2026-01-01T10:00:00Z",
                          "window_end": "2026-01-01T10:01:00Z", "coverage": 0.98,
                          "suppressed": False, "suppressed_reason": None, "k": None}
    text = json.dumps(attributes)
    for other in ("seq", "store", "errors", "driver", "model", "8.12", "3f2a9c4e"):
        assert other not in text


STAT = st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda x: round(x, 2))


@settings(max_examples=200, deadline=None)
@given(state=st.sampled_from(["published", "null", "absent_stat", "absent_stream", "n0"]),
       number=STAT, suppressed=st.booleans())
def test_template_shows_exactly_the_released_number(state: str, number: float,
                                                    suppressed: bool) -> None:
    entry: dict[str, Any] = {"unit": "count", "quantity": "people_count", "n": 300}
    if state == "published":
        entry.update(sum=number, suppressed=False)
    elif state == "null":
        entry.update(sum=None, suppressed=suppressed, k=5)
        if suppressed:
            entry["suppressed_reason"] = "below_k"
    elif state == "n0":
        entry["n"] = 0
    values = {} if state == "absent_stream" else {"peopleIn": entry}
    result = ha_state(template_of(("gate-a", "peopleIn", "sum")),
                      data(values, sensor_id="gate-a"), previous=-1.0)
    if state == "published":
        assert result is not None and math.isclose(result, number)
    else:
        assert result is None  # unknown: never the previous value, never 0


# --- removal and format ------------------------------------------------------------------

def test_removed_sensor_gets_empty_retained_payloads() -> None:
    before = manifest([PM, COUNTER])
    after = manifest([PM])
    removals = removal_messages(before, after)
    assert removals == [(t, b"") for t in discovery_topics(before) if "/gate-a_" in t]
    assert len(removals) == 5


def test_removed_statistic_and_renamed_gateway() -> None:
    fewer = copy.deepcopy(MANIFEST)
    fewer["sensors"][0]["streams"][0]["statistics"] = ["mean"]
    assert [t for t, _ in removal_messages(MANIFEST, fewer)] == [
        f"homeassistant/sensor/{GATEWAY}/pm-north_pm25_{s}/config"
        for s in ("min", "max", "stddev")]
    renamed = manifest([PM], gateway="ams-oost-lp0413")
    assert [t for t, _ in removal_messages(MANIFEST, renamed)] == discovery_topics(MANIFEST)


def test_nothing_to_remove() -> None:
    assert removal_messages(None, MANIFEST) == []
    assert removal_messages(MANIFEST, copy.deepcopy(MANIFEST)) == []
    assert removal_messages(manifest([PM]), manifest([PM, COUNTER])) == []


def test_removal_uses_the_given_prefix() -> None:
    removals = removal_messages(manifest([PM, DEMO]), manifest([PM]), discovery_prefix="bench")
    assert removals == [(f"bench/sensor/{GATEWAY}/demo_pm25_mean/config", b"")]


def test_native_is_supported() -> None:
    assert supported(MANIFEST) is None


@pytest.mark.parametrize("fmt", ["senml", "fiware", "sensorthings"])
def test_other_formats_are_refused_with_a_reason(fmt: str) -> None:
    body = manifest([PM], fmt=fmt)
    reason = supported(body)
    assert reason is not None and "native" in reason and fmt in reason
    with pytest.raises(ValueError, match="native"):
        discovery_messages(body)
    # removal still works: a gateway switched away from native can clear its old entities
    assert len(removal_messages(MANIFEST, manifest([], fmt=fmt))) == 4
