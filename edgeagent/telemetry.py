"""What the health message says about the agent process and the board it runs on.

Read from ``/proc/self`` and ``/sys`` only (no subprocess in the event loop): CPU share and
RSS of the agent, open file descriptors, the SoC temperature and the Raspberry Pi firmware's
under-voltage / throttling flags. Alert flags with fixed thresholds summarise what needs a
technician; docs/contract.md lists them.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

THERMAL_ZONE = "sys/class/thermal/thermal_zone0/temp"  # millidegrees Celsius
SYSFS_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
UNDER_VOLTAGE_NOW, THROTTLED_NOW = 0x1, 0x4 | 0x2
UNDER_VOLTAGE_SINCE_BOOT, THROTTLED_SINCE_BOOT = 0x10000, 0x40000 | 0x20000
#: Alert thresholds.
TEMPERATURE_HIGH_C = 80.0  # the Pi 4/5 firmware starts soft throttling at 80-85 °C
RSS_HIGH_BYTES = 150 * 1024 * 1024
LOOP_LAG_HIGH_MS = 1000.0
#: Every alert flag, in report order.
ALERTS = ("broker_disconnected", "clock_unsynced", "sensor_failed", "outbox_dropping",
          "storage_low", "under_voltage", "throttled", "temperature_high", "memory_high",
          "loop_lag_high")


class Telemetry:
    """Process and board figures; CPU share is measured between two snapshots."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self._last = (time.monotonic(), time.process_time())

    def process(self, *, advance: bool = True) -> dict[str, Any]:
        """CPU % of one core since the last call, RSS, open file descriptors, threads.

        ``advance=False`` peeks: the next call still measures from the previous one.
        """
        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._last
        if advance:
            self._last = (wall, cpu)
        share = 100.0 * (cpu - last_cpu) / (wall - last_wall) if wall > last_wall else 0.0
        return {"cpu_percent": round(max(0.0, share), 1), "rss_bytes": _rss_bytes(),
                "open_fds": _open_fds(), "threads": threading.active_count()}

    def board(self) -> dict[str, Any]:
        """SoC temperature and the firmware's power flags; null where the board has none."""
        temperature = None
        with contextlib.suppress(OSError, ValueError):
            temperature = round(int((self.root / THERMAL_ZONE).read_text()) / 1000.0, 1)
        throttled = None
        try:
            bits = int((self.root / SYSFS_THROTTLED).read_text().strip(), 16)
            throttled = {"under_voltage_now": bool(bits & UNDER_VOLTAGE_NOW),
                         "under_voltage_since_boot": bool(bits & UNDER_VOLTAGE_SINCE_BOOT),
                         "throttled_now": bool(bits & THROTTLED_NOW),
                         "throttled_since_boot": bool(bits & THROTTLED_SINCE_BOOT)}
        except (OSError, ValueError):
            pass
        return {"temperature_c": temperature, "power": throttled}


def alerts(report: dict[str, Any]) -> list[str]:
    """Alert flags of a health report (without ``alerts``), in a fixed order."""
    board, process = report["board"], report["process"]
    power = board["power"] or {}
    found = {
        "broker_disconnected": not report["mqtt"]["connected"],
        "clock_unsynced": report["clock"] != "synced",
        "sensor_failed": any(s["state"] == "failed" for s in report["sensors"].values()),
        "outbox_dropping": report["outbox"]["dropped"] > 0,
        "storage_low": report["storage"]["low"],
        "under_voltage": bool(power.get("under_voltage_now")
                              or power.get("under_voltage_since_boot")),
        "throttled": bool(power.get("throttled_now")),
        "temperature_high": (board["temperature_c"] or 0.0) >= TEMPERATURE_HIGH_C,
        "memory_high": (process["rss_bytes"] or 0) >= RSS_HIGH_BYTES,
        "loop_lag_high": (report["loop_lag_ms"] or 0.0) >= LOOP_LAG_HIGH_MS,
    }
    assert tuple(found) == ALERTS
    return [name for name, on in found.items() if on]


def _rss_bytes() -> int | None:
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1])
        return resident * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
