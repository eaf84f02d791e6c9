"""The radar side of the shared Hi-Link command protocol (LD2410, LD2450), byte for byte.

Configuration-mode gating, the common commands (enable/end configuration, firmware, baud rate,
restart, factory reset, Bluetooth, MAC) with their ACKs, fault helpers, and a pty front end
that streams report frames on a clock. The radar-specific simulators add their commands and
report frames.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from edgeagent.clock import Clock
from edgeagent.drivers.hilink import (
    BAUD_RATES,
    BLUETOOTH,
    COMMAND_SPEC,
    ENABLE_CONFIG,
    END_CONFIG,
    FACTORY_RESET,
    FIRMWARE,
    MAC_ADDRESS,
    RESTART,
    SET_BAUD,
    STATUS_FAILED,
    STATUS_OK,
    Command,
    HilinkParser,
    ack_frame,
    decode_command,
    firmware_data,
)
from edgeagent.drivers.sim.pty import PtySimulator

PROTOCOL_VERSION = 1
BUFFER_SIZE = 0x40
DEFAULT_BAUD_INDEX = 7
#: The example MAC of the LD2450 protocol (0x00A5 ACK) — a simulated unit's address.
EXAMPLE_MAC = bytes.fromhex("8F 27 2E B8 0F 65")


class HilinkSimulator:
    """Common radar behaviour; subclasses implement :meth:`execute` and :meth:`report`."""

    def __init__(self, *, firmware: tuple[int, int], mac: bytes = EXAMPLE_MAC,
                 reports_in_config_mode: bool = False) -> None:
        self.firmware = firmware  # (major u16, minor u32)
        self.mac = mac
        #: Whether reports keep coming in configuration mode (the real radars pause them;
        #: ⚠ from drivers, not the datasheet); True exercises ACKs interleaved with reports.
        self.reports_in_config_mode = reports_in_config_mode
        self.config_mode = False
        self.baud_index = DEFAULT_BAUD_INDEX
        self.pending_baud_index: int | None = None  # 0x00A1 applies after a restart
        self.bluetooth = True
        self.deaf = False  # host TX → radar RX broken: no command arrives, reports go on
        self.commands: list[Command] = []  # every command received, for tests
        self._parser = HilinkParser([(COMMAND_SPEC, decode_command)])

    @property
    def baudrate(self) -> int:
        """The rate the radar currently talks at."""
        return BAUD_RATES[self.baud_index]

    @property
    def reporting(self) -> bool:
        """Whether report frames are sent right now."""
        return not self.config_mode or self.reports_in_config_mode

    def handle(self, rx: bytes) -> bytes:
        """Consume bytes from the host; return the ACKs (commands outside config are ignored)."""
        out = bytearray()
        if self.deaf:
            return b""
        for item in self._parser.feed(rx, 0.0):
            if not isinstance(item, Command):
                continue  # a frame the radar cannot use: no answer
            self.commands.append(item)
            if not self.config_mode and item.word != ENABLE_CONFIG:
                continue  # the datasheet: commands outside configuration mode are ignored
            reply = self._common(item)
            if reply is None:
                reply = self.execute(item)
            if reply is None:
                reply = ack_frame(item.word, STATUS_FAILED)  # an unknown command
            out += reply
        return bytes(out)

    def _common(self, command: Command) -> bytes | None:
        word, value = command.word, command.value
        if word == ENABLE_CONFIG:
            self.config_mode = True
            return ack_frame(word, STATUS_OK, PROTOCOL_VERSION.to_bytes(2, "little")
                             + BUFFER_SIZE.to_bytes(2, "little"))
        if word == END_CONFIG:
            self.config_mode = False
            return ack_frame(word)
        if word == FIRMWARE:
            return ack_frame(word, STATUS_OK, firmware_data(*self.firmware))
        if word == SET_BAUD:
            index = int.from_bytes(value[:2], "little") if len(value) >= 2 else 0
            if index not in BAUD_RATES:
                return ack_frame(word, STATUS_FAILED)
            self.pending_baud_index = index
            return ack_frame(word)
        if word == FACTORY_RESET:
            self.factory_reset()
            self.pending_baud_index = DEFAULT_BAUD_INDEX
            return ack_frame(word)
        if word == RESTART:
            self.power_cycle()  # the ACK still goes out first, then the radar restarts
            return ack_frame(word)
        if word == BLUETOOTH:
            self.bluetooth = value[:2] == b"\x01\x00"
            return ack_frame(word)
        if word == MAC_ADDRESS:
            return ack_frame(word, STATUS_OK, self.mac)
        return None

    def execute(self, command: Command) -> bytes | None:
        """Answer a radar-specific command (None: unknown, answered with status 1)."""
        return None

    def factory_reset(self) -> None:
        """Restore the radar-specific factory parameters."""

    def power_cycle(self) -> None:
        """Power off and on: configuration mode ends, a pending baud rate takes effect."""
        self.config_mode = False
        if self.pending_baud_index is not None:
            self.baud_index, self.pending_baud_index = self.pending_baud_index, None
        self._parser = HilinkParser([(COMMAND_SPEC, decode_command)])

    def report(self, t: float) -> bytes | None:
        """The report frame sent at monotonic time ``t`` (None while reports pause)."""
        raise NotImplementedError

    @staticmethod
    def garbage(n: int, rng: random.Random) -> bytes:
        """``n`` random bytes (line noise, a port opened mid-frame)."""
        return rng.randbytes(n)

    @staticmethod
    def truncated(frame: bytes, k: int) -> bytes:
        """The first ``k`` bytes of ``frame``, as when the rest is lost."""
        return frame[:k]


class PtyHilink(PtySimulator[HilinkSimulator]):
    """A simulated radar behind a pseudo-terminal; the driver opens :attr:`port`."""

    def __init__(self, sim: HilinkSimulator, period: float) -> None:
        super().__init__(sim)
        self.period = period
        self.frames_sent = 0
        #: Called with each frame before it is sent; may return faulty bytes instead.
        self.fault: Callable[[int, bytes], bytes] | None = None

    async def send_until_counted(self, t: float, counted: Callable[[], int]) -> int:
        """Send reports of time ``t`` until ``counted()`` rises; return how many it rose by.

        A driver drops the reports that arrive while it leaves configuration mode (a real
        radar streams on, so one lost report is nothing), so a test that sends one report
        right after the configuration cannot know whether it will count. Bounded: 50 tries of
        0.2 s each.
        """
        before = counted()
        for _ in range(50):
            self.send_report(t)
            for _ in range(40):
                if counted() > before:
                    return counted() - before
                await asyncio.sleep(0.005)
        raise AssertionError("the driver never counted a report")

    def send_report(self, t: float) -> bool:
        """Send the report of time ``t`` now (True if one was sent)."""
        frame = self.sim.report(t)
        if frame is None or self.mute:
            return False
        if self.fault is not None:
            frame = self.fault(self.frames_sent, frame)
        self.frames_sent += 1
        self.emit(frame)
        return True

    async def run_reports(self, clock: Clock, *, pause: float = 0.0,
                          count: int | None = None) -> None:
        """Stream reports every ``period`` on ``clock`` until cancelled (or ``count`` sent).

        ``pause`` adds a real-time pause per frame: with an auto-advancing fake clock it keeps
        the stream from flooding the pty.
        """
        sent = 0
        while count is None or sent < count:
            if self.send_report(clock.monotonic()):
                sent += 1
            await clock.sleep(self.period)
            if pause:
                await asyncio.sleep(pause)
