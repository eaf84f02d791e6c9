"""Golden cases: cases/sps30/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from edgeagent.driver import FrameError
from edgeagent.drivers.sps30 import ShdlcParser, Sps30Config, decode_values

CASES = Path(__file__).parent / "cases" / "sps30"


def read_hex(path: Path) -> bytes:
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex(" ".join(lines))


def outcome(items: list) -> list[dict]:
    out: list[dict] = []
    for item in items:
        if isinstance(item, FrameError):
            out.append({"error": str(item)})
        elif item.error:
            out.append({"state": item.error})
        elif not item.data:
            out.append({"empty": True})
        else:
            try:
                out.append({k: round(v, 4) for k, v in decode_values(item.data).items()})
            except FrameError as exc:
                out.append({"error": str(exc)})
    return out


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
            Sps30Config.model_validate(entry)
        assert (folder / "init.err").read_text().strip() in str(caught.value)
        return
    Sps30Config.model_validate(entry)
    wire = read_hex(folder / "wire.hex")
    expected = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()
                if line.strip()]
    in_one_chunk = outcome(ShdlcParser().feed(wire, 0.0))
    parser = ShdlcParser()
    byte_by_byte = outcome([item for b in wire for item in parser.feed(bytes([b]), 0.0)])
    assert matches(in_one_chunk, expected), in_one_chunk
    assert matches(byte_by_byte, expected), byte_by_byte
