"""Acceptance: recorded thermal sequences replayed through the chip simulators on a fake SMBus,
through the whole agent on fake time, to a real mosquitto. The published crossings equal what
the counting pipeline finds in the very frames the chip served, and are close to the truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import run_stepped
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.counting import CountingConfig, CountingLine
from edgeagent.counting.thermal import ThermalCounter
from edgeagent.drivers.amg8833_device import decode_frame
from edgeagent.drivers.sim.amg8833 import Amg8833Chip, encode_frame
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.mlx90640 import Mlx90640Chip
from edgeagent.models.synth import load_sequence
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0
SEQUENCES = Path(__file__).resolve().parents[1] / "models" / "sequences"
LINE = {"start": [0, 0.5], "end": [1, 0.5]}  # the synthetic sequences' counting line


class Replay:
    """A scene that serves a sequence's frames in order (then an empty floor) and keeps them."""

    def __init__(self, frames: np.ndarray, empty: np.ndarray,
                 wire: Callable[[np.ndarray], np.ndarray]) -> None:
        self.frames, self.empty, self.wire = frames, empty, wire
        self.served: list[np.ndarray] = []

    def __call__(self, t: float) -> np.ndarray:
        frame = self.frames[len(self.served)] if len(self.served) < len(self.frames) \
            else self.empty
        self.served.append(self.wire(frame))  # what the driver decodes from the registers
        return frame


def offline_counts(sensor: str, shape: tuple[int, int], frames: list[np.ndarray],
                   fps: float) -> tuple[int, int, int]:
    """Crossings in, out and the peak occupancy the pipeline finds in these frames."""
    counter = ThermalCounter(CountingConfig(line=CountingLine(**LINE)), shape, sensor=sensor)
    total_in = total_out = peak = 0
    for k, frame in enumerate(frames):
        counts = counter.step(frame, k / fps)
        total_in += counts.crossed_in
        total_out += counts.crossed_out
        peak = max(peak, counts.present)
    return total_in, total_out, peak


def run_agent(sensor: dict[str, Any], chip: Any, address: int, port: int, state: Path,
              until: float, recorder: Any) -> None:
    clock = chip.clock
    config = validate_config({
        "gateway": {"id": "thermal-gw"},
        "mqtt": {"host": "127.0.0.1", "port": port, "tls": {"enabled": False}},
        "state_dir": str(state), "health": {"interval": "1h"},
        "privacy": {"preset": "crowd-safety"},
        "sensors": [{"id": "door", "bus": 1, "address": address, "window": "60s", "warmup": 0,
                     "counting": {"line": LINE}} | sensor]})
    agent = Agent(config, clock=clock, i2c=FakeBuses(FakeI2cBus(1, {address: chip})))
    run_stepped(agent, clock, START + until,
                then=lambda: len(recorder.of("data/door")) >= 2)


def test_amg8833_replayed_sequence_counts_on_the_broker(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, "edgeagent/v1/thermal-gw")
    sequence = load_sequence(SEQUENCES / "amg8833_pairs_20001.npz")
    empty = sequence.frames[int(np.argmin(sequence.occupancy))]
    replay = Replay(sequence.frames, empty, lambda f: decode_frame(encode_frame(f)[0]))
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    chip = Amg8833Chip(clock, scene=replay)
    run_agent({"driver": "amg8833"}, chip, 0x69, broker.port, tmp_path / "state", 125.0,
              recorder)

    first, second = recorder.of("data/door")[:2]
    assert first["values"]["occupancy"]["n"] > 590  # ~10 frames/s for the whole window
    want_in, want_out, peak = offline_counts("amg8833", (8, 8), replay.served[:600], 10.0)
    assert first["values"]["peopleIn"]["sum"] == want_in
    assert first["values"]["peopleOut"]["sum"] == want_out
    # and the pipeline is right about the people who really walked by (pairs, side by side)
    assert abs(want_in - len(sequence.crossings_in)) <= 1
    assert abs(want_out - len(sequence.crossings_out)) <= 1
    occupancy = first["values"]["occupancy"]
    assert peak == 2  # two side by side at most: fewer than k = 3 ...
    assert occupancy["suppressed"] is True and occupancy["max"] is None  # ... so withheld
    # nobody in the second minute: the zero count is withheld as "fewer than k", never 0
    assert second["values"]["peopleIn"] == {**second["values"]["peopleIn"], "sum": None,
                                            "suppressed": True, "suppressed_reason": "below_k"}
    assert not recorder.invalid


def test_mlx90640_replayed_sequence_counts_on_the_broker(broker, recorder_factory, tmp_path):
    recorder = recorder_factory(broker.port, "edgeagent/v1/thermal-gw")
    sequence = load_sequence(SEQUENCES / "mlx90640_pairs_20001.npz")
    empty = sequence.frames[int(np.argmin(sequence.occupancy))]
    subpages = 0

    def scene(t: float) -> np.ndarray:  # two subpages (one chess half each) per image
        nonlocal subpages
        subpages += 1
        index = (subpages - 1) // 2
        return sequence.frames[index] if index < len(sequence.frames) else empty

    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    chip = Mlx90640Chip(clock, scene=scene, ambient=24.0)
    run_agent({"driver": "mlx90640", "window": "30s"}, chip, 0x33, broker.port,
              tmp_path / "state", 62.0, recorder)

    first, second = recorder.of("data/door")[:2]
    assert first["values"]["occupancy"]["n"] > 230  # 8 images/s for the whole window
    # the sequence: 8 people walk in (pairs side by side), nobody out
    assert abs(first["values"]["peopleIn"]["sum"] - len(sequence.crossings_in)) <= 1
    assert first["values"]["peopleOut"]["suppressed_reason"] == "below_k"
    assert second["values"]["peopleIn"]["suppressed"] is True
    assert not recorder.invalid
