"""edgeagent doctor against fake-root trees: no real /dev, /sys or /proc, only 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edgeagent import doctor
from edgeagent.clock import ClockQuality
from edgeagent.config import load_config
from edgeagent.doctor import DiskUsage, DoctorEnv, Finding
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.outbox import Outbox
from edgeagent.privacy import PrivacyConfig, PrivacyGate

GIB = 1024**3
MIB = 1024**2


@pytest.fixture
def listener() -> Iterator[int]:
    """A real listening socket on 127.0.0.1 (any free port); closed after the test."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def closed_port() -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def fake_root(tmp_path: Path, *, model: str = "Raspberry Pi 4 Model B Rev 1.4",
              throttled: str | None = "0", mounts: str = "/dev/mmcblk0p2 / ext4 rw,noatime 0 0"
              ) -> Path:
    """A healthy Pi 4 as seen through /dev, /sys, /proc and /boot/firmware."""
    root = tmp_path / "root"
    (root / "dev/snd").mkdir(parents=True)
    for name in ("ttyAMA0", "i2c-1", "gpiochip0", "snd/pcmC0D0c"):
        (root / "dev" / name).write_text("")
    (root / "dev/serial0").symlink_to("ttyAMA0")
    (root / "sys/class/i2c-dev/i2c-1").mkdir(parents=True)
    if throttled is not None:
        firmware = root / doctor.SYSFS_THROTTLED
        firmware.parent.mkdir(parents=True)
        firmware.write_text(throttled + "\n")
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text(model + "\x00")
    (root / "proc/mounts").write_text(mounts + "\nproc /proc proc rw 0 0\n")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/config.txt").write_text("[all]\ndtparam=i2c_arm=on\n")
    return root


def make_env(root: Path, **overrides: object) -> DoctorEnv:
    values: dict[str, object] = {
        "root": root,
        "which": lambda name: f"/usr/bin/{name}" if name == "arecord" else None,
        "user": lambda: "edge",
        "groups": lambda: {"edge", "dialout", "i2c", "gpio", "audio"},
        "clock_quality": lambda: ClockQuality.SYNCED,
        "disk_usage": lambda path: DiskUsage(8 * GIB, 2 * GIB, 6 * GIB),
        "access": lambda path, mode: True,
        "run": lambda argv: None,
        "has_module": lambda name: True,
        "connect_timeout": 0.5,
    }
    values.update(overrides)
    return DoctorEnv(**values)  # type: ignore[arg-type]


def write_config(tmp_path: Path, port: int, *, uart: str = "/dev/ttyAMA0",
                 password_mode: int = 0o600, **mqtt: object) -> Path:
    password = tmp_path / "mqtt.pass"
    password.write_text("secret\n")
    password.chmod(password_mode)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    data = {
        "gateway": {"id": "test-gw"},
        "mqtt": {"host": "127.0.0.1", "port": port, "username": "test-gw",
                 "password_file": str(password), **mqtt},
        "state_dir": str(state),
        "sensors": [
            {"id": "pm", "driver": "pms5003", "port": uart, "power": {"gpio": 17}},
            {"id": "climate", "driver": "sht4x", "bus": 1, "address": 0x44},
            {"id": "noise", "driver": "microphone", "source": "alsa", "device": "hw:1,0",
             "sensitivity": -26.0},
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def run(tmp_path: Path, port: int, env: DoctorEnv | None = None, **config: object
        ) -> dict[str, Finding]:
    path = write_config(tmp_path, port, **config)
    if env is None:
        root = tmp_path / "root"
        env = make_env(root if root.exists() else fake_root(tmp_path))
    return by_check(doctor.diagnose(path, env=env))


# -- the healthy gateway ---------------------------------------------------------------------
def test_healthy_gateway_is_all_ok(tmp_path, listener):
    path = write_config(tmp_path, listener)
    findings = doctor.diagnose(path, env=make_env(fake_root(tmp_path)))
    names = [f.check for f in findings]
    assert names == ["config", "serial:pm", "gpio:pm", "i2c:climate", "audio:noise", "broker",
                     "broker:tls", "broker:password", "clock", "storage", "rootfs", "power",
                     "outbox"]
    assert {f.status for f in findings} <= {"ok", "skipped"}, doctor.format_text(findings)
    assert doctor.exit_code(findings) == 0
    assert all(f.fix is None for f in findings)
    text = doctor.format_text(findings)
    assert text.splitlines()[0].startswith("✔ config")
    assert "- outbox" in text  # no outbox file yet: skipped
    assert text.splitlines()[-1] == "12 ok, 0 warning(s), 0 error(s), 1 skipped: all good"


# -- serial ----------------------------------------------------------------------------------
def test_missing_serial_port_is_an_error_with_the_raspi_config_fix(tmp_path, listener):
    root = fake_root(tmp_path)
    (root / "dev/ttyAMA0").unlink()
    found = run(tmp_path, listener, make_env(root))["serial:pm"]
    assert found.status == "error"
    assert found.message == "/dev/ttyAMA0 does not exist"
    assert "raspi-config nonint do_serial_hw 0" in found.fix


def test_user_outside_dialout_gets_the_usermod_fix(tmp_path, listener):
    env = make_env(fake_root(tmp_path), groups=lambda: {"edge", "i2c", "gpio", "audio"})
    findings = run(tmp_path, listener, env)
    found = findings["serial:pm"]
    assert found.status == "error"
    assert "user edge is not in the dialout group" in found.message
    assert found.fix.startswith("sudo usermod -aG dialout edge")
    assert doctor.exit_code(findings.values()) == 2


def test_port_without_read_write_access(tmp_path, listener):
    denied = {str(fake_root(tmp_path) / "dev/ttyAMA0")}
    env = make_env(tmp_path / "root", access=lambda path, mode: str(path) not in denied)
    found = run(tmp_path, listener, env)["serial:pm"]
    assert found.status == "error"
    assert "cannot be opened for reading and writing" in found.message
    assert "ls -l /dev/ttyAMA0" in found.fix


def test_pi5_serial0_is_the_debug_uart(tmp_path, listener):
    root = fake_root(tmp_path, model="Raspberry Pi 5 Model B Rev 1.0")
    found = run(tmp_path, listener, make_env(root), uart="/dev/serial0")["serial:pm"]
    assert found.status == "warning"
    assert "debug connector (UART10)" in found.message
    assert "/dev/ttyAMA0" in found.fix and "dtparam=uart0=on" in found.fix


def test_pi5_missing_ttyama0_points_to_dtparam(tmp_path, listener):
    root = fake_root(tmp_path, model="Raspberry Pi 5 Model B Rev 1.0")
    (root / "dev/ttyAMA0").unlink()
    found = run(tmp_path, listener, make_env(root))["serial:pm"]
    assert found.status == "error"
    assert "dtparam=uart0=on in /boot/firmware/config.txt" in found.fix
    (root / "boot/firmware/config.txt").write_text("[all]\ndtparam=uart0=on\n")
    assert run(tmp_path, listener, make_env(root))["serial:pm"].fix == "the line is there: reboot"


def test_pi4_serial0_on_the_mini_uart_warns(tmp_path, listener):
    root = fake_root(tmp_path)
    (root / "dev/ttyS0").write_text("")
    (root / "dev/serial0").unlink()
    (root / "dev/serial0").symlink_to("ttyS0")
    found = run(tmp_path, listener, make_env(root), uart="/dev/serial0")["serial:pm"]
    assert found.status == "warning"
    assert "mini UART" in found.message and "dtoverlay=disable-bt" in found.fix


# -- I2C, GPIO, audio ------------------------------------------------------------------------
def test_i2c_disabled(tmp_path, listener):
    root = fake_root(tmp_path)
    (root / "dev/i2c-1").unlink()
    found = run(tmp_path, listener, make_env(root))["i2c:climate"]
    assert found.status == "error"
    assert found.message == "/dev/i2c-1 does not exist: I2C bus 1 is not enabled"
    assert "sudo raspi-config nonint do_i2c 0" in found.fix


def test_user_outside_i2c_group(tmp_path, listener):
    env = make_env(fake_root(tmp_path), groups=lambda: {"dialout", "gpio", "audio"})
    found = run(tmp_path, listener, env)["i2c:climate"]
    assert found.status == "error" and found.fix.startswith("sudo usermod -aG i2c edge")


class AckChip:
    """Acknowledges its address (what the probe's address-only write asks for)."""

    def write(self, data: bytes) -> None:
        pass

    def read(self, length: int) -> bytes:
        return bytes(length)


def test_probe_asks_the_sensor_for_an_acknowledge(tmp_path, listener):
    root = fake_root(tmp_path)
    present = make_env(root, probe=True, i2c_factory=FakeBuses(FakeI2cBus(1, {0x44: AckChip()})))
    found = run(tmp_path, listener, present)["i2c:climate"]
    assert (found.status, found.message) == ("ok", "the sensor answers at 0x44 on /dev/i2c-1")
    absent = make_env(root, probe=True, i2c_factory=FakeBuses(FakeI2cBus(1, {})))
    found = run(tmp_path, listener, absent)["i2c:climate"]
    assert found.status == "error"
    assert found.message == "no answer at 0x44: check wiring, power, address"
    assert "i2cdetect -y 1" in found.fix


def test_without_probe_no_bus_is_opened(tmp_path, listener):
    def refuse(number):
        raise AssertionError("doctor opened an I2C bus without --probe")

    found = run(tmp_path, listener, make_env(fake_root(tmp_path), i2c_factory=refuse))
    assert found["i2c:climate"].status == "ok" and "--probe" in found["i2c:climate"].message


def test_power_switch_needs_a_gpio_chip_and_the_gpio_group(tmp_path, listener):
    root = fake_root(tmp_path)
    env = make_env(root, groups=lambda: {"dialout", "i2c", "audio"})
    found = run(tmp_path, listener, env)["gpio:pm"]
    assert found.status == "error" and "sudo usermod -aG gpio edge" in found.fix
    (root / "dev/gpiochip0").unlink()
    found = run(tmp_path, listener, make_env(root))["gpio:pm"]
    assert found.status == "error" and "/dev/gpiochip*" in found.message


def test_microphone_needs_arecord_and_the_audio_group(tmp_path, listener):
    env = make_env(fake_root(tmp_path), which=lambda name: None,
                   groups=lambda: {"dialout", "i2c", "gpio"})
    found = run(tmp_path, listener, env)["audio:noise"]
    assert found.status == "error"
    assert "arecord is not installed" in found.message
    assert "sudo apt install alsa-utils" in found.fix
    assert "sudo usermod -aG audio edge" in found.fix


# -- broker ----------------------------------------------------------------------------------
def test_broker_reachable_and_closed_port(tmp_path, listener):
    assert run(tmp_path, listener)["broker"] == Finding(
        "broker", "ok", f"127.0.0.1:{listener} accepts connections")
    port = closed_port()
    found = run(tmp_path, port)["broker"]
    assert found.status == "error"
    assert found.message == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert "mqtt.host/mqtt.port" in found.fix


def test_tls_off_for_a_remote_broker_warns(tmp_path):
    path = write_config(tmp_path, 8883, host="broker.example.org", tls={"enabled": False})
    found = doctor.check_tls(load_config(path), make_env(fake_root(tmp_path)))  # no traffic
    assert found.status == "warning" and "TLS is off for broker.example.org" in found.message
    assert "mqtt.tls.enabled: true" in found.fix


def test_tls_ca_file_must_exist(tmp_path, listener):
    found = run(tmp_path, listener, tls={"ca": str(tmp_path / "missing-ca.pem")})["broker:tls"]
    assert found.status == "error" and "missing-ca.pem does not exist" in found.message


def test_world_readable_password_file_warns(tmp_path, listener):
    found = run(tmp_path, listener, password_mode=0o644)["broker:password"]
    assert found.status == "warning"
    assert "readable by every user (mode 0644)" in found.message
    assert found.fix == f"sudo chmod 600 {tmp_path / 'mqtt.pass'}"


# -- clock, storage, power -------------------------------------------------------------------
def test_unsynced_clock_warns(tmp_path, listener):
    env = make_env(fake_root(tmp_path), clock_quality=lambda: ClockQuality.UNSYNCED)
    found = run(tmp_path, listener, env)["clock"]
    assert found.status == "warning"
    assert "timestamps are marked unsynced until NTP syncs; check network/NTP" in found.message


def test_read_only_root(tmp_path, listener):
    root = fake_root(tmp_path, mounts="/dev/mmcblk0p2 / ext4 ro,relatime 0 0")
    findings = run(tmp_path, listener, make_env(root))
    assert findings["rootfs"].status == "error"
    assert findings["rootfs"].message == "the root filesystem is mounted read-only"
    assert findings["storage"].status == "error"
    assert "read-only filesystem (/)" in findings["storage"].message


def test_state_dir_on_its_own_writable_mount_is_fine_under_a_read_only_root(tmp_path, listener):
    state = tmp_path / "state"
    root = fake_root(tmp_path, mounts=f"/dev/root / ext4 ro 0 0\n/dev/sda1 {state} ext4 rw 0 0")
    findings = run(tmp_path, listener, make_env(root))
    assert findings["rootfs"].status == "error"
    assert findings["storage"].status == "ok"


@pytest.mark.parametrize(("free", "status", "words"), [
    (20 * MIB, "warning", "only 20 MiB free"),
    (1 * MIB, "error", "only 1.0 MiB free"),
    (500 * MIB, "ok", "500 MiB free"),
    (6 * GIB, "ok", "6.0 GiB free"),
])
def test_low_disk(tmp_path, listener, free, status, words):
    env = make_env(fake_root(tmp_path), disk_usage=lambda path: DiskUsage(GIB, GIB - free, free))
    found = run(tmp_path, listener, env)["storage"]
    assert found.status == status and words in found.message
    if status != "ok":
        assert "journalctl --vacuum-size" in found.fix


def test_state_dir_that_cannot_be_created(tmp_path, listener):
    path = write_config(tmp_path, listener)
    config = load_config(path).model_copy(update={"state_dir": tmp_path / "no/such/dir"})
    env = make_env(fake_root(tmp_path), access=lambda path, mode: False)
    found = doctor.check_storage(config, env)
    assert found.status == "error" and "cannot be created" in found.message
    assert found.fix.startswith(f"sudo mkdir -p {tmp_path / 'no/such/dir'}")


def test_under_voltage_bits_from_sysfs(tmp_path, listener):
    root = fake_root(tmp_path, throttled="50005")
    found = run(tmp_path, listener, make_env(root))["power"]
    assert found.status == "error"
    assert found.message == ("under-voltage now, throttled now, under-voltage has occurred "
                             "since boot, has been throttled since boot "
                             "(sysfs get_throttled 0x50005)")
    assert "5.1 V supply" in found.fix


def test_past_under_voltage_only_warns(tmp_path, listener):
    found = run(tmp_path, listener, make_env(fake_root(tmp_path, throttled="50000")))["power"]
    assert found.status == "warning" and found.message.startswith("under-voltage has occurred")


def test_decode_throttled_every_bit():
    words = [w for _, w in doctor.decode_throttled(0xF000F)]
    assert words == ["under-voltage now", "CPU frequency capped now", "throttled now",
                     "soft temperature limit active now",
                     "under-voltage has occurred since boot",
                     "CPU frequency has been capped since boot", "has been throttled since boot",
                     "soft temperature limit has been reached since boot"]
    assert doctor.decode_throttled(0) == []


def test_power_from_vcgencmd_then_hwmon_then_skipped(tmp_path, listener):
    root = fake_root(tmp_path, throttled=None)
    calls = []

    def vcgencmd(argv):
        calls.append(argv)
        return "throttled=0x80008\n"

    env = make_env(root, which=lambda name: f"/usr/bin/{name}", run=vcgencmd)
    found = run(tmp_path, listener, env)["power"]
    assert calls == [["vcgencmd", "get_throttled"]]
    assert found.status == "warning" and "vcgencmd get_throttled 0x80008" in found.message
    assert found.fix == doctor.FIX_HEAT
    assert run(tmp_path, listener, make_env(root))["power"].status == "skipped"
    hwmon = root / doctor.HWMON_DIR / "hwmon2"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("rpi_volt\n")
    (hwmon / "in0_lcrit_alarm").write_text("1\n")
    found = run(tmp_path, listener, make_env(root))["power"]
    assert found.status == "error" and "in0_lcrit_alarm" in found.message
    (hwmon / "in0_lcrit_alarm").write_text("0\n")
    assert run(tmp_path, listener, make_env(root))["power"].status == "ok"


# -- outbox ----------------------------------------------------------------------------------
def fill_outbox(path: Path, count: int) -> None:
    gate = PrivacyGate(PrivacyConfig(), "test-gw")

    async def scenario():
        outbox = await Outbox.open(path, 64 * MIB)
        try:
            for n in range(count):
                await outbox.put(gate.release_event("sensor_fault", "x", time=float(n),
                                                    clock="synced", details={"n": n}))
        finally:
            await outbox.close()

    asyncio.run(scenario())


def test_outbox_backlog(tmp_path, listener):
    path = write_config(tmp_path, listener)
    fill_outbox(tmp_path / "state" / doctor.OUTBOX_FILE, 1234)
    later = time.time() + 3 * 3600 + 60
    env = make_env(fake_root(tmp_path), now=lambda: later)
    found = by_check(doctor.diagnose(path, env=env))["outbox"]
    assert found.status == "warning"
    assert found.message == ("1,234 messages waiting, oldest 3 h: the broker has been "
                             "unreachable")
    assert "sent by itself" in found.fix


def test_fresh_outbox_is_ok_and_read_only(tmp_path, listener):
    path = write_config(tmp_path, listener)
    outbox_file = tmp_path / "state" / doctor.OUTBOX_FILE
    fill_outbox(outbox_file, 2)
    before = outbox_file.read_bytes()
    found = by_check(doctor.diagnose(path, env=make_env(fake_root(tmp_path))))["outbox"]
    assert found.status == "ok" and found.message.startswith("2 messages waiting, oldest")
    assert outbox_file.read_bytes() == before


# -- config, output, exit codes, CLI ---------------------------------------------------------
def test_invalid_config_lists_the_issues_and_still_runs_system_checks(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("gateway: {id: gw}\nmqtt: {host: h, protocl: 5}\nsensors: []\n")
    findings = doctor.diagnose(path, env=make_env(fake_root(tmp_path)))
    assert [f.check for f in findings] == ["config", "clock", "rootfs", "power"]
    config = findings[0]
    assert config.status == "error"
    assert "mqtt.protocl: unknown key; did you mean 'protocol'?" in config.message
    assert f"edgeagent check-config -c {path}" in config.fix
    assert doctor.exit_code(findings) == 2


def test_missing_config_file(tmp_path):
    finding, config = doctor.check_config(tmp_path / "nope.yaml")
    assert config is None and finding.status == "error"
    assert "cannot read config" in finding.message
    assert "deploy/examples/minimal.yaml" in finding.fix


def test_exit_codes():
    ok, skipped = Finding("a", "ok", "fine"), Finding("b", "skipped", "n/a")
    warning, error = Finding("c", "warning", "hm", "do x"), Finding("d", "error", "bad", "do y")
    assert doctor.exit_code([]) == 0
    assert doctor.exit_code([ok, skipped]) == 0
    assert doctor.exit_code([ok, warning, skipped]) == 1
    assert doctor.exit_code([warning, error, ok]) == 2


def test_text_format():
    text = doctor.format_text([Finding("clock", "ok", "clock synced"),
                               Finding("serial:pm", "error", "/dev/ttyAMA0 does not exist",
                                       "enable the UART"),
                               Finding("outbox", "skipped", "no outbox yet"),
                               Finding("power", "warning", "throttled now", "cool it")])
    assert text.splitlines() == [
        "✔ clock      clock synced",
        "✘ serial:pm  /dev/ttyAMA0 does not exist",
        "  fix: enable the UART",
        "- outbox     no outbox yet",
        "! power      throttled now",
        "  fix: cool it",
        "1 ok, 1 warning(s), 1 error(s), 1 skipped: needs fixing",
    ]


def test_json_shape(tmp_path, listener):
    root = fake_root(tmp_path, throttled="10000")
    findings = list(run(tmp_path, listener, make_env(root)).values())
    data = json.loads(doctor.to_json(findings))
    assert set(data) == {"status", "exit_code", "counts", "findings"}
    assert (data["status"], data["exit_code"]) == ("warning", 1)
    assert data["counts"] == {"skipped": 1, "ok": 11, "warning": 1, "error": 0}
    assert all(set(f) == {"check", "status", "message", "fix"} for f in data["findings"])
    power = next(f for f in data["findings"] if f["check"] == "power")
    assert power["status"] == "warning" and power["fix"] == doctor.FIX_POWER


def test_cli_parser_and_main(tmp_path, listener, capsys):
    parser = argparse.ArgumentParser(prog="edgeagent")
    doctor.add_parser(parser.add_subparsers(dest="command", required=True))
    path = write_config(tmp_path, listener, password_mode=0o644)
    args = parser.parse_args(["doctor", "-c", str(path), "--json"])
    assert args.func is doctor.main and args.probe is False
    assert doctor.main(args, make_env(fake_root(tmp_path))) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == 1
    defaults = parser.parse_args(["doctor"])
    assert defaults.config == doctor.DEFAULT_CONFIG and not defaults.json
    assert doctor.main(parser.parse_args(["doctor", "-c", str(path)]),
                       make_env(fake_root(tmp_path / "other"))) == 1
    assert "! broker:password" in capsys.readouterr().out


def test_default_env_reads_this_process():
    env = DoctorEnv()
    assert env.root == Path("/") and env.user() and isinstance(env.groups(), set)
    assert env.in_group("dialout") in (True, False)
    assert env.access is os.access and env.disk_usage is doctor.shutil.disk_usage
