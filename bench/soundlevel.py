"""Benchmark of the sound level meter core (not a test). Run: .venv/bin/python bench/soundlevel.py

Processes 60 s of noise at 48 kHz and 44.1 kHz in 100-ms blocks (4800 / 4410 samples, as
``arecord`` would deliver them) and prints the real-time factor, the CPU use in % of one core
(process_time / audio seconds × 100; the target is ≤ 3 %) and the memory growth (tracemalloc
peak and retained, in a separate run so that tracing does not skew the timing).

``--table`` instead prints the Markdown table of docs/sound-level-meter.md: the measured
deviation of LAeq / LCeq / LZeq of steady tones at the 34 exact 1/3-octave frequencies
(1000·10^((n−30)/10) Hz) from the IEC 61672-1:2013 Table 3 design goals, next to the class 2
acceptance limits.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
import tracemalloc

import numpy as np

from edgeagent.soundlevel import (
    A_WEIGHTING_TABLE,
    C_WEIGHTING_TABLE,
    CLASS2_TOLERANCE,
    SoundLevelMeter,
    _analog_db,
)

SECONDS = 60
TARGET_CPU_PERCENT = 3.0


def _noise(fs: int, seconds: int) -> np.ndarray:
    rng = np.random.default_rng(2024)
    return (0.1 * rng.standard_normal(fs * seconds)).astype(np.float32)


def _run(meter: SoundLevelMeter, audio: np.ndarray, block: int) -> int:
    n = 0
    for start in range(0, audio.size, block):
        n += len(meter.process(audio[start : start + block]))
    return n


def bench(fs: int) -> bool:
    block = fs // 10
    audio = _noise(fs, SECONDS)
    meter = SoundLevelMeter(fs, offset_db=123.0103)
    _run(meter, audio[:fs], block)  # warm-up (caches, first allocations)
    meter.reset()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    intervals = _run(meter, audio, block)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    cpu_percent = cpu / SECONDS * 100.0

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    meter = SoundLevelMeter(fs, offset_db=123.0103)
    _run(meter, audio[:fs], block)
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    _run(meter, audio, block)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    ok = cpu_percent <= TARGET_CPU_PERCENT
    print(f"fs = {fs} Hz, {SECONDS} s of noise in blocks of {block} samples "
          f"({intervals} intervals of {round(fs / 8)} samples)")  # fmt: skip
    print(f"  real-time factor   {SECONDS / wall:8.0f} x   (wall {wall * 1000:.0f} ms)")
    print(f"  CPU, one core      {cpu_percent:8.2f} %   target <= {TARGET_CPU_PERCENT} % "
          f"{'OK' if ok else 'TOO SLOW'}")  # fmt: skip
    print(f"  per 100-ms block   {cpu / (audio.size / block) * 1e6:8.0f} us")
    print(f"  memory: peak {(peak - base) / 1024:.0f} KiB above the steady state while "
          f"processing, retained growth after {SECONDS} s {(current - base) / 1024:+.1f} KiB, "
          f"max RSS growth {rss1 - rss0} KiB")  # fmt: skip
    return ok


def _tone_levels(freq: float, fs: int, amplitude: float) -> tuple[float, float, float]:
    n = np.arange(round(2.5 * fs))
    x = amplitude * np.sin(2 * np.pi * freq * n / fs)
    samples = [s for s in SoundLevelMeter(fs).process(x) if s.t_end > 0.5 + 1e-9]

    def mean(values: list[float]) -> float:
        return 10 * math.log10(float(np.mean(10 ** (np.asarray(values) / 10))))

    return (mean([s.laeq for s in samples]), mean([s.lceq for s in samples]),
            mean([s.lzeq for s in samples]))  # fmt: skip


def table() -> None:
    amplitude = 0.5
    level = 10 * math.log10(amplitude**2 / 2)
    rates = (48000, 44100)
    print("| Nominal f (Hz) | Class 2 limits (dB) | A table | A dev 48 k | A dev 44.1 k "
          "| C table | C dev 48 k | C dev 44.1 k | Z dev 48 k | Z dev 44.1 k |")  # fmt: skip
    print("|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst = {(w, fs, band): 0.0 for w in "ACZ" for fs in rates for band in ("t", "e")}
    for i, nominal in enumerate(A_WEIGHTING_TABLE):
        f = 1000 * 10 ** ((i + 10 - 30) / 10)
        devs = {}
        for fs in rates:
            la, lc, lz = _tone_levels(f, fs, amplitude)
            for w, measured, goal in (("A", la, A_WEIGHTING_TABLE[nominal]),
                                      ("C", lc, C_WEIGHTING_TABLE[nominal]),
                                      ("Z", lz, 0.0)):  # fmt: skip
                devs[w, fs] = measured - level - goal
                exact = measured - level - float(_analog_db(w, np.array([f]))[0])
                if 31.5 <= nominal <= 16000:
                    key_t, key_e = (w, fs, "t"), (w, fs, "e")
                    worst[key_t] = max(worst[key_t], abs(devs[w, fs]), key=abs)
                    worst[key_e] = max(worst[key_e], abs(exact), key=abs)
        up, lo = CLASS2_TOLERANCE[nominal]
        limits = f"±{up:.1f}" if lo == -up else f"+{up:.1f}; {'−∞' if lo == -math.inf else lo}"
        print(f"| {nominal:g} | {limits} | {A_WEIGHTING_TABLE[nominal]:+.1f} "
              f"| {devs['A', 48000]:+.2f} | {devs['A', 44100]:+.2f} "
              f"| {C_WEIGHTING_TABLE[nominal]:+.1f} "
              f"| {devs['C', 48000]:+.2f} | {devs['C', 44100]:+.2f} "
              f"| {devs['Z', 48000]:+.2f} | {devs['Z', 44100]:+.2f} |")  # fmt: skip
    print()
    for w in "ACZ":
        for fs in rates:
            print(f"{w} at {fs} Hz, 31.5 Hz–16 kHz: largest |deviation| from the rounded table "
                  f"{worst[w, fs, 't']:.3f} dB, from the exact Annex E goal "
                  f"{worst[w, fs, 'e']:.3f} dB")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the deviation table")
    args = parser.parse_args()
    if args.table:
        table()
        return 0
    results = [bench(fs) for fs in (48000, 44100)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
