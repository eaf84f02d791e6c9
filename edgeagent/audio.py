"""Audio sources for the sound level meter: ALSA capture through ``arecord`` and WAV replay.

Samples stay in memory, block by block: they are converted to float (full scale 1.0), handed
to the meter and dropped. Nothing here writes audio to disk, logs it or keeps more than one
block. ``arecord`` (alsa-utils, on every Raspberry Pi OS image) runs as a subprocess writing raw
PCM to a pipe, so nothing needs compiling; a WAV file or a directory of WAV files replays
recordings for tests and for checking a site's levels afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeagent.clock import Clock
from edgeagent.driver import DriverError

#: ALSA sample formats arecord can deliver, as (bytes per sample, numpy dtype).
FORMATS = {"S16_LE": (2, "<i2"), "S32_LE": (4, "<i4")}


class AudioSource(Protocol):
    """Blocks of mono samples as float64 in [-1, 1]."""

    sample_rate: int

    async def open(self) -> None:
        """Start delivering audio."""

    async def read(self) -> np.ndarray:
        """The next block; raises DriverError when the source fails or ends."""

    async def close(self) -> None:
        """Stop; idempotent."""


def pcm_to_float(raw: bytes, sample_bytes: int, channels: int = 1) -> np.ndarray:
    """Little-endian signed PCM (16, 24 or 32 bit) to float64 of channel 0, full scale 1.0."""
    if sample_bytes == 3:  # 24-bit WAV: widen to 32 bit, the top three bytes carry the sample
        padded = np.zeros((len(raw) // 3, 4), dtype=np.uint8)
        padded[:, 1:] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        samples = padded.view("<i4").reshape(-1)
        scale = 2.0 ** 31
    else:
        dtype = {1: "u1", 2: "<i2", 4: "<i4"}[sample_bytes]
        samples = np.frombuffer(raw, dtype=dtype)
        if sample_bytes == 1:  # 8-bit WAV is unsigned
            return (samples.astype(np.float64)[::channels] - 128.0) / 128.0
        scale = 2.0 ** (8 * sample_bytes - 1)
    return samples[::channels].astype(np.float64) / scale


class ArecordSource:
    """ALSA capture: ``arecord -D <device> -f <format> -r <rate> -c 1 -t raw`` into a pipe."""

    def __init__(self, device: str, sample_rate: int, sample_format: str = "S32_LE", *,
                 block_seconds: float = 0.1, command: str = "arecord") -> None:
        self.device = device
        self.sample_rate = sample_rate
        self.sample_format = sample_format
        self.command = command
        self._sample_bytes = FORMATS[sample_format][0]
        self._block_bytes = round(sample_rate * block_seconds) * self._sample_bytes
        self._process: asyncio.subprocess.Process | None = None

    async def open(self) -> None:
        """Start arecord; errors name the device and the fix."""
        program = shutil.which(self.command)
        if program is None:
            raise DriverError(f"{self.command} not found: install alsa-utils (sudo apt install "
                              "alsa-utils)", retryable=False)
        self._process = await asyncio.create_subprocess_exec(
            program, "-q", "-D", self.device, "-f", self.sample_format, "-r",
            str(self.sample_rate), "-c", "1", "-t", "raw", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def read(self) -> np.ndarray:
        """The next block (100 ms by default) as float."""
        process = self._process
        if process is None or process.stdout is None:
            raise DriverError(f"ALSA device {self.device} is not open")
        try:
            raw = await process.stdout.readexactly(self._block_bytes)
        except asyncio.IncompleteReadError as exc:
            raise DriverError(f"ALSA device {self.device}: capture stopped: "
                              f"{await self._why()}") from exc
        return pcm_to_float(raw, self._sample_bytes)

    async def _why(self) -> str:
        process = self._process
        assert process is not None and process.stderr is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await process.wait()
        text = (await process.stderr.read(2000)).decode("utf-8", "replace").strip()
        hint = " (is another program using the microphone? check arecord -l)" if (
            "busy" in text.lower()) else " (check the device name with arecord -L)"
        return f"arecord exited with {process.returncode}: {text or 'no message'}{hint}"

    async def close(self) -> None:
        """Stop arecord; idempotent."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(2.0):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


class WavSource:
    """Replays a WAV file or every ``*.wav`` of a directory (sorted), paced on the clock.

    Each block is returned when its last sample is due on the injected clock, so replay runs
    in stream time: real time on a gateway, stepped time in tests.
    """

    def __init__(self, path: Path, clock: Clock, *, loop: bool = False,
                 block_seconds: float = 0.1) -> None:
        self.path = path
        self.clock = clock
        self.loop = loop
        self.block_seconds = block_seconds
        self.sample_rate = 0
        self._files: list[Path] = []
        self._blocks: Iterator[np.ndarray] | None = None
        self._next_at = 0.0

    async def open(self) -> None:
        """Find the files and check that they share one sample rate."""
        if self.path.is_dir():
            self._files = sorted(self.path.glob("*.wav"))
        elif self.path.is_file():
            self._files = [self.path]
        if not self._files:
            raise DriverError(f"no WAV file at {self.path}", retryable=False)
        rates = {self._rate(path) for path in self._files}
        if len(rates) != 1:
            raise DriverError(f"WAV files in {self.path} have different sample rates "
                              f"{sorted(rates)}; use one rate", retryable=False)
        self.sample_rate = rates.pop()
        self._blocks = self._iterate()
        self._next_at = self.clock.monotonic()

    @staticmethod
    def _rate(path: Path) -> int:
        try:
            with wave.open(str(path), "rb") as wav:
                return wav.getframerate()
        except (OSError, wave.Error, EOFError) as exc:
            raise DriverError(f"{path}: not a readable PCM WAV file: {exc}",
                              retryable=False) from exc

    def _iterate(self) -> Iterator[np.ndarray]:
        while True:
            for path in self._files:
                with wave.open(str(path), "rb") as wav:
                    frames = round(wav.getframerate() * self.block_seconds)
                    width, channels = wav.getsampwidth(), wav.getnchannels()
                    while raw := wav.readframes(frames):
                        yield pcm_to_float(raw, width, channels)
            if not self.loop:
                return

    async def read(self) -> np.ndarray:
        """The next block, after waiting for its time; DriverError at the end of the files."""
        if self._blocks is None:
            raise DriverError(f"WAV source {self.path} is not open")
        block = next(self._blocks, None)
        if block is None:
            self._blocks = None
            raise DriverError(f"end of the recording {self.path}", retryable=False)
        end = self._next_at + len(block) / self.sample_rate  # when its last sample "happens"
        await self.clock.sleep(end - self.clock.monotonic())
        self._next_at = max(end, self.clock.monotonic())
        return block

    async def close(self) -> None:
        """Forget the open file; idempotent."""
        self._blocks = None
