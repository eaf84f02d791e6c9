"""``edgeagent scan``: real ptys with the UART simulators, the fake I2C bus with the chip models.

The UART simulators are fed "baud-aware": a feeder looks at the speed the scan set on the pty
(termios of the pair) and sends the sensor's frames only at the sensor's own speed, line noise
at any other — as a real UART at the wrong speed does. Every byte the scan writes is compared
with the allow-list of documented read/ID commands, on the wire (what the pty simulators
received, what the fake buses logged) and in the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import os
import random
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import serial
import yaml

from edgeagent import cli, scan
from edgeagent.clock import FakeClock
from edgeagent.config import validate_config
from edgeagent.drivers.sds011 import CMD_SLEEP_WORK, OP_QUERY, sds_command
from edgeagent.drivers.sim.amg8833 import Amg8833Chip
from edgeagent.drivers.sim.bme280 import Bme280Chip
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from edgeagent.drivers.sim.ld2410 import Ld2410Simulator, Ld2410Target, PtyLd2410
from edgeagent.drivers.sim.ld2450 import Ld2450Simulator, PtyLd2450
from edgeagent.drivers.sim.mlx90640 import Mlx90640Chip
from edgeagent.drivers.sim.pcb_decibel import PcbDecibelChip
from edgeagent.drivers.sim.pms5003 import Pms5003Simulator, PtyPms5003
from edgeagent.drivers.sim.pty import PtySimulator
from edgeagent.drivers.sim.sds011 import PtySds011, Sds011Simulator
from edgeagent.drivers.sim.sen5x import Sen5xChip
from edgeagent.drivers.sim.sht3x import Sht3xChip
from edgeagent.drivers.sim.sht4x import Sht4xChip
from edgeagent.drivers.sim.sps30 import PtySps30, Sps30Simulator
from edgeagent.drivers.sim.sps30_i2c import Sps30Chip
from edgeagent.drivers.sps30 import CMD_DEVICE_INFO, INFO_PRODUCT_TYPE, mosi_frame
from edgeagent.scan import ScanEnv, ScanReport, config_snippet, format_text, run_scan, to_json

SECONDS = 0.4  # listening window per port and speed: short real reads from ptys
FEED_PERIOD = 0.03  # s between frames (or noise bursts) of a simulated sensor
BOTHER = 0o010000  # termios speed code of a non-standard rate (256 000 here)
SPEED_CODES = {termios.B9600: 9600, termios.B115200: 115200, BOTHER: 256000}

SDS011_QUERY = sds_command(CMD_SLEEP_WORK, bytes([OP_QUERY]))
SPS30_QUERY = mosi_frame(CMD_DEVICE_INFO, bytes([INFO_PRODUCT_TYPE]))
#: Everything the scan may write to a serial port: documented queries that change nothing.
UART_ALLOWED = {SDS011_QUERY, SPS30_QUERY}
#: Everything the scan may write per I2C address: register pointers and ID/read commands.
I2C_ALLOWED = {
    0x33: {b"\x24\x07", b"\x24\x0f"},  # MLX90640 device ID, EEPROM address word
    0x44: {b"\x89", b"\xf3\x2d"},  # SHT4x read serial, SHT3x read status
    0x45: {b"\x89", b"\xf3\x2d"},
    0x48: {b"\x00"},  # PCB Artists VERSION
    0x68: {b"\x00", b"\x02", b"\x07", b"\x0e"},  # AMG8833 PCTL, FPSC, AVE, thermistor
    0x69: {b"\x00", b"\x02", b"\x07", b"\x0e", b"\xd0\x14", b"\xd0\x02"},  # + SEN5x, SPS30
    0x76: {b"\xd0"},  # BME280 chip ID
    0x77: {b"\xd0"},
}
SERIALS = ("3C5F2A1B9D0E7711", "8A3C2F41D0E9B756")  # sim serial numbers: never printed


class LineNoise:
    """The far end of a port with no known sensor: it never answers."""

    def handle(self, rx: bytes) -> bytes:
        return b""


def host_baud(pty: PtySimulator[Any]) -> int | None:
    """The speed the host side set on the pty (None: something else)."""
    return SPEED_CODES.get(termios.tcgetattr(pty._master)[4])


async def feed(pty: PtySimulator[Any], baud: int | None, frame: Callable[[], bytes | None],
               seed: int = 0) -> None:
    """Send ``frame()`` while the host listens at ``baud``, line noise at any other speed."""
    flags = fcntl.fcntl(pty._master, fcntl.F_GETFL)
    fcntl.fcntl(pty._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)  # never block the loop
    rng = random.Random(seed)
    while True:
        data = frame() if baud is not None and host_baud(pty) == baud else (
            bytes(rng.randrange(256) for _ in range(12)))
        if data:
            with contextlib.suppress(BlockingIOError, OSError):
                pty.emit(data)
        await asyncio.sleep(FEED_PERIOD)


@contextlib.asynccontextmanager
async def feeding(*pairs: tuple[PtySimulator[Any], int | None, Callable[[], bytes | None]]):
    tasks = [asyncio.create_task(feed(pty, baud, frame, seed))
             for seed, (pty, baud, frame) in enumerate(pairs)]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def uart_env(**changes: Any) -> ScanEnv:
    return ScanEnv(ports=lambda: [], buses=lambda: [], **changes)


def by_where(report: ScanReport) -> dict[str, scan.ScanFinding]:
    return {f.port or f.where: f for f in report.findings}


def check_uart_writes(report: ScanReport, *ptys: PtySimulator[Any]) -> None:
    """What each simulator received is exactly what the report says was sent, all allowed."""
    for pty in ptys:
        sent = report.sent.get(pty.port, [])
        assert set(sent) <= UART_ALLOWED
        assert bytes(pty.received) == b"".join(sent)


def paste(snippet: str, tmp_path: Path) -> Any:
    """The snippet pasted into a config with gateway, mqtt and tls filled in, validated."""
    data = yaml.safe_load(snippet)
    assert set(data) == {"sensors"}
    return validate_config({
        "gateway": {"id": "scan-gw"},
        "mqtt": {"host": "127.0.0.1", "port": 8883,
                 "tls": {"ca": str(tmp_path / "ca.pem")}},
        "state_dir": str(tmp_path / "state"), **data})


# -- UART -----------------------------------------------------------------------------------
def test_uart_sensors_are_recognised_at_their_speed_and_only_queries_are_sent(tmp_path):
    ld2410 = Ld2410Simulator(lambda t: Ld2410Target(1, 250, 60, 0, 0, 250))
    ld2450 = Ld2450Simulator(lambda t: [(-400.0, 1500.0)])
    pms, sds = Pms5003Simulator(seed=3), Sds011Simulator(seed=4)

    async def scenario() -> tuple[ScanReport, dict[str, PtySimulator[Any]]]:
        async with (PtyPms5003(pms) as p_pms, PtySds011(sds) as p_sds,
                    PtySps30(Sps30Simulator()) as p_sps, PtyLd2410(ld2410) as p_ld2410,
                    PtyLd2450(ld2450) as p_ld2450, PtySimulator(LineNoise()) as p_noise):
            clock = asyncio.get_running_loop().time
            async with feeding((p_pms, 9600, pms.active_frame), (p_sds, 9600, sds.active_frame),
                               (p_ld2410, 256000, lambda: ld2410.report(clock())),
                               (p_ld2450, 256000, lambda: ld2450.report(clock())),
                               (p_noise, None, lambda: None)):
                ptys = {"pms5003": p_pms, "sds011": p_sds, "sps30": p_sps, "ld2410": p_ld2410,
                        "ld2450": p_ld2450, "noise": p_noise}
                report = await run_scan(uart=[p.port for p in ptys.values()], i2c=[],
                                        seconds=SECONDS, env=uart_env())
                check_uart_writes(report, *ptys.values())
                return report, ptys

    report, ptys = asyncio.run(scenario())
    found = by_where(report)
    expected = {"pms5003": (9600, "Plantower PMS5003"), "sds011": (9600, "Nova Fitness SDS011"),
                "sps30": (115200, "Sensirion SPS30"), "ld2410": (256000, "Hi-Link HLK-LD2410"),
                "ld2450": (256000, "Hi-Link HLK-LD2450")}
    for driver, (baud, model) in expected.items():
        finding = found[ptys[driver].port]
        assert (finding.status, finding.driver, finding.baud, finding.model) == (
            "found", driver, baud, model), finding
        assert finding.message.startswith(f"{ptys[driver].port} at {baud} baud: {model}")
        if driver != "sps30":
            assert finding.frames >= scan.MIN_FRAMES
            assert report.sent.get(ptys[driver].port, []) == []  # streamers: nothing written
    assert report.sent[ptys["sps30"].port] == [SDS011_QUERY, SPS30_QUERY]
    noise = found[ptys["noise"].port]
    assert noise.status == "none" and "no known sensor" in noise.message
    assert report.exit_code == 0

    text = format_text(report)
    assert f"✔ {ptys['pms5003'].port} at 9600 baud: Plantower PMS5003 (" in text
    assert f"- {ptys['noise'].port}: no known sensor" in text
    assert "Config snippet:\nsensors:\n" in text
    assert not any(serial_number in text + to_json(report) for serial_number in SERIALS)
    config = paste(config_snippet(report), tmp_path)
    assert sorted((s.driver, s.id) for s in config.sensors) == [
        ("ld2410", "presence-1"), ("ld2450", "people-1"), ("pms5003", "pm-1"),
        ("sds011", "pm-2"), ("sps30", "pm-3")]
    assert {s.port for s in config.sensors} == {ptys[d].port for d in expected}


def test_a_sleeping_sds011_answers_the_state_query_only():
    async def scenario() -> tuple[ScanReport, PtySds011]:
        sim = Sds011Simulator()
        sim.sleeping = True  # what edgeagent's close leaves behind: no frames at all
        async with PtySds011(sim) as pty:
            report = await run_scan(uart=[pty.port], i2c=[], seconds=SECONDS, env=uart_env())
            check_uart_writes(report, pty)
            assert sim.sleeping  # the query changed nothing
            return report, pty

    report, pty = asyncio.run(scenario())
    (finding,) = report.findings
    assert (finding.status, finding.driver, finding.baud) == ("found", "sds011", 9600)
    assert "asleep" in finding.note
    assert report.sent[pty.port] == [SDS011_QUERY]  # found by the first query: no other sent


def test_garbage_on_a_port_is_no_known_sensor_and_exit_code_1(capsys):
    async def scenario() -> int:
        async with PtySimulator(LineNoise()) as pty, feeding((pty, None, lambda: None)):
            args = cli.build_parser().parse_args(
                ["scan", "--uart", pty.port, "--seconds", str(SECONDS)])
            code = await asyncio.to_thread(scan.main, args, uart_env())
            assert bytes(pty.received) == SDS011_QUERY + SPS30_QUERY  # the queries only
            return code

    assert asyncio.run(scenario()) == 1
    out = capsys.readouterr().out
    assert "no known sensor" in out and "Nothing found." in out
    assert "Config snippet" not in out


def test_unreadable_missing_and_busy_ports_are_plain_lines(monkeypatch):
    async def scenario() -> ScanReport:
        async with PtySds011(Sds011Simulator()) as busy:
            holder = serial.Serial(busy.port, 9600, exclusive=True)  # as a running agent does
            try:
                env = uart_env(holders=lambda port: ["edgeagent (pid 4242)"],
                               user=lambda: "pi")
                report = await run_scan(uart=[busy.port, "/dev/ttyNOPE9"], i2c=[],
                                        seconds=SECONDS, env=env)
            finally:
                holder.close()
        real_serial = serial.Serial

        def denied(port: str, *args: Any, **kwargs: Any) -> Any:
            if port == "/dev/ttyDENIED":
                raise serial.SerialException(errno.EACCES, f"could not open port {port}: "
                                             f"[Errno 13] Permission denied: '{port}'")
            return real_serial(port, *args, **kwargs)

        monkeypatch.setattr(serial, "Serial", denied)
        denied_report = await run_scan(uart=["/dev/ttyDENIED"], i2c=[], seconds=SECONDS,
                                       env=uart_env(user=lambda: "pi"))
        report.findings += denied_report.findings
        return report

    report = asyncio.run(scenario())
    messages = {f.port: f.message for f in report.findings}
    assert all(f.status == "error" for f in report.findings)
    busy = next(m for p, m in messages.items() if p.startswith("/dev/pts/"))
    assert "is busy: in use by edgeagent (pid 4242)" in busy
    assert "sudo systemctl stop edgeagent" in busy
    assert messages["/dev/ttyNOPE9"] == ("/dev/ttyNOPE9 does not exist (unplugged, or the UART "
                                         "is not enabled)")
    assert messages["/dev/ttyDENIED"] == (
        "no permission to open /dev/ttyDENIED: add the user to the dialout group (sudo usermod "
        "-aG dialout pi), then log out and in again")
    text = format_text(report)
    assert "Traceback" not in text and text.count("✘") == 3
    assert report.exit_code == 1


def test_symlinked_ports_are_scanned_once_under_the_first_name(tmp_path):
    link = tmp_path / "serial0"

    async def scenario() -> ScanReport:
        sim = Sds011Simulator()
        async with PtySds011(sim) as pty:
            link.symlink_to(pty.port)
            async with feeding((pty, 9600, sim.active_frame)):
                env = ScanEnv(ports=lambda: [str(link), pty.port], buses=lambda: [])
                return await run_scan(seconds=SECONDS, env=env)

    report = asyncio.run(scenario())
    (finding,) = [f for f in report.findings if f.transport == "uart"]
    assert finding.port == str(link) and finding.entry["port"] == str(link)
    assert finding.where == f"{link} ({os.path.realpath(link)})"


# -- I2C ------------------------------------------------------------------------------------
def i2c_setup(clock: FakeClock) -> tuple[FakeBuses, dict[str, Any]]:
    bmp = Bme280Chip(clock, 0x77)
    bmp.chip_id = 0x58  # answers like a BMP280
    chips: dict[str, Any] = {
        "sht4x": Sht4xChip(clock), "bme280": Bme280Chip(clock, 0x76), "sen5x": Sen5xChip(clock),
        "pcb": PcbDecibelChip(clock), "sht3x": Sht3xChip(clock, address=0x45), "bmp280": bmp,
        "sps30": Sps30Chip(clock), "mlx": Mlx90640Chip(clock), "amg": Amg8833Chip(clock),
        "unknown": PcbDecibelChip(clock, version=0x99)}
    buses = FakeBuses(
        FakeI2cBus(1, {0x44: chips["sht4x"], 0x76: chips["bme280"], 0x69: chips["sen5x"],
                       0x48: chips["pcb"]}),
        FakeI2cBus(3, {0x45: chips["sht3x"], 0x77: bmp, 0x69: chips["sps30"],
                       0x33: chips["mlx"]}),
        FakeI2cBus(4, {0x69: chips["amg"], 0x48: chips["unknown"]}))
    clock.advance(5.0)  # powered up a while ago: SEN5x ready, AMG8833 has taken frames
    return buses, chips


def test_i2c_chips_are_identified_and_0x69_is_resolved_by_the_id_reads(tmp_path):
    clock = FakeClock(auto_advance=True)
    buses, chips = i2c_setup(clock)
    amg_registers = bytes(chips["amg"].registers[:0x10])
    env = ScanEnv(i2c_factory=buses, clock=clock, user=lambda: "pi")
    report = asyncio.run(run_scan(uart=[], i2c=[1, 2, 3, 4], env=env))
    found = {(f.bus, f.address): f for f in report.findings if f.address is not None}
    expected = {
        (1, 0x44): ("sht4x", "Sensirion SHT4x"), (1, 0x76): ("bme280", "Bosch BME280"),
        (1, 0x69): ("sen5x", "Sensirion SEN55"),
        (1, 0x48): ("pcb_decibel", "PCB Artists I2C decibel sound level meter"),
        (3, 0x45): ("sht3x", "Sensirion SHT3x"), (3, 0x69): ("sps30_i2c", "Sensirion SPS30 (I2C)"),
        (3, 0x33): ("mlx90640", "Melexis MLX90640"), (4, 0x69): ("amg8833", "Panasonic AMG8833"),
    }
    for key, (driver, model) in expected.items():
        finding = found[key]
        assert (finding.status, finding.driver, finding.model) == ("found", driver, model), \
            finding
    for key in ((1, 0x69), (3, 0x69), (4, 0x69)):  # the shared address says who answered
        assert "the ID read says which one answered" in found[key].message
    assert found[(1, 0x69)].entry["variant"] == "SEN55"

    bmp = found[(3, 0x77)]
    assert (bmp.status, bmp.model, bmp.entry) == ("unusable", "Bosch BMP280", None)
    assert "chip ID 0x58, not a BME280" in bmp.message and "no humidity" in bmp.note
    unknown = found[(4, 0x48)]
    assert unknown.status == "unknown" and "something answers" in unknown.message
    missing = next(f for f in report.findings if f.where == "I2C bus 2")
    assert missing.status == "error" and "/dev/i2c-2 does not exist" in missing.message
    assert len(report.findings) == len(expected) + 3  # nothing else: NACKs stay silent

    # no write but the documented ID/read commands reached any chip, and nothing changed
    for number, bus in buses.buses.items():
        for kind, address, data in bus.log:
            if kind == "write":
                assert data in I2C_ALLOWED[address], (number, hex(address), data.hex())
    assert chips["sen5x"].state == "idle" and chips["sps30"].state == "idle"
    assert bytes(chips["amg"].registers[:0x0E]) == amg_registers[:0x0E]
    assert chips["mlx"].eeprom_writes == []
    assert chips["bme280"].registers[0xF4] == 0  # still asleep: no measurement was started

    text = format_text(report)
    assert "✔ I2C bus 1 address 0x44: Sensirion SHT4x" in text
    assert "! I2C bus 3 address 0x77: Bosch BMP280 (chip ID 0x58, not a BME280)" in text
    assert not any(serial_number in text + to_json(report) for serial_number in SERIALS)
    config = paste(config_snippet(report), tmp_path)
    ids = {(s.driver, s.bus, s.address): s.id for s in config.sensors}
    assert ids[("sht4x", 1, 0x44)] == "climate-1" and ids[("sps30_i2c", 3, 0x69)] == "pm-2"
    assert len(ids) == len(expected)
    assert "    address: 0x69" in config_snippet(report)


def test_json_lists_every_byte_sent():
    clock = FakeClock(auto_advance=True)
    buses, _ = i2c_setup(clock)
    report = asyncio.run(run_scan(uart=[], i2c=[1], env=ScanEnv(i2c_factory=buses, clock=clock)))
    data = json.loads(to_json(report))
    assert data["exit_code"] == 0
    assert data["sent"]["I2C bus 1 address 0x44"] == ["89"]
    assert data["sent"]["I2C bus 1 address 0x76"] == ["D0"]
    assert {f["driver"] for f in data["findings"] if f["status"] == "found"} == {
        "sht4x", "bme280", "sen5x", "pcb_decibel"}
    assert yaml.safe_load(data["snippet"])["sensors"] == data["sensors"]


# -- CLI ------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["scan", "--seconds", "0"], ["scan", "--seconds", "x"],
                                  ["scan", "--i2c", "abc"], ["scan", "--bogus"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


def test_only_the_kind_asked_for_is_scanned():
    args = cli.build_parser().parse_args(["scan", "--i2c", "/dev/i2c-3", "--json"])
    assert args.i2c == [3] and args.uart is None and args.func is scan.main
    seen: dict[str, Any] = {}

    def ports() -> list[str]:
        seen["ports"] = True
        return []

    clock = FakeClock(auto_advance=True)
    buses, _ = i2c_setup(clock)
    assert scan.main(argparse.Namespace(uart=None, i2c=[3], seconds=1.0, json=True),
                     ScanEnv(ports=ports, i2c_factory=buses, clock=clock)) == 0
    assert "ports" not in seen


def test_a_single_frame_is_listened_for_again_then_reported_as_uncertain():
    async def scenario() -> ScanReport:
        sim = Pms5003Simulator(seed=5)
        frames = [sim.active_frame()]  # one frame, then silence: a slow sensor or chance

        def once() -> bytes | None:
            return frames.pop() if frames else None

        async with PtyPms5003(sim) as pty, feeding((pty, 9600, once)):
            return await run_scan(uart=[pty.port], i2c=[], seconds=SECONDS, env=uart_env())

    (finding,) = asyncio.run(scenario()).findings
    assert (finding.status, finding.frames, finding.entry) == ("unknown", 1, None)
    assert "only one frame that looks like a Plantower PMS5003" in finding.message
    assert "--seconds 6" in finding.message


def test_a_failing_hook_or_driver_is_one_line_and_the_rest_is_still_found():
    from edgeagent.driver import Driver
    from edgeagent.drivers.sht4x import Sht4x

    class Broken(Sht4x):
        scan_order = 1

        @classmethod
        async def identify_i2c(cls, device: Any, clock: Any) -> dict[str, Any] | None:
            raise ZeroDivisionError("bug")

    def drivers() -> tuple[dict[str, type[Driver]], list[str]]:
        classes, problems = scan.installed_drivers()
        return {**classes, "broken": Broken}, [*problems, "driver lost could not be loaded"]

    clock = FakeClock(auto_advance=True)
    buses, _ = i2c_setup(clock)
    report = asyncio.run(run_scan(uart=[], i2c=[1], env=ScanEnv(i2c_factory=buses, clock=clock,
                                                                 drivers=drivers)))
    text = format_text(report)
    assert ("✘ I2C bus 1 address 0x44: the broken driver's scan hook failed (ZeroDivisionError: "
            "bug); please report this bug") in text
    assert "✘ driver lost could not be loaded" in text
    assert "✔ I2C bus 1 address 0x44: Sensirion SHT4x" in text and report.exit_code == 0
