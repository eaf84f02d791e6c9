"""SenML encoder (edgeagent/encoders/senml.py): valid RFC 8428 packs that lose nothing.

Every pack is checked three ways: against deploy/schemas/senml.schema.json (the RFC's labels
and types), by ``rfc_problems`` below (what a schema cannot say: resolved names, one version
per pack, registered units, absolute times, number syntax), and by decoding the resolved
records (RFC 8428 §4.6) back into the native message, which must equal the original.
"""

from __future__ import annotations

import calendar
import copy
import datetime as dt
import json
import math
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator, Draft202012Validator

from edgeagent.driver import available_drivers, load_driver
from edgeagent.encoders import Encoded, Encoder, senml
from edgeagent.encoders.senml import BASE_NAME_PREFIX, SenmlEncoder

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "deploy" / "schemas"
EXAMPLE = json.loads((ROOT / "tests" / "contract_examples" / "data.json").read_text())
SENML_SCHEMA = json.loads((SCHEMAS / "senml.schema.json").read_text(encoding="utf-8"))
DATA_SCHEMA = json.loads((SCHEMAS / "data.schema.json").read_text(encoding="utf-8"))
SENML = Draft202012Validator(SENML_SCHEMA)
DRAFT_07 = Draft7Validator({k: v for k, v in SENML_SCHEMA.items() if k != "$schema"})
DATA = Draft202012Validator(DATA_SCHEMA)
PRIMARY_ENCODER = SenmlEncoder()
SECONDARY_ENCODER = SenmlEncoder(secondary_units=True)
ENCODERS = [pytest.param(PRIMARY_ENCODER, id="primary"),
            pytest.param(SECONDARY_ENCODER, id="secondary")]

# --- the SenML units registry, embedded for the checker -------------------------------------
# Source: IANA "Sensor Measurement Lists (SenML)" registry, https://www.iana.org/assignments/senml
# ("SenML Units" and "Secondary Units"). Initial contents: RFC 8428 §12.1 (primary units),
# RFC 8798 §2 (B … deg added to the primary units) and §3 (the secondary units registry, with
# scale and offset to a primary unit). Later registrations (NTU; ppb, ppt, VAh, mg/l, ug/l,
# g/l) as mirrored from IANA in RIOT's sys/include/senml.h (2021). Read for this test from the
# IETF drafts' sources (core-wg/senml-spec, core-wg/senml-more-units) and that header; the live
# registry page itself was not read in full.
PRIMARY_UNITS = frozenset({
    # RFC 8428 §12.1
    "m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C",
    "V", "F", "Ohm", "S", "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2",
    "m3", "l", "m/s", "m/s2", "m3/s", "l/s", "W/m2", "cd/m2", "bit", "bit/s", "lat", "lon",
    "pH", "dB", "dBW", "Bspl", "count", "/", "%", "%RH", "%EL", "EL", "1/s", "1/min",
    "beat/min", "beats", "S/m",
    # RFC 8798 §2
    "B", "VA", "VAs", "var", "vars", "J/m", "kg/m3", "deg",
    # later registration (ISO 7027-1)
    "NTU",
})
#: Marked "*" in the registry: NOT RECOMMENDED to be produced by new implementations.
NOT_RECOMMENDED = frozenset({"g", "l", "l/s", "Bspl", "%", "1/min", "beat/min", "beats", "deg"})
#: Secondary unit → (primary unit, scale, offset): value × scale + offset = primary value.
SECONDARY_UNITS: dict[str, tuple[str, Fraction, Fraction]] = {
    unit: (primary, Fraction(scale), Fraction(offset))
    for unit, primary, scale, offset in [
        # RFC 8798 §3
        ("ms", "s", "0.001", 0), ("min", "s", 60, 0), ("h", "s", 3600, 0),
        ("MHz", "Hz", 1000000, 0), ("kW", "W", 1000, 0), ("kVA", "VA", 1000, 0),
        ("kvar", "var", 1000, 0), ("Ah", "C", 3600, 0), ("Wh", "J", 3600, 0),
        ("kWh", "J", 3600000, 0), ("varh", "vars", 3600, 0), ("kvarh", "vars", 3600000, 0),
        ("kVAh", "VAs", 3600000, 0), ("Wh/km", "J/m", "3.6", 0), ("KiB", "B", 1024, 0),
        ("GB", "B", 1000000000, 0), ("Mbit/s", "bit/s", 1000000, 0), ("B/s", "bit/s", 8, 0),
        ("MB/s", "bit/s", 8000000, 0), ("mV", "V", "0.001", 0), ("mA", "A", "0.001", 0),
        ("dBm", "dBW", 1, -30), ("ug/m3", "kg/m3", "1e-9", 0), ("mm/h", "m/s", "1/3600000", 0),
        ("m/h", "m/s", "1/3600", 0), ("ppm", "/", "1e-6", 0), ("/100", "/", "0.01", 0),
        ("/1000", "/", "0.001", 0), ("hPa", "Pa", 100, 0), ("mm", "m", "0.001", 0),
        ("cm", "m", "0.01", 0), ("km", "m", 1000, 0), ("km/h", "m/s", "5/18", 0),
        # later registrations
        ("ppb", "/", "1e-9", 0), ("ppt", "/", "1e-12", 0), ("VAh", "VAs", 3600, 0),
        ("mg/l", "kg/m3", "0.001", 0), ("ug/l", "kg/m3", "1e-6", 0), ("g/l", "kg/m3", 1, 0),
    ]
}

#: What each native unit means, independent of the encoder: (primary SenML unit, native value
#: × factor = value in that unit); None = no registered SenML unit exists.
NATIVE_UNITS: dict[str, tuple[str | None, Fraction]] = {
    "ug/m3": ("kg/m3", Fraction("1e-9")), "Cel": ("Cel", Fraction(1)), "%RH": ("%RH", Fraction(1)),
    "dB": ("dB", Fraction(1)), "count": ("count", Fraction(1)), "hPa": ("Pa", Fraction(100)),
    "um": ("m", Fraction("1e-6")), "/cm3": (None, Fraction(1)), "1": (None, Fraction(1)),
    "%": ("/", Fraction("0.01")),
}

# --- RFC 8428 rules a schema cannot express ------------------------------------------------

LABELS = {"bn": str, "bt": float, "bu": str, "bv": float, "bs": float, "bver": int, "n": str,
          "u": str, "v": float, "vs": str, "vb": bool, "vd": str, "s": float, "t": float,
          "ut": float}
VALUE_LABELS = ("v", "vs", "vb", "vd")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-:./_]*$")  # §4.5.1, on the resolved name
STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
SECONDARY_FEATURE = 1 << 4  # RFC 9100 §4, feature code 4


def _typed(value: object, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def resolve(pack: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RFC 8428 §4.6: apply base name, time, unit, value and sum; keep bver if not 10."""
    base: dict[str, Any] = {}
    resolved = []
    for record in pack:
        base.update({k: v for k, v in record.items() if k.startswith("b")})
        out: dict[str, Any] = {"n": base.get("bn", "") + record.get("n", "")}
        out["t"] = base.get("bt", 0) + record.get("t", 0)
        unit = record.get("u", base.get("bu"))
        if unit is not None:
            out["u"] = unit
        if "v" in record:
            out["v"] = base.get("bv", 0) + record["v"]
        for label in ("vs", "vb", "vd", "ut"):
            if label in record:
                out[label] = record[label]
        if "s" in record or "bs" in base:
            out["s"] = base.get("bs", 0) + record.get("s", 0)
        if base.get("bver", 10) != 10:
            out["bver"] = base["bver"]
        resolved.append(out)
    return resolved


def rfc_problems(payload: bytes) -> list[str]:
    """Violations of RFC 8428/8798/9100 that deploy/schemas/senml.schema.json cannot catch."""
    problems: list[str] = []
    text = payload.decode("utf-8")
    pack = json.loads(text, parse_constant=lambda c: problems.append(c) or float(c))
    for number in NUMBER.findall(STRING_LITERAL.sub('""', text)):  # §5
        mantissa, _, exponent = number.lower().partition("e")
        if "E" in number:
            problems.append(f"{number}: exponent must use a lower-case e")
        if len(mantissa) >= 19 or len(exponent) >= 4:
            problems.append(f"{number}: mantissa/exponent too long")
    if not isinstance(pack, list) or not pack:
        return [*problems, "a pack is a non-empty array"]
    versions = {record.get("bver") for record in pack if "bver" in record}
    if len(versions) > 1:
        problems.append(f"one version per pack, got {versions}")
    version = next(iter(versions)) if versions else 10
    if versions and "bver" not in pack[0]:
        problems.append("bver belongs in the first record")
    if not _typed(version, int) or version & 0b1111 != 0b1010:
        problems.append(f"bver {version!r}: RFC 9100 reserved bits must read 10")
    for index, record in enumerate(pack):
        for label, value in record.items():
            if label not in LABELS:
                problems.append(f"#{index}: label {label!r} is not registered by RFC 8428")
            elif not _typed(value, LABELS[label]):
                problems.append(f"#{index}: {label} has the wrong type: {value!r}")
        values = [label for label in VALUE_LABELS if label in record]
        if len(values) > 1 or (not values and "s" not in record):
            problems.append(f"#{index}: exactly one value field needed, got {values}")  # §4.2
    resolved = resolve(pack)
    names = [record["n"] for record in resolved]
    if len(set(names)) != len(names):
        problems.append("resolved names repeat within one pack")
    absolute = "bt" in pack[0]
    previous = -math.inf
    for record in resolved:
        name = record["n"]
        if not NAME.match(name):
            problems.append(f"{name!r}: not a valid resolved name (§4.5.1)")
        unit = record.get("u")
        if unit is not None:
            secondary = unit in SECONDARY_UNITS and version & SECONDARY_FEATURE
            if unit not in PRIMARY_UNITS and not secondary:
                problems.append(f"{name}: unit {unit!r} not registered (for version {version})")
            if unit in NOT_RECOMMENDED:
                problems.append(f"{name}: unit {unit!r} must not be produced")
        if absolute and record["t"] < senml.ABSOLUTE_TIME_MIN:
            problems.append(f"{name}: time {record['t']} is not absolute (§4.5.3)")
        if not absolute and record["t"] > 0:
            problems.append(f"{name}: relative time {record['t']} lies in the future")
        if record["t"] < previous:
            problems.append(f"{name}: resolved records must be in chronological order (§4.6)")
        previous = record["t"]
    return problems


# --- the inverse: resolved records back to the native message -------------------------------


def _si(record: dict[str, Any], native_unit: str) -> float:
    """The native statistic from a resolved record, using only the registry and NATIVE_UNITS."""
    value = record["v"]
    primary, factor = NATIVE_UNITS.get(native_unit, (None, Fraction(1)))
    unit = record.get("u")
    if unit is None:
        assert primary is None, f"{record['n']}: {native_unit} has the SenML unit {primary}"
        return value
    if unit in SECONDARY_UNITS:
        registered, scale, offset = SECONDARY_UNITS[unit]
        assert offset == 0
    else:
        registered, scale = unit, Fraction(1)
    assert registered == primary, f"{record['n']}: {unit} is not {native_unit}"
    if scale == factor:
        return value
    return float(Fraction(repr(value)) * scale / factor)


def native_from_senml(pack: list[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild the native data message from the resolved records alone."""
    body: dict[str, Any] = {"window": {}, "values": {}, "corrections": []}
    corrections: dict[tuple[str, str], dict[str, Any]] = {}
    times: dict[str, float] = {}
    for record in resolve(pack):
        assert record["n"].startswith(BASE_NAME_PREFIX)
        gateway, sensor, local = record["n"][len(BASE_NAME_PREFIX):].split(":", 2)
        body["gateway"], body["sensor"] = gateway, sensor
        times[local] = record["t"]
        value = next(record[label] for label in VALUE_LABELS if label in record)
        kind, parts = _owner(local)
        if kind == "window":
            body["window"][parts[1]] = value
        elif kind == "message":
            body[local] = value
        elif kind == "calibration":
            body.setdefault("calibration", {"date": None, "reference_db": None})[parts[1]] = value
        elif kind == "correction":
            key = (parts[0], parts[2])
            entry = corrections.setdefault(key, {"stream": key[0], "method": key[1],
                                                 "parameters": {}})
            _field(entry, parts[3:], record, value)
        else:
            _field(body["values"].setdefault(parts[0], {}), parts[1:], record, value)
    body["corrections"] = list(corrections.values())
    body["_times"] = times
    return body


def _owner(local: str) -> tuple[str, list[str]]:
    """What a record name (after the base name) belongs to, and its parts."""
    parts = local.split(":")
    if len(parts) == 1:
        return "message", parts
    if len(parts) == 2 and parts[0] == "window" and parts[1] in senml.WINDOW_KEYS:
        return "window", parts
    if len(parts) == 2 and parts[0] == "calibration" and parts[1] in senml.CALIBRATION_KEYS:
        return "calibration", parts
    if len(parts) >= 4 and parts[1] == "corrected":
        return "correction", parts
    return "stream", parts


def _field(entry: dict[str, Any], field: list[str], record: dict[str, Any], value: Any) -> None:
    if field[0] == "flag":
        entry.setdefault("flags", []).append(field[1])
    elif field[0] in ("humidity", "parameters", "dp"):
        entry.setdefault(field[0], {})[field[1]] = value
    elif len(field) == 2 and field[1] in ("suppressed", "null"):
        assert field[0] in senml.STATISTICS and "v" not in record
        entry[field[0]] = None
    elif field[0] in senml.STATISTICS:
        entry[field[0]] = _si(record, entry["unit"])
    else:
        assert len(field) == 1, field
        entry[field[0]] = value


def _epoch(stamp: str) -> float:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = calendar.timegm(dt.datetime.fromisoformat(whole).timetuple())
    return seconds + float(f"0.{fraction or 0}")


def check(encoder: SenmlEncoder, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Encode one body and run every check; returns the pack."""
    assert list(DATA.iter_errors(body)) == [], "test input must be a valid native message"
    suffix = f"data/{body['sensor']}"
    [encoded] = encoder.encode(suffix, copy.deepcopy(body))
    assert encoded.topic == suffix
    text = encoded.payload.decode("utf-8")
    pack = json.loads(text)
    assert text == json.dumps(pack, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    assert [e.message for e in SENML.iter_errors(pack)] == []
    assert rfc_problems(encoded.payload) == []
    assert "bver" not in pack[0] if encoder is PRIMARY_ENCODER else pack[0]["bver"] == 26
    decoded = native_from_senml(pack)
    times = decoded.pop("_times")
    assert decoded == body
    end, start = _epoch(body["window"]["end"]), _epoch(body["window"]["start"])
    if "bt" in pack[0]:
        assert times["window:start"] == pytest.approx(start, abs=1e-3)
        assert all(t == pytest.approx(end, abs=1e-3) for k, t in times.items()
                   if k != "window:start")
    else:
        assert times["window:start"] == pytest.approx(start - end, abs=1e-3)
    _never_numeric(body, pack)
    return pack


def _never_numeric(body: dict[str, Any], pack: list[dict[str, Any]]) -> None:
    """No suppressed or null statistic shows up as a number, under any name."""
    by_name = {record["n"]: record for record in resolve(pack)}
    base = pack[0]["bn"]
    for name, stream in body["values"].items():
        for stat in senml.STATISTICS:
            if stat in stream and stream[stat] is None:
                assert f"{base}{name}:{stat}" not in by_name
                marker = by_name[f"{base}{name}:{stat}:"
                                 f"{'suppressed' if stream.get('suppressed') else 'null'}"]
                assert "v" not in marker
        if stream.get("suppressed"):
            numeric = {":".join(parts[1:]) for n, r in by_name.items() if "v" in r
                       for kind, parts in [_owner(n.removeprefix(base))]
                       if kind == "stream" and parts[0] == name}
            assert numeric <= {"n", "k"}, numeric


def _records(pack: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Resolved records (without bver) by the part of the name after the base name."""
    base = pack[0]["bn"]
    return {r["n"].removeprefix(base): {k: v for k, v in r.items() if k != "bver"}
            for r in resolve(pack)}


# --- synthetic native messages ----------------------------------------------------------------


def body(values: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(EXAMPLE)
    if values is not None:
        payload["values"] = values
    for key, value in changes.items():
        if key in ("start", "end", "seconds", "clock", "partial"):
            payload["window"][key] = value
        else:
            payload[key] = value
    return payload


def stream(unit: str, quantity: str = "climate", **stats: Any) -> dict[str, Any]:
    return {"unit": unit, "quantity": quantity, **stats}


KAPPA = {"stream": "pm25", "method": "kappa-koehler", "reference": "Crilley et al. (2018)",
         "parameters": {"kappa": 0.4, "rh_max": 95.0, "density_ratio": 1.65}, "rh_max": 95.0,
         "humidity": {"sensor": "rht", "stream": "relativeHumidity"}, "unit": "ug/m3", "n": 50,
         "mean": 6.1, "min": 5.0, "max": 7.2, "stddev": 0.4}
EPA = {"stream": "pm10", "method": "epa-barkjohn-2021", "description": "EPA US-wide correction",
       "reference": "Barkjohn, Gantt & Clements (2021), doi:10.5194/amt-14-4617-2021",
       "parameters": {"slope": 0.524, "rh_coefficient": -0.0862, "intercept": 5.75,
                      "cf1_max": 570.0}, "rh_max": 100.0,
       "humidity": {"sensor": "pm-north", "stream": "relativeHumidity"}, "unit": "ug/m3",
       "n": 12, "mean": 11.25}
PM = {"pm25": stream("ug/m3", "particulate", n=59, mean=8.12, min=7.0, max=10.0, stddev=0.81),
      "pm10": stream("ug/m3", "particulate", n=59, mean=14.3)}


# --- the contract example ---------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ENCODERS)
def test_contract_example(encoder: SenmlEncoder) -> None:
    pack = check(encoder, EXAMPLE)
    records = _records(pack)
    assert pack[0]["bn"] == "urn:dev:edgeagent:ams-oost-lp0412:pm-north:"
    assert pack[0]["bt"] == calendar.timegm((2026, 1, 1, 10, 1, 0))  # window end
    assert records["window:start"] == {"n": pack[0]["bn"] + "window:start",
                                       "t": pack[0]["bt"] - 60, "vs": "2026-01-01T10:00:00Z"}
    assert records["seq"]["v"] == 17
    assert records["store"]["vs"] == "3f2a9c4e8b7d4e1f9a6b5c4d3e2f1a0b"
    assert records["coverage"] == {"n": pack[0]["bn"] + "coverage", "t": pack[0]["bt"],
                                   "u": "/", "v": 0.98}
    assert records["pm25:n"]["u"] == "count"
    if encoder is PRIMARY_ENCODER:
        assert (records["pm25:mean"]["u"], records["pm25:mean"]["v"]) == ("kg/m3", 8.12e-9)
    else:
        assert (records["pm25:mean"]["u"], records["pm25:mean"]["v"]) == ("ug/m3", 8.12)
    assert (records["laeq:mean"]["u"], records["laeq:mean"]["v"]) == ("dB", 55.1)
    assert "people:sum" not in records
    assert records["people:sum:suppressed"]["vs"] == "below_k"
    assert records["people:suppressed"]["vb"] is True
    assert records["people:k"] == {"n": pack[0]["bn"] + "people:k", "t": pack[0]["bt"],
                                   "u": "count", "v": 5}


def test_the_schema_example_is_the_encoded_contract_example() -> None:
    [encoded] = PRIMARY_ENCODER.encode("data/pm-north", EXAMPLE)
    assert SENML_SCHEMA["examples"] == [json.loads(encoded.payload)]


def test_the_payload_is_deterministic_utf8() -> None:
    reordered = dict(reversed(list(copy.deepcopy(EXAMPLE).items())))
    reordered["values"] = dict(reversed(list(reordered["values"].items())))
    model = body(model="Sensirion SPS30 – ünïcode")
    first = PRIMARY_ENCODER.encode("data/pm-north", model)[0].payload
    assert first == PRIMARY_ENCODER.encode("data/pm-north", copy.deepcopy(model))[0].payload
    assert "Sensirion SPS30 – ünïcode".encode() in first and b"\\u" not in first
    assert (PRIMARY_ENCODER.encode("data/pm-north", reordered)
            == PRIMARY_ENCODER.encode("data/pm-north", EXAMPLE))


def test_the_encoder_meets_the_protocol_and_is_pure() -> None:
    assert isinstance(PRIMARY_ENCODER, Encoder) and PRIMARY_ENCODER.name == "senml"
    original = copy.deepcopy(EXAMPLE)
    result = PRIMARY_ENCODER.encode("data/pm-north", EXAMPLE)
    assert original == EXAMPLE
    assert isinstance(result[0], Encoded) and senml.CONTENT_TYPE == "application/senml+json"


@pytest.mark.parametrize("suffix", ["events", "health", "manifest", "status"])
def test_only_data_messages_are_encoded(suffix: str) -> None:
    events = json.loads((ROOT / "tests" / "contract_examples" / "events.json").read_text())
    assert PRIMARY_ENCODER.encode(suffix, events) == []


# --- units --------------------------------------------------------------------------------

EXPECTED_UNITS = {  # native unit → (u for version 10, u for version 26)
    "ug/m3": ("kg/m3", "ug/m3"), "Cel": ("Cel", "Cel"), "%RH": ("%RH", "%RH"),
    "dB": ("dB", "dB"), "count": ("count", "count"), "hPa": ("Pa", "hPa"), "um": ("m", "m"),
    "/cm3": (None, None), "1": (None, None), "furlong": (None, None),
}


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("unit", sorted(EXPECTED_UNITS))
def test_every_native_unit(encoder: SenmlEncoder, unit: str) -> None:
    values = {"x": stream(unit, n=60, mean=1013.25, min=0.35, max=1.0e3, stddev=0.0)}
    records = _records(check(encoder, body(values)))
    expected = EXPECTED_UNITS[unit][encoder is SECONDARY_ENCODER]
    for stat in ("mean", "min", "max", "stddev"):
        assert records[f"x:{stat}"].get("u") == expected
    assert records["x:unit"]["vs"] == unit


def test_converted_values_are_the_short_decimals() -> None:
    values = {"p": stream("hPa", n=1, mean=1013.25), "d": stream("um", n=1, mean=0.3),
              "m": stream("ug/m3", "particulate", n=1, mean=0.1, max=999.9)}
    records = _records(check(PRIMARY_ENCODER, body(values)))
    assert records["p:mean"]["v"] == 101325
    assert json.dumps(records["d:mean"]["v"]) == "3e-07"
    assert json.dumps(records["m:max"]["v"]) == "9.999e-07"


def test_every_unit_the_drivers_declare_is_mapped() -> None:
    declared = set(re.findall(r'StreamSpec\([^,()]+,\s*"([^"]+)"',
                              "".join(p.read_text() for p in (ROOT / "drivers").glob("*.py"))))
    for name in available_drivers():
        cls = load_driver(name)
        declared |= {spec.unit for spec in cls.streams(cls.Config.model_validate(
            cls.sample_config))}
    assert declared, "no units found"
    assert declared <= set(senml.PRIMARY) and declared <= set(senml.SECONDARY)
    assert declared <= set(NATIVE_UNITS)


def test_the_unit_tables_only_name_registered_units() -> None:
    for unit in senml.PRIMARY.values():
        assert unit.senml is None or (unit.senml in PRIMARY_UNITS - NOT_RECOMMENDED)
    for unit in senml.SECONDARY.values():
        assert unit.senml is None or unit.senml in PRIMARY_UNITS | set(SECONDARY_UNITS)


# --- suppression, flags, corrections, windows ----------------------------------------------


@pytest.mark.parametrize("encoder", ENCODERS)
def test_a_published_count_of_zero_is_a_number(encoder: SenmlEncoder) -> None:
    values = {"people": stream("count", "people_count", n=60, sum=0, suppressed=False, k=5)}
    records = _records(check(encoder, body(values)))
    assert records["people:sum"]["v"] == 0 and records["people:suppressed"]["vb"] is False


@pytest.mark.parametrize("encoder", ENCODERS)
def test_short_window_suppression(encoder: SenmlEncoder) -> None:
    values = {"pm25": stream("ug/m3", "particulate", n=10, mean=None, min=None, max=None,
                             stddev=None, suppressed=True, suppressed_reason="short_window")}
    records = _records(check(encoder, body(values, partial=True,
                                           start="2026-01-01T10:00:50.250Z")))
    for stat in ("mean", "min", "max", "stddev"):
        marker = records[f"pm25:{stat}:suppressed"]
        assert marker["vs"] == "short_window" and "v" not in marker and "u" not in marker
    assert records["window:partial"]["vb"] is True
    assert records["window:start"]["t"] == pytest.approx(_epoch("2026-01-01T10:00:50.250Z"))


def test_a_null_statistic_without_suppression_is_not_a_number() -> None:
    values = {"t": stream("Cel", n=1, mean=4.0, stddev=None)}
    records = _records(check(PRIMARY_ENCODER, body(values)))
    assert records["t:stddev:null"]["vb"] is True and "t:stddev" not in records


def test_flags() -> None:
    values = {"pm25": {**PM["pm25"], "flags": ["high_humidity", "stuck"]},
              "laeq": stream("dB", "noise", n=60, mean=40.0, flags=["stuck"])}
    records = _records(check(PRIMARY_ENCODER, body(values)))
    assert records["pm25:flag:high_humidity"]["vb"] is True
    assert records["pm25:flag:stuck"]["vb"] is True and records["laeq:flag:stuck"]["vb"] is True
    assert not any(name.startswith("pm10:flag") for name in records)


def test_a_differentially_private_count_says_which_noise_it_carries() -> None:
    people = stream("count", "people_count", n=300, sum=17, suppressed=False,
                    dp={"epsilon": 0.1, "mechanism": "geometric"})
    records = _records(check(PRIMARY_ENCODER, body({"people": people})))
    assert records["people:sum"]["v"] == 17 and records["people:dp:epsilon"]["v"] == 0.1
    assert records["people:dp:mechanism"]["vs"] == "geometric"


@pytest.mark.parametrize("encoder", ENCODERS)
def test_corrections(encoder: SenmlEncoder) -> None:
    records = _records(check(encoder, body(PM, corrections=[KAPPA, EPA])))
    kappa = "pm25:corrected:kappa-koehler:"
    assert records[kappa + "mean"]["u"] == ("kg/m3", "ug/m3")[encoder is SECONDARY_ENCODER]
    assert records[kappa + "n"]["v"] == 50 and records[kappa + "rh_max"]["u"] == "%RH"
    parameter = records[kappa + "parameters:kappa"]
    assert parameter["v"] == 0.4 and "u" not in parameter
    assert records["pm10:corrected:epa-barkjohn-2021:description"]["vs"].startswith("EPA")


def test_calibration_and_level_statistics() -> None:
    level = stream("dB", "noise", n=600, mean=61.2, min=50.1, max=80.3, l10=66.0, l50=58.2,
                   l90=52.4)
    calibrated = {"state": "calibrated", "date": "2025-12-01T09:00:00Z", "offset_db": 120.5,
                  "reference_db": 94.0}
    records = _records(check(PRIMARY_ENCODER, body({"laf": level}, calibration=calibrated)))
    assert records["laf:l90"]["v"] == 52.4 and records["calibration:offset_db"]["u"] == "dB"
    uncalibrated = {"state": "uncalibrated", "date": None, "offset_db": 110.0,
                    "reference_db": None}
    records = _records(check(PRIMARY_ENCODER, body({"laf": level}, calibration=uncalibrated)))
    assert "calibration:date" not in records and "calibration:reference_db" not in records


def test_empty_and_zero_sample_windows() -> None:
    check(PRIMARY_ENCODER, body({}))
    records = _records(check(PRIMARY_ENCODER, body({"pm25": stream("ug/m3", "particulate",
                                                                   n=0)})))
    assert records["pm25:n"]["v"] == 0 and not any(k.startswith("pm25:m") for k in records)


def test_an_unsynced_clock_before_1978_is_sent_without_base_time() -> None:
    pack = check(PRIMARY_ENCODER, body(start="1970-01-01T00:04:00Z", end="1970-01-01T00:05:00Z",
                                       clock="unsynced"))
    assert "bt" not in pack[0]
    records = _records(pack)
    assert records["window:start"]["t"] == -60 and records["window:clock"]["vs"] == "unsynced"


@pytest.mark.parametrize(("suffix", "payload", "match"), [
    ("data/pm-south", EXAMPLE, "not the data topic"),
    ("data/pm-north", body(raw=[1, 2]), "unknown keys"),
    ("data/pm-north", body({"pm25": {**PM["pm25"], "median": 8.0}}), "unknown keys"),
    ("data/pm-north", body(PM, corrections=[{**KAPPA, "method": "rivm 2020"}]), "method"),
    ("data/pm-north", body(PM, corrections=[KAPPA, KAPPA]), "two corrections"),
    ("data/pm-north", body(end="2026-02-30T10:01:00Z"), "day is out of range"),
])
def test_what_cannot_be_encoded_is_refused(suffix: str, payload: dict[str, Any],
                                           match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PRIMARY_ENCODER.encode(suffix, payload)


def test_the_encoder_knows_every_key_of_the_native_schema() -> None:
    defs = DATA_SCHEMA["$defs"]
    assert set(DATA_SCHEMA["properties"]) == senml.TOP_LEVEL_KEYS
    assert set(defs["window"]["properties"]) == senml.WINDOW_KEYS
    assert set(defs["stream"]["properties"]) == senml.STREAM_KEYS
    assert set(defs["correction"]["properties"]) == senml.CORRECTION_KEYS
    assert set(DATA_SCHEMA["properties"]["calibration"]["properties"]) == senml.CALIBRATION_KEYS
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", key)
               for key in defs["correction"]["properties"]["parameters"]["properties"])


# --- the schema and the checker ----------------------------------------------------------------

ONLY_2019_OR_LATER = {"prefixItems", "unevaluatedProperties", "unevaluatedItems",
                      "dependentRequired", "dependentSchemas", "$anchor", "$dynamicRef",
                      "$dynamicAnchor", "$recursiveRef", "minContains", "maxContains",
                      "contentSchema"}


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def test_the_schema_follows_the_contract_document_rules() -> None:
    """The rules tests/test_contract_documents.py applies to the native schemas."""
    Draft202012Validator.check_schema(SENML_SCHEMA)
    assert SENML_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SENML_SCHEMA["$id"] == "urn:edgeagent:schema:senml:1"
    assert SENML_SCHEMA["title"].strip() and len(SENML_SCHEMA["description"]) > 80
    for path, node in _walk(SENML_SCHEMA):
        if not isinstance(node, dict) or "/examples" in path:
            continue
        if path.endswith(("/properties", "/patternProperties", "/$defs")):
            continue
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, path
        assert not ONLY_2019_OR_LATER & set(node), path
        if "$ref" in node:
            assert set(node) <= {"$ref", "description", "title"}, path
    Draft7Validator.check_schema({k: v for k, v in SENML_SCHEMA.items() if k != "$schema"})
    text = (SCHEMAS / "senml.schema.json").read_text(encoding="utf-8")
    assert re.findall(r"[a-z][a-z0-9+.-]*://([^/\s'\"`]+)", text) == ["json-schema.org"]
    assert not re.findall(r"@([a-z0-9.-]+)", text)
    labels = set(SENML_SCHEMA["$defs"]["record"]["properties"])
    assert labels == set(LABELS)


GOOD = {"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1276020076, "n": "voltage", "u": "V",
        "v": 120.1}
BAD_PACKS = [
    ("empty pack", [], "schema"),
    ("unknown label", [{**GOOD, "x": 1}], "schema"),
    ("must-understand label", [{**GOOD, "bx_": 1}], "schema"),
    ("two values", [{**GOOD, "vs": "120"}], "schema"),
    ("no value", [{"n": "voltage"}], "schema"),
    ("space in a name", [{**GOOD, "n": "volt age"}], "schema"),
    ("string time", [{**GOOD, "t": "now"}], "schema"),
    ("padded data value", [{**GOOD, "v": None, "vd": "AQ=="}], "schema"),
    ("name starting with a dot", [{"n": ".voltage", "v": 1}], "rfc"),
    ("unregistered unit", [{**GOOD, "u": "ug/m3"}], "rfc"),
    ("starred unit", [{**GOOD, "u": "%"}], "rfc"),
    ("secondary unit with bver 10", [{**GOOD, "bver": 10, "u": "hPa"}], "rfc"),
    ("bver with reserved bits wrong", [{**GOOD, "bver": 27}], "rfc"),
    ("two versions", [{**GOOD, "bver": 26}, {"n": "b", "v": 1, "bver": 10}], "rfc"),
    ("repeated name", [GOOD, {"n": "voltage", "v": 1}], "rfc"),
    ("relative time after absolute", [GOOD, {"bt": 0, "n": "b", "v": 1}], "rfc"),
    ("out of order", [GOOD, {"n": "b", "t": -5, "v": 1}], "rfc"),
    ("upper-case exponent", b'[{"n":"a","v":1E-9}]', "rfc"),
    ("NaN", b'[{"n":"a","v":NaN}]', "rfc"),
]


@pytest.mark.parametrize(("pack", "where"), [pytest.param(p, w, id=why)
                                             for why, p, w in BAD_PACKS])
def test_bad_packs_are_caught(pack: Any, where: str) -> None:
    if isinstance(pack, bytes):
        payload = pack
    else:
        pack = [{k: v for k, v in r.items() if v is not None} for r in pack]
        payload = json.dumps(pack).encode()
    document = json.loads(payload, parse_constant=float)
    schema_errors = list(SENML.iter_errors(document))
    assert DRAFT_07.is_valid(document) == (not schema_errors)  # AsyncAPI reads draft-07
    if where == "schema":
        assert schema_errors
    else:
        assert not schema_errors and rfc_problems(payload)


def test_rfc_style_packs_pass() -> None:
    for pack in ([GOOD, {"n": "current", "t": 5, "u": "A", "v": 1.2}],
                 [{"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1}],
                 [{**GOOD, "bver": 26, "u": "hPa"}, {"n": "b", "vb": True}]):
        payload = json.dumps(pack).encode()
        assert list(SENML.iter_errors(pack)) == [] and rfc_problems(payload) == []


# --- property: random valid native messages --------------------------------------------------

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_IDS = st.builds(str.__add__, st.sampled_from(_LOWER + "0123456789"),
                 st.text(alphabet=_LOWER + "0123456789_-", max_size=8))
_STREAM_NAMES = st.sampled_from(["pm25", "pm10", "nc05", "typical_size", "relativeHumidity",
                                 "laeq", "people", "window", "calibration", "seq", "corrected",
                                 "n", "flag"]) | st.builds(
    str.__add__, st.sampled_from(_LOWER), st.text(alphabet=_LOWER + "ABCXYZ0129_", max_size=8))
_UNITS = st.sampled_from([*NATIVE_UNITS, "ppm", "x"])
#: At most 15 significant digits, like everything the privacy gate publishes.
_NUMBERS = st.integers(-10**9, 10**9).map(lambda i: i / 1000) | st.integers(0, 10**6)
_STATS = st.lists(st.sampled_from(senml.STATISTICS), unique=True, max_size=8)
_QUANTITIES = st.sampled_from(["particulate", "climate", "noise", "people_count"])


def _stamp(milliseconds: int) -> str:
    seconds, ms = divmod(milliseconds, 1000)
    text = dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


@st.composite
def _streams(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {"unit": draw(_UNITS), "quantity": draw(_QUANTITIES),
                             "n": draw(st.integers(0, 10**5))}
    mode = draw(st.sampled_from(["values", "below_k", "short_window", "nulls", "empty"]))
    stats = draw(_STATS)
    if mode == "empty":
        entry["n"] = 0
    elif mode == "values":
        entry.update({stat: draw(_NUMBERS) for stat in stats})
        if draw(st.booleans()):
            entry["flags"] = draw(st.lists(st.sampled_from(["stuck", "high_humidity"]),
                                           unique=True, min_size=1))
        if draw(st.booleans()):
            entry.update(suppressed=False, k=draw(st.integers(1, 20)))
    elif mode == "nulls":
        entry.update({stat: draw(st.one_of(st.none(), _NUMBERS)) for stat in stats})
    else:
        entry.update({stat: None for stat in stats}, suppressed=True, suppressed_reason=mode)
        if mode == "below_k":
            entry.update(sum=None, k=draw(st.integers(1, 20)))
    return entry


@st.composite
def _corrections(draw: st.DrawFn, streams: list[str]) -> list[dict[str, Any]]:
    methods = ["kappa-koehler", "epa-barkjohn-2021", "rivm-2020"]
    keys = draw(st.lists(st.tuples(st.sampled_from(streams or ["pm25"]),
                                   st.sampled_from(methods)), unique=True, max_size=3))
    out = []
    for stream_name, method in keys:
        entry = {"stream": stream_name, "method": method, "reference": draw(st.text(max_size=20)),
                 "parameters": draw(st.dictionaries(st.sampled_from(
                     ["slope", "intercept", "kappa", "rh_max", "density_ratio", "cf1_max"]),
                     _NUMBERS, max_size=3)),
                 "rh_max": draw(_NUMBERS), "humidity": {"sensor": draw(_IDS),
                                                        "stream": "relativeHumidity"},
                 "unit": draw(_UNITS), "n": draw(st.integers(1, 1000))}
        entry.update({s: draw(_NUMBERS) for s in draw(st.lists(st.sampled_from(
            ["mean", "min", "max", "stddev"]), unique=True))})
        if draw(st.booleans()):
            entry["description"] = draw(st.text(max_size=20))
        out.append(entry)
    return out


@st.composite
def native_bodies(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 9)) == 0:  # an unsynced clock that believes it is 1970
        start = draw(st.integers(0, 10**8))
    else:
        start = draw(st.integers(946_684_800_000, 4_102_444_800_000))
    end = start + draw(st.integers(1, 3_600_000))
    values = draw(st.dictionaries(_STREAM_NAMES, _streams(), max_size=4))
    payload: dict[str, Any] = {
        "seq": draw(st.integers(0, 2**40)), "store": f"{draw(st.integers(0, 2**128 - 1)):032x}",
        "gateway": draw(_IDS), "sensor": draw(_IDS), "driver": draw(_IDS),
        "model": draw(st.text(min_size=1, max_size=20)), "simulated": draw(st.booleans()),
        "window": {"start": _stamp(start), "end": _stamp(end),
                   "seconds": draw(st.sampled_from([1, 60, 300, 0.5])),
                   "clock": draw(st.sampled_from(["synced", "rtc", "unsynced"])),
                   "partial": draw(st.booleans())},
        "coverage": draw(st.integers(0, 1000)) / 1000, "errors": draw(st.integers(0, 10**4)),
        "values": values, "corrections": draw(_corrections(sorted(values))),
    }
    if draw(st.booleans()):
        payload["calibration"] = {"state": "calibrated", "date": _stamp(start),
                                  "offset_db": draw(_NUMBERS), "reference_db": 94.0}
    return payload


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(payload=native_bodies(), secondary=st.booleans())
def test_property_every_valid_message_encodes_validly_and_losslessly(
        payload: dict[str, Any], secondary: bool) -> None:
    check(SECONDARY_ENCODER if secondary else PRIMARY_ENCODER, payload)


@settings(max_examples=200, deadline=None)
@given(value=st.floats(min_value=-1e290, max_value=1e290, allow_nan=False)
       .filter(lambda x: x == 0 or abs(x) > 1e-290),
       unit=st.sampled_from(["ug/m3", "hPa", "um"]))
def test_property_any_double_converts_within_rounding(value: float, unit: str) -> None:
    values = {"x": stream(unit, n=1, mean=value)}
    [encoded] = PRIMARY_ENCODER.encode("data/pm-north", body(values))
    pack = json.loads(encoded.payload)
    # A 17-digit double can exceed the SHOULD on mantissa length; nothing else may fail.
    assert [p for p in rfc_problems(encoded.payload) if "too long" not in p] == []
    back = native_from_senml(pack)["values"]["x"]["mean"]
    assert math.isclose(back, value, rel_tol=1e-15, abs_tol=0.0)


def test_the_documented_example_is_the_encoder_output() -> None:
    text = (ROOT / "docs" / "encoding-senml.md").read_text(encoding="utf-8")
    documented = json.loads(re.search(r"```json\n(\[.*?\])\n```", text, re.S).group(1))
    [encoded] = PRIMARY_ENCODER.encode("data/pm-north", EXAMPLE)
    assert documented == json.loads(encoded.payload)
