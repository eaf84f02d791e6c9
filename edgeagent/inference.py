"""A small shim over the TFLite interpreters: load a model, run float in, float out.

The runtime is found in this order: ``ai_edge_litert`` (LiteRT, the current package, works with
numpy 2), ``tflite_runtime`` (the old package; its 2.14 wheels need numpy < 2), then
``tensorflow.lite`` (a full TensorFlow, if one happens to be installed). Int8 models are
quantised and dequantised here with the tensors' scale and zero point, so callers only see
float32. Inference is single-threaded: a gateway runs other work too.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = ("pip install 'edgeagent[thermal]' (installs ai-edge-litert; the older "
                "tflite-runtime 2.14 also works but needs numpy<2)")

#: (module to import, attribute holding the Interpreter class, runtime name)
_RUNTIMES = (
    ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
    ("tensorflow.lite", "Interpreter", "tensorflow"),
)


class InferenceError(RuntimeError):
    """No TFLite runtime is installed, or a model file is missing or unreadable."""


def find_interpreter() -> tuple[type, str]:
    """The first importable Interpreter class and the name of its runtime."""
    for module, attribute, name in _RUNTIMES:
        try:
            return getattr(importlib.import_module(module), attribute), name
        except (ImportError, AttributeError):
            continue
    raise InferenceError(f"no TFLite runtime found (tried ai_edge_litert, tflite_runtime, "
                         f"tensorflow.lite); install one: {INSTALL_HINT}")


class TfliteModel:
    """One loaded model with a single input and a single output tensor."""

    def __init__(self, interpreter: Any, runtime: str, path: Path) -> None:
        self._interpreter = interpreter
        self.runtime = runtime
        self.path = path
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype, self._out_dtype = inp["dtype"], out["dtype"]
        self._in_q = inp["quantization"]
        self._out_q = out["quantization"]
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in inp["shape"])
        self.output_shape: tuple[int, ...] = tuple(int(d) for d in out["shape"])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one inference on float input of :attr:`input_shape`; returns float32 output."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ValueError(f"input shape {x.shape} does not match the model's "
                             f"{self.input_shape}")
        self._interpreter.set_tensor(self._in_index, _quantise(x, self._in_dtype, self._in_q))
        self._interpreter.invoke()
        y = self._interpreter.get_tensor(self._out_index)
        return _dequantise(y, self._out_q)


def _quantise(x: np.ndarray, dtype: Any, quant: tuple[float, int]) -> np.ndarray:
    scale, zero = quant
    if np.issubdtype(dtype, np.floating) or not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantise(y: np.ndarray, quant: tuple[float, int]) -> np.ndarray:
    scale, zero = quant
    if np.issubdtype(y.dtype, np.floating) or not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def load_model(path: str | Path) -> TfliteModel:
    """Load a ``.tflite`` file with the first available runtime (one thread)."""
    path = Path(path)
    if not path.is_file():
        raise InferenceError(f"model file not found: {path}")
    interpreter_class, runtime = find_interpreter()
    try:
        interpreter = interpreter_class(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise InferenceError(f"cannot load model {path}: {exc}") from exc
    return TfliteModel(interpreter, runtime, path)
