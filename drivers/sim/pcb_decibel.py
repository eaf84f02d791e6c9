"""PCB Artists decibel meter model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`.

The module's register map byte for byte (vendor programming manual, sensors.md §4.1): a write
sets the register pointer and stores the following bytes at consecutive registers; a read
returns bytes from the pointer on, auto-incrementing. Power-up defaults as in the manual;
read-only registers ignore writes; RESET bits self-clear.

Time runs on the injected clock. Every Tavg the module "ticks": DECIBEL takes the level of
:attr:`PcbDecibelChip.schedule` (integer dB) for the active weighting, the level is pushed
into DBHISTORY (0x14, newest, … 0x77, oldest; 100 entries) and MIN/MAX follow it. Until
:attr:`~PcbDecibelChip.valid_after` seconds after power-up or a system reset the level is 0.

Model assumptions where the manual says nothing: ticks start when TAVG_LOW is written (or at
power-up / reset); a weighting change applies to ticks at least one Tavg after the CONTROL
write; the reserved weighting 11 is ignored; clear history fills DBHISTORY with 0x00; MIN/MAX
read 0x00 until the first level after power-up or a clear; in power-down the interface still
answers but nothing ticks; a system reset restores the defaults and wakes the module; TAVG
values outside 10–10 000 ms are stored but not applied. Undocumented registers read 0x00. Not
modelled: the interrupt pin, the spectrum bins (read 0x00) and the external-mic line output.
Faults: :meth:`~PcbDecibelChip.go_absent` / :meth:`~PcbDecibelChip.come_back`,
:meth:`~PcbDecibelChip.power_cycle` (a brown-out), :attr:`~PcbDecibelChip.stuck_high` (bits
that read 1) and :meth:`~PcbDecibelChip.corrupt_next_read`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.pcb_decibel import (
    ADDRESS,
    CONTROL_POWER_DOWN,
    CONTROL_WEIGHTING_MASK,
    CONTROL_WEIGHTING_SHIFT,
    HISTORY_LENGTH,
    ID_LENGTH,
    REG_CONTROL,
    REG_DBHISTORY_0,
    REG_DECIBEL,
    REG_GAIN,
    REG_ID3,
    REG_MAX,
    REG_MIN,
    REG_RESET,
    REG_SCRATCH,
    REG_TAVG_HIGH,
    REG_TAVG_LOW,
    REG_THR_MAX,
    REG_THR_MIN,
    REG_VERSION,
    RESET_CLEAR_HISTORY,
    RESET_CLEAR_INTERRUPT,
    RESET_CLEAR_MIN_MAX,
    RESET_SYSTEM,
    SCRATCH_DEFAULT,
    TAVG_MAX_MS,
    WEIGHTING_BITS,
    PcbDecibel,
    PcbDecibelConfig,
)
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack

DEFAULTS = {REG_SCRATCH: SCRATCH_DEFAULT, REG_CONTROL: 0x02, REG_TAVG_HIGH: 0x03,
            REG_TAVG_LOW: 0xE8, REG_THR_MIN: 45, REG_THR_MAX: 85, REG_GAIN: 18}
WRITABLE = frozenset({REG_SCRATCH, REG_CONTROL, REG_TAVG_HIGH, REG_TAVG_LOW, REG_THR_MIN,
                      REG_THR_MAX, REG_GAIN})
TAVG_MIN_MS = 10
VALID_AFTER = 1.0  # s: "the decibel value usually takes about 1 second to stabilize"
WEIGHTING_BY_BITS = {bits: name for name, bits in WEIGHTING_BITS.items()}
#: Levels of the default scene per weighting (C and Z above A: low-frequency content).
DEFAULT_LEVELS = {"A": 55.0, "C": 60.0, "Z": 62.0}

Schedule = Callable[[float, str], float]


def constant(levels: dict[str, float]) -> Schedule:
    """A steady scene: ``levels[weighting]`` dB at any time."""
    return lambda _t, weighting: levels[weighting]


def to_register(level: float) -> int:
    """Return the byte the module shows for ``level`` dB: whole dB, 0 … 255."""
    return min(255, max(0, math.floor(level + 0.5)))


class PcbDecibelChip:
    """One simulated decibel meter module; plug it into ``FakeI2cBus(1, {0x48: chip})``.

    :attr:`schedule` maps (tick time, weighting "A"/"C"/"Z") to dB; :meth:`set_level` makes a
    steady scene. :attr:`produced` lists every tick as (monotonic time, byte).
    """

    def __init__(self, clock: Clock, *, address: int = ADDRESS, version: int = 0x31,
                 unique_id: int = 0x5A17C0DE, schedule: Schedule | None = None,
                 valid_after: float = VALID_AFTER) -> None:
        self.clock = clock
        self.address = address
        self.version = version
        self.unique_id = unique_id
        self.schedule: Schedule = schedule or constant(DEFAULT_LEVELS)
        self.valid_after = valid_after
        self.present = True
        self.stuck_high = 0  # OR-ed into every byte read: bits stuck at 1 (weak pull-down…)
        self._produced: list[tuple[float, int]] = []
        self.system_resets = 0
        self._corrupt: tuple[tuple[int, ...], int] | None = None
        self._power_on()

    # --- scene and faults ---

    def set_level(self, level: float) -> None:
        """The same level for every weighting from now on."""
        self.schedule = constant(dict.fromkeys(WEIGHTING_BITS, level))

    def go_absent(self) -> None:
        """Stop acknowledging (unplugged): every transfer NACKs."""
        self.present = False

    def come_back(self) -> None:
        """Answer again after a power cycle: defaults, empty history, no level for a second."""
        self.present = True
        self._power_on()

    def power_cycle(self) -> None:
        """A supply dip: the module restarts with its power-up defaults (the host is not told)."""
        self._power_on()

    def corrupt_next_read(self, *indices: int, xor: int = 0xFF) -> None:
        """Flip bits (``xor``) of these bytes of the next read (glitches on a long cable)."""
        self._corrupt = (indices, xor)

    # --- state ---

    @property
    def produced(self) -> list[tuple[float, int]]:
        """Every tick so far as (monotonic time, byte), oldest first."""
        self._settle()
        return self._produced

    @property
    def weighting(self) -> str:
        """The weighting the module applies now."""
        self._settle()
        return WEIGHTING_BY_BITS[self._weighting]

    @property
    def tavg_ms(self) -> int:
        """The averaging time in force, ms."""
        return self._tavg_ms

    @property
    def powered_down(self) -> bool:
        """True after CONTROL bit 0 was set, until a system reset."""
        return self._powered_down

    @property
    def history(self) -> bytes:
        """DBHISTORY_0 … _99 as they read now."""
        self._settle()
        return bytes(self._history)

    def _power_on(self) -> None:
        now = self.clock.monotonic()
        self.registers = bytearray(256)
        for register, value in DEFAULTS.items():
            self.registers[register] = value
        self._pointer = 0
        self._powered_down = False
        self._valid_from = now + self.valid_after
        self._weighting = WEIGHTING_BITS["A"]
        self._pending_weighting: tuple[int, float] | None = None
        self._history = bytearray(HISTORY_LENGTH)
        self._decibel = 0
        self._min_max: tuple[int, int] | None = None
        self._restart_ticks(1000)

    def _restart_ticks(self, tavg_ms: int) -> None:
        self._tavg_ms = tavg_ms
        self._phase = self.clock.monotonic()
        self._ticks = 0  # ticks done since _phase

    def _settle(self) -> None:
        """Run every tick that is due by now."""
        if self._powered_down:
            return
        now, tavg = self.clock.monotonic(), self._tavg_ms / 1000
        while self._phase + (self._ticks + 1) * tavg <= now + 1e-9:
            self._ticks += 1
            self._tick(self._phase + self._ticks * tavg)

    def _tick(self, t: float) -> None:
        if self._pending_weighting is not None and t >= self._pending_weighting[1] - 1e-9:
            self._weighting, self._pending_weighting = self._pending_weighting[0], None
        value = 0 if t < self._valid_from - 1e-9 else to_register(
            self.schedule(t, WEIGHTING_BY_BITS[self._weighting]))
        self._decibel = value
        self._history[1:] = self._history[:-1]
        self._history[0] = value
        if value:
            low, high = self._min_max or (value, value)
            self._min_max = (min(low, value), max(high, value))
        self._produced.append((t, value))

    # --- the bus side ---

    def write(self, data: bytes) -> None:
        """Register address, then data bytes for consecutive registers (auto-increment)."""
        self._check_present()
        self._settle()
        if not data:
            return  # an address-only probe (i2cdetect): acknowledged
        self._pointer = data[0]
        for value in data[1:]:
            self._write_register(self._pointer, value)
            self._pointer = (self._pointer + 1) & 0xFF

    def read(self, length: int) -> bytes:
        """Registers from the pointer on, auto-incrementing."""
        self._check_present()
        self._settle()
        out = bytearray()
        for _ in range(length):
            out.append(self._register(self._pointer) | self.stuck_high)
            self._pointer = (self._pointer + 1) & 0xFF
        if self._corrupt is not None:
            indices, xor = self._corrupt
            self._corrupt = None
            for index in indices:
                if index < len(out):
                    out[index] ^= xor
        return bytes(out)

    def _check_present(self) -> None:
        if not self.present:
            raise nack(self.address)

    def _register(self, register: int) -> int:
        if register == REG_VERSION:
            return self.version
        if REG_ID3 <= register < REG_ID3 + ID_LENGTH:
            return self.unique_id.to_bytes(ID_LENGTH, "big")[register - REG_ID3]
        if register == REG_DECIBEL:
            return self._decibel
        if register in (REG_MIN, REG_MAX):
            return 0 if self._min_max is None else self._min_max[register == REG_MAX]
        if REG_DBHISTORY_0 <= register < REG_DBHISTORY_0 + HISTORY_LENGTH:
            return self._history[register - REG_DBHISTORY_0]
        return self.registers[register]  # RESET (write-only) and undocumented ones read 0

    def _write_register(self, register: int, value: int) -> None:
        if register == REG_RESET:
            self._reset(value)
        elif register == REG_CONTROL:
            self._control(value)
        elif register == REG_TAVG_LOW:
            self.registers[register] = value
            tavg_ms = self.registers[REG_TAVG_HIGH] << 8 | value
            if TAVG_MIN_MS <= tavg_ms <= TAVG_MAX_MS:
                self._restart_ticks(tavg_ms)
        elif register in WRITABLE:
            self.registers[register] = value
        # read-only and undocumented registers ignore writes

    def _control(self, value: int) -> None:
        old = self.registers[REG_CONTROL]
        self.registers[REG_CONTROL] = (value & ~CONTROL_POWER_DOWN) | (
            old & CONTROL_POWER_DOWN)  # writing 0 to the power-down bit does nothing
        bits = (value & CONTROL_WEIGHTING_MASK) >> CONTROL_WEIGHTING_SHIFT
        if bits in WEIGHTING_BY_BITS:
            current = self._weighting if self._pending_weighting is None else (
                self._pending_weighting[0])
            if bits != current:
                self._pending_weighting = (bits, self.clock.monotonic() + self._tavg_ms / 1000)
        if value & CONTROL_POWER_DOWN:
            self._powered_down = True
            self.registers[REG_CONTROL] |= CONTROL_POWER_DOWN

    def _reset(self, value: int) -> None:
        if value & RESET_SYSTEM:
            self.system_resets += 1
            self._power_on()
            return
        if value & RESET_CLEAR_HISTORY:
            self._history = bytearray(HISTORY_LENGTH)
        if value & RESET_CLEAR_MIN_MAX:
            self._min_max = None
        if value & RESET_CLEAR_INTERRUPT:
            pass  # the interrupt pin is not modelled


def fake_bus(chip: PcbDecibelChip, number: int = 1) -> FakeI2cBus:
    """A fake bus with this chip at its address."""
    return FakeI2cBus(number, {chip.address: chip})


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[PcbDecibel]:
    """Yield a driver wired to a simulated module at bus 1, 0x48 (not yet opened)."""
    chip = PcbDecibelChip(clock)
    config = PcbDecibelConfig.model_validate(PcbDecibel.sample_config)
    yield PcbDecibel(config, DriverContext(clock=clock, i2c=FakeBuses(fake_bus(chip))))
