"""Thermal counting: background model, detectors, ThermalCounter, evaluation, privacy."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from edgeagent.counting import CountingConfig, CountingLine, TrackerConfig
from edgeagent.counting.thermal import (
    PROFILES,
    BlobDetector,
    ThermalBackground,
    ThermalCounter,
    label_components,
    pick_peaks,
)
from edgeagent.models import evaluate, synth

LINE = CountingConfig(line=CountingLine(start=(0.0, 0.5), end=(1.0, 0.5)))


def standing(sensor: str, where_m: list[tuple[float, float]], mount_m: float = 3.0,
             duration_s: float = 4.0) -> synth.ThermalSequence:
    """People standing still from t = 2 s (empty floor before, for the background)."""
    spec = synth.SENSORS[sensor]
    scene = synth.Scene(spec, "single", 1, mount_m, duration_s, spec.fps, ambient_c=20.0)
    scene.people = [synth.Person(1.75, 32.0, 30.0, [(2.0, x, y), (duration_s, x, y)])
                    for x, y in where_m]
    return synth.render(scene)


def run(counter: ThermalCounter, seq: synth.ThermalSequence) -> tuple[int, int, int]:
    crossed_in = crossed_out = present = 0
    for frame, t in zip(seq.frames, seq.t, strict=True):
        counts = counter.step(frame, float(t))
        crossed_in += counts.crossed_in
        crossed_out += counts.crossed_out
        present = counts.present
    return crossed_in, crossed_out, present


# --- background -----------------------------------------------------------------------------


def test_background_absorbs_static_heat_but_not_a_lingering_person() -> None:
    rng = np.random.default_rng(3)
    bg = ThermalBackground((8, 8), mask_c=0.9)
    fps = 10.0
    heater, bench, person = (1, 1), (6, 6), (slice(3, 5), slice(3, 5))
    fg = np.zeros((8, 8))
    lingering_fg = []
    for k in range(int(300 * fps)):  # five minutes
        t = k / fps
        frame = 20.0 + 0.01 * t / 60 + rng.normal(0, 0.2, (8, 8))  # slow ambient drift
        if t >= 2.0:
            frame[heater] += 30.0  # a heater (hotter than any person)
            frame[bench] += 5.0  # a bench left warm (person-like temperature)
            if t < 62.0:
                frame[person] += 6.0  # someone standing for a minute
        fg = bg.update(frame, t)
        if t < 62.0:
            lingering_fg.append(float(fg[person].mean()))
    assert bg.ready
    assert lingering_fg[30] > 5.0  # seen at once
    assert lingering_fg[-1] > 0.5 * 6.0  # still clearly foreground after standing a minute
    assert fg[heater] < 0.9 and fg[bench] < 0.9  # both absorbed within five minutes
    assert abs(float(fg[person].mean())) < 0.9  # and the hole the person left is gone


def test_background_follows_a_common_offset() -> None:
    bg = ThermalBackground((24, 32), mask_c=0.6)
    rng = np.random.default_rng(4)
    floor = 18.0 + rng.normal(0, 0.3, (24, 32))
    for k in range(20):
        bg.update(floor + rng.normal(0, 0.1, floor.shape), k / 8)
    fg = bg.update(floor + 1.5, 20 / 8)  # the whole array reads 1.5 °C warmer at once
    assert np.abs(fg).max() < 0.3 and abs(bg.offset - 1.5) < 0.2


# --- detectors ------------------------------------------------------------------------------


def test_label_components_eight_connected() -> None:
    mask = np.array([[1, 0, 0, 1],
                     [0, 1, 0, 1],
                     [0, 0, 0, 0],
                     [1, 1, 0, 1]], bool)
    labels, n = label_components(mask)
    assert n == 4
    assert labels[0, 0] == labels[1, 1] != labels[0, 3]
    assert labels[3, 0] == labels[3, 1] and (labels[~mask] == 0).all()
    u = np.zeros((5, 5), bool)
    u[1:4, 0] = u[1:4, 4] = u[3, :] = True  # a U joined at the bottom only
    assert label_components(u)[1] == 1


def test_pick_peaks_non_maximum_suppression() -> None:
    heat = np.zeros((8, 8), np.float32)
    heat[2, 2], heat[2, 3] = 0.9, 0.8  # one person smeared over two cells
    heat[6, 6] = 0.7
    heat[0, 7] = 0.2  # below threshold
    peaks = pick_peaks(heat, 0.4, 1.5)
    assert len(peaks) == 2
    (x, y), (x2, y2) = peaks
    assert 2.5 / 8 < x < 3.5 / 8 and y == pytest.approx(2.5 / 8)
    assert (x2, y2) == pytest.approx((6.5 / 8, 6.5 / 8))


@pytest.mark.parametrize("sensor", ["amg8833", "mlx90640"])
def test_blob_detector_separates_a_pair_side_by_side(sensor: str) -> None:
    pair = standing(sensor, [(-0.28, 0.0), (0.28, 0.0)])
    bg = ThermalBackground(PROFILES[sensor].shape, mask_c=PROFILES[sensor].mask_c)
    for frame, t in zip(pair.frames, pair.t, strict=True):
        fg = bg.update(frame, float(t))
    found = sorted(BlobDetector(PROFILES[sensor]).detect(fg, pair.frames[-1]))
    truth = sorted(map(tuple, pair.positions[-1]))
    assert len(found) == 2
    for (x, y), (tx, ty) in zip(found, truth, strict=True):
        assert abs(x - tx) < 0.08 and abs(y - ty) < 0.08


# --- the counter ----------------------------------------------------------------------------


@pytest.mark.parametrize("detector", ["blobs", "cnn"])
@pytest.mark.parametrize("sensor", ["amg8833", "mlx90640"])
def test_counts_crossings_per_direction(sensor: str, detector: str) -> None:
    seq = synth.make_sequence(sensor, "single", 42, duration_s=40.0)
    true_in, true_out = len(seq.crossings_in), len(seq.crossings_out)
    assert true_in >= 2 and true_out >= 2
    counter = ThermalCounter(LINE, seq.frames.shape[1:], sensor=sensor, detector=detector)
    assert run(counter, seq)[:2] == (true_in, true_out)
    swapped = LINE.model_copy(update={"line": LINE.line.model_copy(update={"in_side": "right"})})
    counter = ThermalCounter(swapped, seq.frames.shape[1:], sensor=sensor, detector=detector)
    assert run(counter, seq)[:2] == (true_out, true_in)


@pytest.mark.parametrize("sensor", ["amg8833", "mlx90640"])
def test_auto_detector_and_tracker_defaults(sensor: str) -> None:
    shape = PROFILES[sensor].shape
    counter = ThermalCounter(LINE, shape, sensor=sensor)
    assert counter.detector == PROFILES[sensor].default_detector
    assert counter._counter.config.tracker == PROFILES[sensor].tracker
    own = LINE.model_copy(update={"tracker": TrackerConfig(max_step=0.2)})
    own = CountingConfig.model_validate(own.model_dump())  # as loaded from YAML: tracker set
    assert ThermalCounter(own, shape, sensor=sensor)._counter.config.tracker.max_step == 0.2


def test_rejects_wrong_sensor_shape_and_detector(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown thermal sensor"):
        ThermalCounter(LINE, (8, 8), sensor="grideye")
    with pytest.raises(ValueError, match="8×8"):
        ThermalCounter(LINE, (24, 32), sensor="amg8833")
    with pytest.raises(ValueError, match="unknown detector"):
        ThermalCounter(LINE, (8, 8), sensor="amg8833", detector="yolo")
    counter = ThermalCounter(LINE, (8, 8), sensor="amg8833", detector="blobs")
    with pytest.raises(ValueError, match="frame shape"):
        counter.step(np.zeros((24, 32)), 0.0)
    from edgeagent.inference import InferenceError

    with pytest.raises(InferenceError, match=r"missing\.tflite"):
        ThermalCounter(LINE, (8, 8), sensor="amg8833", detector="cnn",
                       model=tmp_path / "missing.tflite")


def test_lingering_person_stays_present() -> None:
    seq = standing("mlx90640", [(0.2, 0.4)], duration_s=62.0)
    counter = ThermalCounter(LINE, (24, 32), sensor="mlx90640")
    assert run(counter, seq) == (0, 0, 1)


def test_no_frame_or_position_in_logs_or_health(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seq = synth.make_sequence("amg8833", "pairs", 5, duration_s=20.0)
    counters = [ThermalCounter(LINE, (8, 8), sensor="amg8833", detector=d)
                for d in ("blobs", "cnn")]
    for counter in counters:
        run(counter, seq)
    assert caplog.records
    for record in caplog.records:
        message = record.getMessage()
        assert not re.search(r"\d\.\d", message), message  # no temperatures, no coordinates
        for arg in record.args or ():
            assert isinstance(arg, str | int), arg
    for counter in counters:
        health = counter.health()
        assert set(health) == {"frames", "fps", "inference_ms_mean", "inference_ms_max",
                               "detector", "runtime", "background_c", "active_tracks"}
        assert health["runtime"] == ("numpy" if health["detector"] == "blobs"
                                     else "ai-edge-litert")
        assert all(isinstance(v, int | float | str) for v in health.values())
        assert health["frames"] == len(seq.frames)
        assert health["fps"] == pytest.approx(10.0, rel=0.01)
        assert 0 < health["inference_ms_mean"] <= health["inference_ms_max"]


# --- synthetic data and evaluation ----------------------------------------------------------


def test_synth_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    a = synth.make_sequence("amg8833", "lingering", 11, duration_s=20.0)
    b = synth.make_sequence("amg8833", "lingering", 11, duration_s=20.0)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.crossings_in, b.crossings_in)
    path = tmp_path / "seq.npz"
    synth.save_sequence(path, a)
    c = synth.load_sequence(path)
    assert np.abs(c.frames - a.frames).max() <= 0.005
    assert (c.sensor, c.category) == ("amg8833", "lingering")
    assert np.array_equal(c.occupancy, a.occupancy)
    assert all(np.allclose(p, q) for p, q in zip(c.positions, a.positions, strict=True))
    assert np.array_equal(c.crossings_out, a.crossings_out)


def test_shipped_sequences_replay() -> None:
    files = sorted(evaluate.SEQUENCE_DIR.glob("*.npz"))
    assert files and sum(f.stat().st_size for f in files) < 2_000_000
    for sensor in evaluate.SENSORS:
        assert evaluate.replayed(sensor)


@pytest.fixture(scope="module")
def quick_results() -> dict:
    return evaluate.evaluate(1, quick=True)


@pytest.mark.parametrize("sensor", ["amg8833", "mlx90640"])
def test_quick_evaluation_meets_the_targets(quick_results: dict, sensor: str) -> None:
    default = PROFILES[sensor].default_detector
    tally = quick_results[(sensor, default, "envelope")]
    assert tally.true["in"] >= 20 and tally.true["out"] >= 20
    assert tally.accuracy("in") >= evaluate.TARGET[sensor]
    assert tally.accuracy("out") >= evaluate.TARGET[sensor]
    text = evaluate.table(quick_results, markdown=True)
    assert f"| {sensor} | {default} | envelope |" in text


def test_evaluate_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--quick", "--sensor", "amg8833", "--detector", "blobs",
                          "--per-category", "1"]) == 0
    out = capsys.readouterr().out
    assert "amg8833 blobs: accuracy in" in out and "envelope" in out
