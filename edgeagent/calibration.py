"""Stored calibrations: one small JSON file per sensor in ``<state_dir>/calibration/``.

Written by ``edgeagent calibrate`` (for a microphone: after a 94 dB / 1 kHz acoustic
calibrator), read by the driver at start. The file holds numbers and a date only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Calibration:
    """An offset measured against a reference, and when."""

    sensor: str
    offset_db: float
    date: str  # RFC 3339 UTC
    reference_db: float
    measured_db: float  # what the sensor read with offset 0 while the reference was applied


def calibration_path(state_dir: Path, sensor_id: str) -> Path:
    """Where a sensor's calibration lives."""
    return state_dir / "calibration" / f"{sensor_id}.json"


def load_calibration(state_dir: Path | None, sensor_id: str) -> Calibration | None:
    """The stored calibration, None if there is none; a damaged file is an error naming it."""
    if state_dir is None:
        return None
    path = calibration_path(state_dir, sensor_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"calibration file {path} is unreadable ({exc}); run edgeagent "
                         "calibrate again or delete it") from exc
    try:
        return Calibration(**data)
    except TypeError as exc:
        raise ValueError(f"calibration file {path} has unexpected fields: {exc}") from exc


def save_calibration(state_dir: Path, calibration: Calibration) -> Path:
    """Write atomically (temp file, fsync, rename), so a power cut leaves old or new."""
    path = calibration_path(state_dir, calibration.sensor)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        json.dump(asdict(calibration), out, indent=2)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return path
