"""SPS30 SHDLC simulator, byte for byte: state machine, 1 Hz data, faults, and a pty front end.

Besides the measured values (float or integer, as chosen at Start) it models the auto-cleaning
interval (kept in "NVM" across resets; firmware < 2.2 reads back the old value until a reset),
the device status register (set :attr:`Sps30Simulator.status`; STATE bit 7 follows its error
flags; 0xD2 with ``01`` clears it) and the firmware version. Model assumptions, not from the
datasheet: firmware < 2.2 answers 0xD2 with 0x02 (unknown command), firmware < 2.0 refuses the
integer format with 0x04 (illegal parameter), and Reset clears the status register.
"""

from __future__ import annotations

import contextlib
import random
import struct
from collections import deque
from collections.abc import AsyncIterator
from typing import Literal

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext, FrameError
from edgeagent.drivers.sim.pty import PtySimulator
from edgeagent.drivers.sps30 import (
    ADDRESS,
    CMD_AUTO_CLEANING,
    CMD_DEVICE_INFO,
    CMD_FAN_CLEANING,
    CMD_READ,
    CMD_RESET,
    CMD_SLEEP,
    CMD_START,
    CMD_STATUS,
    CMD_STOP,
    CMD_VERSION,
    CMD_WAKE,
    DEVICE_ERROR_FLAG,
    ERROR_NOT_ALLOWED,
    FLAG,
    FORMAT_FLOAT,
    FORMAT_U16,
    INFO_PRODUCT_TYPE,
    INFO_SERIAL,
    MIN_FIRMWARE_READBACK,
    MIN_FIRMWARE_STATUS,
    MIN_FIRMWARE_U16,
    NEW_DATA_PERIOD,
    NM_PER_UM,
    STATUS_ERRORS,
    Sps30,
    Sps30Config,
    checksum,
    miso_frame,
    unstuff,
)

# the real capture of sensors.md §2.3.2: NC1.0 = 42 13 FC 85 needs stuffing
GOLDEN_DATA = bytes.fromhex(
    "40A78320 411777BB 414A5F83 41548DDD 41D2833E 4213FC85 42261722 4229A4D9 422A29BC 3F55B7E7")
GOLDEN_VALUES = struct.unpack(">10f", GOLDEN_DATA)
PRODUCT_TYPE = b"00080000"
FIRMWARE = (2, 2)
HARDWARE_REVISION = 7
SHDLC_VERSION = (2, 0)
VERSION = bytes([*FIRMWARE, 0, HARDWARE_REVISION, 0, *SHDLC_VERSION])  # fw 2.2, hw 7, SHDLC 2.0
DEFAULT_CLEANING_INTERVAL = 604_800  # s: one week, the factory setting
ERROR_WRONG_LENGTH = 0x01
ERROR_UNKNOWN_COMMAND = 0x02
ERROR_ILLEGAL_PARAMETER = 0x04
FAN_CLEANING_SECONDS = 10.0
Fault = Literal["corrupt", "drop", "truncate", "garbage"]


def integer_values(values: tuple[float, ...]) -> tuple[int, ...]:
    """What the sensor sends in the integer format for ``values`` (µm size becomes nm)."""
    return (*(round(v) for v in values[:9]), round(values[9] * NM_PER_UM))


class Sps30Simulator:
    """The sensor side of SHDLC: Idle / Measurement / Sleep, 1 Hz values, injected faults."""

    def __init__(self, clock: Clock | None = None, serial: str = "3C5F2A1B9D0E7711",
                 seed: int = 0, firmware: tuple[int, int] = FIRMWARE) -> None:
        self.clock = clock
        self.state: Literal["idle", "measurement", "sleep"] = "idle"
        self.interface_on = True
        self.serial = serial
        self.firmware = firmware
        self.values: tuple[float, ...] = GOLDEN_VALUES
        self.format = FORMAT_FLOAT
        self.status = 0  # device status register (u32); tests set bits, e.g. STATUS_FAN
        self.auto_cleaning_interval = DEFAULT_CLEANING_INTERVAL  # in NVM
        self.reported_cleaning_interval = DEFAULT_CLEANING_INTERVAL  # what 0x80 read returns
        self.cleaning_writes = 0  # NVM writes of the interval
        self.faults: deque[Fault] = deque()  # applied to the next replies, one each
        self.force_state: int | None = None  # error code for the next reply
        self.executed: list[int] = []  # commands carried out, in order
        self._rng = random.Random(seed)
        self._rx = bytearray()
        self._open = False
        self._started_at = 0.0
        self._delivered = 0  # index of the last 1 Hz update read
        self._reads = 0  # without a clock: every read is a new update
        self._cleaning_until = -1.0

    def _now(self) -> float:
        return self.clock.monotonic() if self.clock else float(self._reads)

    def handle(self, rx: bytes) -> bytes:
        """Consume bytes from the host; return what the sensor answers."""
        out = bytearray()
        for byte in rx:
            if not self.interface_on:
                self.interface_on = True  # the falling edge wakes the UART; the byte is lost
                continue
            if byte == FLAG:
                if self._rx:
                    out += self._frame(bytes(self._rx))
                    self._rx.clear()
                    self._open = False
                else:
                    self._open = True
            elif self._open:
                self._rx.append(byte)
        return bytes(out)

    def _frame(self, inner: bytes) -> bytes:
        try:
            body = unstuff(inner)  # a raw 0x11 (the datasheet's wake frame) is accepted too
        except FrameError:
            return b""
        if len(body) < 4 or body[0] != ADDRESS or checksum(body[:-1]) != body[-1]:
            return b""  # the sensor ignores what it cannot read
        cmd, length, data = body[1], body[2], body[3:-1]
        if length != len(data):
            return self._reply(cmd, ERROR_WRONG_LENGTH)
        state, answer = self._execute(cmd, bytes(data))
        if state == 0:
            self.executed.append(cmd)
        return self._reply(cmd, state, answer)

    def _reply(self, cmd: int, state: int, data: bytes = b"") -> bytes:
        if self.force_state is not None:
            state, data, self.force_state = self.force_state, b"", None
        if self.status & STATUS_ERRORS:
            state |= DEVICE_ERROR_FLAG
        frame = miso_frame(cmd, state, data)
        if self.state == "sleep":
            self.interface_on = False  # the answer to Sleep goes out, then the UART is off
        return self._apply_fault(frame)

    def _apply_fault(self, frame: bytes) -> bytes:
        if not self.faults:
            return frame
        fault = self.faults.popleft()
        if fault == "corrupt":
            return self.corrupt(frame)
        if fault == "drop":
            return b""
        if fault == "truncate":
            return frame[:len(frame) // 2]
        return self.garbage(7, self._rng) + frame

    def _execute(self, cmd: int, data: bytes) -> tuple[int, bytes]:
        if cmd == CMD_WAKE:
            if self.state == "sleep":
                self.state = "idle"
            return 0, b""
        if cmd == CMD_START:
            if len(data) != 2:
                return ERROR_WRONG_LENGTH, b""
            if data[0] != 0x01 or data[1] not in (FORMAT_FLOAT, FORMAT_U16) or (
                    data[1] == FORMAT_U16 and self.firmware < MIN_FIRMWARE_U16):
                return ERROR_ILLEGAL_PARAMETER, b""
            if self.state != "idle":
                return ERROR_NOT_ALLOWED, b""
            self.state, self.format = "measurement", data[1]
            self._started_at, self._delivered = self._now(), 0
            return 0, b""
        if cmd == CMD_STOP:
            if self.state != "measurement":
                return ERROR_NOT_ALLOWED, b""
            self.state = "idle"
            return 0, b""
        if cmd == CMD_READ:
            if self.state != "measurement":
                return ERROR_NOT_ALLOWED, b""
            self._reads += 1
            return 0, self._measured()
        if cmd == CMD_SLEEP:
            if self.state != "idle":
                return ERROR_NOT_ALLOWED, b""
            self.state = "sleep"
            return 0, b""
        if cmd == CMD_FAN_CLEANING:
            if self.state != "measurement":
                return ERROR_NOT_ALLOWED, b""
            self._cleaning_until = self._now() + FAN_CLEANING_SECONDS
            return 0, b""
        if cmd == CMD_DEVICE_INFO:
            if data == bytes([INFO_PRODUCT_TYPE]):
                return 0, PRODUCT_TYPE + b"\0"
            if data == bytes([INFO_SERIAL]):
                return 0, self.serial.encode("ascii") + b"\0"
            return ERROR_ILLEGAL_PARAMETER, b""
        if cmd == CMD_VERSION:
            return 0, bytes([*self.firmware, 0, HARDWARE_REVISION, 0, *SHDLC_VERSION])
        if cmd == CMD_AUTO_CLEANING:
            if data == b"\x00":
                return 0, self.reported_cleaning_interval.to_bytes(4, "big")
            if len(data) == 5 and data[0] == 0:
                self.auto_cleaning_interval = int.from_bytes(data[1:], "big")
                self.cleaning_writes += 1
                if self.firmware >= MIN_FIRMWARE_READBACK:
                    self.reported_cleaning_interval = self.auto_cleaning_interval
                return 0, b""
            return ERROR_WRONG_LENGTH, b""
        if cmd == CMD_STATUS:
            if self.firmware < MIN_FIRMWARE_STATUS:
                return ERROR_UNKNOWN_COMMAND, b""
            if len(data) != 1:
                return ERROR_WRONG_LENGTH, b""
            if data[0] not in (0, 1):
                return ERROR_ILLEGAL_PARAMETER, b""
            register = self.status
            if data[0] == 1:
                self.status = 0  # cleared after reading
            return 0, register.to_bytes(4, "big") + b"\0"
        if cmd == CMD_RESET:
            self.state, self.status = "idle", 0
            self.reported_cleaning_interval = self.auto_cleaning_interval
            return 0, b""
        return ERROR_UNKNOWN_COMMAND, b""

    def _measured(self) -> bytes:
        now = self._now()
        update = int((now - self._started_at) / NEW_DATA_PERIOD + 1e-9)
        if update <= self._delivered or now < self._cleaning_until:
            return b""  # nothing new: the empty answer
        self._delivered = update
        if self.format == FORMAT_U16:
            return struct.pack(">10H", *integer_values(self.values))
        return struct.pack(">10f", *self.values)

    @staticmethod
    def corrupt(frame: bytes) -> bytes:
        """Return ``frame`` with the byte before the closing flag flipped (bad checksum)."""
        return frame[:-2] + bytes([frame[-2] ^ 0x01]) + frame[-1:]

    @staticmethod
    def garbage(n: int, rng: random.Random) -> bytes:
        """Return ``n`` random bytes without a flag byte."""
        return bytes(rng.choice([b for b in range(256) if b != FLAG]) for _ in range(n))


class PtySps30(PtySimulator[Sps30Simulator]):
    """A simulated sensor behind a pseudo-terminal; the driver opens :attr:`port`."""

    def __init__(self, sim: Sps30Simulator | None = None) -> None:
        super().__init__(sim or Sps30Simulator())


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Sps30]:
    """Yield a driver wired to this simulator (warmup 0), not yet opened."""
    async with PtySps30(Sps30Simulator(clock=clock)) as sim:
        config = Sps30Config(id="sps30-conf", driver="sps30", port=sim.port, warmup=0)
        yield Sps30(config, DriverContext(clock=clock))
