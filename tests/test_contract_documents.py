"""The machine-readable MQTT contract: JSON Schemas under deploy/schemas/ and deploy/asyncapi.yaml.

The example payloads live in tests/contract_examples/ so that encoder and publisher tests can
check real output against the same documents.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker, ValidationError

from edgeagent.encoders.homeassistant import discovery_messages
from edgeagent.encoders.sensorthings import SensorThingsEncoder

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SCHEMAS = DEPLOY / "schemas"
ASYNCAPI = DEPLOY / "asyncapi.yaml"
EXAMPLES = Path(__file__).resolve().parent / "contract_examples"

SCHEMA_NAMES = (
    "status",
    "data",
    "events",
    "health",
    "manifest",
    "senml",
    "sensorthings-observation",
    "homeassistant-discovery",
)
JSON_EXAMPLES = ("data", "events", "health", "manifest")
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
TOPIC_ROOT = "edgeagent/v1/{gatewayId}/"
#: The official JSON Schemas of the Smart Data Models the `dataFiware` message refers to, by
#: their `$id` (the same ids as the vendored copies in tests/fiware_schemas/). Never fetched.
FIWARE_SCHEMA_IDS = {
    "https://smart-data-models.github.io/dataModel.Environment/AirQualityObserved/schema.json",
    "https://smart-data-models.github.io/dataModel.Environment/NoiseLevelObserved/schema.json",
    "https://smart-data-models.github.io/dataModel.Transportation/CrowdFlowObserved/schema.json",
}

# jsonschema only asserts "date-time" when the optional rfc3339-validator package is installed;
# check it here without that dependency so a malformed timestamp fails on every machine.
FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.upper())  # raises ValueError for e.g. month 13
    return True


@cache
def _schema_text(name: str) -> str:
    return (SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    return json.loads(_schema_text(name))


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), format_checker=FORMATS)


def load_example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def errors(name: str, payload: object) -> list[str]:
    return [e.message for e in validator(name).iter_errors(payload)]


def load_asyncapi() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))


def resolve_pointer(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


# --- the schemas themselves ---------------------------------------------------------------


def test_every_schema_file_is_covered() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.json")) == sorted(
        f"{name}.schema.json" for name in SCHEMA_NAMES
    )


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT_2020_12
    assert schema["$id"] == f"urn:edgeagent:schema:{name}:1"
    assert schema["title"].strip()
    assert len(schema["description"]) > 80


def test_schema_ids_are_unique_and_use_no_domain() -> None:
    ids = [load_schema(name)["$id"] for name in SCHEMA_NAMES]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("urn:edgeagent:schema:") for i in ids)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_internal_refs_resolve(name: str) -> None:
    schema = load_schema(name)
    refs = [node["$ref"] for _, node in walk(schema) if isinstance(node, dict) and "$ref" in node]
    for ref in refs:
        assert isinstance(resolve_pointer(schema, ref), dict), ref


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_object_is_closed(name: str) -> None:
    """additionalProperties is false everywhere except the free-form event details."""
    open_objects = {"events": {"#/properties/details"}}.get(name, set())
    for path, node in walk(load_schema(name)):
        if not isinstance(node, dict) or any(k in path for k in ("/examples", "/enum", "/const")):
            continue
        if path.endswith(("/properties", "/patternProperties", "/$defs")):
            continue  # keys here are names, not keywords
        types = node.get("type")
        is_object = types == "object" or (isinstance(types, list) and "object" in types)
        if is_object and path not in open_objects:
            assert node.get("additionalProperties") is False, f"{name}: {path} is open"


# AsyncAPI 3.0 reads payload schemas with draft-07 semantics (AsyncAPI Schema format).
ONLY_2019_OR_LATER = {
    "prefixItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentRequired",
    "dependentSchemas",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "minContains",
    "maxContains",
    "contentSchema",
}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_reads_the_same_under_draft_07(name: str) -> None:
    schema = load_schema(name)
    for path, node in walk(schema):
        if not isinstance(node, dict) or "/examples" in path:
            continue
        if path.endswith(("/properties", "/patternProperties", "/$defs")):
            continue  # keys here are names, not keywords
        assert not ONLY_2019_OR_LATER & set(node), path
        if "$ref" in node:
            # draft-07 ignores keywords next to $ref: only annotations may stand there.
            assert set(node) <= {"$ref", "description", "title"}, path
    Draft7Validator.check_schema({k: v for k, v in schema.items() if k != "$schema"})


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_timestamps_are_utc_date_times(name: str) -> None:
    for path, node in walk(load_schema(name)):
        if isinstance(node, dict) and node.get("format") == "date-time":
            pattern = node.get("pattern", "")
            assert pattern.startswith("^") and pattern.endswith("Z$"), path
            assert re.fullmatch(pattern, "2026-01-01T10:00:00.250Z"), path
            assert not re.fullmatch(pattern, "garbageZ"), path


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_examples_inside_schemas_validate(name: str) -> None:
    schema = load_schema(name)
    assert schema.get("examples"), f"{name} has no examples"
    for example in schema["examples"]:
        assert errors(name, example) == []


# --- the example payloads -----------------------------------------------------------------


@pytest.mark.parametrize("name", JSON_EXAMPLES)
def test_contract_example_validates(name: str) -> None:
    assert errors(name, load_example(name)) == []


def test_sensorthings_encoder_output_validates() -> None:
    encoder = SensorThingsEncoder({"pm-north/pm25": 42, "pm-north/pm25:max": 43,
                                   "pm-north/laeq": 44, "pm-north/people:sum": 45})
    messages = encoder.encode("data/pm-north", load_example("data"))
    assert len(messages) == 3  # the suppressed people count gives none
    for message in messages:
        assert errors("sensorthings-observation", json.loads(message.payload)) == []
    example = load_schema("sensorthings-observation")["examples"][0]
    assert example in [json.loads(m.payload) for m in messages]


def test_homeassistant_discovery_output_validates() -> None:
    messages = discovery_messages(load_example("manifest"))
    assert messages
    for _, payload in messages:
        assert errors("homeassistant-discovery", json.loads(payload)) == []
    example = load_schema("homeassistant-discovery")["examples"][0]
    assert example == json.loads(messages[0][1])


def test_schema_example_equals_shared_example_for_data() -> None:
    assert load_schema("data")["examples"][0] == load_example("data")


@pytest.mark.parametrize("text", ["online", "offline"])
def test_status_text_is_valid(text: str) -> None:
    assert errors("status", text) == []


@pytest.mark.parametrize("text", ['"online"', "ONLINE", "online\n", "", "unknown"])
def test_status_rejects_anything_else(text: str) -> None:
    assert errors("status", text)


def test_status_description_says_plain_text_birth_and_will() -> None:
    description = load_schema("status")["description"]
    for phrase in ("plain utf-8 text", "not json", "birth", "last will", "clean shutdown"):
        assert phrase in description.lower()


Mutation = Callable[[dict[str, Any]], None]


def _delete(*path: str) -> Mutation:
    def mutate(payload: dict[str, Any]) -> None:
        node = payload
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _set(value: object, *path: str | int) -> Mutation:
    def mutate(payload: dict[str, Any]) -> None:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


# (schema, why, mutation, where the error must be reported: JSON path of the failing instance)
INVALID: list[tuple[str, str, Mutation, str]] = [
    ("data", "missing seq", _delete("seq"), ""),
    ("data", "negative seq", _set(-1, "seq"), "seq"),
    ("data", "suppressed true with sum 0", _set(0, "values", "people", "sum"), "values/people/sum"),
    ("data", "suppressed true without sum", _delete("values", "people", "sum"), "values/people"),
    ("data", "suppressed true without k", _delete("values", "people", "k"), "values/people"),
    ("data", "k of 0", _set(0, "values", "people", "k"), "values/people/k"),
    ("data", "unknown top-level key", _set("x", "raw"), ""),
    ("data", "missing corrections", _delete("corrections"), ""),
    (
        "data",
        "window start without Z",
        _set("2026-01-01T10:00:00+00:00", "window", "start"),
        "window/start",
    ),
    ("data", "window end without zone", _set("2026-01-01T10:01:00", "window", "end"), "window/end"),
    (
        "data",
        "malformed timestamp ending in Z",
        _set("2026-13-01T10:00:00Z", "window", "start"),
        "window/start",
    ),
    ("data", "window seconds 0", _set(0, "window", "seconds"), "window/seconds"),
    ("data", "unknown clock", _set("ntp", "window", "clock"), "window/clock"),
    ("data", "unknown key in window", _set(1, "window", "offset"), "window"),
    (
        "data",
        "unknown quantity",
        _set("temperature", "values", "pm25", "quantity"),
        "values/pm25/quantity",
    ),
    ("data", "unknown statistic", _set(8.0, "values", "pm25", "median"), "values/pm25"),
    ("data", "stream without unit", _delete("values", "pm25", "unit"), "values/pm25"),
    (
        "data",
        "stream key with capitals",
        _set({"unit": "dB", "quantity": "noise", "n": 0}, "values", "LAeq"),
        "values",
    ),
    ("data", "coverage above 1", _set(1.5, "coverage"), "coverage"),
    ("data", "negative errors", _set(-1, "errors"), "errors"),
    ("data", "gateway id with capitals", _set("AMS-oost", "gateway"), "gateway"),
    ("data", "sensor id with slash", _set("pm/north", "sensor"), "sensor"),
    (
        "data",
        "correction without method",
        _set([{"stream": "pm25"}], "corrections"),
        "corrections/0",
    ),
    ("events", "missing seq", _delete("seq"), ""),
    ("events", "time without Z", _set("2026-01-01T11:00:03+01:00", "time"), "time"),
    ("events", "unknown type", _set("backlog_drained", "type"), "type"),
    ("events", "unknown top-level key", _set("x", "extra"), ""),
    ("events", "nested details", _set({"range": {"from": 1, "to": 9}}, "details"), "details/range"),
    ("events", "list in details", _set({"seqs": [1, 2]}, "details"), "details/seqs"),
    ("health", "unknown top-level key", _set(1, "cpu"), ""),
    ("health", "missing storage", _delete("storage"), ""),
    (
        "health",
        "unknown sensor state",
        _set("broken", "sensors", "pm-north", "state"),
        "sensors/pm-north/state",
    ),
    (
        "health",
        "sensor without last_error",
        _delete("sensors", "pm-north", "last_error"),
        "sensors/pm-north",
    ),
    ("health", "bad sensor id key", _set({}, "sensors", "PM North"), "sensors"),
    ("health", "missing oldest_age_s", _delete("outbox", "oldest_age_s"), "outbox"),
    (
        "manifest",
        "raw data leaves device",
        _set(True, "privacy", "raw_data_leaves_device"),
        "privacy/raw_data_leaves_device",
    ),
    ("manifest", "unknown top-level key", _set("x", "extra"), ""),
    ("manifest", "bad config hash", _set("sha256:ABC", "config_hash"), "config_hash"),
    ("manifest", "latitude out of range", _set(91, "site", "lat"), "site/lat"),
    ("manifest", "longitude out of range", _set(-181, "site", "lon"), "site/lon"),
    ("manifest", "site without lat", _delete("site", "lat"), "site"),
    ("manifest", "dp not null", _set({"epsilon": 1.0}, "privacy", "dp"), "privacy/dp"),
    ("manifest", "unknown preset", _set("research-dp", "privacy", "preset"), "privacy/preset"),
    (
        "manifest",
        "unknown statistic",
        _set(["mean", "p50"], "privacy", "classes", "particulate", "statistics"),
        "privacy/classes/particulate/statistics/1",
    ),
    (
        "manifest",
        "unknown class",
        _set({"min_window_s": 60, "statistics": [], "k": None}, "privacy", "classes", "faces"),
        "privacy/classes",
    ),
    (
        "manifest",
        "unknown kind",
        _set("gauge", "sensors", 0, "streams", 0, "kind"),
        "sensors/0/streams/0/kind",
    ),
    ("manifest", "contract version 2", _set(2, "contract", "version"), "contract/version"),
    ("manifest", "published without Z", _set("2026-01-01T10:00:00", "published"), "published"),
]


def _where(error: ValidationError) -> str:
    return "/".join(str(part) for part in error.absolute_path)


@pytest.mark.parametrize(
    ("name", "mutate", "where"),
    [pytest.param(n, m, w, id=f"{n}: {why}") for n, why, m, w in INVALID],
)
def test_invalid_variant_is_rejected(name: str, mutate: Mutation, where: str) -> None:
    payload = copy.deepcopy(load_example(name))
    mutate(payload)
    found = [_where(e) for e in validator(name).iter_errors(payload)]
    assert found, "accepted"
    assert where in found, found


VALID: list[tuple[str, str, Mutation]] = [
    (
        "data",
        "stream with n 0 and no statistics",
        _set({"unit": "ug/m3", "quantity": "particulate", "n": 0}, "values", "pm25"),
    ),
    (
        "data",
        "not suppressed, sum 0",
        _set(
            {
                "unit": "count",
                "quantity": "people_count",
                "n": 60,
                "sum": 0,
                "suppressed": False,
                "k": 5,
            },
            "values",
            "people",
        ),
    ),
    ("data", "partial window", _set(True, "window", "partial")),
    ("data", "fractional timestamp", _set("2026-01-01T10:00:00.250Z", "window", "start")),
    ("data", "no values at all", _set({}, "values")),
    ("data", "a correction", _set([{
        "stream": "pm25", "method": "kappa-koehler", "reference": "Crilley et al. 2018",
        "parameters": {"kappa": 0.4, "rh_max": 95.0, "density_ratio": 1.65}, "rh_max": 95.0,
        "humidity": {"sensor": "rht", "stream": "relativeHumidity"}, "unit": "ug/m3", "n": 50,
        "mean": 6.1, "min": 5.0, "max": 7.2, "stddev": 0.4}], "corrections")),
    ("events", "gateway-wide event without sensor or details", _delete("sensor")),
    (
        "events",
        "scalar details",
        _set({"dropped": 12, "reason": "outbox full", "ok": False, "x": None}, "details"),
    ),
    (
        "health",
        "backlog and an error",
        _set(
            {
                "state": "warning",
                "restarts": 2,
                "readings": 10,
                "frame_errors": 7,
                "last_error": "bad checksum",
                "warmup_discarded": 0,
                "recovery": {"resync": 7, "reinit": 2, "bus_reset": 0, "power_cycle": 1},
                "duty_cycles": 0,
                "power": {"gpio": 17, "on": True},
            },
            "sensors",
            "pm-north",
        ),
    ),
    ("health", "no sensors", _set({}, "sensors")),
    (
        "manifest",
        "site, owner and purpose null",
        lambda p: p.update(site=None, owner=None, purpose=None),
    ),
    ("manifest", "site without height", _delete("site", "height_m")),
]


@pytest.mark.parametrize(
    ("name", "mutate"),
    [pytest.param(name, mutate, id=f"{name}: {why}") for name, why, mutate in VALID],
)
def test_valid_variant_is_accepted(name: str, mutate: Mutation) -> None:
    payload = copy.deepcopy(load_example(name))
    mutate(payload)
    assert errors(name, payload) == []


VERDICTS = [
    *((name, why, mutate) for name, why, mutate, _ in INVALID),
    *VALID,
    *((name, "unchanged example", lambda payload: None) for name in JSON_EXAMPLES),
]


@pytest.mark.parametrize(
    ("name", "mutate"), [pytest.param(n, m, id=f"{n}: {why}") for n, why, m in VERDICTS]
)
def test_draft_07_gives_the_same_verdict(name: str, mutate: Mutation) -> None:
    payload = copy.deepcopy(load_example(name))
    mutate(payload)
    schema = {k: v for k, v in load_schema(name).items() if k != "$schema"}
    draft_07 = Draft7Validator(schema, format_checker=FORMATS).is_valid(payload)
    assert draft_07 == validator(name).is_valid(payload)


# --- the AsyncAPI document ----------------------------------------------------------------


def test_asyncapi_parses_and_is_3_0_0() -> None:
    doc = load_asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "edgeagent MQTT interface"
    assert doc["info"]["version"] == "1.0.0"
    description = doc["info"]["description"]
    for phrase in ("QoS 1", "at-least-once", "seq", "outbox_dropped", "Last Will", "etained"):
        assert phrase in description


def test_asyncapi_internal_refs_resolve() -> None:
    """Pointers into the document resolve, relative refs name a file next to it, and the only
    absolute refs are the Smart Data Models' schema ids (external: never fetched here)."""
    doc = load_asyncapi()
    external = set()
    for path, node in walk(doc):
        if not isinstance(node, dict) or "$ref" not in node:
            continue
        ref = str(node["$ref"])
        if ref.startswith("#/"):
            assert resolve_pointer(doc, ref) is not None, path
        elif ref.startswith("./"):
            assert (ASYNCAPI.parent / ref.partition("#")[0]).resolve().is_file(), path
        else:
            external.add(ref)
    assert external == FIWARE_SCHEMA_IDS


def test_fiware_schema_ids_match_the_vendored_copies() -> None:
    vendored = Path(__file__).resolve().parent / "fiware_schemas"
    ids = {json.loads((vendored / f"{model}.schema.json").read_text(encoding="utf-8"))["$id"]
           for model in ("AirQualityObserved", "NoiseLevelObserved", "CrowdFlowObserved")}
    assert ids == FIWARE_SCHEMA_IDS


def _message_payload_refs(doc: dict[str, Any]) -> dict[str, str]:
    """Payload $ref of every message with one of our own schemas (dataFiware has none)."""
    messages = doc["components"]["messages"]
    return {name: message["payload"]["$ref"] for name, message in messages.items()
            if name != "dataFiware"}


def test_fiware_message_is_one_of_the_three_smart_data_models() -> None:
    message = load_asyncapi()["components"]["messages"]["dataFiware"]
    payload = message["payload"]
    assert set(payload) == {"oneOf"}
    assert {entry["$ref"] for entry in payload["oneOf"]} == FIWARE_SCHEMA_IDS
    assert len(payload["oneOf"]) == 3


def test_every_message_payload_refs_an_existing_schema() -> None:
    refs = _message_payload_refs(load_asyncapi())
    for name, ref in refs.items():
        assert ref.startswith("./schemas/"), (name, ref)
        assert (ASYNCAPI.parent / ref).resolve().is_file(), (name, ref)
    used = {Path(ref).name for ref in refs.values()}
    assert used == {f"{name}.schema.json" for name in SCHEMA_NAMES}


def test_channel_messages_resolve_to_components() -> None:
    doc = load_asyncapi()
    for channel_name, channel in doc["channels"].items():
        assert channel["messages"], channel_name
        for message in channel["messages"].values():
            target = resolve_pointer(doc, message["$ref"])
            payload = target["payload"]
            assert "$ref" in payload or "oneOf" in payload, channel_name


def test_content_types() -> None:
    messages = load_asyncapi()["components"]["messages"]
    assert messages["status"]["contentType"] == "text/plain"
    assert messages["dataSenml"]["contentType"] == "application/senml+json"  # RFC 8428 §6
    # NGSI-LD normalized entities with an inline @context are JSON-LD (ETSI GS CIM 009 §6.3.6).
    assert messages["dataFiware"]["contentType"] == "application/ld+json"
    for name, message in messages.items():
        if name not in ("status", "dataSenml", "dataFiware"):
            assert message["contentType"] == "application/json", name


#: Channels whose address is, by design, outside the gateway's topic root.
ABSOLUTE_CHANNELS = {
    "sensorthingsObservations": "v1.1/Datastreams({datastreamId})/Observations",
    "homeAssistantDiscovery": "{discoveryPrefix}/sensor/{gatewayId}/{objectId}/config",
}


def test_every_channel_address_is_under_the_gateway_root() -> None:
    doc = load_asyncapi()
    channels = doc["channels"]
    assert set(channels) == {"status", "manifest", "data", "health", "events",
                             *ABSOLUTE_CHANNELS}
    for name, channel in channels.items():
        address = channel["address"]
        if name in ABSOLUTE_CHANNELS:
            assert address == ABSOLUTE_CHANNELS[name], (name, address)
        else:
            assert address.startswith(TOPIC_ROOT), (name, address)
        assert not set("#+") & set(address), (name, address)
        placeholders = set(re.findall(r"\{(\w+)\}", address))
        assert placeholders == set(channel.get("parameters", {})), name
        for parameter in channel["parameters"].values():
            assert resolve_pointer(doc, parameter["$ref"])["description"], name
    assert channels["data"]["address"] == "edgeagent/v1/{gatewayId}/data/{sensorId}"


def test_parameters_are_described() -> None:
    parameters = load_asyncapi()["components"]["parameters"]
    assert set(parameters) == {"gatewayId", "sensorId", "datastreamId", "discoveryPrefix",
                               "objectId"}
    for name, parameter in parameters.items():
        assert len(parameter["description"]) > 40, name
        assert parameter["examples"], name
    for name in ("gatewayId", "sensorId"):
        assert "^[a-z0-9][a-z0-9_-]{0,62}$" in parameters[name]["description"], name


RETAINED = {
    "status": True,
    "manifest": True,
    "data": False,
    "health": False,
    "events": False,
    "sensorthingsObservations": False,
    "homeAssistantDiscovery": True,
}


def test_operations_send_with_qos_1_and_the_right_retain_flag() -> None:
    doc = load_asyncapi()
    seen = set()
    for name, operation in doc["operations"].items():
        assert operation["action"] == "send", name
        channel_ref = operation["channel"]["$ref"]
        channel_name = channel_ref.removeprefix("#/channels/")
        seen.add(channel_name)
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name
        binding = operation["bindings"]["mqtt"]
        assert binding["bindingVersion"] == "0.2.0"
        assert binding["qos"] == 1, name
        assert binding["retain"] is RETAINED[channel_name], name
    assert seen == set(RETAINED)


def test_servers_and_last_will() -> None:
    servers = load_asyncapi()["servers"]
    production, local = servers["production"], servers["local"]
    assert production["protocol"] == "secure-mqtt"
    assert production["host"] == "{host}:8883"
    host = production["variables"]["host"]
    for name in [host["default"], *host.get("examples", [])]:
        assert name == "example.org" or name.endswith(".example.org"), name
    assert local["protocol"] == "mqtt"
    assert local["host"] == "127.0.0.1:1883"
    for server in (production, local):
        mqtt = server["bindings"]["mqtt"]
        assert mqtt["bindingVersion"] == "0.2.0"
        assert mqtt["lastWill"] == {
            "topic": "edgeagent/v1/{gatewayId}/status",
            "qos": 1,
            "message": "offline",
            "retain": True,
        }


def test_no_real_domains_in_the_contract() -> None:
    """Only the JSON Schema meta-schema URL, the Smart Data Models' schema ids (AsyncAPI
    document only) and example.org names appear."""
    asyncapi = ASYNCAPI.read_text(encoding="utf-8")
    for url in re.findall(r"[a-z][a-z0-9+.-]*://[^\s'\"`]+", asyncapi):
        assert url in FIWARE_SCHEMA_IDS or url.startswith("https://json-schema.org/"), url
    for text in [_schema_text(n) for n in SCHEMA_NAMES]:
        for host in re.findall(r"[a-z][a-z0-9+.-]*://([^/\s'\"`]+)", text):
            assert host == "json-schema.org", host
    for text in [asyncapi] + [_schema_text(n) for n in SCHEMA_NAMES]:
        for host in re.findall(r"@([a-z0-9.-]+)", text):
            assert host == "example.org" or host.endswith(".example.org"), host


# --- the human-readable contract ----------------------------------------------------------

CONTRACT_MD = ROOT / "docs" / "contract.md"


def test_contract_md_mentions_every_topic_field_and_event_type() -> None:
    text = CONTRACT_MD.read_text(encoding="utf-8")
    for topic in ("…/status", "…/manifest", "…/data/<sensor_id>", "…/health", "…/events"):
        assert f"`{topic}`" in text, topic
    for name in JSON_EXAMPLES:
        for field in load_schema(name)["properties"]:
            assert f"`{field}" in text, (name, field)
    for event_type in load_schema("events")["properties"]["type"]["enum"]:
        assert f"`{event_type}`" in text, event_type
