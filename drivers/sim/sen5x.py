"""SEN5x chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, byte for byte.

States Idle / Measurement / Measurement without PM; a command sets a read pointer that repeated
reads re-read. New values once a second on an injected clock, announced by the data-ready flag,
which Read Measured Values clears; the values read are always the latest. Per-word CRC both
ways. Unknown markers as the real sensor sends them: every word before the first result after
Start (0xFFFF / 0x7FFF), NOx for the first 10 s after power-on or reset, the words a variant
does not measure (SEN50: RH, T, VOC, NOx; SEN54: NOx), PM without PM measurement; a physical
value set to None. Timing: NACK for 1 s after power-on, for 100 ms after Reset, 160 ms after
Stop and 50 ms after Start (Sensirion's Python driver), and for reads sooner than 20 ms after
their command. Fan cleaning freezes the values for 10 s.
Model assumptions, not from the datasheet: unknown commands, bad argument CRCs, Read Measured
Values and Fan Cleaning in Idle are NACKed; the temperature offset shifts T only (the sensor
also re-computes RH) and is reset to 0 by Reset and power-on; a SEN50 sends 0x7FFF in the
words it does not measure.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext, FrameError
from edgeagent.drivers.sen5x import (
    ADDRESS,
    CMD_DATA_READY,
    CMD_FAN_CLEANING,
    CMD_PRODUCT_NAME,
    CMD_READ_VALUES,
    CMD_RESET,
    CMD_SERIAL,
    CMD_START,
    CMD_START_WITHOUT_PM,
    CMD_STOP,
    CMD_TEMPERATURE_OFFSET,
    CMD_VERSION,
    FIELDS,
    NOX,
    TEMPERATURE,
    TEMPERATURE_TICKS,
    TEXT_LENGTH,
    UNKNOWN_SIGNED,
    UNKNOWN_UNSIGNED,
    VARIANT_STREAMS,
    Sen5x,
    Sen5xConfig,
)
from edgeagent.drivers.sensirion import check_words, words_with_crc
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack
from edgeagent.drivers.sps30 import NEW_DATA_PERIOD

POWER_UP_SECONDS = 1.0
BUSY_SECONDS = {CMD_RESET: 0.100, CMD_STOP: 0.160, CMD_START: 0.050,
                CMD_START_WITHOUT_PM: 0.050}
READ_DELAY_SECONDS = 0.020
NOX_UNKNOWN_SECONDS = 10.0  # "the first 10..11 seconds after power-on or device reset"
FAN_CLEANING_SECONDS = 10.0
#: The worked example of sensors.md §2.4 (its 03 C4 answer is the golden case).
EXAMPLE_VALUES: dict[str, float | None] = {
    "pm1": 5.2, "pm25": 9.4, "pm4": 12.6, "pm10": 13.3, "relativeHumidity": 45.67,
    "temperature": 23.45, "vocIndex": 100.0, "noxIndex": 1.0}
POINTERS = (CMD_DATA_READY, CMD_READ_VALUES, CMD_PRODUCT_NAME, CMD_SERIAL, CMD_VERSION,
            CMD_TEMPERATURE_OFFSET)


def text_words(text: str) -> bytes:
    """A product name or serial number answer: ASCII, NUL-padded to 32 bytes, words + CRC."""
    raw = text.encode("ascii").ljust(TEXT_LENGTH * 2 // 3, b"\0")
    return words_with_crc(*(int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)))


def encode_word(value: float | None, signed: bool, divisor: int) -> int:
    """The word the chip sends for a physical value (None = its unknown marker)."""
    if value is None or not math.isfinite(value):
        return UNKNOWN_SIGNED if signed else UNKNOWN_UNSIGNED
    ticks = round(value * divisor)
    if signed:
        return max(-0x8000, min(UNKNOWN_SIGNED - 1, ticks)) & 0xFFFF
    return max(0, min(UNKNOWN_UNSIGNED - 1, ticks))


class Sen5xChip:
    """One simulated SEN5x; plug it into ``FakeI2cBus(1, {0x69: chip})``."""

    def __init__(self, clock: Clock, variant: str = "SEN55", *,
                 serial: str = "8A3C2F41D0E9B756", product_name: str | None = None) -> None:
        self.clock = clock
        self.variant = variant
        self.serial = serial
        self.product_name = product_name or variant
        #: Physical values (µg/m³, %RH, °C, index); None = the sensor does not know it.
        self.values: dict[str, float | None] = dict(EXAMPLE_VALUES)
        #: Exact eight words to send instead (golden cases, range ends); CRCs are still added.
        self.raw_words: tuple[int, ...] | None = None
        self.present = True
        self.state = "idle"  # idle | measurement | measurement_without_pm
        self.temperature_offset = 0.0
        self._powered_at = -math.inf  # constructed as if powered long ago
        self._reset_at = -math.inf
        self._busy_until = -math.inf
        self._pointer = b""
        self._pointer_at = -math.inf
        self._started_at = 0.0
        self._delivered = 0
        self._frozen: tuple[float, int] | None = None  # (until, update count) while cleaning
        self._corrupt_word: int | None = None

    # -- test controls ------------------------------------------------------------------------
    def set_values(self, **values: float | None) -> None:
        """Report these physical values from now on (names as the driver's streams)."""
        unknown = set(values) - set(self.values)
        if unknown:
            raise KeyError(f"no such SEN5x value: {sorted(unknown)}")
        self.values.update(values)

    def corrupt_next_crc(self, word: int = 0) -> None:
        """Flip one bit of the CRC of ``word`` (0–7) in the next measured values read, once."""
        self._corrupt_word = word

    def go_absent(self) -> None:
        """Unplugged or unpowered: NACK everything."""
        self.present = False

    def come_back(self) -> None:
        """Powered again: Idle, default parameters, NACKs for the first second."""
        self.present = True
        self.power_on()

    def power_on(self) -> None:
        """A power cycle: Idle, defaults, pointer lost, NOx unknown for 10 s."""
        now = self._now()
        self.state, self.temperature_offset, self._pointer = "idle", 0.0, b""
        self._powered_at = self._reset_at = now
        self._frozen = None

    def reported_values(self) -> dict[str, float]:
        """What the next Read Measured Values answer means, unknown words left out."""
        words = self._words()
        out = {}
        for (name, signed, divisor), word in zip(FIELDS, words, strict=True):
            if word != (UNKNOWN_SIGNED if signed else UNKNOWN_UNSIGNED):
                out[name] = (word - 0x10000 if signed and word & 0x8000 else word) / divisor
        return out

    # -- bus side -----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Execute a 16-bit command, with argument words and CRCs."""
        self._check_reachable()
        command, args = data[:2], data[2:]
        try:
            words = check_words(args)
        except FrameError:
            raise nack(ADDRESS) from None
        self._pointer = b""
        now = self._now()
        measuring = self.state != "idle"
        if command == CMD_START and not args:
            if self.state == "idle":
                self._start(now)
            elif self.state == "measurement_without_pm":
                self._delivered = self._update()  # PM on; the flag is cleared
            self.state = "measurement"
        elif command == CMD_START_WITHOUT_PM and not args:
            if self.state == "idle":
                self._start(now)
            elif self.state == "measurement":
                self._delivered = self._update()
            self.state = "measurement_without_pm"
        elif command == CMD_STOP and not args:
            self.state = "idle"
        elif command == CMD_RESET and not args:
            self.state, self.temperature_offset, self._reset_at = "idle", 0.0, now
            self._frozen = None
        elif command == CMD_TEMPERATURE_OFFSET and len(words) == 3:
            offset = words[0] - 0x10000 if words[0] & 0x8000 else words[0]
            self.temperature_offset = offset / TEMPERATURE_TICKS  # slope, time constant ignored
        elif command == CMD_FAN_CLEANING and not args and self.state == "measurement":
            self._frozen = (now + FAN_CLEANING_SECONDS, self._update())
        elif command == CMD_READ_VALUES and not args and not measuring:
            raise nack(ADDRESS)  # no measured values in Idle
        elif command in POINTERS and not args:
            self._pointer, self._pointer_at = command, now
        else:
            raise nack(ADDRESS)
        self._busy_until = now + BUSY_SECONDS.get(command, 0.0)

    def read(self, length: int) -> bytes:
        """Read at the pointer; the pointer stays, so a repeated read re-reads it."""
        self._check_reachable()
        if not self._pointer or self._now() + 1e-9 < self._pointer_at + READ_DELAY_SECONDS:
            raise nack(ADDRESS)  # nothing to read, or read before the command's execution time
        pointer = self._pointer
        if pointer == CMD_DATA_READY:
            answer = words_with_crc(int(self.state != "idle" and self._update() > self._delivered))
        elif pointer == CMD_READ_VALUES:
            answer = self._values_answer()
        elif pointer == CMD_PRODUCT_NAME:
            answer = text_words(self.product_name)
        elif pointer == CMD_SERIAL:
            answer = text_words(self.serial)
        elif pointer == CMD_TEMPERATURE_OFFSET:
            ticks = round(self.temperature_offset * TEMPERATURE_TICKS) & 0xFFFF
            answer = words_with_crc(ticks, 0, 0)
        else:
            # firmware 2.0, debug off, hardware 4.0, protocol 1.0, padding
            answer = words_with_crc(0x0200, 0x0004, 0x0001, 0x0000)
        return answer[:length].ljust(length, b"\xff")  # beyond the answer SDA stays high

    # -- internals ----------------------------------------------------------------------------
    def _now(self) -> float:
        return self.clock.monotonic()

    def _check_reachable(self) -> None:
        now = self._now() + 1e-9  # the 1 ns slack of FakeClock's sleepers
        if (not self.present or now < self._powered_at + POWER_UP_SECONDS
                or now < self._busy_until):
            raise nack(ADDRESS)

    def _start(self, now: float) -> None:
        self._started_at, self._delivered, self._frozen = now, 0, None

    def _update(self) -> int:
        """How many results the running measurement has produced."""
        if self.state == "idle":
            return self._delivered
        now = self._now()
        if self._frozen is not None:
            until, count = self._frozen
            if now < until:
                return count
            # results resume from ``count``, the next one a period after cleaning ended
            self._started_at, self._frozen = until - count * NEW_DATA_PERIOD, None
        return int((now - self._started_at) / NEW_DATA_PERIOD + 1e-9)

    def _words(self) -> list[int]:
        if self._update() == 0:  # nothing measured yet: every word unknown
            return [UNKNOWN_SIGNED if signed else UNKNOWN_UNSIGNED for _, signed, _ in FIELDS]
        if self.raw_words is not None:
            return list(self.raw_words)
        has = set(VARIANT_STREAMS.get(self.variant, ()))
        if self._now() + 1e-9 < self._reset_at + NOX_UNKNOWN_SECONDS:
            has.discard(NOX)
        words = []
        for name, signed, divisor in FIELDS:
            value = self.values[name] if name in has else None
            if not signed and self.state == "measurement_without_pm":
                value = None
            if name == TEMPERATURE and value is not None:
                value += self.temperature_offset
            words.append(encode_word(value, signed, divisor))
        return words

    def _values_answer(self) -> bytes:
        words = self._words()
        self._delivered = max(self._delivered, self._update())
        answer = bytearray(words_with_crc(*words))
        if self._corrupt_word is not None:
            answer[3 * self._corrupt_word + 2] ^= 0x01
            self._corrupt_word = None
        return bytes(answer)


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Sen5x]:
    """Yield a driver wired to a simulated SEN55 at bus 1 address 0x69, not yet opened."""
    chip = Sen5xChip(clock)
    config = Sen5xConfig(id="sen5x-conf", driver="sen5x", bus=1, warmup=0)
    yield Sen5x(config, DriverContext(clock=clock, i2c=FakeBuses(FakeI2cBus(1, {ADDRESS: chip}))))
