"""PMS5003-family wire-protocol simulator, byte for byte, with fault injection and a pty front end.

``variant`` picks the frame layout (``drivers.pms5003.LAYOUTS``); a PMS3003 ignores commands.
"""

from __future__ import annotations

import contextlib
import math
import random
import struct
from collections.abc import AsyncIterator
from typing import Any, Literal

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.pms5003 import (
    ACK_LENGTH,
    ACTIVE_CADENCE,
    CMD_MODE,
    CMD_READ,
    CMD_SLEEP,
    DATA_LENGTH,
    FRAME_START,
    LAYOUTS,
    MODE_ACTIVE,
    MODE_PASSIVE,
    POWER_SLEEP,
    POWER_WAKE,
    Model,
    Pms5003,
    Pms5003Config,
    sum16,
)
from edgeagent.drivers.sim.pty import PtySimulator

COMMAND_SIZE = 7


class Pms5003Simulator:
    """The sensor side of the protocol: answers host commands, produces frames and faults."""

    def __init__(self, seed: int = 0, variant: Model = "pms5003") -> None:
        self.variant: Model = variant
        self.mode: Literal["active", "passive"] = "active"  # power-up default
        self.sleeping = False
        self.values: dict[str, Any] | None = None  # None: seeded random walk
        self._rng = random.Random(seed)
        self._pm25 = 8.0
        self._temperature, self._humidity = 215.0, 450.0  # 21.5 °C, 45.0 %RH
        self._rx = bytearray()

    @staticmethod
    def encode_frame(pm_cf1: tuple[int, int, int], pm_atm: tuple[int, int, int],
                     counts: tuple[int, ...], reserved: int = 0x9700) -> bytes:
        """Build a 32-byte data frame with a correct checksum."""
        body = FRAME_START + DATA_LENGTH.to_bytes(2, "big")
        body += struct.pack(">13H", *pm_cf1, *pm_atm, *counts, reserved)
        return body + sum16(body)

    @staticmethod
    def encode_variant(variant: Model, pm_cf1: tuple[int, int, int],
                       pm_atm: tuple[int, int, int], counts: tuple[int, ...] = (),
                       reserved: int = 0x9700, temperature: int = 0, humidity: int = 0,
                       hcho: int = 0) -> bytes:
        """Build a data frame of ``variant`` with a correct checksum.

        ``counts`` per 0.1 L (as many as the variant sends: 6, 4 on a PMS5003T, none on a
        PMS3003), ``temperature`` in 0.1 °C (signed), ``humidity`` in 0.1 %RH, ``hcho`` the raw
        word at offset 28 of the S variants, ``reserved`` the last data word.
        """
        layout = LAYOUTS[variant]
        if len(counts) != layout.counts:
            raise ValueError(f"{variant} sends {layout.counts} counts, not {len(counts)}")
        words = [*pm_cf1, *pm_atm, *counts]
        if variant == "pms3003":
            words += [0, 0]  # offsets 16-19: undocumented
        elif variant == "pms5003t":
            words += [temperature & 0xFFFF, humidity]
        elif variant == "pms5003st":
            words += [hcho, temperature & 0xFFFF, humidity, 0]  # offsets 28-35
        elif variant == "pms5003s" and hcho:
            reserved = hcho  # data 13 carries HCHO
        words.append(reserved)
        body = FRAME_START + layout.length.to_bytes(2, "big")
        body += struct.pack(f">{len(words)}H", *words)
        assert len(body) == layout.length + 2
        return body + sum16(body)

    @staticmethod
    def ack(cmd: int, data: int) -> bytes:
        """Build the 8-byte acknowledgement ``42 4D 00 04 <cmd> <data> <sum16>``."""
        body = FRAME_START + ACK_LENGTH.to_bytes(2, "big") + bytes([cmd, data & 0xFF])
        return body + sum16(body)

    def set_values(self, pm_cf1: tuple[int, int, int], pm_atm: tuple[int, int, int],
                   counts: tuple[int, ...], reserved: int = 0x9700, **extra: int) -> None:
        """Send these values in every following frame instead of the random walk.

        ``extra``: ``temperature``, ``humidity``, ``hcho`` for the variants that send them;
        ``counts`` may be the full six, cut to what the variant sends.
        """
        self.values = {"pm_cf1": pm_cf1, "pm_atm": pm_atm, "counts": counts,
                       "reserved": reserved, **extra}

    def next_frame(self) -> bytes:
        """Encode the next frame from the fixed values or one step of the random walk."""
        values = dict(self.values or self._walk())
        values["counts"] = tuple(values["counts"])[:LAYOUTS[self.variant].counts]
        return self.encode_variant(self.variant, **values)

    def _walk(self) -> dict[str, Any]:
        self._pm25 = min(300.0, max(1.0, self._pm25 * math.exp(self._rng.gauss(0.0, 0.05))))
        pm25 = self._pm25
        cf1 = (round(pm25 * 0.7), round(pm25), round(pm25 * 1.25))
        # CF=1 and atmospheric agree at low concentrations and diverge above ~30 µg/m³
        atm = tuple(v if v <= 30 else round(30 + (v - 30) * 0.67) for v in cf1)
        counts = tuple(round(pm25 * k) for k in (25, 7.5, 1.5, 0.2, 0.03, 0.01))
        values: dict[str, Any] = {"pm_cf1": cf1, "pm_atm": atm, "counts": counts}
        if LAYOUTS[self.variant].climate is not None:
            self._temperature = min(400.0, max(-100.0, self._temperature
                                               + self._rng.gauss(0.0, 2.0)))
            self._humidity = min(950.0, max(50.0, self._humidity + self._rng.gauss(0.0, 5.0)))
            values.update(temperature=round(self._temperature), humidity=round(self._humidity))
        return values

    def active_frame(self) -> bytes | None:
        """Return the next frame an active-mode sensor sends, or None if asleep or passive."""
        if self.sleeping or self.mode != "active":
            return None
        return self.next_frame()

    def power_cycle(self) -> None:
        """Cut and restore power: back to active mode and awake, passive mode forgotten."""
        self.mode, self.sleeping = "active", False
        self._rx.clear()

    def handle(self, rx: bytes) -> bytes:
        """Consume bytes from the host; return what the sensor answers (a PMS3003: nothing)."""
        if not LAYOUTS[self.variant].commands:
            return b""  # no command interface: stays awake and in active mode
        self._rx += rx
        out = bytearray()
        while True:
            start = self._rx.find(FRAME_START)
            if start < 0:
                # a trailing 0x42 may be the first half of the next command's header
                keep = 1 if self._rx.endswith(FRAME_START[:1]) else 0
                del self._rx[: len(self._rx) - keep]
                return bytes(out)
            del self._rx[:start]
            if len(self._rx) < COMMAND_SIZE:
                return bytes(out)
            command = bytes(self._rx[:COMMAND_SIZE])
            if sum16(command[:5]) != command[5:]:
                del self._rx[:1]  # the sensor ignores it; look for the next header
                continue
            del self._rx[:COMMAND_SIZE]
            out += self._execute(command[2], int.from_bytes(command[3:5], "big"))

    def _execute(self, cmd: int, data: int) -> bytes:
        if self.sleeping:
            if (cmd, data) == (CMD_SLEEP, POWER_WAKE):
                self.sleeping = False
            return b""  # in standby only the wake command is heard
        if cmd == CMD_MODE and data in (MODE_PASSIVE, MODE_ACTIVE):
            self.mode = "active" if data == MODE_ACTIVE else "passive"
            return self.ack(cmd, data)
        if (cmd, data) == (CMD_SLEEP, POWER_SLEEP):
            self.sleeping = True
            return self.ack(cmd, data)
        if cmd == CMD_READ and self.mode == "passive":
            return self.next_frame()
        return b""

    @staticmethod
    def corrupt(frame: bytes) -> bytes:
        """Return ``frame`` with its last checksum byte flipped."""
        return frame[:-1] + bytes([frame[-1] ^ 0xFF])

    @staticmethod
    def garbage(n: int, rng: random.Random) -> bytes:
        """Return ``n`` random bytes (they may well contain ``42 4D``)."""
        return bytes(rng.randrange(256) for _ in range(n))

    @staticmethod
    def partial(frame: bytes, k: int) -> bytes:
        """Return the first ``k`` bytes of ``frame``, as when the tail is lost."""
        return frame[:k]


class PtyPms5003(PtySimulator[Pms5003Simulator]):
    """A simulated sensor behind a pseudo-terminal; the driver opens :attr:`port`."""

    def __init__(self, sim: Pms5003Simulator | None = None) -> None:
        super().__init__(sim or Pms5003Simulator())

    async def run_active(self, clock: Clock, cadence: float = ACTIVE_CADENCE) -> None:
        """Send active-mode frames at ``cadence`` until cancelled."""
        while True:
            frame = self.sim.active_frame()
            if frame:
                self.emit(frame)
            await clock.sleep(cadence)


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Pms5003]:
    """Yield a driver wired to this simulator (passive mode, warmup 0), not yet opened."""
    async with PtyPms5003(Pms5003Simulator(seed=1)) as sim:
        config = Pms5003Config(id="pms-conf", driver="pms5003", port=sim.port, warmup=0)
        yield Pms5003(config, DriverContext(clock=clock))
