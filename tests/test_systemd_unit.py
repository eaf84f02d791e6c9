"""The shipped systemd unit: notify + watchdog, restart policy, groups, and its hardening score."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edgeagent.service"


def directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_service_is_supervised_and_runs_unprivileged():
    unit = directives()
    assert unit["Type"] == ["notify"] and unit["WatchdogSec"] == ["60"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["78"]  # a config error: do not restart-loop
    assert unit["User"] == ["edgeagent"] and unit["NoNewPrivileges"] == ["yes"]
    assert set(unit["SupplementaryGroups"][0].split()) == {"dialout", "i2c", "gpio", "audio"}
    assert unit["StateDirectory"] == ["edgeagent"] and unit["ProtectSystem"] == ["strict"]
    assert unit["DevicePolicy"] == ["closed"]
    allowed = {value.split()[0] for value in unit["DeviceAllow"]}
    assert {"char-ttyAMA", "char-ttyUSB", "char-i2c", "char-gpiochip", "char-alsa"} <= allowed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_hardening_exposure_is_at_most_2():
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                           str(UNIT)], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout
