"""BME280 chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, with faults.

An 8-bit register file with auto-increment reads, forced-mode conversions timed on an injected
clock, the ctrl_hum-latches-on-ctrl_meas rule, skipped-measurement outputs, and raw ADC values
found by searching the driver's own compensation for the physical values set on the model.
Not modelled: normal mode (a ctrl_meas write with mode 11 is stored, nothing converts), the
IIR filter and the config register, SPI.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator, Callable

from edgeagent.clock import Clock
from edgeagent.driver import DriverContext
from edgeagent.drivers.bme280 import (
    CHIP_ID_BME280,
    REG_CALIB_H,
    REG_CALIB_TP,
    REG_CHIP_ID,
    REG_CTRL_HUM,
    REG_CTRL_MEAS,
    REG_DATA,
    REG_RESET,
    REG_STATUS,
    RESET_COMMAND,
    SKIPPED_H,
    SKIPPED_TP,
    STARTUP_TIME,
    STATUS_IM_UPDATE,
    STATUS_MEASURING,
    Bme280,
    Bme280Config,
    Calibration,
    humidity_q22_10,
    parse_calibration,
    pressure_q24_8,
    temperature_centi,
    temperature_fine,
)
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus, nack

# One simulated unit. dig_T1 … dig_P9 are the example unit of the BMP280 datasheet
# (BST-BMP280-DS001 §3.12; the BME280 shares its T and p trimming), so adc_T 519888 and
# adc_P 415148 give 25.08 °C and 1006.53 hPa. The humidity words are typical of real units
# (no published capture); H4 = 313 and H5 = 50 share register 0xE5 (0x29).
UNIT_BLOCK1 = struct.pack("<HhhHhhhhhhhh", 27504, 26435, -1000, 36477, -10685, 3024, 2855,
                          140, -7, 15500, -14600, 6000) + bytes([0x00, 75])
UNIT_BLOCK2 = struct.pack("<hB", 362, 0) + bytes([0x13, 0x29, 0x03]) + struct.pack("<b", 30)
UNIT_CALIBRATION = parse_calibration(UNIT_BLOCK1, UNIT_BLOCK2)
REG_CONFIG = 0xF5
ADC_MAX_TP = (1 << 20) - 1
ADC_MAX_H = (1 << 16) - 1


def _search(f: Callable[[int], int], target: float, high: int, *, rising: bool = True) -> int:
    """Return the raw value in 0 … high whose monotonic ``f(raw)`` comes closest to target."""
    lo, hi = 0, high
    while lo < hi:  # first raw with f(raw) >= target (rising) or <= target (falling)
        mid = (lo + hi) // 2
        if (f(mid) >= target) if rising else (f(mid) <= target):
            hi = mid
        else:
            lo = mid + 1
    return min((r for r in (lo - 1, lo) if 0 <= r <= high), key=lambda r: abs(f(r) - target))


def raw_for(temperature: float, humidity: float, pressure: float,
            cal: Calibration = UNIT_CALIBRATION) -> tuple[int, int, int]:
    """Return (adc_T, adc_P, adc_H) that compensate to about these °C, %RH and hPa."""
    adc_t = _search(lambda r: temperature_centi(temperature_fine(r, cal)), temperature * 100,
                    ADC_MAX_TP)
    t_fine = temperature_fine(adc_t, cal)
    adc_p = _search(lambda r: pressure_q24_8(r, t_fine, cal), pressure * 25600, ADC_MAX_TP,
                    rising=False)
    adc_h = _search(lambda r: humidity_q22_10(r, t_fine, cal), humidity * 1024, ADC_MAX_H)
    return adc_t, adc_p, adc_h


class Bme280Chip:
    """A BME280 at one address: registers, forced-mode timing and fault injection.

    Set :attr:`temperature` (°C), :attr:`humidity` (%RH) and :attr:`pressure` (hPa); each
    conversion reports them. Faults: :meth:`go_absent` / :meth:`come_back`,
    :attr:`stuck_measuring`, :attr:`chip_id` (0x58 answers like a BMP280).
    """

    def __init__(self, clock: Clock, address: int = 0x76, *, block1: bytes = UNIT_BLOCK1,
                 block2: bytes = UNIT_BLOCK2, temperature: float = 21.5,
                 humidity: float = 45.0, pressure: float = 1013.25) -> None:
        self.clock = clock
        self.address = address
        self.block1, self.block2 = block1, block2
        self.calibration = parse_calibration(block1, block2)
        self.temperature, self.humidity, self.pressure = temperature, humidity, pressure
        self.chip_id = CHIP_ID_BME280
        self.stuck_measuring = False
        self.present = True
        #: Conversion time in s; None = the datasheet's typical time for the oversampling.
        self.conversion_time: float | None = None
        self.conversions = 0
        self._power_on()

    def _power_on(self) -> None:
        self.registers = bytearray(256)
        self.registers[REG_CALIB_TP:REG_CALIB_TP + len(self.block1)] = self.block1
        self.registers[REG_CALIB_H:REG_CALIB_H + len(self.block2)] = self.block2
        # data registers hold the "skipped" pattern until the first conversion
        self.registers[REG_DATA:REG_DATA + 8] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])
        self._pointer = 0
        self._osrs_h_latched = 0
        self._nvm_copy_until = self.clock.monotonic() + STARTUP_TIME
        self._converting: tuple[float, int, int, int] | None = None  # done at, osrs t/p/h

    # --- faults ---

    def go_absent(self) -> None:
        """Stop acknowledging (unplugged, or lost power): every transfer NACKs."""
        self.present = False

    def come_back(self) -> None:
        """Answer again, as after a power cycle: registers back to their reset values."""
        self.present = True
        self._power_on()

    # --- the bus side ---

    def write(self, data: bytes) -> None:
        """A register address, then (value, address, value …): the BME280 write format."""
        self._check_present()
        self._settle()
        if not data:
            return  # an address-only probe (i2cdetect): acknowledged, nothing written
        self._pointer = data[0]
        # after the first address the chip takes address/value pairs, no auto-increment
        for i in range(1, len(data), 2):
            self._write_register(self._pointer, data[i])
            if i + 1 < len(data):
                self._pointer = data[i + 1]

    def read(self, length: int) -> bytes:
        """Read ``length`` registers from the pointer on, auto-incrementing."""
        self._check_present()
        self._settle()
        out = bytearray()
        for _ in range(length):
            out.append(self._register(self._pointer))
            self._pointer = (self._pointer + 1) & 0xFF
        return bytes(out)

    def _check_present(self) -> None:
        if not self.present:
            raise nack(self.address)

    def _register(self, reg: int) -> int:
        if reg == REG_CHIP_ID:
            return self.chip_id
        if reg == REG_STATUS:
            measuring = self.stuck_measuring or self._converting is not None
            nvm = self.clock.monotonic() < self._nvm_copy_until
            return (STATUS_MEASURING if measuring else 0) | (STATUS_IM_UPDATE if nvm else 0)
        if reg == REG_RESET:
            return 0x00
        return self.registers[reg]

    def _write_register(self, reg: int, value: int) -> None:
        if reg == REG_RESET and value == RESET_COMMAND:
            self._power_on()
        elif reg == REG_CTRL_HUM:
            self.registers[reg] = value & 0x07  # readable at once, effective only via ctrl_meas
        elif reg == REG_CTRL_MEAS:
            self.registers[reg] = value
            self._osrs_h_latched = self.registers[REG_CTRL_HUM]
            if value & 0x03 in (0b01, 0b10) and self._converting is None:
                self._start(value >> 5, (value >> 2) & 0x07, self._osrs_h_latched)
        elif reg == REG_CONFIG:
            self.registers[reg] = value  # config: stored, the filter is not modelled

    def _start(self, osrs_t: int, osrs_p: int, osrs_h: int) -> None:
        def samples(code: int) -> int:
            return 0 if code == 0 else min(1 << (code - 1), 16)

        n_t, n_p, n_h = samples(osrs_t), samples(osrs_p), samples(osrs_h)
        # datasheet typical: 1 + 2·N_T + (2·N_P + 0.5) + (2·N_H + 0.5) ms, skipped terms left out
        typical = (1 + 2 * n_t + (2 * n_p + 0.5 if n_p else 0) + (2 * n_h + 0.5 if n_h else 0))
        duration = typical / 1000 if self.conversion_time is None else self.conversion_time
        self._converting = (self.clock.monotonic() + duration, osrs_t, osrs_p, osrs_h)

    def _settle(self) -> None:
        """Finish a conversion whose time has passed (the chip then returns to sleep)."""
        if self._converting is None or self.stuck_measuring:
            return
        done_at, osrs_t, osrs_p, osrs_h = self._converting
        if self.clock.monotonic() < done_at:
            return
        self._converting = None
        self.conversions += 1
        adc_t, adc_p, adc_h = raw_for(self.temperature, self.humidity, self.pressure,
                                      self.calibration)
        # datasheet: with the filter off, T and p carry 16 + (osrs − 1) bits; the rest read 0
        adc_t = SKIPPED_TP if osrs_t == 0 else _resolution(adc_t, osrs_t)
        adc_p = SKIPPED_TP if osrs_p == 0 else _resolution(adc_p, osrs_p)
        adc_h = SKIPPED_H if osrs_h == 0 else adc_h
        self.registers[REG_DATA:REG_DATA + 8] = encode_data(adc_t, adc_p, adc_h)
        self.registers[REG_CTRL_MEAS] &= 0xFC  # forced mode ends in sleep mode


def _resolution(adc: int, osrs: int) -> int:
    step = 1 << (5 - min(osrs, 5))  # ×1: 16 bits, so steps of 16; ×16 (codes 5–7): 20 bits
    return min(ADC_MAX_TP - step + 1, (adc + step // 2) // step * step)


def encode_data(adc_t: int, adc_p: int, adc_h: int) -> bytes:
    """Pack raw values as registers 0xF7–0xFE: press, temp (20-bit MSB first), hum (16-bit)."""
    return bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
                  adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
                  adc_h >> 8, adc_h & 0xFF])


def fake_bus(chip: Bme280Chip, number: int = 1) -> FakeI2cBus:
    """A fake bus with this chip at its address."""
    return FakeI2cBus(number, {chip.address: chip})


@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Bme280]:
    """Yield a driver wired to a simulated BME280 at bus 1, 0x76 (not yet opened)."""
    chip = Bme280Chip(clock)
    config = Bme280Config.model_validate(Bme280.sample_config)
    yield Bme280(config, DriverContext(clock=clock, i2c=FakeBuses(fake_bus(chip))))
