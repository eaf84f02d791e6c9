"""Golden cases: cases/sds011/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edgeagent.driver import FrameError
from edgeagent.drivers.sds011 import Sds011Config, Sds011Frame, Sds011Parser, frame_values

CASES = Path(__file__).parent / "cases" / "sds011"


def read_hex(path: Path) -> bytes:
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex(" ".join(lines))


def outcome(items: list, config: Sds011Config) -> list[dict]:
    """What the driver makes of the parser's output: errors, values, warm-up; replies and
    frames from other device IDs are consumed silently."""
    out: list[dict] = []
    for item in items:
        if isinstance(item, FrameError):
            out.append({"error": str(item)})
        elif isinstance(item, Sds011Frame) and config.accepts(item.device_id):
            out.append(frame_values(item) or {"warming_up": True})
    return out


def matches(got: list[dict], expected: list[dict]) -> bool:
    if len(got) != len(expected):
        return False
    return all(want["error"] in have.get("error", "") if "error" in want else have == want
               for have, want in zip(got, expected, strict=True))


def test_there_are_cases():
    assert len(list(CASES.iterdir())) >= 5
    assert any((p / "init.err").exists() for p in CASES.iterdir())


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_case(case: str):
    folder = CASES / case
    entry = yaml.safe_load((folder / "config.yaml").read_text())
    if (folder / "init.err").exists():
        with pytest.raises(ValidationError) as caught:
            Sds011Config.model_validate(entry)
        assert (folder / "init.err").read_text().strip() in str(caught.value)
        return
    config = Sds011Config.model_validate(entry)
    wire = read_hex(folder / "wire.hex")
    expected = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()
                if line.strip()]
    in_one_chunk = outcome(Sds011Parser().feed(wire, 0.0), config)
    parser = Sds011Parser()
    byte_by_byte = outcome([item for b in wire for item in parser.feed(bytes([b]), 0.0)], config)
    assert matches(in_one_chunk, expected), in_one_chunk
    assert matches(byte_by_byte, expected), byte_by_byte
