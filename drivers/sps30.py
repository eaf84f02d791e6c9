"""Sensirion SPS30 particulate matter sensor on a UART (SHDLC framing).

Chip: Sensirion SPS30 (firmware ≥ 2.0 for sleep), SEL pin floating selects UART.
Bus: UART, 115 200 baud 8N1, 5 V supply; SHDLC frames ``7E ADR CMD [STATE] L data CHK 7E`` with
byte stuffing of ``7E 7D 11 13`` and an inverted sum-8 checksum.
Units: PM1.0 / PM2.5 / PM4.0 / PM10 in µg/m³, number concentrations PM0.5 … PM10 in #/cm³
(``/cm3``), typical particle size in µm; all from ten big-endian float32 values.
Datasheet: Sensirion SPS30 datasheet v2.0; byte-level notes in sensors.md §2.3; see
docs/drivers/sps30.md. The I2C variant is ``sps30_i2c`` and shares :func:`decode_values`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

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

FLAG = 0x7E  # frame start and end
ESCAPE = 0x7D
STUFFED = {0x7E: 0x5E, 0x7D: 0x5D, 0x11: 0x31, 0x13: 0x33}  # byte → what follows 7D
UNSTUFFED = {v: k for k, v in STUFFED.items()}
ADDRESS = 0x00  # the SPS30's slave address is always 0
CMD_START = 0x00
CMD_STOP = 0x01
CMD_READ = 0x03
CMD_SLEEP = 0x10
CMD_WAKE = 0x11
CMD_FAN_CLEANING = 0x56
CMD_AUTO_CLEANING = 0x80
CMD_DEVICE_INFO = 0xD0
CMD_VERSION = 0xD1
CMD_STATUS = 0xD2
CMD_RESET = 0xD3
START_FLOAT = b"\x01\x03"  # sub-command 01, output format 0x03 = big-endian float32
FORMAT_FLOAT = 0x03
FORMAT_U16 = 0x05
INFO_PRODUCT_TYPE = 0x00
INFO_SERIAL = 0x03
WAKE_PULSE = b"\xff"  # a falling edge on RX switches the sleeping interface on
FLOAT_DATA_LENGTH = 40  # ten float32 values
MAX_BODY = 4 + 255 + 1  # ADR CMD STATE L, data, CHK (unstuffed)
MAX_RAW = 2 * MAX_BODY  # every byte stuffed
AFTER_BAD_FRAME_S = 0.1  # the sensor answers within ~20 ms; a bad frame is usually the answer
STALL_TIMEOUT = 0.5  # s of silence after which a partial frame is given up
WAKE_ANSWER_TIMEOUT = 0.1  # s to wait for the answer to the first wake-up frame
NEW_DATA_PERIOD = 1.0  # s: the sensor updates its values once a second
ERROR_NOT_ALLOWED = 0x43
DEVICE_ERROR_FLAG = 0x80  # STATE bit 7: a flag is set in the device status register
STATE_ERRORS = {
    0x01: "wrong data length",
    0x02: "unknown command",
    0x03: "no access right",
    0x04: "illegal parameter",
    0x28: "internal argument out of range",
    ERROR_NOT_ALLOWED: "command not allowed in the current state",
}
MAX_MASS = 2000.0  # µg/m³: twice the specified range 0–1000
MAX_NUMBER = 6000.0  # #/cm³: twice the specified range 0–3000
MAX_SIZE = 10.0  # µm: the sensor sizes particles up to 10 µm
MASS_STREAMS = {"pm1": "PM1.0", "pm25": "PM2.5", "pm4": "PM4.0", "pm10": "PM10"}
NUMBER_STREAMS = {"n0_5": "0.5", "n1_0": "1.0", "n2_5": "2.5", "n4_0": "4.0", "n10": "10"}
VALUE_NAMES = (*MASS_STREAMS, *NUMBER_STREAMS, "typical_size")


def checksum(body: bytes) -> int:
    """Return the SHDLC checksum: the low byte of the sum, inverted."""
    return 0xFF - (sum(body) & 0xFF)


def stuff(raw: bytes) -> bytes:
    """Escape ``7E 7D 11 13`` as ``7D`` followed by the byte XOR 0x20."""
    out = bytearray()
    for byte in raw:
        out += bytes([ESCAPE, STUFFED[byte]]) if byte in STUFFED else bytes([byte])
    return bytes(out)


def unstuff(inner: bytes) -> bytes:
    """Undo :func:`stuff` in one left-to-right pass.

    Raises:
        FrameError: an escape not followed by one of the four stuffed codes.
    """
    out, escaped = bytearray(), False
    for byte in inner:
        if escaped:
            if byte not in UNSTUFFED:
                raise FrameError(f"bad escape sequence 7D {byte:02X}")
            out.append(UNSTUFFED[byte])
            escaped = False
        elif byte == ESCAPE:
            escaped = True
        else:
            out.append(byte)
    if escaped:
        raise FrameError("frame ends inside an escape sequence (7D before 7E)")
    return bytes(out)


def mosi_frame(cmd: int, data: bytes = b"") -> bytes:
    """Build a host frame ``7E ADR CMD L data CHK 7E`` (stuffed)."""
    body = bytes([ADDRESS, cmd, len(data)]) + data
    return bytes([FLAG]) + stuff(body + bytes([checksum(body)])) + bytes([FLAG])


def miso_frame(cmd: int, state: int = 0, data: bytes = b"") -> bytes:
    """Build a sensor frame ``7E ADR CMD STATE L data CHK 7E`` (stuffed)."""
    body = bytes([ADDRESS, cmd, state, len(data)]) + data
    return bytes([FLAG]) + stuff(body + bytes([checksum(body)])) + bytes([FLAG])


@dataclass(frozen=True, slots=True)
class ShdlcReply:
    """One sensor frame, un-stuffed and checked."""

    command: int
    state: int
    data: bytes
    checksum: int

    @property
    def error(self) -> int:
        """The execution error code (STATE bits 6–0); 0 means success."""
        return self.state & 0x7F

    @property
    def device_error(self) -> bool:
        """Whether STATE bit 7 says a device status flag (fan, laser, speed) is set."""
        return bool(self.state & DEVICE_ERROR_FLAG)


def decode_miso(inner: bytes) -> ShdlcReply | FrameError:
    """Check the bytes between two flags; return the reply or the reason it is bad."""
    try:
        body = unstuff(inner)
    except FrameError as exc:
        return exc
    if len(body) < 5:
        return FrameError(f"short frame: {len(body)} bytes (at least 5)")
    length = body[3]
    if len(body) != 5 + length:
        return FrameError(f"bad frame length: L says {length} data bytes, "
                          f"frame has {len(body) - 5}")
    if checksum(body[:-1]) != body[-1]:
        return FrameError(f"bad checksum: frame says {body[-1]:02X}, "
                          f"bytes give {checksum(body[:-1]):02X}")
    if body[0] != ADDRESS:
        return FrameError(f"frame from address {body[0]:#04x} (the SPS30 is 0x00)")
    return ShdlcReply(body[1], body[2], bytes(body[4:-1]), body[-1])


class ShdlcParser:
    """Finds sensor frames between ``7E`` flags in a byte stream."""

    def __init__(self) -> None:
        self._frame = bytearray()
        self._open = False  # an opening flag was seen
        self._last_byte_at = 0.0

    def feed(self, data: bytes, now: float) -> list[ShdlcReply | FrameError]:
        """Consume ``data`` received at monotonic time ``now``; return replies and bad frames."""
        out: list[ShdlcReply | FrameError] = []
        if self._frame and now - self._last_byte_at > STALL_TIMEOUT:
            out.append(FrameError(f"partial frame dropped: {len(self._frame)} bytes, then "
                                  f"more than {STALL_TIMEOUT:g} s of silence"))
            self._frame.clear()
            self._open = False
        if data:
            self._last_byte_at = now
        for byte in data:
            if byte == FLAG:
                if self._frame:
                    item = decode_miso(bytes(self._frame))
                    self._frame.clear()
                    out.append(item)
                    # a good frame ends at this flag; after a bad one it may open the next
                    self._open = isinstance(item, FrameError)
                else:
                    self._open = True
            elif self._open:
                self._frame.append(byte)
                if len(self._frame) > MAX_RAW:
                    out.append(FrameError(f"frame longer than {MAX_RAW} bytes"))
                    self._frame.clear()
                    self._open = False
        return out

    def cut_short(self) -> int:
        """Drop a frame still open (no closing flag yet); return how many bytes it had."""
        n = len(self._frame)
        self._frame.clear()
        self._open = False
        return n


def decode_values(raw: bytes) -> dict[str, float]:
    """Return the ten stream values from 40 bytes of big-endian float32 (both interfaces).

    Raises:
        FrameError: wrong length, NaN/infinite, negative or out-of-range values.
    """
    if len(raw) != FLOAT_DATA_LENGTH:
        raise FrameError(f"measured values: {len(raw)} bytes, expected {FLOAT_DATA_LENGTH}")
    values = dict(zip(VALUE_NAMES, struct.unpack(">10f", raw), strict=True))
    for name, value in values.items():
        limit = (MAX_MASS if name in MASS_STREAMS else
                 MAX_NUMBER if name in NUMBER_STREAMS else MAX_SIZE)
        if not math.isfinite(value) or not 0.0 <= value <= limit:
            raise FrameError(f"implausible value {name} = {value!r} (range 0 … {limit:g})")
    return values


def value_streams() -> list[StreamSpec]:
    """The ten SPS30 streams, in wire order."""
    specs = [StreamSpec(name, "ug/m3", QuantityClass.PARTICULATE, StatKind.LINEAR,
                        f"{label} mass concentration")
             for name, label in MASS_STREAMS.items()]
    specs += [StreamSpec(name, "/cm3", QuantityClass.PARTICULATE, StatKind.LINEAR,
                         f"particles 0.3 … {size} µm per cm³")
              for name, size in NUMBER_STREAMS.items()]
    specs.append(StreamSpec("typical_size", "um", QuantityClass.PARTICULATE, StatKind.LINEAR,
                            "typical particle size"))
    return specs


def state_error(reply: ShdlcReply, what: str, port: str) -> DriverError:
    """Return the DriverError for a reply whose STATE reports an execution error."""
    meaning = STATE_ERRORS.get(reply.error, "undocumented error")
    return DriverError(f"SPS30 on {port} refused {what}: state {reply.error:#04x} ({meaning})")


class Sps30Config(ParticulateConfig):
    """An SPS30 sensor entry (UART)."""

    driver: Literal["sps30"]
    port: str = Field(description="Serial device, e.g. /dev/serial0")
    baudrate: Literal[115200] = Field(115200, description="Fixed by the sensor")
    read_timeout: Duration = Field(3.0, description="No answer this long is an error")


class Sps30(Driver):
    """Sensirion SPS30 driver over SHDLC: starts float measurement, polls once per interval."""

    Config = Sps30Config
    model: ClassVar[str] = "Sensirion SPS30"
    transport: ClassVar[str] = "uart"
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "pm-south", "driver": "sps30", "port": "/dev/serial0"}

    def __init__(self, config: Sps30Config, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sps30Config = config
        self._transport: SerialTransport | None = None
        self._parser = ShdlcParser()
        self._pending: deque[ShdlcReply | FrameError] = deque()
        self._held: list[ShdlcReply] = []  # a read answer that arrived after a bad frame
        self._pacer = Pacer(config.interval)
        self.serial_number: str | None = None

    @classmethod
    def streams(cls, config: Sps30Config) -> list[StreamSpec]:
        """Mass PM1–PM10, number concentrations PM0.5–PM10 and typical particle size."""
        return value_streams()

    def describe(self) -> dict[str, Any]:
        """Return the settings plus the serial number read at open (None before)."""
        return {**super().describe(), "serial_number": self.serial_number}

    async def open(self) -> None:
        """Open the port, wake the sensor, stop a running measurement, start float output."""
        transport = SerialTransport(self.config.port, self.config.baudrate)
        await transport.open()
        self._transport = transport
        self._parser = ShdlcParser()
        self._pending.clear()
        self._held.clear()
        try:
            await self.wake()
            stop = await self.command(CMD_STOP, what="stop")
            if stop.error not in (0, ERROR_NOT_ALLOWED):  # 0x43: it was idle already
                raise state_error(stop, "stop", self.config.port)
            info = await self.command(CMD_DEVICE_INFO, bytes([INFO_SERIAL]), what="serial")
            self._check(info, "serial number")
            self.serial_number = info.data.split(b"\0", 1)[0].decode("ascii", "replace")
            await self.start()
        except DriverError:
            await self.close()
            raise

    async def wake(self) -> None:
        """Send ``FF`` and the wake-up frame; with no answer, send the frame twice more."""
        transport = self._require_open()
        await transport.write(WAKE_PULSE + mosi_frame(CMD_WAKE))
        reply = await self._answer(CMD_WAKE, WAKE_ANSWER_TIMEOUT, "wake-up", required=False)
        if reply is None:
            await transport.write(mosi_frame(CMD_WAKE) * 2)
            reply = await self._answer(CMD_WAKE, self.config.read_timeout, "wake-up")
        if reply is not None and reply.error not in (0, ERROR_NOT_ALLOWED):
            raise state_error(reply, "wake-up", self.config.port)

    async def start(self) -> None:
        """Start measurement in float format; the first values follow after 1 s."""
        self._check(await self.command(CMD_START, START_FLOAT, what="start"), "start")
        self._pacer.start(self.context.clock.monotonic() + NEW_DATA_PERIOD)

    async def stop(self) -> None:
        """Stop measurement (fan and laser off, back to Idle)."""
        self._check(await self.command(CMD_STOP, what="stop"), "stop")

    async def reset(self) -> None:
        """Reset the sensor to Idle, as after power-on."""
        self._check(await self.command(CMD_RESET, what="reset"), "reset")

    async def command(self, cmd: int, data: bytes = b"", *, what: str) -> ShdlcReply:
        """Send one command and return its reply (STATE not checked).

        Raises:
            FrameError: the reply was a bad frame.
            DriverError: no reply within ``read_timeout``.
        """
        transport = self._require_open()
        self._pending.clear()  # leftovers of an exchange that failed are stale
        await transport.write(mosi_frame(cmd, data))
        reply = await self._answer(cmd, self.config.read_timeout, what)
        assert reply is not None
        return reply

    async def read(self) -> list[Reading] | None:
        """Poll the values; None if nothing is new; FrameError for a bad frame."""
        self._require_open()
        if self._held:  # the answer that followed a bad frame: no new poll for it
            reply = self._held.pop()
        else:
            await self._pacer.wait(self.context.clock)
            reply = await self.command(CMD_READ, what="read measured values")
        self._check(reply, "read measured values")
        t = self.context.clock.monotonic()
        if not reply.data:
            return None  # no new values since the last read (or fan cleaning)
        return [Reading(name, value, t) for name, value in decode_values(reply.data).items()]

    def _check(self, reply: ShdlcReply, what: str) -> None:
        if reply.error:
            raise state_error(reply, what, self.config.port)
        if reply.device_error:
            self.context.log.warning("SPS30 on %s reports a device status flag (fan, laser or "
                                     "fan speed); read the status register", self.config.port)


    async def _answer(self, cmd: int, timeout: float, what: str, *,
                      required: bool = True) -> ShdlcReply | None:
        transport = self._require_open()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        bad: FrameError | None = None
        while True:
            while self._pending:
                item = self._pending.popleft()
                if isinstance(item, FrameError):
                    if bad is None:  # keep listening briefly: the real answer may follow
                        bad = item
                        deadline = min(deadline, loop.time() + AFTER_BAD_FRAME_S)
                    continue
                if item.command != cmd:
                    continue  # replies to other commands are stale: drop them
                if bad is not None and cmd == CMD_READ:
                    self._held.append(item)  # count the bad frame now, use this next read
                    raise bad
                return item
            remaining = deadline - loop.time()
            if remaining <= 0:
                if bad is not None:
                    raise bad
                if not required:
                    return None
                partial = self._parser.cut_short()
                if partial:
                    raise FrameError(f"reply to {what} cut short: {partial} bytes, no closing "
                                     f"7E within {format_duration(timeout)}")
                raise DriverError(f"no answer from SPS30 on {self.config.port} to {what} "
                                  f"within {format_duration(timeout)} (check wiring TX/RX, "
                                  "5 V supply and that SEL is floating for UART)")
            data = await transport.read_some(remaining)
            self._pending.extend(self._parser.feed(data, self.context.clock.monotonic()))

    async def close(self) -> None:
        """Stop measurement (best effort, no wait) and release the port; idempotent."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        with contextlib.suppress(DriverError):
            await transport.write(mosi_frame(CMD_STOP))
        await transport.close()

    def _require_open(self) -> SerialTransport:
        if self._transport is None:
            raise DriverError(f"SPS30 on {self.config.port} is not open")
        return self._transport
