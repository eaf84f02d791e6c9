"""The TFLite shim: shipped int8 models load on ai-edge-litert and find a rendered person."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgeagent import inference
from edgeagent.counting.thermal import PROFILES, ThermalBackground, cnn_input, model_path
from edgeagent.models import synth

NO_RUNTIME = ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
              "tflite_runtime.interpreter", "tensorflow", "tensorflow.lite")


def standing(sensor: str, where_m: list[tuple[float, float]], mount_m: float = 3.0,
             duration_s: float = 4.0) -> synth.ThermalSequence:
    """People standing still from t = 2 s (empty floor before, for the background)."""
    spec = synth.SENSORS[sensor]
    scene = synth.Scene(spec, "single", 1, mount_m, duration_s, spec.fps, ambient_c=20.0)
    scene.people = [synth.Person(1.75, 32.0, 30.0, [(2.0, x, y), (duration_s, x, y)])
                    for x, y in where_m]
    return synth.render(scene)


def heat_of_last_frame(model: inference.TfliteModel, seq: synth.ThermalSequence,
                       sensor: str) -> np.ndarray:
    background = ThermalBackground(PROFILES[sensor].shape, mask_c=PROFILES[sensor].mask_c)
    fg = prev = None
    for frame, t in zip(seq.frames, seq.t, strict=True):
        prev, fg = fg, background.update(frame, float(t))
    x = cnn_input(fg, prev, seq.frames[-1])[None]
    return model.run(x)[0, :, :, 0]


@pytest.mark.parametrize("sensor", ["amg8833", "mlx90640"])
def test_shipped_model_finds_a_rendered_person(sensor: str) -> None:
    path = model_path(sensor)
    assert path.is_file() and path.stat().st_size < 100_000
    model = inference.load_model(path)
    assert model.runtime == "ai-edge-litert"
    rows, cols = PROFILES[sensor].shape
    assert model.input_shape == (1, rows, cols, 3)
    seq = standing(sensor, [(0.3, -0.2)])
    heat = heat_of_last_frame(model, seq, sensor)
    assert heat.dtype == np.float32
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    (x, y), = seq.positions[-1]
    assert heat.max() > 0.5
    assert abs((c + 0.5) / heat.shape[1] - x) <= 1.5 / heat.shape[1]
    assert abs((r + 0.5) / heat.shape[0] - y) <= 1.5 / heat.shape[0]
    empty = heat_of_last_frame(model, standing(sensor, []), sensor)
    assert empty.max() < 0.2


def test_int8_quantisation_round_trip() -> None:
    model = inference.load_model(model_path("amg8833"))
    scale, zero = model._in_q
    q = inference._quantise(np.array([0.0, 1.0, 1e6], np.float32), np.int8, (scale, zero))
    assert q.dtype == np.int8 and q[-1] == 127
    assert inference._dequantise(np.array([zero], np.int8), (scale, zero))[0] == 0.0
    with pytest.raises(ValueError, match="input shape"):
        model.run(np.zeros((1, 4, 4, 3), np.float32))


def test_missing_runtime_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NO_RUNTIME:
        monkeypatch.setitem(sys.modules, name, None)  # import of a None entry raises ImportError
    with pytest.raises(inference.InferenceError) as err:
        inference.load_model(model_path("amg8833"))
    assert "pip install 'edgeagent[thermal]'" in str(err.value)
    assert "numpy<2" in str(err.value)


def test_falls_back_to_tflite_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    from ai_edge_litert import interpreter as litert

    fake = type(sys)("tflite_runtime.interpreter")
    fake.Interpreter = litert.Interpreter
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", type(sys)("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    assert inference.load_model(model_path("amg8833")).runtime == "tflite-runtime"


def test_missing_or_corrupt_model_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    with pytest.raises(inference.InferenceError, match=r"nope\.tflite"):
        inference.load_model(missing)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(inference.InferenceError, match=r"corrupt\.tflite"):
        inference.load_model(corrupt)
