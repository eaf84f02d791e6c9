"""HLK-LD2450 simulator, byte for byte: config mode, tracking mode, zone filter, 10 Hz reports.

A scene gives the people in front of the radar at a monotonic time as (x, y) positions in mm in
the radar's own convention; the simulator tracks at most three (the nearest), applies its zone
filter and tracking mode, and encodes 30-byte report frames with the inverted sign-magnitude
values of the real radar.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator, Callable, Sequence

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.hilink import STATUS_FAILED, STATUS_OK, Command, ack_frame
from edgeagent.drivers.ld2450 import (
    FRAME_RATE,
    MULTI_TARGET,
    QUERY_TRACKING,
    QUERY_ZONES,
    REPORT_HEADER,
    REPORT_TAIL,
    SET_ZONES,
    SINGLE_TARGET,
    TARGETS,
    TRACKING_MULTI,
    TRACKING_SINGLE,
    ZONE_EXCLUDE,
    ZONE_INCLUDE,
    ZONE_VALUE_SIZE,
    Ld2450,
    Ld2450Config,
    Target,
    decode_zones,
    encode_value,
)
from edgeagent.drivers.sim.hilink import HilinkSimulator, PtyHilink

#: Firmware of the datasheet's example ACK: V1.02.22062416.
EXAMPLE_FIRMWARE = (0x0102, 0x22062416)
RESOLUTION_MM = 320  # the datasheet example's distance resolution
Position = tuple[float, float]
Scene = Callable[[float], Sequence[Position]]


def empty_scene(t: float) -> list[Position]:
    """Nobody there."""
    return []


def walkers(paths: Sequence[tuple[float, Position, Position, float]]) -> Scene:
    """People walking straight lines: (start time, from mm, to mm, speed m/s) each.

    A person is in the field from the start time until the end of the line.
    """
    def scene(t: float) -> list[Position]:
        out = []
        for start, (x0, y0), (x1, y1), speed in paths:
            length = math.dist((x0, y0), (x1, y1))
            done = (t - start) * speed * 1000
            if 0 <= done <= length:
                f = done / length
                out.append((x0 + f * (x1 - x0), y0 + f * (y1 - y0)))
        return out

    return scene


class Ld2450Simulator(HilinkSimulator):
    """The radar side: answers commands in configuration mode and encodes reports."""

    def __init__(self, scene: Scene = empty_scene, *, firmware: tuple[int, int] =
                 EXAMPLE_FIRMWARE, reports_in_config_mode: bool = False) -> None:
        super().__init__(firmware=firmware, reports_in_config_mode=reports_in_config_mode)
        self.scene = scene
        self.tracking = TRACKING_MULTI  # the power-up default
        self.zones = bytes(ZONE_VALUE_SIZE)  # persists across power cycles

    @staticmethod
    def encode_target(target: Target | None) -> bytes:
        """8 bytes of one slot; None is the all-zero "no target" block."""
        if target is None:
            return bytes(8)
        return struct.pack("<4H", encode_value(target.x), encode_value(target.y),
                           encode_value(target.speed), target.resolution)

    @classmethod
    def encode_report(cls, targets: Sequence[Target | None]) -> bytes:
        """A 30-byte report with up to three targets (missing slots all zero)."""
        if len(targets) > TARGETS:
            raise ValueError(f"the LD2450 reports at most {TARGETS} targets")
        slots = list(targets) + [None] * (TARGETS - len(targets))
        return REPORT_HEADER + b"".join(cls.encode_target(t) for t in slots) + REPORT_TAIL

    def targets_at(self, t: float) -> list[Target]:
        """What the radar reports at ``t``: nearest three, zone filter, tracking mode."""
        dt = 1 / FRAME_RATE
        now, before = list(self.scene(t)), list(self.scene(t - dt))
        people = []
        for index, (x, y) in enumerate(now):
            speed = 0
            if index < len(before):  # radial speed from the range change, cm/s
                speed = round((math.hypot(x, y) - math.hypot(*before[index])) / dt / 10)
            people.append(Target(round(x), round(y), speed, RESOLUTION_MM))
        people = [p for p in people if self._passes_zones(p)]
        people.sort(key=lambda p: math.hypot(p.x, p.y))
        return people[:1 if self.tracking == TRACKING_SINGLE else TARGETS]

    def _passes_zones(self, target: Target) -> bool:
        zone_type, regions = decode_zones(self.zones)
        if zone_type not in (ZONE_INCLUDE, ZONE_EXCLUDE):
            return True
        inside = any(min(x1, x2) <= target.x <= max(x1, x2) and
                     min(y1, y2) <= target.y <= max(y1, y2) for x1, y1, x2, y2 in regions)
        return inside if zone_type == ZONE_INCLUDE else not inside

    def report(self, t: float) -> bytes | None:
        """The report frame at ``t`` (None in configuration mode)."""
        if not self.reporting:
            return None
        return self.encode_report(self.targets_at(t))

    def execute(self, command: Command) -> bytes | None:
        """Tracking mode and zone filter commands."""
        word, value = command.word, command.value
        if word in (SINGLE_TARGET, MULTI_TARGET):
            self.tracking = TRACKING_SINGLE if word == SINGLE_TARGET else TRACKING_MULTI
            return ack_frame(word)
        if word == QUERY_TRACKING:
            return ack_frame(word, STATUS_OK, self.tracking.to_bytes(2, "little"))
        if word == QUERY_ZONES:
            return ack_frame(word, STATUS_OK, self.zones)
        if word == SET_ZONES:
            if len(value) != ZONE_VALUE_SIZE or int.from_bytes(value[:2], "little") > 2:
                return ack_frame(word, STATUS_FAILED)
            self.zones = value  # takes effect at once and persists
            return ack_frame(word)
        return None

    def factory_reset(self) -> None:
        """Multi-target tracking, no zone filter."""
        self.tracking = TRACKING_MULTI
        self.zones = bytes(ZONE_VALUE_SIZE)


class PtyLd2450(PtyHilink):
    """An LD2450 simulator behind a pty, streaming at 10 Hz on a clock."""

    sim: Ld2450Simulator

    def __init__(self, sim: Ld2450Simulator | None = None) -> None:
        super().__init__(sim or Ld2450Simulator(), 1 / FRAME_RATE)


def conformance_scene(t: float) -> list[Position]:
    """Two people standing, one walking slowly across."""
    return [(-600.0, 1500.0), (800.0, 2500.0), (-1500.0 + 100.0 * (t % 30), 3000.0)]


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Ld2450]:
    """Yield a driver wired to this simulator, streaming in the background; not yet opened."""
    async with PtyLd2450(Ld2450Simulator(conformance_scene)) as pty:
        config = Ld2450Config.model_validate({**Ld2450.sample_config, "id": "ld2450-conf",
                                              "port": pty.port})
        stream = asyncio.create_task(pty.run_reports(clock, pause=0.002))
        try:
            yield Ld2450(config, DriverContext(clock=clock))
        finally:
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream
