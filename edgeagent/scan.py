"""``edgeagent scan``: which known sensor is wired where, and a config snippet to paste.

Serial ports are first only listened to, at every speed a streaming sensor uses (PMS5003 and
SDS011 at 9600 baud, LD2410 and LD2450 at 256 000): each driver's
:meth:`~edgeagent.driver.Driver.recognise_stream` looks for its own frames in what arrived and
needs at least :data:`MIN_FRAMES` valid ones. Only on a port where nothing streams are the
drivers' documented read-only identification commands sent
(:meth:`~edgeagent.driver.Driver.query_uart`, e.g. the SPS30's SHDLC "device information").
Ports are scanned side by side. On every I2C bus each driver's
:meth:`~edgeagent.driver.Driver.identify_i2c` is tried at its addresses, in
:attr:`~edgeagent.driver.Driver.scan_order`; the first driver that recognises its chip ends the
probing of that address, so a shared address (0x69: SPS30, SEN5x, AMG8833) is resolved by the
ID reads. A NACK means "nothing there" and stays silent.

The scan never changes a setting: it sends only what the hooks send, and every byte it wrote
is listed in the ``--json`` output (``sent``). Raw frames and serial numbers are never printed.

Everything the scan touches comes through :class:`ScanEnv` (port and bus discovery, the serial
opener, the I2C bus factory, the clock), so tests run it on ptys and fake buses. The core knows
no driver: all sensor knowledge is in the drivers' hooks. Exit code 0 if something was found,
1 if nothing, 2 on usage errors. See docs/scan.md.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import glob
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from edgeagent.clock import Clock, SystemClock
from edgeagent.driver import (
    Driver,
    DriverError,
    FrameError,
    QuantityClass,
    available_drivers,
)
from edgeagent.i2c import BusFactory, I2cBus, I2cDevice, open_smbus
from edgeagent.privacy import PRESETS
from edgeagent.serialport import SerialTransport
from edgeagent.units import format_duration

DEFAULT_SECONDS = 2.5
MAX_SECONDS = 60.0
#: Valid frames a streaming sensor must show before it counts as found.
MIN_FRAMES = 2
#: Default query wait when a hook gives none: SHDLC and SDS011 answer within ~20 ms.
QUERY_SECONDS = 0.3
READ_SLICE = 0.1  # s per read while listening
DEFAULT_PORT_PATTERNS = ("/dev/serial0", "/dev/ttyAMA*", "/dev/ttyS0", "/dev/ttyUSB*",
                         "/dev/ttyACM*")
#: Sensor id prefix in the snippet per the privacy class of a driver's first stream.
ID_PREFIXES = {QuantityClass.PARTICULATE: "pm", QuantityClass.CLIMATE: "climate",
               QuantityClass.NOISE: "noise", QuantityClass.PEOPLE_COUNT: "people",
               QuantityClass.PRESENCE: "presence"}
Status = Literal["found", "unusable", "unknown", "none", "error"]
SYMBOLS: dict[str, str] = {"found": "✔", "unusable": "!", "unknown": "?", "none": "-",
                           "error": "✘"}
_NACK = "no answer from"  # how edgeagent.i2c words a NACK
_HEX = re.compile(r"\b(?:[0-9a-f]{2}[ :]){3,}[0-9a-f]{2}\b", re.I)  # byte dumps: never shown


# -- the environment ------------------------------------------------------------------------
def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def default_ports(patterns: Iterable[str] = DEFAULT_PORT_PATTERNS) -> list[str]:
    """The serial ports that exist, in pattern order (``ttyUSB2`` before ``ttyUSB10``)."""
    found: list[str] = []
    for pattern in patterns:
        names = sorted(glob.glob(pattern), key=_natural) if "*" in pattern else (
            [pattern] if os.path.exists(pattern) else [])
        found += [name for name in names if name not in found]
    return found


def default_buses() -> list[int]:
    """Every ``/dev/i2c-N``, by number."""
    numbers = []
    for name in glob.glob("/dev/i2c-*"):
        suffix = name.rsplit("-", 1)[-1]
        if suffix.isdigit():
            numbers.append(int(suffix))
    return sorted(numbers)


def port_holders(port: str) -> list[str]:
    """Programs that have ``port`` open, as ``name (pid N)``; best effort (needs /proc)."""
    target = os.path.realpath(port)
    holders = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            fds = os.listdir(f"{proc}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{proc}/fd/{fd}") == target:
                    name = Path(f"{proc}/comm").read_text().strip()
                    holders.append(f"{name} (pid {proc.rsplit('/', 1)[-1]})")
                    break
            except OSError:
                continue
    return holders


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "$USER"


def installed_drivers() -> tuple[dict[str, type[Driver]], list[str]]:
    """Every installed driver class by name, and a message per driver that failed to load."""
    classes: dict[str, type[Driver]] = {}
    problems = []
    for name, entry in sorted(available_drivers().items()):
        try:
            cls = entry.load()
        except Exception as exc:  # a broken driver must not stop the scan of the others
            problems.append(f"driver {name} could not be loaded ({type(exc).__name__}: {exc}); "
                            "its sensors are not looked for")
            continue
        if isinstance(cls, type) and issubclass(cls, Driver):
            classes[name] = cls
    return classes, problems


def _open_serial(port: str, baud: int) -> SerialTransport:
    return SerialTransport(port, baud)


@dataclass
class ScanEnv:
    """The boundary of the scan; tests replace every part of it."""

    #: A not-yet-open transport for (port, baud): ``open``, ``read_some``, ``write``, ``close``.
    open_serial: Callable[[str, int], Any] = _open_serial
    i2c_factory: BusFactory = field(default=open_smbus)
    ports: Callable[[], list[str]] = default_ports
    buses: Callable[[], list[int]] = default_buses
    #: Where a port name leads (symlinks such as /dev/serial0 resolved).
    resolve: Callable[[str], str] = os.path.realpath
    holders: Callable[[str], list[str]] = port_holders
    user: Callable[[], str] = _user
    drivers: Callable[[], tuple[dict[str, type[Driver]], list[str]]] = installed_drivers
    #: Waits between an I2C command and its answer (the chips' execution times).
    clock: Clock = field(default_factory=SystemClock)


# -- results --------------------------------------------------------------------------------
@dataclass
class ScanFinding:
    """One line of the report: a sensor found, a problem, or "nothing here"."""

    status: Status
    where: str  # "/dev/ttyAMA0" or "I2C bus 1 address 0x44" or "I2C bus 3"
    message: str
    transport: Literal["uart", "i2c", "none"] = "none"
    driver: str | None = None
    model: str | None = None
    port: str | None = None
    baud: int | None = None
    bus: int | None = None
    address: int | None = None
    frames: int | None = None
    detail: str | None = None
    note: str | None = None
    #: The config entry for the snippet (None: nothing to configure).
    entry: dict[str, Any] | None = None
    #: Keys of ``entry`` copied from the driver's example config (to be checked on site).
    examples: list[str] | None = None


@dataclass
class ScanReport:
    """Everything one scan learned, and every byte it sent."""

    findings: list[ScanFinding] = field(default_factory=list)
    #: Bytes written, per port or per "I2C bus N address 0xAA", in order (for the audit).
    sent: dict[str, list[bytes]] = field(default_factory=dict)
    seconds: float = DEFAULT_SECONDS

    @property
    def found(self) -> list[ScanFinding]:
        """Findings that identified a sensor (usable or not)."""
        return [f for f in self.findings if f.status in ("found", "unusable")]

    @property
    def exit_code(self) -> int:
        """0 if something was found, 1 if nothing."""
        return 0 if self.found else 1

    def sensors(self) -> list[dict[str, Any]]:
        """The config entries, in report order."""
        return [f.entry for f in self.findings if f.status == "found" and f.entry is not None]


# -- UART -----------------------------------------------------------------------------------
class UartProbe:
    """What a :meth:`~edgeagent.driver.Driver.query_uart` hook may do with an open port."""

    def __init__(self, transport: Any, port: str, baud: int, sent: list[bytes]) -> None:
        self.transport = transport
        self.port = port
        self.baud = baud
        self._sent = sent

    async def exchange(self, command: bytes, seconds: float = QUERY_SECONDS,
                       done: Callable[[bytes], bool] | None = None) -> bytes:
        """Write ``command``; return what arrives until ``done(received)`` or ``seconds`` pass."""
        self._sent.append(bytes(command))
        await self.transport.write(command)
        return await listen(self.transport, seconds, done)


async def listen(transport: Any, seconds: float,
                 done: Callable[[bytes], bool] | None = None) -> bytes:
    """Everything the port receives within ``seconds`` (event-loop time, like the drivers)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    received = bytearray()
    while (remaining := deadline - loop.time()) > 0:
        received += await transport.read_some(min(READ_SLICE, remaining))
        if done is not None and done(bytes(received)):
            break
    return bytes(received)


def _open_problem(port: str, exc: BaseException, env: ScanEnv) -> str:
    """Why a port cannot be opened, in plain words with the fix."""
    cause = exc.__cause__ or exc
    number = getattr(cause, "errno", None)
    text = f"{exc} {cause}"
    if number == errno.ENOENT or "No such file" in text or "no such device" in text:
        return f"{port} does not exist (unplugged, or the UART is not enabled)"
    if number == errno.EACCES or "Permission denied" in text or "permission denied" in text:
        return (f"no permission to open {port}: add the user to the dialout group "
                f"(sudo usermod -aG dialout {env.user()}), then log out and in again")
    if number in (errno.EBUSY, errno.EAGAIN) or re.search(
            r"exclusively lock|busy|errno 11\]|errno 16\]", text, re.I):
        holders = [h for h in env.holders(port) if f"pid {os.getpid()})" not in h]
        who = f"in use by {', '.join(holders)}" if holders else "in use by another program"
        return (f"{port} is busy: {who} (is the edgeagent service running? sudo systemctl "
                "stop edgeagent; a serial console on the port: sudo raspi-config nonint "
                "do_serial_cons 1)")
    if "cannot open" not in str(exc):  # the port opened, then failed (unplugged, hung up)
        return _HEX.sub("<bytes>", str(exc))
    return f"cannot open {port}: {_HEX.sub('<bytes>', str(cause))}"


async def _with_port(env: ScanEnv, port: str, baud: int,
                     use: Callable[[Any], Awaitable[Any]]) -> Any:
    transport = env.open_serial(port, baud)
    try:
        await transport.open()
        return await use(transport)
    finally:
        await transport.close()


def _best(results: list[tuple[str, type[Driver], dict[str, Any]]]
          ) -> tuple[str, type[Driver], dict[str, Any]] | None:
    return max(results, key=lambda r: int(r[2].get("frames") or 0), default=None)


async def scan_port(port: str, aliases: list[str], drivers: dict[str, type[Driver]],
                    seconds: float, env: ScanEnv, report: ScanReport) -> ScanFinding:
    """Listen at each streaming speed, then (if silent) ask; return the port's one finding."""
    where = port if not aliases else f"{port} ({', '.join(aliases)})"
    streamers = _by_baud(drivers, "recognise_stream")
    askers = _by_baud(drivers, "query_uart")
    sent = report.sent.setdefault(port, [])
    listened: list[int] = []
    try:
        for baud, group in streamers.items():
            data = await _with_port(env, port, baud, lambda t: listen(t, seconds))
            listened.append(baud)
            best = _best(_recognise(group, data, report, where))
            if best is not None and int(best[2].get("frames") or 0) < MIN_FRAMES:
                # one frame: a slow sensor (PMS5003: 2.3 s apart) or chance; listen once more
                data += await _with_port(env, port, baud, lambda t: listen(t, seconds))
                best = _best(_recognise(group, data, report, where))
            if best is not None and int(best[2].get("frames") or 0) >= MIN_FRAMES:
                return _uart_finding(where, port, baud, *best)
            if best is not None:
                name, cls, result = best
                return ScanFinding(
                    "unknown", where, f"{where} at {baud} baud: only one frame that looks like "
                    f"a {result.get('model') or cls.model}; run again with --seconds "
                    f"{max(6.0, 3 * seconds):g}", "uart", name, result.get("model"), port,
                    baud, frames=1)
        for baud, group in askers.items():
            async def ask(transport: Any, baud: int = baud,
                          group: list[tuple[str, type[Driver]]] = group
                          ) -> tuple[str, type[Driver], dict[str, Any]] | None:
                for name, cls in group:
                    result = await _call_hook(
                        report, where, name, cls.query_uart(UartProbe(transport, port, baud,
                                                                      sent)))
                    if result:
                        return name, cls, result
                return None

            found = await _with_port(env, port, baud, ask)
            if found is not None:
                return _uart_finding(where, port, baud, *found)
    except DriverError as exc:
        return ScanFinding("error", where, _open_problem(port, exc, env), "uart", port=port)
    asked = f"; asked for {', '.join(_models(askers))}" if askers else ""
    return ScanFinding("none", where, f"{where}: no known sensor (listened at "
                       f"{', '.join(str(b) for b in listened) or 'no'} baud{asked})", "uart",
                       port=port)


def _models(groups: dict[int, list[tuple[str, type[Driver]]]]) -> list[str]:
    return [cls.model for group in groups.values() for _, cls in group]


def _by_baud(drivers: dict[str, type[Driver]], hook: str
             ) -> dict[int, list[tuple[str, type[Driver]]]]:
    """Drivers overriding ``hook`` with a scan speed, grouped by speed (ascending)."""
    groups: dict[int, list[tuple[str, type[Driver]]]] = {}
    for name, cls in sorted(drivers.items()):
        if cls.scan_baud and getattr(cls, hook).__func__ is not getattr(Driver, hook).__func__:
            groups.setdefault(cls.scan_baud, []).append((name, cls))
    return dict(sorted(groups.items()))


def _recognise(group: list[tuple[str, type[Driver]]], data: bytes, report: ScanReport,
               where: str) -> list[tuple[str, type[Driver], dict[str, Any]]]:
    results = []
    for name, cls in group:
        try:
            result = cls.recognise_stream(data)
        except Exception as exc:  # a hook bug is one driver's problem, never a traceback
            _hook_failed(report, where, name, exc)
            continue
        if result:
            results.append((name, cls, result))
    return results


def _uart_finding(where: str, port: str, baud: int, name: str, cls: type[Driver],
                  result: dict[str, Any]) -> ScanFinding:
    model = result.get("model") or cls.model
    frames = result.get("frames")
    what = ", ".join(x for x in (f"{frames} frames" if frames else None, result.get("detail"))
                     if x)
    message = f"{where} at {baud} baud: {model}" + (f" ({what})" if what else "")
    entry = _entry(cls, {"port": port}, result.get("config", {}))
    return ScanFinding("found" if entry is not None else "unusable", where, message, "uart",
                       name, model, port, baud, frames=frames, detail=result.get("detail"),
                       note=result.get("note"), entry=entry)


#: Keys of a snippet entry that the scan itself decides (the rest come from the driver).
_OWN_KEYS = ("id", "driver", "port", "bus", "address", "window")


def _entry(cls: type[Driver], where: dict[str, Any], extra: dict[str, Any] | None
           ) -> dict[str, Any] | None:
    """The driver's ``sample_config`` with the place found and the hook's fields; None: none."""
    if extra is None:
        return None
    sample = {k: v for k, v in cls.sample_config.items() if k not in ("id", "port", "bus",
                                                                       "address")}
    return {"driver": sample.pop("driver"), **where, **sample, **extra}


# -- I2C ------------------------------------------------------------------------------------
class _RecordingBus:
    """The shared bus of one scan: logs writes per address, remembers who acknowledged."""

    def __init__(self, bus: I2cBus, number: int, sent: dict[str, list[bytes]]) -> None:
        self._bus = bus
        self.number = number
        self._sent = sent
        self.acked: set[int] = set()

    def _log(self, address: int, data: bytes) -> None:
        self._sent.setdefault(i2c_where(self.number, address), []).append(bytes(data))

    def write(self, address: int, data: bytes) -> None:
        self._log(address, data)
        self._bus.write(address, data)
        self.acked.add(address)

    def read(self, address: int, length: int) -> bytes:
        data = self._bus.read(address, length)
        self.acked.add(address)
        return data

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        self._log(address, data)
        answer = self._bus.write_read(address, data, length)
        self.acked.add(address)
        return answer

    def close(self) -> None:
        """Kept open for the next address; the scan closes the real bus at the end."""


def i2c_where(bus: int, address: int) -> str:
    """``I2C bus 1 address 0x44``."""
    return f"I2C bus {bus} address 0x{address:02X}"


def _bus_problem(number: int, exc: BaseException, env: ScanEnv) -> str:
    node = f"/dev/i2c-{number}"
    if isinstance(exc, FileNotFoundError):
        return (f"{node} does not exist: I2C bus {number} is not enabled (sudo raspi-config "
                "nonint do_i2c 0, or the overlay that creates it)")
    if isinstance(exc, PermissionError):
        return (f"no permission to open {node}: add the user to the i2c group (sudo usermod "
                f"-aG i2c {env.user()}), then log out and in again")
    return f"cannot open {node}: {getattr(exc, 'strerror', None) or exc}"


async def scan_bus(number: int, drivers: dict[str, type[Driver]], env: ScanEnv,
                   report: ScanReport) -> list[ScanFinding]:
    """Every known address on one bus; one finding per chip (or one for a silent bus)."""
    by_address: dict[int, list[tuple[str, type[Driver]]]] = {}
    for name, cls in sorted(drivers.items(), key=lambda item: (item[1].scan_order, item[0])):
        if cls.identify_i2c.__func__ is Driver.identify_i2c.__func__:  # type: ignore[attr-defined]
            continue
        for address in cls.scan_addresses:
            by_address.setdefault(address, []).append((name, cls))
    if not by_address:
        return []
    try:
        real = await asyncio.to_thread(env.i2c_factory, number)
    except OSError as exc:
        return [ScanFinding("error", f"I2C bus {number}", _bus_problem(number, exc, env), "i2c",
                            bus=number)]
    bus = _RecordingBus(real, number, report.sent)
    findings: list[ScanFinding] = []
    try:
        for address, candidates in sorted(by_address.items()):
            finding = await _scan_address(bus, number, address, candidates, env, report)
            if finding is not None:
                findings.append(finding)
    finally:
        await asyncio.to_thread(real.close)
    if not findings:
        addresses = ", ".join(f"0x{a:02X}" for a in sorted(by_address))
        findings.append(ScanFinding("none", f"I2C bus {number}", f"I2C bus {number}: no known "
                                    f"sensor (asked at {addresses})", "i2c", bus=number))
    return findings


async def _scan_address(bus: _RecordingBus, number: int, address: int,
                        candidates: list[tuple[str, type[Driver]]], env: ScanEnv,
                        report: ScanReport) -> ScanFinding | None:
    where = i2c_where(number, address)
    errors: list[str] = []
    for name, cls in candidates:
        device = I2cDevice(number, address, lambda _n: bus)
        await device.open()
        try:
            result = await cls.identify_i2c(device, env.clock)
        except FrameError:
            continue  # garbled answer (bad CRC, short read): not this driver's chip
        except DriverError as exc:
            if _NACK not in str(exc):
                errors.append(_HEX.sub("<bytes>", str(exc)))
            continue
        except Exception as exc:  # a hook bug is one driver's problem, never a traceback
            _hook_failed(report, where, name, exc)
            continue
        finally:
            await device.close()
        if result:
            return _i2c_finding(where, number, address, name, cls, result, candidates)
    if errors:
        return ScanFinding("error", where, f"{where}: {'; '.join(dict.fromkeys(errors))}",
                           "i2c", bus=number, address=address)
    if address in bus.acked:
        expected = ", ".join(dict.fromkeys(cls.model for _, cls in candidates))
        return ScanFinding("unknown", where, f"{where}: something answers, but no known sensor "
                           f"recognised it (expected here: {expected})", "i2c", bus=number,
                           address=address)
    return None


def _i2c_finding(where: str, bus: int, address: int, name: str, cls: type[Driver],
                 result: dict[str, Any], candidates: list[tuple[str, type[Driver]]]
                 ) -> ScanFinding:
    model = result.get("model") or cls.model
    detail = result.get("detail")
    others = list(dict.fromkeys(c.model for n, c in candidates if n != name))
    shared = (f"0x{address:02X} is also used by {' and '.join(others)}: the ID read says "
              "which one answered") if others else None
    what = "; ".join(x for x in (detail, shared) if x)
    message = f"{where}: {model}" + (f" ({what})" if what else "")
    entry = _entry(cls, {"bus": bus, "address": address}, result.get("config", {}))
    return ScanFinding("found" if entry is not None else "unusable", where, message, "i2c",
                       name, model, bus=bus, address=address, detail=detail,
                       note=result.get("note"), entry=entry)


# -- running --------------------------------------------------------------------------------
def _hook_failed(report: ScanReport, where: str, name: str, exc: BaseException) -> None:
    report.findings.append(ScanFinding(
        "error", where, f"{where}: the {name} driver's scan hook failed ({type(exc).__name__}: "
        f"{_HEX.sub('<bytes>', str(exc))}); please report this bug"))


async def _call_hook(report: ScanReport, where: str, name: str,
                     call: Awaitable[dict[str, Any] | None]) -> dict[str, Any] | None:
    try:
        return await call
    except DriverError:
        raise  # the port itself failed: the caller reports it
    except Exception as exc:
        _hook_failed(report, where, name, exc)
        return None


def _dedupe_ports(names: Iterable[str], env: ScanEnv) -> list[tuple[str, list[str]]]:
    """(port, other names of the same device); the first name given is kept."""
    seen: dict[str, tuple[str, list[str]]] = {}
    for name in names:
        target = env.resolve(name) if "://" not in name else name
        if target in seen:
            if name != seen[target][0] and name not in seen[target][1]:
                seen[target][1].append(name)
        else:
            seen[target] = (name, [target] if target != name else [])
    return list(seen.values())


async def run_scan(*, uart: list[str] | None = None, i2c: list[int] | None = None,
                   seconds: float = DEFAULT_SECONDS, env: ScanEnv | None = None) -> ScanReport:
    """Scan ``uart`` ports and ``i2c`` buses (None: discover them; [] : skip that kind)."""
    env = env or ScanEnv()
    report = ScanReport(seconds=seconds)
    drivers, problems = env.drivers()
    for problem in problems:
        report.findings.append(ScanFinding("error", "drivers", problem))
    uart_drivers = {n: c for n, c in drivers.items() if c.transport == "uart" and c.scan_baud}
    i2c_drivers = {n: c for n, c in drivers.items() if c.transport == "i2c" and c.scan_addresses}
    ports = _dedupe_ports(env.ports() if uart is None else uart, env)
    buses = sorted(set(env.buses() if i2c is None else i2c))
    port_tasks = [scan_port(port, aliases, uart_drivers, seconds, env, report)
                  for port, aliases in ports]
    uart_results, i2c_results = await asyncio.gather(
        asyncio.gather(*port_tasks), _scan_buses(buses, i2c_drivers, env, report))
    report.findings += list(uart_results) + i2c_results
    if not ports and uart is None:
        report.findings.append(ScanFinding("none", "serial", "no serial ports found ("
                                           f"{', '.join(DEFAULT_PORT_PATTERNS)})"))
    if not buses and i2c is None:
        report.findings.append(ScanFinding(
            "none", "i2c", "no I2C buses found (/dev/i2c-*): enable I2C with sudo raspi-config "
            "nonint do_i2c 0"))
    _name_entries(report, drivers)
    return report


async def _scan_buses(buses: list[int], drivers: dict[str, type[Driver]], env: ScanEnv,
                      report: ScanReport) -> list[ScanFinding]:
    findings: list[ScanFinding] = []
    for number in buses:
        findings += await scan_bus(number, drivers, env, report)
    return findings


def _name_entries(report: ScanReport, drivers: dict[str, type[Driver]]) -> None:
    """Give each entry an id (pm-1, climate-1 …) and check it against its driver's Config."""
    counts: dict[str, int] = {}
    for finding in report.findings:
        if finding.entry is None or finding.status != "found" or finding.driver is None:
            continue
        cls = drivers[finding.driver]
        entry = dict(finding.entry)
        entry.pop("id", None)
        try:
            config = cls.Config.model_validate({"id": "scan", **entry})
            specs = cls.streams(config)
        except Exception as exc:  # the snippet must be ready to paste: leave a bad one out
            finding.status = "unusable"
            finding.note = f"no config entry: the {finding.driver} driver rejects it ({exc})"
            finding.entry = None
            continue
        # a window every preset but demo allows: the snippet must pass check-config as pasted
        floor = max((policy[spec.quantity].min_window for name, policy in PRESETS.items()
                     if name != "demo" for spec in specs), default=0.0)
        if config.window < floor:
            entry["window"] = format_duration(floor)
        prefix = ID_PREFIXES.get(specs[0].quantity, "sensor") if specs else "sensor"
        counts[prefix] = counts.get(prefix, 0) + 1
        finding.entry = {"id": f"{prefix}-{counts[prefix]}", **entry}
        finding.examples = [key for key in entry if key not in _OWN_KEYS
                            and key in cls.sample_config] or None


# -- output ---------------------------------------------------------------------------------
def _yaml_value(key: str, value: Any) -> str:
    if key == "address" and isinstance(value, int) and not isinstance(value, bool):
        return f"0x{value:02X}"
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, sort_keys=False,
                          width=10_000).strip().removesuffix("...").strip()


def config_snippet(report: ScanReport) -> str:
    """The ``sensors:`` list of every usable finding, YAML ready to paste."""
    lines = ["sensors:"]
    for finding in report.findings:
        if finding.status != "found" or finding.entry is None:
            continue
        lines.append(f"  # {finding.model} on {finding.where}")
        if finding.examples:
            lines.append(f"  # {', '.join(finding.examples)}: the driver's example values, set "
                         "your own")
        for index, (key, value) in enumerate(finding.entry.items()):
            lines.append(f"  {'- ' if index == 0 else '  '}{key}: {_yaml_value(key, value)}")
    return "\n".join(lines) + "\n"


def format_text(report: ScanReport) -> str:
    """One line per finding (notes below), then the config snippet or what to check."""
    lines = []
    for finding in report.findings:
        lines.append(f"{SYMBOLS[finding.status]} {finding.message}")
        if finding.note:
            lines.append(f"  note: {finding.note}")
    if report.sensors():
        lines += ["", "Config snippet:", config_snippet(report).rstrip("\n")]
    elif not report.found:
        lines += ["", "Nothing found. Check the wiring (sensor TX to the Pi's RX), the supply and "
                  "the I2C pull-ups; stop the edgeagent service (it holds the ports); a PM sensor "
                  "that edgeagent put to sleep streams again after a power cycle; try a longer "
                  "--seconds for slow sensors."]
    return "\n".join(lines)


def to_json(report: ScanReport) -> str:
    """Findings, config entries, the snippet and every byte sent (hex), as one JSON object."""
    findings = []
    for finding in report.findings:
        item = {k: v for k, v in asdict(finding).items() if v is not None}
        findings.append(item)
    return json.dumps({
        "exit_code": report.exit_code, "seconds": report.seconds, "findings": findings,
        "sensors": report.sensors(), "snippet": config_snippet(report),
        "sent": {where: [data.hex(" ").upper() for data in sent]
                 for where, sent in report.sent.items() if sent}},
        indent=2, ensure_ascii=False)


# -- CLI ------------------------------------------------------------------------------------
def _bus_number(text: str) -> int:
    match = re.fullmatch(r"(?:/dev/i2c-)?(\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not an I2C bus (a number such as 1, or "
                                         "/dev/i2c-1)")
    return int(match.group(1))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_SECONDS:g} s")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``scan`` on the CLI's subparsers (sets ``func=main``)."""
    parser = subparsers.add_parser(
        "scan", help="find known sensors on serial ports and I2C buses",
        description="Listen on serial ports for the frames of streaming sensors, send only "
                    "documented read/ID commands elsewhere, identify I2C chips by their ID "
                    "reads, and print a config snippet. Exit 0 if something was found, 1 if "
                    "nothing, 2 on usage errors. Giving only --uart (or only --i2c) scans only "
                    "that kind.")
    parser.add_argument("--uart", metavar="PORT", nargs="+", action="extend",
                        help="serial port(s) to scan (default: /dev/serial0, /dev/ttyAMA*, "
                             "/dev/ttyS0, /dev/ttyUSB*, /dev/ttyACM* that exist)")
    parser.add_argument("--i2c", metavar="BUS", nargs="+", action="extend", type=_bus_number,
                        help="I2C bus number(s) to scan (default: every /dev/i2c-N)")
    parser.add_argument("--seconds", type=_seconds, default=DEFAULT_SECONDS,
                        help=f"listening time per port and speed (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace, env: ScanEnv | None = None) -> int:
    """Run the scan for parsed ``args``; print the report; return the exit code."""
    uart, i2c = args.uart, args.i2c
    if uart is not None and i2c is None:
        i2c = []
    elif i2c is not None and uart is None:
        uart = []
    try:
        report = asyncio.run(run_scan(uart=uart, i2c=i2c, seconds=args.seconds, env=env))
    except KeyboardInterrupt:
        print("scan interrupted")
        return 1
    print(to_json(report) if args.json else format_text(report))
    return report.exit_code


__all__ = ["ScanEnv", "ScanFinding", "ScanReport", "UartProbe", "config_snippet",
           "format_text", "main", "run_scan", "to_json"]
