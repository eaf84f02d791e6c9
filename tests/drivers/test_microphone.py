"""The microphone driver: WAV replay and arecord capture through the sound level meter,
calibration states and the calibrate command, golden PCM cases."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import EDGEAGENT
from edgeagent.audio import pcm_to_float
from edgeagent.calibration import Calibration, load_calibration, save_calibration
from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError
from edgeagent.drivers.microphone import Microphone, MicrophoneConfig, calibration_state
from edgeagent.drivers.sim.microphone import fake_arecord, tone, write_wav
from edgeagent.soundlevel import SoundLevelMeter
from golden import CASES, load_case

STREAMS = {"laeq", "lceq", "laf", "lafmax", "lafmin", "lasmax"}


def config(**entry) -> MicrophoneConfig:
    return MicrophoneConfig.model_validate({"id": "noise", "driver": "microphone", **entry})


def read_batches(driver: Microphone, count: int) -> list:
    async def scenario():
        await driver.open()
        try:
            return [await driver.read() for _ in range(count)]
        finally:
            await driver.close()

    return asyncio.run(scenario())


def test_a_94_db_tone_reads_94_db_with_the_datasheet_sensitivity(tmp_path):
    # a −26 dBFS sine is what a −26 dBFS/94 dB SPL microphone gives for 94 dB SPL at 1 kHz
    path = write_wav(tmp_path / "tone.wav", tone(1000.0, -26.0, 3.0), width=4)
    clock = FakeClock(start_mono=50.0, auto_advance=True)
    driver = Microphone(config(source="wav", path=path, sensitivity=-26.0),
                        DriverContext(clock))
    batches = read_batches(driver, 20)
    assert all({r.stream for r in batch} <= STREAMS for batch in batches)
    # the time-weighted levels start from silence: the first interval's minimum is -inf,
    # which is dropped (no number), never published
    assert all({r.stream for r in batch} == STREAMS for batch in batches[1:])
    times = [batch[0].t_monotonic - 50.0 for batch in batches]
    assert times == pytest.approx([0.125 * (k + 1) for k in range(20)])  # end of each interval
    settled = {r.stream: r.value for r in batches[-1]}
    for stream in ("laeq", "lceq", "laf", "lafmax", "lafmin"):
        assert settled[stream] == pytest.approx(94.0, abs=0.1), stream  # A = C = 0 dB at 1 kHz


def test_calibration_states_calibrated_datasheet_uncalibrated(tmp_path):
    assert calibration_state(config(), None)[1]["state"] == "uncalibrated"
    offset, state = calibration_state(config(sensitivity=-38.0), tmp_path)
    assert state == {"state": "datasheet", "date": None, "offset_db": round(offset, 2),
                     "reference_db": None}
    assert offset == pytest.approx(94.0 + 38.0 + 3.0103, abs=0.001)
    save_calibration(tmp_path, Calibration("noise", 125.5, "2026-12-01T09:00:00Z", 94.0, -31.5))
    assert calibration_state(config(sensitivity=-38.0), tmp_path) == (125.5, {
        "state": "calibrated", "date": "2026-12-01T09:00:00Z", "offset_db": 125.5,
        "reference_db": 94.0})
    assert Microphone.message_meta(config(), tmp_path)["calibration"]["state"] == "calibrated"


def test_a_damaged_calibration_file_stops_the_sensor_with_its_name(tmp_path):
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "noise.json").write_text("[]")
    path = write_wav(tmp_path / "t.wav", tone(1000.0, -26.0, 0.5))
    driver = Microphone(config(source="wav", path=path),
                        DriverContext(FakeClock(auto_advance=True), state_dir=tmp_path))
    with pytest.raises(DriverError, match=r"noise\.json has unexpected fields") as caught:
        asyncio.run(driver.open())
    assert caught.value.retryable is False
    assert Microphone.message_meta(driver.config, tmp_path)["calibration"]["state"] == (
        "uncalibrated")


def calibrate(path: Path, state_dir: Path, reference: float = 94.0) -> str:
    context = DriverContext(FakeClock(start_wall=1_767_225_600.0, auto_advance=True),
                            state_dir=state_dir)
    return asyncio.run(Microphone.calibrate(config(source="wav", path=path), context,
                                            reference, 5.0))


def test_calibrate_stores_the_offset_that_reads_the_calibrator_right(tmp_path):
    # an unknown gain: the calibrator's 94 dB arrive as a −31.3 dBFS sine
    path = write_wav(tmp_path / "cal.wav", tone(1000.0, -31.3, 7.0), width=4)
    message = calibrate(path, tmp_path)
    stored = load_calibration(tmp_path, "noise")
    assert stored is not None and stored.date == "2026-01-01T00:00:06Z"  # settle 1 s + 5 s
    assert stored.offset_db == pytest.approx(94.0 + 31.3 + 3.0103, abs=0.02)
    assert "calibrated to 94 dB" in message and "uncalibrated" in message
    driver = Microphone(config(source="wav", path=path),
                        DriverContext(FakeClock(auto_advance=True), state_dir=tmp_path))
    assert {r.stream: r.value for r in read_batches(driver, 24)[-1]}["laeq"] == (
        pytest.approx(94.0, abs=0.05))


def test_calibrate_refuses_an_unsteady_signal_and_stores_nothing(tmp_path):
    signal = np.concatenate([tone(1000.0, -30.0, 3.0), tone(1000.0, -45.0, 4.0)])
    path = write_wav(tmp_path / "moved.wav", signal)
    with pytest.raises(DriverError, match=r"varied by 1\d\.\d dB .*Nothing was stored"):
        calibrate(path, tmp_path)
    assert load_calibration(tmp_path, "noise") is None


def test_alsa_capture_through_arecord_and_a_busy_device(tmp_path, monkeypatch):
    fake_arecord(tmp_path, tone(1000.0, -26.0, 1.0), device="hw:1,0")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    driver = Microphone(config(device="hw:1,0", sensitivity=-26.0),
                        DriverContext(FakeClock(auto_advance=True)))

    async def scenario():
        await driver.open()
        batches = []
        try:
            with pytest.raises(DriverError) as caught:
                while True:
                    batches.append(await driver.read())
        finally:
            await driver.close()
        return batches, str(caught.value)

    batches, message = asyncio.run(scenario())
    assert len(batches) == 8  # one second of audio, 125 ms each
    assert {r.stream: r.value for r in batches[-1]}["laeq"] == pytest.approx(94.0, abs=0.2)
    assert "Device or resource busy" in message


def test_config_needs_a_path_for_wav_and_a_supported_rate():
    with pytest.raises(ValueError, match="source: wav needs path"):
        config(source="wav")
    with pytest.raises(ValueError, match="sample_rate"):
        config(sample_rate=22050)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEAGENT, *args], capture_output=True, text=True, timeout=120)


def test_the_calibrate_command(tmp_path):
    wav = write_wav(tmp_path / "cal.wav", tone(1000.0, -20.0, 12.0))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "gateway": {"id": "gw"}, "mqtt": {"host": "127.0.0.1"},
        "state_dir": str(tmp_path / "state"),
        "sensors": [{"id": "noise", "driver": "microphone", "source": "wav", "path": str(wav)},
                    {"id": "air", "driver": "simulated", "quantities": ["pm"]}]}))
    done = run_cli("calibrate", "noise", "--reference", "94", "--seconds", "2", "-c", str(path))
    assert done.returncode == 0, done.stderr
    assert "noise: calibrated to 94 dB" in done.stdout
    stored = json.loads((tmp_path / "state" / "calibration" / "noise.json").read_text())
    assert stored["offset_db"] == pytest.approx(94.0 + 20.0 + 3.0103, abs=0.02)
    unknown = run_cli("calibrate", "nope", "-c", str(path))
    assert unknown.returncode == 2 and "no sensor 'nope'" in unknown.stderr
    assert "(sensors: noise, air)" in unknown.stderr
    other = run_cli("calibrate", "air", "-c", str(path))
    assert other.returncode == 1 and "has nothing to calibrate" in other.stderr


# --- golden cases: PCM as the microphone sends it, levels as the datasheet says --------------

@pytest.mark.parametrize("case", sorted(p.name for p in (CASES / "microphone").iterdir()),
                         ids=str)
def test_case(case: str):
    loaded = load_case(CASES / "microphone" / case, MicrophoneConfig)
    if loaded is None:
        return  # a config error case, checked by load_case
    cfg, wire, expected = loaded
    offset, _ = calibration_state(cfg, None)
    samples = SoundLevelMeter(cfg.sample_rate, offset_db=offset).process(
        pcm_to_float(wire, 2))
    for want in expected:  # the datasheet / IEC 61672-1 table values, to 0.1 dB
        sample = samples[want["interval"]]
        for name, level in want.items():
            if name != "interval":
                assert getattr(sample, name) == pytest.approx(level, abs=0.1), (case, name)
