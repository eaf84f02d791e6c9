"""SDS011 wire-protocol simulator, byte for byte, with fault injection and a pty front end."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import AsyncIterator
from typing import Literal

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.sds011 import (
    ACTIVE_CADENCE,
    BROADCAST_ID,
    CMD_FIRMWARE,
    CMD_ID,
    CMD_QUERY_DATA,
    CMD_REPORT_MODE,
    CMD_SET_ID,
    CMD_SLEEP_WORK,
    CMD_WORKING_PERIOD,
    COMMAND_SIZE,
    DATA,
    HEAD,
    MAX_WORKING_PERIOD,
    MODE_ACTIVE,
    MODE_QUERY,
    OP_SET,
    REPLY,
    STATE_SLEEP,
    STATE_WORK,
    TAIL,
    Sds011,
    Sds011Config,
    sum8,
)
from edgeagent.drivers.sim.pty import PtySimulator

CAPTURE_ID = 0x58D9  # the device ID of the real capture in sensors.md §2.1


def _frame(kind: int, body: bytes, device_id: int) -> bytes:
    payload = body + device_id.to_bytes(2, "big")
    return bytes([HEAD, kind]) + payload + bytes([sum8(payload), TAIL])


class Sds011Simulator:
    """The sensor side of the protocol: answers host commands, produces frames and faults."""

    def __init__(self, seed: int = 0, device_id: int = CAPTURE_ID,
                 firmware: tuple[int, int, int] = (18, 11, 16), warmup_frames: int = 0) -> None:
        self.device_id = device_id
        self.firmware = firmware  # year, month, day
        self.mode: Literal["active", "query"] = "active"  # power-up default
        self.sleeping = False
        self.working_period = 0  # minutes, 0 = continuous
        self.values: tuple[float, float] | None = None  # None: seeded random walk
        self.warmup_frames = warmup_frames  # all-zero frames after power-up and each wake
        self._zeros_left = warmup_frames
        self._rng = random.Random(seed)
        self._pm25 = 8.0
        self._rx = bytearray()

    @staticmethod
    def encode_frame(pm25: float, pm10: float, device_id: int = CAPTURE_ID) -> bytes:
        """Build a 10-byte ``AA C0`` data frame (values in µg/m³, sent in tenths LE)."""
        body = round(pm25 * 10).to_bytes(2, "little") + round(pm10 * 10).to_bytes(2, "little")
        return _frame(DATA, body, device_id)

    @staticmethod
    def encode_reply(command: int, data: bytes, device_id: int = CAPTURE_ID) -> bytes:
        """Build a 10-byte ``AA C5`` reply: command code, three data bytes, device ID."""
        return _frame(REPLY, bytes([command]) + data, device_id)

    def set_values(self, pm25: float, pm10: float) -> None:
        """Send these values in every following frame instead of the random walk."""
        self.values = (pm25, pm10)

    def next_frame(self) -> bytes:
        """Encode the next frame: warm-up zeros, the fixed values or one random-walk step."""
        if self._zeros_left:
            self._zeros_left -= 1
            return self.encode_frame(0, 0, self.device_id)
        return self.encode_frame(*(self.values or self._walk()), self.device_id)

    def _walk(self) -> tuple[float, float]:
        self._pm25 = min(500.0, max(0.5, self._pm25 * math.exp(self._rng.gauss(0.0, 0.05))))
        return round(self._pm25, 1), round(self._pm25 * 1.6, 1)

    def active_frame(self) -> bytes | None:
        """Return the next frame an active-mode sensor sends, or None if asleep or polled."""
        if self.sleeping or self.mode != "active":
            return None
        return self.next_frame()

    @property
    def report_interval(self) -> float:
        """Seconds between active-mode frames: ~1 s, or the working period."""
        return self.working_period * 60.0 if self.working_period else ACTIVE_CADENCE

    def power_cycle(self) -> None:
        """Cut and restore power: awake and active; ID and working period are kept (drv)."""
        self.mode, self.sleeping = "active", False
        self._zeros_left = self.warmup_frames
        self._rx.clear()

    def handle(self, rx: bytes) -> bytes:
        """Consume bytes from the host; return what the sensor answers."""
        self._rx += rx
        out = bytearray()
        while True:
            start = self._rx.find(bytes([HEAD, CMD_ID]))
            if start < 0:
                # a trailing AA may be the first byte of the next command
                keep = 1 if self._rx.endswith(bytes([HEAD])) else 0
                del self._rx[: len(self._rx) - keep]
                return bytes(out)
            del self._rx[:start]
            if len(self._rx) < COMMAND_SIZE:
                return bytes(out)
            command = bytes(self._rx[:COMMAND_SIZE])
            if command[17] != sum8(command[2:17]) or command[18] != TAIL:
                del self._rx[:1]  # the sensor ignores it; look for the next head
                continue
            del self._rx[:COMMAND_SIZE]
            if int.from_bytes(command[15:17], "big") in (BROADCAST_ID, self.device_id):
                out += self._execute(command)

    def _execute(self, command: bytes) -> bytes:
        code, op, value = command[2:5]
        setting = op == OP_SET
        if code == CMD_SLEEP_WORK:
            if setting and value in (STATE_SLEEP, STATE_WORK):
                if self.sleeping and value == STATE_WORK:
                    self._zeros_left = self.warmup_frames
                self.sleeping = value == STATE_SLEEP
            state = STATE_SLEEP if self.sleeping else STATE_WORK
            return self.encode_reply(code, bytes([op, state, 0]), self.device_id)
        if self.sleeping:
            return b""  # asleep, only sleep/work is answered
        if code == CMD_REPORT_MODE:
            if setting and value in (MODE_ACTIVE, MODE_QUERY):
                self.mode = "query" if value == MODE_QUERY else "active"
            mode = MODE_QUERY if self.mode == "query" else MODE_ACTIVE
            return self.encode_reply(code, bytes([op, mode, 0]), self.device_id)
        if code == CMD_WORKING_PERIOD:
            if setting and value <= MAX_WORKING_PERIOD:
                self.working_period = value
            return self.encode_reply(code, bytes([op, self.working_period, 0]), self.device_id)
        if code == CMD_SET_ID:
            self.device_id = int.from_bytes(command[13:15], "big")
            return self.encode_reply(code, bytes(3), self.device_id)
        if code == CMD_FIRMWARE:
            return self.encode_reply(code, bytes(self.firmware), self.device_id)
        # whether an active-mode unit answers a query is unverified; the driver never asks
        if code == CMD_QUERY_DATA and self.mode == "query":
            return self.next_frame()
        return b""

    @staticmethod
    def corrupt(frame: bytes) -> bytes:
        """Return ``frame`` with its checksum byte flipped."""
        return frame[:8] + bytes([frame[8] ^ 0xFF]) + frame[9:]

    @staticmethod
    def garbage(n: int, rng: random.Random) -> bytes:
        """Return ``n`` random bytes (they may well contain ``AA C0``)."""
        return bytes(rng.randrange(256) for _ in range(n))

    @staticmethod
    def partial(frame: bytes, k: int) -> bytes:
        """Return the first ``k`` bytes of ``frame``, as when the tail is lost."""
        return frame[:k]


class PtySds011(PtySimulator[Sds011Simulator]):
    """A simulated sensor behind a pseudo-terminal; the driver opens :attr:`port`."""

    def __init__(self, sim: Sds011Simulator | None = None) -> None:
        super().__init__(sim or Sds011Simulator())

    async def run_active(self, clock: Clock) -> None:
        """Send active-mode frames at the sensor's own cadence until cancelled."""
        while True:
            frame = self.sim.active_frame()
            if frame:
                self.emit(frame)
            await clock.sleep(self.sim.report_interval)


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Sds011]:
    """Yield a driver wired to this simulator (query mode, warmup 0), not yet opened."""
    async with PtySds011(Sds011Simulator(seed=1)) as sim:
        config = Sds011Config(id="sds-conf", driver="sds011", port=sim.port, warmup=0)
        yield Sds011(config, DriverContext(clock=clock))
