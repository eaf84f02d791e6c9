"""Golden cases: cases/bme280/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err.

wire.hex = calibration block 1 (0x88–0xA1, 26 bytes), block 2 (0xE1–0xE7, 7 bytes), then one
or more 8-byte data blocks (0xF7–0xFE); expected.jsonl has one line per data block.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edgeagent.driver import FrameError
from edgeagent.drivers.bme280 import (
    CALIB_H_LENGTH,
    CALIB_TP_LENGTH,
    DATA_LENGTH,
    Bme280Config,
    compensate,
    parse_calibration,
)

CASES = Path(__file__).parent / "cases" / "bme280"
TOLERANCE = 0.01  # °C, %RH and hPa: the expected values are written to two decimals
CALIBRATION_LENGTH = CALIB_TP_LENGTH + CALIB_H_LENGTH


def read_hex(path: Path) -> bytes:
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex(" ".join(lines))


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
    folder = CASES / case
    entry = yaml.safe_load((folder / "config.yaml").read_text())
    if (folder / "init.err").exists():
        with pytest.raises(ValidationError) as caught:
            Bme280Config.model_validate(entry)
        assert (folder / "init.err").read_text().strip() in str(caught.value)
        return
    config = Bme280Config.model_validate(entry)
    wire = read_hex(folder / "wire.hex")
    assert (len(wire) - CALIBRATION_LENGTH) % DATA_LENGTH == 0 and len(wire) > CALIBRATION_LENGTH
    expected = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()
                if line.strip()]
    got = outcome(wire, config)
    assert len(got) == len(expected), got
    assert all(matches(have, want) for have, want in zip(got, expected, strict=True)), got
