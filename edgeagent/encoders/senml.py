"""SenML (RFC 8428) JSON encoder: one pack per native data message, nothing lost.

A pure projection of the native ``data/<sensor_id>`` message (``docs/contract.md`` §3.2) into
``application/senml+json``. The full mapping, with an example pack, is in
``docs/encoding-senml.md``; in short:

- Base name ``urn:dev:edgeagent:<gateway>:<sensor>:`` (configured names only: never a MAC
  address or serial number); record names such as ``pm25:mean`` are appended to it.
- Base time = window end (Unix seconds). The window start is the record ``window:start``
  (``t`` relative to the end, ``vs`` the native RFC 3339 text); every other record is at the
  window end. Clocks that read before 1978 (an unsynced gateway) cannot be absolute SenML
  times (RFC 8428 §4.5.3: below 2**28 means "relative to now"), so then no base time is sent.
- One record per (stream, statistic), converted to a registered SenML unit; ``n``, ``k``,
  flags, suppression, coverage, ``seq``/``store``, window and corrections are records too.
- A suppressed or null statistic never appears as a number: its record is left out and a
  marker record ``<stream>:<stat>:suppressed`` (``vs`` = the reason) or ``<stream>:<stat>:null``
  (``vb`` true) stands in its place, under a different name, so a consumer that treats a
  missing value as 0 (RFC 8428 §4.5.4 does so for ``v``) cannot turn it into a zero.
- Only data messages are encoded; events, health, manifest and status give ``[]``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from edgeagent.encoders import Encoded

#: Media type of the payloads (RFC 8428), for an MQTT 5 content-type property.
CONTENT_TYPE = "application/senml+json"
#: Prepended to ``<gateway>:<sensor>:`` to form the base name (see docs/encoding-senml.md).
BASE_NAME_PREFIX = "urn:dev:edgeagent:"
#: RFC 9100 §4: SenML version 10 plus feature code 4 "Secondary Units" (10 + 2**4).
VERSION_SECONDARY_UNITS = 26
#: RFC 8428 §4.5.3: resolved times below 2**28 s are relative to "now", not Unix time.
ABSOLUTE_TIME_MIN = 2**28

#: Statistics of a stream or correction, in publishing order.
STATISTICS = ("mean", "min", "max", "stddev", "l10", "l50", "l90", "sum")
#: Keys of the native message this encoder knows (tests compare them with the schema).
TOP_LEVEL_KEYS = frozenset({"seq", "store", "gateway", "sensor", "driver", "model", "simulated",
                            "window", "coverage", "errors", "values", "corrections",
                            "calibration", "coarsened"})
WINDOW_KEYS = frozenset({"start", "end", "seconds", "clock", "partial"})
STREAM_KEYS = frozenset({"unit", "quantity", "n", "suppressed", "suppressed_reason", "k",
                         "flags", "dp", "approximate", *STATISTICS})
CORRECTION_KEYS = frozenset({"stream", "method", "description", "reference", "parameters",
                             "rh_max", "humidity", "unit", "n", "mean", "min", "max", "stddev"})
CALIBRATION_KEYS = frozenset({"state", "date", "offset_db", "reference_db"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._/-]*$")  # RFC 8428 §4.5.1, resolved name
_METHOD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a name part without ':'
_PARAMETER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
_STAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z$")


@dataclass(frozen=True, slots=True)
class UnitMapping:
    """How a native unit is written in SenML.

    Attributes:
        senml: Registered SenML unit for ``u``; None when none is registered (``u`` omitted,
            the native unit is still in the stream's ``<stream>:unit`` record).
        scale: Native value × scale = value in ``senml`` (exact decimal; no offsets occur).
        source: Where the SenML unit is registered.
    """

    senml: str | None
    scale: Decimal
    source: str


_ONE = Decimal(1)
#: Native unit → SenML unit for packs of version 10 (primary units only; RFC 8798 §3 says
#: packs SHOULD NOT use secondary units outside data models built on them).
PRIMARY: dict[str, UnitMapping] = {
    "ug/m3": UnitMapping("kg/m3", Decimal("1e-9"), "RFC 8798 §2 (kg/m3, primary)"),
    "Cel": UnitMapping("Cel", _ONE, "RFC 8428 §12.1"),
    "%RH": UnitMapping("%RH", _ONE, "RFC 8428 §12.1"),
    "dB": UnitMapping("dB", _ONE, "RFC 8428 §12.1"),
    "count": UnitMapping("count", _ONE, "RFC 8428 §12.1"),
    "hPa": UnitMapping("Pa", Decimal(100), "RFC 8428 §12.1"),
    "um": UnitMapping("m", Decimal("1e-6"), "RFC 8428 §12.1 (no micrometre unit registered)"),
    "/cm3": UnitMapping(None, _ONE, "no number-concentration unit is registered"),
    "1": UnitMapping(None, _ONE, "index, not a ratio: '/' would claim a ratio"),
    "%": UnitMapping("/", Decimal("0.01"), "RFC 8428 §12.1 ratio ('%' is NOT RECOMMENDED)"),
}
#: Overrides when secondary units are agreed with the receiver (pack version 26).
SECONDARY: dict[str, UnitMapping] = {
    **PRIMARY,
    "ug/m3": UnitMapping("ug/m3", _ONE, "RFC 8798 §3 (secondary unit = 1e-9 kg/m3)"),
    "hPa": UnitMapping("hPa", _ONE, "RFC 8798 §3 (secondary unit = 100 Pa)"),
    "%": UnitMapping("/100", _ONE, "RFC 8798 §3 (percent: secondary unit = 0.01 /)"),
}
_UNREGISTERED = UnitMapping(None, _ONE, "unknown native unit: not guessed")


class SenmlEncoder:
    """Encodes native data messages as SenML JSON packs (RFC 8428), one pack per window.

    Args:
        secondary_units: Write µg/m³ and hPa as the RFC 8798 secondary units ``ug/m3`` and
            ``hPa`` and mark the pack ``bver`` 26 (RFC 9100). Only for receivers that agreed
            to it: a version-10 receiver must then reject the pack. Default: primary units
            (``kg/m3``, ``Pa``) and no ``bver`` (version 10).
    """

    name = "senml"

    def __init__(self, *, secondary_units: bool = False) -> None:
        self.secondary_units = secondary_units
        self._units = SECONDARY if secondary_units else PRIMARY

    def encode(self, suffix: str, body: dict[str, Any]) -> list[Encoded]:
        """Encode one native message.

        Args:
            suffix: Native topic suffix, e.g. ``data/pm-north``; kept as the topic.
            body: The native body; for data it must be a valid v1 data message.

        Returns:
            One :class:`Encoded` with the pack for ``data/…``; ``[]`` for every other type.

        Raises:
            ValueError: The body has a key this encoder does not know, a timestamp or
                correction method it cannot write, or a sensor other than the topic's.
        """
        if not suffix.startswith("data/"):
            return []
        if suffix != f"data/{body.get('sensor')}":
            raise ValueError(f"topic {suffix!r} is not the data topic of sensor "
                             f"{body.get('sensor')!r}")
        pack = self._pack(body)
        text = json.dumps(pack, separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                          allow_nan=False)
        return [Encoded(suffix, text.encode("utf-8"))]

    def _pack(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The records of one data message; the first one carries the base fields."""
        _known("message", body, TOP_LEVEL_KEYS)
        window = body["window"]
        _known("window", window, WINDOW_KEYS)
        start, end = _epoch(window["start"]), _epoch(window["end"])
        records: list[dict[str, Any]] = []
        add = _Adder(records)

        add("window:start", vs=window["start"], t=_number(start - end))
        add("window:end", vs=window["end"])
        add("window:seconds", v=window["seconds"], u="s")
        add("window:clock", vs=window["clock"])
        add("window:partial", vb=window["partial"])
        add("seq", v=body["seq"])
        add("store", vs=body["store"])
        add("coverage", v=body["coverage"], u="/")
        add("errors", v=body["errors"], u="count")
        add("driver", vs=body["driver"])
        add("model", vs=body["model"])
        add("simulated", vb=body["simulated"])
        if "calibration" in body:
            self._calibration(add, body["calibration"])
        if "coarsened" in body:  # a merge of older windows (the outbox was full)
            merged = body["coarsened"]
            add("coarsened:from", v=merged["from"], u="count")
            add("coarsened:seq_first", v=merged["seq_first"])
            add("coarsened:seq_last", v=merged["seq_last"])
        for name in sorted(body["values"]):
            self._stream(add, name, body["values"][name])
        seen: set[tuple[str, str]] = set()
        for correction in body["corrections"]:
            self._correction(add, correction, seen)

        base: dict[str, Any] = {"bn": f"{BASE_NAME_PREFIX}{body['gateway']}:{body['sensor']}:"}
        if min(start, end) >= ABSOLUTE_TIME_MIN:
            base["bt"] = _number(end)
        if self.secondary_units:
            base["bver"] = VERSION_SECONDARY_UNITS
        records[0] = {**base, **records[0]}
        for record in records:
            if not _NAME.match(base["bn"] + record["n"]):
                raise ValueError(f"not a valid SenML name: {base['bn'] + record['n']!r}")
        return records

    def _calibration(self, add: _Adder, calibration: dict[str, Any]) -> None:
        _known("calibration", calibration, CALIBRATION_KEYS)
        add("calibration:state", vs=calibration["state"])
        if calibration["date"] is not None:
            add("calibration:date", vs=calibration["date"])
        add("calibration:offset_db", v=calibration["offset_db"], u="dB")
        if calibration["reference_db"] is not None:
            add("calibration:reference_db", v=calibration["reference_db"], u="dB")

    def _stream(self, add: _Adder, name: str, stream: dict[str, Any]) -> None:
        _known(f"stream {name}", stream, STREAM_KEYS)
        add(f"{name}:unit", vs=stream["unit"])
        add(f"{name}:quantity", vs=stream["quantity"])
        add(f"{name}:n", v=stream["n"], u="count")
        self._statistics(add, name, stream, reason=stream.get("suppressed_reason")
                         if stream.get("suppressed") else None)
        if "suppressed" in stream:
            add(f"{name}:suppressed", vb=stream["suppressed"])
        if "suppressed_reason" in stream:
            add(f"{name}:suppressed_reason", vs=stream["suppressed_reason"])
        if "k" in stream:
            add(f"{name}:k", v=stream["k"], u="count")
        if "dp" in stream:  # a differentially private count: which noise it carries
            add(f"{name}:dp:epsilon", v=stream["dp"]["epsilon"])
            add(f"{name}:dp:mechanism", vs=stream["dp"]["mechanism"])
        for flag in stream.get("flags", ()):
            add(f"{name}:flag:{flag}", vb=True)
        for stat in stream.get("approximate", ()):  # merged percentiles: not exact
            add(f"{name}:{stat}:approximate", vb=True)

    def _statistics(self, add: _Adder, prefix: str, entry: dict[str, Any],
                    reason: str | None) -> None:
        unit = self._units.get(entry["unit"], _UNREGISTERED)
        for stat in STATISTICS:
            if stat not in entry:
                continue
            value = entry[stat]
            if value is None and reason is not None:
                add(f"{prefix}:{stat}:suppressed", vs=reason)
            elif value is None:
                add(f"{prefix}:{stat}:null", vb=True)
            else:
                add(f"{prefix}:{stat}", v=_scaled(value, unit.scale), u=unit.senml)

    def _correction(self, add: _Adder, correction: dict[str, Any],
                    seen: set[tuple[str, str]]) -> None:
        _known("correction", correction, CORRECTION_KEYS)
        stream, method = correction["stream"], correction["method"]
        if not _METHOD.match(method):
            raise ValueError(f"correction method {method!r} cannot be part of a SenML name")
        if (stream, method) in seen:
            raise ValueError(f"two corrections of {stream} with method {method}")
        seen.add((stream, method))
        prefix = f"{stream}:corrected:{method}"
        add(f"{prefix}:unit", vs=correction["unit"])
        add(f"{prefix}:n", v=correction["n"], u="count")
        self._statistics(add, prefix, correction, reason=None)
        add(f"{prefix}:rh_max", v=correction["rh_max"], u="%RH")
        add(f"{prefix}:humidity:sensor", vs=correction["humidity"]["sensor"])
        add(f"{prefix}:humidity:stream", vs=correction["humidity"]["stream"])
        add(f"{prefix}:reference", vs=correction["reference"])
        if "description" in correction:
            add(f"{prefix}:description", vs=correction["description"])
        for key in sorted(correction["parameters"]):
            if not _PARAMETER.match(key):
                raise ValueError(f"correction parameter {key!r} cannot be part of a SenML name")
            add(f"{prefix}:parameters:{key}", v=correction["parameters"][key])


class _Adder:
    """Appends one record with exactly one value field, labels in a fixed set."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def __call__(self, name: str, *, v: float | None = None, vs: str | None = None,
                 vb: bool | None = None, u: str | None = None, t: float | None = None) -> None:
        values = {label: value for label, value in (("v", v), ("vs", vs), ("vb", vb))
                  if value is not None}
        if len(values) != 1:
            raise ValueError(f"{name}: a SenML record needs exactly one value, got {values}")
        if "v" in values and (isinstance(v, bool) or not isinstance(v, int | float)
                              or not math.isfinite(v)):
            raise ValueError(f"{name}: not a finite number: {v!r}")
        if "vs" in values and not isinstance(vs, str):
            raise ValueError(f"{name}: not a string: {vs!r}")
        if "vb" in values and not isinstance(vb, bool):
            raise ValueError(f"{name}: not a boolean: {vb!r}")
        record: dict[str, Any] = {"n": name}
        if u is not None:
            record["u"] = u
        if t:
            record["t"] = t
        record.update(values)
        self.records.append(record)


def _known(what: str, entry: dict[str, Any], keys: frozenset[str]) -> None:
    unknown = set(entry) - keys
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)} (not a v1 data message this "
                         "encoder knows)")


def _epoch(stamp: str) -> Decimal:
    """Exact Unix seconds of a native timestamp (RFC 3339, UTC, ``Z``)."""
    match = _STAMP.match(stamp)
    if not match:
        raise ValueError(f"not an RFC 3339 UTC timestamp: {stamp!r}")
    fields = [int(part) for part in match.groups()[:6]]
    dt.datetime(*fields)  # ValueError for e.g. 2026-02-30 or 24:00:00
    return Decimal(calendar.timegm((*fields, 0, 0, 0))) + Decimal(match.group(7) or 0)


def _number(value: Decimal) -> int | float:
    """An exact decimal as a JSON number: integral values as integers."""
    return int(value) if value == value.to_integral_value() else float(value)


def _scaled(value: float, scale: Decimal) -> float:
    """``value`` × ``scale``, rounded once from the exact decimal product.

    Scaling the shortest decimal form gives 8.12 µg/m³ → 8.12e-09 kg/m3 rather than the
    binary product's 8.120000000000001e-09; values with at most 15 significant digits (all
    the privacy gate publishes) scale back to exactly the native number.
    """
    if scale == _ONE:
        return value
    result = float(Decimal(repr(value)) * scale)
    if not math.isfinite(result) or (result == 0) != (value == 0):
        raise ValueError(f"{value!r} × {scale} is out of the range of a double")
    return result
