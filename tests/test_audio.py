"""Audio sources (WAV replay, arecord capture) and the calibration store."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from edgeagent.audio import ArecordSource, WavSource, pcm_to_float
from edgeagent.calibration import Calibration, load_calibration, save_calibration
from edgeagent.clock import FakeClock
from edgeagent.driver import DriverError
from edgeagent.drivers.sim.microphone import fake_arecord, to_pcm, tone, write_wav


@pytest.mark.parametrize("width", [2, 4])
def test_pcm_round_trips_within_one_step(width):
    samples = tone(997.0, -6.0, 0.01)
    back = pcm_to_float(to_pcm(samples, width), width)
    assert np.max(np.abs(back - samples)) <= 1.0 / 2 ** (8 * width - 1)


def test_24_bit_and_stereo_pcm_take_the_first_channel():
    left, right = 0x123456, -0x200000  # 24-bit samples
    frame = left.to_bytes(3, "little", signed=True) + right.to_bytes(3, "little", signed=True)
    assert pcm_to_float(frame * 2, 3, channels=2).tolist() == [left / 2 ** 23] * 2


def test_wav_replay_is_paced_on_the_clock_and_ends_with_a_clear_error(tmp_path):
    write_wav(tmp_path / "a.wav", tone(1000.0, -20.0, 0.25))
    write_wav(tmp_path / "b.wav", tone(1000.0, -20.0, 0.15))
    clock = FakeClock(start_mono=100.0, auto_advance=True)
    source = WavSource(tmp_path, clock)

    async def scenario():
        await source.open()
        got = []
        with pytest.raises(DriverError, match="end of the recording"):
            while True:
                block = await source.read()
                got.append((len(block), round(clock.monotonic() - 100.0, 6)))
        return got

    blocks = asyncio.run(scenario())
    assert source.sample_rate == 48000
    # 100 ms blocks, each returned when its last sample is due; files play in name order
    assert blocks == [(4800, 0.1), (4800, 0.2), (2400, 0.25), (4800, 0.35), (2400, 0.4)]


def test_wav_directory_with_mixed_rates_or_no_files_is_refused(tmp_path):
    write_wav(tmp_path / "a.wav", tone(1000.0, -20.0, 0.1), rate=48000)
    write_wav(tmp_path / "b.wav", tone(1000.0, -20.0, 0.1), rate=44100)
    with pytest.raises(DriverError, match=r"different sample rates \[44100, 48000\]"):
        asyncio.run(WavSource(tmp_path, FakeClock()).open())
    with pytest.raises(DriverError, match="no WAV file at"):
        asyncio.run(WavSource(tmp_path / "none", FakeClock()).open())
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(DriverError, match=r"broken\.wav: not a readable PCM WAV file"):
        asyncio.run(WavSource(tmp_path / "c", FakeClock()).open())


def test_arecord_capture_delivers_the_samples_then_explains_why_it_stopped(tmp_path):
    samples = tone(1000.0, -20.0, 0.3)
    script = fake_arecord(tmp_path, samples)
    source = ArecordSource("hw:1,0", 48000, "S32_LE", command=str(script))

    async def scenario():
        await source.open()
        blocks = []
        try:
            with pytest.raises(DriverError) as caught:
                while True:
                    blocks.append(await source.read())
        finally:
            await source.close()
        return np.concatenate(blocks), str(caught.value)

    got, message = asyncio.run(scenario())
    assert np.max(np.abs(got - samples)) < 1e-8  # every sample, in order, nothing lost
    assert "ALSA device hw:1,0: capture stopped: arecord exited with 1" in message
    assert "Device or resource busy" in message and "another program" in message


def test_arecord_missing_names_the_package_to_install():
    source = ArecordSource("default", 48000, command="arecord-that-does-not-exist")
    with pytest.raises(DriverError, match="install alsa-utils") as caught:
        asyncio.run(source.open())
    assert caught.value.retryable is False


def test_calibration_round_trips_atomically_and_a_damaged_file_is_named(tmp_path):
    assert load_calibration(tmp_path, "noise") is None
    calibration = Calibration(sensor="noise", offset_db=121.37, date="2026-12-01T10:00:00Z",
                              reference_db=94.0, measured_db=-27.37)
    path = save_calibration(tmp_path, calibration)
    assert path == tmp_path / "calibration" / "noise.json"
    assert load_calibration(tmp_path, "noise") == calibration
    assert json.loads(path.read_text())["offset_db"] == 121.37
    assert not list(path.parent.glob("*.tmp"))
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"noise.json is unreadable .*calibrate again"):
        load_calibration(tmp_path, "noise")
