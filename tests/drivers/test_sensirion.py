"""Sensirion word CRC-8: the ✔ vectors of sensors.md §1.1, framing, and single-bit detection."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from edgeagent.driver import FrameError
from edgeagent.drivers.sensirion import address_validator, check_words, crc8, words_with_crc


def reference_crc8(data: bytes) -> int:
    """Bit by bit, as printed in sensors.md §1.1 (the module uses a table)."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


# sensors.md §1.1, every ✔ vector: (word, CRC)
VECTORS = [(0xBEEF, 0x92), (0x0000, 0x81), (0x0001, 0xB0), (0x0300, 0xAC), (0x0500, 0xF6),
           (0x7FFF, 0x8F), (0xFFFF, 0xAC), (0x6666, 0x93), (0x8000, 0xA2), (0x0009, 0x09),
           (0x3A80, 0xA7), (0xFC18, 0xD7)]


@pytest.mark.parametrize(("word", "crc"), VECTORS, ids=[f"{w:04X}" for w, _ in VECTORS])
def test_datasheet_vectors(word, crc):
    pair = word.to_bytes(2, "big")
    assert crc8(pair) == crc
    assert words_with_crc(word) == pair + bytes([crc])
    assert check_words(pair + bytes([crc])) == [word]


def test_multi_word_messages_in_wire_order():
    # SPS30 auto-clean interval 604 800 s = 0x0009 0x3A80; SHT3x/SHT4x example answer
    assert words_with_crc(0x0009, 0x3A80) == bytes.fromhex("00 09 09 3A 80 A7")
    assert words_with_crc(0x6666, 0x8000) == bytes.fromhex("66 66 93 80 00 A2")
    assert check_words(bytes.fromhex("66 66 93 80 00 A2")) == [0x6666, 0x8000]
    assert words_with_crc() == b"" and check_words(b"") == []


def test_crc_of_longer_data_and_of_nothing():
    assert crc8(b"") == 0xFF
    assert crc8(bytes(range(40))) == reference_crc8(bytes(range(40)))


def test_bad_crc_names_the_word_and_both_crcs():
    with pytest.raises(FrameError, match=r"^CRC mismatch in word 1: 80 00 has CRC 0xA2, "
                                         r"received 0xA3$"):
        check_words(bytes.fromhex("66 66 93 80 00 A3"))
    with pytest.raises(FrameError, match="CRC mismatch in word 0"):
        check_words(bytes.fromhex("66 67 93 80 00 A2"))


@pytest.mark.parametrize("length", [1, 2, 4, 5, 7])
def test_partial_words_are_a_frame_error(length):
    with pytest.raises(FrameError, match=f"expected whole 3-byte words .* got {length} bytes"):
        check_words(bytes.fromhex("66 66 93 80 00 A2 00")[:length])


def test_words_out_of_range_are_refused():
    with pytest.raises(OverflowError):
        words_with_crc(0x10000)
    with pytest.raises(OverflowError):
        words_with_crc(-1)


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


@settings(max_examples=10_000, deadline=None)
@given(st.binary(min_size=2, max_size=2))  # cheaper to draw than integers(0, 0xFFFF)
def test_a_word_round_trips_and_every_single_bit_flip_is_detected(pair):
    word = int.from_bytes(pair, "big")
    group = words_with_crc(word)
    assert group == pair + bytes([reference_crc8(pair)])
    assert check_words(group) == [word]
    missed = []
    for bit in range(24):  # data and CRC bits alike
        try:
            check_words(flipped(group, bit))
        except FrameError:
            continue
        missed.append(bit)
    assert missed == []


def test_address_validator_accepts_ints_and_hex_strings_and_names_the_choices():
    class Entry(BaseModel):
        address: Annotated[Literal[0x44, 0x45], address_validator(0x44, 0x45)] = 0x44

    assert Entry(address=0x45).address == 0x45
    assert Entry(address="0x45").address == 0x45
    assert Entry(address="69").address == 0x45
    for bad, shown in ((0x46, "0x46"), ("0x46", "0x46"), (True, "True"), ("x", "'x'"),
                       (None, "None")):
        with pytest.raises(ValidationError, match=f"must be 0x44 or 0x45 \\(got {shown}\\)"):
            Entry(address=bad)
