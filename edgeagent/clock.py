"""Clocks: the monotonic clock cuts windows, the wall clock only labels them.

Everything that needs time takes a :class:`Clock`, so tests drive it with :class:`FakeClock`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from enum import StrEnum
from typing import Protocol


class ClockQuality(StrEnum):
    """How far the wall clock can be trusted when a window is labelled."""

    SYNCED = "synced"
    RTC = "rtc"
    UNSYNCED = "unsynced"


class Clock(Protocol):
    """Time source used by windows, drivers, backoff and health."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps."""

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch (UTC)."""

    def quality(self) -> ClockQuality:
        """Whether the wall clock is synchronised."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""


_TIME_ERROR = 5  # adjtimex(2): clock not synchronised


def _kernel_clock_synced() -> bool | None:
    """Ask the kernel (adjtimex) whether NTP has synchronised the clock; None if unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0 means "read only"
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


class SystemClock:
    """The real clocks of the machine."""

    def __init__(self, quality_ttl: float = 30.0) -> None:
        self._ttl = quality_ttl
        self._cached: tuple[float, ClockQuality] | None = None

    def monotonic(self) -> float:
        """Return :func:`time.monotonic`."""
        return time.monotonic()

    def time(self) -> float:
        """Return :func:`time.time`."""
        return time.time()

    def quality(self) -> ClockQuality:
        """Kernel sync state, re-read at most every ``quality_ttl`` seconds."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._ttl:
            synced = _kernel_clock_synced()
            self._cached = (now, ClockQuality.SYNCED if synced else ClockQuality.UNSYNCED)
        return self._cached[1]

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to.

    With ``auto_advance=True`` a ``sleep`` moves time forward at once (for code under test
    that runs alone); otherwise sleepers wait until :meth:`advance` passes their deadline,
    so a test steps the whole agent through fake time deterministically.
    """

    def __init__(self, start_wall: float = 1_767_225_600.0, start_mono: float = 1000.0,
                 quality: ClockQuality = ClockQuality.SYNCED, *,
                 auto_advance: bool = False) -> None:
        self._mono = start_mono
        self._offset = start_wall - start_mono
        self._quality = quality
        self.auto_advance = auto_advance
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        """Current fake monotonic time."""
        return self._mono

    def time(self) -> float:
        """Current fake wall time."""
        return self._mono + self._offset

    def quality(self) -> ClockQuality:
        """The configured quality."""
        return self._quality

    def set_quality(self, quality: ClockQuality) -> None:
        """Pretend NTP gained or lost sync."""
        self._quality = quality

    def advance(self, seconds: float) -> None:
        """Move both clocks forward and wake the sleepers whose deadline passed."""
        self._mono += seconds
        due = [f for t, f in self._sleepers if t <= self._mono + 1e-9]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self._mono + 1e-9]
        for future in due:
            if not future.done():
                future.set_result(None)

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock only (as NTP does at boot)."""
        self._offset += seconds

    @property
    def sleepers(self) -> int:
        """How many tasks wait on this clock."""
        return sum(not f.done() for _, f in self._sleepers)

    def advance_to_next(self) -> float:
        """Jump to the earliest sleeper's deadline (none: stay); returns the new time.

        With every task of a system waiting on the clock, this steps it event by event.
        """
        pending = [t for t, f in self._sleepers if not f.done()]
        if pending:
            self.advance(max(0.0, min(pending) - self._mono))
        return self._mono

    async def sleep(self, seconds: float) -> None:
        """Wait until fake time has moved ``seconds`` on (at once when auto-advancing)."""
        await asyncio.sleep(0)
        if self.auto_advance:
            self.advance(max(0.0, seconds))
            return
        if seconds <= 0:
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._mono + seconds, future))
        await future
