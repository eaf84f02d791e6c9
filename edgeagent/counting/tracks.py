"""Positions → tracks → line crossings and zone occupancy, in memory only.

Shared by every counting sensor: thermal arrays feed person positions in frame coordinates
(x = column, y = row, both 0–1 over the field of view), radars feed target positions in
metres. A track is a short-lived object with a position and a side of the counting line; it
has no identity beyond the process, is never logged, stored or published, and is forgotten a
few frames after the person leaves. Only :class:`StepCounts` leave this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

Point = tuple[float, float]


class CountingLine(BaseModel):
    """A directed segment; crossing it from its right side to its left side counts as ``in``.

    "Left" is where the cross product (end − start) × (p − start) is positive: the true left
    for radar coordinates (x across, y away from the sensor), and the lower half for a line
    from (0, 0.5) to (1, 0.5) in frame coordinates, whose y grows downwards. If the counts
    come out swapped on site, set ``in_side: right``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: tuple[float, float] = Field(description="First point (x, y) of the line")
    end: tuple[float, float] = Field(description="Second point (x, y) of the line")
    in_side: str = Field("left", pattern="^(left|right)$",
                         description="Side of start→end that people reach when they go in")
    margin: float = Field(0.05, ge=0, description="A track must be this far past the line "
                          "on both sides (hysteresis against jitter), in position units")

    @model_validator(mode="after")
    def _length(self) -> CountingLine:
        if math.dist(self.start, self.end) <= 0:
            raise ValueError("line start and end must differ")
        return self


class Zone(BaseModel):
    """An axis-aligned rectangle whose people are counted at every frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,15}$",
                      description="Zone name, used in the stream name occupancy_<name>")
    rect: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 (corners)")

    def contains(self, p: Point) -> bool:
        """True if ``p`` is inside the rectangle (edges included)."""
        x0, y0, x1, y1 = self.rect
        return min(x0, x1) <= p[0] <= max(x0, x1) and min(y0, y1) <= p[1] <= max(y0, y1)


class TrackerConfig(BaseModel):
    """How detections of consecutive frames are joined into tracks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_step: float = Field(0.35, gt=0, description="Farthest a person moves between two "
                            "frames, in position units")
    max_missing: int = Field(3, ge=0, le=50, description="Frames a track survives without a "
                             "detection (a person briefly not detected)")
    min_hits: int = Field(2, ge=1, le=20, description="Detections before a track may count a "
                          "crossing (rejects one-frame noise)")


class CountingConfig(BaseModel):
    """``counting:`` of a counting sensor: the line, zones and tracker settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: CountingLine | None = Field(None, description="Counting line; None = occupancy only")
    zones: tuple[Zone, ...] = Field((), max_length=8, description="Zones counted per frame")
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)

    @model_validator(mode="after")
    def _unique_zones(self) -> CountingConfig:
        names = [z.name for z in self.zones]
        if len(names) != len(set(names)):
            raise ValueError(f"zone names must be unique (got {names})")
        return self


@dataclass(frozen=True, slots=True)
class StepCounts:
    """What one frame adds: crossings per direction, people present, people per zone."""

    crossed_in: int = 0
    crossed_out: int = 0
    present: int = 0
    zones: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Track:
    position: Point
    velocity: Point = (0.0, 0.0)
    hits: int = 1
    missing: int = 0
    side: int = 0  # -1 right of the line, +1 left, 0 not yet clearly on a side
    pending: int = 0  # a side change seen before min_hits: counted once the track is confirmed


class PositionCounter:
    """Greedy nearest-neighbour tracker with line-crossing and zone counting.

    Call :meth:`step` once per frame with that frame's detected positions. Tracks exist only in
    this object's memory.
    """

    def __init__(self, config: CountingConfig) -> None:
        self.config = config
        self._tracks: list[_Track] = []

    @property
    def active_tracks(self) -> int:
        """Number of tracks alive (for health; never their positions)."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget all tracks (sensor restarted, frames lost)."""
        self._tracks.clear()

    def step(self, positions: Sequence[Point]) -> StepCounts:
        """Match this frame's positions to tracks, count crossings and zone occupancy."""
        cfg = self.config.tracker
        predicted = [(t.position[0] + t.velocity[0], t.position[1] + t.velocity[1])
                     for t in self._tracks]
        pairs = sorted((math.dist(p, q), i, j) for i, p in enumerate(predicted)
                       for j, q in enumerate(positions))
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        crossed_in = crossed_out = 0
        for dist, i, j in pairs:
            if dist > cfg.max_step:
                break
            if i in matched_t or j in matched_d:
                continue
            matched_t.add(i)
            matched_d.add(j)
            track = self._tracks[i]
            new = positions[j]
            track.velocity = (0.5 * track.velocity[0] + 0.5 * (new[0] - track.position[0]),
                              0.5 * track.velocity[1] + 0.5 * (new[1] - track.position[1]))
            direction = self._move(track, track.position, new)
            track.position = new
            track.hits += 1
            track.missing = 0
            if track.hits >= cfg.min_hits and track.pending:
                direction, track.pending = direction + track.pending, 0
            if direction > 0:
                crossed_in += direction
            elif direction < 0:
                crossed_out -= direction
        survivors = []
        for i, track in enumerate(self._tracks):
            if i in matched_t:
                survivors.append(track)
            elif track.missing < cfg.max_missing:
                track.missing += 1  # not seen: coast on the prediction, so the person is
                track.position = predicted[i]  # found where they walked meanwhile
                survivors.append(track)
        for j, p in enumerate(positions):
            if j not in matched_d:
                survivors.append(_Track(p, side=self._side(p)))
        self._tracks = survivors
        # people present: tracks seen in this frame and confirmed (one-frame noise is not)
        seen = [t.position for t in self._tracks if t.missing == 0 and t.hits >= cfg.min_hits]
        zones = {z.name: sum(z.contains(p) for p in seen) for z in self.config.zones}
        return StepCounts(crossed_in, crossed_out, len(seen), zones)

    def _move(self, track: _Track, old: Point, new: Point) -> int:
        """+1 for an ``in`` crossing, −1 for ``out``, 0 for none (counted once per side change)."""
        side = self._side(new)
        if side == 0 or track.side == side:
            return 0
        previous, track.side = track.side, side
        line = self.config.line
        if previous == 0 or line is None or not _segment_spans(line, old, new):
            return 0
        direction = 1 if (side > 0) == (line.in_side == "left") else -1
        if track.hits + 1 < self.config.tracker.min_hits:
            track.pending += direction
            return 0
        return direction

    def _side(self, p: Point) -> int:
        """+1 clearly left of the line, −1 clearly right, 0 within the margin (or no line)."""
        line = self.config.line
        if line is None:
            return 0
        (x0, y0), (x1, y1) = line.start, line.end
        length = math.hypot(x1 - x0, y1 - y0)
        signed = ((x1 - x0) * (p[1] - y0) - (y1 - y0) * (p[0] - x0)) / length
        if abs(signed) <= line.margin:
            return 0
        return 1 if signed > 0 else -1


def _segment_spans(line: CountingLine, a: Point, b: Point) -> bool:
    """True if the movement a→b passes the line within its ends (projected, with margin)."""
    (x0, y0), (x1, y1) = line.start, line.end
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    t = ((mid[0] - x0) * dx + (mid[1] - y0) * dy) / length2
    slack = line.margin / math.sqrt(length2)
    return -slack <= t <= 1 + slack
