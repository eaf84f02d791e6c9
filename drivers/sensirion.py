"""Helpers and a base class shared by the Sensirion I2C drivers; not itself a registered driver.

Every 16-bit data word on the wire is followed by one CRC byte: CRC-8 with polynomial 0x31
(x⁸ + x⁵ + x⁴ + 1), init 0xFF, no reflection, no final XOR; check value CRC(``BE EF``) = 0x92
(sensors.md §1.1). Command codes carry no CRC.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from pydantic import BeforeValidator

from edgeagent.driver import (
    Driver,
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    QuantityClass,
    Reading,
    SensorConfig,
    StatKind,
    StreamSpec,
)
from edgeagent.i2c import I2cDevice

TEMPERATURE = "temperature"
HUMIDITY = "relativeHumidity"
ANSWER_LENGTH = 6  # a T/RH measurement: two words, each followed by its CRC

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


class SensirionI2cDriver(Driver):
    """What every Sensirion I2C driver shares: its open device, one "not open" error, close.

    ``close`` sends ``stop_command`` first (best effort) where the chip measures continuously
    (SPS30, SEN5x: fan and laser off), then releases the bus.
    """

    #: Chip family for messages, e.g. "SHT4x".
    family: ClassVar[str]
    #: Sent on close to stop a continuously measuring chip; None: the chip idles by itself.
    stop_command: ClassVar[bytes | None] = None

    def __init__(self, config: Any, context: DriverContext) -> None:
        super().__init__(config, context)
        self._device: I2cDevice | None = None

    async def close(self) -> None:
        """Stop measuring (best effort) and release the bus; idempotent."""
        device, self._device = self._device, None
        if device is None:
            return
        if self.stop_command is not None:
            with contextlib.suppress(DriverError):
                await device.write(self.stop_command)
        await device.close()

    def _require_open(self) -> I2cDevice:
        if self._device is None:
            raise DriverError(f"{self.family} on I2C bus {self.config.bus} address "
                              f"0x{self.config.address:02X} is not open")
        return self._device


class SensirionRht(SensirionI2cDriver):
    """The shared body of the Sensirion T/RH drivers (SHT3x, SHT4x).

    Open = reset + an identifying read (proves the chip answers); read = one paced,
    non-stretching measurement: command, wait the worst-case conversion, 6-byte answer.
    Subclasses name the chip and give the commands.
    """

    #: What the identifying read at open returns, for messages ("serial number").
    identity: ClassVar[str]

    def __init__(self, config: Any, context: DriverContext) -> None:
        super().__init__(config, context)
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: SensorConfig) -> list[StreamSpec]:
        """Temperature in °C and relative humidity in %."""
        return [
            StreamSpec(TEMPERATURE, "Cel", QuantityClass.CLIMATE, StatKind.LINEAR,
                       "air temperature at the sensor"),
            StreamSpec(HUMIDITY, "%RH", QuantityClass.CLIMATE, StatKind.LINEAR,
                       "relative humidity in percent (0–100)"),
        ]

    def describe(self) -> dict[str, Any]:
        """Return the settings with the address in hex."""
        return {**super().describe(), "address": f"0x{self.config.address:02X}"}

    async def _identify(self, device: I2cDevice) -> None:
        """Reset the chip and read something that proves it answers (FrameError if garbled)."""
        raise NotImplementedError

    def _measure(self) -> tuple[bytes, float]:
        """The measure command and its worst-case conversion time."""
        raise NotImplementedError

    def _decode(self, raw: bytes) -> dict[str, float]:
        """Stream values from the 6-byte answer (FrameError on a bad CRC)."""
        raise NotImplementedError

    async def open(self) -> None:
        """Open the bus and identify the chip; any failure releases the bus again."""
        device = I2cDevice(self.config.bus, self.config.address, self.context.i2c)
        try:
            await device.open()
            await self._identify(device)
        except FrameError as exc:  # nothing to count at open: the chip is unusable
            await device.close()
            raise DriverError(f"{device.where}: bad {self.identity} answer: {exc}") from exc
        except BaseException:  # NACK, missing bus, cancellation: release the bus
            await device.close()
            raise
        self._device = device
        self._pacer.start(self.context.clock.monotonic())

    async def read(self) -> list[Reading]:
        """Measure once; FrameError on a bad CRC, DriverError on a NACK."""
        device = self._require_open()
        clock = self.context.clock
        await self._pacer.wait(clock)
        started = clock.monotonic()
        command, seconds = self._measure()
        await device.write(command)
        # no clock stretching: the chip NACKs until done, so wait its worst-case time first
        await clock.sleep(seconds)
        values = self._decode(await device.read(ANSWER_LENGTH))
        return [Reading(name, value, started) for name, value in values.items()]
