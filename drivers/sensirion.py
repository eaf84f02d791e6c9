"""Helpers shared by the Sensirion I2C drivers (SHT3x, SHT4x; later SPS30, SEN5x). Not a driver.

Every 16-bit data word on the wire is followed by one CRC byte: CRC-8 with polynomial 0x31
(x⁸ + x⁵ + x⁴ + 1), init 0xFF, no reflection, no final XOR; check value CRC(``BE EF``) = 0x92
(sensors.md §1.1). Command codes carry no CRC.
"""

from __future__ import annotations

import contextlib

from pydantic import BeforeValidator

from edgeagent.driver import FrameError

CRC8_POLYNOMIAL = 0x31
CRC8_INIT = 0xFF
WORD_SIZE = 3  # two data bytes, big-endian, then their CRC


def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC8_POLYNOMIAL) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8_TABLE = _crc8_table()


def crc8(data: bytes) -> int:
    """Return the Sensirion CRC-8 of ``data``."""
    crc = CRC8_INIT
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc


def words_with_crc(*words: int) -> bytes:
    """Encode 16-bit words big-endian, each followed by its CRC byte."""
    out = bytearray()
    for word in words:
        pair = word.to_bytes(2, "big")  # OverflowError outside 0..0xFFFF
        out += pair + bytes([crc8(pair)])
    return bytes(out)


def check_words(data: bytes) -> list[int]:
    """Decode ``word word crc`` groups into words.

    Raises:
        FrameError: the length is not a whole number of 3-byte groups, or a CRC does not
            match; words are counted from 0 in the message.
    """
    if len(data) % WORD_SIZE:
        raise FrameError(f"expected whole 3-byte words (2 data bytes + CRC), got {len(data)} "
                         f"bytes: {data.hex(' ').upper()}")
    words = []
    for index in range(0, len(data), WORD_SIZE):
        pair, received = data[index:index + 2], data[index + 2]
        expected = crc8(pair)
        if received != expected:
            raise FrameError(f"CRC mismatch in word {index // WORD_SIZE}: "
                             f"{pair.hex(' ').upper()} has CRC 0x{expected:02X}, "
                             f"received 0x{received:02X}")
        words.append(int.from_bytes(pair, "big"))
    return words


def address_validator(*allowed: int) -> BeforeValidator:
    """Pydantic check for an I2C address: 68, 0x44 (YAML) or "0x44"; errors list ``allowed``."""
    names = " or ".join(f"0x{address:02X}" for address in allowed)

    def check(value: object) -> object:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value, 0)
        if type(value) is int and value in allowed:  # type() excludes bool
            return value
        got = f"0x{value:02X}" if type(value) is int else repr(value)
        raise ValueError(f"must be {names} (got {got})")

    return BeforeValidator(check)
