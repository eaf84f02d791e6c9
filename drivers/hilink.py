"""Hi-Link radar serial protocol shared by the LD2410 and LD2450: command framing and ACKs.

Chips: Hi-Link HLK-LD2410 / LD2410B / LD2410C and HLK-LD2450 (24 GHz mmWave radars).
Bus: UART, 256 000 baud 8N1 by default, 3.3 V logic; all multi-byte fields little-endian.
Host commands and sensor ACKs share one framing, ``FD FC FB FA | u16 len | u16 word | value |
04 03 02 01``; an ACK carries ``word | 0x0100``, a u16 status (0 = success) and return values.
Commands other than *enable configuration* are ignored by the radar outside configuration mode.
Report frames differ per radar and are described by a :class:`FrameSpec`; one
:class:`HilinkParser` separates reports from ACKs in the same byte stream. There is no checksum
anywhere: framing markers, length sanity and plausibility checks are the only integrity.
Datasheet: HLK-LD2410B serial protocol V1.04, HLK-LD2450 serial protocol V1.03; see
docs/drivers/ld2410.md and docs/drivers/ld2450.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from edgeagent.driver import DriverError, FrameError, SensorConfig
from edgeagent.serialport import SerialTransport
from edgeagent.units import Duration, format_duration

CMD_HEADER = bytes.fromhex("FD FC FB FA")
CMD_FOOTER = bytes.fromhex("04 03 02 01")
ACK_FLAG = 0x0100  # an ACK's word is the command word with this bit set
STATUS_OK, STATUS_FAILED = 0, 1

ENABLE_CONFIG = 0x00FF
END_CONFIG = 0x00FE
FIRMWARE = 0x00A0
SET_BAUD = 0x00A1
FACTORY_RESET = 0x00A2
RESTART = 0x00A3
BLUETOOTH = 0x00A4
MAC_ADDRESS = 0x00A5

#: Baud rate index of command 0x00A1 (LD2410 and LD2450); 7 is the factory default.
BAUD_RATES: dict[int, int] = {1: 9600, 2: 19_200, 3: 38_400, 4: 57_600, 5: 115_200,
                              6: 230_400, 7: 256_000, 8: 460_800}
DEFAULT_BAUD = 256_000
BaudRate = Literal[9600, 19_200, 38_400, 57_600, 115_200, 230_400, 256_000, 460_800]
#: Longest command/ACK data the radars handle: the buffer size the enable-config ACK reports.
MAX_COMMAND_DATA = 0x40
STALL_TIMEOUT = 0.5  # s of silence after which a partial frame is given up (sensors.md §1.3)
ACK_TIMEOUT = 1.0  # s to wait for an ACK (the radars answer within a few ms)


class HilinkConfig(SensorConfig):
    """Fields of every Hi-Link radar entry: the UART and the command timeouts."""

    port: str = Field(description="Serial device, e.g. /dev/ttyAMA0 (a PL011 UART)")
    baudrate: BaudRate = Field(DEFAULT_BAUD, description="256000 unless changed with 0x00A1")
    ack_timeout: Duration = Field(ACK_TIMEOUT, description="Wait for each command's ACK")
    read_timeout: Duration = Field(5.0, description="No valid report this long is an error")
ENABLE_ATTEMPTS = 2  # enable-config is re-sent once: a radar mid-report may miss the first


def command_frame(word: int, value: bytes = b"") -> bytes:
    """Build a host command: ``FD FC FB FA | len | word | value | 04 03 02 01``."""
    if len(value) + 2 > MAX_COMMAND_DATA:
        raise ValueError(f"at most {MAX_COMMAND_DATA - 2} value bytes (got {len(value)})")
    data = word.to_bytes(2, "little") + value
    return CMD_HEADER + len(data).to_bytes(2, "little") + data + CMD_FOOTER


def ack_frame(word: int, status: int = STATUS_OK, data: bytes = b"") -> bytes:
    """Build the radar's ACK to command ``word`` (the simulators' side)."""
    return command_frame(word | ACK_FLAG, status.to_bytes(2, "little") + data)


@dataclass(frozen=True, slots=True)
class Ack:
    """A radar's answer to one command: the word it answers, its status and return values."""

    command: int
    status: int
    data: bytes

    @property
    def ok(self) -> bool:
        """True if the radar reports success."""
        return self.status == STATUS_OK


@dataclass(frozen=True, slots=True)
class Command:
    """A host command as the radar receives it (used by the simulators)."""

    word: int
    value: bytes


def _frame_data(frame: bytes) -> bytes:
    """The bytes between the length field and the footer of a length-prefixed frame."""
    return frame[6:-4]


def decode_ack(frame: bytes) -> Ack | FrameError:
    """Decode a whole command-framed frame seen by the host as an :class:`Ack`."""
    data = _frame_data(frame)
    word = int.from_bytes(data[:2], "little")
    if not word & ACK_FLAG:
        return FrameError(f"command 0x{word:04X} received where an ACK was expected (is the "
                          "host's TX looped back to its RX?)")
    if len(data) < 4:
        return FrameError(f"ACK to 0x{word & ~ACK_FLAG:04X} without a status "
                          f"({len(data)} data bytes)")
    return Ack(word & ~ACK_FLAG, int.from_bytes(data[2:4], "little"), bytes(data[4:]))


def decode_command(frame: bytes) -> Command | FrameError:
    """Decode a whole command-framed frame seen by the radar as a :class:`Command`."""
    data = _frame_data(frame)
    word = int.from_bytes(data[:2], "little")
    if word & ACK_FLAG:
        return FrameError(f"ACK 0x{word:04X} received where a command was expected")
    return Command(word, bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class FrameSpec:
    """How one kind of frame is delimited in the byte stream.

    Either length-prefixed (``lengths`` = allowed values of the u16 LE field right after the
    header; the frame is header + 2 + length + footer) or of a fixed ``size`` ending in
    ``footer``.
    """

    name: str
    header: bytes
    footer: bytes
    lengths: tuple[int, int] | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if (self.lengths is None) == (self.size is None):
            raise ValueError("a frame spec has either lengths or a fixed size")


#: Commands (host → radar) and ACKs (radar → host) of both radars.
COMMAND_SPEC = FrameSpec("command/ACK", CMD_HEADER, CMD_FOOTER, lengths=(2, MAX_COMMAND_DATA))

Decoder = Callable[[bytes], Any]


class _More:
    """Marker: the frame at the cursor needs more bytes."""


_MORE = _More()


class HilinkParser:
    """Incremental parser for a byte stream that carries several Hi-Link frame kinds.

    ``kinds`` pairs each :class:`FrameSpec` with a decoder that turns the whole frame into an
    item (or a :class:`FrameError`). Bytes before a header are skipped silently; a header with
    an impossible length, a wrong footer or content its decoder rejects is a FrameError, and
    the search resumes one byte after that header (a real frame may start inside). Feeding a
    stream in one chunk or byte by byte gives the same items.
    """

    def __init__(self, kinds: Sequence[tuple[FrameSpec, Decoder]]) -> None:
        firsts = [spec.header[0] for spec, _ in kinds]
        if len(set(firsts)) != len(firsts):
            raise ValueError("frame kinds must differ in their first header byte")
        self._kinds = {spec.header[0]: (spec, decode) for spec, decode in kinds}
        self._buffer = bytearray()
        self._last_byte_at = 0.0

    def feed(self, data: bytes, now: float) -> list[Any]:
        """Consume ``data`` received at monotonic time ``now``; return decoded items and errors.

        After more than 0.5 s of silence the bytes still held are judged on their own: a
        partial frame (its header complete) is dropped with a FrameError, a lone partial header
        silently, and whole frames after it are still found.
        """
        out: list[Any] = []
        if self._buffer and now - self._last_byte_at > STALL_TIMEOUT:
            self._scan(out, final=True)
        if data:
            self._last_byte_at = now
            self._buffer += data
            self._scan(out, final=False)
        return out

    def _scan(self, out: list[Any], *, final: bool) -> None:
        """Judge the buffer from its start; ``final``: no more bytes will join these."""
        buffer = self._buffer
        start = self._next_start(0)
        while start >= 0:
            judged = self._judge(start)
            if judged is _MORE:
                if not final:
                    break
                spec = self._kinds[buffer[start]][0]
                if buffer.startswith(spec.header, start):
                    out.append(FrameError(f"partial {spec.name} frame dropped: "
                                          f"{len(buffer) - start} bytes, then more than "
                                          f"{STALL_TIMEOUT:g} s of silence"))
                judged = (0, None)
            size, item = judged
            if item is not None:
                out.append(item)
            start = self._next_start(start + (size if size else 1))
        del buffer[:len(buffer) if start < 0 else start]

    def _next_start(self, at: int) -> int:
        """Index of the next byte from ``at`` that begins a known header, or -1."""
        found = [i for i in (self._buffer.find(first, at) for first in self._kinds) if i >= 0]
        return min(found) if found else -1

    def _judge(self, start: int) -> tuple[int, Any] | _More:
        """(bytes consumed — 0 means resync one byte on — and item or None) or _MORE."""
        buffer = self._buffer
        spec, decode = self._kinds[buffer[start]]
        have = len(buffer) - start
        header = spec.header
        n = min(have, len(header))
        if buffer[start:start + n] != header[:n]:
            return 0, None  # not a header after all: noise
        if have < len(header):
            return _MORE
        if spec.lengths is not None:
            if have < len(header) + 2:
                return _MORE
            length = int.from_bytes(buffer[start + len(header):start + len(header) + 2],
                                    "little")
            low, high = spec.lengths
            if not low <= length <= high:
                return 0, FrameError(f"{spec.name} frame with impossible length {length} "
                                     f"(expected {low}–{high})")
            size = len(header) + 2 + length + len(spec.footer)
        else:
            assert spec.size is not None
            size = spec.size
        if have < size:
            return _MORE
        frame = bytes(buffer[start:start + size])
        if not frame.endswith(spec.footer):
            return 0, FrameError(f"{spec.name} frame with bad end bytes "
                                 f"{frame[-len(spec.footer):].hex(' ').upper()} (expected "
                                 f"{spec.footer.hex(' ').upper()})")
        item = decode(frame)
        if isinstance(item, FrameError):
            return 0, item  # no checksum: resync inside, a real frame may start there
        return size, item


class CommandChannel:
    """Commands and their ACKs over an open port, with reports passed through.

    Everything that is not an ACK (report frames, frame errors) is kept in :attr:`inbox` with
    its arrival time for the driver. Errors name the device, the port and the command.
    """

    def __init__(self, transport: SerialTransport, parser: HilinkParser, *, device: str,
                 now: Callable[[], float], timeout: float = ACK_TIMEOUT,
                 log: logging.Logger | None = None) -> None:
        self.transport = transport
        self.parser = parser
        self.device = device
        self.timeout = timeout
        self.inbox: deque[tuple[float, Any]] = deque()
        self.bytes_received = 0
        self.reports_seen = 0
        self._now = now
        self._acks: deque[Ack] = deque()
        self._log = log or logging.getLogger("edgeagent.driver.hilink")

    @property
    def where(self) -> str:
        """``LD2450 on /dev/ttyAMA0`` for messages."""
        return f"{self.device} on {self.transport.port}"

    async def receive(self, timeout: float) -> int:
        """Read what arrives within ``timeout`` s, route ACKs and the rest; return item count."""
        data = await self.transport.read_some(timeout)
        self.bytes_received += len(data)
        now = self._now()
        items = self.parser.feed(data, now)
        for item in items:
            if isinstance(item, Ack):
                self._acks.append(item)
            else:
                if not isinstance(item, FrameError):
                    self.reports_seen += 1
                self.inbox.append((now, item))
        return len(items)

    async def command(self, word: int, value: bytes = b"", *, what: str,
                      attempts: int = 1) -> Ack:
        """Send a command and return its successful ACK.

        Raises:
            DriverError: no ACK within the timeout (naming port and command, with a hint what
                the traffic seen so far suggests), or the radar answered with a failure status.
        """
        loop = asyncio.get_running_loop()
        for _ in range(attempts):
            self._acks.clear()
            await self.transport.write(command_frame(word, value))
            deadline = loop.time() + self.timeout
            while (remaining := deadline - loop.time()) > 0:
                ack = self._take_ack(word)
                if ack is not None:
                    if not ack.ok:
                        raise DriverError(f"{self.where} refused {what} (0x{word:04X}): status "
                                          f"{ack.status}")
                    return ack
                await self.receive(remaining)
            ack = self._take_ack(word)
            if ack is not None and ack.ok:
                return ack
        tries = f", {attempts} attempts" if attempts > 1 else ""
        raise DriverError(f"{self.where}: no ACK to {what} (0x{word:04X}) within "
                          f"{format_duration(self.timeout)}{tries} ({self._hint()})")

    def _take_ack(self, word: int) -> Ack | None:
        while self._acks:
            ack = self._acks.popleft()
            if ack.command == word:
                return ack
            self._log.debug("%s: ignoring a late ACK to 0x%04X", self.where, ack.command)
        return None

    def _hint(self) -> str:
        if self.reports_seen:
            return ("report frames arrive, so the radar's TX works: check the host TX → radar "
                    "RX line")
        if self.bytes_received:
            return (f"{self.bytes_received} bytes arrived but no valid frame: wrong baud rate? "
                    f"the radars ship at {DEFAULT_BAUD} (set baudrate if it was changed with "
                    "command 0x00A1)")
        return ("nothing arrived: check TX/RX wiring (crossed), the 5 V supply (≥ 200 mA) and "
                f"that the UART can do {self.transport.baudrate} baud")

    @contextlib.asynccontextmanager
    async def config_mode(self) -> AsyncIterator[Ack]:
        """Enable configuration mode (yields its ACK), and end it again on the way out."""
        ack = await self.command(ENABLE_CONFIG, b"\x01\x00", what="enable configuration",
                                 attempts=ENABLE_ATTEMPTS)
        try:
            yield ack
        except BaseException:
            with contextlib.suppress(DriverError):  # best effort; the real error wins
                await self.transport.write(command_frame(END_CONFIG))
            raise
        await self.command(END_CONFIG, what="end configuration")


def firmware_version(ack: Ack) -> str:
    """Firmware ACK data (type u16, major u16, minor u32) as ``V1.02.22062416``."""
    if len(ack.data) < 8:
        raise DriverError(f"firmware ACK too short ({len(ack.data)} bytes, expected 8)")
    major = int.from_bytes(ack.data[2:4], "little")
    minor = int.from_bytes(ack.data[4:8], "little")
    return f"V{major >> 8}.{major & 0xFF:02X}.{minor:08X}"


def firmware_data(major: int, minor: int, kind: int = 0) -> bytes:
    """Firmware ACK data for the simulators (inverse of :func:`firmware_version`)."""
    return kind.to_bytes(2, "little") + major.to_bytes(2, "little") + minor.to_bytes(4, "little")
