"""BME280: golden vectors, calibration parsing, compensation, chip model, driver on a fake bus."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverContext, DriverError, FrameError, QuantityClass, StatKind
from edgeagent.drivers.bme280 import (
    Bme280,
    Bme280Config,
    Calibration,
    compensate,
    humidity_q22_10,
    measurement_time,
    parse_calibration,
    pressure_q24_8,
    temperature_centi,
    temperature_fine,
)
from edgeagent.drivers.sim.bme280 import (
    UNIT_BLOCK1,
    UNIT_BLOCK2,
    UNIT_CALIBRATION,
    Bme280Chip,
    conformance_driver,
    encode_data,
    fake_bus,
    raw_for,
)
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus

# BMP280 datasheet BST-BMP280-DS001 §3.12 worked example (the BME280 datasheet has none; its T
# and p formulas are the same): this trimming, adc_T 519888, adc_P 415148.
BMP280_EXAMPLE_ADC_T = 519888
BMP280_EXAMPLE_ADC_P = 415148
SECOND_UNIT = dataclasses.replace(UNIT_CALIBRATION, dig_H2=380, dig_H3=12, dig_H4=290,
                                  dig_H5=-13, dig_H6=-7)  # exercises H3 and negative H5/H6


def double_reference(adc_t: int, adc_p: int, adc_h: int, c: Calibration
                     ) -> tuple[float, float, float]:
    """Datasheet appendix 8.1 double formulas: °C, Pa, %RH (independent of the driver's)."""
    var1 = (adc_t / 16384.0 - c.dig_T1 / 1024.0) * c.dig_T2
    var2 = (adc_t / 131072.0 - c.dig_T1 / 8192.0) ** 2 * c.dig_T3
    t_fine = int(var1 + var2)  # (BME280_S32_t) cast: truncation
    temperature = (var1 + var2) / 5120.0
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * c.dig_P6 / 32768.0
    var2 = var2 + var1 * c.dig_P5 * 2.0
    var2 = var2 / 4.0 + c.dig_P4 * 65536.0
    var1 = (c.dig_P3 * var1 * var1 / 524288.0 + c.dig_P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * c.dig_P1
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    p = p + (c.dig_P9 * p * p / 2147483648.0 + p * c.dig_P8 / 32768.0 + c.dig_P7) / 16.0
    h = t_fine - 76800.0
    h = (adc_h - (c.dig_H4 * 64.0 + c.dig_H5 / 16384.0 * h)) * (
        c.dig_H2 / 65536.0 * (1.0 + c.dig_H6 / 67108864.0 * h * (1.0 + c.dig_H3 / 67108864.0 * h)))
    h = h * (1.0 - c.dig_H1 * h / 524288.0)
    return temperature, p, min(max(h, 0.0), 100.0)


# --- golden vectors --------------------------------------------------------------------------

def test_bmp280_datasheet_example_temperature():
    t_fine = temperature_fine(BMP280_EXAMPLE_ADC_T, UNIT_CALIBRATION)
    assert t_fine == 128422
    assert temperature_centi(t_fine) == 2508  # 25.08 °C


def test_bmp280_datasheet_example_pressure():
    t_fine = temperature_fine(BMP280_EXAMPLE_ADC_T, UNIT_CALIBRATION)
    pascal = pressure_q24_8(BMP280_EXAMPLE_ADC_P, t_fine, UNIT_CALIBRATION) / 256
    assert pascal == 25767233 / 256
    # the datasheet prints 100653.27 Pa: its spreadsheet keeps t_fine's fraction (128422.29)
    assert abs(pascal - 100653.27) < 0.02
    assert abs(pascal - double_reference(BMP280_EXAMPLE_ADC_T, BMP280_EXAMPLE_ADC_P, 0,
                                         UNIT_CALIBRATION)[1]) < 0.01


def test_example_through_the_data_registers():
    raw = encode_data(BMP280_EXAMPLE_ADC_T, BMP280_EXAMPLE_ADC_P, 29000)
    assert raw == bytes.fromhex("65 5A C0 7E ED 00 71 48")
    values = compensate(raw, UNIT_CALIBRATION)
    assert values["temperature"] == 25.08
    assert values["pressure"] == pytest.approx(1006.5325, abs=1e-4)
    assert values["relativeHumidity"] == pytest.approx(
        double_reference(BMP280_EXAMPLE_ADC_T, 0, 29000, UNIT_CALIBRATION)[2], abs=0.01)


@pytest.mark.parametrize("cal", [UNIT_CALIBRATION, SECOND_UNIT], ids=["unit", "second-unit"])
def test_integer_and_double_formulas_agree_over_the_operating_range(cal):
    adc_t_cold, adc_t_hot = raw_for(-40, 50, 1000, cal)[0], raw_for(85, 50, 1000, cal)[0]
    checked = 0
    for i in range(26):
        adc_t = adc_t_cold + (adc_t_hot - adc_t_cold) * i // 25
        t_fine = temperature_fine(adc_t, cal)
        celsius = temperature_centi(t_fine) / 100
        adc_p_high = raw_for(celsius, 50, 1100, cal)[1]  # high pressure = low raw value
        adc_p_low = raw_for(celsius, 50, 300, cal)[1]
        for j in range(9):
            adc_p = adc_p_high + (adc_p_low - adc_p_high) * j // 8
            for adc_h in range(0, 65536, 4096):
                t, p, h = double_reference(adc_t, adc_p, adc_h, cal)
                assert abs(t - celsius) <= 0.01
                assert abs(p - pressure_q24_8(adc_p, t_fine, cal) / 256) <= 0.5  # Pa
                assert abs(h - humidity_q22_10(adc_h, t_fine, cal) / 1024) <= 0.01
                checked += 1
    assert checked == 26 * 9 * 16


# --- calibration parsing ---------------------------------------------------------------------

def test_parse_the_simulated_unit():
    expected = Calibration(
        dig_T1=27504, dig_T2=26435, dig_T3=-1000, dig_P1=36477, dig_P2=-10685, dig_P3=3024,
        dig_P4=2855, dig_P5=140, dig_P6=-7, dig_P7=15500, dig_P8=-14600, dig_P9=6000,
        dig_H1=75, dig_H2=362, dig_H3=0, dig_H4=313, dig_H5=50, dig_H6=30)
    assert parse_calibration(UNIT_BLOCK1, UNIT_BLOCK2) == expected
    assert UNIT_BLOCK2.hex(" ") == "6a 01 00 13 29 03 1e"


@pytest.mark.parametrize(("e4_e5_e6", "h4", "h5"), [
    ("13 29 03", 0x139, 0x032),  # nibbles of 0xE5: high → H5[3:0], low → H4[3:0]
    ("7F 0F 00", 2047, 0),
    ("80 F7 FF", -2041, -1),  # 0x807 and 0xFFF as 12-bit two's complement
    ("FF 0F 80", -1, -2048),
    ("00 80 00", 0, 8),
])
def test_h4_h5_nibble_split_and_sign(e4_e5_e6, h4, h5):
    block2 = UNIT_BLOCK2[:3] + bytes.fromhex(e4_e5_e6) + UNIT_BLOCK2[6:]
    cal = parse_calibration(UNIT_BLOCK1, block2)
    assert (cal.dig_H4, cal.dig_H5) == (h4, h5)


def test_signed_and_unsigned_fields():
    block1 = bytes.fromhex("FF FF FF FF 00 80 FF FF FE FF") + UNIT_BLOCK1[10:24] + b"\x00\xff"
    block2 = bytes.fromhex("00 80 FF 00 00 00 FF")
    cal = parse_calibration(block1, block2)
    assert (cal.dig_T1, cal.dig_T2, cal.dig_T3) == (65535, -1, -32768)  # T1 u16, T2/T3 s16
    assert (cal.dig_P1, cal.dig_P2) == (65535, -2)  # P1 u16, P2 s16
    assert (cal.dig_H1, cal.dig_H2, cal.dig_H3, cal.dig_H6) == (255, -32768, 255, -1)


def test_calibration_with_wrong_length_or_blank_is_a_driver_error():
    with pytest.raises(DriverError, match="25 \\+ 7 bytes"):
        parse_calibration(UNIT_BLOCK1[:25], UNIT_BLOCK2)
    with pytest.raises(DriverError, match="blank"):
        parse_calibration(b"\xff" * 26, UNIT_BLOCK2)
    with pytest.raises(DriverError, match="blank"):
        parse_calibration(b"\x00" * 26, UNIT_BLOCK2)
    with pytest.raises(DriverError) as caught:
        parse_calibration(b"", b"")
    assert not isinstance(caught.value, FrameError)  # a restart, not a counted bad frame


# --- compensation: range ends, sentinels, arbitrary bytes ------------------------------------

def values_for(temperature: float, humidity: float, pressure: float) -> dict[str, float]:
    return compensate(encode_data(*raw_for(temperature, humidity, pressure)), UNIT_CALIBRATION)


@pytest.mark.parametrize(("t", "rh", "p"), [
    (-40.0, 50.0, 1000.0), (85.0, 50.0, 1000.0), (20.0, 50.0, 300.01), (20.0, 50.0, 1099.99),
    (-40.0, 1.0, 300.01), (85.0, 99.0, 1099.99), (20.0, 0.5, 1013.25), (20.0, 99.9, 1013.25)])
def test_range_ends_round_trip(t, rh, p):
    values = values_for(t, rh, p)
    assert values["temperature"] == pytest.approx(t, abs=0.005)
    assert values["relativeHumidity"] == pytest.approx(rh, abs=0.005)
    assert values["pressure"] == pytest.approx(p, abs=0.002)


@pytest.mark.parametrize(("t", "p", "message"), [
    (-40.02, 1000.0, "implausible temperature -40.02"), (85.01, 1000.0, "temperature 85.01"),
    (20.0, 299.99, "implausible pressure 299.99"), (20.0, 1100.01, "pressure 1100.01")])
def test_beyond_the_operating_range_is_a_frame_error(t, p, message):
    with pytest.raises(FrameError, match=message):
        values_for(t, 50.0, p)


def test_humidity_is_clipped_to_0_and_100_as_the_datasheet_formula_does():
    adc_t, adc_p, _ = raw_for(20.0, 50.0, 1000.0)
    assert compensate(encode_data(adc_t, adc_p, 0), UNIT_CALIBRATION)["relativeHumidity"] == 0.0
    barely_damp = raw_for(20.0, 0.01, 1000.0)[2]
    assert compensate(encode_data(adc_t, adc_p, barely_damp - 500), UNIT_CALIBRATION)[
        "relativeHumidity"] == 0.0  # the formula goes negative here
    assert compensate(encode_data(adc_t, adc_p, 0xFFFF), UNIT_CALIBRATION)[
        "relativeHumidity"] == 100.0


@pytest.mark.parametrize(("raw", "what"), [
    ("80 00 00 7E ED 00 71 48", "pressure not measured"),
    ("65 5A C0 80 00 00 71 48", "temperature not measured"),
    ("65 5A C0 7E ED 00 80 00", "humidity not measured")])
def test_skipped_sentinels_are_frame_errors(raw, what):
    with pytest.raises(FrameError, match=what):
        compensate(bytes.fromhex(raw), UNIT_CALIBRATION)


def test_pressure_sentinel_is_fine_when_pressure_is_off():
    values = compensate(bytes.fromhex("80 00 00 7E ED 00 71 48"), UNIT_CALIBRATION,
                        pressure=False)
    assert set(values) == {"temperature", "relativeHumidity"}


def test_short_data_and_all_zero_data_are_frame_errors():
    with pytest.raises(FrameError, match="7 bytes"):
        compensate(b"\x00" * 7, UNIT_CALIBRATION)
    with pytest.raises(FrameError, match="implausible temperature"):
        compensate(b"\x00" * 8, UNIT_CALIBRATION)  # a bus that reads zeros


@settings(max_examples=10_000, deadline=None, derandomize=True, database=None)  # repeatable
@given(raw=st.binary(min_size=8, max_size=8), pressure=st.booleans())
def test_arbitrary_data_bytes_give_finite_in_range_values_or_a_frame_error(raw, pressure):
    try:
        values = compensate(raw, UNIT_CALIBRATION, pressure=pressure)
    except FrameError:
        return
    assert all(math.isfinite(v) for v in values.values())
    assert -40.0 <= values["temperature"] <= 85.0
    assert 0.0 <= values["relativeHumidity"] <= 100.0  # clipped by the datasheet formula
    assert ("pressure" in values) == pressure
    if pressure:
        assert 300.0 <= values["pressure"] <= 1100.0


# --- chip model ------------------------------------------------------------------------------

def chip_on_manual_clock() -> tuple[Bme280Chip, FakeClock]:
    clock = FakeClock()
    return Bme280Chip(clock), clock


def register(chip: Bme280Chip, reg: int, n: int = 1) -> bytes:
    chip.write(bytes([reg]))
    return chip.read(n)


def test_model_register_file_and_burst_reads():
    chip, _ = chip_on_manual_clock()
    assert register(chip, 0xD0) == b"\x60"
    assert register(chip, 0x88, 26) == UNIT_BLOCK1
    assert register(chip, 0xE1, 7) == UNIT_BLOCK2
    assert register(chip, 0xF7, 8) == bytes.fromhex("80 00 00 80 00 00 80 00")  # reset values
    assert register(chip, 0xE0) == b"\x00"
    chip.write(b"\xd0")
    assert chip.read(1) + chip.read(1) == b"\x60\x00"  # the pointer auto-increments
    chip.write(b"")  # an address probe is acknowledged
    chip.go_absent()
    with pytest.raises(OSError) as caught:
        chip.write(b"")
    assert caught.value.errno == 121  # EREMOTEIO, as Linux reports a NACK


def test_model_forced_conversion_timing_and_return_to_sleep():
    chip, clock = chip_on_manual_clock()
    clock.advance(0.002)
    assert register(chip, 0xF3) == b"\x00"
    chip.write(b"\xf2\x00")
    chip.write(b"\xf4\x2d")  # T ×1, p ×4, H skipped, forced: the datasheet's 11.5 ms example
    assert register(chip, 0xF3) == b"\x08"
    clock.advance(0.0114)
    assert register(chip, 0xF3) == b"\x08"
    assert register(chip, 0xF7, 8) == bytes.fromhex("80 00 00 80 00 00 80 00")  # not yet
    clock.advance(0.0001)
    assert register(chip, 0xF3) == b"\x00"
    assert register(chip, 0xF4) == b"\x2c"  # mode bits back to sleep
    data = register(chip, 0xF7, 8)
    assert data[:6] != bytes.fromhex("80 00 00 80 00 00") and data[6:] == b"\x80\x00"


def test_model_takes_the_humidity_setting_at_the_ctrl_meas_write():
    chip, clock = chip_on_manual_clock()

    def convert() -> bytes:
        clock.advance(0.2)
        return register(chip, 0xF7, 8)

    chip.write(b"\xf4\x25")  # ctrl_hum still 0 after reset: humidity skipped
    chip.write(b"\xf2\x01")  # too late for this conversion
    assert convert()[6:] == b"\x80\x00"
    assert register(chip, 0xF2) == b"\x01"  # readable at once …
    chip.write(b"\xf4\x25")  # … effective from this write on
    assert convert()[6:] != b"\x80\x00"
    chip.write(b"\xf2\x00")
    chip.write(b"\xf4\x25")
    assert convert()[6:] == b"\x80\x00"
    chip.write(b"\xf2\x01\xf4\x25")  # address/value pairs in one transaction
    assert convert()[6:] != b"\x80\x00"


def test_model_soft_reset_restores_defaults_and_runs_the_nvm_copy():
    chip, clock = chip_on_manual_clock()
    clock.advance(0.01)
    chip.write(b"\xf2\x05")
    chip.write(b"\xe0\xb6")
    assert register(chip, 0xF2) == b"\x00"
    assert register(chip, 0xF3) == b"\x01"  # im_update while the NVM is copied
    clock.advance(0.002)
    assert register(chip, 0xF3) == b"\x00"
    chip.write(b"\xe0\x42")  # any other value is ignored
    assert register(chip, 0xF3) == b"\x00"


def test_model_resolution_follows_oversampling():
    chip, clock = chip_on_manual_clock()
    low_nibbles = []
    for ctrl_meas in (0x25, 0xB5):  # ×1: 16 bits; ×16: 20 bits
        chip.write(bytes([0xF2, 0x01, 0xF4, ctrl_meas]))
        clock.advance(0.2)
        data = register(chip, 0xF7, 8)
        low_nibbles.append((data[2], data[5]))  # xlsb[7:4] are the ADC's last 4 bits
    assert low_nibbles[0] == (0x00, 0x00)
    assert low_nibbles[1] != (0x00, 0x00)


def test_raw_for_inverts_the_compensation():
    for t, rh, p in ((-10.0, 20.0, 950.0), (35.5, 80.0, 1030.0)):
        values = values_for(t, rh, p)
        assert values == pytest.approx({"temperature": t, "relativeHumidity": rh,
                                        "pressure": p}, abs=0.005)


# --- driver on the fake bus ------------------------------------------------------------------

def run(scenario: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 5.0) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


def config(**overrides: Any) -> Bme280Config:
    return Bme280Config(**{**Bme280.sample_config, **overrides})


def rig(clock: FakeClock | None = None, *, chip_address: int = 0x76, **overrides: Any
        ) -> tuple[Bme280, Bme280Chip, FakeI2cBus, FakeClock]:
    clock = clock or FakeClock(auto_advance=True)
    chip = Bme280Chip(clock, chip_address)
    bus = fake_bus(chip)
    driver = Bme280(config(**overrides), DriverContext(clock=clock, i2c=FakeBuses(bus)))
    return driver, chip, bus, clock


def as_dict(readings) -> dict[str, float]:
    return {r.stream: r.value for r in readings}


def test_config_defaults_and_validation():
    cfg = config()
    assert (cfg.bus, cfg.address, cfg.oversampling, cfg.pressure) == (1, 0x76, 1, True)
    assert config(address=0x77).address == 0x77
    for bad in ({"address": 0x75}, {"oversampling": 3}, {"bus": -1}, {"no_such": 1}):
        with pytest.raises(ValidationError):
            config(**bad)


def test_streams():
    specs = Bme280.streams(config())
    assert [(s.name, s.unit) for s in specs] == [
        ("temperature", "Cel"), ("relativeHumidity", "%RH"), ("pressure", "hPa")]
    assert {(s.quantity, s.kind) for s in specs} == {(QuantityClass.CLIMATE, StatKind.LINEAR)}
    assert all(s.description for s in specs)
    assert [s.name for s in Bme280.streams(config(pressure=False))] == [
        "temperature", "relativeHumidity"]


def test_measurement_time_is_the_datasheet_maximum():
    assert measurement_time(1) == pytest.approx(0.0093)  # 1.25 + 2.3 + 2 × (2.3 + 0.575) ms
    assert measurement_time(16) == pytest.approx(0.1128)
    assert measurement_time(1, pressure=False) == pytest.approx(0.006425)


def test_open_and_reads_are_byte_exact_on_the_bus():
    async def scenario():
        driver, _, bus, _ = rig()
        await driver.open()
        opened = list(bus.log)
        bus.log.clear()
        await driver.read()
        await driver.read()
        await driver.close()
        return opened, bus

    opened, bus = run(scenario)
    assert opened == [
        ("write", 0x76, b"\xd0"), ("read", 0x76, b"\x60"),
        ("write", 0x76, b"\xe0\xb6"),
        ("write", 0x76, b"\xf3"), ("read", 0x76, b"\x00"),
        ("write", 0x76, b"\x88"), ("read", 0x76, UNIT_BLOCK1),
        ("write", 0x76, b"\xe1"), ("read", 0x76, UNIT_BLOCK2)]
    data = bus.log[5][2]
    assert len(data) == 8 and data[6:] != b"\x80\x00"
    one_read = [("write", 0x76, b"\xf2\x01"), ("write", 0x76, b"\xf4\x25"),  # ctrl_hum first
                ("write", 0x76, b"\xf3"), ("read", 0x76, b"\x00"),
                ("write", 0x76, b"\xf7"), ("read", 0x76, data)]
    assert bus.log == one_read * 2
    assert bus.closed


def test_oversampling_16_without_pressure_on_the_wire():
    async def scenario():
        driver, _, bus, _ = rig(oversampling=16, pressure=False)
        await driver.open()
        bus.log.clear()
        readings = await driver.read()
        await driver.close()
        return readings, bus.log

    readings, log = run(scenario)
    assert log[:2] == [("write", 0x76, b"\xf2\x05"), ("write", 0x76, b"\xf4\xa1")]
    assert [r.stream for r in readings] == ["temperature", "relativeHumidity"]


@pytest.mark.parametrize(("t", "rh", "p"), [
    (23.456, 61.3, 987.65), (-12.34, 5.0, 701.2), (41.0, 97.5, 1049.99), (0.0, 45.0, 1013.25)])
def test_values_match_the_model_at_oversampling_16(t, rh, p):
    async def scenario():
        driver, chip, _, _ = rig(oversampling=16)
        chip.temperature, chip.humidity, chip.pressure = t, rh, p
        await driver.open()
        readings = await driver.read()
        await driver.close()
        return as_dict(readings)

    values = run(scenario)
    assert abs(values["temperature"] - t) <= 0.01
    assert abs(values["relativeHumidity"] - rh) <= 0.1
    assert abs(values["pressure"] - p) <= 0.01


def test_oversampling_1_is_within_its_16_bit_resolution():
    async def scenario():
        driver, chip, _, _ = rig()
        chip.temperature, chip.humidity, chip.pressure = 23.456, 61.3, 987.65
        await driver.open()
        values = as_dict(await driver.read())
        await driver.close()
        return values

    values = run(scenario)
    assert abs(values["temperature"] - 23.456) <= 0.0025 + 0.005  # 0.005 °C steps, 0.01 output
    assert abs(values["pressure"] - 987.65) <= 0.0131  # 2.62 Pa steps
    assert abs(values["relativeHumidity"] - 61.3) <= 0.01


def test_reads_are_paced_once_per_interval():
    async def scenario():
        clock = FakeClock(start_mono=100.0, auto_advance=True)
        driver, chip, _, _ = rig(clock, interval=2.0)
        await driver.open()
        times = [(await driver.read())[0].t_monotonic for _ in range(4)]
        await driver.close()
        return times, chip.conversions

    times, conversions = run(scenario)
    assert times == pytest.approx([100.002, 102.002, 104.002, 106.002])
    assert conversions == 4


def test_no_conversion_is_triggered_before_the_interval_has_passed():
    async def scenario():
        clock = FakeClock(start_mono=100.0, auto_advance=True)
        driver, chip, _, _ = rig(clock, interval=5.0)
        triggered_at = []
        write = chip.write

        def spy(data: bytes) -> None:
            if data[:1] == b"\xf4":
                triggered_at.append(clock.monotonic())
            write(data)

        chip.write = spy  # type: ignore[method-assign]
        await driver.open()
        for _ in range(3):
            await driver.read()
        await driver.close()
        return triggered_at

    # time moves only by the driver's own sleeps: start-up 2 ms, then the 5 s pacing
    assert run(scenario) == pytest.approx([100.002, 105.002, 110.002])


def test_bmp280_is_refused_with_a_clear_error():
    async def scenario():
        driver, chip, bus, _ = rig()
        chip.chip_id = 0x58
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return caught.value, bus

    error, bus = run(scenario)
    assert "BMP280" in str(error) and "humidity is unavailable" in str(error)
    assert "I2C bus 1 address 0x76" in str(error)
    assert error.retryable is False
    assert bus.closed


def test_unknown_chip_id_names_id_bus_and_address():
    async def scenario():
        driver, chip, _, _ = rig()
        chip.chip_id = 0x61
        with pytest.raises(DriverError) as caught:
            await driver.open()
        return str(caught.value)

    assert run(scenario) == ("unknown chip ID 0x61 at I2C bus 1 address 0x76 (a BME280 reads "
                             "0x60): another chip at this address?")


@pytest.mark.parametrize(("chip_address", "configured"), [(0x76, 0x76), (0x76, 0x77)])
def test_absent_chip_at_open_names_bus_and_address(chip_address, configured):
    async def scenario():
        driver, chip, bus, _ = rig(chip_address=chip_address, address=configured)
        if chip_address == configured:
            chip.go_absent()
        with pytest.raises(DriverError) as caught:
            await driver.open()
        with pytest.raises(DriverError, match="not open"):
            await driver.read()
        return str(caught.value), bus

    message, bus = run(scenario)
    assert f"I2C bus 1 address 0x{configured:02X}" in message and "NACK" in message
    assert bus.closed


def test_chip_disappearing_and_coming_back():
    async def scenario():
        driver, chip, _, _ = rig()
        await driver.open()
        first = await driver.read()
        chip.go_absent()
        with pytest.raises(DriverError) as caught:
            await driver.read()
        await driver.close()
        with pytest.raises(DriverError):
            await driver.open()  # still gone
        chip.come_back()
        await driver.open()
        again = await driver.read()
        await driver.close()
        return first, caught.value, again

    first, error, again = run(scenario)
    assert not isinstance(error, FrameError) and "I2C bus 1 address 0x76" in str(error)
    assert as_dict(again) == as_dict(first)


def test_power_cycled_chip_measures_humidity_again_without_reopen():
    async def scenario():
        driver, chip, _, _ = rig()
        await driver.open()
        chip.come_back()  # a brown-out: ctrl_hum is 0 again, the driver does not know
        readings = await driver.read()
        await driver.close()
        return as_dict(readings)

    assert run(scenario)["relativeHumidity"] == pytest.approx(45.0, abs=0.01)


def test_stuck_measuring_bit_is_a_driver_error():
    async def scenario():
        driver, chip, _, _ = rig()
        await driver.open()
        chip.stuck_measuring = True
        with pytest.raises(DriverError) as caught:
            await driver.read()
        chip.stuck_measuring = False
        recovered = await driver.read()
        await driver.close()
        return caught.value, recovered

    error, recovered = run(scenario)
    assert not isinstance(error, FrameError)
    assert "measuring still set after 10 polls" in str(error)
    assert "I2C bus 1 address 0x76" in str(error)
    assert len(recovered) == 3


def test_a_conversion_slower_than_the_datasheet_is_polled_until_done():
    async def scenario():
        driver, chip, bus, _ = rig()
        chip.conversion_time = 0.0093 + 0.005  # 5 ms beyond the driver's wait
        await driver.open()
        bus.log.clear()
        readings = await driver.read()
        await driver.close()
        return readings, bus.log

    readings, log = run(scenario)
    status_reads = [data for op, _, data in log if op == "read" and len(data) == 1]
    assert status_reads == [b"\x08", b"\x08", b"\x08", b"\x00"]
    assert len(readings) == 3


class DropsCtrlHum(Bme280Chip):
    """A chip that loses ctrl_hum writes while ``dropping``: humidity comes back skipped."""

    dropping = True

    def write(self, data: bytes) -> None:
        if not (self.dropping and data[:1] == b"\xf2" and len(data) > 1):
            super().write(data)


def test_skipped_humidity_from_the_bus_is_a_frame_error_and_the_driver_carries_on():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        chip = DropsCtrlHum(clock)
        driver = Bme280(config(), DriverContext(clock=clock, i2c=FakeBuses(fake_bus(chip))))
        await driver.open()
        with pytest.raises(FrameError, match="humidity not measured"):
            await driver.read()
        chip.dropping = False
        readings = await driver.read()
        await driver.close()
        return readings

    assert len(run(scenario)) == 3


def test_read_before_open_close_before_open_and_close_twice():
    async def scenario():
        driver, _, bus, _ = rig()
        with pytest.raises(DriverError, match="I2C bus 1 address 0x76 is not open"):
            await driver.read()
        await driver.close()
        await driver.open()
        assert driver.calibration == UNIT_CALIBRATION
        await driver.close()
        await driver.close()
        assert driver.calibration is None
        return bus

    assert run(scenario).closed


def test_describe_and_conformance_hook():
    described = Bme280(config(), None).describe()  # type: ignore[arg-type]
    assert described["model"] == "Bosch BME280"
    assert {k: described[k] for k in ("bus", "address", "oversampling", "pressure")} == {
        "bus": 1, "address": 0x76, "oversampling": 1, "pressure": True}

    async def scenario():
        async with conformance_driver(FakeClock(auto_advance=True)) as driver:
            await driver.open()
            readings = await driver.read()
            await driver.close()
            return readings

    assert as_dict(run(scenario)) == pytest.approx(
        {"temperature": 21.5, "relativeHumidity": 45.0, "pressure": 1013.25}, abs=0.01)


def test_struct_layout_matches_the_register_map():
    # dig_P9 ends at 0x9F, 0xA0 is unused, dig_H1 sits at 0xA1
    assert struct.calcsize("<HhhHhhhhhhhh") == 0xA0 - 0x88
    assert UNIT_BLOCK1[0xA1 - 0x88] == UNIT_CALIBRATION.dig_H1
