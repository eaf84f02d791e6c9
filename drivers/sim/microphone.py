"""Test signals for the microphone driver: tones, bursts and noise as WAV files or an arecord.

``tone`` and ``noise`` make float signals of a known level (dBFS, 0 dBFS = a full-scale sine);
``write_wav`` stores them as 16- or 32-bit PCM, the formats the driver replays; ``fake_arecord``
writes an executable that speaks arecord's command line and raw output, for testing ALSA
capture without a sound card.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.microphone import Microphone, MicrophoneConfig


def tone(frequency: float, level_dbfs: float, seconds: float, rate: int = 48000, *,
         phase: float = 0.0) -> np.ndarray:
    """A sine whose RMS is ``level_dbfs`` re a full-scale sine (peak 10^(L/20))."""
    t = np.arange(round(seconds * rate)) / rate
    return 10 ** (level_dbfs / 20) * np.sin(2 * math.pi * frequency * t + phase)


def noise(level_dbfs: float, seconds: float, rate: int = 48000, *, seed: int = 0) -> np.ndarray:
    """White noise with the mean square of a ``level_dbfs`` sine."""
    samples = np.random.default_rng(seed).standard_normal(round(seconds * rate))
    return samples * math.sqrt(0.5 * 10 ** (level_dbfs / 10))


def to_pcm(samples: np.ndarray, width: int = 2) -> bytes:
    """Float samples (full scale 1.0) as little-endian signed PCM of ``width`` bytes."""
    scale = 2 ** (8 * width - 1) - 1
    ints = np.clip(np.round(samples * scale), -scale - 1, scale)
    return ints.astype({2: "<i2", 4: "<i4"}[width]).tobytes()


def write_wav(path: Path, samples: np.ndarray, rate: int = 48000, width: int = 2) -> Path:
    """A mono PCM WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(to_pcm(samples, width))
    return path


FAKE_ARECORD = '''#!{python}
"""Stands in for arecord: checks its arguments, streams a raw file, then fails like ALSA."""
import sys, time
args = sys.argv[1:]
expected = {expected!r}
if args != expected:
    sys.stderr.write("arecord: unexpected arguments %r" % (args,))
    sys.exit(2)
with open({raw!r}, "rb") as raw:
    data = raw.read()
for start in range(0, len(data), 9600):
    sys.stdout.buffer.write(data[start:start + 9600])
    sys.stdout.buffer.flush()
sys.stderr.write({error!r})
sys.exit({code})
'''


def fake_arecord(folder: Path, samples: np.ndarray, *, device: str = "hw:1,0",
                 rate: int = 48000, sample_format: str = "S32_LE",
                 error: str = "arecord: main:850: audio open error: Device or resource busy",
                 code: int = 1) -> Path:
    """An executable ``arecord`` in ``folder`` that sends ``samples`` as raw PCM, then exits."""
    raw = folder / "capture.raw"
    raw.write_bytes(to_pcm(samples, 4 if sample_format == "S32_LE" else 2))
    script = folder / "arecord"
    expected = ["-q", "-D", device, "-f", sample_format, "-r", str(rate), "-c", "1", "-t",
                "raw"]
    script.write_text(FAKE_ARECORD.format(python=sys.executable, expected=expected,
                                          raw=str(raw), error=error, code=code))
    script.chmod(0o755)
    return script


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Microphone]:
    """A microphone driver replaying two seconds of a 1 kHz tone from a temporary WAV file."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_wav(Path(folder) / "tone.wav", tone(1000.0, -20.0, 2.0))
        config = MicrophoneConfig(id="noise", driver="microphone", source="wav", path=path,
                                  sensitivity=-26.0)
        yield Microphone(config, DriverContext(clock=clock))
