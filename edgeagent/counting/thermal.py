"""People counting on low-resolution thermal arrays (AMG8833 8×8, MLX90640 32×24), no images.

A frame (°C, in memory only) goes through three steps:

1. :class:`ThermalBackground` — an adaptive per-pixel background plus a global offset per
   frame. Free pixels follow the floor quickly (ambient drift); pixels covered by foreground
   follow it slowly, so a person who stands for a minute is not absorbed, while a static warm
   object (a warm bench) is absorbed within minutes and anything hotter than a person (a heater)
   within about a minute.
2. A detector turns the foreground (frame − background) into person positions: ``blobs``
   (threshold, connected components, one centroid per head peak) or ``cnn`` (a small int8 TFLite
   model that outputs a person-location heat map, then peak picking with non-maximum
   suppression).
3. :class:`~edgeagent.counting.tracks.PositionCounter` joins positions into tracks and counts
   line crossings and occupancy.

Only :class:`~edgeagent.counting.tracks.StepCounts` leave :meth:`ThermalCounter.step`; frames,
foreground, heat maps and positions are never logged, stored or returned, and
:meth:`ThermalCounter.health` reports timings and counters only.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from edgeagent.counting.tracks import (
    CountingConfig,
    Point,
    PositionCounter,
    StepCounts,
    TrackerConfig,
)

log = logging.getLogger(__name__)

DETECTORS = ("blobs", "cnn")


@dataclass(frozen=True)
class SensorProfile:
    """Per-sensor settings of the pipeline (temperatures in °C, distances in pixels)."""

    shape: tuple[int, int]  # rows, cols
    mask_c: float  # foreground pixels for the background update
    blob_c: float  # blob detector: pixel threshold
    peak_c: float  # a person's hottest pixel is at least this far above the background
    min_sep_px: float  # two heads are at least this far apart
    heat_threshold: float  # cnn: minimum heat-map score of a person
    tracker: TrackerConfig  # used when the counting config does not set one
    default_detector: str  # what detector="auto" means (see models/MODEL_CARD.md)


PROFILES = {
    "amg8833": SensorProfile((8, 8), mask_c=0.9, blob_c=1.0, peak_c=1.8, min_sep_px=1.5,
                             heat_threshold=0.4,
                             tracker=TrackerConfig(max_step=0.4, max_missing=2, min_hits=2),
                             default_detector="cnn"),
    "mlx90640": SensorProfile((24, 32), mask_c=0.6, blob_c=0.8, peak_c=1.5, min_sep_px=3.0,
                              heat_threshold=0.4,
                              tracker=TrackerConfig(max_step=0.3, max_missing=3, min_hits=2),
                              default_detector="blobs"),
}


def model_path(sensor: str) -> Path:
    """The shipped TFLite model of a sensor (package data of ``edgeagent.models``)."""
    return Path(str(resources.files("edgeagent.models") / f"thermal_{sensor}.tflite"))


def _shifted_max(img: np.ndarray, fill: float) -> np.ndarray:
    """Maximum over the 8 neighbours of every pixel (the pixel itself excluded)."""
    p = np.pad(img, 1, constant_values=fill)
    rows, cols = img.shape
    out = np.full(img.shape, fill, dtype=img.dtype)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            if dr != 1 or dc != 1:
                np.maximum(out, p[dr:dr + rows, dc:dc + cols], out=out)
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3×3 binary dilation."""
    return mask | _shifted_max(mask.astype(np.uint8), 0).astype(bool)


class ThermalBackground:
    """Adaptive per-pixel background with a global per-frame offset.

    Initialised with the median of the first ``init_frames`` frames (no foreground until then).
    Each frame: offset = median of (frame − background) over pixels that were free floor in the
    last frame (common-mode changes of the whole array, ambient drift under people);
    foreground = frame − background − offset; then every pixel moves towards
    (frame − offset) with a time constant of ``tau_s`` when free,
    ``tau_occupied_s`` when it (or a neighbour) is foreground, and ``tau_hot_s`` when it is
    hotter than a person can be (``hot_c``).
    """

    def __init__(self, shape: tuple[int, int], *, mask_c: float, init_frames: int = 8,
                 tau_s: float = 20.0, tau_occupied_s: float = 120.0, tau_hot_s: float = 20.0,
                 hot_c: float = 37.0) -> None:
        self.shape = shape
        self.mask_c = mask_c
        self.init_frames = init_frames
        self.tau_s, self.tau_occupied_s, self.tau_hot_s, self.hot_c = (
            tau_s, tau_occupied_s, tau_hot_s, hot_c)
        self.background: np.ndarray | None = None
        self.offset = 0.0
        self._first: list[np.ndarray] = []
        self._occupied = np.zeros(shape, bool)
        self._cold = np.zeros(shape, bool)
        self._last_t: float | None = None

    @property
    def ready(self) -> bool:
        """True once initialised (foreground is meaningful)."""
        return self.background is not None

    def reset(self) -> None:
        """Start again from the next frames."""
        self.background, self.offset, self._first, self._last_t = None, 0.0, [], None
        self._occupied[:] = False
        self._cold[:] = False

    def update(self, frame: np.ndarray, t: float) -> np.ndarray:
        """Foreground of ``frame`` (°C above background; zeros while initialising)."""
        dt = 0.1 if self._last_t is None else min(max(t - self._last_t, 0.0), 5.0)
        self._last_t = t
        if self.background is None:
            self._first.append(frame.astype(np.float32))
            if len(self._first) >= self.init_frames:
                self.background = np.median(np.stack(self._first), axis=0).astype(np.float32)
                self._first = []
            return np.zeros(self.shape, np.float32)
        residual = frame - self.background
        # free floor: neither near foreground nor in a cold hole (heat a person left in the
        # background); cold holes would drag the offset down and lock the model in
        free = ~self._occupied & ~self._cold
        if free.sum() >= 0.2 * free.size:
            self.offset = float(np.median(residual[free]))
        foreground = (residual - self.offset).astype(np.float32)
        self._occupied = _dilate(foreground > self.mask_c)
        self._cold = foreground < -self.mask_c
        tau = np.where(self._occupied, self.tau_occupied_s, self.tau_s)
        tau = np.where(frame > self.hot_c, self.tau_hot_s, tau)
        alpha = 1.0 - np.exp(-dt / tau)
        self.background += (alpha * (frame - self.offset - self.background)).astype(np.float32)
        return foreground


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected component labels 1..n of a boolean image (0 = not set), and n.

    Two-pass union-find over the set pixels only; small frames, so plain Python is fine.
    """
    rows, cols = mask.shape
    labels = np.zeros((rows, cols), np.int32)
    parent = [0]

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    grid = [[0] * (cols + 2) for _ in range(rows + 1)]  # padded: row 0, cols 0 and cols+1
    for r, c in zip(*np.nonzero(mask), strict=True):
        r, c = int(r) + 1, int(c) + 1
        above = grid[r - 1]
        near = [n for n in (grid[r][c - 1], above[c - 1], above[c], above[c + 1]) if n]
        if not near:
            parent.append(len(parent))
            grid[r][c] = len(parent) - 1
            continue
        roots = {root(n) for n in near}
        keep = min(roots)
        for other in roots:
            parent[other] = keep
        grid[r][c] = keep
    final: dict[int, int] = {}
    for r, c in zip(*np.nonzero(mask), strict=True):
        top = root(grid[r + 1][c + 1])
        labels[r, c] = final.setdefault(top, len(final) + 1)
    return labels, len(final)


def _to_frame(r: float, c: float, shape: tuple[int, int]) -> Point:
    return ((c + 0.5) / shape[1], (r + 0.5) / shape[0])


class BlobDetector:
    """Classical baseline: threshold, connected components, one weighted centroid per head.

    A component whose foreground has several clearly separated peaks (heads, with a dip between
    them) is split by assigning each pixel to its nearest peak. Splitting by area would need the
    mounting height (a person at 2.5 m covers ~8× the pixels of one at 4 m), which the counter
    does not know.
    """

    name = "blobs"
    #: a second head is at least this fraction of the hottest one
    min_peak_ratio = 0.35
    #: and the foreground between two heads dips below this fraction of the cooler head
    dip_ratio = 0.9

    def __init__(self, profile: SensorProfile) -> None:
        self.profile = profile

    def reset(self) -> None:
        """Nothing to forget."""

    def detect(self, foreground: np.ndarray, frame: np.ndarray) -> list[Point]:
        """Person positions (frame units) in one foreground image."""
        p = self.profile
        mask = foreground >= p.blob_c
        if not mask.any():
            return []
        labels, n = label_components(mask)
        tie_break = np.arange(foreground.size, dtype=np.float32).reshape(foreground.shape) * 1e-6
        ranked = foreground + tie_break
        is_peak = mask & (ranked >= _shifted_max(ranked, -np.inf)) & (foreground >= p.peak_c)
        positions: list[Point] = []
        for label in range(1, n + 1):
            member = labels == label
            peaks = np.argwhere(is_peak & member)
            if len(peaks) == 0:
                continue
            heads = self._heads(foreground, peaks)
            rr, cc = np.nonzero(member)
            w = np.maximum(foreground[rr, cc], 0.0)
            if len(heads) == 1:
                positions.append(_to_frame(float(np.average(rr, weights=w)),
                                           float(np.average(cc, weights=w)), foreground.shape))
                continue
            hr, hc = np.array(heads, float).T
            nearest = np.argmin((rr[:, None] - hr) ** 2 + (cc[:, None] - hc) ** 2, axis=1)
            for k in range(len(heads)):
                sel = nearest == k
                positions.append(_to_frame(float(np.average(rr[sel], weights=w[sel])),
                                           float(np.average(cc[sel], weights=w[sel])),
                                           foreground.shape))
        return positions

    def _heads(self, fg: np.ndarray, peaks: np.ndarray) -> list[tuple[int, int]]:
        """Peaks far enough apart with a dip between them, hottest first."""
        order = sorted(((float(fg[r, c]), int(r), int(c)) for r, c in peaks), reverse=True)
        top = order[0][0]
        heads: list[tuple[int, int]] = [(order[0][1], order[0][2])]
        for value, r, c in order[1:]:
            if value < self.min_peak_ratio * top:
                break
            if all(math.dist((r, c), h) >= self.profile.min_sep_px
                   and self._dip(fg, (r, c), h) <= self.dip_ratio * min(value, float(fg[h]))
                   for h in heads):
                heads.append((r, c))
        return heads

    @staticmethod
    def _dip(fg: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
        """Lowest foreground on the straight segment between two pixels."""
        steps = max(abs(a[0] - b[0]), abs(a[1] - b[1]))
        f = np.linspace(0.0, 1.0, steps + 1)
        rr = np.rint(a[0] + f * (b[0] - a[0])).astype(int)
        cc = np.rint(a[1] + f * (b[1] - a[1])).astype(int)
        return float(fg[rr, cc].min())


def cnn_input(foreground: np.ndarray, previous: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The model's input (rows, cols, 3): foreground now and one frame ago, and temperature.

    Scaled to a few units so one int8 scale fits all channels; the temperature channel lets
    the model tell a heater (hotter than skin) from a person.
    """
    return np.stack([np.clip(foreground, -4.0, 12.0) / 4.0,
                     np.clip(previous, -4.0, 12.0) / 4.0,
                     np.clip((frame - 30.0) / 5.0, -3.0, 3.0)], axis=-1).astype(np.float32)


def pick_peaks(heat: np.ndarray, threshold: float, min_sep_px: float) -> list[Point]:
    """Heat-map peaks (3×3 local maxima ≥ threshold) with non-maximum suppression.

    Each kept peak is refined to the score-weighted centroid of its 3×3 neighbourhood and
    returned in frame units of the heat-map grid.
    """
    tie_break = np.arange(heat.size, dtype=np.float32).reshape(heat.shape) * 1e-7
    ranked = heat + tie_break
    candidates = np.argwhere((heat >= threshold) & (ranked >= _shifted_max(ranked, -np.inf)))
    if len(candidates) == 0:
        return []
    order = np.argsort(-heat[candidates[:, 0], candidates[:, 1]])
    rows, cols = heat.shape
    kept: list[tuple[int, int]] = []
    out: list[Point] = []
    for r, c in candidates[order]:
        if any(math.dist((r, c), k) < min_sep_px for k in kept):
            continue
        kept.append((int(r), int(c)))
        r0, r1, c0, c1 = max(r - 1, 0), min(r + 2, rows), max(c - 1, 0), min(c + 2, cols)
        w = np.maximum(heat[r0:r1, c0:c1], 0.0) ** 2
        gr, gc = np.mgrid[r0:r1, c0:c1]
        total = float(w.sum())
        out.append(_to_frame(float((gr * w).sum()) / total, float((gc * w).sum()) / total,
                             heat.shape))
    return out


class CnnDetector:
    """The TFLite heat-map model with peak picking (see models/MODEL_CARD.md)."""

    name = "cnn"

    def __init__(self, profile: SensorProfile, path: Path) -> None:
        from edgeagent.inference import load_model  # numpy + a TFLite runtime: optional extra

        self.profile = profile
        self.model = load_model(path)
        rows, cols = profile.shape
        if self.model.input_shape != (1, rows, cols, 3):
            raise ValueError(f"model {path} expects input {self.model.input_shape}, "
                             f"not frames of {rows}×{cols}")
        out = self.model.output_shape
        # heat-map grid coarser than the frame: NMS distance in heat-map pixels
        self._min_sep = profile.min_sep_px * out[1] / rows
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous frame."""
        self._previous = None

    def detect(self, foreground: np.ndarray, frame: np.ndarray) -> list[Point]:
        """Person positions (frame units) from the heat map of this and the previous frame."""
        previous = foreground if self._previous is None else self._previous
        self._previous = foreground
        heat = self.model.run(cnn_input(foreground, previous, frame)[None])[0, :, :, 0]
        return pick_peaks(heat, self.profile.heat_threshold, self._min_sep)


class ThermalCounter:
    """Frames in, :class:`StepCounts` out: background, detector, tracker — all in memory.

    ``counting.tracker`` is used when the configuration sets it; otherwise the sensor's profile
    tracker (:data:`PROFILES`) replaces the generic default, because a person moves a different
    fraction of the frame per frame on each sensor. ``detector="auto"`` is the sensor's default.
    """

    #: A gap longer than this between frames (seconds) forgets the tracks.
    max_gap_s = 1.0

    def __init__(self, counting: CountingConfig, shape: tuple[int, int], *, sensor: str,
                 detector: str = "auto", model: str | Path | None = None) -> None:
        if sensor not in PROFILES:
            raise ValueError(f"unknown thermal sensor {sensor!r}; one of {sorted(PROFILES)}")
        profile = PROFILES[sensor]
        if tuple(shape) != profile.shape:
            raise ValueError(f"{sensor} frames are {profile.shape[0]}×{profile.shape[1]} "
                             f"(rows×cols), not {shape[0]}×{shape[1]}")
        if detector == "auto":
            detector = profile.default_detector
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; one of auto, {', '.join(DETECTORS)}")
        if "tracker" not in counting.model_fields_set:
            counting = counting.model_copy(update={"tracker": profile.tracker})
        self.sensor = sensor
        self.shape = profile.shape
        self._background = ThermalBackground(profile.shape, mask_c=profile.mask_c)
        self._detector: BlobDetector | CnnDetector = (
            BlobDetector(profile) if detector == "blobs"
            else CnnDetector(profile, Path(model) if model else model_path(sensor)))
        self._counter = PositionCounter(counting)
        self._times: deque[float] = deque(maxlen=50)
        self._inference_ms: deque[float] = deque(maxlen=100)
        self._frames = 0
        self._last_t: float | None = None
        self._runtime = getattr(getattr(self._detector, "model", None), "runtime", "numpy")
        log.info("thermal counter ready: %s %d×%d, detector %s (%s)", sensor, *profile.shape,
                 self._detector.name, self._runtime)

    @property
    def detector(self) -> str:
        """Name of the detector in use (``blobs`` or ``cnn``)."""
        return self._detector.name

    def reset(self) -> None:
        """Forget background, tracks and the previous frame (sensor restarted)."""
        self._background.reset()
        self._detector.reset()
        self._counter.reset()
        self._last_t = None

    def step(self, frame_c: np.ndarray, t: float) -> StepCounts:
        """Count one frame (°C, rows × cols) taken at monotonic time ``t`` seconds."""
        frame = np.asarray(frame_c, dtype=np.float32)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} is not {self.shape}")
        if self._last_t is not None and not 0.0 < t - self._last_t <= self.max_gap_s:
            self._counter.reset()  # frames lost or clock jumped: tracks are no longer valid
            self._detector.reset()
        self._last_t = t
        if not np.isfinite(frame).all():
            fill = (self._background.background if self._background.ready
                    else np.nanmedian(frame))
            frame = np.where(np.isfinite(frame), frame, fill).astype(np.float32)
        self._frames += 1
        self._times.append(t)
        foreground = self._background.update(frame, t)
        positions: list[Point] = []
        if self._background.ready:
            started = time.perf_counter()
            positions = self._detector.detect(foreground, frame)
            self._inference_ms.append((time.perf_counter() - started) * 1000.0)
        return self._counter.step(positions)

    def health(self) -> dict[str, float | int | str]:
        """Frames, frame rate, detector and runtime, timings, mean background, track count.

        Never frames or positions.
        """
        times = self._times
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and \
            times[-1] > times[0] else 0.0
        ms = self._inference_ms
        bg = self._background.background
        return {
            "frames": self._frames,
            "fps": round(fps, 2),
            "inference_ms_mean": round(sum(ms) / len(ms), 3) if ms else 0.0,
            "inference_ms_max": round(max(ms), 3) if ms else 0.0,
            "detector": self._detector.name,
            "runtime": self._runtime,  # ai-edge-litert / tflite-runtime / tensorflow / numpy
            "background_c": round(float(bg.mean()), 1) if bg is not None else float("nan"),
            "active_tracks": self._counter.active_tracks,
        }
