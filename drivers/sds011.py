"""Nova Fitness SDS011 laser PM sensor on a UART (SDS018 and SDS021 speak the same protocol).

Chip: Nova Fitness SDS011; SDS018 and SDS021 send the same frames.
Bus: UART, 9600 baud 8N1, 3.3 V logic (not 5 V tolerant), 5 V supply; often on a CH341 USB
adapter. Sensor frames are 10 bytes (``AA C0`` data, ``AA C5`` reply), host commands 19 bytes,
both with a sum8 checksum; values are u16 little-endian in tenths.
Units: PM2.5 and PM10 in µg/m³ (0.0–999.9).
Datasheet: Nova "Laser Dust Sensor Control Protocol V1.3"; see docs/drivers/sds011.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    ParticulateConfig,
    QuantityClass,
    Reading,
    StatKind,
    StreamSpec,
)
from edgeagent.serialport import SerialTransport
from edgeagent.units import Duration, format_duration

HEAD = 0xAA
TAIL = 0xAB
CMD_ID = 0xB4  # byte 1 of every host command ("request")
DATA = 0xC0  # byte 1 of a data frame
REPLY = 0xC5  # byte 1 of a reply to a configuration command
CMD_REPORT_MODE = 0x02
CMD_QUERY_DATA = 0x04
CMD_SET_ID = 0x05
CMD_SLEEP_WORK = 0x06
CMD_FIRMWARE = 0x07
CMD_WORKING_PERIOD = 0x08
OP_QUERY, OP_SET = 0x00, 0x01  # data2: read the setting / change it
MODE_ACTIVE, MODE_QUERY = 0x00, 0x01  # data3 of CMD_REPORT_MODE
STATE_SLEEP, STATE_WORK = 0x00, 0x01  # data3 of CMD_SLEEP_WORK
BROADCAST_ID = 0xFFFF
FRAME_SIZE = 10
COMMAND_SIZE = 19
COMMAND_DATA_SIZE = 12  # data2 … data13
MAX_TENTHS = 9999  # 999.9 µg/m³, the end of the sensor's range
MAX_WORKING_PERIOD = 30  # minutes
STALL_TIMEOUT = 0.5  # s of silence after which a partial frame is given up (ESPHome)
ACTIVE_CADENCE = 1.0  # s between frames in active, continuous mode (spec: "1 + 0.5 s")
AFTER_BAD_FRAME_S = 0.2  # a 10-byte frame takes 10 ms at 9600 baud: the answer is near
PERIOD_MARGIN = 10.0  # s on top of a working period before silence is an error


def sum8(data: bytes) -> int:
    """Return the SDS checksum: byte sum mod 256."""
    return sum(data) & 0xFF


def sds_command(code: int, data: bytes = b"", device_id: int = BROADCAST_ID) -> bytes:
    """Build a 19-byte host command: ``AA B4 <code> <data2…data13> <ID> <sum8> AB``."""
    if len(data) > COMMAND_DATA_SIZE:
        raise ValueError(f"at most {COMMAND_DATA_SIZE} data bytes (got {len(data)})")
    payload = bytes([code]) + data.ljust(COMMAND_DATA_SIZE, b"\x00") + device_id.to_bytes(2, "big")
    return bytes([HEAD, CMD_ID]) + payload + bytes([sum8(payload), TAIL])


class Sds011Config(ParticulateConfig):
    """An SDS011 sensor entry."""

    driver: Literal["sds011"]
    port: str = Field(description="Serial device, e.g. /dev/ttyUSB0")
    baudrate: Literal[9600] = Field(9600, description="Fixed by the sensor")
    mode: Literal["query", "active"] = Field("query", description="Polled or streaming")
    working_period: int = Field(0, ge=0, le=MAX_WORKING_PERIOD,
                                description="Minutes between reports, 0 = continuous")
    device_id: str | None = Field(None, description="4 hex digits, e.g. 58D9; None = any")
    read_timeout: Duration = Field(5.0, description="No valid frame this long is an error")

    @field_validator("working_period")
    @classmethod
    def _period_fits_mode_and_window(cls, period: int, info: ValidationInfo) -> int:
        # what a duty-cycling sensor answers to a query while asleep is undocumented
        if period and info.data.get("mode") == "query":
            raise ValueError("a working period needs mode: active (in query mode the "
                             "driver sets the pace with interval)")
        window = info.data.get("window")
        if window is not None and window < period * 60:
            raise ValueError(f"the window ({format_duration(window)}) must be at least the "
                             f"working period ({period}min), or most windows get no sample")
        return period

    @field_validator("device_id", mode="before")
    @classmethod
    def _four_hex_digits(cls, device_id: object) -> object:
        if isinstance(device_id, int) and not isinstance(device_id, bool):
            raise ValueError(f'must be 4 hex digits in quotes, e.g. "1234" (got the number '
                             f"{device_id}: YAML reads unquoted digits as a number)")
        if not isinstance(device_id, str):
            return device_id
        if len(device_id) != 4 or any(c not in "0123456789abcdefABCDEF" for c in device_id):
            raise ValueError(f"must be 4 hex digits such as 58D9 (got {device_id!r})")
        if device_id.upper() == f"{BROADCAST_ID:04X}":
            raise ValueError("FFFF is the broadcast address; leave device_id unset instead")
        return device_id.upper()

    @property
    def target_id(self) -> int:
        """The ID commands are addressed to: the configured one, else broadcast."""
        return int(self.device_id, 16) if self.device_id else BROADCAST_ID

    def accepts(self, device_id: int) -> bool:
        """Whether frames from ``device_id`` are ours (any ID when none is configured)."""
        return self.device_id is None or device_id == self.target_id


@dataclass(frozen=True, slots=True)
class Sds011Frame:
    """One data frame: PM2.5 and PM10 in µg/m³ and the sender's device ID."""

    pm25: float
    pm10: float
    device_id: int


@dataclass(frozen=True, slots=True)
class Sds011Reply:
    """A reply to a configuration command: its code, bytes 3–5 and the sender's device ID."""

    command: int
    data: bytes
    device_id: int


class _Step(Enum):
    MORE = "more"
    NOISE = "noise"


class Sds011Parser:
    """Finds 10-byte frames in a byte stream that has neither gaps nor alignment."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._last_byte_at = 0.0

    def feed(self, data: bytes, now: float) -> list[Sds011Frame | Sds011Reply | FrameError]:
        """Consume ``data`` received at monotonic time ``now``; return frames, replies, errors."""
        out: list[Sds011Frame | Sds011Reply | FrameError] = []
        buffer = self._buffer
        if buffer and now - self._last_byte_at > STALL_TIMEOUT:
            out.append(FrameError(f"partial frame dropped: {len(buffer)} bytes, then "
                                  f"more than {STALL_TIMEOUT:g} s of silence"))
            buffer.clear()
        if data:
            self._last_byte_at = now
        buffer += data
        start = buffer.find(HEAD)
        while start >= 0:
            step = _step(buffer[start:start + FRAME_SIZE])
            if step is _Step.MORE:
                break
            if isinstance(step, Sds011Frame | Sds011Reply):
                out.append(step)
                start += FRAME_SIZE
            else:
                if isinstance(step, FrameError):
                    out.append(step)
                start += 1  # a real frame may start anywhere after the first rejected byte
            start = buffer.find(HEAD, start)
        del buffer[:len(buffer) if start < 0 else start]
        return out


def _step(frame: bytearray) -> Sds011Frame | Sds011Reply | FrameError | _Step:
    """Judge the (possibly incomplete) frame that starts with a head byte."""
    n = len(frame)
    if n < 2:
        return _Step.MORE
    if frame[1] not in (DATA, REPLY):
        return _Step.NOISE
    if n < 9:
        return _Step.MORE
    if frame[8] != sum8(frame[2:8]):
        return FrameError(f"bad checksum: frame says {frame[8]:02X}, "
                          f"bytes 2–7 sum to {sum8(frame[2:8]):02X}")
    if n < FRAME_SIZE:
        return _Step.MORE
    if frame[9] != TAIL:
        return FrameError(f"bad tail {frame[9]:02X} (expected {TAIL:02X})")
    device_id = int.from_bytes(frame[6:8], "big")
    if frame[1] == REPLY:
        return Sds011Reply(frame[2], bytes(frame[3:6]), device_id)
    pm25, pm10 = int.from_bytes(frame[2:4], "little"), int.from_bytes(frame[4:6], "little")
    if max(pm25, pm10) > MAX_TENTHS:
        # a valid checksum is only 8 bits; treat it as a false frame and resync inside it
        return FrameError(f"implausible frame: PM2.5 {pm25 / 10:g}, PM10 {pm10 / 10:g} µg/m³ "
                          f"(the sensor's range ends at {MAX_TENTHS / 10:g})")
    return Sds011Frame(pm25 / 10, pm10 / 10, device_id)


def frame_values(frame: Sds011Frame) -> dict[str, float] | None:
    """Return the stream values of a frame, or None for the all-zero warm-up frame."""
    if frame.pm25 == 0 and frame.pm10 == 0:
        return None  # what the sensor sends while the fan spins up (PyPMS, ESPHome)
    return {"pm25": frame.pm25, "pm10": frame.pm10}


def _sleep_state(received: bytes) -> int | None:
    """The state in a reply to the sleep/work command (0 sleep, 1 work), None if none came."""
    for item in Sds011Parser().feed(received, 0.0):
        if isinstance(item, Sds011Reply) and item.command == CMD_SLEEP_WORK:
            return item.data[1]
    return None


class Sds011(Driver):
    """Nova Fitness SDS011 driver, polled (query mode) or streaming (active mode)."""

    Config = Sds011Config
    model: ClassVar[str] = "Nova Fitness SDS011"
    transport: ClassVar[str] = "uart"
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "pm-south", "driver": "sds011", "port": "/dev/ttyUSB0"}

    scan_baud: ClassVar[int | None] = 9600

    @classmethod
    def recognise_stream(cls, data: bytes) -> dict[str, Any] | None:
        """Count valid ``AA C0`` data frames in passively read bytes (active mode streams)."""
        frames = [item for item in Sds011Parser().feed(data, 0.0)
                  if isinstance(item, Sds011Frame)]
        if not frames:
            return None
        result: dict[str, Any] = {"model": cls.model, "frames": len(frames)}
        if all(frame.pm25 == 0 and frame.pm10 == 0 for frame in frames):
            result["note"] = "all values 0: the fan is still spinning up"
        return result

    @classmethod
    async def query_uart(cls, probe: Any) -> dict[str, Any] | None:
        """Ask a silent sensor its sleep/work state: query ``06 00 00``, broadcast (no setting).

        A sleeping SDS011 (edgeagent's close puts it to sleep) or one in query mode does not
        stream, but answers this query with an ``AA C5 06 …`` reply.
        """
        def replied(received: bytes) -> bool:
            return _sleep_state(received) is not None

        received = await probe.exchange(sds_command(CMD_SLEEP_WORK, bytes([OP_QUERY])),
                                        done=replied)
        state = _sleep_state(received)
        if state is None:
            return None
        if state == STATE_SLEEP:
            note = ("asleep (edgeagent puts it to sleep when it stops); the driver wakes it "
                    "at start")
        else:
            note = "awake but not streaming (query mode or a working period); the driver " \
                   "sets its mode at start"
        return {"model": cls.model, "detail": "answered the sleep-state query", "note": note}

    def __init__(self, config: Sds011Config, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sds011Config = config
        self._transport: SerialTransport | None = None
        self._parser = Sds011Parser()
        self._pending: deque[tuple[float, Sds011Frame | FrameError]] = deque()
        self._other_ids: set[int] = set()
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: Sds011Config) -> list[StreamSpec]:
        """PM2.5 and PM10 mass concentration."""
        return [StreamSpec(name, "ug/m3", QuantityClass.PARTICULATE, StatKind.LINEAR,
                           f"{label} mass concentration (laser scattering)")
                for name, label in (("pm25", "PM2.5"), ("pm10", "PM10"))]

    @classmethod
    def sample_interval(cls, config: Sds011Config) -> float:  # type: ignore[override]
        """Query: the poll interval. Active: ``interval`` if set, else the sensor's cadence."""
        if config.mode == "query" or "interval" in config.model_fields_set:
            return config.interval
        return config.working_period * 60.0 if config.working_period else ACTIVE_CADENCE

    def effective_read_timeout(self) -> float:
        """Silence allowed before a read fails; a working period stretches it."""
        if self.config.mode == "active" and self.config.working_period:
            return max(self.config.read_timeout, self.config.working_period * 60 + PERIOD_MARGIN)
        return self.config.read_timeout

    async def open(self) -> None:
        """Open the port, wake the sensor and (re)send mode and working period."""
        transport = SerialTransport(self.config.port, self.config.baudrate)
        await transport.open()
        self._transport = transport
        self._parser = Sds011Parser()
        self._pending.clear()
        try:
            await self.wake()
        except DriverError:
            await self.close()
            raise

    async def wake(self) -> None:
        """Start fan and laser, set report mode and working period."""
        transport = self._require_open()
        # re-sent on every open: the sensor may have been power-cycled in between
        mode = MODE_QUERY if self.config.mode == "query" else MODE_ACTIVE
        for code, value in ((CMD_SLEEP_WORK, STATE_WORK), (CMD_REPORT_MODE, mode),
                            (CMD_WORKING_PERIOD, self.config.working_period)):
            await transport.write(self._command(code, OP_SET, value))
        self._pacer.start(self.context.clock.monotonic())

    async def sleep(self) -> None:
        """Stop fan and laser (the laser wears out; the UART stays awake)."""
        await self._require_open().write(self._command(CMD_SLEEP_WORK, OP_SET, STATE_SLEEP))

    async def read(self) -> list[Reading] | None:
        """Return the next frame's readings; None for an all-zero start-up frame."""
        transport = self._require_open()
        if not self._pending:
            if self.config.mode == "query":
                await self._pacer.wait(self.context.clock)
                await transport.write(self._command(CMD_QUERY_DATA))
            await self._receive(transport)
        t, item = self._pending.popleft()
        if isinstance(item, FrameError):
            raise item
        values = frame_values(item)
        if values is None:  # the all-zero frame of a sensor still starting up
            return None
        return [Reading(name, value, t) for name, value in values.items()]


    async def _receive(self, transport: SerialTransport) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.effective_read_timeout()
        deadline = loop.time() + timeout
        self._other_ids.clear()
        # wait for a data frame, not just any item: a bad frame before the answer to this
        # query must not make the next read() poll again (the answer would then come late)
        polled, hurried = self.config.mode == "query", False
        while not (any(isinstance(item, Sds011Frame) for _, item in self._pending) if polled
                   else self._pending):
            if polled and self._pending and not hurried:
                # a bad frame: the answer follows at once or never
                deadline, hurried = min(deadline, loop.time() + AFTER_BAD_FRAME_S), True
            remaining = deadline - loop.time()
            if remaining <= 0:
                if self._pending:
                    return  # only bad frames arrived: read() reports them
                raise DriverError(self._silence_message(timeout))
            data = await transport.read_some(remaining)
            now = self.context.clock.monotonic()
            for item in self._parser.feed(data, now):
                if isinstance(item, FrameError):
                    self._pending.append((now, item))
                elif not self.config.accepts(item.device_id):
                    self._other_ids.add(item.device_id)
                elif isinstance(item, Sds011Frame):
                    self._pending.append((now, item))
                else:
                    self.context.log.debug("SDS011 reply to command %02X: %s", item.command,
                                           item.data.hex(" ").upper())

    def _silence_message(self, timeout: float) -> str:
        causes = "check wiring TX/RX and the 5 V supply"
        if "ttyUSB" in self.config.port:
            causes += "; brltty may have claimed the CH341 USB adapter"
        if self._other_ids:
            seen = ", ".join(f"{i:04X}" for i in sorted(self._other_ids))
            causes += f"; frames came only from device ID {seen}, not {self.config.device_id}"
        return (f"no data from SDS011 on {self.config.port} for "
                f"{format_duration(timeout)} ({causes})")

    async def close(self) -> None:
        """Put the sensor to sleep (best effort) and release the port; idempotent."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        with contextlib.suppress(DriverError):
            await transport.write(self._command(CMD_SLEEP_WORK, OP_SET, STATE_SLEEP))
        await transport.close()

    def _command(self, code: int, *data: int) -> bytes:
        return sds_command(code, bytes(data), self.config.target_id)

    def _require_open(self) -> SerialTransport:
        if self._transport is None:
            raise DriverError(f"SDS011 on {self.config.port} is not open")
        return self._transport
