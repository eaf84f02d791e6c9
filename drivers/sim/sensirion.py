"""The part every simulated Sensirion T/RH chip (SHT3x, SHT4x) shares: values, faults, timing.

A subclass implements ``write``/``read`` (its command set) and ``_words`` (its inverse formulas).
"""

from __future__ import annotations

import math
import random

from edgeagent.clock import Clock
from edgeagent.drivers.sensirion import words_with_crc


def to_word(value: float) -> int:
    """A raw value rounded and clamped to 16 bits."""
    return min(0xFFFF, max(0, round(value)))


class SensirionRhtChip:
    """State and fault injection of a simulated T/RH chip; plug into ``FakeI2cBus``."""

    #: Worst-case conversion time per precision/repeatability, from the driver module.
    MEASURE_SECONDS: dict[str, float]

    def __init__(self, clock: Clock, *, address: int, seed: int, serial_number: int) -> None:
        self.clock = clock
        self.address = address  # only for the NACK message: the bus does the addressing
        self.serial_number = serial_number
        #: Conversion time per setting; raise one to make the chip slower than the driver waits.
        self.conversion_seconds = dict(self.MEASURE_SECONDS)
        self.present = True
        #: Fixed values (°C, %RH); None = a seeded slow random walk.
        self.temperature: float | None = None
        self.humidity: float | None = None
        #: Exact words to send instead of values, e.g. the ends of the range.
        self.raw_words: tuple[int, int] | None = None
        self._rng = random.Random(seed)
        self._walk = (21.0, 45.0)
        self._busy_until = -math.inf
        self._answer = b""
        self._corrupt_word: int | None = None
        self._scripted: bytes | None = None

    def set_values(self, temperature: float, humidity: float) -> None:
        """Send these physical values from now on (encoded with the inverse formulas)."""
        self.temperature, self.humidity = temperature, humidity

    def script_next_answer(self, raw: bytes) -> None:
        """Send exactly ``raw`` as the answer to the next measurement (golden cases)."""
        self._scripted = bytes(raw)

    def corrupt_next_crc(self, word: int = 0) -> None:
        """Flip one bit of the CRC of ``word`` (0 = temperature, 1 = humidity) once."""
        self._corrupt_word = word

    def go_absent(self) -> None:
        """Unplugged or unpowered: NACK everything."""
        self.present = False

    def come_back(self) -> None:
        """Plugged in again, freshly powered: idle, nothing to read."""
        self.present, self._answer, self._busy_until = True, b"", -math.inf

    def _words(self, temperature: float, humidity: float) -> tuple[int, int]:
        """The raw words this chip sends for the physical values."""
        raise NotImplementedError

    def _busy(self) -> bool:
        # same 1 ns slack as FakeClock's sleepers: "wait 1.6 ms" must not lose to float rounding
        return self.clock.monotonic() + 1e-9 < self._busy_until

    def _start(self, seconds: float, answer: bytes) -> None:
        self._busy_until = self.clock.monotonic() + seconds
        self._answer = answer

    def _measurement(self) -> bytes:
        if self._scripted is not None:
            answer, self._scripted = self._scripted, None
            return answer
        words = self.raw_words if self.raw_words is not None else self._words(*self._physical())
        answer = bytearray(words_with_crc(*words))
        if self._corrupt_word is not None:
            answer[3 * self._corrupt_word + 2] ^= 0x01
            self._corrupt_word = None
        return bytes(answer)

    def _physical(self) -> tuple[float, float]:
        if self.temperature is not None and self.humidity is not None:
            return self.temperature, self.humidity
        temperature, humidity = self._walk
        self._walk = (min(40.0, max(-10.0, temperature + self._rng.gauss(0.0, 0.02))),
                      min(95.0, max(5.0, humidity + self._rng.gauss(0.0, 0.1))))
        return self._walk
