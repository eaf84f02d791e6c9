"""Golden cases: cases/pms5003/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err."""

from __future__ import annotations

import pytest

import golden
from edgeagent.driver import FrameError
from edgeagent.drivers.pms5003 import Pms5003Config, Pms5003Parser, frame_values
from golden import case_names, load_case, matches, parsed_both_ways

CASES = case_names("pms5003")




def outcome(items: list, config: Pms5003Config) -> list[dict]:
    return [{"error": str(item)} if isinstance(item, FrameError) else frame_values(item, config)
            for item in items]




def test_there_are_cases():
    assert len(CASES) >= 4


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: str):
    loaded = load_case(golden.CASES / "pms5003" / case, Pms5003Config)
    if loaded is None:
        return  # a config error case, checked by load_case
    config, wire, expected = loaded
    whole, single = parsed_both_ways(lambda: Pms5003Parser(config.model), wire)
    in_one_chunk, byte_by_byte = outcome(whole, config), outcome(single, config)
    assert matches(in_one_chunk, expected), in_one_chunk
    assert matches(byte_by_byte, expected), byte_by_byte
