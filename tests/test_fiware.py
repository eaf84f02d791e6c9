"""FIWARE encoder: native data messages → Smart Data Models entities in NGSI-LD normalized form.

Every entity produced here is checked three ways, offline:

- its NGSI-LD normalized structure against ``NORMALIZED`` below (Property / GeoProperty /
  Relationship, ``observedAt``, ``unitCode``);
- its key-values projection against the official Smart Data Models JSON Schema of its type,
  vendored in ``tests/fiware_schemas/`` with the common schema their ``$ref``s point to (a
  ``referencing`` registry serves them; any other URI fails instead of being fetched);
- its attribute names against the models' attribute lists (``sdm-attributes.json``, from the
  pysmartdatamodels wheel), so no attribute is invented.
"""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

from edgeagent.contract import problems
from edgeagent.encoders import Encoded, Encoder
from edgeagent.encoders.fiware import (
    AIR_QUALITY,
    CROWD_FLOW,
    ENVIRONMENT_CONTEXT,
    MAPPINGS,
    NGSI_LD_CORE_CONTEXT,
    NOISE_LEVEL,
    TRANSPORTATION_CONTEXT,
    FiwareEncoder,
)

HERE = Path(__file__).resolve().parent
VENDORED = HERE / "fiware_schemas"
EXAMPLES = HERE / "contract_examples"
MODELS = (AIR_QUALITY, NOISE_LEVEL, CROWD_FLOW)
SITE = {"name": "Oosterpark noord", "lat": 52.3595, "lon": 4.918, "height_m": 4.5}
GATEWAY = "ams-oost-lp0412"
STORE = "3f2a9c4e8b7d4e1f9a6b5c4d3e2f1a0b"

# --- offline schema machinery ---------------------------------------------------------------

FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value)  # raises for e.g. month 13
    return True


def _offline(uri: str) -> Resource:
    raise NoSuchResource(ref=uri)  # never fetch: every $ref must be vendored


@cache
def registry() -> Registry:
    common = Resource.from_contents(json.loads((VENDORED / "common-schema.json").read_text()),
                                    default_specification=DRAFT202012)
    return Registry(retrieve=_offline).with_resource(common.id(), common)


@cache
def model_validator(model: str) -> Draft202012Validator:
    schema = json.loads((VENDORED / f"{model}.schema.json").read_text())
    return Draft202012Validator(schema, registry=registry(), format_checker=FORMATS)


@cache
def sdm_attributes() -> dict[str, Any]:
    return json.loads((VENDORED / "sdm-attributes.json").read_text())["models"]


TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"
NORMALIZED = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "NGSI-LD entity, normalized form (the subset this encoder produces)",
    "type": "object",
    "required": ["id", "type", "@context"],
    "properties": {
        "id": {"type": "string",
               "pattern": r"^urn:ngsi-ld:[A-Za-z]+:[a-z0-9][a-z0-9_-]*:[a-z0-9][a-z0-9_-]*$"},
        "type": {"enum": list(MODELS)},
        "@context": {"type": "array", "minItems": 1, "uniqueItems": True,
                     "items": {"type": "string", "pattern": "^https://"}},
        "location": {"$ref": "#/$defs/geoProperty"},
        "refDevice": {"$ref": "#/$defs/relationship"},
    },
    "additionalProperties": {"$ref": "#/$defs/property"},
    "$defs": {
        "property": {
            "type": "object", "additionalProperties": False,
            "required": ["type", "value", "observedAt"],
            "properties": {
                "type": {"const": "Property"},
                "value": {"anyOf": [{"type": ["number", "string", "boolean"]},
                                    {"$ref": "#/$defs/dateTime"}]},
                "observedAt": {"type": "string", "pattern": TIMESTAMP},
                "unitCode": {"type": "string", "pattern": "^[A-Z0-9]{2,3}$"},
            },
        },
        "dateTime": {
            "type": "object", "additionalProperties": False, "required": ["@type", "@value"],
            "properties": {"@type": {"const": "DateTime"},
                           "@value": {"type": "string", "pattern": TIMESTAMP}},
        },
        "geoProperty": {
            "type": "object", "additionalProperties": False, "required": ["type", "value"],
            "properties": {
                "type": {"const": "GeoProperty"},
                "value": {"type": "object", "additionalProperties": False,
                          "required": ["type", "coordinates"],
                          "properties": {"type": {"const": "Point"},
                                         "coordinates": {"type": "array", "minItems": 2,
                                                         "maxItems": 2,
                                                         "items": {"type": "number"}}}},
            },
        },
        "relationship": {
            "type": "object", "additionalProperties": False, "required": ["type", "object"],
            "properties": {"type": {"const": "Relationship"},
                           "object": {"type": "string", "pattern": "^urn:ngsi-ld:"}},
        },
    },
}
NORMALIZED_VALIDATOR = Draft202012Validator(NORMALIZED)


def key_values(entity: dict[str, Any]) -> dict[str, Any]:
    """The key-values projection the Smart Data Models schemas describe."""
    out: dict[str, Any] = {}
    for name, attr in entity.items():
        if name == "@context":
            continue
        if name in ("id", "type"):
            out[name] = attr
        elif attr["type"] == "Relationship":
            out[name] = attr["object"]
        else:
            value = attr["value"]
            out[name] = value["@value"] if isinstance(value, dict) and "@value" in value else value
    return out


def errors(validator: Draft202012Validator, document: Any) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}"
                  for e in validator.iter_errors(document))


def check_entity(entity: dict[str, Any], *, with_location: bool = True) -> None:
    """Normalized structure, model schema (key-values) and attribute names."""
    assert errors(NORMALIZED_VALIDATOR, entity) == []
    model = entity["type"]
    found = errors(model_validator(model), key_values(entity))
    if with_location or model == CROWD_FLOW:
        assert found == []
    else:  # AirQualityObserved and NoiseLevelObserved require location
        assert found == ["(root): 'location' is a required property"]
    documented = set(sdm_attributes()[model]["attributes"]) | EXTENSIONS.get(model, set())
    assert set(entity) - {"@context"} <= documented


#: Attributes used beyond a model's own list: AirQualityObserved has only dateObserved, so the
#: window start would be lost; its sibling NoiseLevelObserved (same subject, same @context
#: terms) defines dateObservedFrom / dateObservedTo, and the encoder borrows them.
EXTENSIONS = {AIR_QUALITY: {"dateObservedFrom", "dateObservedTo"}}


def test_extensions_are_sibling_model_attributes() -> None:
    noise = sdm_attributes()[NOISE_LEVEL]["attributes"]
    for model, names in EXTENSIONS.items():
        assert names.isdisjoint(sdm_attributes()[model]["attributes"])
        assert names <= set(noise)


# --- native messages ------------------------------------------------------------------------

def window(start: str = "2026-01-01T10:00:00Z", end: str = "2026-01-01T10:01:00Z",
           seconds: float = 60, *, partial: bool = False, clock: str = "synced") -> dict[str, Any]:
    return {"start": start, "end": end, "seconds": seconds, "clock": clock, "partial": partial}


def message(sensor: str, values: dict[str, Any], *, driver: str = "simulated",
            model: str = "Simulated sensor", win: dict[str, Any] | None = None,
            simulated: bool = False, corrections: list[dict[str, Any]] | None = None,
            **extra: Any) -> dict[str, Any]:
    body = {"seq": 7, "store": STORE, "gateway": GATEWAY, "sensor": sensor, "driver": driver,
            "model": model, "simulated": simulated, "window": win or window(), "coverage": 0.98,
            "errors": 0, "values": values, "corrections": corrections or [], **extra}
    assert problems("data", body) == [], "synthetic body must be a valid native message"
    return body


def stream(unit: str, quantity: str, n: int = 60, **stats: Any) -> dict[str, Any]:
    return {"unit": unit, "quantity": quantity, "n": n, **stats}


def pm(mean: float, **more: Any) -> dict[str, Any]:
    return stream("ug/m3", "particulate", mean=mean, min=mean - 1, max=mean + 2, stddev=0.8,
                  **more)


def climate(unit: str, mean: float) -> dict[str, Any]:
    return stream(unit, "climate", mean=mean, min=mean - 0.5, max=mean + 0.5, stddev=0.2)


def people(total: int | None, *, k: int = 5, reason: str | None = None) -> dict[str, Any]:
    if reason:
        return stream("count", "people_count", sum=None, suppressed=True, k=k,
                      suppressed_reason=reason)
    return stream("count", "people_count", sum=float(total), suppressed=False, k=k)


def suppressed(unit: str, quantity: str, *stats: str) -> dict[str, Any]:
    return stream(unit, quantity, suppressed=True, suppressed_reason="short_window",
                  **dict.fromkeys(stats))


PMS5003 = message("pm-north", {
    "pm1": pm(5.1), "pm25": pm(8.12, flags=["high_humidity"]), "pm10": pm(11.3),
    "n0_3": stream("/cm3", "particulate", mean=812.0, min=700.0, max=900.0, stddev=40.0),
    "temperature": climate("Cel", 4.25), "relativeHumidity": climate("%RH", 96.4),
}, driver="pms5003", model="Plantower PMS5003T")
SEN55 = message("pm-sen55", {
    "pm1": pm(3.0), "pm25": pm(4.5), "pm4": pm(5.25), "pm10": pm(6.0),
    "relativeHumidity": climate("%RH", 63.4), "temperature": climate("Cel", 18.31),
    "vocIndex": climate("1", 101.0), "noxIndex": climate("1", 1.0),
}, driver="sen5x", model="Sensirion SEN55")
BME280 = message("climate", {
    "temperature": climate("Cel", 21.5), "relativeHumidity": climate("%RH", 45.0),
    "pressure": climate("hPa", 1013.25),
}, driver="bme280", model="Bosch BME280")
MICROPHONE = message("mic-1", {
    "laeq": stream("dB", "noise", mean=57.3), "lceq": stream("dB", "noise", mean=66.0),
    "laf": stream("dB", "noise", n=480, l10=61.2, l50=55.0, l90=49.8),
    "lafmax": stream("dB", "noise", n=480, max=78.4),
    "lafmin": stream("dB", "noise", n=480, min=45.1),
    "lasmax": stream("dB", "noise", max=72.9),
}, driver="microphone", model="INMP441 MEMS microphone",
    calibration={"state": "datasheet", "date": None, "offset_db": 120.0, "reference_db": None})
PCB_DECIBEL = message("db-1", {
    "laeq": stream("dB", "noise", n=480, mean=60.2, min=48.0, max=81.0, l10=64.0, l50=58.0,
                   l90=51.0),
}, driver="pcb_decibel", model="PCB Artists I2C decibel meter")
COUNTER = message("gate-a", {"people": people(12)}, win=window(
    "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z", 300))
COUNTER_BELOW_K = message("gate-a", {"people": people(None, reason="below_k")}, win=window(
    "2026-01-01T10:05:00Z", "2026-01-01T10:10:00Z", 300))
COUNTER_SHORT = message("gate-a", {"people": people(None, reason="short_window")}, win=window(
    "2026-01-01T10:10:00Z", "2026-01-01T10:11:30Z", 300, partial=True))
PARTIAL_PM = message("pm-north", {
    "pm25": suppressed("ug/m3", "particulate", "mean", "min", "max", "stddev"),
    "pm10": suppressed("ug/m3", "particulate", "mean", "min", "max", "stddev"),
}, win=window("2026-01-01T10:00:37Z", "2026-01-01T10:01:00Z", 60, partial=True))
PARTIAL_NOISE = message("mic-1", {
    "laeq": stream("dB", "noise", n=150, mean=55.0),
    "lafmax": stream("dB", "noise", n=1200, max=70.0),
}, win=window("2026-01-01T10:00:00Z", "2026-01-01T10:02:30Z", 300, partial=True))
CORRECTED = message("pm-north", {
    "pm25": pm(30.0), "relativeHumidity": climate("%RH", 88.0),
}, corrections=[{"stream": "pm25", "method": "kappa-koehler", "reference": "Crilley 2018",
                 "parameters": {"kappa": 0.62, "rh_max": 95.0, "density_ratio": 1.65},
                 "rh_max": 95.0, "humidity": {"sensor": "pm-north", "stream": "relativeHumidity"},
                 "unit": "ug/m3", "n": 55, "mean": 21.7, "min": 19.9, "max": 23.3,
                 "stddev": 0.9}])
SIMULATED_UNSYNCED = message("sim", {"pm25": pm(9.0)}, simulated=True,
                             win=window(clock="unsynced"))
EMPTY = message("pm-north", {"pm25": stream("ug/m3", "particulate", n=0),
                             "typical_size": stream("um", "particulate", mean=0.6)})


def contract_example() -> dict[str, Any]:
    return json.loads((EXAMPLES / "data.json").read_text())


def manifest_site() -> dict[str, Any]:
    return json.loads((EXAMPLES / "manifest.json").read_text())["site"]


DIRECTIONS = message("door-1", {
    "peopleIn": people(14), "peopleOut": people(9),
    "occupancy": stream("count", "people_count", n=3000, mean=1.4, max=6.0, k=5),
}, driver="amg8833", model="Panasonic AMG8833", win=window(
    "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z", 300))
DIRECTION_BELOW_K = message("door-1", {"peopleIn": people(14),
                                       "peopleOut": people(None, reason="below_k")},
                            driver="amg8833", model="Panasonic AMG8833", win=window(
    "2026-01-01T10:05:00Z", "2026-01-01T10:10:00Z", 300))
PRESENCE = message("radar-1", {
    "presence": stream("%", "presence", n=300, mean=37.5),
    "motion": stream("%", "presence", n=300, mean=12.0),
}, driver="ld2410", model="Hi-Link LD2410", win=window(
    "2026-01-01T10:00:00Z", "2026-01-01T10:05:00Z", 300))
SAMPLES = {"contract": contract_example(), "directions": DIRECTIONS,
           "direction_below_k": DIRECTION_BELOW_K, "presence": PRESENCE, "pms5003": PMS5003,
           "sen55": SEN55, "bme280": BME280,
           "microphone": MICROPHONE, "pcb_decibel": PCB_DECIBEL, "counter": COUNTER,
           "counter_below_k": COUNTER_BELOW_K, "counter_short": COUNTER_SHORT,
           "partial_pm": PARTIAL_PM, "partial_noise": PARTIAL_NOISE, "corrected": CORRECTED,
           "simulated_unsynced": SIMULATED_UNSYNCED}


def encode(body: dict[str, Any], encoder: FiwareEncoder | None = None) -> list[dict[str, Any]]:
    encoder = encoder or FiwareEncoder(site=SITE)
    out = encoder.encode(f"data/{body['sensor']}", body)
    assert all(isinstance(e, Encoded) and e.topic == f"data/{body['sensor']}" for e in out)
    return [json.loads(e.payload) for e in out]


def by_type(body: dict[str, Any], **kwargs: Any) -> dict[str, dict[str, Any]]:
    entities = encode(body, FiwareEncoder(**({"site": SITE} | kwargs)))
    assert len({e["type"] for e in entities}) == len(entities)
    return {e["type"]: e for e in entities}


def value(entity: dict[str, Any], name: str) -> Any:
    return entity[name]["value"]


# --- schema validation ----------------------------------------------------------------------

def test_vendored_schemas_are_the_models_and_resolve_offline() -> None:
    for model in MODELS:
        schema = json.loads((VENDORED / f"{model}.schema.json").read_text())
        assert schema["$id"].endswith(f"/{model}/schema.json")
        assert model_validator(model).is_valid({"id": "x"}) is False  # refs resolve
    with pytest.raises(NoSuchResource):
        registry().get_or_retrieve("https://example.org/not-vendored.json")
    # airQualityLevel points at Environment-schema.json, which is not vendored (never encoded):
    # reaching it fails instead of downloading it
    with pytest.raises(Unresolvable, match=r"Environment-schema\.json"):
        list(model_validator(AIR_QUALITY).iter_errors({"airQualityLevel": "good"}))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_entity_validates(name: str) -> None:
    entities = encode(SAMPLES[name])
    assert entities
    for entity in entities:
        check_entity(entity)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_without_site_only_the_location_is_missing(name: str) -> None:
    for entity in encode(SAMPLES[name], FiwareEncoder()):
        assert "location" not in entity
        check_entity(entity, with_location=False)


def test_schema_rejects_a_percentage_humidity() -> None:
    """The check has teeth: relativeHumidity 63.4 (percent) is not valid in the model."""
    entity = by_type(SEN55)[AIR_QUALITY]
    bad = copy.deepcopy(entity)
    bad["relativeHumidity"]["value"] = 63.4
    assert errors(model_validator(AIR_QUALITY), key_values(bad)) == [
        "relativeHumidity: 63.4 is greater than the maximum of 1"]


# --- the contract example -------------------------------------------------------------------

def test_contract_example_gives_one_entity_per_model() -> None:
    entities = by_type(contract_example(), site=manifest_site(), ref_device=True)
    assert list(entities) == [AIR_QUALITY, NOISE_LEVEL, CROWD_FLOW]
    air, noise, crowd = entities.values()
    assert air["id"] == "urn:ngsi-ld:AirQualityObserved:ams-oost-lp0412:pm-north"
    assert noise["id"] == "urn:ngsi-ld:NoiseLevelObserved:ams-oost-lp0412:pm-north"
    assert crowd["id"] == "urn:ngsi-ld:CrowdFlowObserved:ams-oost-lp0412:pm-north"
    assert air["pm25"] == {"type": "Property", "value": 8.12, "unitCode": "GQ",
                           "observedAt": "2026-01-01T10:01:00Z"}
    assert value(noise, "LAeq") == 55.1
    assert value(noise, "LAmax") == 71.3  # no lafmax stream: the laeq maximum
    assert "peopleCount" not in crowd
    assert value(crowd, "description") == (
        "peopleCount withheld by the privacy gate (below_k): fewer than 5 in this window")
    assert "refDevice" not in crowd  # CrowdFlowObserved has no refDevice attribute
    for entity in entities.values():
        assert entity["location"] == {"type": "GeoProperty",
                                      "value": {"type": "Point", "coordinates": [4.918, 52.3595]}}
        if entity is not crowd:
            assert entity["refDevice"] == {
                "type": "Relationship", "object": "urn:ngsi-ld:Device:ams-oost-lp0412:pm-north"}
        assert entity["dateObservedFrom"]["value"] == {"@type": "DateTime",
                                                       "@value": "2026-01-01T10:00:00Z"}
        assert entity["dateObservedTo"]["value"] == {"@type": "DateTime",
                                                     "@value": "2026-01-01T10:01:00Z"}
        check_entity(entity)


def test_contexts_are_the_models_urls() -> None:
    entities = by_type(contract_example())
    assert entities[AIR_QUALITY]["@context"] == [NGSI_LD_CORE_CONTEXT, ENVIRONMENT_CONTEXT]
    assert entities[NOISE_LEVEL]["@context"] == [NGSI_LD_CORE_CONTEXT, ENVIRONMENT_CONTEXT]
    assert entities[CROWD_FLOW]["@context"] == [TRANSPORTATION_CONTEXT]
    for model in MODELS:  # the same URL the pysmartdatamodels metadata names for the model
        assert sdm_attributes()[model]["@context"] in by_type(contract_example())[model][
            "@context"]


# --- units ----------------------------------------------------------------------------------

UNIT_CODES = {"pm1": "GQ", "pm25": "GQ", "pm4": "GQ", "pm10": "GQ", "temperature": "CEL",
              "relativeHumidity": "C62", "pressure": "A97", "LAeq": "2N", "LAmax": "2N",
              "peopleCount": "IE", "occupancy": "C62"}


def test_unit_codes() -> None:
    seen: dict[str, str] = {}
    for body in SAMPLES.values():
        for entity in encode(body):
            for name, attr in entity.items():
                if isinstance(attr, dict) and "unitCode" in attr:
                    seen[name] = attr["unitCode"]
    assert seen == UNIT_CODES
    mapped = {m.attribute: m.unit_code for maps in MAPPINGS.values() for m in maps}
    assert mapped == UNIT_CODES


def test_only_measurements_carry_a_unit_code() -> None:
    for body in SAMPLES.values():
        for entity in encode(body):
            for name, attr in entity.items():
                if isinstance(attr, dict) and attr.get("type") == "Property":
                    assert ("unitCode" in attr) == (name in UNIT_CODES), name


@pytest.mark.parametrize(("percent", "fraction"), [(63.4, 0.634), (45.0, 0.45), (96.4, 0.964),
                                                   (0.0, 0.0), (100.0, 1.0), (100.4, 1.0),
                                                   (-0.3, 0.0), (55.37, 0.5537)])
def test_relative_humidity_is_a_fraction(percent: float, fraction: float) -> None:
    body = message("rh", {"relativeHumidity": climate("%RH", percent)})
    air = by_type(body)[AIR_QUALITY]
    assert value(air, "relativeHumidity") == fraction
    assert air["relativeHumidity"]["unitCode"] == "C62"
    check_entity(air)


def test_pm_sensor_with_climate_streams() -> None:
    air = by_type(PMS5003)[AIR_QUALITY]
    assert {n: value(air, n) for n in ("pm1", "pm25", "pm10", "temperature",
                                       "relativeHumidity")} == {
        "pm1": 5.1, "pm25": 8.12, "pm10": 11.3, "temperature": 4.25, "relativeHumidity": 0.964}
    assert "n0_3" not in json.dumps(air) and "812" not in json.dumps(air)  # no model attribute
    assert value(air, "description") == (
        "pm25: high_humidity flag (relative humidity above 95 %, optical PM sensors may "
        "read high)")


def test_sen55_pm4_and_no_voc_index() -> None:
    air = by_type(SEN55)[AIR_QUALITY]
    assert value(air, "pm4") == 5.25
    assert {"vocIndex", "noxIndex", "volatileOrganicCompoundsTotal", "no2",
            "nox"}.isdisjoint(air)


def test_pressure_in_hectopascal() -> None:
    air = by_type(BME280)[AIR_QUALITY]
    assert air["pressure"] == {"type": "Property", "value": 1013.25, "unitCode": "A97",
                               "observedAt": "2026-01-01T10:01:00Z"}
    pascal = message("climate", {"pressure": climate("Pa", 101325.0)})
    assert encode(pascal) == []  # a unit the mapping does not know is left out


# --- noise ----------------------------------------------------------------------------------

def test_microphone_streams() -> None:
    noise = by_type(MICROPHONE)[NOISE_LEVEL]
    assert value(noise, "LAeq") == 57.3
    assert value(noise, "LAmax") == 78.4  # LAFmax, not the Slow maximum
    assert {"LAS", "LAeq_d", "LCeq", "LAF10", "LA10", "LAFmin", "sonometerClass"}.isdisjoint(
        noise)
    text = json.dumps(noise)
    for leftover in ("66.0", "61.2", "55.0", "49.8", "45.1", "72.9"):
        assert leftover not in text
    assert noise["dateObserved"]["value"] == "2026-01-01T10:00:00Z/2026-01-01T10:01:00Z"


def test_decibel_meter_lamax_from_laeq_max() -> None:
    noise = by_type(PCB_DECIBEL)[NOISE_LEVEL]
    assert (value(noise, "LAeq"), value(noise, "LAmax")) == (60.2, 81.0)


def test_no_laeq_d_even_for_a_whole_day_window() -> None:
    day = message("mic-1", {"laeq": stream("dB", "noise", n=86400, mean=58.0)},
                  win=window("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 86400))
    noise = by_type(day)[NOISE_LEVEL]
    assert value(noise, "LAeq") == 58.0 and "LAeq_d" not in noise


def test_sonometer_class_only_when_configured() -> None:
    noise = by_type(MICROPHONE, sonometer_class={"mic-1": "2"})[NOISE_LEVEL]
    assert noise["sonometerClass"] == {"type": "Property", "value": "2",
                                       "observedAt": "2026-01-01T10:01:00Z"}
    check_entity(noise)
    assert "sonometerClass" not in by_type(PCB_DECIBEL, sonometer_class={"mic-1": "2"})[
        NOISE_LEVEL]
    with pytest.raises(ValueError, match="sonometer_class"):
        FiwareEncoder(sonometer_class={"mic-1": "3"})


# --- people counts and privacy --------------------------------------------------------------

def test_published_count() -> None:
    crowd = by_type(COUNTER)[CROWD_FLOW]
    assert crowd["peopleCount"] == {"type": "Property", "value": 12, "unitCode": "IE",
                                    "observedAt": "2026-01-01T10:05:00Z"}
    assert isinstance(value(crowd, "peopleCount"), int)
    assert value(crowd, "dateObserved") == {"@type": "DateTime",
                                            "@value": "2026-01-01T10:05:00Z"}
    assert "description" not in crowd


@pytest.mark.parametrize(("body", "why"), [
    (COUNTER_BELOW_K, "(below_k): fewer than 5 in this window"),
    (COUNTER_SHORT, "(short_window): the window is shorter than the policy's minimum")])
def test_suppressed_count_is_never_zero(body: dict[str, Any], why: str) -> None:
    crowd = by_type(body)[CROWD_FLOW]
    assert "peopleCount" not in crowd
    assert value(crowd, "description") == f"peopleCount withheld by the privacy gate {why}"
    numbers = list(numbers_in(crowd))
    assert numbers == [4.918, 52.3595]  # only the site's coordinates


def test_partial_window_bounds_and_short_window_suppression() -> None:
    air = by_type(PARTIAL_PM)[AIR_QUALITY]
    assert {"pm25", "pm10"}.isdisjoint(air)
    assert value(air, "dateObservedFrom")["@value"] == "2026-01-01T10:00:37Z"
    assert value(air, "description").count("withheld by the privacy gate (short_window)") == 2
    noise = by_type(PARTIAL_NOISE)[NOISE_LEVEL]
    assert (value(noise, "LAeq"), value(noise, "LAmax")) == (55.0, 70.0)
    assert value(noise, "dateObservedFrom")["@value"] == "2026-01-01T10:00:00Z"
    assert value(noise, "dateObservedTo")["@value"] == "2026-01-01T10:02:30Z"
    assert noise["LAeq"]["observedAt"] == "2026-01-01T10:02:30Z"


def test_corrections_are_not_encoded() -> None:
    air = by_type(CORRECTED)[AIR_QUALITY]
    assert value(air, "pm25") == 30.0  # the raw value, never the corrected one
    text = json.dumps(air)
    for corrected in ("21.7", "19.9", "23.3", "kappa"):
        assert corrected not in text


def test_simulated_and_unsynced_are_said() -> None:
    air = by_type(SIMULATED_UNSYNCED)[AIR_QUALITY]
    assert value(air, "description") == (
        "simulated: values invented by the edgeagent demo driver, not measurements; "
        "gateway clock unsynced: timestamps may be off")


def test_nothing_to_encode_gives_no_entity() -> None:
    assert encode(EMPTY) == []


def numbers_in(document: Any) -> list[float]:
    """Every number in a JSON document, depth first."""
    if isinstance(document, bool):
        return []
    if isinstance(document, int | float):
        return [document]
    if isinstance(document, dict):
        return [x for v in document.values() for x in numbers_in(v)]
    if isinstance(document, list):
        return [x for v in document for x in numbers_in(v)]
    return []


STAT = st.floats(min_value=0, max_value=500, allow_nan=False).map(lambda x: round(x, 1))


@st.composite
def gated_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A native message with a random mix of published, suppressed and empty streams."""
    values: dict[str, Any] = {}
    for name, unit, quantity, stats in (
            ("pm25", "ug/m3", "particulate", ("mean", "min", "max", "stddev")),
            ("pm10", "ug/m3", "particulate", ("mean", "min", "max", "stddev")),
            ("relativeHumidity", "%RH", "climate", ("mean", "min", "max", "stddev")),
            ("laeq", "dB", "noise", ("mean", "min", "max")),
            ("lafmax", "dB", "noise", ("max",)),
            ("people", "count", "people_count", ("sum",))):
        state = draw(st.sampled_from(["absent", "published", "suppressed", "empty"]))
        counter = quantity == "people_count"
        if state == "published":
            entry = stream(unit, quantity, **{s: draw(STAT) for s in stats})
            if counter:
                entry.update(sum=float(draw(st.integers(5, 400))), suppressed=False, k=5)
            values[name] = entry
        elif state == "suppressed":
            reason = draw(st.sampled_from(["below_k", "short_window"] if counter
                                          else ["short_window"]))
            entry = stream(unit, quantity, suppressed=True, suppressed_reason=reason,
                           **dict.fromkeys(stats))
            if counter:
                entry["k"] = 5
            values[name] = entry
        elif state == "empty":
            values[name] = stream(unit, quantity, n=0)
    return message("mixed", values, win=window(partial=draw(st.booleans())))


@settings(max_examples=300, deadline=None)
@given(gated_messages())
def test_no_number_where_the_native_message_had_none(body: dict[str, Any]) -> None:
    """Every number in the output is a coordinate or a published statistic (converted)."""
    allowed = set(SITE_COORDINATES)
    for name, entry in body["values"].items():
        if entry.get("suppressed"):
            continue
        for stat in ("mean", "max", "sum"):
            if isinstance(entry.get(stat), float):
                number = entry[stat]
                # %RH → fraction, cropped to 0..1 (an RH reading above 100 % becomes 1)
                allowed.add(min(number / 100, 1.0) if name == "relativeHumidity" else number)
    withheld = {name for name, entry in body["values"].items() if entry.get("suppressed")}
    for entity in encode(body):
        check_entity(entity)
        for number in numbers_in(entity):
            assert any(math.isclose(number, a, abs_tol=1e-9) for a in allowed), number
        attribute_streams = {"pm25": "pm25", "pm10": "pm10", "relativeHumidity":
                             "relativeHumidity", "LAeq": "laeq", "peopleCount": "people"}
        for attribute, source in attribute_streams.items():
            if source in withheld:
                assert attribute not in entity
        if "people" in withheld and entity["type"] == CROWD_FLOW:
            assert "peopleCount withheld" in value(entity, "description")


SITE_COORDINATES = (SITE["lon"], SITE["lat"])


# --- message types, topics, determinism -----------------------------------------------------

def test_is_an_encoder() -> None:
    encoder = FiwareEncoder()
    assert isinstance(encoder, Encoder) and encoder.name == "fiware"


@pytest.mark.parametrize("kind", ["events", "health", "manifest"])
def test_other_message_types_are_not_encoded(kind: str) -> None:
    body = json.loads((EXAMPLES / f"{kind}.json").read_text())
    assert FiwareEncoder(site=SITE).encode(kind, body) == []
    assert FiwareEncoder().encode("status", {}) == []


def test_deterministic_compact_json() -> None:
    encoder = FiwareEncoder(site=SITE, ref_device=True)
    for body in SAMPLES.values():
        first = encoder.encode(f"data/{body['sensor']}", body)
        again = FiwareEncoder(site=SITE, ref_device=True).encode(f"data/{body['sensor']}",
                                                                copy.deepcopy(body))
        assert first == again
        for item in first:
            canonical = json.dumps(json.loads(item.payload), sort_keys=True,
                                   separators=(",", ":")).encode()
            assert item.payload == canonical


def test_ids_are_stable_per_sensor_and_carry_no_hardware_id() -> None:
    first = by_type(COUNTER)[CROWD_FLOW]["id"]
    later = by_type(COUNTER_BELOW_K)[CROWD_FLOW]["id"]
    assert first == later == "urn:ngsi-ld:CrowdFlowObserved:ams-oost-lp0412:gate-a"
    serial = message("pm-north", {"pm25": pm(8.0)}, driver="sps30",
                     model="Sensirion SPS30 serial 8A3F2C1B")
    assert "8A3F2C1B" not in json.dumps(encode(serial))  # model (and any serial) not encoded


def test_suffix_must_name_the_sensor() -> None:
    with pytest.raises(ValueError, match="does not name"):
        FiwareEncoder().encode("data/other", COUNTER)
    bad = dict(COUNTER, gateway="Not A Name")
    with pytest.raises(ValueError, match="gateway"):
        FiwareEncoder().encode("data/gate-a", bad)


@pytest.mark.parametrize("site", [{"lat": 95.0, "lon": 4.9}, {"lat": "52.3", "lon": 4.9},
                                  {"lat": 52.3, "lon": 181.0}])
def test_site_must_be_wgs84(site: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="lat/lon"):
        FiwareEncoder(site=site)


def test_site_without_coordinates_gives_no_location() -> None:
    assert FiwareEncoder(site=None).location is None
    assert FiwareEncoder(site={"name": "somewhere"}).location is None


# --- counting lines and presence --------------------------------------------------------------

def test_both_directions_are_one_people_count() -> None:
    entity = by_type(DIRECTIONS)["CrowdFlowObserved"]
    assert value(entity, "peopleCount") == 23
    assert "occupancy" not in entity  # people at once is not the model's time fraction


def test_a_suppressed_direction_withholds_the_total() -> None:
    entity = by_type(DIRECTION_BELOW_K)["CrowdFlowObserved"]
    assert "peopleCount" not in entity
    assert "peopleCount withheld by the privacy gate (below_k)" in value(entity, "description")


def test_presence_share_is_the_models_occupancy_fraction() -> None:
    entity = by_type(PRESENCE)["CrowdFlowObserved"]
    assert value(entity, "occupancy") == 0.375
    assert "peopleCount" not in entity
