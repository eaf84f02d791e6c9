"""Golden cases: cases/pms5003/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edgeagent.driver import FrameError
from edgeagent.drivers.pms5003 import Pms5003Config, Pms5003Parser, frame_values

CASES = Path(__file__).parent / "cases" / "pms5003"


def read_hex(path: Path) -> bytes:
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex(" ".join(lines))


def outcome(items: list, config: Pms5003Config) -> list[dict]:
    return [{"error": str(item)} if isinstance(item, FrameError) else frame_values(item, config)
            for item in items]


def matches(got: list[dict], expected: list[dict]) -> bool:
    if len(got) != len(expected):
        return False
    return all(want["error"] in have.get("error", "") if "error" in want else have == want
               for have, want in zip(got, expected, strict=True))


def test_there_are_cases():
    assert len(list(CASES.iterdir())) >= 4


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_case(case: str):
    folder = CASES / case
    entry = yaml.safe_load((folder / "config.yaml").read_text())
    if (folder / "init.err").exists():
        with pytest.raises(ValidationError) as caught:
            Pms5003Config.model_validate(entry)
        assert (folder / "init.err").read_text().strip() in str(caught.value)
        return
    config = Pms5003Config.model_validate(entry)
    wire = read_hex(folder / "wire.hex")
    expected = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()
                if line.strip()]
    in_one_chunk = outcome(Pms5003Parser(config.model).feed(wire, 0.0), config)
    parser = Pms5003Parser(config.model)
    byte_by_byte = outcome([item for b in wire for item in parser.feed(bytes([b]), 0.0)], config)
    assert matches(in_one_chunk, expected), in_one_chunk
    assert matches(byte_by_byte, expected), byte_by_byte
