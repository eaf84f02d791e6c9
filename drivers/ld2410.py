"""Hi-Link HLK-LD2410 / LD2410B / LD2410C 24 GHz presence radar on a UART.

Chip: Hi-Link HLK-LD2410 (also the B and C boards, same protocol).
Bus: UART, 256 000 baud 8N1, 3.3 V logic, 5 V supply (≥ 200 mA). The radar streams report
frames ``F4 F3 F2 F1 | u16 len | type AA … 55 00 | F8 F7 F6 F5`` with no checksum: basic
(type 02, 23 bytes) or engineering (type 01, 45 bytes, more on firmware that appends extra
bytes — the length field is trusted). Commands use the shared Hi-Link framing
(:mod:`edgeagent.drivers.hilink`).
Units: ``presence``, ``motion`` and ``stillPresence`` in % — each reading is 100 or 0 (the
radar's target state, at most one reading per ``interval``), so a window mean is the share of
time someone was there. Distances and energies stay in memory (per-target distance is location
data): never logged, stored or published.
Datasheet: HLK-LD2410B serial communication protocol V1.04; see docs/drivers/ld2410.md.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    QuantityClass,
    Reading,
    StatKind,
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
from edgeagent.units import DurationOrZero, format_duration

REPORT_HEADER = bytes.fromhex("F4 F3 F2 F1")
REPORT_END = bytes.fromhex("F8 F7 F6 F5")
REPORT_TAIL = b"\x55\x00"  # tail byte and the "check" byte, always 00 (no checksum)
HEAD = 0xAA
TYPE_ENGINEERING, TYPE_BASIC = 0x01, 0x02
BASIC_LENGTH = 13  # in-frame length of a basic report
MAX_REPORT_LENGTH = 64
MAX_GATE = 8  # gates 0–8 (0.75 m or 0.2 m each)
MAX_ENERGY = 100
SET_GATES = 0x0060  # max moving gate, max still gate, no-one duration
READ_PARAMETERS = 0x0061
ENGINEERING_ON = 0x0062
ENGINEERING_OFF = 0x0063
GATE_SENSITIVITY = 0x0064
SET_RESOLUTION = 0x00AA
QUERY_RESOLUTION = 0x00AB
PARAM_MOVING_GATE, PARAM_STILL_GATE, PARAM_DURATION = 0x0000, 0x0001, 0x0002
STATE_NONE, STATE_MOVING, STATE_STILL, STATE_BOTH = 0, 1, 2, 3

REPORT_SPEC = FrameSpec("LD2410 report", REPORT_HEADER, REPORT_END,
                        lengths=(BASIC_LENGTH, MAX_REPORT_LENGTH))


@dataclass(frozen=True, slots=True)
class Ld2410Report:
    """One report frame. Distances in cm, energies 0–100; gate energies only in engineering."""

    state: int
    moving_distance: int
    moving_energy: int
    still_distance: int
    still_energy: int
    detection_distance: int
    engineering: bool = False
    moving_gates: tuple[int, ...] = ()
    still_gates: tuple[int, ...] = ()
    extra: bytes = b""

    @property
    def present(self) -> bool:
        """Someone is there (moving, still or both)."""
        return self.state != STATE_NONE

    @property
    def moving(self) -> bool:
        """The state has a moving component."""
        return bool(self.state & STATE_MOVING)

    @property
    def still(self) -> bool:
        """The state has a stationary component."""
        return bool(self.state & STATE_STILL)


def decode_report(frame: bytes) -> Ld2410Report | FrameError:
    """Decode a whole report frame (header, length and end already checked)."""
    data = frame[6:-4]
    kind = data[0]
    if kind not in (TYPE_BASIC, TYPE_ENGINEERING):
        return FrameError(f"LD2410 report of unknown type 0x{kind:02X} (expected 01 "
                          "engineering or 02 basic)")
    if data[1] != HEAD:
        return FrameError(f"LD2410 report with head byte 0x{data[1]:02X} (expected AA)")
    if data[-2:] != REPORT_TAIL:
        return FrameError(f"LD2410 report with tail {data[-2:].hex(' ').upper()} "
                          "(expected 55 00)")
    state, moving, moving_energy, still, still_energy, detection = struct.unpack_from(
        "<BHBHBH", data, 2)
    if state > STATE_BOTH:
        return FrameError(f"LD2410 report with impossible target state {state}")
    if max(moving_energy, still_energy) > MAX_ENERGY:
        return FrameError(f"LD2410 report with energy above {MAX_ENERGY} (moving "
                          f"{moving_energy}, still {still_energy})")
    values = (state, moving, moving_energy, still, still_energy, detection)
    if kind == TYPE_BASIC:
        return Ld2410Report(*values)
    if len(data) < BASIC_LENGTH + 2:
        return FrameError(f"LD2410 engineering report too short ({len(data)} bytes)")
    moving_n, still_n = data[11], data[12]
    if max(moving_n, still_n) > MAX_GATE:
        return FrameError(f"LD2410 engineering report with {max(moving_n, still_n)} as max gate "
                          f"(at most {MAX_GATE})")
    gates_end = 13 + moving_n + 1 + still_n + 1
    if gates_end > len(data) - 2:
        return FrameError(f"LD2410 engineering report of length {len(data)} cannot hold "
                          f"{moving_n + 1} + {still_n + 1} gate energies")
    moving_gates = tuple(data[13:13 + moving_n + 1])
    still_gates = tuple(data[13 + moving_n + 1:gates_end])
    if max(moving_gates + still_gates) > MAX_ENERGY:
        return FrameError(f"LD2410 engineering report with a gate energy above {MAX_ENERGY}")
    return Ld2410Report(*values, engineering=True, moving_gates=moving_gates,
                        still_gates=still_gates, extra=bytes(data[gates_end:-2]))


def ld2410_parser() -> HilinkParser:
    """A parser for the radar's stream: reports and ACKs."""
    return HilinkParser([(COMMAND_SPEC, decode_ack), (REPORT_SPEC, decode_report)])


@dataclass(frozen=True, slots=True)
class Ld2410Parameters:
    """What read-parameters (0x0061) returns."""

    max_gate: int
    max_moving_gate: int
    max_still_gate: int
    moving_sensitivity: tuple[int, ...]
    still_sensitivity: tuple[int, ...]
    no_one_duration: int  # s


def decode_parameters(ack: Ack) -> Ld2410Parameters:
    """Decode the read-parameters ACK data: AA, N, moving N, still N, 2 × 9 sensitivities, u16."""
    data = ack.data
    if len(data) < 24 or data[0] != HEAD:
        raise ValueError(f"read-parameters ACK data {data.hex(' ').upper()} is not "
                         "AA + 3 gates + 2 × 9 sensitivities + duration")
    return Ld2410Parameters(data[1], data[2], data[3], tuple(data[4:13]), tuple(data[13:22]),
                            int.from_bytes(data[22:24], "little"))


def gates_value(moving_gate: int, still_gate: int, duration: int) -> bytes:
    """The 0x0060 value: three (u16 parameter word, u32 value) pairs."""
    return b"".join(struct.pack("<HI", word, value) for word, value in (
        (PARAM_MOVING_GATE, moving_gate), (PARAM_STILL_GATE, still_gate),
        (PARAM_DURATION, duration)))


class Ld2410Config(HilinkConfig):
    """An LD2410 sensor entry."""

    driver: Literal["ld2410"]
    engineering: bool = Field(False, description="Engineering reports (gate energies, kept in "
                              "memory only); re-sent on every open, lost at power-off")
    max_gate: int | None = Field(None, ge=2, le=MAX_GATE, description="Farthest gate for "
                                 "moving and still targets (0.75 m each); None = leave as set")
    no_one_duration: DurationOrZero | None = Field(None, description="How long the radar "
                                                   "keeps reporting presence after the last "
                                                   "detection (whole seconds); None = leave")

    @field_validator("no_one_duration")
    @classmethod
    def _whole_seconds(cls, value: float | None) -> float | None:
        if value is not None and (value != int(value) or value > 0xFFFF):
            raise ValueError(f"must be whole seconds from 0s to 65535s (got {value:g}s)")
        return value


class Ld2410(Driver):
    """HLK-LD2410 driver: presence, motion and still presence as shares of time."""

    Config = Ld2410Config
    model: ClassVar[str] = "Hi-Link HLK-LD2410"
    transport: ClassVar[str] = "uart"
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "hall-presence", "driver": "ld2410", "port": "/dev/ttyAMA0"}

    scan_baud: ClassVar[int | None] = DEFAULT_BAUD

    @classmethod
    def recognise_stream(cls, data: bytes) -> dict[str, Any] | None:
        """Count valid report frames in passively read bytes (the radar streams on its own)."""
        frames = sum(isinstance(item, Ld2410Report) for item in ld2410_parser().feed(data, 0.0))
        return {"model": cls.model, "frames": frames} if frames else None

    def __init__(self, config: Ld2410Config, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Ld2410Config = config
        self.firmware: str | None = None
        self.parameters: Ld2410Parameters | None = None
        self._channel: CommandChannel | None = None
        self._next_due = 0.0
        self._frames = 0
        self._bad_frames = 0

    @classmethod
    def streams(cls, config: Ld2410Config) -> list[StreamSpec]:  # type: ignore[override]
        """Shares of time with presence, motion and still presence (never a people count)."""
        def share(name: str, what: str) -> StreamSpec:
            return StreamSpec(name, "%", QuantityClass.PRESENCE, StatKind.LINEAR,
                              f"share of time the radar saw {what} (100 = whole window; "
                              "presence, not a number of people)", ("mean",))

        return [share("presence", "someone"), share("motion", "a moving target"),
                share("stillPresence", "a stationary target")]

    def describe(self) -> dict[str, Any]:
        """Settings plus firmware version and (if read) the radar's gate parameters."""
        described = {**super().describe(), "firmware": self.firmware}
        if self.parameters is not None:
            described["radar_parameters"] = {
                "max_moving_gate": self.parameters.max_moving_gate,
                "max_still_gate": self.parameters.max_still_gate,
                "no_one_duration_s": self.parameters.no_one_duration}
        return described

    def health(self) -> dict[str, float | int]:
        """Report frames received and bad frames."""
        return {"frames": self._frames, "bad_frames": self._bad_frames}

    async def open(self) -> None:
        """Open the port; firmware; gate parameters if configured; engineering mode on or off."""
        transport = SerialTransport(self.config.port, self.config.baudrate)
        await transport.open()
        clock = self.context.clock
        channel = CommandChannel(transport, ld2410_parser(), device="LD2410",
                                 now=clock.monotonic, timeout=self.config.ack_timeout,
                                 log=self.context.log)
        self._channel = channel
        try:
            async with channel.config_mode():
                self.firmware = firmware_version(
                    await channel.command(FIRMWARE, what="read firmware version"))
                await self._gates(channel)
                # engineering mode is lost at power-off: sent on every open, either way
                if self.config.engineering:
                    await channel.command(ENGINEERING_ON, what="engineering mode on")
                else:
                    await channel.command(ENGINEERING_OFF, what="engineering mode off")
        except DriverError:
            await self.close()
            raise
        channel.inbox.clear()
        self._next_due = clock.monotonic()
        self.context.log.info("LD2410 on %s: firmware %s", self.config.port, self.firmware)

    async def _gates(self, channel: CommandChannel) -> None:
        cfg = self.config
        if cfg.max_gate is None and cfg.no_one_duration is None:
            return
        try:
            current = decode_parameters(await channel.command(READ_PARAMETERS,
                                                              what="read parameters"))
        except ValueError as exc:
            raise DriverError(f"{channel.where}: {exc}") from exc
        self.parameters = current
        wanted = (cfg.max_gate or current.max_moving_gate, cfg.max_gate or current.max_still_gate,
                  current.no_one_duration if cfg.no_one_duration is None
                  else int(cfg.no_one_duration))
        if wanted != (current.max_moving_gate, current.max_still_gate, current.no_one_duration):
            # parameters persist in the radar: written only when they differ
            await channel.command(SET_GATES, gates_value(*wanted),
                                  what="set max gates and no-one duration")
            self.parameters = Ld2410Parameters(current.max_gate, *wanted[:2],
                                               current.moving_sensitivity,
                                               current.still_sensitivity, wanted[2])

    async def read(self) -> list[Reading] | None:
        """Return the latest state once per ``interval`` (frames in between only update it)."""
        channel = self._require_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.read_timeout
        while True:
            while not channel.inbox:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise DriverError(f"no report from LD2410 on {self.config.port} for "
                                      f"{format_duration(self.config.read_timeout)} (check the "
                                      "TX/RX wiring, the 5 V supply ≥ 200 mA and the baud "
                                      "rate)")
                await channel.receive(remaining)
            t, item = channel.inbox.popleft()
            if isinstance(item, FrameError):
                self._bad_frames += 1
                raise item
            self._frames += 1
            deadline = loop.time() + self.config.read_timeout
            if t + 1e-9 >= self._next_due:
                self._next_due += self.config.interval
                if self._next_due <= t:  # after a gap: no burst of catch-up readings
                    self._next_due = t + self.config.interval
                return readings_of(item, t)

    async def close(self) -> None:
        """Release the port; idempotent."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.transport.close()

    def _require_open(self) -> CommandChannel:
        if self._channel is None:
            raise DriverError(f"LD2410 on {self.config.port} is not open")
        return self._channel


def readings_of(report: Ld2410Report, t: float) -> list[Reading]:
    """The three 0/100 readings of one report."""
    return [Reading("presence", 100.0 if report.present else 0.0, t),
            Reading("motion", 100.0 if report.moving else 0.0, t),
            Reading("stillPresence", 100.0 if report.still else 0.0, t)]
