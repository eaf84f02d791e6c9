"""PCB Artists I2C decibel sound level meter module: sound level in integer dB (A, C or Z).

Chip: PCB Artists I2C Decibel Sound Level Meter Module (PCBA-DBM, MEMS-mic VERSION 0x31 / 0x32,
external-mic VERSION 0x81). A microcontroller on the module does the weighting and averaging;
the host only reads levels, the module never gives audio.
Bus: I2C at 7-bit address 0x48, 3.3 V, plain 8-bit register map with auto-increment
(write ``REG data…``; write ``REG`` + repeated-start read).
Units: sound pressure level in dB (``dB``), integer steps, range 35–120 dB, ±2 dB.
Reference: vendor programming manual (mirrored in EngJay/pa-spl ``docs/vendor``), sensors.md
§4.1; see docs/drivers/pcb_decibel.md.

The driver polls once per ``interval`` (default 1 s) and reads the 100-entry history queue
DBHISTORY_0…99 (one level per averaging time Tavg, _0 newest). It aligns each snapshot with the
previous one (:func:`new_entries`) and hands out every level that is new since the last poll,
one reading per call: no level is lost or read twice, and each reaches the agent at most one
``interval`` after the module produced it.
"""

from __future__ import annotations

import collections
import math
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from edgeagent.clock import Clock
from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    QuantityClass,
    Reading,
    SensorConfig,
    StatKind,
    StreamSpec,
)
from edgeagent.i2c import I2cDevice
from edgeagent.units import Duration

ADDRESS = 0x48  # 7-bit; other addresses only as a custom order from the vendor
REG_VERSION = 0x00  # [7:4] hardware, [3:0] firmware
REG_ID3 = 0x01  # ID3 (MSB) … ID0 at 0x04: 32-bit unique ID
ID_LENGTH = 4
REG_SCRATCH = 0x05
REG_CONTROL = 0x06
REG_TAVG_HIGH = 0x07  # averaging time in ms, high byte; written first
REG_TAVG_LOW = 0x08  # writing the low byte makes TAVG_HIGH:TAVG_LOW take effect
REG_RESET = 0x09  # write-only, self-clearing bits
REG_DECIBEL = 0x0A
REG_MIN = 0x0B
REG_MAX = 0x0C
REG_THR_MIN = 0x0D
REG_THR_MAX = 0x0E
REG_GAIN = 0x0F  # external-mic variant only
REG_DBHISTORY_0 = 0x14  # DBHISTORY_0 (newest) … DBHISTORY_99 (oldest) at 0x77
HISTORY_LENGTH = 100
REG_FREQ_64BINS_0 = 0x78  # VERSION 0x32 only; never read by this driver (privacy, see docs)

CONTROL_POWER_DOWN = 0x01  # bit 0: write 1 to power down; only RESET bit 3 wakes the module
CONTROL_WEIGHTING_SHIFT = 1  # bits 2:1 filter: 00 Z, 01 A, 10 C, 11 reserved
CONTROL_WEIGHTING_MASK = 0b11 << CONTROL_WEIGHTING_SHIFT
CONTROL_INTERRUPT_ENABLE = 0x08  # bit 3 (left 0: interrupts off)
CONTROL_INTERRUPT_TYPE = 0x10  # bit 4: 1 = min/max thresholds, 0 = history 90 % full
CONTROL_LINE_OUT = 0x40  # bit 6: external-mic variant only
WEIGHTING_BITS = {"Z": 0b00, "A": 0b01, "C": 0b10}
RESET_CLEAR_INTERRUPT = 0x01
RESET_CLEAR_MIN_MAX = 0x02
RESET_CLEAR_HISTORY = 0x04
RESET_SYSTEM = 0x08  # defaults restored; the only way out of power-down
TAVG_MS = {"fast": 125, "slow": 1000}
TAVG_MAX_MS = 10_000  # product sheet: averaging time 10 ms … 10 000 ms
SCRATCH_DEFAULT = 0xAA
#: Left in SCRATCH after the bus test: a module that reset itself (brown-out) reads 0xAA again.
SCRATCH_MARKER = 0x55
VERSIONS = {0x31: "MEMS microphone, firmware 1", 0x32: "MEMS microphone, firmware 2 with "
            "spectrum analyser", 0x81: "external electret microphone, firmware 1"}

LEVEL_MIN_DB, LEVEL_MAX_DB = 35, 120  # product sheet measurement range
NOT_VALID = 0  # DECIBEL and the history read 0 until the module has a level
STARTUP_GRACE = 3.0  # s after open or a wake reset in which 0 means "no level yet" (vendor: ~1 s)
RESET_SECONDS = 0.005  # I2C is ready within 5 ms of power-up (vendor); taken for a soft reset
SETTLE_TAVGS = 1.5  # a weighting change takes >= 1 Tavg to apply; wait 1.5 of the longer Tavg
MAX_INTERVAL_TAVGS = 50  # poll at least twice per history length (100 Tavg)
MIN_OVERLAP_FOR_A_MISMATCH = 20  # shorter overlaps must match exactly
HISTORY_READ_ATTEMPTS = 3  # per poll, while the reads do not line up


def tavg_seconds(averaging: str) -> float:
    """Return the module's averaging time Tavg in seconds for ``fast`` or ``slow``."""
    return TAVG_MS[averaging] / 1000


def tolerance(expected: float) -> float:
    """How far (in entries) the real number of new history entries may be from the clock's guess.

    Poll jitter on the host and the module's own oscillator move the guess by about one entry;
    2 entries + 5 % leaves room for both without accepting an implausible alignment.
    """
    return 2.0 + 0.05 * expected


def mismatches_allowed(overlap: int) -> int:
    """Bytes that may differ in an overlap of this many entries (one bit error, no CRC)."""
    return 1 if overlap >= MIN_OVERLAP_FOR_A_MISMATCH else 0


def new_entries(previous: bytes, current: bytes, expected: float) -> int | None:
    """Return how many entries at the front of ``current`` are new since ``previous``.

    Both are history snapshots, newest first. ``s`` new entries means the older part of
    ``current`` repeats the front of ``previous``: ``current[s:] == previous[:len - s]``, up to
    :func:`mismatches_allowed` differing bytes (a bit error in this read or in the last one
    must not break the alignment of the next poll). Levels repeat (integer dB in a steady
    room), so several ``s`` can fit: an exact fit beats one with a differing byte, then the
    one nearest to ``expected`` (elapsed time / Tavg) wins, then the smaller. Only ``s`` within
    :func:`tolerance` of ``expected`` count. If nothing fits but ``expected`` says the whole
    queue may have been replaced, every entry is new (len, entries beyond it were lost).

    Returns:
        The number of new entries, or None if the snapshots do not line up (a garbled or torn
        read, or a module that cleared its history).

    Raises:
        ValueError: the snapshots differ in length.
    """
    length = len(current)
    if len(previous) != length:
        raise ValueError(f"snapshots of {len(previous)} and {length} entries")
    tol = tolerance(expected)
    fits = []
    lowest, highest = max(0, math.ceil(expected - tol)), min(length - 1, math.floor(expected + tol))
    for s in range(lowest, highest + 1):
        differing = sum(a != b for a, b in zip(current[s:], previous, strict=False))
        if differing <= mismatches_allowed(length - s):
            fits.append((differing, abs(s - expected), s))
    if fits:
        return min(fits)[2]
    if expected + tol >= length:
        return length
    return None


def level_db(raw: int) -> float:
    """Return the level in dB of one DECIBEL / DBHISTORY byte.

    Raises:
        FrameError: 0 (no valid level) or a value outside the module's 35–120 dB range.
    """
    if raw == NOT_VALID:
        raise FrameError("level 0 dB: the module reports no valid level")
    if not LEVEL_MIN_DB <= raw <= LEVEL_MAX_DB:
        raise FrameError(f"implausible level {raw} dB (the module measures "
                         f"{LEVEL_MIN_DB}–{LEVEL_MAX_DB} dB)")
    return float(raw)


class PcbDecibelConfig(SensorConfig):
    """A PCB Artists decibel meter entry."""

    driver: Literal["pcb_decibel"]
    bus: int = Field(1, ge=0, description="I2C bus number N of /dev/i2c-N")
    address: Literal[0x48] = Field(ADDRESS, description="Fixed at 0x48 (custom addresses only "
                                   "to order)")
    weighting: Literal["A", "C", "Z"] = Field("A", description="Frequency weighting done by "
                                              "the module: A, C or Z (none)")
    averaging: Literal["fast", "slow"] = Field("fast", description="Averaging time Tavg of "
                                               "each level: fast = 125 ms, slow = 1000 ms")
    interval: Duration = Field(1.0, description="Time between polls of the history; each poll "
                               "collects every level since the last one")

    @model_validator(mode="after")
    def _interval_fits_the_history(self) -> Self:
        tavg = tavg_seconds(self.averaging)
        longest = MAX_INTERVAL_TAVGS * tavg
        if not tavg <= self.interval <= longest:
            raise ValueError(f"interval must be between Tavg ({tavg:g}s) and {longest:g}s for "
                             f"averaging {self.averaging}: the module keeps only "
                             f"{HISTORY_LENGTH} levels (got {self.interval:g}s)")
        return self


class PcbDecibel(Driver):
    """PCB Artists decibel meter driver: every Tavg level from the module's history queue."""

    Config = PcbDecibelConfig
    model: ClassVar[str] = "PCB Artists I2C decibel sound level meter"
    transport: ClassVar[str] = "i2c"
    sample_config: ClassVar[dict[str, Any]] = {"id": "noise", "driver": "pcb_decibel", "bus": 1}

    scan_addresses: ClassVar[tuple[int, ...]] = (ADDRESS,)

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read the VERSION register 0x00 (read only); only the known versions count."""
        version = (await device.write_read(bytes([REG_VERSION]), 1))[0]
        if version not in VERSIONS:
            return None
        return {"model": cls.model, "detail": f"VERSION 0x{version:02X}, {VERSIONS[version]}"}

    def __init__(self, config: PcbDecibelConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: PcbDecibelConfig = config
        self.tavg = tavg_seconds(config.averaging)
        self.stream = f"l{config.weighting.lower()}eq"
        self.version: int | None = None
        self.unique_id: int | None = None
        self._device: I2cDevice | None = None
        self._pacer = Pacer(config.interval)
        self._snapshot = b""
        self._snapshot_at = 0.0
        self._pending: collections.deque[tuple[float, int]] = collections.deque()
        self._startup_until = 0.0  # zeros before this instant mean "no level yet"
        self._seen_level = False

    @classmethod
    def streams(cls, config: PcbDecibelConfig) -> list[StreamSpec]:
        """One level stream named by the weighting: laeq, lceq or lzeq."""
        tavg = "125 ms (fast)" if config.averaging == "fast" else "1 s (slow)"
        return [StreamSpec(f"l{config.weighting.lower()}eq", "dB", QuantityClass.NOISE,
                           StatKind.LEVEL,
                           f"{config.weighting}-weighted sound level averaged by the module "
                           f"over {tavg}, integer dB; the window gives its energy mean (Leq), "
                           "min, max and L10/L50/L90")]

    @classmethod
    def sample_interval(cls, config: PcbDecibelConfig) -> float:
        """Return Tavg: the driver delivers one level per averaging time, for coverage."""
        return tavg_seconds(config.averaging)

    def describe(self) -> dict[str, Any]:
        """Return the settings, the address in hex and what open read (None before)."""
        version = self.version
        return {**super().describe(), "address": f"0x{self.config.address:02X}",
                "tavg_ms": TAVG_MS[self.config.averaging],
                "version": None if version is None else f"0x{version:02X}",
                "variant": None if version is None else VERSIONS.get(version, "unknown"),
                "unique_id": None if self.unique_id is None else f"0x{self.unique_id:08X}"}

    @property
    def _where(self) -> str:
        return f"I2C bus {self.config.bus} address 0x{self.config.address:02X}"

    async def open(self) -> None:
        """Identify, test the bus, set weighting and Tavg, let them settle, clear the history."""
        clock = self.context.clock
        device = I2cDevice(self.config.bus, self.config.address, self.context.i2c)
        try:
            await device.open()
            ident = await device.write_read(bytes([REG_VERSION]), 1 + ID_LENGTH)
            if len(ident) != 1 + ID_LENGTH:
                raise DriverError(f"{device.where}: VERSION/ID read gave {len(ident)} bytes")
            self.version, self.unique_id = ident[0], int.from_bytes(ident[1:], "big")
            if self.version not in VERSIONS:
                self.context.log.warning("%s: unknown decibel meter VERSION 0x%02X (known: %s)",
                                         device.where, self.version,
                                         ", ".join(f"0x{v:02X}" for v in VERSIONS))
            await self._scratch_test(device)
            self._startup_until = clock.monotonic() + STARTUP_GRACE
            old_tavg = await self._wake(device)
            tavg_ms = TAVG_MS[self.config.averaging]
            control = WEIGHTING_BITS[self.config.weighting] << CONTROL_WEIGHTING_SHIFT
            # Tavg first: the weighting change then settles within the new averaging time
            await device.write(bytes([REG_TAVG_HIGH, tavg_ms >> 8, tavg_ms & 0xFF]))
            await device.write(bytes([REG_CONTROL, control]))
            await self._check_settings(device, "after configuring")
            await clock.sleep(SETTLE_TAVGS * max(old_tavg, self.tavg))
            await device.write(bytes([REG_RESET, RESET_CLEAR_HISTORY | RESET_CLEAR_MIN_MAX]))
            self._snapshot_at = clock.monotonic()
            self._snapshot = await self._read_history(device)
        except DriverError:
            await device.close()
            raise
        self._device = device
        self._pending.clear()
        self._seen_level = False
        self._pacer.start(self._snapshot_at + self.config.interval)
        self.context.log.debug("decibel meter on %s: VERSION 0x%02X, ID 0x%08X", device.where,
                               self.version, self.unique_id)

    async def _scratch_test(self, device: I2cDevice) -> None:
        """Write/read SCRATCH with 0xAA and 0x55 (every bit both ways); leave the marker."""
        for value in (SCRATCH_DEFAULT, SCRATCH_MARKER):
            await device.write(bytes([REG_SCRATCH, value]))
            back = await device.write_read(bytes([REG_SCRATCH]), 1)
            if back != bytes([value]):
                raise DriverError(
                    f"bus test failed at {device.where}: wrote 0x{value:02X} to SCRATCH (0x05), "
                    f"read back {back.hex(' ').upper() or 'nothing'}. Check wiring and pull-ups; "
                    "another chip at 0x48 (ADS1115, TMP102, PCF8591 …) also fails this test")

    async def _wake(self, device: I2cDevice) -> float:
        """Return the Tavg in force (s); a powered-down module is woken by a system reset."""
        control, tavg_ms = await self._settings(device)
        if control & CONTROL_POWER_DOWN:
            self.context.log.info("decibel meter at %s was powered down: system reset",
                                  device.where)
            await device.write(bytes([REG_RESET, RESET_SYSTEM]))
            await self.context.clock.sleep(RESET_SECONDS)
            self._startup_until = self.context.clock.monotonic() + STARTUP_GRACE
            await device.write(bytes([REG_SCRATCH, SCRATCH_MARKER]))  # the reset restored 0xAA
            control, tavg_ms = await self._settings(device)
        return min(max(tavg_ms, 1), TAVG_MAX_MS) / 1000

    async def _settings(self, device: I2cDevice) -> tuple[int, int]:
        raw = await device.write_read(bytes([REG_CONTROL]), 3)
        if len(raw) != 3:
            raise DriverError(f"{device.where}: CONTROL/TAVG read gave {len(raw)} bytes")
        return raw[0], raw[1] << 8 | raw[2]

    def _expected(self) -> tuple[int, int, int]:
        control = WEIGHTING_BITS[self.config.weighting] << CONTROL_WEIGHTING_SHIFT
        return SCRATCH_MARKER, control, TAVG_MS[self.config.averaging]

    async def _check_settings(self, device: I2cDevice, when: str) -> None:
        """SCRATCH, CONTROL and TAVG as the driver left them, else DriverError (reopen)."""
        raw = await device.write_read(bytes([REG_SCRATCH]), 4)
        if len(raw) != 4:
            raise DriverError(f"{device.where}: SCRATCH/CONTROL/TAVG read gave {len(raw)} bytes")
        got = raw[0], raw[1], raw[2] << 8 | raw[3]
        if got != self._expected():
            scratch, control, tavg = got
            raise DriverError(
                f"decibel meter at {device.where} {when}: SCRATCH 0x{scratch:02X}, CONTROL "
                f"0x{control:02X}, TAVG {tavg} ms (expected 0x{SCRATCH_MARKER:02X}, "
                f"0x{self._expected()[1]:02X}, {self._expected()[2]} ms): the module reset "
                "itself (supply dip?) or another program wrote to it")

    async def _read_history(self, device: I2cDevice) -> bytes:
        raw = await device.write_read(bytes([REG_DBHISTORY_0]), HISTORY_LENGTH)
        if len(raw) != HISTORY_LENGTH:
            raise FrameError(f"history read gave {len(raw)} bytes (expected {HISTORY_LENGTH})")
        return raw

    async def read(self) -> list[Reading] | None:
        """Return the next level not yet handed out; poll the history when none is left.

        Returns None when a poll found nothing new (or only "no level yet" zeros).

        Raises:
            FrameError: the level is 0 after start-up or outside 35–120 dB, or the history
                did not line up with the previous poll (levels since then are lost).
            DriverError: the module does not answer or lost its settings (reset).
        """
        if self._device is None:
            raise DriverError(f"decibel meter on {self._where} is not open")
        if not self._pending:
            await self._pacer.wait(self.context.clock)
            await self._poll(self._device)
            if not self._pending:
                return None
        t, raw = self._pending.popleft()
        return [Reading(self.stream, level_db(raw), t)]

    async def _poll(self, device: I2cDevice) -> None:
        """Read the history and queue its new entries, oldest first.

        A read that does not line up with the last snapshot is repeated (a torn or garbled
        read). Two alike reads that still do not line up mean the module's history changed
        (cleared, or the module restarted): resynchronise on them. Reads that never agree
        leave the last snapshot in place, so the next poll can still recover these levels.
        """
        clock = self.context.clock
        await self._check_settings(device, "during measurement")
        last = None
        for _ in range(HISTORY_READ_ATTEMPTS):
            now = clock.monotonic()
            current = await self._read_history(device)
            expected = (now - self._snapshot_at) / self.tavg
            count = new_entries(self._snapshot, current, expected)
            if count is not None:
                break
            if current == last:
                self._snapshot, self._snapshot_at = current, now
                raise FrameError(f"history at {device.where} does not continue the previous "
                                 f"poll ({expected:.1f} new levels expected): levels since then "
                                 "are lost; resynchronised")
            last = current
        else:
            raise FrameError(f"history at {device.where} read {HISTORY_READ_ATTEMPTS} times, "
                             "never twice alike and never lining up with the previous poll (bus "
                             "errors?): trying again at the next poll")
        self._snapshot, self._snapshot_at = current, now
        if count == HISTORY_LENGTH and expected > HISTORY_LENGTH:
            self.context.log.warning("decibel meter at %s: poll %.1fs late, about %d levels "
                                     "lost", device.where, (expected - count) * self.tavg,
                                     round(expected) - count)
        for index in range(count - 1, -1, -1):
            t, raw = now - index * self.tavg, current[index]
            if raw:
                self._seen_level = True
            elif not self._seen_level and t < self._startup_until:
                continue  # the module has no level yet after power-up or reset
            self._pending.append((t, raw))

    async def close(self) -> None:
        """Release the bus; idempotent. The module keeps measuring (power-down needs a reset)."""
        device, self._device = self._device, None
        self._pending.clear()
        if device is not None:
            await device.close()
