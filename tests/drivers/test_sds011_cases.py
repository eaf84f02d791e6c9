"""Golden cases: cases/sds011/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err."""

from __future__ import annotations

import pytest

import golden
from edgeagent.driver import FrameError
from edgeagent.drivers.sds011 import Sds011Config, Sds011Frame, Sds011Parser, frame_values
from golden import case_names, load_case, matches, parsed_both_ways

CASES = case_names("sds011")




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




def test_there_are_cases():
    assert len(CASES) >= 5
    assert any((golden.CASES / "sds011" / case / "init.err").exists() for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: str):
    loaded = load_case(golden.CASES / "sds011" / case, Sds011Config)
    if loaded is None:
        return  # a config error case, checked by load_case
    config, wire, expected = loaded
    whole, single = parsed_both_ways(Sds011Parser, wire)
    in_one_chunk, byte_by_byte = outcome(whole, config), outcome(single, config)
    assert matches(in_one_chunk, expected), in_one_chunk
    assert matches(byte_by_byte, expected), byte_by_byte
