"""Golden cases: cases/sps30/<case>/ holds config.yaml; wire.hex + expected.jsonl or init.err.

Each reply becomes one outcome: measured values (decoded in the config's ``output_format``),
``device_status`` (0xD2), ``auto_cleaning_interval`` (0x80), ``empty``, ``state`` or ``error``;
``device_error: true`` is added when STATE bit 7 is set.
"""

from __future__ import annotations

import pytest

import golden
from edgeagent.driver import FrameError
from edgeagent.drivers.sps30 import (
    CMD_AUTO_CLEANING,
    CMD_STATUS,
    DECODERS,
    ShdlcParser,
    ShdlcReply,
    Sps30Config,
    decode_status,
    decode_u32,
)
from golden import case_names, load_case, matches, parsed_both_ways

CASES = case_names("sps30")


def decoded(item: ShdlcReply, config: Sps30Config) -> dict:
    if item.command == CMD_STATUS:
        return {"device_status": decode_status(decode_u32(item.data[:4], "device status"))}
    if item.command == CMD_AUTO_CLEANING:
        return {"auto_cleaning_interval": decode_u32(item.data, "auto-cleaning interval")}
    return {k: round(v, 4) for k, v in DECODERS[config.output_format](item.data).items()}


def outcome(items: list, config: Sps30Config) -> list[dict]:
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
                result = decoded(item, config)
            except FrameError as exc:
                result = {"error": str(exc)}
            out.append({**result, "device_error": True} if item.device_error else result)
    return out


def test_there_are_cases():
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: str):
    loaded = load_case(golden.CASES / "sps30" / case, Sps30Config)
    if loaded is None:
        return  # a config error case, checked by load_case
    config, wire, expected = loaded
    whole, single = parsed_both_ways(ShdlcParser, wire)
    in_one_chunk, byte_by_byte = outcome(whole, config), outcome(single, config)
    assert matches(in_one_chunk, expected), in_one_chunk
    assert matches(byte_by_byte, expected), byte_by_byte
