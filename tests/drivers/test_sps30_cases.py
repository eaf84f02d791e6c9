"""Golden cases: cases/sps30/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err."""

from __future__ import annotations

import pytest

import golden
from edgeagent.driver import FrameError
from edgeagent.drivers.sps30 import ShdlcParser, Sps30Config, decode_values
from golden import case_names, load_case, matches, parsed_both_ways

CASES = case_names("sps30")




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




def test_there_are_cases():
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: str):
    loaded = load_case(golden.CASES / "sps30" / case, Sps30Config)
    if loaded is None:
        return  # a config error case, checked by load_case
    _, wire, expected = loaded
    whole, single = parsed_both_ways(ShdlcParser, wire)
    in_one_chunk, byte_by_byte = outcome(whole), outcome(single)
    assert matches(in_one_chunk, expected), in_one_chunk
    assert matches(byte_by_byte, expected), byte_by_byte
