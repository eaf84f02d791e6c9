"""Sensirion SEN5x environmental sensor node (SEN50 / SEN54 / SEN55) on I2C (address 0x69).

Chip: Sensirion SEN50 (PM only), SEN54 (+ RH, T, VOC index), SEN55 (+ NOx index); PM engine of
the SPS30 type; 5 V supply, SEL pin to GND or unconnected (I2C is the only interface used here).
Bus: I2C (``/dev/i2c-N``) at most 100 kHz, 16-bit commands; every 2-byte data word is followed
by the Sensirion CRC-8. Open: Read Product Name ``D0 14``, Read Serial Number ``D0 33``, Device
Reset ``D3 04``, optionally Temperature Offset ``60 B2``, Start Measurement ``00 21``. Each read:
Read Data-Ready ``02 02``, then Read Measured Values ``03 C4`` (24 bytes: 8 words with CRC).
Close: Stop Measurement ``01 04``.
Units: PM1.0 / PM2.5 / PM4.0 / PM10 in µg/m³ (u16 / 10), relative humidity in %RH (s16 / 100),
temperature in °C (``Cel``, s16 / 200), VOC and NOx index dimensionless (``1``, s16 / 10).
"Unknown" words (0xFFFF unsigned, 0x7FFF signed) produce no reading for that stream.
Datasheet: Sensirion SEN5x datasheet; commands and execution times from Sensirion's
``python-i2c-sen5x`` / ``arduino-i2c-sen5x``; sensors.md §1.1 and §2.4; see docs/drivers/sen5x.md.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from edgeagent.clock import Clock
from edgeagent.driver import (
    DriverContext,
    DriverError,
    FrameError,
    Pacer,
    ParticulateConfig,
    QuantityClass,
    Reading,
    StatKind,
    StreamSpec,
)
from edgeagent.drivers.sensirion import (
    HUMIDITY,
    TEMPERATURE,
    SensirionI2cDriver,
    address_validator,
    check_words,
    words_with_crc,
)
from edgeagent.drivers.sps30 import MASS_STREAMS, MAX_MASS, NEW_DATA_PERIOD
from edgeagent.i2c import I2cDevice

ADDRESS = 0x69
CMD_START = b"\x00\x21"
CMD_START_WITHOUT_PM = b"\x00\x37"  # RH/T/VOC/NOx only; not used by the driver (chip model)
CMD_STOP = b"\x01\x04"  # the official drivers' code; ESPHome's 3F 86 is not used (sensors.md)
CMD_DATA_READY = b"\x02\x02"
CMD_READ_VALUES = b"\x03\xc4"
CMD_FAN_CLEANING = b"\x56\x07"  # not used by the driver (chip model)
CMD_TEMPERATURE_OFFSET = b"\x60\xb2"
CMD_PRODUCT_NAME = b"\xd0\x14"
CMD_SERIAL = b"\xd0\x33"
CMD_VERSION = b"\xd1\x00"
CMD_RESET = b"\xd3\x04"
# waits after a write, the longer of Sensirion's Python and Arduino drivers (sensors.md §2.4)
START_SECONDS = 0.050
READ_SECONDS = 0.020  # data-ready, measured values, temperature offset
INFO_SECONDS = 0.050  # product name, serial number
RESET_SECONDS = 0.200
#: A NACKed first command is tried once more after this: the sensor needs ~1 s after power-up
#: (ESPHome waits 1000 ms) and is busy for up to 200 ms after the Stop of a previous close.
POWER_UP_SECONDS = 1.0
READY_LENGTH = 3  # padding byte 00, flag byte 00/01, CRC
VALUES_LENGTH = 24  # 8 words + CRC
TEXT_LENGTH = 48  # 32 ASCII characters, NUL-terminated, in words with CRC
UNKNOWN_UNSIGNED = 0xFFFF
UNKNOWN_SIGNED = 0x7FFF
TEMPERATURE_TICKS = 200  # per °C, for T and the temperature offset
VOC = "vocIndex"
NOX = "noxIndex"

#: Words of ``03 C4`` in wire order: stream name, signed, divisor.
FIELDS: tuple[tuple[str, bool, int], ...] = (
    *((name, False, 10) for name in MASS_STREAMS),  # pm1, pm25, pm4, pm10
    (HUMIDITY, True, 100),
    (TEMPERATURE, True, TEMPERATURE_TICKS),
    (VOC, True, 10),
    (NOX, True, 10),
)
VARIANTS = ("SEN50", "SEN54", "SEN55")
#: The streams each variant measures.
VARIANT_STREAMS: dict[str, tuple[str, ...]] = {
    "SEN50": tuple(MASS_STREAMS),
    "SEN54": (*MASS_STREAMS, HUMIDITY, TEMPERATURE, VOC),
    "SEN55": (*MASS_STREAMS, HUMIDITY, TEMPERATURE, VOC, NOX),
}


def decode_values(raw: bytes) -> dict[str, float]:
    """Return the known values of a 24-byte ``03 C4`` answer, in wire order.

    A word holding its "unknown" marker (0xFFFF for the unsigned PM words, 0x7FFF for the
    signed RH, T, VOC and NOx words) is left out: no number is made from it.

    Raises:
        FrameError: wrong length, a CRC mismatch (then no value is returned at all) or a mass
            concentration above twice the specified range (like the SPS30).
    """
    if len(raw) != VALUES_LENGTH:
        raise FrameError(f"expected {VALUES_LENGTH} bytes, got {len(raw)}")
    values = {}
    for (name, signed, divisor), word in zip(FIELDS, check_words(raw), strict=True):
        if word == (UNKNOWN_SIGNED if signed else UNKNOWN_UNSIGNED):
            continue
        ticks = word - 0x10000 if signed and word & 0x8000 else word
        values[name] = ticks / divisor
        if not signed and values[name] > MAX_MASS:
            raise FrameError(f"implausible value {name} = {values[name]:g} "
                             f"(range 0 … {MAX_MASS:g})")
    return values


def decode_data_ready(raw: bytes) -> bool:
    """Return the data-ready flag from the 3-byte ``02 02`` answer (``00 01 B0`` = ready).

    Raises:
        FrameError: wrong length or a CRC mismatch.
    """
    if len(raw) != READY_LENGTH:
        raise FrameError(f"data-ready: expected {READY_LENGTH} bytes, got {len(raw)}")
    (word,) = check_words(raw)
    return bool(word & 0xFF)  # the high byte is padding


def decode_text(raw: bytes) -> str:
    """Return the NUL-terminated ASCII string of a product name or serial number answer.

    Raises:
        FrameError: a CRC mismatch or a partial word.
    """
    data = b"".join(word.to_bytes(2, "big") for word in check_words(raw))
    return data.split(b"\0", 1)[0].decode("ascii", "replace")


def variant_of(product_name: str) -> str | None:
    """The variant a product name names ("SEN55" → "SEN55"), None for anything else."""
    name = product_name.strip().upper()
    return next((variant for variant in VARIANTS if name.startswith(variant)), None)


def temperature_offset_command(celsius: float) -> bytes:
    """``60 B2`` with offset (s16, °C × 200), slope 0 and time constant 0 s, each with CRC."""
    ticks = round(celsius * TEMPERATURE_TICKS)
    return CMD_TEMPERATURE_OFFSET + words_with_crc(ticks & 0xFFFF, 0, 0)


class Sen5xConfig(ParticulateConfig):
    """A SEN5x sensor entry (SEN50 / SEN54 / SEN55 on I2C)."""

    driver: Literal["sen5x"]
    bus: int = Field(1, ge=0, description="I2C bus number: /dev/i2c-<bus>")
    address: Annotated[Literal[0x69], address_validator(ADDRESS)] = Field(
        ADDRESS, description="Fixed 0x69")
    variant: Literal["auto", "SEN50", "SEN54", "SEN55"] = Field(
        "auto", description="Expected product name (checked at open); auto accepts any SEN5x "
        "and declares the SEN55 streams")
    temperature_offset: float | None = Field(
        None, ge=-20.0, le=20.0, description="°C added to the sensor's temperature (its "
        "T offset parameter); unset = the sensor's default")

    @model_validator(mode="after")
    def _offset_needs_temperature(self) -> Sen5xConfig:
        if self.variant == "SEN50" and self.temperature_offset is not None:
            raise ValueError("temperature_offset needs a SEN54 or SEN55 (a SEN50 measures no "
                             "temperature)")
        return self


def _spec(name: str) -> StreamSpec:
    if name in MASS_STREAMS:
        return StreamSpec(name, "ug/m3", QuantityClass.PARTICULATE, StatKind.LINEAR,
                          f"{MASS_STREAMS[name]} mass concentration")
    return {
        HUMIDITY: StreamSpec(HUMIDITY, "%RH", QuantityClass.CLIMATE, StatKind.LINEAR,
                             "relative humidity in percent at the sensor"),
        TEMPERATURE: StreamSpec(TEMPERATURE, "Cel", QuantityClass.CLIMATE, StatKind.LINEAR,
                                "air temperature at the sensor"),
        VOC: StreamSpec(VOC, "1", QuantityClass.CLIMATE, StatKind.LINEAR,
                        "Sensirion VOC index (1–500; 100 = the sensor's recent average)"),
        NOX: StreamSpec(NOX, "1", QuantityClass.CLIMATE, StatKind.LINEAR,
                        "Sensirion NOx index (1–500; 1 = the sensor's recent average)"),
    }[name]


class Sen5x(SensirionI2cDriver):
    """Sensirion SEN5x driver over I2C: data-ready polled once per interval, unknowns dropped."""

    Config = Sen5xConfig
    model: ClassVar[str] = "Sensirion SEN5x (I2C)"
    transport: ClassVar[str] = "i2c"
    family: ClassVar[str] = "SEN5x"
    stop_command: ClassVar[bytes | None] = CMD_STOP
    sample_config: ClassVar[dict[str, Any]] = {"id": "air", "driver": "sen5x", "bus": 1}

    scan_addresses: ClassVar[tuple[int, ...]] = (ADDRESS,)
    scan_order: ClassVar[int] = 55  # after the AMG8833 (1-byte pointer), before the SPS30

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read the product name (``D0 14``, read only): "SEN50", "SEN54" or "SEN55"."""
        await device.write(CMD_PRODUCT_NAME)
        await clock.sleep(INFO_SECONDS)
        name = decode_text(await device.read(TEXT_LENGTH))
        variant = variant_of(name)
        if variant is None:
            return None
        return {"model": f"Sensirion {variant}", "detail": f"product name {name}",
                "config": {"variant": variant}}

    def __init__(self, config: Sen5xConfig, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Sen5xConfig = config
        self.product_name: str | None = None
        self.serial_number: str | None = None
        self._emit: frozenset[str] = frozenset()
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: Sen5xConfig) -> list[StreamSpec]:
        """The configured variant's streams; ``auto`` declares the SEN55 set (a superset)."""
        variant = "SEN55" if config.variant == "auto" else config.variant
        return [_spec(name) for name in VARIANT_STREAMS[variant]]

    def describe(self) -> dict[str, Any]:
        """Return the settings with the address in hex and, after open, name and serial."""
        return {**super().describe(), "address": f"0x{self.config.address:02X}",
                "product_name": self.product_name, "serial_number": self.serial_number}

    async def open(self) -> None:
        """Identify the chip, reset it, set the temperature offset, start measuring."""
        clock = self.context.clock
        device = I2cDevice(self.config.bus, self.config.address, self.context.i2c)
        try:
            await device.open()
            # identify before the reset: a foreign chip at 0x69 (SPS30, AMG8833) is not reset
            try:
                await device.write(CMD_PRODUCT_NAME)
            except DriverError:  # just powered up or still stopping: once more, then give up
                await clock.sleep(POWER_UP_SECONDS)
                await device.write(CMD_PRODUCT_NAME)
            await clock.sleep(INFO_SECONDS)
            self.product_name = decode_text(await device.read(TEXT_LENGTH))
            variant = self._check_variant(device, self.product_name)
            await device.write(CMD_SERIAL)
            await clock.sleep(INFO_SECONDS)
            self.serial_number = decode_text(await device.read(TEXT_LENGTH))
            await device.write(CMD_RESET)  # known state: idle, default parameters
            await clock.sleep(RESET_SECONDS)
            if self.config.temperature_offset is not None:
                await device.write(temperature_offset_command(self.config.temperature_offset))
                await clock.sleep(READ_SECONDS)
            await device.write(CMD_START)
            await clock.sleep(START_SECONDS)
        except FrameError as exc:  # nothing to count at open: the sensor is unusable
            await device.close()
            raise DriverError(f"{device.where}: bad identification answer: {exc}") from exc
        except BaseException:
            await device.close()
            raise
        self._device = device
        self._emit = frozenset(VARIANT_STREAMS[variant])
        self._pacer.start(clock.monotonic() + NEW_DATA_PERIOD)

    def _check_variant(self, device: I2cDevice, product_name: str) -> str:
        found, wanted = variant_of(product_name), self.config.variant
        if found is None:
            raise DriverError(f"{device.where}: product name {product_name!r} is not a SEN50, "
                              "SEN54 or SEN55 (another chip at 0x69?)", retryable=False)
        if wanted not in ("auto", found):
            raise DriverError(f"{device.where}: the sensor is a {found} (product name "
                              f"{product_name!r}) but the config says variant: {wanted}; set "
                              f"variant: {found} or auto", retryable=False)
        if found == "SEN50" and self.config.temperature_offset is not None:
            raise DriverError(f"{device.where}: temperature_offset is set but the sensor is a "
                              "SEN50, which measures no temperature", retryable=False)
        return found

    async def read(self) -> list[Reading] | None:
        """Poll data-ready; None if nothing is new or nothing is known; FrameError on a bad CRC."""
        device = self._require_open()
        clock = self.context.clock
        await self._pacer.wait(clock)
        await device.write(CMD_DATA_READY)
        await clock.sleep(READ_SECONDS)
        if not decode_data_ready(await device.read(READY_LENGTH)):
            return None
        t = clock.monotonic()
        await device.write(CMD_READ_VALUES)
        await clock.sleep(READ_SECONDS)
        values = decode_values(await device.read(VALUES_LENGTH))
        readings = [Reading(name, value, t) for name, value in values.items()
                    if name in self._emit]
        return readings or None  # all unknown (the first second): not a sample
