"""Bosch BME280 temperature, humidity and pressure sensor on I2C, in forced mode.

Chip: Bosch BME280 (chip ID 0x60); a BMP280 (0x56–0x58) has no humidity and is refused.
Bus: I2C at 0x76 (SDO to GND) or 0x77 (SDO to VDDIO), 8-bit registers, 3.3 V.
Units: temperature in °C (``Cel``), relative humidity in %RH, pressure in hPa.
Datasheet: BST-BME280-DS001 rev 1.2, register map §5, integer compensation formulas §4.2.3
(``BME280_compensate_T_int32``, ``_P_int64``, ``_H_int32``); see docs/drivers/bme280.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from edgeagent.clock import Clock
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

REG_CALIB_TP = 0x88  # calib00–25: dig_T1 … dig_P9, reserved, dig_H1
CALIB_TP_LENGTH = 26
REG_CHIP_ID = 0xD0
REG_RESET = 0xE0
REG_CALIB_H = 0xE1  # calib26–32: dig_H2 … dig_H6
CALIB_H_LENGTH = 7
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_DATA = 0xF7  # press_msb … hum_lsb
DATA_LENGTH = 8
CHIP_ID_BME280 = 0x60
CHIP_IDS_BMP280 = (0x56, 0x57, 0x58)  # 0x56/0x57 engineering samples, 0x58 production
RESET_COMMAND = 0xB6
STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01  # NVM calibration being copied to the registers
MODE_FORCED = 0b01
OSRS_CODE = {1: 0b001, 2: 0b010, 4: 0b011, 8: 0b100, 16: 0b101}
SKIPPED_TP = 0x80000  # ADC output of a skipped temperature or pressure measurement
SKIPPED_H = 0x8000
STARTUP_TIME = 0.002  # s after power-on or soft reset
STATUS_POLLS = 10
STATUS_POLL_PAUSE = 0.002  # s
TEMPERATURE_RANGE = (-40.0, 85.0)  # °C, operating range
PRESSURE_RANGE = (300.0, 1100.0)  # hPa, operating range


class Bme280Config(SensorConfig):
    """A BME280 sensor entry."""

    driver: Literal["bme280"]
    bus: int = Field(1, ge=0, description="I2C bus number N of /dev/i2c-N")
    address: Literal[0x76, 0x77] = Field(0x76, description="0x76 (SDO low) or 0x77 (SDO high)")
    oversampling: Literal[1, 2, 4, 8, 16] = Field(1, description="For T, RH and p alike")
    pressure: bool = Field(True, description="Measure and publish air pressure")


@dataclass(frozen=True, slots=True)
class Calibration:
    """The factory trimming words of one chip (datasheet names)."""

    dig_T1: int
    dig_T2: int
    dig_T3: int
    dig_P1: int
    dig_P2: int
    dig_P3: int
    dig_P4: int
    dig_P5: int
    dig_P6: int
    dig_P7: int
    dig_P8: int
    dig_P9: int
    dig_H1: int
    dig_H2: int
    dig_H3: int
    dig_H4: int
    dig_H5: int
    dig_H6: int


def _s12(value: int) -> int:
    return value - 0x1000 if value & 0x800 else value


def parse_calibration(block1: bytes, block2: bytes) -> Calibration:
    """Decode the blocks read from 0x88–0xA1 (26 bytes) and 0xE1–0xE7 (7 bytes)."""
    if len(block1) != CALIB_TP_LENGTH or len(block2) != CALIB_H_LENGTH:
        raise DriverError(f"calibration blocks of {len(block1)} + {len(block2)} bytes "
                          f"(expected {CALIB_TP_LENGTH} + {CALIB_H_LENGTH})")
    words = struct.unpack_from("<HhhHhhhhhhhh", block1)
    h2, h3, e4, e5, e6, h6 = struct.unpack("<hBBBBb", block2)
    if words[0] == 0 or words[3] == 0 or len(set(block1)) == 1:
        raise DriverError(f"calibration block is blank ({block1[:4].hex(' ')} …): "
                          "not a genuine BME280 or a bus fault")
    # dig_H4/H5 are 12-bit signed values sharing the nibbles of 0xE5
    h4 = _s12((e4 << 4) | (e5 & 0x0F))
    h5 = _s12((e6 << 4) | (e5 >> 4))
    return Calibration(*words, block1[25], h2, h3, h4, h5, h6)


def temperature_fine(adc_t: int, cal: Calibration) -> int:
    """Return t_fine (temperature in 1/5120 °C), as ``BME280_compensate_T_int32``."""
    var1 = (((adc_t >> 3) - (cal.dig_T1 << 1)) * cal.dig_T2) >> 11
    var2 = ((((adc_t >> 4) - cal.dig_T1) ** 2 >> 12) * cal.dig_T3) >> 14
    return var1 + var2


def temperature_centi(t_fine: int) -> int:
    """Return temperature in 0.01 °C from t_fine."""
    return (t_fine * 5 + 128) >> 8


def pressure_q24_8(adc_p: int, t_fine: int, cal: Calibration) -> int:
    """Return pressure in Pa × 256, as ``BME280_compensate_P_int64`` (0 if undefined)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.dig_P6 + ((var1 * cal.dig_P5) << 17) + (cal.dig_P4 << 35)
    var1 = ((var1 * var1 * cal.dig_P3) >> 8) + ((var1 * cal.dig_P2) << 12)
    var1 = (((1 << 47) + var1) * cal.dig_P1) >> 33
    if var1 == 0:
        return 0  # the datasheet's guard against division by zero
    # C truncates, Python floors: they differ only for negative results, which are rejected
    p = ((((1048576 - adc_p) << 31) - var2) * 3125) // var1
    var1 = (cal.dig_P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.dig_P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.dig_P7 << 4)


def humidity_q22_10(adc_h: int, t_fine: int, cal: Calibration) -> int:
    """Return relative humidity in %RH × 1024, as ``bme280_compensate_H_int32``."""
    x = t_fine - 76800
    offset = (((adc_h << 14) - (cal.dig_H4 << 20) - cal.dig_H5 * x) + 16384) >> 15
    gain = (((((x * cal.dig_H6) >> 10) * (((x * cal.dig_H3) >> 11) + 32768)) >> 10)
            + 2097152) * cal.dig_H2
    x = offset * ((gain + 8192) >> 14)
    x -= ((((x >> 15) * (x >> 15)) >> 7) * cal.dig_H1) >> 4
    # the datasheet clamps to 0 … 100 %RH (419430400 = 100 × 2**22)
    return min(max(x, 0), 419430400) >> 12


def compensate(raw: bytes, cal: Calibration, *, pressure: bool = True) -> dict[str, float]:
    """Turn the 8 data bytes (0xF7–0xFE) into °C, %RH and hPa; FrameError for a bad sample."""
    if len(raw) != DATA_LENGTH:
        raise FrameError(f"data read returned {len(raw)} bytes (expected {DATA_LENGTH})")
    adc_p = (raw[0] << 12) | (raw[1] << 4) | (raw[2] >> 4)
    adc_t = (raw[3] << 12) | (raw[4] << 4) | (raw[5] >> 4)
    adc_h = (raw[6] << 8) | raw[7]
    checks = [("temperature", adc_t, SKIPPED_TP), ("humidity", adc_h, SKIPPED_H)]
    if pressure:
        checks.append(("pressure", adc_p, SKIPPED_TP))
    for name, adc, skipped in checks:
        # a skipped measurement reads exactly this; so may, rarely, a real one (ESPHome agrees)
        if adc == skipped:
            raise FrameError(f"{name} not measured (raw 0x{adc:X} = skipped)")
    t_fine = temperature_fine(adc_t, cal)
    values = {"temperature": temperature_centi(t_fine) / 100}
    if not TEMPERATURE_RANGE[0] <= values["temperature"] <= TEMPERATURE_RANGE[1]:
        raise FrameError(f"implausible temperature {values['temperature']:.2f} °C "
                         f"(raw 0x{adc_t:05X})")
    values["relativeHumidity"] = humidity_q22_10(adc_h, t_fine, cal) / 1024
    if pressure:
        values["pressure"] = pressure_q24_8(adc_p, t_fine, cal) / 25600
        if not PRESSURE_RANGE[0] <= values["pressure"] <= PRESSURE_RANGE[1]:
            raise FrameError(f"implausible pressure {values['pressure']:.2f} hPa "
                             f"(raw 0x{adc_p:05X})")
    return values


def measurement_time(oversampling: int, pressure: bool = True) -> float:
    """Maximum forced-mode conversion time in seconds (datasheet appendix B; ESPHome's too)."""
    # T: 2.3 ms per sample; p and H: 2.3 ms per sample + 0.575 ms each; 1.25 ms overhead
    ms = 1.25 + 2.3 * oversampling + (2.3 * oversampling + 0.575) * (2 if pressure else 1)
    return ms / 1000


class Bme280(Driver):
    """Bosch BME280 driver: one forced-mode conversion per ``interval``."""

    Config = Bme280Config
    model: ClassVar[str] = "Bosch BME280"
    transport: ClassVar[str] = "i2c"
    sample_config: ClassVar[dict[str, Any]] = {"id": "climate", "driver": "bme280", "bus": 1}

    scan_addresses: ClassVar[tuple[int, ...]] = (0x76, 0x77)

    @classmethod
    async def identify_i2c(cls, device: I2cDevice, clock: Clock) -> dict[str, Any] | None:
        """Read the chip ID register 0xD0 (read only): 0x60 BME280, 0x56–0x58 BMP280."""
        chip_id = (await device.write_read(bytes([REG_CHIP_ID]), 1))[0]
        if chip_id == CHIP_ID_BME280:
            return {"model": cls.model, "detail": f"chip ID 0x{chip_id:02X}"}
        if chip_id in CHIP_IDS_BMP280:
            return {"model": "Bosch BMP280", "detail": f"chip ID 0x{chip_id:02X}, not a BME280",
                    "config": None,
                    "note": "a BMP280 has no humidity sensor, so the bme280 driver refuses it: "
                            "fit a BME280 (chip ID 0x60) for relative humidity"}
        return None

    def __init__(self, config: Bme280Config, context: DriverContext) -> None:
        super().__init__(config, context)
        self.config: Bme280Config = config
        self._open: tuple[I2cDevice, Calibration] | None = None
        self._pacer = Pacer(config.interval)

    @classmethod
    def streams(cls, config: Bme280Config) -> list[StreamSpec]:
        """Temperature and relative humidity, plus pressure if enabled."""
        specs = [StreamSpec("temperature", "Cel", QuantityClass.CLIMATE, StatKind.LINEAR,
                            "air temperature"),
                 StreamSpec("relativeHumidity", "%RH", QuantityClass.CLIMATE, StatKind.LINEAR,
                            "relative humidity")]
        if config.pressure:
            specs.append(StreamSpec("pressure", "hPa", QuantityClass.CLIMATE, StatKind.LINEAR,
                                    "station air pressure (not reduced to sea level)"))
        return specs

    @property
    def calibration(self) -> Calibration | None:
        """The calibration read by the last successful open, None while closed."""
        return self._open[1] if self._open else None

    async def open(self) -> None:
        """Check the chip ID, soft-reset and read the calibration."""
        device = I2cDevice(self.config.bus, self.config.address, self.context.i2c)
        try:
            await device.open()
            chip_id = (await device.write_read(bytes([REG_CHIP_ID]), 1))[0]
            if chip_id in CHIP_IDS_BMP280:
                raise DriverError(f"{device.where} is a BMP280 (chip ID 0x{chip_id:02X}), not a "
                                  "BME280: it has no humidity sensor, so relative humidity is "
                                  "unavailable", retryable=False)
            if chip_id != CHIP_ID_BME280:
                raise DriverError(f"unknown chip ID 0x{chip_id:02X} at {device.where} (a BME280 "
                                  f"reads 0x{CHIP_ID_BME280:02X}): another chip at this address?")
            await device.write(bytes([REG_RESET, RESET_COMMAND]))
            await self.context.clock.sleep(STARTUP_TIME)
            await self._wait_status_clear(device, STATUS_IM_UPDATE, "im_update (NVM copy)")
            calibration = parse_calibration(
                await device.write_read(bytes([REG_CALIB_TP]), CALIB_TP_LENGTH),
                await device.write_read(bytes([REG_CALIB_H]), CALIB_H_LENGTH))
        except DriverError:
            await device.close()
            raise
        self._open = device, calibration
        self._pacer.start(self.context.clock.monotonic())

    async def read(self) -> list[Reading]:
        """Trigger one forced conversion, wait for it and return the compensated values."""
        if self._open is None:
            raise DriverError(f"BME280 on I2C bus {self.config.bus} address "
                              f"0x{self.config.address:02X} is not open")
        device, calibration = self._open
        await self._pacer.wait(self.context.clock)
        t = self.context.clock.monotonic()
        code, pressure = OSRS_CODE[self.config.oversampling], self.config.pressure
        # ctrl_hum takes effect only with the next ctrl_meas write; both go out every time so
        # that a chip reset by a brown-out measures humidity again
        await device.write(bytes([REG_CTRL_HUM, code]))
        ctrl_meas = code << 5 | (code if pressure else 0) << 2 | MODE_FORCED
        await device.write(bytes([REG_CTRL_MEAS, ctrl_meas]))
        await self.context.clock.sleep(measurement_time(self.config.oversampling, pressure))
        await self._wait_status_clear(device, STATUS_MEASURING, "measuring")
        raw = await device.write_read(bytes([REG_DATA]), DATA_LENGTH)
        values = compensate(raw, calibration, pressure=pressure)
        return [Reading(name, value, t) for name, value in values.items()]

    async def _wait_status_clear(self, device: I2cDevice, bit: int, name: str) -> None:
        for attempt in range(STATUS_POLLS):
            if attempt:
                await self.context.clock.sleep(STATUS_POLL_PAUSE)
            if not (await device.write_read(bytes([REG_STATUS]), 1))[0] & bit:
                return
        raise DriverError(f"BME280 at {device.where}: status bit {name} still set after "
                          f"{STATUS_POLLS} polls {STATUS_POLL_PAUSE * 1000:g} ms apart")


    async def close(self) -> None:
        """Release the bus; idempotent. Forced mode leaves the chip asleep already."""
        opened, self._open = self._open, None
        if opened is not None:
            await opened[0].close()
