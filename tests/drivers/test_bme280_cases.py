"""Golden cases: cases/bme280/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err.

wire.hex = calibration block 1 (0x88–0xA1, 26 bytes), block 2 (0xE1–0xE7, 7 bytes), then one
or more 8-byte data blocks (0xF7–0xFE); expected.jsonl has one line per data block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent.driver import FrameError
from edgeagent.drivers.bme280 import (
    CALIB_H_LENGTH,
    CALIB_TP_LENGTH,
    DATA_LENGTH,
    Bme280Config,
    compensate,
    parse_calibration,
)
from golden import load_case

CASES = Path(__file__).parent / "cases" / "bme280"
TOLERANCE = 0.01  # °C, %RH and hPa: the expected values are written to two decimals
CALIBRATION_LENGTH = CALIB_TP_LENGTH + CALIB_H_LENGTH


def outcome(wire: bytes, config: Bme280Config) -> list[dict]:
    calibration = parse_calibration(wire[:CALIB_TP_LENGTH], wire[CALIB_TP_LENGTH:
                                                                 CALIBRATION_LENGTH])
    results: list[dict] = []
    for start in range(CALIBRATION_LENGTH, len(wire), DATA_LENGTH):
        try:
            results.append(compensate(wire[start:start + DATA_LENGTH], calibration,
                                      pressure=config.pressure))
        except FrameError as exc:
            results.append({"error": str(exc)})
    return results


def matches(have: dict, want: dict) -> bool:
    if "error" in want:
        return want["error"] in have.get("error", "")
    return set(have) == set(want) and all(abs(have[k] - want[k]) <= TOLERANCE for k in want)


def test_there_are_cases():
    names = {p.name for p in CASES.iterdir()}
    assert {"ok", "skipped-humidity", "address-0x75"} <= names and len(names) >= 4


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_case(case: str):
    loaded = load_case(CASES / case, Bme280Config)
    if loaded is None:
        return  # a config error case, checked by load_case
    config, wire, expected = loaded
    assert (len(wire) - CALIBRATION_LENGTH) % DATA_LENGTH == 0 and len(wire) > CALIBRATION_LENGTH
    got = outcome(wire, config)
    assert len(got) == len(expected), got
    assert all(matches(have, want) for have, want in zip(got, expected, strict=True)), got
