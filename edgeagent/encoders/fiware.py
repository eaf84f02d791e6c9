"""FIWARE Smart Data Models in NGSI-LD normalized form, projected from native data messages.

One native ``data/<sensor>`` message (``docs/contract.md`` 3.2) becomes up to three NGSI-LD
entities, one per data model, chosen by the privacy classes (``quantity``) of its streams:

- ``particulate`` and ``climate`` streams → ``AirQualityObserved`` (dataModel.Environment),
- ``noise`` streams → ``NoiseLevelObserved`` (dataModel.Environment),
- ``people_count`` and ``presence`` streams → ``CrowdFlowObserved`` (dataModel.Transportation).

Each entity is published as its own message on the native topic suffix. The entity id is stable
per sensor (``urn:ngsi-ld:<Type>:<gateway>:<sensor>``), so every window updates the same entity
and ``observedAt`` (the window end) places the values in time. Only streams the model has an
attribute for are encoded (mapping tables in ``docs/encoding-fiware.md``); everything else of
the native message stays in the native format.

Privacy: the projection never adds information. A statistic the privacy gate withheld
(``suppressed``) or did not publish never becomes a number here: the attribute is left out and
the entity's ``description`` says why. Events, health, manifest and status are not encoded.

The ``@context`` URLs are written as strings only; nothing is fetched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeagent.encoders import Encoded

NGSI_LD_CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
ENVIRONMENT_CONTEXT = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld")
TRANSPORTATION_CONTEXT = ("https://raw.githubusercontent.com/smart-data-models/"
                          "dataModel.Transportation/master/context.jsonld")

AIR_QUALITY = "AirQualityObserved"
NOISE_LEVEL = "NoiseLevelObserved"
CROWD_FLOW = "CrowdFlowObserved"

#: ``@context`` of each model, as in the models' ``examples/example-normalized.jsonld``.
CONTEXTS: dict[str, list[str]] = {
    AIR_QUALITY: [NGSI_LD_CORE_CONTEXT, ENVIRONMENT_CONTEXT],
    NOISE_LEVEL: [NGSI_LD_CORE_CONTEXT, ENVIRONMENT_CONTEXT],
    CROWD_FLOW: [TRANSPORTATION_CONTEXT],
}

#: Native privacy class → data model.
MODEL_BY_CLASS = {"particulate": AIR_QUALITY, "climate": AIR_QUALITY, "noise": NOISE_LEVEL,
                  "people_count": CROWD_FLOW, "presence": CROWD_FLOW}
#: Counting-line streams whose sum is CrowdFlowObserved's ``peopleCount`` (both directions).
DIRECTION_STREAMS = ("peopleIn", "peopleOut")

#: UN/CEFACT Recommendation 20 common codes used as ``unitCode``.
UNIT_MICROGRAM_PER_M3 = "GQ"
UNIT_DEGREE_CELSIUS = "CEL"
UNIT_ONE = "C62"  # dimensionless: relativeHumidity is a 0..1 fraction in the model
UNIT_HECTOPASCAL = "A97"
UNIT_DECIBEL = "2N"
UNIT_PERSON = "IE"

#: Models that define ``refDevice`` (CrowdFlowObserved has only ``refRoadSegment``).
REF_DEVICE_MODELS = frozenset({AIR_QUALITY, NOISE_LEVEL})
SONOMETER_CLASSES = frozenset({"0", "1", "2"})
_ID_PART = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

_FLAG_TEXT = {"stuck": "identical values for three windows in a row, possibly a frozen sensor",
              "high_humidity": "relative humidity above 95 %, optical PM sensors may read high"}
_REASON_TEXT = {"below_k": "fewer than {k} in this window",
                "short_window": "the window is shorter than the policy's minimum"}


def _identity(value: float) -> float:
    return value


def _percent_to_fraction(value: float) -> float:
    """%RH → 0..1 fraction, cropped to the physical range 0..1 and rounded to 4 decimals."""
    return round(min(max(value / 100.0, 0.0), 1.0), 4)


def _count(value: float) -> float:
    """A count: an int when it is whole (the gate rounds counts to 0 decimals)."""
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class Source:
    """One native statistic that can feed an attribute.

    Attributes:
        stream: Native stream key in ``values`` (e.g. ``pm25``).
        statistic: Native statistic used (``mean``, ``max``, ``sum``).
        unit: Native unit the stream must have; a stream in another unit is not encoded.
    """

    stream: str
    statistic: str
    unit: str


@dataclass(frozen=True)
class AttributeMap:
    """One model attribute and where its value comes from.

    Attributes:
        attribute: Attribute name in the data model.
        sources: Candidates in order of preference; the first stream present decides.
        unit_code: UN/CEFACT common code of the encoded value.
        convert: Native value → model value (unit conversion).
    """

    attribute: str
    sources: tuple[Source, ...]
    unit_code: str
    convert: Callable[[float], float] = _identity


def _mean(stream: str, unit: str) -> tuple[Source, ...]:
    return (Source(stream, "mean", unit),)


#: What is encoded, per model. Native streams not listed here are left out.
MAPPINGS: dict[str, tuple[AttributeMap, ...]] = {
    AIR_QUALITY: (
        AttributeMap("pm1", _mean("pm1", "ug/m3"), UNIT_MICROGRAM_PER_M3),
        AttributeMap("pm25", _mean("pm25", "ug/m3"), UNIT_MICROGRAM_PER_M3),
        AttributeMap("pm4", _mean("pm4", "ug/m3"), UNIT_MICROGRAM_PER_M3),
        AttributeMap("pm10", _mean("pm10", "ug/m3"), UNIT_MICROGRAM_PER_M3),
        AttributeMap("temperature", _mean("temperature", "Cel"), UNIT_DEGREE_CELSIUS),
        AttributeMap("relativeHumidity", _mean("relativeHumidity", "%RH"), UNIT_ONE,
                 _percent_to_fraction),
        AttributeMap("pressure", _mean("pressure", "hPa"), UNIT_HECTOPASCAL),
    ),
    NOISE_LEVEL: (
        AttributeMap("LAeq", _mean("laeq", "dB"), UNIT_DECIBEL),
        AttributeMap("LAmax", (Source("lafmax", "max", "dB"), Source("laeq", "max", "dB")),
                 UNIT_DECIBEL),
    ),
    CROWD_FLOW: (
        AttributeMap("peopleCount", (Source("people", "sum", "count"),), UNIT_PERSON, _count),
        # share of the time someone was there (radar, PIR): the model's 0..1 occupancy
        AttributeMap("occupancy", (Source("presence", "mean", "%"),
                                   Source("motion", "mean", "%")), UNIT_ONE,
                     _percent_to_fraction),
    ),
}


def _both_directions(values: dict[str, Any]) -> dict[str, Any] | None:
    """``peopleIn`` + ``peopleOut`` as one count; withheld if either direction is.

    A suppressed direction means "fewer than k", so a total without it would be a guess.
    """
    streams = [values.get(name) for name in DIRECTION_STREAMS]
    if any(s is None or s.get("unit") != "count" for s in streams):
        return None
    for stream in streams:
        if stream.get("suppressed"):
            return {"unit": "count", "suppressed": True, "k": stream.get("k"),
                    "suppressed_reason": stream.get("suppressed_reason", "")}
    sums = [s.get("sum") for s in streams]
    if not all(_number(v) for v in sums):
        return None
    return {"unit": "count", "sum": sums[0] + sums[1]}


def entity_id(model: str, gateway: str, sensor: str) -> str:
    """Stable NGSI-LD id of a sensor's entity of one model (configured names only)."""
    return f"urn:ngsi-ld:{model}:{gateway}:{sensor}"


def _number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _datetime(stamp: str) -> dict[str, str]:
    """An NGSI-LD DateTime value, as in the models' normalized NGSI-LD examples."""
    return {"@type": "DateTime", "@value": stamp}


class FiwareEncoder:
    """Native data messages → FIWARE Smart Data Models entities, NGSI-LD normalized form.

    Args:
        site: The manifest's ``site`` (``lat``, ``lon`` in WGS 84); gives every entity a
            GeoJSON Point ``location``. Without it the entities have no location, which
            ``AirQualityObserved`` and ``NoiseLevelObserved`` declare mandatory.
        ref_device: Add ``refDevice``, a Relationship to ``urn:ngsi-ld:Device:<gateway>:<sensor>``,
            to the models that define it (not CrowdFlowObserved). The Device entity itself is
            not published by this encoder.
        sonometer_class: Sensor id → ``"0"``, ``"1"`` or ``"2"``, published as
            ``sonometerClass`` of that sensor's ``NoiseLevelObserved``. Only for a meter whose
            class is established; edgeagent makes no class claim of its own.

    Raises:
        ValueError: A site without valid coordinates, or a sonometer class other than 0, 1, 2.
    """

    name = "fiware"

    def __init__(self, site: dict[str, Any] | None = None, *, ref_device: bool = False,
                 sonometer_class: Mapping[str, str] | None = None) -> None:
        self.location = self._location(site)
        self.ref_device = ref_device
        self.sonometer_class = dict(sonometer_class or {})
        bad = {s: c for s, c in self.sonometer_class.items() if c not in SONOMETER_CLASSES}
        if bad:
            raise ValueError(f"sonometer_class must be '0', '1' or '2', not {bad}")

    @staticmethod
    def _location(site: dict[str, Any] | None) -> dict[str, Any] | None:
        if not site or site.get("lat") is None or site.get("lon") is None:
            return None
        lat, lon = site["lat"], site["lon"]
        if not (_number(lat) and _number(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"site needs WGS 84 lat/lon in range, got lat={lat!r} lon={lon!r}")
        # GeoJSON order is [longitude, latitude]; height_m is above ground, not an altitude.
        return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}

    def encode(self, suffix: str, body: dict[str, Any]) -> list[Encoded]:
        """Encode one native message.

        Args:
            suffix: Native topic suffix below the gateway root, e.g. ``data/pm-north``.
            body: The native JSON body.

        Returns:
            One message per entity (at most one per data model), each on ``suffix``; empty for
            every message type other than data, and for a data message with nothing to encode.

        Raises:
            ValueError: The body's gateway or sensor is not a configured-name id, or the sensor
                does not match the topic suffix.
        """
        kind, _, sensor = suffix.partition("/")
        if kind != "data":
            return []
        gateway = body.get("gateway")
        if sensor != body.get("sensor") or not _ID_PART.match(sensor):
            raise ValueError(f"topic suffix {suffix!r} does not name the body's sensor "
                             f"{body.get('sensor')!r}")
        if not isinstance(gateway, str) or not _ID_PART.match(gateway):
            raise ValueError(f"gateway id {gateway!r} is not a configured name")
        entities = self.entities(body)
        return [Encoded(suffix, json.dumps(entity, sort_keys=True, separators=(",", ":"),
                                           allow_nan=False).encode("utf-8"))
                for entity in entities]

    def entities(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The NGSI-LD entities of one native data message, in model order.

        Args:
            body: A native data message body.

        Returns:
            The entities as dicts (``encode`` serialises them).
        """
        values: dict[str, Any] = body.get("values", {})
        models = {MODEL_BY_CLASS[v["quantity"]] for v in values.values()
                  if v.get("quantity") in MODEL_BY_CLASS}
        return [entity for model in (AIR_QUALITY, NOISE_LEVEL, CROWD_FLOW) if model in models
                if (entity := self._entity(model, body)) is not None]

    def _entity(self, model: str, body: dict[str, Any]) -> dict[str, Any] | None:
        window = body["window"]
        start, end = window["start"], window["end"]
        values = {name: v for name, v in body.get("values", {}).items()
                  if MODEL_BY_CLASS.get(v.get("quantity")) == model}
        if model == CROWD_FLOW and "people" not in values:
            both = _both_directions(values)
            if both is not None:
                values["people"] = both
        attributes: dict[str, Any] = {}
        withheld: list[str] = []
        flags: list[str] = []
        for mapping in MAPPINGS[model]:
            for source in mapping.sources:
                stream = values.get(source.stream)
                if stream is None or stream.get("unit") != source.unit:
                    continue
                if stream.get("suppressed"):
                    reason = stream.get("suppressed_reason", "")
                    why = _REASON_TEXT.get(reason, "withheld").format(k=stream.get("k"))
                    withheld.append(f"{mapping.attribute} withheld by the privacy gate "
                                    f"({reason}): {why}")
                    break
                value = stream.get(source.statistic)
                if not _number(value):
                    continue  # statistic not published (policy, n = 0): try the next source
                attributes[mapping.attribute] = {"type": "Property",
                                                 "value": mapping.convert(value),
                                                 "unitCode": mapping.unit_code,
                                                 "observedAt": end}
                flags += [f"{mapping.attribute}: {flag} flag ({_FLAG_TEXT.get(flag, flag)})"
                          for flag in stream.get("flags", [])]
                break
        if not attributes and not withheld:
            return None
        entity: dict[str, Any] = {
            "id": entity_id(model, body["gateway"], body["sensor"]),
            "type": model,
            "@context": CONTEXTS[model],
            "dateObservedFrom": self._property(_datetime(start), end),
            "dateObservedTo": self._property(_datetime(end), end),
            # NoiseLevelObserved defines dateObserved as an ISO 8601 interval; the other two
            # models take the instant, here the window end.
            "dateObserved": self._property(f"{start}/{end}" if model == NOISE_LEVEL
                                           else _datetime(end), end),
            **attributes,
        }
        if self.location is not None:
            entity["location"] = self.location
        if self.ref_device and model in REF_DEVICE_MODELS:
            entity["refDevice"] = {"type": "Relationship",
                                   "object": entity_id("Device", body["gateway"],
                                                       body["sensor"])}
        if model == NOISE_LEVEL and body["sensor"] in self.sonometer_class:
            entity["sonometerClass"] = self._property(self.sonometer_class[body["sensor"]], end)
        notes = withheld + flags
        if body.get("simulated"):
            notes.append("simulated: values invented by the edgeagent demo driver, "
                         "not measurements")
        if window.get("clock") != "synced":
            notes.append(f"gateway clock {window.get('clock')}: timestamps may be off")
        if notes:
            entity["description"] = self._property("; ".join(notes), end)
        return entity

    @staticmethod
    def _property(value: Any, observed_at: str) -> dict[str, Any]:
        return {"type": "Property", "value": value, "observedAt": observed_at}
