"""Sensirion SPS30 particulate matter sensor on a UART (SHDLC framing).

Chip: Sensirion SPS30 (firmware ≥ 2.0 for sleep), SEL pin floating selects UART.
Bus: UART, 115 200 baud 8N1, 5 V supply; SHDLC frames ``7E ADR CMD [STATE] L data CHK 7E`` with
byte stuffing of ``7E 7D 11 13`` and an inverted sum-8 checksum.
Units: PM1.0 / PM2.5 / PM4.0 / PM10 in µg/m³, number concentrations PM0.5 … PM10 in #/cm³
(``/cm3``), typical particle size in µm; from ten big-endian float32 values (output format
0x03) or ten big-endian uint16 values (0x05: integer µg/m³ and #/cm³, typical size in nm).
Also: the auto-cleaning interval (0x80) and the device status register (0xD2: fan, laser and
fan speed flags).
Datasheet: Sensirion SPS30 datasheet v2.0 (§4.2 fan cleaning, §4.3 output formats, §4.4 device
status register, §5 SHDLC); byte-level notes in sensors.md §2.3; see docs/drivers/sps30.md. The
I2C variant is ``sps30_i2c`` and shares the decoders, the options and :class:`StatusMonitor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

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
from edgeagent.units import Duration, DurationOrZero, format_duration

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
START_SUBCOMMAND = 0x01
FORMAT_FLOAT = 0x03  # output format: big-endian IEEE-754 float32
FORMAT_U16 = 0x05  # output format: big-endian uint16 (firmware >= 2.0)
START_FLOAT = bytes([START_SUBCOMMAND, FORMAT_FLOAT])  # 01 03
START_U16 = bytes([START_SUBCOMMAND, FORMAT_U16])  # 01 05
OUTPUT_FORMATS = {"float": FORMAT_FLOAT, "integer": FORMAT_U16}  # config value -> format code
AUTO_CLEANING_SUBCOMMAND = b"\x00"  # 0x80 read: 00; write: 00 + u32 BE seconds
STATUS_KEEP = b"\x00"  # 0xD2: read the device status register, keep its bits
STATUS_CLEAR = b"\x01"  # 0xD2: read it, then clear all its bits
INFO_PRODUCT_TYPE = 0x00
INFO_SERIAL = 0x03
PRODUCT_TYPE = "00080000"  # the answer to device information / product type (both buses)
WAKE_PULSE = b"\xff"  # a falling edge on RX switches the sleeping interface on
FLOAT_DATA_LENGTH = 40  # ten float32 values
INTEGER_DATA_LENGTH = 20  # ten uint16 values
STATUS_DATA_LENGTH = 5  # u32 BE register + one reserved byte
VERSION_MIN_LENGTH = 2  # firmware major, minor (then reserved, hardware, SHDLC version)
NM_PER_UM = 1000.0  # the integer format gives the typical particle size in nm
MAX_BODY = 4 + 255 + 1  # ADR CMD STATE L, data, CHK (unstuffed)
MAX_RAW = 2 * MAX_BODY  # every byte stuffed
AFTER_BAD_FRAME_S = 0.1  # the sensor answers within ~20 ms; a bad frame is usually the answer
STALL_TIMEOUT = 0.5  # s of silence after which a partial frame is given up
WAKE_ANSWER_TIMEOUT = 0.1  # s to wait for the answer to the first wake-up frame
NEW_DATA_PERIOD = 1.0  # s: the sensor updates its values once a second
RESET_SECONDS = 0.100  # after Reset (datasheet: I2C < 100 ms; the SHDLC answer comes first)
ERROR_NOT_ALLOWED = 0x43
DEVICE_ERROR_FLAG = 0x80  # STATE bit 7: an error flag (fan, laser) is set in the status register
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

# Device status register (datasheet v2.0 §4.4; u32, bit 0 = LSB). All other bits are reserved
# and "can be both 0 and 1": they are masked off, never interpreted.
STATUS_SPEED = 1 << 21  # warning: fan speed out of range; clears itself when back in range
STATUS_LASER = 1 << 5  # error: laser current out of range; clears itself when back in range
STATUS_FAN = 1 << 4  # error: fan switched on but 0 rpm (blocked, broken); sticky until cleared
STATUS_ERRORS = STATUS_LASER | STATUS_FAN  # the flags that STATE bit 7 reports (SHDLC)
STATUS_NAMES = {STATUS_SPEED: "fan_speed_warning", STATUS_LASER: "laser_failure",
                STATUS_FAN: "fan_failure"}
STATUS_MEANINGS = {
    STATUS_SPEED: "fan speed out of range (device status bit 21)",
    STATUS_LASER: "laser failure (device status bit 5): laser current out of range",
    STATUS_FAN: "fan failure (device status bit 4): the fan is switched on but stands still, "
                "blocked or broken",
}
#: The fan is not speed-checked for 3 s after Start, and 0 rpm must be seen twice (1 s apart)
#: before FAN is set: the first check while measuring comes after this, inside the warm-up.
FIRST_STATUS_CHECK_S = 5.0
MIN_FIRMWARE_U16 = (2, 0)  # integer output format
MIN_FIRMWARE_STATUS = (2, 2)  # Read Device Status Register
MIN_FIRMWARE_READBACK = (2, 2)  # older firmware reads back the old interval until a reset
MAX_CLEANING_INTERVAL = 0xFFFF_FFFF  # u32 seconds


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


def _check_plausible(values: dict[str, float]) -> dict[str, float]:
    for name, value in values.items():
        limit = (MAX_MASS if name in MASS_STREAMS else
                 MAX_NUMBER if name in NUMBER_STREAMS else MAX_SIZE)
        if not math.isfinite(value) or not 0.0 <= value <= limit:
            raise FrameError(f"implausible value {name} = {value!r} (range 0 … {limit:g})")
    return values


def decode_values(raw: bytes) -> dict[str, float]:
    """Return the ten stream values from 40 bytes of big-endian float32 (both interfaces).

    Raises:
        FrameError: wrong length, NaN/infinite, negative or out-of-range values.
    """
    if len(raw) != FLOAT_DATA_LENGTH:
        raise FrameError(f"measured values: {len(raw)} bytes, expected {FLOAT_DATA_LENGTH}")
    return _check_plausible(dict(zip(VALUE_NAMES, struct.unpack(">10f", raw), strict=True)))


def decode_integer_values(raw: bytes) -> dict[str, float]:
    """Return the ten stream values from 20 bytes of big-endian uint16 (both interfaces).

    Mass (µg/m³) and number concentrations (#/cm³) are whole numbers; the typical particle
    size comes in nm and is returned in µm, like the float format.

    Raises:
        FrameError: wrong length or out-of-range values (e.g. ``FF FF``).
    """
    if len(raw) != INTEGER_DATA_LENGTH:
        raise FrameError(f"measured values (integer format): {len(raw)} bytes, expected "
                         f"{INTEGER_DATA_LENGTH}")
    words = struct.unpack(">10H", raw)
    values = {name: float(word) for name, word in zip(VALUE_NAMES[:-1], words, strict=False)}
    values["typical_size"] = words[-1] / NM_PER_UM
    return _check_plausible(values)


#: The decoder of the measured-values data (CRCs removed) per ``output_format``.
DECODERS: dict[str, Callable[[bytes], dict[str, float]]] = {
    "float": decode_values, "integer": decode_integer_values}


def decode_status(register: int) -> list[str]:
    """Names of the documented flags set in a device status register; reserved bits ignored."""
    return [name for bit, name in STATUS_NAMES.items() if register & bit]


def decode_u32(data: bytes, what: str) -> int:
    """A big-endian u32 answer (auto-cleaning interval, status register).

    Raises:
        FrameError: not 4 bytes.
    """
    if len(data) != 4:
        raise FrameError(f"{what}: {len(data)} data bytes, expected 4")
    return int.from_bytes(data, "big")


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


class StatusMonitor:
    """Decides when to read the device status register and what a reading means (both buses).

    FAN or LASER set is a :class:`DriverError` (retryable: the supervisor's recovery ladder
    re-initialises the sensor, then resets the bus and power-cycles it if it has a switch).
    The fan speed warning is logged once when it appears, and once when it is gone.
    """

    def __init__(self, where: str, interval: float, log: logging.Logger) -> None:
        self.where = where
        self.interval = interval
        self.log = log
        self.last: list[str] | None = None  # decoded flags of the last reading; None = never
        self.next_at = math.inf
        self._speed_warned = False

    def schedule(self, at: float) -> None:
        """The next check is due at monotonic time ``at``."""
        self.next_at = at

    def due(self, now: float) -> bool:
        """Whether a periodic check is due."""
        return now >= self.next_at

    def seen(self, register: int, now: float) -> DriverError | None:
        """Record a register value read at ``now``; return the error to raise, if any."""
        self.last = decode_status(register)
        self.next_at = now + self.interval
        if register & STATUS_SPEED and not self._speed_warned:
            self._speed_warned = True
            self.log.warning("SPS30 on %s: %s; the values are still used. If it stays set, "
                             "check the 5 V supply and the fan", self.where,
                             STATUS_MEANINGS[STATUS_SPEED])
        elif not register & STATUS_SPEED and self._speed_warned:
            self._speed_warned = False
            self.log.info("SPS30 on %s: fan speed back in range", self.where)
        failures = [STATUS_MEANINGS[bit] for bit in (STATUS_FAN, STATUS_LASER) if register & bit]
        if not failures:
            return None
        return DriverError(f"SPS30 on {self.where}: {'; '.join(failures)}. Status register "
                           f"0x{register:08X} cleared; the sensor is re-initialised, then "
                           "power-cycled if it has a power switch. If it keeps failing, "
                           "replace it")


def firmware_text(firmware: tuple[int, int] | None) -> str | None:
    """``"2.2"`` for (2, 2); None stays None."""
    return None if firmware is None else f"{firmware[0]}.{firmware[1]}"


def firmware_problem(firmware: tuple[int, int], output_format: str,
                     where: str) -> DriverError | None:
    """A non-retryable error if the firmware lacks the configured output format."""
    if output_format == "integer" and firmware < MIN_FIRMWARE_U16:
        return DriverError(f"SPS30 on {where} has firmware {firmware_text(firmware)}: the "
                           "integer output format needs firmware 2.0 or later; use "
                           "output_format: float", retryable=False)
    return None


def cleaning_mismatch(where: str, wanted: int, got: int) -> DriverError:
    """The error for an auto-cleaning interval that did not stick."""
    return DriverError(f"SPS30 on {where}: auto-cleaning interval {wanted} s "
                       f"({format_duration(wanted)}) was written but the sensor reads back "
                       f"{got} s ({format_duration(got)})")


def _product_type_reply(received: bytes) -> ShdlcReply | None:
    """The first reply to "device information" in ``received``, None if none came."""
    for item in ShdlcParser().feed(received, 0.0):
        if isinstance(item, ShdlcReply) and item.command == CMD_DEVICE_INFO:
            return item
    return None


class Sps30Options(ParticulateConfig):
    """Options both SPS30 drivers share (UART and I2C)."""

    output_format: Literal["float", "integer"] = Field(
        "float", description="float: float32 values; integer: uint16 values (firmware >= 2.0; "
        "whole µg/m³ and #/cm³, size in nm), the same streams and units")
    auto_cleaning_interval: DurationOrZero | None = Field(
        None, description="Fan auto-cleaning interval written to the sensor at open if it "
        "differs (whole seconds, 0 = never); None = leave the sensor's setting (default 1 week)")
    status_interval: Duration = Field(
        60.0, description="How often the device status register (fan, laser) is read while "
        "measuring; the first check comes 5 s after start")

    @field_validator("auto_cleaning_interval")
    @classmethod
    def _whole_seconds(cls, value: float | None) -> float | None:
        if value is not None and (value != int(value) or value > MAX_CLEANING_INTERVAL):
            raise ValueError(f"must be whole seconds from 0 (never) to {MAX_CLEANING_INTERVAL} "
                             f"(got {value:g} s)")
        return value

    @property
    def cleaning_seconds(self) -> int | None:
        """The configured auto-cleaning interval as the sensor's u32 seconds (None: keep)."""
        return None if self.auto_cleaning_interval is None else int(self.auto_cleaning_interval)


class Sps30Config(Sps30Options):
    """An SPS30 sensor entry (UART)."""

    driver: Literal["sps30"]
    port: str = Field(description="Serial device, e.g. /dev/serial0")
    baudrate: Literal[115200] = Field(115200, description="Fixed by the sensor")
    read_timeout: Duration = Field(3.0, description="No answer this long is an error")


class Sps30(Driver):
    """Sensirion SPS30 driver over SHDLC: float or integer output, polled once per interval."""

    Config = Sps30Config
    model: ClassVar[str] = "Sensirion SPS30"
    transport: ClassVar[str] = "uart"
    sample_config: ClassVar[dict[str, Any]] = {
        "id": "pm-south", "driver": "sps30", "port": "/dev/serial0"}

    scan_baud: ClassVar[int | None] = 115200

    @classmethod
    async def query_uart(cls, probe: Any) -> dict[str, Any] | None:
        """Ask for the product type: SHDLC "device information" ``D0`` with ``00`` (read only).

        The SPS30 does not stream; it answers in Idle and while measuring, not in Sleep.
        """
        def replied(received: bytes) -> bool:
            return _product_type_reply(received) is not None

        received = await probe.exchange(mosi_frame(CMD_DEVICE_INFO, bytes([INFO_PRODUCT_TYPE])),
                                        done=replied)
        reply = _product_type_reply(received)
        if reply is None or reply.error:
            return None
        product = reply.data.split(b"\0", 1)[0].decode("ascii", "replace")
        if not product.startswith(PRODUCT_TYPE):
            return None
        result: dict[str, Any] = {"model": cls.model, "detail": f"product type {product}"}
        if reply.device_error:
            result["note"] = ("it reports a fan or laser error (SHDLC state bit 7): "
                              "edgeagent listen shows which")
        return result

    def __init__(self, config: Sps30Config, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sps30Config = config
        self._transport: SerialTransport | None = None
        self._parser = ShdlcParser()
        self._pending: deque[ShdlcReply | FrameError] = deque()
        self._held: list[ShdlcReply] = []  # a read answer that arrived after a bad frame
        self._pacer = Pacer(config.interval)
        self._decode = DECODERS[config.output_format]
        self.serial_number: str | None = None
        self.firmware: tuple[int, int] | None = None
        self.sensor_cleaning_interval: int | None = None  # seconds, as read back at open
        self._status: StatusMonitor | None = None  # None: not open or firmware < 2.2
        self._flag_seen = False  # STATE bit 7 in the previous reply
        self._flag_warned = False

    @classmethod
    def streams(cls, config: Sps30Config) -> list[StreamSpec]:
        """Mass PM1–PM10, number concentrations PM0.5–PM10 and typical particle size."""
        return value_streams()

    def describe(self) -> dict[str, Any]:
        """Return the settings plus what open read from the sensor (None before).

        ``device_status`` lists the flags of the last status register reading
        (``fan_speed_warning``, ``laser_failure``, ``fan_failure``; ``[]`` = all fine).
        """
        return {**super().describe(), "serial_number": self.serial_number,
                "firmware": firmware_text(self.firmware),
                "sensor_auto_cleaning_interval": None if self.sensor_cleaning_interval is None
                else format_duration(self.sensor_cleaning_interval),
                "device_status": None if self._status is None else self._status.last}

    async def open(self) -> None:
        """Open the port, wake, stop, identify, set fan cleaning, check status, start."""
        transport = SerialTransport(self.config.port, self.config.baudrate)
        await transport.open()
        self._transport = transport
        self._parser = ShdlcParser()
        self._pending.clear()
        self._held.clear()
        self._status, self._flag_seen = None, False
        try:
            await self.wake()
            stop = await self.command(CMD_STOP, what="stop")
            if stop.error not in (0, ERROR_NOT_ALLOWED):  # 0x43: it was idle already
                raise state_error(stop, "stop", self.config.port)
            info = await self.command(CMD_DEVICE_INFO, bytes([INFO_SERIAL]), what="serial")
            self._check(info, "serial number")
            self.serial_number = info.data.split(b"\0", 1)[0].decode("ascii", "replace")
            await self._read_version()
            await self._set_auto_cleaning()
            if self.firmware >= MIN_FIRMWARE_STATUS:
                self._status = StatusMonitor(self.config.port, self.config.status_interval,
                                             self.context.log)
                await self.check_status()
            await self.start()
        except DriverError:
            await self.close()
            raise
        if self._status is not None:
            self._status.schedule(self.context.clock.monotonic() + FIRST_STATUS_CHECK_S)

    async def _read_version(self) -> None:
        reply = await self.command(CMD_VERSION, what="read version")
        self._check(reply, "read version")
        if len(reply.data) < VERSION_MIN_LENGTH:
            raise FrameError(f"read version: {len(reply.data)} data bytes, expected 7")
        self.firmware = (reply.data[0], reply.data[1])
        problem = firmware_problem(self.firmware, self.config.output_format, self.config.port)
        if problem is not None:
            raise problem

    async def read_auto_cleaning_interval(self) -> int:
        """Return the sensor's auto-cleaning interval in seconds (0 = disabled)."""
        reply = await self.command(CMD_AUTO_CLEANING, AUTO_CLEANING_SUBCOMMAND,
                                   what="read auto-cleaning interval")
        self._check(reply, "read auto-cleaning interval")
        return decode_u32(reply.data, "auto-cleaning interval")

    async def _set_auto_cleaning(self) -> None:
        """Read the interval; write and verify the configured one if it differs (NVM)."""
        current = before = await self.read_auto_cleaning_interval()
        wanted = self.config.cleaning_seconds
        if wanted is not None and current != wanted:
            reply = await self.command(
                CMD_AUTO_CLEANING, AUTO_CLEANING_SUBCOMMAND + wanted.to_bytes(4, "big"),
                what="write auto-cleaning interval")
            self._check(reply, "write auto-cleaning interval")
            assert self.firmware is not None
            if self.firmware < MIN_FIRMWARE_READBACK:  # reads back the old value until reset
                await self.reset()
                await self.context.clock.sleep(RESET_SECONDS)
            current = await self.read_auto_cleaning_interval()
            if current != wanted:
                raise cleaning_mismatch(self.config.port, wanted, current)
            self.context.log.info("SPS30 on %s: auto-cleaning interval set to %s (was %s)",
                                  self.config.port, format_duration(wanted),
                                  format_duration(before))
        self.sensor_cleaning_interval = current

    async def check_status(self) -> None:
        """Read the device status register (firmware >= 2.2); clear it and raise on a failure.

        Raises:
            DriverError: fan failure (bit 4) or laser failure (bit 5), naming the bit.
        """
        monitor = self._status
        if monitor is None:
            raise DriverError(f"SPS30 on {self.config.port}: the device status register needs "
                              "an open sensor with firmware 2.2 or later")
        reply = await self.command(CMD_STATUS, STATUS_KEEP, what="read device status")
        if reply.error:
            raise state_error(reply, "read device status", self.config.port)
        if len(reply.data) != STATUS_DATA_LENGTH:
            raise FrameError(f"device status: {len(reply.data)} data bytes, expected "
                             f"{STATUS_DATA_LENGTH}")
        failure = monitor.seen(decode_u32(reply.data[:4], "device status"),
                               self.context.clock.monotonic())
        if failure is not None:
            with contextlib.suppress(DriverError):  # FAN is sticky: let the next open re-test
                await self.command(CMD_STATUS, STATUS_CLEAR, what="clear device status")
            raise failure

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
        """Start measurement in the configured output format; the first values follow after 1 s."""
        data = bytes([START_SUBCOMMAND, OUTPUT_FORMATS[self.config.output_format]])
        self._check(await self.command(CMD_START, data, what="start"), "start")
        self._pacer.start(self.context.clock.monotonic() + NEW_DATA_PERIOD)

    async def stop(self) -> None:
        """Stop measurement (fan and laser off, back to Idle)."""
        self._check(await self.command(CMD_STOP, what="stop"), "stop")

    async def reset(self) -> None:
        """Reset the sensor to Idle, as after power-on."""
        self._check(await self.command(CMD_RESET, what="reset"), "reset")

    async def start_fan_cleaning(self) -> None:
        """Run the fan at full speed for 10 s now (only while measuring); no new values then.

        Raises:
            DriverError: the sensor is not measuring (state 0x43) or does not answer.
        """
        self._check(await self.command(CMD_FAN_CLEANING, what="start fan cleaning"),
                    "start fan cleaning")

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
        """Poll the values; None if nothing is new; FrameError for a bad frame.

        Raises:
            DriverError: a refused command, no answer, or a fan or laser failure in the device
                status register (read when STATE bit 7 comes up and every ``status_interval``).
        """
        self._require_open()
        if self._held:  # the answer that followed a bad frame: no new poll for it
            reply = self._held.pop()
        else:
            await self._pacer.wait(self.context.clock)
            reply = await self.command(CMD_READ, what="read measured values")
        self._check(reply, "read measured values")
        t = self.context.clock.monotonic()
        flag_rose = reply.device_error and not self._flag_seen
        self._flag_seen = reply.device_error
        if self._status is not None and (flag_rose or self._status.due(t)):
            await self.check_status()  # raises on a fan or laser failure: values discarded
        elif flag_rose and not self._flag_warned:
            self._flag_warned = True
            self.context.log.warning("SPS30 on %s reports a fan or laser error (STATE bit 7); "
                                     "firmware %s cannot tell which (the status register "
                                     "needs 2.2)", self.config.port,
                                     firmware_text(self.firmware))
        if not reply.data:
            return None  # no new values since the last read (or fan cleaning)
        return [Reading(name, value, t) for name, value in self._decode(reply.data).items()]

    def _check(self, reply: ShdlcReply, what: str) -> None:
        if reply.error:
            raise state_error(reply, what, self.config.port)

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
