"""Health telemetry: the process's own figures, the board's temperature and power flags (from a
fake /sys tree), and the alert flags with their thresholds."""

from __future__ import annotations

import json
import os

from conftest import REPO
from edgeagent.telemetry import SYSFS_THROTTLED, THERMAL_ZONE, Telemetry, alerts


def board_tree(tmp_path, *, millidegrees=None, throttled=None):
    if millidegrees is not None:
        (tmp_path / THERMAL_ZONE).parent.mkdir(parents=True)
        (tmp_path / THERMAL_ZONE).write_text(f"{millidegrees}\n")
    if throttled is not None:
        (tmp_path / SYSFS_THROTTLED).parent.mkdir(parents=True)
        (tmp_path / SYSFS_THROTTLED).write_text(f"{throttled:x}\n")
    return Telemetry(tmp_path)


def test_process_figures_are_this_process():
    telemetry = Telemetry()
    sum(i * i for i in range(200_000))  # some CPU time between the two snapshots
    figures = telemetry.process()
    assert figures["rss_bytes"] > 10 * 1024 * 1024  # a Python process with numpy loaded
    assert figures["open_fds"] == len(os.listdir("/proc/self/fd"))  # both count listdir's fd
    assert figures["threads"] >= 1 and figures["cpu_percent"] >= 0


def test_a_pi_board_reports_temperature_and_power_flags(tmp_path):
    board = board_tree(tmp_path, millidegrees=51634, throttled=0x50005).board()
    assert board["temperature_c"] == 51.6
    assert board["power"] == {"under_voltage_now": True, "under_voltage_since_boot": True,
                              "throttled_now": True, "throttled_since_boot": True}
    assert board_tree(tmp_path / "ok", throttled=0).board()["power"] == {
        "under_voltage_now": False, "under_voltage_since_boot": False,
        "throttled_now": False, "throttled_since_boot": False}


def test_another_board_says_null_not_false(tmp_path):
    assert board_tree(tmp_path).board() == {"temperature_c": None, "power": None}


def test_alerts_follow_their_thresholds():
    report = json.loads((REPO / "tests/contract_examples/health.json").read_text())
    assert alerts(report) == []
    report["board"]["temperature_c"] = 80.0
    report["board"]["power"]["under_voltage_since_boot"] = True
    report["process"]["rss_bytes"] = 200 * 1024 * 1024
    report["mqtt"]["connected"] = False
    report["outbox"]["dropped"] = 3
    report["loop_lag_ms"] = 1500.0
    report["sensors"]["pm-north"]["state"] = "failed"
    assert alerts(report) == ["broker_disconnected", "sensor_failed", "outbox_dropping",
                              "under_voltage", "temperature_high", "memory_high",
                              "loop_lag_high"]
    report["board"] = {"temperature_c": None, "power": None}  # not a Pi: no board alerts
    assert "temperature_high" not in alerts(report)
