"""Hi-Link HLK-LD2450 24 GHz multi-target tracking radar on a UART: people counting.

Chip: Hi-Link HLK-LD2450; tracks at most 3 targets at once (x, y, speed per target).
Bus: UART, 256 000 baud 8N1, 3.3 V logic, 5 V supply (≥ 200 mA). The radar streams a 30-byte
report 10 times per second: ``AA FF 03 00`` + 3 × 8-byte target + ``55 CC``, no checksum.
X, Y (mm) and speed (cm/s) are u16 LE with an *inverted* sign bit (bit 15 set = positive);
the resolution (mm) is a plain u16; an all-zero block is "no target". Commands (multi-target
tracking, zone filter, firmware) use the shared Hi-Link framing (:mod:`edgeagent.drivers.hilink`).
Units: target positions are converted to metres (x across, y away from the radar) and fed to
the counting core; only per-frame counts leave the driver — crossings ``peopleIn`` /
``peopleOut`` and ``occupancy`` (people present at once, total and per zone). Targets and
tracks stay in memory: never logged, stored or published.
Datasheet: HLK-LD2450 serial communication protocol V1.03; see docs/drivers/ld2450.md.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeagent.counting import (
    CountingConfig,
    PositionCounter,
    TrackerConfig,
    counting_readings,
    counting_streams,
)
from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Reading,
    StreamSpec,
)
from edgeagent.drivers.hilink import (
    COMMAND_SPEC,
    DEFAULT_BAUD,
    FIRMWARE,
    Ack,
    CommandChannel,
    FrameSpec,
    HilinkConfig,
    HilinkParser,
    decode_ack,
    firmware_version,
)
from edgeagent.serialport import SerialTransport
from edgeagent.units import Duration, format_duration

REPORT_HEADER = bytes.fromhex("AA FF 03 00")
REPORT_TAIL = bytes.fromhex("55 CC")
REPORT_SIZE = 30
TARGETS = 3  # the radar tracks at most three targets
LIMIT = "the LD2450 tracks at most 3 people at once: never more than 3"
RADAR_TRACKER = TrackerConfig(max_step=0.5, max_missing=3, min_hits=1)
TARGET_SIZE = 8
FRAME_RATE = 10.0  # reports per second (datasheet)
SINGLE_TARGET = 0x0080
MULTI_TARGET = 0x0090
QUERY_TRACKING = 0x0091
QUERY_ZONES = 0x00C1
SET_ZONES = 0x00C2
TRACKING_SINGLE, TRACKING_MULTI = 1, 2  # values of the query-tracking ACK
ZONE_OFF, ZONE_INCLUDE, ZONE_EXCLUDE = 0, 1, 2
ZONE_TYPES = {"off": ZONE_OFF, "include": ZONE_INCLUDE, "exclude": ZONE_EXCLUDE}
ZONE_VALUE_SIZE = 26  # u16 type + 3 regions × 4 s16
MAX_ZONE_M = 32.767  # s16 millimetres
GAP_RESET_S = 1.0  # frames missing this long: tracks are forgotten (they would match anyone)
RATE_FRAMES = 50  # frames over which health() measures the frame rate

REPORT_SPEC = FrameSpec("LD2450 report", REPORT_HEADER, REPORT_TAIL, size=REPORT_SIZE)


def decode_value(raw: int) -> int:
    """X, Y and speed of a report: bit 15 set = positive, bits 14–0 = magnitude."""
    return raw & 0x7FFF if raw & 0x8000 else -(raw & 0x7FFF)


def encode_value(value: int) -> int:
    """Inverse of :func:`decode_value` (0 is sent as positive zero, 0x8000)."""
    if not -0x7FFF <= value <= 0x7FFF:
        raise ValueError(f"{value} does not fit 15 bits of magnitude")
    return 0x8000 | value if value >= 0 else -value


@dataclass(frozen=True, slots=True)
class Target:
    """One tracked target of a report, in the radar's own convention (mm, cm/s)."""

    x: int
    y: int
    speed: int
    resolution: int


@dataclass(frozen=True, slots=True)
class Ld2450Report:
    """The targets present in one report frame (absent slots dropped)."""

    targets: tuple[Target, ...]


def decode_report(frame: bytes) -> Ld2450Report | FrameError:
    """Decode a whole 30-byte report frame (header and tail already checked)."""
    targets = []
    for slot in range(TARGETS):
        block = frame[4 + slot * TARGET_SIZE:4 + (slot + 1) * TARGET_SIZE]
        if not any(block):
            continue  # an all-zero block: no target in this slot
        x, y, speed, resolution = struct.unpack("<4H", block)
        targets.append(Target(decode_value(x), decode_value(y), decode_value(speed),
                              resolution))
    return Ld2450Report(tuple(targets))


def ld2450_parser() -> HilinkParser:
    """A parser for the radar's stream: reports and ACKs."""
    return HilinkParser([(COMMAND_SPEC, decode_ack), (REPORT_SPEC, decode_report)])


def encode_zones(zone_type: int, regions: list[tuple[int, int, int, int]]) -> bytes:
    """The 26-byte zone value: u16 type + 3 × (x1, y1, x2, y2) plain s16 LE in mm."""
    if len(regions) > 3:
        raise ValueError("at most 3 regions")
    padded = list(regions) + [(0, 0, 0, 0)] * (3 - len(regions))
    return struct.pack("<H", zone_type) + b"".join(struct.pack("<4h", *r) for r in padded)


def decode_zones(value: bytes) -> tuple[int, list[tuple[int, int, int, int]]]:
    """Inverse of :func:`encode_zones`: the type and the used (non-zero) regions."""
    if len(value) < ZONE_VALUE_SIZE:
        raise ValueError(f"zone value has {len(value)} bytes, expected {ZONE_VALUE_SIZE}")
    zone_type = struct.unpack_from("<H", value)[0]
    regions = [struct.unpack_from("<4h", value, 2 + 8 * i) for i in range(3)]
    return zone_type, [r for r in regions if any(r)]


class ZoneFilter(BaseModel):
    """The radar's own zone filter (0x00C2), in metres in the published convention."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["include", "exclude", "off"] = Field(
        description="include: report only targets inside the regions; exclude: ignore targets "
                    "inside them; off: clear a filter stored in the radar")
    regions: tuple[tuple[float, float, float, float], ...] = Field(
        (), max_length=3, description="Up to 3 rectangles x1, y1, x2, y2 (opposite corners, m)")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, mode: object) -> object:
        return "off" if mode is False else mode  # YAML 1.1 reads an unquoted off as false

    @field_validator("regions")
    @classmethod
    def _fit_s16(cls, regions: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
        for index, region in enumerate(regions):
            if any(abs(v) > MAX_ZONE_M for v in region):
                raise ValueError(f"region {index}: coordinates must be within ±{MAX_ZONE_M} m")
            x1, y1, x2, y2 = region
            if round(x1 * 1000) == round(x2 * 1000) or round(y1 * 1000) == round(y2 * 1000):
                raise ValueError(f"region {index}: corners must differ in x and in y (an empty "
                                 "rectangle)")
        return regions

    @model_validator(mode="after")
    def _regions_fit_mode(self) -> ZoneFilter:
        if self.mode == "off" and self.regions:
            raise ValueError("mode off takes no regions")
        if self.mode != "off" and not self.regions:
            raise ValueError(f"mode {self.mode} needs at least one region")
        return self

    def wire_value(self, invert_x: bool) -> bytes:
        """The 0x00C2 value, in the radar's convention (x negated back if ``invert_x``)."""
        sign = -1 if invert_x else 1
        regions = [(round(sign * x1 * 1000), round(y1 * 1000), round(sign * x2 * 1000),
                    round(y2 * 1000)) for x1, y1, x2, y2 in self.regions]
        return encode_zones(ZONE_TYPES[self.mode], regions)


class Ld2450Config(HilinkConfig):
    """An LD2450 sensor entry."""

    driver: Literal["ld2450"]
    interval: Duration = Field(1 / FRAME_RATE, description="The radar reports 10 frames/s")
    invert_x: bool = Field(False, description="Mirror x (radar mounted upside down, or to "
                           "match another implementation's sign convention)")
    counting: CountingConfig = Field(default_factory=CountingConfig,
                                     description="Counting line and zones, in metres: x across, "
                                     "y away from the radar")
    zone_filter: ZoneFilter | None = Field(None, description="Radar-side zone filter; None = "
                                           "leave the radar's stored setting alone")


class Ld2450(Driver):
    """HLK-LD2450 driver: multi-target tracking → line crossings and occupancy."""

    Config = Ld2450Config
    model: ClassVar[str] = "Hi-Link HLK-LD2450"
    transport: ClassVar[str] = "uart"
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "entrance", "driver": "ld2450", "port": "/dev/ttyAMA0",
        "counting": {"line": {"start": [-1.5, 2.0], "end": [1.5, 2.0]}}}

    scan_baud: ClassVar[int | None] = DEFAULT_BAUD

    @classmethod
    def recognise_stream(cls, data: bytes) -> dict[str, Any] | None:
        """Count valid report frames in passively read bytes (the radar streams on its own)."""
        frames = sum(isinstance(item, Ld2450Report) for item in ld2450_parser().feed(data, 0.0))
        return {"model": cls.model, "frames": frames} if frames else None

    def __init__(self, config: Ld2450Config, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Ld2450Config = config
        self.firmware: str | None = None
        self.stored_zone_filter: str | None = None
        self._channel: CommandChannel | None = None
        self._counter = PositionCounter(radar_counting(config.counting))
        self._frames = 0
        self._bad_frames = 0
        self._dropped = 0
        self._last_frame_at: float | None = None
        self._recent: deque[float] = deque(maxlen=RATE_FRAMES)

    @classmethod
    def streams(cls, config: Ld2450Config) -> list[StreamSpec]:  # type: ignore[override]
        """Crossings (with a line), occupancy, occupancy per zone; at most 3 people tracked."""
        return counting_streams(config.counting, limit=LIMIT)

    @classmethod
    def sample_interval(cls, config: Ld2450Config) -> float:  # type: ignore[override]
        """One sample per report frame: 0.1 s."""
        return 1 / FRAME_RATE

    def describe(self) -> dict[str, Any]:
        """Settings plus the firmware version and the radar's stored zone filter."""
        return {**super().describe(), "firmware": self.firmware,
                "radar_zone_filter": self.stored_zone_filter,
                "max_targets": TARGETS}

    def health(self) -> dict[str, float | int]:
        """Report frame rate, frames, bad frames and frames dropped (gaps in the 10 Hz)."""
        recent = self._recent
        rate = ((len(recent) - 1) / (recent[-1] - recent[0])
                if len(recent) > 1 and recent[-1] > recent[0] else 0.0)
        return {"fps": round(rate, 2), "frames": self._frames,
                "bad_frames": self._bad_frames, "dropped_frames": self._dropped}

    async def open(self) -> None:
        """Open the port; read the firmware; multi-target mode; zone filter if configured."""
        transport = SerialTransport(self.config.port, self.config.baudrate)
        await transport.open()
        clock = self.context.clock
        channel = CommandChannel(transport, ld2450_parser(), device="LD2450",
                                 now=clock.monotonic, timeout=self.config.ack_timeout,
                                 log=self.context.log)
        self._channel = channel
        try:
            async with channel.config_mode():
                self.firmware = firmware_version(
                    await channel.command(FIRMWARE, what="read firmware version"))
                await channel.command(MULTI_TARGET, what="multi-target tracking")
                await self._zone_filter(channel)
        except DriverError:
            await self.close()
            raise
        channel.inbox.clear()  # reports from before the configuration is final
        self._counter.reset()
        self._last_frame_at = None
        self.context.log.info("LD2450 on %s: firmware %s", self.config.port, self.firmware)

    async def _zone_filter(self, channel: CommandChannel) -> None:
        stored: Ack = await channel.command(QUERY_ZONES, what="query zone filter")
        try:
            zone_type, regions = decode_zones(stored.data)
        except ValueError as exc:
            raise DriverError(f"{channel.where}: bad zone filter ACK: {exc}") from exc
        wanted = self.config.zone_filter
        if wanted is None:
            if zone_type != ZONE_OFF:
                self.context.log.warning(
                    "LD2450 on %s has a stored zone filter (type %d, %d regions) that this "
                    "config does not set: targets may be filtered; set zone_filter (mode off "
                    "clears it)", self.config.port, zone_type, len(regions))
            self.stored_zone_filter = _zone_label(zone_type, len(regions))
            return
        value = wanted.wire_value(self.config.invert_x)
        if stored.data[:ZONE_VALUE_SIZE] != value:  # zone settings persist: write only changes
            await channel.command(SET_ZONES, value, what="set zone filter")
        self.stored_zone_filter = _zone_label(ZONE_TYPES[wanted.mode], len(wanted.regions))

    async def read(self) -> list[Reading] | None:
        """Wait for the next report; return its counts (one reading per stream)."""
        channel = self._require_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.read_timeout
        while not channel.inbox:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DriverError(f"no report from LD2450 on {self.config.port} for "
                                  f"{format_duration(self.config.read_timeout)} (check the "
                                  "TX/RX wiring, the 5 V supply ≥ 200 mA and the baud rate)")
            await channel.receive(remaining)
        t, item = channel.inbox.popleft()
        if isinstance(item, FrameError):
            self._bad_frames += 1
            raise item
        return self._count(item, t)

    def _count(self, report: Ld2450Report, t: float) -> list[Reading]:
        self._note_frame(t)
        positions = positions_of(report, self.config.invert_x)
        return counting_readings(self.config.counting, self._counter.step(positions), t)

    def _note_frame(self, t: float) -> None:
        self._frames += 1
        self._recent.append(t)
        last, self._last_frame_at = self._last_frame_at, t
        if last is None:
            return
        gap = t - last
        if gap > 2.5 / FRAME_RATE:
            self._dropped += round(gap * FRAME_RATE) - 1
        if gap > GAP_RESET_S:
            self._counter.reset()  # a stale track would join whoever appears next

    async def close(self) -> None:
        """Release the port; idempotent."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.transport.close()

    def _require_open(self) -> CommandChannel:
        if self._channel is None:
            raise DriverError(f"LD2450 on {self.config.port} is not open")
        return self._channel


def radar_counting(counting: CountingConfig) -> CountingConfig:
    """The counting config with the radar's tracker defaults unless the user set a tracker.

    The LD2450 reports targets it already tracks itself, so one report is enough to count a
    person as present (``min_hits`` 1); positions are in metres (a walker moves ~0.2 m per
    report at 10 Hz).
    """
    if "tracker" in counting.model_fields_set:
        return counting
    return counting.model_copy(update={"tracker": RADAR_TRACKER})


def positions_of(report: Ld2450Report, invert_x: bool) -> list[tuple[float, float]]:
    """Target positions in metres (x across, mirrored if ``invert_x``; y away from the radar)."""
    sign = -1.0 if invert_x else 1.0
    return [(sign * target.x / 1000, target.y / 1000) for target in report.targets]


def _zone_label(zone_type: int, regions: int) -> str:
    names = {v: k for k, v in ZONE_TYPES.items()}
    name = names.get(zone_type, f"type {zone_type}")
    return name if zone_type == ZONE_OFF else f"{name} ({regions} regions)"
