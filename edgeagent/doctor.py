"""``edgeagent doctor``: what is wrong with this gateway, in plain words, with a fix for each.

Every check returns one :class:`Finding` (``ok``, ``warning``, ``error`` or ``skipped``) with a
one-line message and, when something is wrong, the command or change that fixes it. The exit
code is the worst finding: 0 all ok (or skipped), 1 warnings, 2 errors.

Everything the checks learn about the machine comes through :class:`DoctorEnv`: the filesystem
root under which ``/dev``, ``/sys``, ``/proc`` and ``/boot/firmware`` are read, ``which``, the
user and groups, the clock-sync probe, ``disk_usage``, command execution and the I2C bus
factory. Tests hand it a temporary directory tree and fakes; nothing touches the real devices.
Files the config names (state_dir, password file, certificates) are used as written.

Doctor only reads: it never creates the state directory, never writes to a sensor (the optional
``--probe`` sends an I2C address-only write, as ``i2cdetect`` does) and opens the outbox
read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import grp
import json
import os
import pwd
import shutil
import socket
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from edgeagent.clock import ClockQuality, _kernel_clock_synced
from edgeagent.config import DEFAULT_CONFIG, AgentConfig, ConfigError, is_loopback, load_config
from edgeagent.driver import DriverError
from edgeagent.i2c import BusFactory, I2cDevice, open_smbus

Status = Literal["ok", "warning", "error", "skipped"]
_RANK: dict[str, int] = {"skipped": 0, "ok": 0, "warning": 1, "error": 2}
SYMBOLS: dict[str, str] = {"ok": "✔", "warning": "!", "error": "✘", "skipped": "-"}

MIB = 1024 * 1024
DISK_WARN_BYTES = 50 * MIB
DISK_ERROR_BYTES = 5 * MIB
OUTBOX_STALE_SECONDS = 600.0  # older than this, the backlog is not just messages in flight
OUTBOX_FILE = "outbox.sqlite3"

# vcgencmd get_throttled / sysfs get_throttled bits (Raspberry Pi firmware):
# 0-3 are the state now, 16-19 the same conditions "has occurred since boot".
THROTTLE_BITS: tuple[tuple[int, Status, str], ...] = (
    (0x1, "error", "under-voltage now"),
    (0x2, "warning", "CPU frequency capped now"),
    (0x4, "warning", "throttled now"),
    (0x8, "warning", "soft temperature limit active now"),
    (0x10000, "warning", "under-voltage has occurred since boot"),
    (0x20000, "warning", "CPU frequency has been capped since boot"),
    (0x40000, "warning", "has been throttled since boot"),
    (0x80000, "warning", "soft temperature limit has been reached since boot"),
)
_UNDER_VOLTAGE = 0x1 | 0x10000
_TEMPERATURE = 0x8 | 0x80000
SYSFS_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
HWMON_DIR = "sys/class/hwmon"
HWMON_RPI_NAME = "rpi_volt"
FIX_POWER = ("use a 5.1 V supply made for the Pi (3 A for a Pi 4, 5 A for a Pi 5) and a short, "
             "thick cable; the sensors' 5 V comes from the same supply")
FIX_HEAT = "shade or ventilate the enclosure and check the heatsink"


@dataclass(frozen=True)
class Finding:
    """One check's verdict: a one-line message and, when something is wrong, a fix."""

    check: str
    status: Status
    message: str
    fix: str | None = None


class DiskUsage(NamedTuple):
    """What :func:`shutil.disk_usage` returns."""

    total: int
    used: int
    free: int


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _groups() -> set[str]:
    names = set()
    for gid in {os.getegid(), *os.getgroups()}:
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def _clock_quality() -> ClockQuality | None:
    synced = _kernel_clock_synced()
    if synced is None:
        return None
    return ClockQuality.SYNCED if synced else ClockQuality.UNSYNCED


def _run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _connect(host: str, port: int, timeout: float) -> None:
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@dataclass
class DoctorEnv:
    """The OS boundary of the checks; tests replace every part of it."""

    root: Path = Path("/")
    which: Callable[[str], str | None] = shutil.which
    user: Callable[[], str] = _user
    groups: Callable[[], set[str]] = _groups
    clock_quality: Callable[[], ClockQuality | None] = _clock_quality
    disk_usage: Callable[[Path], Any] = shutil.disk_usage
    access: Callable[[Path, int], bool] = os.access
    run: Callable[[list[str]], str | None] = _run
    connect: Callable[[str, int, float], None] = _connect
    has_module: Callable[[str], bool] = _has_module
    now: Callable[[], float] = time.time
    i2c_factory: BusFactory = field(default=open_smbus)
    probe: bool = False
    connect_timeout: float = 3.0

    def path(self, system_path: str) -> Path:
        """``/dev/ttyAMA0`` under :attr:`root`."""
        return self.root / system_path.lstrip("/")

    def model(self) -> str:
        """The board model from the device tree ('' when not a device-tree board)."""
        try:
            text = self.path("/proc/device-tree/model").read_text(errors="replace")
        except OSError:
            return ""
        return text.replace("\x00", "").strip()

    def is_pi5(self) -> bool:
        """Whether this is a Raspberry Pi 5 (its UART layout differs)."""
        return "Raspberry Pi 5" in self.model()

    def in_group(self, group: str) -> bool:
        """Whether the current user may use devices of ``group`` (root always may)."""
        return self.user() == "root" or group in self.groups()


# -- helpers --------------------------------------------------------------------------------
def _worst(statuses: Iterable[str]) -> Status:
    worst: Status = "ok"
    for status in statuses:
        if _RANK[status] > _RANK[worst]:
            worst = status  # type: ignore[assignment]
    return worst


def _combine(check: str, ok_message: str,
             problems: list[tuple[Status, str, str | None]]) -> Finding:
    """One finding from a check's problems (none: ``ok_message``)."""
    if not problems:
        return Finding(check, "ok", ok_message)
    status = _worst(p[0] for p in problems)
    fixes = [p[2] for p in problems if p[2]]
    return Finding(check, status, "; ".join(p[1] for p in problems),
                   "; ".join(dict.fromkeys(fixes)) or None)


def _group_fix(env: DoctorEnv, group: str) -> str:
    return f"sudo usermod -aG {group} {env.user()}, then log out and in again"


def _mib(n: float) -> str:
    if n >= 1024 * MIB:
        return f"{n / (1024 * MIB):.1f} GiB"
    return f"{n / MIB:.1f} MiB" if n < 10 * MIB else f"{n / MIB:,.0f} MiB"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _boot_config(env: DoctorEnv) -> str:
    for name in ("/boot/firmware/config.txt", "/boot/config.txt"):
        try:
            return env.path(name).read_text(errors="replace")
        except OSError:
            continue
    return ""


def _config_lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip().replace(" ", "") for line in text.splitlines()]


# -- config ---------------------------------------------------------------------------------
def check_config(path: Path) -> tuple[Finding, AgentConfig | None]:
    """Load and validate the config file.

    Returns:
        The finding and the config (None when it is not valid).
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        count = len(exc.issues)
        lines = "; ".join(str(issue).splitlines()[0] for issue in exc.issues)
        fix = (f"edit {path}; 'edgeagent check-config -c {path}' lists every problem with its "
               "line") if path.exists() else (
            f"copy an example (deploy/examples/minimal.yaml) to {path} and edit it, or give "
            "the right file with -c FILE")
        return Finding("config", "error",
                       f"{count} problem{'s' if count != 1 else ''} in {path}: {lines}",
                       fix), None
    return Finding("config", "ok", f"{path} is valid: gateway {config.gateway.id}, "
                   f"{len(config.sensors)} sensor(s)"), config


# -- sensors --------------------------------------------------------------------------------
def check_serial(sensor: Any, env: DoctorEnv) -> Finding:
    """A UART sensor's port: present, usable, the user in ``dialout``, Pi 5 and BT notes."""
    check, port = f"serial:{sensor.id}", str(sensor.port)
    if "://" in port:
        return Finding(check, "skipped", f"{port} is a pyserial URL, not a device file")
    device = env.path(port)
    pi5 = env.is_pi5()
    problems: list[tuple[Status, str, str | None]] = []
    if pi5 and port in ("/dev/serial0", "/dev/ttyAMA10"):
        problems.append(("warning", f"on a Pi 5 {port} is the debug connector (UART10), not "
                         "the GPIO14/15 pins",
                         "use port: /dev/ttyAMA0 and put dtparam=uart0=on in "
                         "/boot/firmware/config.txt, then reboot"))
    if not device.exists():
        if pi5 and port == "/dev/ttyAMA0":
            enabled = "dtparam=uart0=on" in _config_lines(_boot_config(env))
            fix = ("the line is there: reboot" if enabled else
                   "put dtparam=uart0=on in /boot/firmware/config.txt, then reboot")
        elif "ttyUSB" in port or "ttyACM" in port:
            fix = ("plug in the USB serial adapter and check 'dmesg | tail'; on some systems "
                   "brltty grabs CH341 adapters: sudo apt remove brltty")
        else:
            fix = ("enable the UART: sudo raspi-config nonint do_serial_hw 0 and "
                   "do_serial_cons 1, then reboot")
        problems.append(("error", f"{port} does not exist", fix))
        return _combine(check, "", problems)
    if not env.in_group("dialout"):
        problems.append(("error", f"user {env.user()} is not in the dialout group",
                         _group_fix(env, "dialout")))
    elif not env.access(device, os.R_OK | os.W_OK):
        problems.append(("error", f"{port} cannot be opened for reading and writing",
                         f"check the owner and mode of {port} (ls -l {port}); the login "
                         "console may hold it: sudo raspi-config nonint do_serial_cons 1"))
    target = _link_target(device)
    if not pi5 and port == "/dev/serial0" and target == "ttyS0":
        problems.append(("warning", "/dev/serial0 is the mini UART (ttyS0): Bluetooth has the "
                         "good UART and the mini UART's baud rate follows the CPU clock",
                         "put dtoverlay=disable-bt (or miniuart-bt) in "
                         "/boot/firmware/config.txt, then reboot"))
    where = f"{port} (-> {target})" if target else port
    return _combine(check, f"{where} is present and usable", problems)


def _link_target(device: Path) -> str | None:
    try:
        return os.readlink(device).rsplit("/", 1)[-1] if device.is_symlink() else None
    except OSError:
        return None


def check_i2c(sensor: Any, env: DoctorEnv) -> Finding:
    """An I2C sensor's bus: ``/dev/i2c-N``, the ``i2c`` group and, with ``--probe``, an ACK."""
    check, bus, address = f"i2c:{sensor.id}", int(sensor.bus), int(sensor.address)
    node = f"/dev/i2c-{bus}"
    problems: list[tuple[Status, str, str | None]] = []
    if not env.path(node).exists():
        fix = ("enable I2C: sudo raspi-config nonint do_i2c 0, then reboot" if bus == 1 else
               f"check the bus number (ls /dev/i2c-*) and the overlay that creates bus {bus}")
        return Finding(check, "error", f"{node} does not exist: I2C bus {bus} is not enabled",
                       fix)
    if not env.in_group("i2c"):
        problems.append(("error", f"user {env.user()} is not in the i2c group",
                         _group_fix(env, "i2c")))
    elif not env.access(env.path(node), os.R_OK | os.W_OK):
        problems.append(("error", f"{node} cannot be opened for reading and writing",
                         f"check the owner and mode of {node} (ls -l {node})"))
    if problems:
        return _combine(check, "", problems)
    if not env.probe:
        return Finding(check, "ok", f"{node} is present (run with --probe to ask the sensor "
                       f"at 0x{address:02X})")
    answer = asyncio.run(_probe(bus, address, env.i2c_factory))
    if answer is not None:
        return Finding(check, "error", answer, "check wiring (SDA, SCL, GND), power, address "
                       "and pull-ups; 'i2cdetect -y " f"{bus}' lists what answers")
    return Finding(check, "ok", f"the sensor answers at 0x{address:02X} on {node}")


async def _probe(bus: int, address: int, factory: BusFactory) -> str | None:
    """Address-only write (what ``i2cdetect`` sends); None if acknowledged, else the problem."""
    device = I2cDevice(bus, address, factory)
    try:
        await device.open()
        await device.write(b"")
    except DriverError as exc:
        if "no answer" in str(exc):
            return f"no answer at 0x{address:02X}: check wiring, power, address"
        return str(exc)
    finally:
        await device.close()
    return None


def check_gpio(sensor: Any, env: DoctorEnv) -> Finding:
    """A sensor's power switch: a GPIO chip, the ``gpio`` group, gpiozero."""
    check, gpio = f"gpio:{sensor.id}", sensor.power.gpio
    chips = sorted(env.path("/dev").glob("gpiochip*"))
    if not chips:
        return Finding(check, "error", "no GPIO chip (/dev/gpiochip*) on this machine",
                       "power switching needs a Raspberry Pi or another board with GPIO")
    problems: list[tuple[Status, str, str | None]] = []
    if not env.in_group("gpio"):
        problems.append(("error", f"user {env.user()} is not in the gpio group",
                         _group_fix(env, "gpio")))
    elif not any(env.access(chip, os.R_OK | os.W_OK) for chip in chips):
        problems.append(("error", "no /dev/gpiochip* can be opened",
                         "check the owner and mode of /dev/gpiochip* (ls -l /dev/gpiochip*)"))
    if not env.has_module("gpiozero"):
        problems.append(("error", "gpiozero is not installed",
                         "pip install 'edgeagent[gpio]' (or sudo apt install python3-gpiozero)"))
    return _combine(check, f"GPIO{gpio} can be switched ({chips[0].name} present)", problems)


def check_audio(sensor: Any, env: DoctorEnv) -> Finding:
    """A microphone read by ``arecord``: the tool, a capture device, the ``audio`` group."""
    check = f"audio:{sensor.id}"
    if getattr(sensor, "source", "alsa") != "alsa":
        return Finding(check, "skipped", f"source is {sensor.source}: no sound card needed")
    problems: list[tuple[Status, str, str | None]] = []
    if env.which("arecord") is None:
        problems.append(("error", "arecord is not installed", "sudo apt install alsa-utils"))
    captures = sorted(env.path("/dev/snd").glob("pcmC*D*c"))
    if not captures:
        problems.append(("error", "no sound capture device (/dev/snd/pcmC*D*c)",
                         "I2S microphone: add its capture overlay to /boot/firmware/config.txt "
                         "and reboot; USB microphone: plug it in; then 'arecord -l'"))
    if not env.in_group("audio"):
        problems.append(("error", f"user {env.user()} is not in the audio group",
                         _group_fix(env, "audio")))
    return _combine(check, f"arecord and {len(captures)} capture device(s) present "
                    f"(ALSA device {sensor.device})", problems)


# -- broker ---------------------------------------------------------------------------------
def check_broker(config: AgentConfig, env: DoctorEnv) -> Finding:
    """TCP connect to the broker's host and port, with a short timeout."""
    host, port = config.mqtt.host, config.mqtt.port
    where = f"{host}:{port}"
    try:
        env.connect(host, port, env.connect_timeout)
    except socket.gaierror:
        return Finding("broker", "error", f"cannot resolve {host} (broker {where})",
                       "check the network and DNS (ping -c1 " f"{host}), and mqtt.host")
    except TimeoutError:
        return Finding("broker", "error", f"no answer from {where} within "
                       f"{env.connect_timeout:g} s", "check the network, the firewall and "
                       "mqtt.host/mqtt.port")
    except OSError as exc:
        reason = "connection refused" if exc.errno == errno.ECONNREFUSED else (
            exc.strerror or str(exc))
        return Finding("broker", "error", f"cannot connect to {where}: {reason}",
                       "check that the broker runs and listens on that port, the firewall "
                       "and mqtt.host/mqtt.port")
    return Finding("broker", "ok", f"{where} accepts connections")


def check_tls(config: AgentConfig, env: DoctorEnv) -> Finding:
    """TLS settings: on for remote brokers, verification on, certificate files present."""
    mqtt, tls = config.mqtt, config.mqtt.tls
    problems: list[tuple[Status, str, str | None]] = []
    if not tls.enabled:
        if is_loopback(mqtt.host):
            return Finding("broker:tls", "ok", f"TLS off for the local broker {mqtt.host}")
        return Finding("broker:tls", "warning", f"TLS is off for {mqtt.host}: password and data "
                       "travel unencrypted", "set mqtt.tls.enabled: true and use the broker's "
                       "TLS port (usually 8883)")
    if tls.insecure_skip_verify:
        problems.append(("warning", "certificate verification is off (insecure_skip_verify)",
                         "remove insecure_skip_verify and give the broker's CA in mqtt.tls.ca"))
    if mqtt.port == 1883:
        problems.append(("warning", "TLS on port 1883, which is usually plain MQTT",
                         "use the broker's TLS port (usually 8883)"))
    for name, value in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
        if value is not None and not value.exists():
            problems.append(("error", f"mqtt.tls.{name} file {value} does not exist",
                             f"copy the file to {value} or correct mqtt.tls.{name}"))
    if tls.key is not None and tls.key.exists() and tls.key.stat().st_mode & stat.S_IROTH:
        problems.append(("warning", f"{tls.key} is readable by every user",
                         f"sudo chmod 600 {tls.key}"))
    ca = f"CA {tls.ca}" if tls.ca else "system CA bundle"
    return _combine("broker:tls", f"TLS with certificate verification ({ca})", problems)


def check_password(config: AgentConfig, env: DoctorEnv) -> Finding:
    """The broker password file: present and not readable by every user."""
    mqtt = config.mqtt
    if mqtt.password_env:
        return Finding("broker:password", "skipped", f"password from ${mqtt.password_env} in "
                       "the service's environment (not visible here)")
    path = mqtt.password_file
    if path is None:
        return Finding("broker:password", "skipped", "no password configured")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return Finding("broker:password", "error", f"password file {path} does not exist",
                       f"write the password to {path} (sudo install -m 600 ...) or correct "
                       "mqtt.password_file")
    except OSError as exc:
        return Finding("broker:password", "warning", f"cannot inspect {path}: {exc.strerror}",
                       "run doctor with sudo")
    if mode & stat.S_IROTH:
        return Finding("broker:password", "warning", f"password file {path} is readable by "
                       f"every user (mode {stat.S_IMODE(mode):04o})", f"sudo chmod 600 {path}")
    return Finding("broker:password", "ok", f"password file {path} present, mode "
                   f"{stat.S_IMODE(mode):04o}")


# -- system ---------------------------------------------------------------------------------
def check_clock(env: DoctorEnv) -> Finding:
    """Whether NTP has synchronised the wall clock (adjtimex through edgeagent.clock)."""
    quality = env.clock_quality()
    if quality is None:
        return Finding("clock", "skipped", "the kernel does not say whether the clock is synced")
    if quality == ClockQuality.UNSYNCED:
        return Finding("clock", "warning", "clock not synchronised: timestamps are marked "
                       "unsynced until NTP syncs; check network/NTP",
                       "timedatectl status; check that NTP (UDP 123) reaches the network")
    return Finding("clock", "ok", f"clock {quality.value}")


def _mounts(env: DoctorEnv) -> list[tuple[str, list[str]]]:
    try:
        text = env.path("/proc/mounts").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append((parts[1].replace("\\040", " "), parts[3].split(",")))
    return out


def _mount_of(path: Path, mounts: list[tuple[str, list[str]]]) -> tuple[str, list[str]] | None:
    text = str(path)
    best = None
    for point, options in mounts:
        inside = text == point or text.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best[0])):
            best = (point, options)
    return best


def check_rootfs(env: DoctorEnv) -> Finding:
    """Root filesystem mounted read-only (an SD card or filesystem fault, usually)."""
    mounts = _mounts(env)
    root = _mount_of(Path("/"), mounts)
    if root is None:
        return Finding("rootfs", "skipped", "no /proc/mounts to read")
    if "ro" in root[1]:
        return Finding("rootfs", "error", "the root filesystem is mounted read-only",
                       "the SD card may be failing or the filesystem damaged: check 'dmesg', "
                       "run fsck and replace the card if it recurs")
    return Finding("rootfs", "ok", "the root filesystem is writable")


def check_storage(config: AgentConfig, env: DoctorEnv) -> Finding:
    """state_dir: exists or can be created, writable, on a writable mount, enough free space."""
    state = config.state_dir
    existing = state
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problems: list[tuple[Status, str, str | None]] = []
    if existing != state and not env.access(existing, os.W_OK | os.X_OK):
        problems.append(("error", f"{state} does not exist and cannot be created",
                         f"sudo mkdir -p {state} && sudo chown {env.user()} {state}"))
    elif existing == state and not env.access(state, os.W_OK | os.X_OK):
        problems.append(("error", f"{state} is not writable for {env.user()}",
                         f"sudo chown {env.user()} {state}"))
    mount = _mount_of(state, _mounts(env))
    if mount is not None and "ro" in mount[1]:
        problems.append(("error", f"{state} is on a read-only filesystem ({mount[0]}): the "
                         "outbox cannot store messages", "check 'dmesg' for SD card errors; "
                         "put state_dir on a writable filesystem"))
    try:
        free = int(env.disk_usage(existing).free)
    except OSError as exc:
        problems.append(("warning", f"cannot measure free space: {exc.strerror}", None))
        free = None
    space_fix = ("free space: sudo journalctl --vacuum-size=50M, sudo apt clean, remove old "
                 "files; or use a larger SD card")
    if free is not None and free < DISK_ERROR_BYTES:
        problems.append(("error", f"only {_mib(free)} free for {state}", space_fix))
    elif free is not None and free < DISK_WARN_BYTES:
        problems.append(("warning", f"only {_mib(free)} free for {state} (below 50 MiB)",
                         space_fix))
    ok = f"{state} writable, {_mib(free) if free is not None else '?'} free"
    if existing != state:
        ok = f"{state} will be created; {_mib(free) if free is not None else '?'} free"
    return _combine("storage", ok, problems)


def _throttled(env: DoctorEnv) -> tuple[str, int] | tuple[str, None] | None:
    """(source, bits) from sysfs or vcgencmd; ("hwmon", None) from the hwmon alarm only."""
    try:
        text = env.path("/" + SYSFS_THROTTLED).read_text().strip()
        return "sysfs get_throttled", int(text, 16)
    except (OSError, ValueError):
        pass
    if env.which("vcgencmd"):
        out = env.run(["vcgencmd", "get_throttled"])
        if out and "=" in out:
            try:
                return "vcgencmd get_throttled", int(out.split("=", 1)[1].strip(), 16)
            except ValueError:
                pass
    return None


def _hwmon_alarm(env: DoctorEnv) -> bool | None:
    for hwmon in sorted(env.path("/" + HWMON_DIR).glob("hwmon*")):
        try:
            if (hwmon / "name").read_text().strip() != HWMON_RPI_NAME:
                continue
            return (hwmon / "in0_lcrit_alarm").read_text().strip() == "1"
        except OSError:
            continue
    return None


def decode_throttled(bits: int) -> list[tuple[Status, str]]:
    """The set bits of a get_throttled value, in plain words."""
    return [(status, words) for mask, status, words in THROTTLE_BITS if bits & mask]


def check_power(env: DoctorEnv) -> Finding:
    """Under-voltage and throttling flags from the Pi firmware (skipped elsewhere)."""
    found = _throttled(env)
    if found is not None:
        source, bits = found
        assert bits is not None
        decoded = decode_throttled(bits)
        if not decoded:
            return Finding("power", "ok", f"no under-voltage or throttling since boot "
                           f"({source} 0x{bits:x})")
        fixes = []
        if bits & _UNDER_VOLTAGE:
            fixes.append(FIX_POWER)
        if bits & _TEMPERATURE:
            fixes.append(FIX_HEAT)
        if not fixes:
            fixes.append(f"{FIX_POWER}; {FIX_HEAT}")
        return Finding("power", _worst(s for s, _ in decoded),
                       f"{', '.join(w for _, w in decoded)} ({source} 0x{bits:x})",
                       "; ".join(fixes))
    alarm = _hwmon_alarm(env)
    if alarm is None:
        return Finding("power", "skipped", "no Raspberry Pi power information here "
                       "(no get_throttled, vcgencmd or rpi_volt sensor)")
    if alarm:
        return Finding("power", "error", "under-voltage in the last few seconds "
                       "(rpi_volt in0_lcrit_alarm)", FIX_POWER)
    return Finding("power", "ok", "no under-voltage now (rpi_volt; throttling not reported)")


def check_outbox(config: AgentConfig, env: DoctorEnv) -> Finding:
    """Depth, age of the oldest message and drops, read-only from the SQLite outbox."""
    path = config.state_dir / OUTBOX_FILE
    if not path.exists():
        return Finding("outbox", "skipped", f"no outbox yet ({path}): the agent has not run here")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            depth, oldest, size = db.execute(
                "SELECT COUNT(*), MIN(created), COALESCE(SUM(LENGTH(payload)), 0) "
                "FROM messages").fetchone()
            row = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Finding("outbox", "warning", f"cannot read {path}: {exc}",
                       "run doctor with sudo (or as the service user)")
    dropped = row[0] if row else 0
    if depth == 0:
        message = "empty: everything has been delivered"
        problems: list[tuple[Status, str, str | None]] = []
    else:
        age = max(0.0, env.now() - oldest)
        message = f"{depth:,} message{'s' if depth != 1 else ''} waiting, oldest {_age(age)}"
        problems = []
        if age >= OUTBOX_STALE_SECONDS:
            problems.append(("warning", f"{message}: the broker has been unreachable",
                             "see the broker check; the backlog is sent by itself, oldest "
                             "first, once the broker is reachable"))
    if size >= 0.9 * config.outbox.max_bytes:
        problems.append(("warning", f"outbox nearly full ({_mib(size)} of "
                         f"{_mib(config.outbox.max_bytes)}): the oldest messages will be "
                         "dropped", "restore the broker connection; raise outbox.max_bytes "
                         "if the disk allows"))
    if dropped:
        problems.append(("warning", f"{dropped:,} message(s) dropped so far because the "
                         "outbox was full", None))
    return _combine("outbox", message, problems)


# -- running --------------------------------------------------------------------------------
def run_checks(config: AgentConfig, *, env: DoctorEnv) -> list[Finding]:
    """Every check that needs a valid config, then the system checks."""
    findings: list[Finding] = []
    for sensor in config.sensors:
        transport = config.driver_class(sensor).transport
        if transport == "uart" and hasattr(sensor, "port"):
            findings.append(check_serial(sensor, env))
        elif transport == "i2c":
            findings.append(check_i2c(sensor, env))
        elif transport == "audio" and getattr(sensor, "source", None) == "alsa":
            findings.append(check_audio(sensor, env))
        if sensor.power is not None:
            findings.append(check_gpio(sensor, env))
    findings += [check_broker(config, env), check_tls(config, env),
                 check_password(config, env), check_clock(env), check_storage(config, env),
                 check_rootfs(env), check_power(env), check_outbox(config, env)]
    return findings


def system_checks(env: DoctorEnv) -> list[Finding]:
    """The checks that need no config (used when the config is not valid)."""
    return [check_clock(env), check_rootfs(env), check_power(env)]


def diagnose(path: Path, *, env: DoctorEnv) -> list[Finding]:
    """The config check, then everything else (only the system checks if it is invalid)."""
    finding, config = check_config(path)
    if config is None:
        return [finding, *system_checks(env)]
    return [finding, *run_checks(config, env=env)]


def exit_code(findings: Iterable[Finding]) -> int:
    """0 all ok or skipped, 1 warnings, 2 errors."""
    return _RANK[_worst(f.status for f in findings)]


def _counts(findings: list[Finding]) -> dict[str, int]:
    return {status: sum(f.status == status for f in findings) for status in _RANK}


def format_text(findings: list[Finding]) -> str:
    """One line per check (symbol, name, message), ``  fix: …`` below it, then a summary."""
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for finding in findings:
        lines.append(f"{SYMBOLS[finding.status]} {finding.check:<{width}}  {finding.message}")
        if finding.fix:
            lines.append(f"  fix: {finding.fix}")
    counts = _counts(findings)
    verdict = {0: "all good", 1: "works, but look at the warnings",
               2: "needs fixing"}[exit_code(findings)]
    lines.append(f"{counts['ok']} ok, {counts['warning']} warning(s), {counts['error']} "
                 f"error(s), {counts['skipped']} skipped: {verdict}")
    return "\n".join(lines)


def to_json(findings: list[Finding]) -> str:
    """``{"status", "exit_code", "counts", "findings": [{check, status, message, fix}]}``."""
    code = exit_code(findings)
    return json.dumps({"status": ("ok", "warning", "error")[code], "exit_code": code,
                       "counts": _counts(findings),
                       "findings": [asdict(f) for f in findings]}, indent=2,
                      ensure_ascii=False)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``doctor`` on the CLI's subparsers (sets ``func=main``)."""
    parser = subparsers.add_parser(
        "doctor", help="check this gateway and say what to fix",
        description="Check config, sensors' ports and buses, broker, clock, storage, power "
                    "and outbox; exit 0 all ok, 1 warnings, 2 errors.")
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--probe", action="store_true",
                        help="also ask each I2C sensor for an acknowledge (address-only write)")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace, env: DoctorEnv | None = None) -> int:
    """Run doctor for parsed ``args``; print the report; return the exit code."""
    env = env or DoctorEnv(probe=args.probe)
    findings = diagnose(Path(args.config), env=env)
    print(to_json(findings) if args.json else format_text(findings))
    return exit_code(findings)
