"""Shared reading of the golden case folders ``cases/<driver>/<case>/``.

A folder holds ``config.yaml`` (one sensor entry) and either ``init.err`` (a substring of the
validation error that entry must raise) or ``wire.hex`` (bytes as the device sends them; hex
pairs, whitespace and ``#`` comments allowed) plus ``expected.jsonl`` (one object per outcome).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

CASES = Path(__file__).parent / "cases"


def case_names(driver: str) -> list[str]:
    """The case folders of one driver, sorted."""
    return sorted(p.name for p in (CASES / driver).iterdir())


def read_hex(path: Path) -> bytes:
    """Bytes from a ``.hex`` file with ``#`` comments."""
    lines = (line.split("#", 1)[0] for line in path.read_text().splitlines())
    return bytes.fromhex(" ".join(lines))


def load_case(folder: Path, model: type[BaseModel]) -> tuple[Any, bytes, list[dict]] | None:
    """Validate the folder's config; an ``init.err`` case is checked here and gives None.

    Otherwise returns (config, wire bytes, expected outcomes).
    """
    entry = yaml.safe_load((folder / "config.yaml").read_text())
    if (folder / "init.err").exists():
        with pytest.raises(ValidationError) as caught:
            model.model_validate(entry)
        assert (folder / "init.err").read_text().strip() in str(caught.value)
        return None
    config = model.model_validate(entry)
    expected = [json.loads(line) for line in (folder / "expected.jsonl").read_text().splitlines()
                if line.strip()]
    return config, read_hex(folder / "wire.hex"), expected


def matches(got: list[dict], expected: list[dict]) -> bool:
    """Equal outcome lists; an expected ``{"error": s}`` matches any error containing s."""
    if len(got) != len(expected):
        return False
    return all(want["error"] in have.get("error", "") if "error" in want else have == want
               for have, want in zip(got, expected, strict=True))


def parsed_both_ways(new_parser: Callable[[], Any], wire: bytes) -> tuple[list, list]:
    """Parser output for ``wire`` fed in one chunk and fed byte by byte."""
    in_one_chunk = new_parser().feed(wire, 0.0)
    parser = new_parser()
    return in_one_chunk, [item for b in wire for item in parser.feed(bytes([b]), 0.0)]
