"""Acceptance: the PCB Artists decibel meter on a fake bus (its chip model at the bus boundary)
through the whole agent, stepped on fake time, to a real mosquitto. The published window holds
the energy mean, min, max and L10/L50/L90 of exactly the levels the module produced and the
driver delivered in that window."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from conftest import run_stepped, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.pcb_decibel import REG_DBHISTORY_0
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.pcb_decibel import PcbDecibelChip
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0  # a whole minute: windows start at START
START = 1000.0  # FakeClock's monotonic start
ROOT = "edgeagent/v1/noise-gw"
OFFSET = {"A": 0, "C": 3, "Z": 5}  # more low-frequency energy without A-weighting
TAVG = {"fast": 0.125, "slow": 1.0}


def scene(tavg: float):
    """Levels that change every tick in a scrambled order (40 … 80 dB), 2 dB up each minute.

    The minute step makes a level counted in the wrong window show in min and max.
    """
    def level(t: float, weighting: str) -> float:
        tick = round((t - START) / tavg)
        return 40 + tick * 37 % 41 + 2 * int((t - START) // 60) + OFFSET[weighting]
    return level


class HistoryTap:
    """The module behind a tap that notes when the driver read the history (a poll)."""

    def __init__(self, chip: PcbDecibelChip, clock: FakeClock) -> None:
        self.chip, self.clock = chip, clock
        self.polls: list[float] = []
        self._register = -1

    def write(self, data: bytes) -> None:
        self._register = data[0] if data else -1
        self.chip.write(data)

    def read(self, length: int) -> bytes:
        if self._register == REG_DBHISTORY_0:
            self.polls.append(self.clock.monotonic())
        return self.chip.read(length)


def energy_mean(levels: list[float]) -> float:
    return 10 * math.log10(sum(10 ** (level / 10) for level in levels) / len(levels))


def exceeded(levels: list[float], percent: int) -> float:
    """LN: the level exceeded N % of the time (nearest rank on the sorted levels)."""
    ordered = sorted(levels)
    return ordered[max(1, math.ceil((100 - percent) / 100 * len(ordered))) - 1]


def run_agent(weighting: str, averaging: str, tap: HistoryTap, clock: FakeClock, port: int,
              state_dir: Path, recorder: Any) -> None:
    """Run the agent (privacy defaults: 60 s noise windows) for 180 s of fake time."""
    config = validate_config({
        "gateway": {"id": "noise-gw"},
        "mqtt": {"host": "127.0.0.1", "port": port, "tls": {"enabled": False}},
        "state_dir": str(state_dir), "health": {"interval": "1h"},
        "sensors": [{"id": "noise", "driver": "pcb_decibel", "bus": 1, "window": "60s",
                     "weighting": weighting, "averaging": averaging}]})
    agent = Agent(config, clock=clock, i2c=FakeBuses(FakeI2cBus(1, {0x48: tap})))
    run_stepped(agent, clock, START + 180.0, then=lambda: len(recorder.of("data/noise")) >= 3)
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")


@pytest.mark.parametrize(("weighting", "averaging"), [("A", "fast"), ("C", "slow")])
def test_decibel_meter_publishes_leq_extremes_and_percentiles_of_its_levels(
        weighting, averaging, broker, recorder_factory, tmp_path):
    tavg = TAVG[averaging]
    recorder = recorder_factory(broker.port, ROOT)
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    chip = PcbDecibelChip(clock, schedule=scene(tavg))
    tap = HistoryTap(chip, clock)
    run_agent(weighting, averaging, tap, clock, broker.port, tmp_path / "state", recorder)
    stream = f"l{weighting.lower()}eq"
    polls = tap.polls  # polls[0] is the snapshot at open, right after the history was cleared
    assert all(not (START + 60 * k - 1e-6 < p < START + 60 * k + 1e-6) for p in polls
               for k in range(4)), "a poll at a window edge would make the test order-dependent"
    for index, message in enumerate(recorder.of("data/noise")[:3]):
        assert message["window"]["start"] == f"2026-01-01T00:0{index}:00Z"
        begin, end = START + 60.0 * index, START + 60.0 * (index + 1)
        # a level reaches the window that is open when the poll that reads it runs: the
        # polls inside [begin, end) deliver the ticks after the last poll before the window
        inside = [p for p in polls[1:] if begin <= p < end]
        since = max(p for p in polls if p < inside[0])
        levels = [float(v) for t, v in chip.produced if since < t <= inside[-1] + 1e-9]
        assert levels and 0 not in levels
        assert len(levels) == round((inside[-1] - since) / tavg)  # every tick, once
        values = message["values"][stream]
        assert (values["unit"], values["quantity"], values["n"]) == ("dB", "noise", len(levels))
        assert values["mean"] == pytest.approx(energy_mean(levels), abs=0.05 + 1e-9)
        assert abs(values["mean"] - sum(levels) / len(levels)) > 0.5  # energy, not arithmetic
        assert (values["min"], values["max"]) == (min(levels), max(levels))
        assert (values["l10"], values["l50"], values["l90"]) == (
            exceeded(levels, 10), exceeded(levels, 50), exceeded(levels, 90))
        assert set(message["values"]) == {stream}
        assert message["coverage"] == round(min(1.0, len(levels) * tavg / 60.0), 3)
        assert message["errors"] == 0
        if index:  # a full minute of levels after the first window
            assert message["coverage"] == 1.0
