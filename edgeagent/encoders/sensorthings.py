"""OGC SensorThings API v1.1 (OGC 18-088) MQTT encoder: create-Observation messages.

A pure projection of the native ``data/<sensor>`` message (``docs/contract.md`` §3.2) into
SensorThings Observations, one per mapped (stream, statistic) whose value was published. The
full description is in ``docs/encoding-sensorthings.md``; in short:

- A configured mapping ``"<sensor>/<stream>[:<statistic>]" → Datastream @iot.id`` decides
  what is sent (no statistic = ``mean``). Unmapped streams and statistics are not sent.
- Each Observation is published on ``v1.1/Datastreams(<id>)/Observations``, the MQTT create
  topic of the standard. That topic is **not** below the gateway's topic root: the encoder has
  ``absolute_topics = True`` so the publisher sends it as it is.
- ``phenomenonTime`` is the window as an ISO 8601 interval ``start/end`` (the true bounds of a
  partial window), ``resultTime`` the window end, ``result`` the statistic, ``parameters`` the
  context a consumer needs to de-duplicate and judge the value (``seq``, ``store``, ``n``,
  ``coverage``, ``clock``, ``flags`` …).
- A suppressed or null statistic never becomes an Observation (no value is invented).
- Only data messages are encoded; events, health, manifest and status give ``[]``.

:func:`datastream_export` builds, from a transparency manifest, the entities to create once on
the server (Thing with Location, Sensors, ObservedProperties, Datastreams) and the mapping
skeleton the encoder needs, with placeholder ids the platform replaces.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeagent.encoders import Encoded

#: Version segment of the MQTT topics (OGC 18-088 §14.2: ``v1.1`` on 1.1 servers).
VERSION = "v1.1"
#: Statistics of a native stream, in publishing order (``docs/contract.md`` §3.2).
STATISTICS = ("mean", "min", "max", "stddev", "l10", "l50", "l90", "sum")
DEFAULT_STATISTIC = "mean"
#: O&M 2.0 observation type of every Datastream: the results are numbers.
OM_MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
#: Location encoding of OGC 18-088 v1.1 (GeoJSON, RFC 7946).
GEOJSON = "application/geo+json"
#: Start of every placeholder id in an export; the encoder refuses such ids.
PLACEHOLDER_PREFIX = "<"

_SENSOR = r"[a-z0-9][a-z0-9_-]{0,62}"
_STREAM = r"[a-z][A-Za-z0-9_]{0,31}"
_KEY = re.compile(rf"^({_SENSOR})/({_STREAM})(?::([a-z0-9]+))?$")
_ID_PART = re.compile(rf"^{_SENSOR}$")
#: String ids allowed in a topic: no MQTT wildcards, no '/', no NUL, nothing to escape.
_STRING_ID = re.compile(r"^[A-Za-z0-9._~:@!$&*,;=-]{1,200}$")


@dataclass(frozen=True, slots=True)
class Unit:
    """A SensorThings ``unitOfMeasurement`` for a native unit.

    Attributes:
        name: Full name of the unit.
        symbol: The UCUM (case-sensitive) code; OGC 18-088 recommends UCUM.
        definition: URI of the unit's definition (QUDT where its id is known, else UCUM).
    """

    name: str
    symbol: str
    definition: str

    def as_json(self) -> dict[str, str]:
        """The ``unitOfMeasurement`` object."""
        return {"name": self.name, "symbol": self.symbol, "definition": self.definition}


_QUDT = "http://qudt.org/vocab/unit/"
_UCUM = "https://ucum.org/ucum"
#: Native unit (``docs/contract.md`` §2) → unitOfMeasurement.
UNITS: dict[str, Unit] = {
    "ug/m3": Unit("microgram per cubic metre", "ug/m3", _QUDT + "MicroGM-PER-M3"),
    "/cm3": Unit("particles per cubic centimetre", "/cm3", _UCUM),
    "Cel": Unit("degree Celsius", "Cel", _QUDT + "DEG_C"),
    "%RH": Unit("percent (relative humidity)", "%", _QUDT + "PERCENT"),
    "hPa": Unit("hectopascal", "hPa", _QUDT + "HectoPA"),
    "dB": Unit("decibel", "dB", _QUDT + "DeciB"),
    "count": Unit("count", "{count}", _QUDT + "NUM"),
    "um": Unit("micrometre", "um", _QUDT + "MicroM"),
    "1": Unit("index (dimensionless)", "1", _QUDT + "UNITLESS"),
    "%": Unit("percent (share of the window)", "%", _QUDT + "PERCENT"),
}

#: Stream name → (ObservedProperty name, definition URI). EEA air-quality pollutant vocabulary
#: where it has the property; otherwise a descriptive edgeagent URN (see the docs).
_EIONET = "http://dd.eionet.europa.eu/vocabulary/aq/pollutant/"
OBSERVED_PROPERTIES: dict[str, tuple[str, str]] = {
    "pm25": ("PM2.5", _EIONET + "6001"),
    "pm10": ("PM10", _EIONET + "5"),
    "pm1": ("PM1", "urn:edgeagent:observed-property:pm1"),
    "pm4": ("PM4", "urn:edgeagent:observed-property:pm4"),
    "temperature": ("air temperature", "urn:edgeagent:observed-property:temperature"),
    "relativeHumidity": ("relative humidity",
                         "urn:edgeagent:observed-property:relativeHumidity"),
    "pressure": ("air pressure", "urn:edgeagent:observed-property:pressure"),
    "laeq": ("LAeq, A-weighted equivalent sound level", "urn:edgeagent:observed-property:laeq"),
    "people": ("people count", "urn:edgeagent:observed-property:people"),
    "peopleIn": ("people crossing the counting line inwards",
                 "urn:edgeagent:observed-property:peopleIn"),
    "peopleOut": ("people crossing the counting line outwards",
                  "urn:edgeagent:observed-property:peopleOut"),
    "occupancy": ("people present at once", "urn:edgeagent:observed-property:occupancy"),
    "presence": ("share of time someone was present",
                 "urn:edgeagent:observed-property:presence"),
    "motion": ("share of time with motion", "urn:edgeagent:observed-property:motion"),
    "motionEvents": ("motion activations (not people)",
                     "urn:edgeagent:observed-property:motionEvents"),
}
_STAT_TEXT = {"mean": "mean", "min": "minimum", "max": "maximum", "stddev": "standard deviation",
              "l10": "level exceeded 10 % of the time (L10)",
              "l50": "level exceeded 50 % of the time (L50)",
              "l90": "level exceeded 90 % of the time (L90)", "sum": "sum"}


def _number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def parse_key(key: str) -> tuple[str, str, str]:
    """Split a mapping key ``"<sensor>/<stream>[:<statistic>]"``.

    Args:
        key: The mapping key, e.g. ``pm-north/pm25`` or ``pm-north/pm25:max``.

    Returns:
        ``(sensor, stream, statistic)``; the statistic defaults to ``mean``.

    Raises:
        ValueError: The key is malformed or names an unknown statistic.
    """
    match = _KEY.match(key) if isinstance(key, str) else None
    if not match:
        raise ValueError(f"mapping key {key!r} is not '<sensor>/<stream>[:<statistic>]'")
    sensor, stream, statistic = match.group(1), match.group(2), match.group(3)
    statistic = statistic or DEFAULT_STATISTIC
    if statistic not in STATISTICS:
        raise ValueError(f"mapping key {key!r}: unknown statistic {statistic!r} "
                         f"(one of {', '.join(STATISTICS)})")
    return sensor, stream, statistic


def mapping_key(sensor: str, stream: str, statistic: str) -> str:
    """The canonical mapping key: the mean without a suffix, others with ``:<statistic>``."""
    suffix = "" if statistic == DEFAULT_STATISTIC else f":{statistic}"
    return f"{sensor}/{stream}{suffix}"


def observations_topic(datastream_id: int | str) -> str:
    """The MQTT create topic of a Datastream (OGC 18-088 §14.2.2).

    Integer ids are written bare (``Datastreams(42)``), string ids as OData string literals
    (``Datastreams('ds-7')``), as in the server's resource paths.

    Args:
        datastream_id: The Datastream's ``@iot.id``.

    Returns:
        ``v1.1/Datastreams(<id>)/Observations``.

    Raises:
        ValueError: Not an integer ≥ 0 or a plain string id (placeholders are refused).
    """
    if isinstance(datastream_id, int) and not isinstance(datastream_id, bool):
        if datastream_id < 0:
            raise ValueError(f"Datastream id {datastream_id} is negative")
        literal = str(datastream_id)
    elif isinstance(datastream_id, str):
        if datastream_id.startswith(PLACEHOLDER_PREFIX):
            raise ValueError(f"Datastream id {datastream_id!r} is an export placeholder: "
                             "put the id the server assigned in the mapping")
        if not _STRING_ID.match(datastream_id):
            raise ValueError(f"Datastream id {datastream_id!r} cannot be part of an MQTT topic")
        literal = f"'{datastream_id}'"
    else:
        raise ValueError(f"Datastream id must be an int or str, not {datastream_id!r}")
    return f"{VERSION}/Datastreams({literal})/Observations"


class SensorThingsEncoder:
    """Native data messages → SensorThings API v1.1 create-Observation messages over MQTT.

    Args:
        datastreams: ``"<sensor>/<stream>[:<statistic>]"`` → Datastream ``@iot.id``
            (``"pm-north/pm25" → 42`` is the mean; ``"pm-north/pm25:max" → 43``). Only mapped
            (sensor, stream, statistic) combinations are sent.

    Raises:
        ValueError: A malformed key, an id that cannot be written in a topic (including an
            export placeholder), or two keys for the same (sensor, stream, statistic).
    """

    name = "sensorthings"
    #: The topics of :meth:`encode` are complete MQTT topics, not suffixes below the gateway
    #: root: publish them as they are.
    absolute_topics = True

    def __init__(self, datastreams: Mapping[str, int | str]) -> None:
        self._topics: dict[tuple[str, str, str], str] = {}
        for key, datastream_id in datastreams.items():
            target = parse_key(key)
            if target in self._topics:
                raise ValueError(f"mapping key {key!r} names the same Datastream source as "
                                 "another key")
            self._topics[target] = observations_topic(datastream_id)

    def encode(self, suffix: str, body: dict[str, Any]) -> list[Encoded]:
        """Encode one native message.

        Args:
            suffix: Native topic suffix below the gateway root, e.g. ``data/pm-north``.
            body: The native JSON body.

        Returns:
            One :class:`Encoded` per mapped, published statistic of a data message, each on
            the absolute topic ``v1.1/Datastreams(<id>)/Observations``; ``[]`` for every other
            message type and when nothing mapped was published.

        Raises:
            ValueError: The body's sensor does not match the topic suffix.
        """
        kind, _, sensor = suffix.partition("/")
        if kind != "data":
            return []
        if sensor != body.get("sensor") or not _ID_PART.match(sensor):
            raise ValueError(f"topic suffix {suffix!r} does not name the body's sensor "
                             f"{body.get('sensor')!r}")
        return [Encoded(topic, json.dumps(observation, sort_keys=True, separators=(",", ":"),
                                          ensure_ascii=False, allow_nan=False).encode("utf-8"))
                for topic, observation in self.observations(body)]

    def observations(self, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The Observations of one native data message with their topics.

        Args:
            body: A native data message body.

        Returns:
            ``(topic, observation)`` pairs, streams in name order and statistics in
            :data:`STATISTICS` order (``encode`` serialises them).
        """
        sensor = body["sensor"]
        window = body["window"]
        result: list[tuple[str, dict[str, Any]]] = []
        for name in sorted(body.get("values", {})):
            stream = body["values"][name]
            if "suppressed" in stream and stream["suppressed"] is not False:
                continue  # withheld by the privacy gate: never a number, not even 0
            for statistic in STATISTICS:
                topic = self._topics.get((sensor, name, statistic))
                value = stream.get(statistic)
                if topic is None or not _number(value):
                    continue  # unmapped, not allowed by the policy, null or n = 0
                result.append((topic, _observation(body, window, name, stream, statistic,
                                                   value)))
        return result


def _observation(body: dict[str, Any], window: dict[str, Any], name: str,
                 stream: dict[str, Any], statistic: str, value: float) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "gateway": body["gateway"], "sensor": body["sensor"], "stream": name,
        "statistic": statistic, "seq": body["seq"], "store": body["store"], "n": stream["n"],
        "coverage": body["coverage"], "window_s": window["seconds"], "clock": window["clock"],
        "partial": window["partial"], "simulated": body["simulated"],
    }
    if stream.get("flags"):
        parameters["flags"] = list(stream["flags"])
    if "k" in stream:
        parameters["k"] = stream["k"]
    if "dp" in stream:  # a noised count: say so with the value
        parameters["dp"] = dict(stream["dp"])
    return {"phenomenonTime": f"{window['start']}/{window['end']}",
            "resultTime": window["end"], "result": value, "parameters": parameters}


_BASE_KEYS = frozenset({"thing", "location", "sensor", "observedProperty", "datastream"})


def _merge(entity: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``entity`` with ``extra`` laid over it; ``properties`` are merged key by key."""
    if not extra:
        return entity
    merged = {**entity, **copy.deepcopy({k: v for k, v in extra.items() if k != "properties"})}
    if "properties" in extra:
        merged["properties"] = {**entity.get("properties", {}), **extra["properties"]}
    return merged


def _placeholder(kind: str, key: str) -> str:
    return f"{PLACEHOLDER_PREFIX}{kind}:{key}>"


def datastream_export(manifest: dict[str, Any], *, base: dict[str, Any],
                      inline: bool = False) -> dict[str, Any]:
    """The SensorThings entities to create once for a gateway, and the encoder's mapping.

    Args:
        manifest: The gateway's transparency manifest (``docs/contract.md`` §3.5).
        base: Platform fields laid over the generated entities, by entity kind: keys
            ``thing``, ``location``, ``sensor``, ``observedProperty``, ``datastream`` (each a
            dict; its ``properties`` are merged key by key). ``{}`` for none.
        inline: Embed each Datastream's Sensor and ObservedProperty in the Thing, so the whole
            export is one deep-insert POST; the server then creates one Sensor and one
            ObservedProperty per Datastream. Default: they are separate entities to POST
            first, and the Thing's Datastreams refer to them by placeholder ids.

    Returns:
        ``{"sensors", "observedProperties", "thing", "mapping"}``: ``sensors`` and
        ``observedProperties`` map a placeholder id to the body to POST to ``/Sensors`` and
        ``/ObservedProperties`` (empty with ``inline``); ``thing`` is the deep-insert body for
        ``/Things`` (Locations and Datastreams); ``mapping`` is the encoder's mapping with a
        placeholder id per Datastream, to be replaced by the ids the server assigned.

    Raises:
        ValueError: ``base`` has an unknown key, or a stream has a unit with no
            unitOfMeasurement here (never guessed).
    """
    unknown = set(base) - _BASE_KEYS
    if unknown:
        raise ValueError(f"base has unknown keys {sorted(unknown)}; known: {sorted(_BASE_KEYS)}")
    gateway = manifest["gateway"]
    sensors: dict[str, dict[str, Any]] = {}
    properties: dict[str, dict[str, Any]] = {}
    datastreams: list[dict[str, Any]] = []
    mapping: dict[str, str] = {}
    for spec in manifest["sensors"]:
        model = spec["model"]
        sensor_ref = _placeholder("sensor", model)
        sensors.setdefault(sensor_ref, _merge({
            "name": model,
            "description": f"{model}, read by the edgeagent {spec['driver']} driver",
            "encodingType": "text/plain",
            "metadata": f"{model}; edgeagent driver {spec['driver']}",
            "properties": {"edgeagent:driver": spec["driver"]},
        }, base.get("sensor")))
        for stream in spec["streams"]:
            if stream["unit"] not in UNITS:
                raise ValueError(f"{spec['id']}/{stream['name']}: no unitOfMeasurement for "
                                 f"unit {stream['unit']!r}")
            label, definition = OBSERVED_PROPERTIES.get(
                stream["name"], (stream["name"], f"urn:edgeagent:observed-property:"
                                                 f"{stream['name']}"))
            property_ref = _placeholder("observedProperty", stream["name"])
            properties.setdefault(property_ref, _merge({
                "name": label, "definition": definition, "description": stream["description"],
            }, base.get("observedProperty")))
            for statistic in stream["statistics"]:
                key = mapping_key(spec["id"], stream["name"], statistic)
                mapping[key] = _placeholder("datastream", f"{gateway}/{key}")
                datastreams.append(_merge({
                    "name": f"{gateway}/{spec['id']}/{stream['name']}:{statistic}",
                    "description": _datastream_text(spec, stream, statistic),
                    "observationType": OM_MEASUREMENT,
                    "unitOfMeasurement": UNITS[stream["unit"]].as_json(),
                    "properties": {
                        "edgeagent:key": key, "edgeagent:gateway": gateway,
                        "edgeagent:sensor": spec["id"], "edgeagent:stream": stream["name"],
                        "edgeagent:statistic": statistic, "edgeagent:window_s": spec["window_s"],
                        "edgeagent:quantity": stream["quantity"],
                        "edgeagent:kind": stream["kind"], "edgeagent:k": stream["k"],
                        "edgeagent:simulated": spec["simulated"],
                    },
                    "Sensor": (copy.deepcopy(sensors[sensor_ref]) if inline
                               else {"@iot.id": sensor_ref}),
                    "ObservedProperty": (copy.deepcopy(properties[property_ref]) if inline
                                         else {"@iot.id": property_ref}),
                }, base.get("datastream")))
    thing: dict[str, Any] = {
        "name": gateway,
        "description": manifest.get("purpose") or f"edgeagent gateway {gateway}",
        "properties": {"edgeagent:gateway": gateway,
                       "edgeagent:topic_root": manifest["contract"]["topic_root"],
                       "edgeagent:config_hash": manifest["config_hash"],
                       "edgeagent:version": manifest["version"],
                       "owner": manifest.get("owner")},
        "Datastreams": datastreams,
    }
    site = manifest.get("site")
    if site and _number(site.get("lat")) and _number(site.get("lon")):
        thing["Locations"] = [_merge({
            "name": site.get("name") or gateway,
            "description": f"registered site of gateway {gateway}",
            "encodingType": GEOJSON,
            # GeoJSON order is [lon, lat]; height_m is above ground, not an altitude.
            "location": {"type": "Point", "coordinates": [site["lon"], site["lat"]]},
        }, base.get("location"))]
    return {"sensors": {} if inline else sensors,
            "observedProperties": {} if inline else properties,
            "thing": _merge(thing, base.get("thing")), "mapping": mapping}


def _datastream_text(spec: dict[str, Any], stream: dict[str, Any], statistic: str) -> str:
    what = _STAT_TEXT[statistic]
    if statistic == "mean" and stream["kind"] in ("energetic", "level"):
        what = "energy mean (Leq)"
    return (f"{stream['description']}: {what} per {spec['window_s']:g} s window, sensor "
            f"{spec['id']} ({spec['model']})")
