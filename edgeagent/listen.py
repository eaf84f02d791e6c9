"""``edgeagent listen SENSOR``: live decoded readings of one sensor, for the technician.

Opens one configured sensor with its own driver (the agent must not be running: it holds the
serial port), prints one line per sample with the time, every stream's value and unit and
running counters (samples, bad frames, last error). Only decoded values are printed, never
frames, audio or images; a microphone's driver already emits levels only. When the sensor
cannot be opened or stops answering, the plain message is printed and opening is retried every
2 s, so plugging the cable in shows values at once. Ctrl-C or ``--seconds`` ends with a
summary line; the exit code is 0 if any sample arrived, 1 otherwise. See docs/listen.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import signal
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from edgeagent.clock import Clock
from edgeagent.config import DEFAULT_CONFIG, EX_CONFIG, ConfigError, load_config
from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    QuantityClass,
    Reading,
    SensorConfig,
    StreamSpec,
)
from edgeagent.privacy import rfc3339

RETRY_SECONDS = 2.0
CLOSE_TIMEOUT = 2.0
SERVICE_HINT = "is the edgeagent service running? sudo systemctl stop edgeagent first"
#: How "another program holds the port" reads (pyserial's lock, EBUSY, ALSA's busy device).
_BUSY = re.compile(r"port busy|exclusively lock|device or resource busy|errno 11\]|errno 16\]|"
                   r"resource temporarily unavailable", re.I)
#: Byte dumps a message might carry (hex runs, "42 4D 00 1C …"): never shown.
_BYTES = re.compile(r"\b(?:[0-9a-f]{2}[ :]){3,}[0-9a-f]{2}\b|\b[0-9a-f]{9,}\b", re.I)
_MAX_MESSAGE = 240
#: Decimals per privacy class: PM and climate 2, sound levels 1, counts none.
_DECIMALS = {QuantityClass.PARTICULATE: 2, QuantityClass.CLIMATE: 2, QuantityClass.NOISE: 1,
             QuantityClass.PEOPLE_COUNT: 0, QuantityClass.PRESENCE: 0}


@dataclass
class ListenSummary:
    """What one listen session saw; :meth:`line` is the summary printed at the end."""

    sensor: str
    #: Sample sets read (one line each), warm-up samples included.
    samples: int = 0
    #: Of those, read while the sensor was still warming up.
    warmup_samples: int = 0
    #: Frames the driver rejected (FrameError: checksum, length, implausible values).
    bad_frames: int = 0
    #: Opens tried, and how many of them failed (DriverError while opening).
    open_attempts: int = 0
    failed_opens: int = 0
    #: Faults after a successful open (the sensor stopped answering, the port vanished).
    faults: int = 0
    last_error: str | None = None
    seconds: float = 0.0

    @property
    def bad_percent(self) -> float:
        """Bad frames as a percentage of all frames (good and bad)."""
        total = self.samples + self.bad_frames
        return 100.0 * self.bad_frames / total if total else 0.0

    @property
    def exit_code(self) -> int:
        """0 if any sample arrived, 1 otherwise."""
        return 0 if self.samples else 1

    def line(self) -> str:
        """E.g. ``120 samples, 3 bad frames (2.4 %), last error: bad checksum …``."""
        parts = [_plural(self.samples, "sample")]
        if self.warmup_samples:
            parts[0] += f" ({self.warmup_samples} warming up)"
        parts.append(f"{_plural(self.bad_frames, 'bad frame')} ({self.bad_percent:.1f} %)")
        if self.failed_opens:
            parts.append(f"{_plural(self.failed_opens, 'failed open')} of "
                         f"{self.open_attempts}")
        if self.faults:
            parts.append(_plural(self.faults, "fault"))
        parts.append(f"last error: {self.last_error or 'none'}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The summary as a JSON object (``"type": "summary"``)."""
        return {"type": "summary", "sensor": self.sensor, "samples": self.samples,
                "warmup_samples": self.warmup_samples, "bad_frames": self.bad_frames,
                "bad_percent": round(self.bad_percent, 1), "open_attempts": self.open_attempts,
                "failed_opens": self.failed_opens, "faults": self.faults,
                "last_error": self.last_error, "seconds": round(self.seconds, 3),
                "exit_code": self.exit_code}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def plain_error(exc: BaseException) -> str:
    """A driver error as one plain line: no byte dumps, bounded length, the service hint.

    Args:
        exc: The DriverError (or a driver crash) to describe.

    Returns:
        The message; if the port is held by another program, it asks whether the agent runs.
    """
    text = str(exc) if isinstance(exc, DriverError) else (
        f"driver crashed: {type(exc).__name__}: {exc}")
    text = " ".join(_BYTES.sub("<bytes hidden>", text).split())
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE - 1] + "…"
    if _BUSY.search(str(exc)):
        errno_at = text.find(": [Errno")
        if errno_at >= 0:  # pyserial's "[Errno 11] Could not exclusively lock port …"
            text = f"{text[:errno_at]}: in use by another program"
        text += f" — {SERVICE_HINT}"
    return text


def format_value(value: float, spec: StreamSpec | None) -> str:
    """A reading's value with the decimals of its class (2 for PM/climate, 1 for dB)."""
    decimals = _DECIMALS.get(spec.quantity, 2) if spec is not None else 2
    return f"{value:.{decimals}f}"


class _Session:
    """One listen run: the open/read/retry loop and the printing."""

    def __init__(self, config: SensorConfig, cls: type[Driver], *, clock: Clock, out: TextIO,
                 as_json: bool, i2c: Any, state_dir: Path | None, warmup: bool) -> None:
        self.config, self.cls, self.clock, self.out = config, cls, clock, out
        self.as_json, self.i2c, self.state_dir = as_json, i2c, state_dir
        self.hide_warmup = warmup
        self.specs = {spec.name: spec for spec in cls.streams(config)}
        self.summary = ListenSummary(config.id)
        self.started = clock.monotonic()
        self._driver: Driver | None = None
        self._said_warming = False
        self._reopen = False

    # -- output -------------------------------------------------------------------------------
    def emit(self, kind: str, text: str, **fields: Any) -> None:
        if self.as_json:
            record = {"type": kind, "time": rfc3339(self.clock.time()),
                      "sensor": self.config.id, **fields}
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self.out.write(f"{self._clock_text()}  {text}\n")
        self.out.flush()

    def _clock_text(self) -> str:
        return _time.strftime("%H:%M:%S", _time.localtime(self.clock.time()))

    def _counters(self, *, with_error: bool = True) -> str:
        s = self.summary
        error = f", last error: {s.last_error or 'none'}" if with_error else ""
        return f"[samples {s.samples}, bad frames {s.bad_frames}{error}]"

    def _counter_fields(self) -> dict[str, Any]:
        s = self.summary
        return {"samples": s.samples, "bad_frames": s.bad_frames, "last_error": s.last_error}

    def header(self) -> None:
        names = ", ".join(f"{spec.name} ({spec.unit})" for spec in self.specs.values())
        where = _where(self.config)
        self.emit("start", f"listening to {self.config.id} ({self.cls.model_of(self.config)}"
                  f"{', ' + where if where else ''}): {names}; Ctrl-C to stop",
                  driver=self.config.driver, model=self.cls.model_of(self.config),
                  streams={spec.name: spec.unit for spec in self.specs.values()},
                  warmup_s=self.config.warmup, hide_warmup=self.hide_warmup)

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            try:
                await self._open_and_read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # DriverError, or a driver bug: say so, retry
                message = plain_error(exc)
                self.summary.last_error = message
                await self._close()
                what = ("reopening" if self._reopen else
                        f"open attempt {self.summary.open_attempts} failed, retrying")
                self.emit("error", f"{message}; {what} in {RETRY_SECONDS:g} s",
                          error=message, attempt=self.summary.open_attempts,
                          retry_in_s=RETRY_SECONDS, **self._counter_fields())
            await self.clock.sleep(RETRY_SECONDS)

    async def _open_and_read(self) -> None:
        context = DriverContext(self.clock, state_dir=self.state_dir)
        if self.i2c is not None:
            context.i2c = self.i2c
        self.summary.open_attempts += 1
        try:
            driver = self.cls(self.config, context)
            self._driver = driver
            await driver.open()
        except Exception:
            self.summary.failed_opens += 1
            self._reopen = False
            raise
        self._reopen = True
        opened = self.clock.monotonic()
        warm_until = opened + self.config.warmup
        self._said_warming = False
        self.emit("open", f"{self.config.id} open (attempt {self.summary.open_attempts})"
                  + (f"; warming up for {self.config.warmup:g} s" if self.config.warmup
                     else ""), attempt=self.summary.open_attempts)
        try:
            while True:
                try:
                    readings = await driver.read()
                except FrameError as exc:
                    self._bad_frame(exc)
                    await asyncio.sleep(0)  # a driver failing without I/O must not starve Ctrl-C
                    continue
                if readings is None:  # the driver itself is still warming up
                    await asyncio.sleep(0)
                    continue
                if readings:
                    self._sample(readings, warming=readings[0].t_monotonic < warm_until)
        except Exception:
            self.summary.faults += 1
            raise

    def _bad_frame(self, exc: FrameError) -> None:
        message = plain_error(exc)
        self.summary.bad_frames += 1
        self.summary.last_error = message
        self.emit("bad_frame", f"bad frame: {message}  {self._counters(with_error=False)}",
                  error=message, **self._counter_fields())

    def _sample(self, readings: list[Reading], *, warming: bool) -> None:
        self.summary.samples += 1
        if warming:
            self.summary.warmup_samples += 1
            if self.hide_warmup:
                if not self._said_warming:
                    self._said_warming = True
                    self.emit("warming_up", "warming up: readings hidden until the configured "
                              f"warm-up of {self.config.warmup:g} s is over",
                              **self._counter_fields())
                return
        values = {}
        parts = []
        for reading in readings:
            spec = self.specs.get(reading.stream)
            unit = spec.unit if spec is not None else ""
            text = format_value(reading.value, spec)
            parts.append(f"{reading.stream} {text}{' ' + unit if unit else ''}")
            number = float(text) if math.isfinite(reading.value) else None
            values[reading.stream] = {"value": number, "unit": unit}
        mark = "  (warming up)" if warming else ""
        self.emit("sample", f"{', '.join(parts)}{mark}  {self._counters()}", values=values,
                  warming_up=warming, **self._counter_fields())

    async def _close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await driver.close()

    async def close(self) -> None:
        """Release the sensor (also after a cancelled read)."""
        await self._close()


def _where(config: SensorConfig) -> str:
    port = getattr(config, "port", None)
    if port:
        return f"port {port}"
    bus, address = getattr(config, "bus", None), getattr(config, "address", None)
    if bus is not None and address is not None:
        return f"I2C bus {bus} address 0x{address:02X}"
    device = getattr(config, "device", None)
    return f"device {device}" if device and getattr(config, "source", "") == "alsa" else ""


async def listen(config: SensorConfig, cls: type[Driver], *, clock: Clock, out: TextIO,
                 seconds: float | None, as_json: bool, i2c: Any = None,
                 state_dir: Path | None = None, warmup: bool = False,
                 stop: asyncio.Event | None = None) -> ListenSummary:
    """Print live readings of one sensor until ``seconds`` pass on ``clock`` or ``stop`` is set.

    Args:
        config: The sensor's validated config entry.
        cls: Its driver class (``AgentConfig.driver_class``).
        clock: Paces retries and ``seconds``; the driver gets it too.
        out: Where lines go (text, or one JSON object per line).
        seconds: How long to listen; None until ``stop`` (Ctrl-C).
        as_json: One JSON object per line instead of text.
        i2c: Bus factory for I2C drivers (tests: ``FakeBuses``); None for the real buses.
        state_dir: The agent's state directory (a microphone's stored calibration).
        warmup: Hide samples read during the configured warm-up instead of marking them.
        stop: Set to end the session (the CLI sets it on Ctrl-C).

    Returns:
        The counters; the summary line has already been printed.
    """
    session = _Session(config, cls, clock=clock, out=out, as_json=as_json, i2c=i2c,
                       state_dir=state_dir, warmup=warmup)
    session.header()
    waiters: set[asyncio.Task[Any]] = set()
    runner = asyncio.create_task(session.run())
    try:
        if seconds is not None:
            waiters.add(asyncio.create_task(clock.sleep(seconds)))
        if stop is not None:
            waiters.add(asyncio.create_task(stop.wait()))
        await asyncio.wait({runner, *waiters}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (runner, *waiters):
            task.cancel()
        for task in (runner, *waiters):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await session.close()
    summary = session.summary
    summary.seconds = clock.monotonic() - session.started
    if as_json:
        out.write(json.dumps(summary.as_dict(), ensure_ascii=False) + "\n")
    else:
        out.write(f"{summary.line()}\n")
    out.flush()
    return summary


# -- command line ---------------------------------------------------------------------------
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``listen`` on the CLI's subparsers (sets ``func=main``)."""
    parser = subparsers.add_parser(
        "listen", help="show live readings of one sensor (stop the agent first)",
        description="Open one configured sensor and print its decoded readings with bad-frame "
                    "counters; values only, never raw frames or audio. Stop the edgeagent "
                    "service first: it holds the port. Exit 0 if any sample arrived, else 1.")
    parser.add_argument("sensor", help="sensor id from the config")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--warmup", action="store_true",
                        help="hide readings during the configured warm-up (default: show them, "
                             "marked '(warming up)')")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run ``listen`` for parsed ``args``; return the exit code (0 samples seen, 1 none)."""
    from edgeagent.clock import SystemClock

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"Invalid config: {exc}", file=sys.stderr)
        return EX_CONFIG
    sensor = next((s for s in config.sensors if s.id == args.sensor), None)
    if sensor is None:
        known = ", ".join(s.id for s in config.sensors) or "none"
        print(f"listen: no sensor {args.sensor!r} in {args.config} (sensors: {known})",
              file=sys.stderr)
        return 2
    cls = config.driver_class(sensor)

    async def run() -> ListenSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await listen(sensor, cls, clock=SystemClock(), out=sys.stdout,
                            seconds=args.seconds, as_json=args.json,
                            state_dir=config.state_dir, warmup=args.warmup, stop=stop)

    return asyncio.run(run()).exit_code
