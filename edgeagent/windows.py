"""Windows: per-sensor aggregation cut on the monotonic clock, labelled on the wall clock.

A window's end is a deadline on the monotonic clock, so wall-clock steps (NTP at boot) never
stretch or shrink it. Wall-clock labels are aligned to whole multiples of the window length;
the first window after start and a window closed early on shutdown are ``partial`` and carry
their true bounds. If the wall clock steps by more than half a window, the next window is
re-aligned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgeagent.clock import Clock, ClockQuality
from edgeagent.driver import QuantityClass, Reading, StatKind, StreamSpec
from edgeagent.humidity import HIGH_HUMIDITY_FLAG, HumidityCorrection, is_high_humidity

_QUALITY_ORDER = [ClockQuality.SYNCED, ClockQuality.RTC, ClockQuality.UNSYNCED]
#: Windows in a row in which all level streams of a sensor stayed one value: flagged stuck.
STUCK_WINDOWS = 3


#: Percentile levels of a LEVEL stream: L10 is the level exceeded 10 % of the time.
PERCENTILES = {"l10": 10, "l50": 50, "l90": 90}
LEVEL_BIN_DB = 0.1  # histogram resolution for percentiles (bounded memory, exact enough)


class StreamStats:
    """Running statistics of one stream in one window.

    Welford for linear streams, the energy sum for dB, and a 0.1 dB histogram for the
    percentile levels of LEVEL streams (bounded memory: one counter per occupied bin).
    """

    __slots__ = ("_energy", "_histogram", "_m2", "kind", "maximum", "mean", "minimum", "n",
                 "total")

    def __init__(self, kind: StatKind) -> None:
        self.kind = kind
        self.n = 0
        self.mean = 0.0
        self._m2 = 0.0
        self._energy = 0.0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self._histogram: dict[int, int] = {}

    def add(self, value: float) -> None:
        """Add one sample."""
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self._m2 += delta * (value - self.mean)
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        if self.kind in (StatKind.ENERGETIC, StatKind.LEVEL):
            self._energy += 10.0 ** (value / 10.0)
        if self.kind is StatKind.LEVEL:
            key = round(value / LEVEL_BIN_DB)
            self._histogram[key] = self._histogram.get(key, 0) + 1

    def result(self) -> dict[str, float]:
        """All statistics this kind supports; the privacy gate picks the allowed ones."""
        if self.n == 0:
            return {}
        if self.kind is StatKind.COUNTER:
            return {"sum": self.total, "min": self.minimum, "max": self.maximum}
        out = {"min": self.minimum, "max": self.maximum}
        if self.kind in (StatKind.ENERGETIC, StatKind.LEVEL):
            out["mean"] = 10.0 * math.log10(self._energy / self.n)  # Leq, the energy mean
            if self.kind is StatKind.LEVEL:
                out.update(self._percentiles())
        else:
            out["mean"] = self.mean
            out["stddev"] = math.sqrt(self._m2 / (self.n - 1)) if self.n > 1 else 0.0
        return out

    def _percentiles(self) -> dict[str, float]:
        """LN = the level exceeded N % of the time: the (100 − N)th percentile, nearest rank."""
        ranks = {name: max(1, math.ceil((100 - n) / 100 * self.n))
                 for name, n in PERCENTILES.items()}
        out: dict[str, float] = {}
        seen = 0
        for key in sorted(self._histogram):
            seen += self._histogram[key]
            for name, rank in ranks.items():
                if name not in out and seen >= rank:
                    out[name] = key * LEVEL_BIN_DB
        return out


@dataclass
class ClosedWindow:
    """A finished window of one sensor: bounds, quality and raw statistics (not yet gated)."""

    sensor_id: str
    start: float  # wall clock, seconds since epoch
    end: float
    seconds: float  # configured length
    clock: ClockQuality
    partial: bool
    coverage: float
    errors: int
    stats: dict[str, StreamStats]
    streams: dict[str, StreamSpec]
    #: Plausibility flags per stream, e.g. ``{"pm25": ["stuck"]}``; published, never dropped.
    flags: dict[str, list[str]] = field(default_factory=dict)
    #: Humidity-corrected statistics per stream (raw ``stats`` untouched) and what made them.
    corrected: dict[str, StreamStats] = field(default_factory=dict)
    correction: HumidityCorrection | None = None
    humidity_source: str | None = None  # sensor id whose relativeHumidity was used


@dataclass
class _Open:
    start_mono: float
    end_mono: float
    start_wall: float
    end_wall: float
    partial_start: bool
    clock: ClockQuality
    samples: int = 0
    errors: int = 0
    stats: dict[str, StreamStats] = field(default_factory=dict)
    corrected: dict[str, StreamStats] = field(default_factory=dict)
    humid: bool = False  # a sample's humidity was above RH_HIGH


class SensorWindows:
    """Accumulates one sensor's readings and cuts aligned windows.

    Call :meth:`add` for each batch of readings from one sample, :meth:`count_error` for a
    rejected frame, :meth:`close_due` from a ticker and :meth:`close_partial` on shutdown.
    ``duty`` is the fraction of time the sensor measures (duty cycle), so that coverage says
    how complete a window is against what the sensor was meant to deliver. With a
    ``correction``, the humidity passed to :meth:`add` also yields corrected statistics.
    """

    def __init__(self, sensor_id: str, streams: list[StreamSpec], length: float,
                 interval: float, clock: Clock, *, duty: float = 1.0,
                 correction: HumidityCorrection | None = None,
                 humidity_source: str | None = None) -> None:
        self.sensor_id = sensor_id
        self.streams = {s.name: s for s in streams}
        self.length = length
        self.interval = interval
        self.duty = duty
        self.correction = correction
        self.humidity_source = humidity_source
        self._clock = clock
        self._open: _Open | None = None
        self._last_end_wall: float | None = None
        self._repeats: tuple[dict[str, tuple[float, float]], int] | None = None

    def _new(self, start_mono: float, start_wall: float | None) -> _Open:
        """Open a window at ``start_mono``; ``start_wall`` is set when contiguous."""
        quality = self._clock.quality()
        wall_now = self._clock.time() - (self._clock.monotonic() - start_mono)
        partial_start = False
        if start_wall is None or abs(wall_now - start_wall) > self.length / 2:
            start_wall = wall_now  # first window or a clock step: re-align
            partial_start = not math.isclose(start_wall % self.length, 0.0, abs_tol=1e-6)
        end_wall = (math.floor(start_wall / self.length + 1e-9) + 1) * self.length
        window = _Open(start_mono=start_mono, end_mono=start_mono + (end_wall - start_wall),
                       start_wall=start_wall, end_wall=end_wall, partial_start=partial_start,
                       clock=quality)
        window.stats = {name: StreamStats(spec.kind) for name, spec in self.streams.items()}
        if self.correction is not None:
            window.corrected = {name: StreamStats(StatKind.LINEAR) for name in self.streams
                                if name in self.correction.streams}
        return window

    def _current(self) -> _Open:
        if self._open is None:
            self._open = self._new(self._clock.monotonic(), None)
        return self._open

    @property
    def next_deadline(self) -> float:
        """Monotonic time at which the current window closes."""
        return self._current().end_mono

    def _note_quality(self, window: _Open) -> None:
        quality = self._clock.quality()
        if _QUALITY_ORDER.index(quality) > _QUALITY_ORDER.index(window.clock):
            window.clock = quality  # a window is only as good as its worst moment

    def add(self, readings: list[Reading], humidity: float | None = None) -> list[ClosedWindow]:
        """Add one sample's readings and its RH %; returns windows that closed before them."""
        closed = self.close_due(min((r.t_monotonic for r in readings),
                                    default=self._clock.monotonic()))
        window = self._current()
        self._note_quality(window)
        window.samples += 1
        for reading in readings:
            stats = window.stats.get(reading.stream)
            if stats is None:
                raise KeyError(f"sensor {self.sensor_id}: driver produced undeclared stream "
                               f"{reading.stream!r}")
            stats.add(reading.value)
            if humidity is None:
                continue
            corrected = window.corrected.get(reading.stream)
            value = (None if corrected is None or self.correction is None
                     else self.correction.correct(reading.stream, reading.value, humidity))
            if corrected is not None and value is not None:
                corrected.add(value)
        if humidity is not None and is_high_humidity(humidity):
            window.humid = True
        return closed

    def count_error(self) -> None:
        """Count one rejected frame in the current window."""
        self._current().errors += 1

    def close_due(self, now_mono: float | None = None) -> list[ClosedWindow]:
        """Close every window whose deadline has passed; empty windows are emitted too."""
        now = self._clock.monotonic() if now_mono is None else now_mono
        closed = []
        window = self._current()
        while now >= window.end_mono:
            closed.append(self._finish(window, window.end_mono, window.end_wall,
                                       partial=window.partial_start))
            window = self._open = self._new(window.end_mono, window.end_wall)
        return closed

    def close_partial(self) -> ClosedWindow | None:
        """Close the open window early (shutdown); None if it saw nothing at all."""
        window, self._open = self._open, None
        if window is None or (window.samples == 0 and window.errors == 0):
            return None
        now = self._clock.monotonic()
        end_wall = window.start_wall + (now - window.start_mono)
        return self._finish(window, now, end_wall, partial=True)

    def _finish(self, window: _Open, end_mono: float, end_wall: float, *,
                partial: bool) -> ClosedWindow:
        self._note_quality(window)
        duration = max(end_mono - window.start_mono, 1e-9)
        coverage = min(1.0, window.samples * self.interval / (duration * self.duty))
        flags = self._stuck_flags(window.stats)
        if window.humid:
            for name, spec in self.streams.items():
                if spec.quantity is QuantityClass.PARTICULATE:
                    flags.setdefault(name, []).append(HIGH_HUMIDITY_FLAG)
        return ClosedWindow(sensor_id=self.sensor_id, start=window.start_wall, end=end_wall,
                            seconds=self.length, clock=window.clock, partial=partial,
                            coverage=coverage, errors=window.errors, stats=window.stats,
                            streams=self.streams, flags=flags, corrected=window.corrected,
                            correction=self.correction, humidity_source=self.humidity_source)

    def _stuck_flags(self, stats: dict[str, StreamStats]) -> dict[str, list[str]]:
        """Flag a sensor whose every level stream stayed one identical value for several windows.

        A frozen sensor (fan blocked, firmware hang) keeps sending its last frame, so all its
        values freeze together; one constant stream alone (PM1 at 0 in clean air) is normal.
        Counts, occupancy and presence are exempt: nobody there for hours is normal too.
        """
        levels = {name: (st.minimum, st.maximum) for name, st in stats.items()
                  if st.kind not in (StatKind.COUNTER, StatKind.OCCUPANCY)
                  and self.streams[name].quantity is not QuantityClass.PRESENCE}
        frozen = bool(levels) and all(stats[name].n >= 2 and low == high
                                      for name, (low, high) in levels.items())
        if not frozen:
            self._repeats = None
            return {}
        previous, count = self._repeats or (None, 0)
        count = count + 1 if previous == levels else 1
        self._repeats = (levels, count)
        return {name: ["stuck"] for name in levels} if count >= STUCK_WINDOWS else {}
