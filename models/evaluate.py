"""Evaluate the thermal counting pipeline: ``cnn`` vs ``blobs`` through the full ThermalCounter.

Run from a clean clone (after ``pip install -e '.[thermal]'``)::

    python -m edgeagent.models.evaluate            # full held-back test set, table
    python -m edgeagent.models.evaluate --markdown # the same as the table in MODEL_CARD.md
    python -m edgeagent.models.evaluate --quick    # small set, for tests

Data: synthetic sequences from :mod:`edgeagent.models.synth` with seeds the training script
never uses (training draws seeds below 9000, the test set uses 9000 and up), plus the replayed
sequence files in ``models/sequences/``. No TensorFlow needed; deterministic.

Figures (per sensor, detector and scene category):

- crossing accuracy per direction: 1 − Σ|counted − true| / Σ true, summed over sequences
  (per-sequence count errors, so a miss and an extra in the same sequence do not cancel across
  sequences but do within one);
- crossing precision / recall per direction: counted events matched one-to-one to true events
  of the same direction within ±1.5 s;
- occupancy: share of frames (after the background's first second) where the number of people
  the counter reports equals the number of heads in view, and the mean absolute error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeagent.counting import CountingConfig, CountingLine
from edgeagent.counting.thermal import ThermalCounter
from edgeagent.models import synth

SENSORS = ("amg8833", "mlx90640")
TEST_SEED = 9000
#: The categories inside the operating envelope (the acceptance figures); ``warm`` is reported
#: separately.
ENVELOPE = tuple(c for c in synth.CATEGORIES if c != "warm")
TARGET = {"amg8833": 0.95, "mlx90640": 0.97}
SEQUENCE_DIR = Path(__file__).resolve().parent / "sequences"
MATCH_S = 1.5
LINE = CountingConfig(line=CountingLine(start=synth.DEFAULT_LINE[0], end=synth.DEFAULT_LINE[1]))


@dataclass
class Tally:
    """Sums over sequences for one (sensor, detector, group)."""

    sequences: int = 0
    true: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})
    counted: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})
    abs_error: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})
    matched: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})
    frames: int = 0
    occupancy_exact: int = 0
    occupancy_abs: float = 0.0

    def add(self, other: Tally) -> None:
        """Add another tally into this one."""
        self.sequences += other.sequences
        for d in ("in", "out"):
            self.true[d] += other.true[d]
            self.counted[d] += other.counted[d]
            self.abs_error[d] += other.abs_error[d]
            self.matched[d] += other.matched[d]
        self.frames += other.frames
        self.occupancy_exact += other.occupancy_exact
        self.occupancy_abs += other.occupancy_abs

    def accuracy(self, d: str) -> float:
        """Crossing accuracy of one direction: 1 − Σ|counted − true| / Σ true."""
        return 1.0 - self.abs_error[d] / self.true[d] if self.true[d] else float("nan")

    def precision(self, d: str) -> float:
        """Matched / counted crossings of one direction."""
        return self.matched[d] / self.counted[d] if self.counted[d] else float("nan")

    def recall(self, d: str) -> float:
        """Matched / true crossings of one direction."""
        return self.matched[d] / self.true[d] if self.true[d] else float("nan")


def _match(true_t: np.ndarray, counted_t: list[float]) -> int:
    """Greedy one-to-one matching of event times within ±MATCH_S."""
    used = [False] * len(counted_t)
    hits = 0
    for t in true_t:
        best, best_d = -1, MATCH_S
        for j, c in enumerate(counted_t):
            if not used[j] and abs(c - t) <= best_d:
                best, best_d = j, abs(c - t)
        if best >= 0:
            used[best] = True
            hits += 1
    return hits


def run_sequence(seq: synth.ThermalSequence, detector: str, model: Path | None = None) -> Tally:
    """Replay one sequence through a fresh ThermalCounter and score it."""
    counter = ThermalCounter(LINE, seq.frames.shape[1:], sensor=seq.sensor, detector=detector,
                             model=model)
    events: dict[str, list[float]] = {"in": [], "out": []}
    tally = Tally(sequences=1)
    skip = counter._background.init_frames
    for k, (frame, t) in enumerate(zip(seq.frames, seq.t, strict=True)):
        counts = counter.step(frame, float(t))
        events["in"] += [float(t)] * counts.crossed_in
        events["out"] += [float(t)] * counts.crossed_out
        if k >= skip:
            truth = len(seq.positions[k])
            tally.frames += 1
            tally.occupancy_exact += counts.present == truth
            tally.occupancy_abs += abs(counts.present - truth)
    for d, true_idx in (("in", seq.crossings_in), ("out", seq.crossings_out)):
        true_t = seq.t[true_idx]
        tally.true[d] = len(true_t)
        tally.counted[d] = len(events[d])
        tally.abs_error[d] = abs(len(events[d]) - len(true_t))
        tally.matched[d] = _match(true_t, events[d])
    return tally


def test_set(sensor: str, per_category: int, quick: bool = False, first_seed: int = TEST_SEED,
             ) -> Iterable[synth.ThermalSequence]:
    """The held-back synthetic sequences of one sensor (seeds from TEST_SEED)."""
    categories = ENVELOPE if quick else synth.CATEGORIES
    for category in categories:
        for i in range(per_category):
            duration = 60.0 if quick and category in ("single", "pairs", "opposite") else None
            yield synth.make_sequence(sensor, category, first_seed + i, duration)


def replayed(sensor: str) -> list[synth.ThermalSequence]:
    """The recorded sequence files of one sensor in models/sequences/."""
    files = sorted(SEQUENCE_DIR.glob(f"{sensor}_*.npz"))
    return [synth.load_sequence(f) for f in files]


def evaluate(per_category: int = 10, quick: bool = False, detectors: tuple[str, ...] = ("cnn",
             "blobs"), sensors: tuple[str, ...] = SENSORS, first_seed: int = TEST_SEED,
             ) -> dict[tuple[str, str, str], Tally]:
    """Tallies keyed by (sensor, detector, group).

    Groups are the categories, ``envelope`` (all categories but warm) and ``replayed`` (the
    sequence files).
    """
    results: dict[tuple[str, str, str], Tally] = {}
    for sensor in sensors:
        sequences = [(s.category, s) for s in test_set(sensor, per_category, quick, first_seed)]
        if not quick:
            sequences += [("replayed", s) for s in replayed(sensor)]
        for detector in detectors:
            for group, seq in sequences:
                tally = run_sequence(seq, detector)
                results.setdefault((sensor, detector, group), Tally()).add(tally)
                if group in ENVELOPE:
                    results.setdefault((sensor, detector, "envelope"), Tally()).add(tally)
    return results


def _row(key: tuple[str, str, str], t: Tally) -> list[str]:
    def pct(x: float) -> str:
        return "–" if x != x else f"{100 * x:.1f}"
    return [*key, str(t.sequences), f"{t.true['in']}/{t.true['out']}",
            f"{t.counted['in']}/{t.counted['out']}", pct(t.accuracy("in")), pct(t.accuracy("out")),
            f"{pct(t.precision('in'))}/{pct(t.recall('in'))}",
            f"{pct(t.precision('out'))}/{pct(t.recall('out'))}",
            pct(t.occupancy_exact / t.frames if t.frames else float("nan")),
            f"{t.occupancy_abs / t.frames:.3f}" if t.frames else "–"]


HEADER = ["sensor", "detector", "set", "seqs", "true in/out", "counted in/out", "acc in %",
          "acc out %", "P/R in %", "P/R out %", "occ exact %", "occ MAE"]


def table(results: dict[tuple[str, str, str], Tally], markdown: bool = False) -> str:
    """The results as an aligned text table or a Markdown table."""
    order = [*synth.CATEGORIES, "replayed", "envelope"]
    keys = sorted(results, key=lambda k: (k[0], k[2] != "envelope", order.index(k[2]), k[1]))
    rows = [_row(k, results[k]) for k in keys]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*HEADER), *(fmt.format(*r) for r in rows)])


def verdict(results: dict[tuple[str, str, str], Tally]) -> list[str]:
    """Acceptance lines: per-direction accuracy on the envelope vs the target, per detector."""
    lines = []
    for (sensor, detector, group), t in sorted(results.items()):
        if group != "envelope":
            continue
        target = TARGET[sensor]
        ok = min(t.accuracy("in"), t.accuracy("out")) >= target
        lines.append(f"{sensor} {detector}: accuracy in {100 * t.accuracy('in'):.1f} %, out "
                     f"{100 * t.accuracy('out'):.1f} % (target ≥ {100 * target:.0f} %) "
                     f"{'PASS' if ok else 'FAIL'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small set (tests)")
    parser.add_argument("--markdown", action="store_true", help="Markdown table for the card")
    parser.add_argument("--per-category", type=int, default=None,
                        help="sequences per category and sensor (default 10, quick 1)")
    parser.add_argument("--sensor", choices=SENSORS, action="append", help="only this sensor")
    parser.add_argument("--detector", choices=("cnn", "blobs"), action="append")
    parser.add_argument("--first-seed", type=int, default=TEST_SEED,
                        help="first seed (development: use a validation range such as 5000)")
    args = parser.parse_args(argv)
    per = args.per_category or (1 if args.quick else 10)
    started = time.process_time()
    results = evaluate(per, args.quick, tuple(args.detector or ("cnn", "blobs")),
                       tuple(args.sensor or SENSORS), args.first_seed)
    print(table(results, args.markdown))
    print()
    for line in verdict(results):
        print(line)
    print(f"({per} sequences per category and sensor, seeds from {args.first_seed}; "
          f"{time.process_time() - started:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
