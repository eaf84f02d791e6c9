"""The streams of a counting sensor and the readings of one frame's counts."""

from __future__ import annotations

from edgeagent.counting.tracks import CountingConfig, StepCounts
from edgeagent.driver import QuantityClass, Reading, StatKind, StreamSpec


def counting_streams(counting: CountingConfig, *, limit: str = "") -> list[StreamSpec]:
    """``peopleIn``/``peopleOut`` (with a line), ``occupancy``, ``occupancy_<zone>`` per zone.

    Args:
        counting: The sensor's counting section.
        limit: What the sensor cannot see, appended to every description (e.g. "the
            LD2450 tracks at most 3 people at once").
    """
    note = f" ({limit})" if limit else ""
    specs = []
    if counting.line is not None:
        specs += [StreamSpec("peopleIn", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER,
                             f"people crossing the counting line inwards{note}"),
                  StreamSpec("peopleOut", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER,
                             f"people crossing the counting line outwards{note}")]
    specs.append(StreamSpec("occupancy", "count", QuantityClass.PEOPLE_COUNT, StatKind.OCCUPANCY,
                            f"people in view at once, per frame{note}", ("mean", "max")))
    specs += [StreamSpec(f"occupancy_{zone.name}", "count", QuantityClass.PEOPLE_COUNT,
                         StatKind.OCCUPANCY, f"most people at once in zone {zone.name}{note}",
                         ("max",))
              for zone in counting.zones]
    return specs


def counting_readings(counting: CountingConfig, counts: StepCounts, t: float) -> list[Reading]:
    """One frame's readings, matching :func:`counting_streams`."""
    out = []
    if counting.line is not None:
        out += [Reading("peopleIn", float(counts.crossed_in), t),
                Reading("peopleOut", float(counts.crossed_out), t)]
    out.append(Reading("occupancy", float(counts.present), t))
    out += [Reading(f"occupancy_{zone.name}", float(counts.zones.get(zone.name, 0)), t)
            for zone in counting.zones]
    return out
