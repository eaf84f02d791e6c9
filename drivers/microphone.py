"""A microphone as a sound level meter: ALSA capture (or WAV replay) → IEC 61672 levels.

Source: an I2S MEMS microphone (INMP441, ICS-43434, SPH0645) or a measurement USB microphone
without automatic gain, read with ``arecord`` (``source: alsa``); or WAV files (``source:
wav``) for replay and tests. Every 125 ms the software meter (:mod:`edgeagent.soundlevel`)
gives A/C-weighted Leq and the Fast/Slow time-weighted levels; the driver turns them into
readings. Samples stay in memory block by block and never leave the driver: no audio is
stored, logged or published, only levels aggregated over windows of at least 60 s.
Calibration: ``edgeagent calibrate <id> --reference 94`` with a 94 dB / 1 kHz acoustic
calibrator (stored with its date), else the microphone's datasheet sensitivity, else a typical
MEMS sensitivity (−26 dBFS) marked ``uncalibrated``. See docs/drivers/microphone.md.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from edgeagent.calibration import Calibration, load_calibration, save_calibration
from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    QuantityClass,
    Reading,
    SensorConfig,
    StatKind,
    StreamSpec,
)
from edgeagent.privacy import rfc3339

TYPICAL_MEMS_SENSITIVITY = -26.0  # dBFS at 94 dB SPL, 1 kHz (INMP441, ICS-43434, SPH0645)
LEVEL_INTERVAL = 0.125  # the meter's output cadence (Fast time constant)
SETTLE_SECONDS = 1.0  # calibration: skip while the filters and Slow weighting settle
MAX_CALIBRATION_SPREAD_DB = 1.0

#: Stream name → (kind, statistics that mean something, description).
STREAMS: dict[str, tuple[StatKind, tuple[str, ...], str]] = {
    "laeq": (StatKind.ENERGETIC, ("mean",), "A-weighted equivalent continuous sound level "
             "over the window (energy mean)"),
    "lceq": (StatKind.ENERGETIC, ("mean",), "C-weighted equivalent continuous sound level"),
    "laf": (StatKind.LEVEL, ("l10", "l50", "l90"), "A-weighted Fast (125 ms) level sampled every "
            "125 ms: percentile levels L10 (peaks), L50, L90 (background)"),
    "lafmax": (StatKind.LEVEL, ("max",), "maximum A-weighted Fast level"),
    "lafmin": (StatKind.LEVEL, ("min",), "minimum A-weighted Fast level"),
    "lasmax": (StatKind.LEVEL, ("max",), "maximum A-weighted Slow (1 s) level"),
}


class MicrophoneConfig(SensorConfig):
    """A microphone entry: where the audio comes from and how it is calibrated."""

    driver: Literal["microphone"]
    source: Literal["alsa", "wav"] = Field("alsa", description="alsa: arecord; wav: replay")
    device: str = Field("default", description="ALSA capture device, e.g. hw:1,0 (alsa)")
    path: Path | None = Field(None, description="WAV file or directory of WAV files (wav)")
    loop: bool = Field(False, description="Replay the WAV files over and over (wav)")
    sample_rate: Literal[44100, 48000] = Field(48000, description="Capture rate (alsa)")
    sample_format: Literal["S16_LE", "S32_LE"] = Field(
        "S32_LE", description="ALSA format; I2S MEMS mics send 24 bit in 32-bit slots")
    sensitivity: float | None = Field(None, ge=-60, le=0, description="Datasheet sensitivity "
                                      "in dBFS for 94 dB SPL at 1 kHz; used until calibrated")
    microphone: str | None = Field(None, max_length=80, description="Make and model of the "
                                   "microphone, for the manifest (e.g. 'ICS-43434')")

    @model_validator(mode="after")
    def _source_needs(self) -> MicrophoneConfig:
        if self.source == "wav" and self.path is None:
            raise ValueError("source: wav needs path (a WAV file or a directory of them)")
        return self


def calibration_state(config: MicrophoneConfig, state_dir: Path | None
                      ) -> tuple[float, dict[str, Any]]:
    """The offset in use and its description for every message."""
    stored = load_calibration(state_dir, config.id)
    if stored is not None:
        return stored.offset_db, {"state": "calibrated", "date": stored.date,
                                  "offset_db": round(stored.offset_db, 2),
                                  "reference_db": stored.reference_db}
    from edgeagent.soundlevel import offset_from_sensitivity

    if config.sensitivity is not None:
        offset = offset_from_sensitivity(config.sensitivity)
        return offset, {"state": "datasheet", "date": None, "offset_db": round(offset, 2),
                        "reference_db": None}
    offset = offset_from_sensitivity(TYPICAL_MEMS_SENSITIVITY)
    return offset, {"state": "uncalibrated", "date": None, "offset_db": round(offset, 2),
                    "reference_db": None}


class Microphone(Driver):
    """Software sound level meter on a microphone; publishes levels only."""

    Config = MicrophoneConfig
    model: ClassVar[str] = "microphone with the edgeagent sound level meter"
    transport: ClassVar[str] = "audio"
    sample_config: ClassVar[dict[str, Any]] = {"id": "noise", "driver": "microphone",
                                               "device": "hw:1,0", "sensitivity": -26.0}

    def __init__(self, config: MicrophoneConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: MicrophoneConfig = config
        self._source: Any = None
        self._meter: Any = None
        self._pending: deque[list[Reading]] = deque()
        self._processed = 0  # samples fed to the meter since open

    @classmethod
    def streams(cls, config: MicrophoneConfig) -> list[StreamSpec]:  # type: ignore[override]
        """LAeq, LCeq, the Fast level for percentiles, LAFmax, LAFmin, LASmax (all dB).

        Stream names are lower case (``laeq`` …) like every stream name in the contract; the
        FIWARE encoder maps them to NoiseLevelObserved's ``LAeq``, ``LAmax`` ….
        """
        return [StreamSpec(name, "dB", QuantityClass.NOISE, kind, description, statistics)
                for name, (kind, statistics, description) in STREAMS.items()]

    @classmethod
    def sample_interval(cls, config: MicrophoneConfig) -> float:  # type: ignore[override]
        """One level sample per 125 ms, whatever ``interval`` says."""
        return LEVEL_INTERVAL

    @classmethod
    def model_of(cls, config: MicrophoneConfig) -> str:  # type: ignore[override]
        """The configured microphone, measured by the software meter."""
        return f"{config.microphone or 'microphone'} with the edgeagent sound level meter"

    @classmethod
    def message_meta(cls, config: MicrophoneConfig,  # type: ignore[override]
                     state_dir: Path | None) -> dict[str, Any]:
        """Every data message says how the levels are calibrated."""
        try:
            return {"calibration": calibration_state(config, state_dir)[1]}
        except ValueError:  # a damaged calibration file: open() refuses to start, loudly
            return {"calibration": {"state": "uncalibrated", "date": None, "offset_db": 0.0,
                                    "reference_db": None}}

    def describe(self) -> dict[str, Any]:
        """Settings plus the calibration in use."""
        state_dir = self.context.state_dir if self.context is not None else None
        return {**super().describe(),
                "calibration": self.message_meta(self.config, state_dir)["calibration"]}

    def _make_source(self) -> Any:
        from edgeagent.audio import ArecordSource, WavSource

        if self.config.source == "wav":
            assert self.config.path is not None
            return WavSource(self.config.path, self.context.clock, loop=self.config.loop)
        return ArecordSource(self.config.device, self.config.sample_rate,
                             self.config.sample_format)

    async def open(self) -> None:
        """Start the source and a meter with the calibration offset."""
        try:
            from edgeagent.soundlevel import SoundLevelMeter
        except ImportError as exc:  # numpy is an optional extra
            raise DriverError("the sound level meter needs numpy: pip install "
                              "'edgeagent[audio]' (or apt install python3-numpy)",
                              retryable=False) from exc
        try:
            offset, _ = calibration_state(self.config, self.context.state_dir)
        except ValueError as exc:
            raise DriverError(str(exc), retryable=False) from exc
        source = self._make_source()
        await source.open()
        self._source = source
        self._meter = SoundLevelMeter(source.sample_rate, offset_db=offset)
        self._processed = 0
        self._pending.clear()

    async def read(self) -> list[Reading] | None:
        """The readings of the next 125 ms interval."""
        while not self._pending:
            await self._feed()
        return self._pending.popleft()

    async def _feed(self) -> None:
        if self._source is None or self._meter is None:
            raise DriverError(f"microphone {self.config.id} is not open")
        block = await self._source.read()
        now = self.context.clock.monotonic()
        self._processed += len(block)
        stream_end = self._processed / self._source.sample_rate
        for sample in self._meter.process(block):
            t = now - (stream_end - sample.t_end)  # when that interval ended
            values = {"laeq": sample.laeq, "lceq": sample.lceq, "laf": sample.laf,
                      "lafmax": sample.lafmax, "lafmin": sample.lafmin,
                      "lasmax": sample.lasmax}
            readings = [Reading(name, value, t) for name, value in values.items()
                        if math.isfinite(value)]  # digital silence has no level
            if readings:
                self._pending.append(readings)

    async def close(self) -> None:
        """Stop the source and drop every sample; idempotent."""
        source, self._source, self._meter = self._source, None, None
        self._pending.clear()
        if source is not None:
            await source.close()

    @classmethod
    async def calibrate(cls, config: MicrophoneConfig,  # type: ignore[override]
                        context: DriverContext, reference: float, seconds: float) -> str:
        """Measure a calibrator's tone for ``seconds``; store the offset that reads it right.

        Refuses an unsteady or silent measurement (nothing is stored then).
        """
        if context.state_dir is None:
            raise DriverError("no state directory to store the calibration in")
        from edgeagent.soundlevel import SoundLevelMeter

        driver = cls(config, context)
        source = driver._make_source()
        await source.open()
        try:
            meter = SoundLevelMeter(source.sample_rate, offset_db=0.0)
            levels: list[float] = []
            done = 0
            while done < (SETTLE_SECONDS + seconds) * source.sample_rate:
                block = await source.read()
                done += len(block)
                levels += [s.laeq for s in meter.process(block) if s.t_end > SETTLE_SECONDS]
        finally:
            await source.close()
        finite = [level for level in levels if math.isfinite(level)]
        if len(finite) < seconds / LEVEL_INTERVAL * 0.9:
            raise DriverError(f"only {len(finite)} level samples in {seconds:g}s: is the "
                              "microphone delivering audio?")
        spread = max(finite) - min(finite)
        if spread > MAX_CALIBRATION_SPREAD_DB:
            raise DriverError(f"the level varied by {spread:.1f} dB during calibration (at most "
                              f"{MAX_CALIBRATION_SPREAD_DB:g} dB): is the calibrator seated on "
                              "the microphone and switched on? Nothing was stored")
        measured = 10 * math.log10(sum(10 ** (level / 10) for level in finite) / len(finite))
        offset = reference - measured
        previous = calibration_state(config, context.state_dir)[1]
        calibration = Calibration(sensor=config.id, offset_db=offset,
                                  date=rfc3339(context.clock.time()), reference_db=reference,
                                  measured_db=measured)
        path = save_calibration(context.state_dir, calibration)
        return (f"{config.id}: calibrated to {reference:g} dB (offset {offset:+.2f} dB, was "
                f"{previous['offset_db']:+.2f} dB, {previous['state']}); stored in {path}. "
                "Restart the agent to use it (systemctl restart edgeagent)")
