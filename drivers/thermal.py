"""Shared driver for thermal people counters: frames in memory, counts out.

A thermal driver reads frames (°C) from its device layer and hands each one to
:class:`~edgeagent.counting.thermal.ThermalCounter` (background, detector, tracker); only the
frame's counts become readings. No frame, position or track is kept after the step, logged or
returned. Devices: ``amg8833`` (8×8) and ``mlx90640`` (32×24).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import Field

from edgeagent.counting import CountingConfig, counting_readings, counting_streams
from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    Reading,
    SensorConfig,
    StreamSpec,
)


class FrameDevice(Protocol):
    """What a thermal device layer provides."""

    async def open(self) -> None: ...  # noqa: D102
    async def read_frame(self) -> np.ndarray: ...  # noqa: D102
    async def close(self) -> None: ...  # noqa: D102


class ThermalConfig(SensorConfig):
    """Fields every thermal counter has."""

    bus: int = Field(1, ge=0, description="I2C bus number: /dev/i2c-<bus>")
    counting: CountingConfig = Field(default_factory=CountingConfig,
                                     description="Counting line, zones and tracker; positions "
                                     "in frame units: x = column, y = row, 0–1")
    detector: Literal["auto", "cnn", "blobs"] = Field(
        "auto", description="cnn = the shipped TFLite model, blobs = background subtraction "
        "and connected components, auto = the better one for this sensor (models/MODEL_CARD.md)")


class ThermalArrayDriver(Driver):
    """Base of the thermal counters: pace, read a frame, count it, return the counts."""

    transport: ClassVar[str] = "i2c"
    #: Profile name of :class:`~edgeagent.counting.thermal.ThermalCounter`.
    sensor: ClassVar[str]
    shape: ClassVar[tuple[int, int]]
    #: What the sensor cannot see, for the stream descriptions.
    limit: ClassVar[str] = ""
    #: False if the device's read_frame waits for a new frame itself (no pacing needed).
    paced: ClassVar[bool] = True

    def __init__(self, config: Any, context: DriverContext) -> None:
        super().__init__(config, context)
        self._device: FrameDevice | None = None
        self._counter: Any = None
        self._pacer = Pacer(self.sample_interval(config))
        self._dropped = 0

    @classmethod
    def streams(cls, config: Any) -> list[StreamSpec]:
        """Crossings (with a line), occupancy and one occupancy per zone."""
        return counting_streams(config.counting, limit=cls.limit)

    @classmethod
    def config_problems(cls, config: Any) -> list[tuple[tuple[str, ...], str]]:
        """The model detector needs a TFLite runtime; say so before the agent starts."""
        from edgeagent.counting.thermal import PROFILES
        from edgeagent.inference import InferenceError, find_interpreter

        detector = config.detector
        if detector == "auto":
            detector = PROFILES[cls.sensor].default_detector
        if detector != "cnn":
            return []
        try:
            find_interpreter()
        except InferenceError as exc:
            return [(("detector",), f"the {cls.model} counts with the cnn model, which needs a "
                     f"TFLite runtime: {exc}; or set detector: blobs")]
        return []

    @abc.abstractmethod
    def make_device(self) -> FrameDevice:
        """The device layer for this config (no I/O)."""

    async def open(self) -> None:
        """Load the counter (model), open and initialise the device."""
        from edgeagent.counting.thermal import ThermalCounter

        try:
            self._counter = ThermalCounter(self.config.counting, self.shape, sensor=self.sensor,
                                           detector=self.config.detector)
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            raise DriverError(f"sensor {self.config.id}: the people detector cannot start: "
                              f"{exc}", retryable=False) from exc
        device = self.make_device()
        await device.open()
        self._device = device
        self._pacer.start(self.context.clock.monotonic())

    async def read(self) -> list[Reading] | None:
        """Wait for the next frame, count it and return the frame's counts."""
        if self._device is None or self._counter is None:
            raise DriverError(f"{self.model} sensor {self.config.id} is not open")
        if self.paced:
            await self._pacer.wait(self.context.clock)
        try:
            frame = await self._device.read_frame()
        except FrameError:
            self._dropped += 1
            raise
        t = self.context.clock.monotonic()
        counts = self._counter.step(frame, t)
        del frame  # the image lives no longer than this step
        return counting_readings(self.config.counting, counts, t)

    async def close(self) -> None:
        """Release the bus and forget every track; idempotent."""
        device, self._device = self._device, None
        if self._counter is not None:
            self._counter.reset()
        if device is not None:
            await device.close()

    def health(self) -> dict[str, float | int]:
        """Frames, dropped frames, frame rate, detector timing (never frames or positions)."""
        out: dict[str, Any] = {"dropped_frames": self._dropped}
        if self._counter is not None:
            figures = self._counter.health()
            out |= {"frames": figures["frames"], "fps": figures["fps"],
                    "inference_ms": figures["inference_ms_mean"],
                    "inference_ms_max": figures["inference_ms_max"],
                    "detector": figures["detector"]}
            if "runtime" in figures:
                out["runtime"] = figures["runtime"]
        return out
