"""AMG8833 chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, byte for byte.

An 8-bit register file: a write sets the register pointer and stores the following bytes from
there (auto-increment); a read returns registers from the pointer on (auto-increment, wrapping
at 0xFF). Frames are taken on an injected clock every 100 ms (FPSC 0) or 1 s (FPSC 1) from a
scene callback ``scene(t) -> (8, 8) °C`` and stored as 12-bit two's complement × 0.25 °C, LSB
first; values outside the measuring range are clamped to it and set STAT bit 2 (pixel
overflow), as an out-of-range thermistor sets bit 3. SCLR clears STAT bits; RST 0x30 clears the
flags, 0x3F also restores the register defaults. Power modes: normal (PCTL 0x00) takes frames,
sleep (0x10) takes none and ignores writes other than PCTL, stand-by (0x20 / 0x21) takes one
every 60 s / 10 s. Model choices, not from the datasheet: the measuring range is
:data:`PIXEL_RANGE`, the first frame comes one frame period after power-on, the thermistor is
:attr:`Amg8833Chip.thermistor` (°C), interrupts are stored but never raised, the ~15 s
warm-up drift is not modelled. Faults: :meth:`go_absent` / :meth:`come_back` (NACK, then a
power cycle) and :attr:`stuck` (frame registers stop updating).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from edgeagent.clock import Clock
from edgeagent.drivers.amg8833_device import (
    COLUMNS,
    FPSC_1,
    PCTL_NORMAL,
    PCTL_SLEEP,
    PCTL_STANDBY_10S,
    PCTL_STANDBY_60S,
    REG_AVE,
    REG_FPSC,
    REG_INTC,
    REG_PCTL,
    REG_PIXELS,
    REG_RST,
    REG_SCLR,
    REG_STAT,
    REG_TTHL,
    ROWS,
    RST_FLAG,
    RST_INITIAL,
    STAT_PIXEL_OVERFLOW,
    STAT_THERMISTOR_OVERFLOW,
    encode_pixel,
    encode_thermistor,
)
from edgeagent.drivers.sim.i2cbus import FakeI2cBus, nack

PIXEL_RANGE = (-20.0, 80.0)  # °C, the model's measuring range (clamped, overflow flag beyond)
THERMISTOR_RANGE = (-20.0, 80.0)
STANDBY_PERIOD = {PCTL_STANDBY_60S: 60.0, PCTL_STANDBY_10S: 10.0}
WRITABLE = {REG_PCTL, REG_RST, REG_FPSC, REG_INTC, REG_SCLR, REG_AVE, *range(0x08, 0x0E)}

Scene = Callable[[float], np.ndarray]


def encode_frame(image: np.ndarray) -> tuple[bytes, bool]:
    """Registers 0x80–0xFF for an (8, 8) image in °C, and whether any pixel overflowed."""
    image = np.asarray(image, dtype=np.float64).reshape(ROWS * COLUMNS)
    low, high = PIXEL_RANGE
    overflow = bool(np.any((image < low) | (image > high)))
    clamped = np.clip(image, low, high)
    raw = np.rint(clamped / 0.25).astype(np.int32) & 0xFFF
    return raw.astype("<u2").tobytes(), overflow


class Amg8833Chip:
    """One simulated AMG8833; plug it into ``FakeI2cBus(1, {0x69: chip})``."""

    def __init__(self, clock: Clock, *, address: int = 0x69, scene: Scene | None = None,
                 thermistor: float = 26.0) -> None:
        self.clock = clock
        self.address = address
        self.scene: Scene = scene or (lambda t: np.full((ROWS, COLUMNS), 22.0))
        self.thermistor = thermistor
        self.present = True
        self.stuck = False
        self.frames = 0  # frames taken since construction
        self._power_on()

    def _power_on(self) -> None:
        self.registers = bytearray(256)
        self._pointer = 0
        self._epoch = self.clock.monotonic()  # frames are due at epoch + k · period
        self._taken = 0

    # --- faults ---

    def go_absent(self) -> None:
        """Stop acknowledging: every transfer NACKs."""
        self.present = False

    def come_back(self) -> None:
        """Answer again, as after a power cycle: registers back to their reset values."""
        self.present = True
        self._power_on()

    # --- frames ---

    @property
    def period(self) -> float | None:
        """Seconds between frames in the current mode (None: asleep)."""
        pctl = self.registers[REG_PCTL]
        if pctl == PCTL_NORMAL:
            return 1.0 if self.registers[REG_FPSC] & FPSC_1 else 0.1
        return STANDBY_PERIOD.get(pctl)

    def _restart_schedule(self) -> None:
        self._epoch, self._taken = self.clock.monotonic(), 0

    def _settle(self) -> None:
        period = self.period
        if period is None:
            return
        due = math.floor((self.clock.monotonic() - self._epoch) / period + 1e-9)
        if due > self._taken:
            self._taken = due
            self._take(self._epoch + due * period)

    def _take(self, t: float) -> None:
        if self.stuck:
            return
        self.frames += 1
        data, overflow = encode_frame(self.scene(t))
        self.registers[REG_PIXELS:REG_PIXELS + 128] = data
        low, high = THERMISTOR_RANGE
        thermistor = min(max(self.thermistor, low), high)
        self.registers[REG_TTHL:REG_TTHL + 2] = encode_thermistor(thermistor)
        flags = (STAT_PIXEL_OVERFLOW if overflow else 0) | (
            STAT_THERMISTOR_OVERFLOW if thermistor != self.thermistor else 0)
        self.registers[REG_STAT] |= flags

    # --- registers ---

    def _write_register(self, reg: int, value: int) -> None:
        if self.registers[REG_PCTL] == PCTL_SLEEP and reg != REG_PCTL:
            return  # in sleep mode only PCTL can be written
        if reg not in WRITABLE:
            return
        if reg == REG_RST:
            if value in (RST_FLAG, RST_INITIAL):
                self.registers[REG_STAT] = 0
                self.registers[0x10:0x18] = bytes(8)
            if value == RST_INITIAL:
                for r in (REG_FPSC, REG_INTC, REG_AVE, *range(0x08, 0x0E)):
                    self.registers[r] = 0
                self._restart_schedule()
            return
        if reg == REG_SCLR:
            self.registers[REG_STAT] &= ~value & 0xFF
            return
        if reg == REG_PCTL:
            value &= 0x3F
            if value != self.registers[REG_PCTL]:
                self.registers[REG_PCTL] = value
                self._restart_schedule()
            return
        if reg == REG_FPSC:
            value &= 0x01
            if value != self.registers[REG_FPSC]:
                self.registers[REG_FPSC] = value
                self._restart_schedule()
            return
        self.registers[reg] = value

    def _register(self, reg: int) -> int:
        if reg in (REG_RST, REG_SCLR):
            return 0x00  # write-only, self-clearing
        return self.registers[reg]

    # --- the bus side ---

    def write(self, data: bytes) -> None:
        """Register address, then bytes written from there on (auto-increment)."""
        if not self.present:
            raise nack(self.address)
        self._settle()
        if not data:
            return  # an address probe (i2cdetect): acknowledged
        self._pointer = data[0]
        for value in data[1:]:
            self._write_register(self._pointer, value)
            self._pointer = (self._pointer + 1) & 0xFF

    def read(self, length: int) -> bytes:
        """``length`` registers from the pointer on (auto-increment)."""
        if not self.present:
            raise nack(self.address)
        self._settle()
        out = bytearray()
        for _ in range(length):
            out.append(self._register(self._pointer))
            self._pointer = (self._pointer + 1) & 0xFF
        return bytes(out)

    # --- for tests ---

    def pixel_bytes(self, celsius: float) -> bytes:
        """The register pair the chip stores for ``celsius`` (clamped to the range)."""
        return encode_pixel(min(max(celsius, PIXEL_RANGE[0]), PIXEL_RANGE[1]))


def fake_bus(chip: Amg8833Chip, number: int = 1) -> FakeI2cBus:
    """A fake bus with this chip at its address."""
    return FakeI2cBus(number, {chip.address: chip})


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Any]:
    """Yield an AMG8833 counter on a simulated chip (an empty 21 °C floor), not yet opened."""
    from edgeagent.driver import DriverContext
    from edgeagent.drivers.amg8833 import Amg8833, Amg8833Config
    from edgeagent.drivers.sim.i2cbus import FakeBuses

    chip = Amg8833Chip(clock, scene=lambda t: np.full((8, 8), 21.0))
    config = Amg8833Config.model_validate(Amg8833.sample_config)
    yield Amg8833(config, DriverContext(clock=clock, i2c=FakeBuses(fake_bus(chip))))
