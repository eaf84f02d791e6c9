"""Benchmark of thermal counting (not a test). Run: .venv/bin/python bench/counting.py

Prints, with PASS/FAIL against the targets:
- inference time per frame of each shipped int8 model (quantise, invoke, dequantise), median
  and 99th percentile over many frames: ≤ 1 ms per 8×8 frame, ≤ 5 ms per 32×24 frame;
- the whole ThermalCounter (background, detector, tracker) as CPU % of one core at 10 frames/s,
  from process time over a synthetic sequence with people walking through: ≤ 2 %.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from edgeagent.counting import CountingConfig, CountingLine
from edgeagent.counting.thermal import PROFILES, ThermalCounter, cnn_input, model_path
from edgeagent.inference import load_model
from edgeagent.models import synth

TARGET_MS = {"amg8833": 1.0, "mlx90640": 5.0}
TARGET_CPU_PERCENT = 2.0
RATE_HZ = 10.0
LINE = CountingConfig(line=CountingLine(start=(0.0, 0.5), end=(1.0, 0.5)))


def bench_inference(sensor: str, n: int = 2000) -> tuple[float, float, str]:
    model = load_model(model_path(sensor))
    rng = np.random.default_rng(0)
    rows, cols = PROFILES[sensor].shape
    frames = [cnn_input(rng.normal(0, 2, (rows, cols)), rng.normal(0, 2, (rows, cols)),
                        20 + rng.normal(0, 2, (rows, cols)))[None] for _ in range(64)]
    for x in frames:  # warm up
        model.run(x)
    times = []
    for i in range(n):
        started = time.perf_counter()
        model.run(frames[i % len(frames)])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times)), float(np.percentile(times, 99)), model.runtime


def bench_counter(sensor: str, detector: str) -> tuple[float, float]:
    seq = synth.make_sequence(sensor, "mixed", 1, duration_s=60.0)
    counter = ThermalCounter(LINE, seq.frames.shape[1:], sensor=sensor, detector=detector)
    started = time.process_time()
    for frame, t in zip(seq.frames, seq.t, strict=True):
        counter.step(frame, float(t))
    per_frame_s = (time.process_time() - started) / len(seq.frames)
    return per_frame_s * 1000, 100 * per_frame_s * RATE_HZ


def main() -> int:
    failed = False
    for sensor in ("amg8833", "mlx90640"):
        median, p99, runtime = bench_inference(sensor)
        ok = median <= TARGET_MS[sensor]
        failed |= not ok
        print(f"inference {sensor:9s} ({runtime}): median {median:.3f} ms, p99 {p99:.3f} ms "
              f"per frame (target ≤ {TARGET_MS[sensor]:.0f} ms) {'PASS' if ok else 'FAIL'}")
    for sensor in ("amg8833", "mlx90640"):
        for detector in ("cnn", "blobs"):
            ms, cpu = bench_counter(sensor, detector)
            ok = cpu <= TARGET_CPU_PERCENT
            failed |= not ok
            print(f"ThermalCounter {sensor:9s} {detector:5s}: {ms:.3f} ms CPU per frame = "
                  f"{cpu:.2f} % of one core at {RATE_HZ:.0f} frames/s "
                  f"(target ≤ {TARGET_CPU_PERCENT:.0f} %) {'PASS' if ok else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
