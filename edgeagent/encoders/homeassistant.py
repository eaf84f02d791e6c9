"""Home Assistant MQTT discovery messages, projected from the transparency manifest.

A pure module: it turns the manifest (``Agent.manifest()``, schema
``deploy/schemas/manifest.schema.json``) into the retained *config* messages of Home
Assistant's MQTT discovery, so that a test bench running Home Assistant shows every value the
gateway releases as a sensor entity, without any YAML. The entities read the gateway's native
``data/<sensor>`` messages directly; nothing here is published on the data path, and nothing
new is published at all: each entity shows one statistic the privacy gate already released.

- One entity per published (stream, statistic) of every sensor, exactly the statistics the
  manifest lists for the stream, on the config topic
  ``<prefix>/sensor/<gateway>/<sensor>_<stream>_<stat>/config``.
- One Home Assistant device per sensor (``edgeagent_<gateway>_<sensor>``).
- ``value_template`` reads ``values.<stream>.<stat>`` of the native JSON and renders the text
  ``None`` when the statistic is null (suppressed: fewer than k, short window, DP budget) or
  absent (n = 0, not allowed). For a numeric sensor Home Assistant's MQTT sensor maps exactly
  the rendered string ``None`` to the *unknown* state; an empty string would be ignored and
  keep the previous value, and a number would be a lie. A suppressed count is therefore
  "unknown", never 0.
- ``availability_topic`` is the gateway's status topic (retained ``online``/``offline``), and
  ``expire_after`` (3 windows) makes values go *unavailable* when a gateway stops sending.
- Removal: an empty retained payload on a config topic makes Home Assistant forget the entity
  (:func:`removal_messages`).

Only the native data format can be read by these templates (:func:`supported`). Details and the
Home Assistant facts relied on are in ``docs/home-assistant.md``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Home Assistant's default discovery prefix.
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
#: Component (entity platform) of every entity made here.
COMPONENT = "sensor"
#: ``origin.name`` of every config message.
ORIGIN_NAME = "edgeagent"
#: Status payloads (docs/contract.md 3.1).
PAYLOAD_AVAILABLE = "online"
PAYLOAD_NOT_AVAILABLE = "offline"
#: What Home Assistant's MQTT sensor turns into the *unknown* state (``PAYLOAD_NONE``).
UNKNOWN = "None"
#: A value expires (entity unavailable) after this many windows without a data message.
EXPIRE_WINDOWS = 3
#: Suffix of the entity name of a sensor whose data the demo driver invents.
SIMULATED_SUFFIX = " (simulated)"
#: Statistics a data message can carry (manifest ``$defs.statistics``).
STATISTICS = ("mean", "min", "max", "stddev", "sum", "l10", "l50", "l90")
#: The only data format the templates can read.
NATIVE = "native"

_MICRO = "\u00b5"  # MICRO SIGN; see UNITS
#: Native unit → Home Assistant ``unit_of_measurement`` (None: no unit).
#: Home Assistant's own spellings: ``µg/m³`` (CONCENTRATION_MICROGRAMS_PER_CUBIC_METER, written
#: with U+00B5, which every release accepts for the pm device classes; releases with the
#: U+03BC constant translate U+00B5 to it), ``°C``, ``%``, ``hPa``, ``dB``.
UNITS: dict[str, str | None] = {
    "ug/m3": f"{_MICRO}g/m\u00b3",
    "Cel": "\u00b0C",
    "%RH": "%",
    "hPa": "hPa",
    "dB": "dB",
    "%": "%",
    "/cm3": "1/cm\u00b3",
    "um": f"{_MICRO}m",
    "1": None,
}
#: Unit of a ``count`` stream, by privacy class: numbers of people get ``people``; other counts
#: (PIR activations: motion, not people) stay unitless.
COUNT_UNITS: dict[str, str | None] = {"people_count": "people"}

#: (stream, native unit) → Home Assistant sensor device class. Only classes whose unit list
#: contains the mapped unit, and only classes every recent release knows (``pm4`` is newer and
#: would make older releases reject the entity, so PM4 gets none). Counts and presence shares
#: have no device class.
DEVICE_CLASSES: dict[tuple[str, str], str] = {
    ("pm1", "ug/m3"): "pm1",
    ("pm25", "ug/m3"): "pm25",
    ("pm10", "ug/m3"): "pm10",
    ("temperature", "Cel"): "temperature",
    ("relativeHumidity", "%RH"): "humidity",
    ("pressure", "hPa"): "atmospheric_pressure",
}
#: Every ``dB`` stream of the noise class is a sound pressure level.
SOUND_PRESSURE = "sound_pressure"
#: Statistics that are a value *of* the quantity (so its device class applies). ``stddev`` is a
#: spread: no device class, otherwise Home Assistant would e.g. convert a temperature spread
#: with the +32 °F offset and list it among the PM2.5 readings.
LOCATION_STATISTICS = frozenset({"mean", "min", "max", "l10", "l50", "l90"})

#: Human names of known streams (drivers' stream keys); others are derived from the key.
STREAM_LABELS: dict[str, str] = {
    "pm1": "PM1", "pm25": "PM2.5", "pm4": "PM4", "pm10": "PM10",
    "n0_3": "Particles >0.3 µm", "n0_5": "Particles 0.5 µm", "n1_0": "Particles 1.0 µm",
    "n2_5": "Particles 2.5 µm", "n4_0": "Particles 4.0 µm", "n5_0": "Particles 5.0 µm",
    "n10": "Particles 10 µm", "typical_size": "Typical particle size",
    "temperature": "Temperature", "relativeHumidity": "Relative humidity",
    "pressure": "Pressure", "vocIndex": "VOC index", "noxIndex": "NOx index",
    "laeq": "LAeq (A-weighted)", "lceq": "LCeq (C-weighted)", "lzeq": "LZeq (Z-weighted)",
    "laf": "LAF (A-weighted, fast)", "lafmax": "LAFmax (A-weighted, fast)",
    "lafmin": "LAFmin (A-weighted, fast)", "lasmax": "LASmax (A-weighted, slow)",
    "people": "People", "peopleIn": "People in", "peopleOut": "People out",
    "occupancy": "Occupancy", "presence": "Presence", "motion": "Motion",
    "stillPresence": "Still presence", "motionEvents": "Motion events",
}
#: Human names of the statistics.
STAT_LABELS: dict[str, str] = {
    "mean": "mean", "min": "min", "max": "max", "stddev": "standard deviation",
    "sum": "window count", "l10": "L10", "l50": "L50", "l90": "L90",
}
#: The mean of a decibel stream is the energy mean (Leq), not the arithmetic one.
DECIBEL_KINDS = frozenset({"energetic", "level"})

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # gateway and sensor ids (manifest $defs)
_STREAM = re.compile(r"^[a-z][A-Za-z0-9_]{0,31}$")
_DISCOVERY_ID = re.compile(r"^[a-zA-Z0-9_-]+$")  # node_id / object_id of a discovery topic
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def supported(manifest: Mapping[str, Any]) -> str | None:
    """Why Home Assistant discovery cannot be used with this manifest, or None if it can.

    The value templates read the native data message (``values.<stream>.<stat>``); a gateway
    publishing SenML, FIWARE or SensorThings data has no such message on its data topics.

    Args:
        manifest: The transparency manifest.

    Returns:
        None for ``contract.format`` ``native``; otherwise a reason for the configuration error.
    """
    fmt = manifest.get("contract", {}).get("format")
    if fmt == NATIVE:
        return None
    return (f"mqtt.home_assistant needs mqtt.format 'native': Home Assistant's entities read "
            f"the native data messages (values.<stream>.<statistic>), and format {fmt!r} "
            f"publishes none")


def discovery_messages(manifest: Mapping[str, Any], *,
                       discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
                       ) -> list[tuple[str, bytes]]:
    """The retained discovery config messages of every published statistic.

    Args:
        manifest: The transparency manifest (``contract.format`` must be ``native``).
        discovery_prefix: Home Assistant's discovery prefix (its MQTT integration setting).

    Returns:
        (topic, payload) pairs, to be published retained, QoS 1, in a stable order (sensors
        and streams as in the manifest, statistics in manifest order). Payloads are compact
        JSON with sorted keys, UTF-8.

    Raises:
        ValueError: The format is not native, the prefix is not a valid topic prefix, an id or
            stream name does not match the manifest's patterns, or two entities would share
            a discovery topic.
    """
    reason = supported(manifest)
    if reason is not None:
        raise ValueError(reason)
    prefix = _prefix(discovery_prefix)
    messages: dict[str, bytes] = {}
    for topic, config in _configs(manifest, prefix):
        if topic in messages:
            raise ValueError(f"two entities would share the discovery topic {topic!r}")
        messages[topic] = json.dumps(config, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False, allow_nan=False).encode("utf-8")
    return list(messages.items())


def discovery_topics(manifest: Mapping[str, Any], *,
                     discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX) -> list[str]:
    """The config topics :func:`discovery_messages` publishes for this manifest.

    Args:
        manifest: The transparency manifest (any format: only ids and statistics are used).
        discovery_prefix: Home Assistant's discovery prefix.

    Returns:
        The topics, in publishing order.
    """
    prefix = _prefix(discovery_prefix)
    return [topic for topic, _ in _entities(manifest, prefix)]


def removal_messages(previous_manifest: Mapping[str, Any] | None,
                     current_manifest: Mapping[str, Any], *,
                     discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
                     ) -> list[tuple[str, bytes]]:
    """Empty retained payloads for config topics that existed before and no longer do.

    Home Assistant removes a discovered entity when its config topic receives an empty
    payload; publishing it retained also clears the broker's retained config, so the entity
    does not come back on the next Home Assistant start. Use it when a sensor, stream or
    statistic left the configuration (or the gateway was renamed).

    Args:
        previous_manifest: The manifest the gateway published discovery for last time (None:
            nothing was published, nothing to remove).
        current_manifest: The manifest in force now.
        discovery_prefix: Home Assistant's discovery prefix (the same for both).

    Returns:
        ``(topic, b"")`` pairs, to be published retained, in the previous publishing order.
    """
    if previous_manifest is None:
        return []
    current = set(discovery_topics(current_manifest, discovery_prefix=discovery_prefix))
    return [(topic, b"") for topic in discovery_topics(previous_manifest,
                                                       discovery_prefix=discovery_prefix)
            if topic not in current]


# --- building blocks -----------------------------------------------------------------------

def _prefix(discovery_prefix: str) -> str:
    if (not isinstance(discovery_prefix, str) or not discovery_prefix
            or discovery_prefix.startswith("/") or discovery_prefix.endswith("/")
            or "//" in discovery_prefix
            or any(c in discovery_prefix for c in "+#\0")):
        raise ValueError(f"discovery prefix {discovery_prefix!r} is not a topic prefix "
                         "(non-empty, no wildcards, no leading or trailing '/')")
    return discovery_prefix


def _check(pattern: re.Pattern[str], value: Any, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{what} {value!r} does not match {pattern.pattern}")
    return value


def _entities(manifest: Mapping[str, Any], prefix: str
              ) -> Iterable[tuple[str, tuple[Mapping[str, Any], Mapping[str, Any], str]]]:
    """(config topic, (sensor, stream, statistic)) of every published statistic."""
    gateway = _check(_ID, manifest.get("gateway"), "gateway id")
    for sensor in manifest.get("sensors", []):
        sensor_id = _check(_ID, sensor.get("id"), "sensor id")
        for stream in sensor.get("streams", []):
            name = _check(_STREAM, stream.get("name"), "stream name")
            for stat in stream.get("statistics", []):
                if stat not in STATISTICS:
                    raise ValueError(f"unknown statistic {stat!r} of stream {name!r}")
                object_id = _check(_DISCOVERY_ID, f"{sensor_id}_{name}_{stat}", "object id")
                yield (f"{prefix}/{COMPONENT}/{gateway}/{object_id}/config",
                       (sensor, stream, stat))


def _configs(manifest: Mapping[str, Any], prefix: str
             ) -> Iterable[tuple[str, dict[str, Any]]]:
    gateway: str = manifest["gateway"]
    version = str(manifest.get("version", ""))
    root = manifest["contract"]["topic_root"]
    classes: Mapping[str, Any] = manifest.get("privacy", {}).get("classes", {})
    for topic, (sensor, stream, stat) in _entities(manifest, prefix):
        yield topic, _config(gateway, version, root, classes, sensor, stream, stat)


def _config(gateway: str, version: str, root: str, classes: Mapping[str, Any],
            sensor: Mapping[str, Any], stream: Mapping[str, Any], stat: str) -> dict[str, Any]:
    """One sensor entity's discovery config (keys as in Home Assistant's MQTT sensor docs)."""
    sensor_id, name = sensor["id"], stream["name"]
    state_topic = f"{root}/data/{sensor_id}"
    entity = f"{gateway}_{sensor_id}_{name}_{stat}"
    config: dict[str, Any] = {
        "name": _entity_name(sensor, stream, stat),
        "unique_id": f"edgeagent_{entity}",
        # object_id: entity id for Home Assistant before 2025.10 (deprecated there, ignored
        # from 2026.4); default_entity_id: its replacement. Both carry the gateway so that two
        # gateways with a sensor of the same name get distinct entity ids.
        "object_id": entity,
        "default_entity_id": f"{COMPONENT}.{_entity_slug(entity)}",
        "state_topic": state_topic,
        "value_template": value_template(name, stat),
        "json_attributes_topic": state_topic,
        "json_attributes_template": attributes_template(name),
        "availability_topic": f"{root}/status",
        "payload_available": PAYLOAD_AVAILABLE,
        "payload_not_available": PAYLOAD_NOT_AVAILABLE,
        "qos": 1,
        # Every window is a new measurement; a window count is a new total each time, never a
        # running meter (total_increasing would make Home Assistant add them up).
        "state_class": "measurement",
        "expire_after": _expire_after(sensor),
        "device": _device(gateway, version, sensor),
        "origin": {"name": ORIGIN_NAME, "sw_version": version},
    }
    unit = _unit(stream)
    if unit is not None:
        config["unit_of_measurement"] = unit
    device_class = _device_class(stream, stat)
    if device_class is not None:
        config["device_class"] = device_class
    decimals = classes.get(stream.get("quantity"), {}).get("decimals")
    if isinstance(decimals, int) and not isinstance(decimals, bool) and decimals >= 0:
        config["suggested_display_precision"] = decimals
    return config


def value_template(stream: str, stat: str) -> str:
    """Jinja template rendering one statistic of the native data message.

    Renders the number, or ``None`` (Home Assistant's unknown state) when the message has no
    number there: the statistic is null (suppressed) or absent, the stream is absent, or the
    payload is not a JSON object. ``value_json['values']`` is subscripted because
    ``value_json.values`` would be the dict's ``values`` method in Jinja.

    Args:
        stream: Stream key (``^[a-z][A-Za-z0-9_]{0,31}$``).
        stat: Statistic (one of :data:`STATISTICS`).

    Returns:
        The template text.
    """
    _check(_STREAM, stream, "stream name")
    if stat not in STATISTICS:
        raise ValueError(f"unknown statistic {stat!r}")
    return (f"{_STREAM_ENTRY.format(stream=stream)}"
            f"{{% set v = s.get('{stat}') %}}"
            f"{{{{ v if v is number and v is not boolean else '{UNKNOWN}' }}}}")


def attributes_template(stream: str) -> str:
    """Jinja template of the entity's attributes: window, coverage and the stream's suppression.

    Renders a JSON object with exactly ``window_start``, ``window_end``, ``coverage`` (of the
    message) and ``suppressed`` (true/false), ``suppressed_reason`` and ``k`` (of the stream;
    null when absent). Nothing else of the message reaches Home Assistant's attributes.

    Args:
        stream: Stream key.

    Returns:
        The template text.
    """
    _check(_STREAM, stream, "stream name")
    return (f"{_STREAM_ENTRY.format(stream=stream)}"
            "{% set w = d.get('window') %}{% set w = w if w is mapping else {} %}"
            "{{ {'window_start': w.get('start'), 'window_end': w.get('end'),"
            " 'coverage': d.get('coverage'), 'suppressed': s.get('suppressed') is true,"
            " 'suppressed_reason': s.get('suppressed_reason'), 'k': s.get('k')} | tojson }}")


#: Sets ``d`` (the message, or {}) and ``s`` (the stream's entry, or {}) without ever touching
#: an undefined value (Home Assistant renders undefined as an empty string, which would keep
#: the previous state).
_STREAM_ENTRY = ("{{% set d = value_json if value_json is mapping else {{}} %}}"
                 "{{% set vs = d.get('values') %}}{{% set vs = vs if vs is mapping else {{}} %}}"
                 "{{% set s = vs.get('{stream}') %}}{{% set s = s if s is mapping else {{}} %}}")


def _entity_name(sensor: Mapping[str, Any], stream: Mapping[str, Any], stat: str) -> str:
    name = stream["name"]
    label = STREAM_LABELS.get(name) or _label_from_key(name)
    stat_label = STAT_LABELS[stat]
    if stat == "mean" and stream.get("unit") == "dB" and stream.get("kind") in DECIBEL_KINDS:
        stat_label = "energy mean"
    suffix = SIMULATED_SUFFIX if sensor.get("simulated") else ""
    return f"{label} {stat_label}{suffix}"


def _label_from_key(name: str) -> str:
    """``occupancy_bench`` → ``Occupancy bench``; ``fooBar`` → ``Foo bar``."""
    base, _, zone = name.partition("_")
    if base == "occupancy" and zone:
        return f"Occupancy {zone}"
    words = _CAMEL.sub(" ", name).replace("_", " ").split()
    text = " ".join(w if w.isupper() else w.lower() for w in words)
    return text[:1].upper() + text[1:]


def _entity_slug(text: str) -> str:
    """An entity id object part: lowercase letters, digits, single inner underscores."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return re.sub(r"_+", "_", slug)


def _unit(stream: Mapping[str, Any]) -> str | None:
    unit = stream.get("unit")
    if unit == "count":
        return COUNT_UNITS.get(stream.get("quantity", ""))
    if unit in UNITS:
        return UNITS[unit]
    return unit if isinstance(unit, str) and unit else None  # unknown unit: as declared


def _device_class(stream: Mapping[str, Any], stat: str) -> str | None:
    if stat not in LOCATION_STATISTICS:
        return None
    unit = stream.get("unit")
    if unit == "dB" and stream.get("quantity") == "noise":
        return SOUND_PRESSURE
    return DEVICE_CLASSES.get((stream.get("name", ""), unit or ""))


def _expire_after(sensor: Mapping[str, Any]) -> int:
    """Seconds after the last data message when the values become unavailable.

    Three windows; with a duty cycle at least three measuring periods, in case no window is
    sent while the sensor sleeps.
    """
    window = sensor.get("window_s") or 0
    duty = sensor.get("duty_cycle") or {}
    longest = max(float(window), float(duty.get("period_s") or 0))
    if not math.isfinite(longest) or longest <= 0:
        raise ValueError(f"sensor {sensor.get('id')!r} has no positive window_s")
    return max(1, round(EXPIRE_WINDOWS * longest))


def _device(gateway: str, version: str, sensor: Mapping[str, Any]) -> dict[str, Any]:
    """One Home Assistant device per sensor; never a serial number or hardware address."""
    model = str(sensor.get("model") or "").strip()
    device: dict[str, Any] = {
        "identifiers": [f"edgeagent_{gateway}_{sensor['id']}"],
        "name": f"{gateway} {sensor['id']}",
        "sw_version": version,
    }
    if model:
        device["model"] = model
        words = model.split()
        if len(words) > 1:  # "Plantower PMS5003" → Plantower; a bare model names no maker
            device["manufacturer"] = words[0]
    return device
