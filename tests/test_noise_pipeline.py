"""Acceptance: a microphone (WAV replay) through the whole agent to a real mosquitto.

Three minutes of a recording whose levels are known: a steady tone, then a tone switching
between two levels every second, then a quieter tone. The published LAeq, percentile levels
and maxima must be the textbook values; and no piece of the recording may appear anywhere on
disk (state directory, outbox, WAL) or in the log, and nothing finer than the policy's 60 s.
"""

from __future__ import annotations

import logging
import math
import random

import numpy as np
import pytest

from conftest import run_stepped, wait_for
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sim.microphone import to_pcm, tone, write_wav
from edgeagent.supervisor import Agent

pytestmark = pytest.mark.broker
ALIGNED = 1_767_225_600.0
START = 1000.0
ROOT = "edgeagent/v1/noise-gw"
SENSITIVITY = -26.0  # dBFS at 94 dB SPL: a sine at L - 94 - 26 dBFS is L dB SPL


def at_spl(level: float, seconds: float, *, phase: float = 0.0) -> np.ndarray:
    return tone(1000.0, level - 94.0 + SENSITIVITY, seconds, phase=phase)


def recording() -> np.ndarray:
    steady = at_spl(70.0, 60.0)
    switching = np.concatenate([at_spl(80.0 if k % 2 == 0 else 60.0, 1.0) for k in range(60)])
    quiet = at_spl(50.0, 62.0)
    return np.concatenate([steady, switching, quiet])


def test_microphone_levels_reach_the_broker_and_no_audio_reaches_disk(
        broker, recorder_factory, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    samples = recording()
    wav = write_wav(tmp_path / "site.wav", samples)
    recorder = recorder_factory(broker.port, ROOT)
    clock = FakeClock(start_wall=ALIGNED, start_mono=START, auto_advance=False)
    state = tmp_path / "state"
    config = validate_config({
        "gateway": {"id": "noise-gw"},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": {"enabled": False}},
        "state_dir": str(state), "health": {"interval": "1h"}, "log": {"level": "debug"},
        "sensors": [{"id": "noise", "driver": "microphone", "source": "wav", "path": str(wav),
                     "sensitivity": SENSITIVITY, "microphone": "ICS-43434",
                     "window": "60s"}]})
    agent = Agent(config, clock=clock)
    run_stepped(agent, clock, START + 181.0, then=lambda: len(recorder.of("data/noise")) >= 3)
    wait_for(lambda: recorder.of("status")[-1:] == ["offline"], 5, "offline")
    steady, switching, quiet = recorder.of("data/noise")[:3]
    for message in (steady, switching, quiet):
        assert message["window"]["seconds"] == 60 and not message["window"]["partial"]
        assert message["calibration"] == {"state": "datasheet", "date": None,
                                          "offset_db": 123.01, "reference_db": None}
        values = message["values"]
        assert set(values["laeq"]) == {"unit", "quantity", "n", "mean"}  # only what it means
        assert set(values["laf"]) == {"unit", "quantity", "n", "l10", "l50", "l90"}
        assert set(values["lafmax"]) == {"unit", "quantity", "n", "max"}
        assert values["laeq"]["n"] == 480  # 125 ms samples: coverage complete
        assert message["coverage"] == 1.0
    assert steady["values"]["laeq"]["mean"] == pytest.approx(70.0, abs=0.2)
    assert steady["values"]["lafmax"]["max"] == pytest.approx(70.0, abs=0.2)
    # one second at 80 dB, one at 60 dB: LAeq is the energy mean, not the arithmetic 70
    expected = 10 * math.log10((10 ** 8.0 + 10 ** 6.0) / 2)
    values = switching["values"]
    assert values["laeq"]["mean"] == pytest.approx(expected, abs=0.2)  # 77.0
    assert values["lafmax"]["max"] == pytest.approx(80.0, abs=0.2)
    assert values["laf"]["l10"] == pytest.approx(80.0, abs=0.3)  # the loud seconds
    assert values["laf"]["l90"] == pytest.approx(60.0, abs=1.0)  # the Fast decay takes ~0.6 s
    assert 60.0 < values["laf"]["l50"] < 80.0
    assert values["lasmax"]["max"] < 79.5  # Slow (1 s) does not reach a 1 s burst's level
    assert quiet["values"]["laeq"]["mean"] == pytest.approx(50.0, abs=0.2)
    assert quiet["values"]["lafmin"]["min"] == pytest.approx(50.0, abs=0.3)
    manifest = recorder.of("manifest")[-1]
    assert manifest["sensors"][0]["window_s"] == 60
    assert manifest["sensors"][0]["model"] == "ICS-43434 with the edgeagent sound level meter"
    assert steady["model"] == manifest["sensors"][0]["model"]
    assert_no_audio_anywhere(samples, tmp_path / "state", caplog.text)


def assert_no_audio_anywhere(samples: np.ndarray, state_dir, log_text: str) -> None:
    """No 16-byte piece of the PCM (as 16- or 32-bit) in any state file; no samples in logs."""
    rng = random.Random(7)
    pieces = []
    for width in (2, 4):
        pcm = to_pcm(samples, width)
        for _ in range(200):
            start = rng.randrange(0, len(pcm) - 16) // width * width
            pieces.append(pcm[start:start + 16])
    files = [path for path in state_dir.rglob("*") if path.is_file()]
    assert files, "the outbox exists"
    for path in files:
        data = path.read_bytes()
        assert not any(piece in data for piece in pieces), f"audio found in {path}"
    assert "array(" not in log_text and "dBFS" not in log_text
    floats = [f"{value:.6f}" for value in samples[1000:1010]]
    assert not any(text in log_text for text in floats)
