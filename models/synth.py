"""Synthetic overhead thermal scenes: people as warm blobs over a floor, with ground truth.

A sensor looks straight down from ``mount_m`` metres. People walk along the frame's y axis
(rows) through a counting line across the middle of the frame, in both directions, alone, in
pairs side by side, passing each other, or stopping for a while. The scene adds what the
background model must cope with: ambient drift, a common-mode offset per frame, a fixed pixel
pattern, static heat sources (a heater switched on, a bench left warm) and sensor noise and
quantisation. Everything is deterministic for a given seed.

Geometry: sensor pixels are uniform in angle, so frame coordinate x = 0.5 + θx / FOVx (and y
likewise), matching ``x = (col + 0.5) / cols``. A person is drawn as a body ellipse (shoulders,
across the walking direction) with the head on top, each seen on its own plane (distance from
the sensor = mount height − that part's height), so apparent size follows from mounting height
and field of view. Pixel values are the mean of a few sub-pixel rays (partial coverage).

Ground truth per frame: the head positions (frame coordinates) of the people whose head is in
view, their count (occupancy), and line crossings per direction (a head path that crosses the
line between two frames, within the line's ends). Only numpy is needed.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: The counting line used for ground truth unless told otherwise: across the middle, crossing
#: it downwards (y growing) is ``in`` (the left side of start→end, as in CountingLine).
DEFAULT_LINE = ((0.0, 0.5), (1.0, 0.5))

#: Scene categories. ``warm`` (ambient close to skin temperature) is outside the operating
#: envelope and is reported separately by the evaluation.
CATEGORIES = ("single", "pairs", "opposite", "lingering", "heater", "drift", "mixed", "warm")


@dataclass(frozen=True)
class SensorSpec:
    """Resolution, field of view, frame rate and noise of one thermal array."""

    name: str
    rows: int
    cols: int
    fov_x_deg: float
    fov_y_deg: float
    fps: float
    noise_c: tuple[float, float]  # range of temporal noise sigma, °C
    pattern_c: float  # fixed pattern noise sigma, °C
    quant_c: float  # output quantisation step, °C (0 = none)
    supersample: int
    blur_px: float  # optical blur (lens point spread), Gaussian sigma in pixels


SENSORS = {
    "amg8833": SensorSpec("amg8833", 8, 8, 60.0, 60.0, 10.0, (0.15, 0.3), 0.3, 0.25, 5, 0.6),
    "mlx90640": SensorSpec("mlx90640", 24, 32, 110.0, 75.0, 8.0, (0.1, 0.2), 0.2, 0.0, 2, 0.5),
    "mlx90640-narrow": SensorSpec("mlx90640-narrow", 24, 32, 55.0, 35.0, 8.0, (0.1, 0.2), 0.2,
                                  0.0, 2, 0.5),
}


@dataclass
class Person:
    """One person: size, surface temperatures and a piecewise-linear path on the ground."""

    height_m: float
    head_c: float
    body_c: float
    path: list[tuple[float, float, float]]  # (t, X, Y): seconds, metres from the nadir
    sway_m: float = 0.0  # small movement while standing

    def at(self, t: float) -> tuple[float, float, float] | None:
        """Ground position (X, Y) and heading (radians from +Y) at time t, None off the path."""
        pts = self.path
        if t < pts[0][0] or t > pts[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(pts):
            if t0 <= t <= t1:
                f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                x, y = x0 + f * (x1 - x0), y0 + f * (y1 - y0)
                if x1 == x0 and y1 == y0:  # standing: a little sway, keep the last heading
                    x += self.sway_m * math.sin(1.3 * t)
                    y += self.sway_m * math.sin(0.9 * t + 1.0)
                    return x, y, self._heading_before(t0)
                return x, y, math.atan2(x1 - x0, y1 - y0)
        return None

    def _heading_before(self, t: float) -> float:
        for (_, x0, y0), (t1, x1, y1) in itertools.pairwise(self.path):
            if t1 >= t and (x1 != x0 or y1 != y0):
                return math.atan2(x1 - x0, y1 - y0)
        return 0.0


@dataclass
class HeatSource:
    """A static warm patch on the floor: a heater (hot, steady) or a bench left warm (decays)."""

    x_m: float
    y_m: float
    sigma_x_m: float
    sigma_y_m: float
    temp_c: float
    t_on: float = 0.0
    decay_s: float | None = None  # None: steady; else excess decays with this time constant


@dataclass
class Scene:
    """Everything needed to render a sequence; random_scene() draws one from a seed."""

    sensor: SensorSpec
    category: str
    seed: int
    mount_m: float
    duration_s: float
    fps: float
    ambient_c: float
    drift_c_per_s: float = 0.0
    wobble_c: float = 0.0  # amplitude of a slow sinusoidal ambient change
    common_jitter_c: float = 0.05  # per-frame offset of the whole array
    noise_c: float = 0.2
    people: list[Person] = field(default_factory=list)
    sources: list[HeatSource] = field(default_factory=list)


@dataclass
class ThermalSequence:
    """Frames in °C with their ground truth (synthetic, or annotated for a recording)."""

    frames: np.ndarray  # (n, rows, cols) float32 °C
    t: np.ndarray  # (n,) seconds
    positions: list[np.ndarray]  # per frame (k, 2) head positions (x, y) in frame units
    crossings_in: np.ndarray  # frame indices at which a true ``in`` crossing completed
    crossings_out: np.ndarray
    sensor: str
    category: str
    meta: dict = field(default_factory=dict)

    @property
    def occupancy(self) -> np.ndarray:
        """People in view per frame."""
        return np.array([len(p) for p in self.positions], dtype=np.int32)


# --- scene drawing --------------------------------------------------------------------------


def _half_view(sensor: SensorSpec, dist: float) -> tuple[float, float]:
    """Half width (X) and half length (Y) of the view on a plane ``dist`` below the sensor."""
    return (dist * math.tan(math.radians(sensor.fov_x_deg) / 2),
            dist * math.tan(math.radians(sensor.fov_y_deg) / 2))


def _walker(rng: np.random.Generator, scene: Scene, t0: float, *, x_frame: float | None = None,
            direction: int | None = None, speed: float | None = None,
            height: float | None = None, linger_s: float = 0.0) -> Person:
    """A person crossing the view along Y (optionally stopping in view, maybe turning back)."""
    sensor = scene.sensor
    height = height if height is not None else float(rng.uniform(1.5, 1.95))
    dist = scene.mount_m - height
    _, half_y = _half_view(sensor, dist)
    if x_frame is None:
        x_frame = float(rng.uniform(0.15, 0.85))
    x_cross = dist * math.tan((x_frame - 0.5) * math.radians(sensor.fov_x_deg))
    direction = direction if direction is not None else int(rng.choice([-1, 1]))
    speed = speed if speed is not None else float(rng.uniform(0.5, 2.0))
    heading = float(rng.uniform(-0.35, 0.35))  # radians off the Y axis
    reach = half_y / max(math.cos(heading), 0.5) + 1.0  # start and end well out of view
    dx, dy = math.sin(heading) * direction, math.cos(heading) * direction
    start = (x_cross - dx * reach, -dy * reach)
    end = (x_cross + dx * reach, dy * reach)
    path = [(t0, *start)]
    if linger_s > 0:
        # stop clearly on one side of the line, then go on (crossing) or turn back
        stop_frame = float(rng.uniform(0.15, 0.33))
        along = half_y * (1 - 2 * stop_frame) / max(math.cos(heading), 0.5)
        before = bool(rng.random() < 0.5)
        s = reach - along if before else reach + along
        stop = (start[0] + dx * s, start[1] + dy * s)
        t_stop = t0 + s / speed
        path += [(t_stop, *stop), (t_stop + linger_s, *stop)]
        if rng.random() < 0.3:  # turn back
            path.append((t_stop + linger_s + s / speed, *start))
        else:
            path.append((t_stop + linger_s + (2 * reach - s) / speed, *end))
    else:
        path.append((t0 + 2 * reach / speed, *end))
    head = float(rng.uniform(30.0, 34.0))
    body = float(rng.uniform(28.0, min(head, 32.0)))
    return Person(height, head, body, path, sway_m=0.03 if linger_s else 0.0)


def _pair(rng: np.random.Generator, scene: Scene, t0: float, *, opposite: bool) -> list[Person]:
    """Two people side by side (same direction) or passing each other (opposite directions)."""
    sensor = scene.sensor
    gap_m = float(rng.uniform(0.45, 0.75))  # centre to centre
    dist = scene.mount_m - 1.72
    centre = float(rng.uniform(0.35, 0.65))
    dx_frame = math.degrees(math.atan(gap_m / 2 / dist)) / sensor.fov_x_deg
    speed = float(rng.uniform(0.6, 1.8))
    direction = int(rng.choice([-1, 1]))
    a = _walker(rng, scene, t0, x_frame=centre - dx_frame, direction=direction, speed=speed)
    if opposite:  # meet in the middle of the view
        b = _walker(rng, scene, t0, x_frame=centre + dx_frame, direction=-direction,
                    speed=float(rng.uniform(0.6, 1.8)))
        shift = (a.path[0][0] + a.path[-1][0]) / 2 - (b.path[0][0] + b.path[-1][0]) / 2
        b.path = [(t + shift, x, y) for t, x, y in b.path]
        return [a, b]
    # side by side: the same path, shifted across the walking direction, a little ahead or behind
    b = _walker(rng, scene, t0, direction=direction, speed=speed)
    (_, xa0, ya0), (_, xa1, ya1) = a.path[0], a.path[-1]
    length = math.hypot(xa1 - xa0, ya1 - ya0)
    nx, ny = (ya1 - ya0) / length * gap_m, -(xa1 - xa0) / length * gap_m
    lag = float(rng.uniform(-0.25, 0.25))
    b.path = [(t + lag, x + nx * direction, y + ny * direction) for t, x, y in a.path]
    return [a, b]


def random_scene(sensor: str, category: str, seed: int, duration_s: float | None = None) -> Scene:
    """Draw a scene of one category; the same arguments always give the same scene."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; one of {CATEGORIES}")
    rng = np.random.default_rng([seed, CATEGORIES.index(category), len(sensor)])
    spec = SENSORS[sensor]
    mount = float(rng.uniform(2.5, 4.0))
    if sensor == "mlx90640" and rng.random() < 0.2:
        spec, mount = SENSORS["mlx90640-narrow"], float(rng.uniform(3.5, 4.0))
    default_duration = {"lingering": 150.0, "heater": 180.0, "drift": 120.0, "mixed": 120.0}
    duration = duration_s or default_duration.get(category, 60.0)
    warm = category == "warm"
    scene = Scene(spec, category, seed, mount, duration, spec.fps,
                  ambient_c=float(rng.uniform(26.0, 29.0) if warm else rng.uniform(10.0, 24.0)),
                  drift_c_per_s=float(rng.uniform(-0.005, 0.005)),
                  wobble_c=float(rng.uniform(0.0, 0.3)),
                  common_jitter_c=float(rng.uniform(0.02, 0.1)),
                  noise_c=float(rng.uniform(*spec.noise_c)))
    t, end = 3.0, duration - 6.0  # the first seconds initialise the background
    if category == "drift":
        scene.drift_c_per_s = float(rng.choice([-1, 1]) * rng.uniform(0.015, 0.035))
        scene.wobble_c = float(rng.uniform(0.3, 1.0))
        scene.common_jitter_c = float(rng.uniform(0.1, 0.3))
    if category == "heater":
        sx = float(rng.uniform(0.1, 0.2))
        _, half_y = _half_view(spec, mount)
        y = float(rng.choice([-1, 1]) * rng.uniform(0.45, 0.8) * half_y)
        x = float(rng.uniform(-0.6, 0.6) * _half_view(spec, mount)[0])
        if rng.random() < 0.6:  # a heater switched on
            scene.sources.append(HeatSource(x, y, sx, sx, float(rng.uniform(45.0, 70.0)),
                                            t_on=float(rng.uniform(5.0, 20.0))))
        else:  # a bench left warm by someone who sat there
            scene.sources.append(HeatSource(x, y, 0.2, 0.45, scene.ambient_c + 8.0,
                                            t_on=float(rng.uniform(5.0, 20.0)),
                                            decay_s=float(rng.uniform(200.0, 600.0))))
    while t < end:
        if category == "pairs" or category == "opposite":
            group = _pair(rng, scene, t, opposite=category == "opposite")
            gap = float(rng.uniform(4.0, 9.0))
        elif category == "lingering" and rng.random() < 0.5:
            linger = float(rng.uniform(15.0, 75.0))
            group = [_walker(rng, scene, t, linger_s=linger)]
            gap = float(rng.uniform(0.3, 0.6)) * linger + 3.0  # others pass while they stand
        elif category == "mixed":
            r = rng.random()
            if r < 0.2:
                group = _pair(rng, scene, t, opposite=bool(rng.random() < 0.5))
            elif r < 0.3:
                group = [_walker(rng, scene, t, linger_s=float(rng.uniform(10.0, 40.0)))]
            else:
                group = [_walker(rng, scene, t)]
            gap = float(rng.exponential(3.0)) + 0.8
        else:
            group = [_walker(rng, scene, t)]
            gap = float(rng.uniform(3.0, 7.0))
        if _too_close(group, scene.people):  # people walk round each other: draw again
            t += 0.5
            continue
        scene.people += [p for p in group if p.path[-1][0] < duration]
        t += gap
    return scene


def _too_close(group: list[Person], others: list[Person], min_m: float = 0.45) -> bool:
    """True if someone in ``group`` comes closer than ``min_m`` to anyone already there."""
    start = min(p.path[0][0] for p in group)
    end = max(p.path[-1][0] for p in group)
    near = [o for o in others if o.path[-1][0] >= start and o.path[0][0] <= end]
    if not near:
        return False
    for t in np.arange(start, end, 0.1):
        here = [p.at(float(t)) for p in near]
        for person in group:
            a = person.at(float(t))
            if a is None:
                continue
            for b in here:
                if b is not None and math.hypot(a[0] - b[0], a[1] - b[1]) < min_m:
                    return True
    return False


# --- rendering ------------------------------------------------------------------------------


def _ray_tangents(spec: SensorSpec) -> tuple[np.ndarray, np.ndarray]:
    """Tan of the ray angles of every sub-pixel, shape (rows*ss, cols*ss)."""
    ss = spec.supersample
    u = (np.arange(spec.cols * ss) + 0.5) / (spec.cols * ss) - 0.5
    v = (np.arange(spec.rows * ss) + 0.5) / (spec.rows * ss) - 0.5
    tx = np.tan(u * math.radians(spec.fov_x_deg))
    ty = np.tan(v * math.radians(spec.fov_y_deg))
    return np.meshgrid(tx, ty)


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable 3-tap Gaussian blur with edge padding (the lens point spread)."""
    side = math.exp(-0.5 / sigma_px ** 2)
    k = np.array([side, 1.0, side]) / (1.0 + 2.0 * side)
    p = np.pad(img, 1, mode="edge")
    rows = k[0] * p[:-2] + k[1] * p[1:-1] + k[2] * p[2:]
    return k[0] * rows[:, :-2] + k[1] * rows[:, 1:-1] + k[2] * rows[:, 2:]


def _frame_xy(spec: SensorSpec, dist: float, x_m: float, y_m: float) -> tuple[float, float]:
    return (0.5 + math.atan2(x_m, dist) / math.radians(spec.fov_x_deg),
            0.5 + math.atan2(y_m, dist) / math.radians(spec.fov_y_deg))


def _crossings(prev: tuple[float, float], cur: tuple[float, float],
               line: tuple[tuple[float, float], tuple[float, float]]) -> int:
    """+1 if prev→cur crosses the line to its left side (``in``), −1 to its right, else 0."""
    (x0, y0), (x1, y1) = line
    def side(p: tuple[float, float]) -> float:
        return (x1 - x0) * (p[1] - y0) - (y1 - y0) * (p[0] - x0)
    s0, s1 = side(prev), side(cur)
    if (s0 > 0) == (s1 > 0) or s0 == s1:
        return 0
    f = s0 / (s0 - s1)
    px, py = prev[0] + f * (cur[0] - prev[0]), prev[1] + f * (cur[1] - prev[1])
    length2 = (x1 - x0) ** 2 + (y1 - y0) ** 2
    u = ((px - x0) * (x1 - x0) + (py - y0) * (y1 - y0)) / length2
    if not 0.0 <= u <= 1.0:
        return 0
    return 1 if s1 > 0 else -1


def render(scene: Scene, line: tuple[tuple[float, float], tuple[float, float]] = DEFAULT_LINE,
           ) -> ThermalSequence:
    """Render a scene to frames (°C) and ground truth."""
    spec = scene.sensor
    rng = np.random.default_rng([scene.seed, 7919])
    ss = spec.supersample
    tx, ty = _ray_tangents(spec)
    n = round(scene.duration_s * scene.fps)
    times = np.arange(n) / scene.fps
    gradient = rng.normal(0, 0.4) * (tx / tx.max()) + rng.normal(0, 0.4) * (ty / ty.max())
    pattern = rng.normal(0, spec.pattern_c, (spec.rows, spec.cols))
    frames = np.empty((n, spec.rows, spec.cols), np.float32)
    positions: list[np.ndarray] = []
    cross_in: list[int] = []
    cross_out: list[int] = []
    last_xy: dict[int, tuple[float, float]] = {}
    wobble_phase = rng.uniform(0, 2 * math.pi)
    for k, t in enumerate(times):
        ambient = (scene.ambient_c + scene.drift_c_per_s * t
                   + scene.wobble_c * math.sin(2 * math.pi * t / 90.0 + wobble_phase))
        img = np.full(tx.shape, ambient) + gradient
        for src in scene.sources:
            if t < src.t_on:
                continue
            excess = src.temp_c - scene.ambient_c
            if src.decay_s:
                excess *= math.exp(-(t - src.t_on) / src.decay_s)
            gx, gy = scene.mount_m * tx - src.x_m, scene.mount_m * ty - src.y_m
            cover = np.exp(-0.5 * ((gx / src.sigma_x_m) ** 2 + (gy / src.sigma_y_m) ** 2) ** 2)
            img += cover * excess
        seen = []
        for i, person in enumerate(scene.people):
            state = person.at(t)
            if state is None:
                last_xy.pop(i, None)
                continue
            x_m, y_m, heading = state
            d_body = scene.mount_m - (person.height_m - 0.25)
            d_head = scene.mount_m - person.height_m
            # body: an ellipse across the walking direction (shoulders ~0.45 m wide)
            gx, gy = d_body * tx - x_m, d_body * ty - y_m
            c, s = math.cos(heading), math.sin(heading)
            across, along = gx * c - gy * s, gx * s + gy * c
            body = np.exp(-0.5 * ((across / 0.17) ** 2 + (along / 0.11) ** 2) ** 1.5)
            img += body * (person.body_c - img)
            gx, gy = d_head * tx - x_m, d_head * ty - y_m
            head = np.exp(-0.5 * ((gx * gx + gy * gy) / 0.085 ** 2) ** 1.5)
            img += head * (person.head_c - img)
            xy = _frame_xy(spec, d_head, x_m, y_m)
            if i in last_xy:
                step = _crossings(last_xy[i], xy, line)
                if step > 0:
                    cross_in.append(k)
                elif step < 0:
                    cross_out.append(k)
            last_xy[i] = xy
            if 0.0 <= xy[0] <= 1.0 and 0.0 <= xy[1] <= 1.0:
                seen.append(xy)
        frame = _blur(img.reshape(spec.rows, ss, spec.cols, ss).mean(axis=(1, 3)), spec.blur_px)
        frame += pattern
        frame += rng.normal(0, scene.common_jitter_c)
        frame += rng.normal(0, scene.noise_c, frame.shape)
        if spec.quant_c:
            frame = np.round(frame / spec.quant_c) * spec.quant_c
        frames[k] = frame
        positions.append(np.array(seen, np.float32).reshape(-1, 2))
    meta = {"seed": scene.seed, "mount_m": round(scene.mount_m, 3), "fov": spec.name,
            "fps": scene.fps, "ambient_c": round(scene.ambient_c, 2),
            "people": len(scene.people)}
    return ThermalSequence(frames, times, positions, np.array(cross_in, np.int32),
                           np.array(cross_out, np.int32), spec.name.split("-")[0],
                           scene.category, meta)


def make_sequence(sensor: str, category: str, seed: int,
                  duration_s: float | None = None) -> ThermalSequence:
    """Draw and render one synthetic sequence."""
    return render(random_scene(sensor, category, seed, duration_s))


# --- sequence files -------------------------------------------------------------------------


def save_sequence(path: str | Path, seq: ThermalSequence) -> None:
    """Write a sequence to a compressed ``.npz`` (frames as centi-degrees, ground truth)."""
    counts = np.array([len(p) for p in seq.positions], np.int16)
    flat = (np.concatenate(seq.positions) if len(seq.positions) else np.zeros((0, 2)))
    np.savez_compressed(
        path, frames_cc=np.round(seq.frames * 100).astype(np.int16), t=seq.t.astype(np.float64),
        position_counts=counts, positions=flat.astype(np.float32),
        crossings_in=seq.crossings_in, crossings_out=seq.crossings_out,
        info=np.array(json.dumps({"sensor": seq.sensor, "category": seq.category,
                                  "meta": seq.meta})))


def load_sequence(path: str | Path) -> ThermalSequence:
    """Read a sequence written by :func:`save_sequence` (a recording annotated the same way)."""
    with np.load(path, allow_pickle=False) as data:
        info = json.loads(str(data["info"]))
        counts = data["position_counts"].astype(int)
        flat = data["positions"]
        splits = np.cumsum(counts)[:-1]
        positions = [p.reshape(-1, 2) for p in np.split(flat, splits)] if len(counts) else []
        return ThermalSequence(data["frames_cc"].astype(np.float32) / 100, data["t"], positions,
                               data["crossings_in"], data["crossings_out"], info["sensor"],
                               info["category"], info.get("meta", {}))


#: The replayed hard cases shipped in models/sequences/: (sensor, category, seed, seconds).
REPLAY_SET = (
    ("amg8833", "pairs", 20001, 60.0), ("amg8833", "lingering", 20002, 120.0),
    ("amg8833", "heater", 20003, 180.0), ("amg8833", "drift", 20004, 120.0),
    ("mlx90640", "pairs", 20001, 30.0), ("mlx90640", "lingering", 20002, 60.0),
    ("mlx90640", "heater", 20003, 60.0), ("mlx90640", "drift", 20004, 40.0),
)


def main(argv: list[str] | None = None) -> int:
    """Write the replay set: ``python -m edgeagent.models.synth models/sequences``."""
    import argparse

    parser = argparse.ArgumentParser(description="write the replayed sequence files")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for sensor, category, seed, seconds in REPLAY_SET:
        path = args.folder / f"{sensor}_{category}_{seed}.npz"
        save_sequence(path, make_sequence(sensor, category, seed, seconds))
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
