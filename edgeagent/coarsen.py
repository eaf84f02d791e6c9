"""Coarsening: merge consecutive stored data messages of one sensor into one longer window.

When the outbox reaches its byte bound during a long outage, the oldest data windows are not
thrown away but merged (1 min → 15 min → 1 h, :data:`COARSE_LEVELS`). The functions here are
pure: they take released native bodies as the outbox stores them (with ``seq`` and ``store``)
and return one body of the same contract (docs/contract.md §3.2, docs/coarsening.md).

What is exact and what is not:

- ``n``, ``sum``, ``errors`` are summed; ``min``/``max`` are the extremes of the inputs.
- ``mean`` is weighted by ``n``; for decibel streams (unit ``dB``, quantity ``noise``) it is
  the energy mean 10·log10(Σ n·10^(L/10) / Σ n), i.e. the Leq of the whole interval.
- ``stddev`` is pooled from each input's ``n``, ``mean`` and ``stddev`` (the sample standard
  deviation over all samples, as one long window would have given).
- ``l10``/``l50``/``l90`` cannot be combined exactly. They are approximated by the quantiles
  of the ``n``-weighted mixture of each window's distribution, interpolated linearly through
  its ``min``, ``l90``, ``l50``, ``l10`` and ``max``; the result always lies between the
  smallest and the largest input percentile. The stream lists them in ``approximate``.

Only the precision of the published inputs is available, so merged figures are exact up to
the rounding of the inputs (and are rounded again to the class's decimals).

Privacy: coarsening is post-processing of values the privacy gate already released, over a
longer window, so it never makes anything finer. A stream that was suppressed in any input is
suppressed in the merged window (its value is unknown, and publishing the rest would let a
subscriber who saw the other windows subtract). A differentially private sum stays a sum of
noised counts; each window's epsilon was spent on disjoint crossings (parallel composition),
so ``dp.epsilon`` is the largest input epsilon.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from edgeagent.driver import QuantityClass
from edgeagent.privacy import decimals, rfc3339

#: Coarse window lengths in seconds, finest first: 15 min, then 1 h.
COARSE_LEVELS = (900.0, 3600.0)
#: Statistics a merge can only approximate; listed in a merged stream's ``approximate``.
APPROXIMATE = ("l10", "l50", "l90")
#: Statistic keys of a stream entry, in publishing order.
STATISTICS = ("mean", "min", "max", "stddev", "sum", "l10", "l50", "l90")
#: Cumulative share below each percentile level (L10 is exceeded 10 % of the time).
_LEVEL_SHARE = {"l90": 0.1, "l50": 0.5, "l10": 0.9}
_CLOCK_ORDER = ("synced", "rtc", "unsynced")
_EPS = 1e-6  # seconds: timestamps carry at most milliseconds


def parse_time(stamp: str) -> float:
    """Epoch seconds of a native RFC 3339 UTC timestamp (``…Z``)."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def bounds(body: dict[str, Any]) -> tuple[float, float]:
    """(start, end) of a body's window in epoch seconds."""
    window = body["window"]
    return parse_time(window["start"]), parse_time(window["end"])


def seq_range(body: dict[str, Any]) -> tuple[int, int]:
    """The data ``seq`` s a stored body stands for: its own, or those it replaced."""
    marker = body.get("coarsened")
    return (marker["seq_first"] if marker else body["seq"]), body["seq"]


def windows_in(body: dict[str, Any]) -> int:
    """Number of native windows a body describes (1 unless coarsened)."""
    marker = body.get("coarsened")
    return marker["from"] if marker else 1


def signature(body: dict[str, Any]) -> str:
    """What must be equal for two bodies to be merged: source, sensor and stream set."""
    streams = {name: (entry["unit"], entry["quantity"])
               for name, entry in body["values"].items()}
    return json.dumps([body.get("store"), body["gateway"], body["sensor"], body["driver"],
                       body["model"], body["simulated"], body.get("calibration"), streams],
                      sort_keys=True)


def bucket(body: dict[str, Any], level: float) -> int | None:
    """Index of the aligned ``level``-second window ``body`` falls into, None if it cannot.

    A body can be merged at ``level`` only if its own window is shorter and lies wholly in
    one aligned coarse window (a merged window is never finer than its inputs).
    """
    if body["window"]["seconds"] >= level:
        return None
    start, end = bounds(body)
    index = math.floor(start / level + 1e-9)
    if end > (index + 1) * level + _EPS or end < start:
        return None
    return index


def follows(previous: dict[str, Any], body: dict[str, Any]) -> bool:
    """True when ``body`` is the next message of the stream after ``previous``, later in time."""
    return (seq_range(body)[0] == previous["seq"] + 1
            and bounds(body)[0] >= bounds(previous)[1] - _EPS)


def first_closed_group(rows: Iterable[tuple[int | None, str, dict[str, Any]]], level: float
                       ) -> tuple[list[int] | None, int | None]:
    """The oldest run of rows that can be merged at ``level``, and where to look next time.

    ``rows`` are (row id, stream, body) in storage order; a row id of None is a message not
    stored yet (the one being put): it can close a run but is never part of one. A run is two
    or more consecutive messages of one stream (contiguous ``seq``, increasing time, same
    :func:`signature`) in the same aligned ``level`` window, *closed* by a later message of
    the stream outside it: the newest coarse window may still be filling and is left alone.

    Returns:
        (row ids of the run or None, the lowest row id a later search must look at again:
        the start of every run still open, or None if there is nothing to look at again).
    """
    open_runs: dict[str, tuple[tuple[str, int], list[tuple[int, dict[str, Any]]]]] = {}
    last: int | None = None
    for row_id, stream, body in rows:
        key = None
        index = bucket(body, level)
        if index is not None:
            key = (signature(body), index)
        run = open_runs.get(stream)
        if run is not None and (key != run[0] or not follows(run[1][-1][1], body)):
            del open_runs[stream]
            if len(run[1]) >= 2:
                found = [rid for rid, _ in run[1]]
                again = min([found[0], *(r[1][0][0] for r in open_runs.values())])
                return found, again
            run = None
        if row_id is None:
            continue
        last = row_id
        if key is None:
            continue
        if run is None:
            open_runs[stream] = (key, [(row_id, body)])
        else:
            run[1].append((row_id, body))
    if open_runs:
        return None, min(r[1][0][0] for r in open_runs.values())
    return None, None if last is None else last + 1


# -- merging ----------------------------------------------------------------------------------


def merge(bodies: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Merge stored data bodies of one sensor (oldest first) into one ``seconds`` window.

    Args:
        bodies: Two or more stored bodies (with ``seq``) of one sensor, consecutive, with the
            same :func:`signature`. Inputs may themselves be coarsened.
        seconds: The coarse window length (e.g. 900 or 3600); longer than every input's.

    Returns:
        The merged body: ``seq`` of the last input, ``coarsened`` naming the replaced seqs.

    Raises:
        ValueError: If the inputs cannot be merged (other sensor or streams, out of order,
            not shorter than ``seconds`` or not inside one aligned ``seconds`` window).
    """
    if len(bodies) < 1:
        raise ValueError("nothing to merge")
    first, last = bodies[0], bodies[-1]
    shape = signature(first)
    for previous, body in itertools.pairwise(bodies):
        if signature(body) != shape:
            raise ValueError("only messages of one sensor with the same streams merge")
        if body["seq"] <= previous["seq"] or bounds(body)[0] < bounds(previous)[1] - _EPS:
            raise ValueError("messages to merge must be consecutive and in time order")
    if any(b["window"]["seconds"] >= seconds for b in bodies):
        raise ValueError(f"a {seconds:g}s window would not be coarser than its inputs")
    spans = [bounds(b) for b in bodies]
    start, end = spans[0][0], spans[-1][1]
    aligned = math.floor(start / seconds + 1e-9) * seconds
    if end > aligned + seconds + _EPS:
        raise ValueError(f"messages span more than one aligned {seconds:g}s window")

    tiles = (abs(start - aligned) < 1e-3 and abs(end - (aligned + seconds)) < 1e-3
             and all(abs(b[0] - a[1]) < 1e-3 for a, b in itertools.pairwise(spans)))
    partial = not tiles or any(b["window"]["partial"] for b in bodies)
    clock = max((b["window"]["clock"] for b in bodies), key=_CLOCK_ORDER.index)
    covered = sum(b["coverage"] * (e - s) for b, (s, e) in zip(bodies, spans, strict=True))
    coverage = min(1.0, covered / (end - start)) if end > start else first["coverage"]

    values = {name: merge_stream([b["values"][name] for b in bodies])
              for name in first["values"]}
    merged: dict[str, Any] = {}
    for key in first:
        if key == "window":
            merged[key] = {"start": rfc3339(start), "end": rfc3339(end), "seconds": seconds,
                           "clock": clock, "partial": partial}
        elif key == "coverage":
            merged[key] = round(coverage, 3)
        elif key == "errors":
            merged[key] = sum(b["errors"] for b in bodies)
        elif key == "values":
            merged[key] = values
        elif key == "corrections":
            merged[key] = merge_corrections(bodies, values)
        elif key == "seq":
            merged[key] = last["seq"]
        elif key != "coarsened":
            merged[key] = first[key]
    merged["coarsened"] = {"from": sum(windows_in(b) for b in bodies),
                           "seq_first": seq_range(first)[0], "seq_last": last["seq"]}
    return merged


def is_energetic(entry: dict[str, Any]) -> bool:
    """Decibel streams average their energy: unit ``dB`` and privacy class ``noise``."""
    return entry["unit"] == "dB" and entry["quantity"] == "noise"


def merge_stream(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Merge one stream's entries (one per window) into the entry of the coarse window."""
    first = entries[0]
    active = [e for e in entries if e["n"] > 0]
    out: dict[str, Any] = {"unit": first["unit"], "quantity": first["quantity"],
                           "n": sum(e["n"] for e in entries)}
    # a statistic leaves only if every window that had samples published it (policy intact)
    allowed = [s for s in STATISTICS if active and all(s in e for e in active)]
    ks = [e["k"] for e in entries if "k" in e]
    suppressed = [e for e in entries if e.get("suppressed")]
    if suppressed:
        # a withheld value stays withheld: the merged value is unknown, and the other windows'
        # values next to it would give it away by subtraction
        reasons = [e["suppressed_reason"] for e in suppressed]
        for stat in allowed:
            out[stat] = None
        if ks:
            out["k"] = max(ks)
        out["suppressed"] = True
        out["suppressed_reason"] = ("below_k" if all(r == "below_k" for r in reasons)
                                    else reasons[0])
        return out
    places = decimals(QuantityClass(first["quantity"]))
    result = _statistics(active, allowed, is_energetic(first))
    for stat in allowed:
        value = result.get(stat)
        out[stat] = None if value is None else _rounded(value, places)
    if ks:
        out["k"] = max(ks)
    if any("suppressed" in e for e in entries):
        out["suppressed"] = False
    dps = [e["dp"] for e in active if "dp" in e]
    if dps and "sum" in out:
        out["dp"] = {"epsilon": max(d["epsilon"] for d in dps),
                     "mechanism": dps[0]["mechanism"]}
    flags: list[str] = []
    for entry in entries:
        flags += [f for f in entry.get("flags", ()) if f not in flags]
    if flags:
        out["flags"] = flags
    approximate = [s for s in APPROXIMATE if out.get(s) is not None]
    if approximate:
        out["approximate"] = approximate
    return out


def _rounded(value: float, places: int) -> float:
    rounded = round(value, places)
    return int(rounded) if isinstance(value, int) else rounded


def _statistics(active: Sequence[dict[str, Any]], allowed: Sequence[str],
                energetic: bool) -> dict[str, float | None]:
    """Merged statistics of the windows that had samples; None where a value is missing."""
    out: dict[str, float | None] = {}
    if not active:
        return out
    total_n = sum(e["n"] for e in active)

    def known(stat: str) -> bool:
        return all(e.get(stat) is not None for e in active)

    for stat in allowed:
        if not known(stat):
            out[stat] = None
        elif stat == "min":
            out[stat] = min(e["min"] for e in active)
        elif stat == "max":
            out[stat] = max(e["max"] for e in active)
        elif stat == "sum":
            out[stat] = sum(e["sum"] for e in active)
        elif stat == "mean":
            out[stat] = _mean(active, energetic)
        elif stat == "stddev":
            out[stat] = _pooled_stddev(active, total_n) if known("mean") else None
        elif stat in _LEVEL_SHARE:
            out[stat] = mixture_level(active, stat)
    return out


def _mean(active: Sequence[dict[str, Any]], energetic: bool) -> float:
    total_n = sum(e["n"] for e in active)
    if energetic:
        # shift by the loudest level so 10^(L/10) cannot overflow
        top = max(e["mean"] for e in active)
        energy = sum(e["n"] * 10.0 ** ((e["mean"] - top) / 10.0) for e in active)
        return top + 10.0 * math.log10(energy / total_n)
    return sum(e["n"] * e["mean"] for e in active) / total_n


def _pooled_stddev(active: Sequence[dict[str, Any]], total_n: int) -> float:
    """Sample standard deviation of all samples from each window's n, mean and stddev."""
    if total_n < 2:
        return 0.0
    grand = sum(e["n"] * e["mean"] for e in active) / total_n
    squares = sum((e["n"] - 1) * e["stddev"] ** 2 + e["n"] * (e["mean"] - grand) ** 2
                  for e in active)
    return math.sqrt(max(0.0, squares) / (total_n - 1))


def _knots(entry: dict[str, Any]) -> list[tuple[float, float]]:
    """(level, share of samples at or below it) through which a window's CDF is drawn."""
    points = []
    if entry.get("min") is not None:
        points.append((entry["min"], 0.0))
    points += [(entry[name], _LEVEL_SHARE[name]) for name in ("l90", "l50", "l10")
               if entry.get(name) is not None]
    if entry.get("max") is not None:
        points.append((entry["max"], 1.0))
    out: list[tuple[float, float]] = []
    for x, p in points:  # levels never decrease with the share (rounding could disagree)
        out.append((max(x, out[-1][0]) if out else x, p))
    return out


def _cdf(knots: Sequence[tuple[float, float]], x: float) -> float:
    """Share of a window's samples at or below ``x``: linear between knots, steps at ends."""
    if x < knots[0][0]:
        return 0.0
    if x >= knots[-1][0]:
        return 1.0
    value = knots[0][1]
    for (x0, p0), (x1, p1) in itertools.pairwise(knots):
        if x >= x1:
            value = p1
        elif x >= x0:
            return p0 + (p1 - p0) * (x - x0) / (x1 - x0) if x1 > x0 else p1
    return value


def mixture_level(active: Sequence[dict[str, Any]], stat: str) -> float:
    """Approximate percentile level ``stat`` of the merged window (see module docstring).

    The n-weighted mixture of the windows' interpolated distributions is inverted at the
    share ``stat`` stands for. The result lies between the smallest and the largest input
    value of ``stat``.
    """
    share = _LEVEL_SHARE[stat]
    curves = [(e["n"], _knots(e)) for e in active]
    total_n = sum(n for n, _ in curves)
    low = min(e[stat] for e in active)
    high = max(e[stat] for e in active)

    def mixture(x: float) -> float:
        return sum(n * _cdf(knots, x) for n, knots in curves) / total_n

    if mixture(low) >= share - 1e-9:
        return low
    for _ in range(60):  # bisection: the smallest level with mixture >= share
        middle = (low + high) / 2.0
        if mixture(middle) >= share - 1e-9:
            high = middle
        else:
            low = middle
    return high


def merge_corrections(bodies: Sequence[dict[str, Any]], values: dict[str, Any]
                      ) -> list[dict[str, Any]]:
    """Merge humidity corrections per stream, like linear values.

    A correction is kept only if its method, parameters and humidity source are the same in
    every window that has one (else it is left out: the raw values are still there) and the
    merged raw stream is not suppressed (the gate never publishes a correction next to a
    suppressed value).
    """
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        for correction in body.get("corrections", ()):
            by_stream.setdefault(correction["stream"], []).append(correction)
    out = []
    for name, entries in by_stream.items():
        if values.get(name, {}).get("suppressed"):
            continue
        meta = [{k: v for k, v in e.items() if k not in ("n", *STATISTICS)} for e in entries]
        if any(m != meta[0] for m in meta):
            continue
        allowed = [s for s in ("mean", "min", "max", "stddev") if all(s in e for e in entries)]
        result = _statistics(entries, allowed, energetic=False)
        places = decimals(QuantityClass(values[name]["quantity"])) if name in values else 2
        merged = {**meta[0], "n": sum(e["n"] for e in entries)}
        for stat in allowed:
            if result.get(stat) is not None:
                merged[stat] = _rounded(result[stat], places)  # type: ignore[arg-type]
        out.append(merged)
    return out
