"""AMG8833 register layer and chip model: worked examples, codecs, golden cases, the fake bus.

Golden cases: cases/amg8833/<case>/ holds config.yaml (the sensor entry, for the driver the lead
writes later), wire.hex = the 128 pixel bytes of registers 0x80–0xFF then the 2 thermistor bytes
of 0x0E–0x0F, and expected.jsonl = one line {"thermistor": °C, "pixels": 8 × 8 °C} or
{"error": substring}. This file reads them itself (no driver config class yet).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.clock import FakeClock
from edgeagent.driver import DriverError, FrameError
from edgeagent.drivers.amg8833_device import (
    Amg8833Device,
    decode_frame,
    encode_pixel,
    encode_thermistor,
    pixel_celsius,
    thermistor_celsius,
)
from edgeagent.drivers.sim.amg8833 import PIXEL_RANGE, Amg8833Chip, encode_frame, fake_bus
from edgeagent.drivers.sim.i2cbus import FakeBuses, FakeI2cBus
from golden import read_hex

CASES = Path(__file__).parent / "cases" / "amg8833"


def run(scenario: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 5.0) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


def register(chip: Amg8833Chip, reg: int, n: int = 1) -> bytes:
    chip.write(bytes([reg]))
    return chip.read(n)


# --- worked examples and codecs ---------------------------------------------------------------

@pytest.mark.parametrize(("raw", "celsius"), [
    ("64 00", 25.0), ("F0 0F", -4.0), ("9C 0F", -25.0), ("00 00", 0.0), ("01 00", 0.25),
    ("FF 0F", -0.25), ("FF 07", 511.75), ("00 08", -512.0), ("9C FF", -25.0)])
def test_pixel_worked_examples(raw, celsius):
    lo, hi = bytes.fromhex(raw)
    assert pixel_celsius(lo, hi) == celsius


@pytest.mark.parametrize(("raw", "celsius"), [
    ("90 01", 25.0), ("10 08", -1.0), ("00 00", 0.0), ("FF 07", 127.9375), ("FF 0F", -127.9375)])
def test_thermistor_worked_examples(raw, celsius):
    lo, hi = bytes.fromhex(raw)
    assert thermistor_celsius(lo, hi) == celsius


def test_every_12_bit_pixel_value_round_trips():
    for raw in range(0x1000):
        lo, hi = raw & 0xFF, raw >> 8
        assert encode_pixel(pixel_celsius(lo, hi)) == bytes([lo, hi])


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(raw=st.integers(0, 0xFFF), junk=st.integers(0, 0xF))
def test_pixel_and_thermistor_codecs_round_trip(raw, junk):
    lo, hi = raw & 0xFF, raw >> 8
    celsius = pixel_celsius(lo, hi | junk << 4)  # bits 15:12 are not data
    assert celsius == pixel_celsius(lo, hi)
    assert encode_pixel(celsius) == bytes([lo, hi])
    assert -512.0 <= celsius <= 511.75 and celsius % 0.25 == 0
    if raw != 0x800:  # sign-magnitude has a negative zero; it encodes back as +0
        assert encode_thermistor(thermistor_celsius(lo, hi)) == bytes([lo, hi])


def test_encoders_round_to_the_nearest_step_and_saturate():
    assert encode_pixel(25.1) == bytes.fromhex("64 00")
    assert encode_pixel(25.13) == bytes.fromhex("65 00")
    assert encode_pixel(1000.0) == bytes.fromhex("FF 07")
    assert encode_pixel(-1000.0) == bytes.fromhex("00 08")
    assert encode_thermistor(-1.0) == bytes.fromhex("10 08")
    assert encode_thermistor(-0.01) == bytes.fromhex("00 00")


def test_decode_frame_layout_and_length():
    raw = bytes.fromhex("64 00 F0 0F") + bytes(120) + bytes.fromhex("9C 0F 01 00")
    image = decode_frame(raw)
    assert image.shape == (8, 8)
    assert (image[0, 0], image[0, 1], image[7, 6], image[7, 7]) == (25.0, -4.0, -25.0, 0.25)
    assert np.count_nonzero(image) == 4
    with pytest.raises(FrameError, match="127 bytes, expected 128"):
        decode_frame(raw[:127])


# --- golden cases ------------------------------------------------------------------------------

def test_golden_cases_are_there():
    assert len(list(CASES.iterdir())) >= 3


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir()), ids=str)
def test_golden_case(case):
    folder = CASES / case
    entry = yaml.safe_load((folder / "config.yaml").read_text())
    assert entry["driver"] == "amg8833" and entry["address"] in (0x68, 0x69)
    wire = read_hex(folder / "wire.hex")
    (expected,) = [json.loads(line) for line in (folder / "expected.jsonl").read_text()
                   .splitlines() if line.strip()]
    try:
        image = decode_frame(wire[:-2])
    except FrameError as exc:
        assert expected["error"] in str(exc)
        return
    assert "error" not in expected
    assert image.tolist() == expected["pixels"]
    assert thermistor_celsius(*wire[-2:]) == expected["thermistor"]


# --- the chip model -----------------------------------------------------------------------------

def test_model_frames_follow_the_frame_rate():
    clock = FakeClock()
    value = {"now": 20.0}
    chip = Amg8833Chip(clock, scene=lambda t: np.full((8, 8), value["now"]))
    assert register(chip, 0x80, 2) == b"\x00\x00"  # nothing measured before the first period
    clock.advance(0.1)
    assert register(chip, 0x80, 2) == encode_pixel(20.0)
    value["now"] = 30.0
    clock.advance(0.05)
    assert register(chip, 0x80, 2) == encode_pixel(20.0)
    clock.advance(0.05)
    assert register(chip, 0x80, 2) == encode_pixel(30.0)
    chip.write(b"\x02\x01")  # 1 fps
    value["now"] = 40.0
    clock.advance(0.9)
    assert register(chip, 0x80, 2) == encode_pixel(30.0)
    clock.advance(0.1)
    assert register(chip, 0x80, 2) == encode_pixel(40.0)
    assert chip.frames == 3


def test_model_registers_reset_and_flags():
    clock = FakeClock()
    chip = Amg8833Chip(clock, scene=lambda t: np.full((8, 8), 95.0), thermistor=-1.0)
    chip.write(b"\x02\x01\x03")  # FPSC 1, then INTC 3: auto-increment on writes
    assert register(chip, 0x02, 2) == b"\x01\x03"
    clock.advance(1.0)
    assert register(chip, 0x04) == b"\x04"  # pixel overflow: 95 °C is out of range
    assert register(chip, 0x80, 2) == encode_pixel(PIXEL_RANGE[1])  # clamped
    assert register(chip, 0x0E, 2) == bytes.fromhex("10 08")  # −1 °C thermistor
    chip.write(b"\x05\x04")  # SCLR
    assert register(chip, 0x04) == b"\x00"
    assert register(chip, 0x05) == b"\x00"  # self-clearing
    clock.advance(1.0)
    assert register(chip, 0x04) == b"\x04"
    chip.write(b"\x01\x30")  # flag reset keeps the settings
    assert register(chip, 0x04) + register(chip, 0x02) == b"\x00\x01"
    chip.write(b"\x01\x3f")  # initial reset restores the defaults
    assert register(chip, 0x02, 2) == b"\x00\x00"
    chip.thermistor = 85.0
    clock.advance(0.1)
    assert register(chip, 0x04) == b"\x0c"  # pixel and thermistor overflow
    assert register(chip, 0x0E, 2) == encode_thermistor(80.0)


def test_model_burst_read_wraps_and_probe_is_acknowledged():
    chip = Amg8833Chip(FakeClock())
    chip.write(b"")
    chip.write(b"\xfe")
    assert len(chip.read(4)) == 4  # 0xFE, 0xFF, then 0x00, 0x01
    chip.write(b"\x00\x00")
    assert register(chip, 0x00) == b"\x00"


def test_model_sleep_and_standby():
    clock = FakeClock()
    chip = Amg8833Chip(clock)

    def frames() -> int:
        register(chip, 0x04)  # the model catches up on bus access
        return chip.frames

    chip.write(b"\x00\x10")  # sleep
    chip.write(b"\x02\x01")  # ignored while asleep
    clock.advance(5.0)
    assert frames() == 0 and register(chip, 0x02) == b"\x00"
    chip.write(b"\x00\x21")  # stand-by, one frame every 10 s
    clock.advance(9.9)
    assert frames() == 0
    clock.advance(0.1)
    assert frames() == 1
    chip.write(b"\x00\x00")
    clock.advance(0.1)
    assert frames() == 2


def test_model_stuck_frame_and_absence():
    clock = FakeClock()
    chip = Amg8833Chip(clock, scene=lambda t: np.full((8, 8), t - 990.0))
    clock.advance(0.1)
    first = register(chip, 0x80, 128)
    chip.stuck = True
    clock.advance(0.5)
    assert register(chip, 0x80, 128) == first
    chip.stuck = False
    clock.advance(0.1)
    assert register(chip, 0x80, 128) != first
    chip.go_absent()
    with pytest.raises(OSError) as caught:
        chip.read(1)
    assert caught.value.errno == 121
    chip.come_back()
    assert register(chip, 0x80, 2) == b"\x00\x00"  # a power cycle: registers reset


def test_encode_frame_flags_overflow_only_beyond_the_range():
    image = np.full((8, 8), 25.0)
    assert encode_frame(image)[1] is False
    image[0, 0] = PIXEL_RANGE[0]
    image[7, 7] = PIXEL_RANGE[1]
    assert encode_frame(image)[1] is False
    image[3, 3] = -20.25
    data, overflow = encode_frame(image)
    assert overflow and data[2 * 27:2 * 27 + 2] == encode_pixel(-20.0)


# --- the device layer on the fake bus -----------------------------------------------------------

def rig(*, chip_address: int = 0x69, address: int = 0x69, fps: int = 10,
        scene: Callable[[float], np.ndarray] | None = None
        ) -> tuple[Amg8833Device, Amg8833Chip, FakeI2cBus, FakeClock]:
    clock = FakeClock(auto_advance=True)
    chip = Amg8833Chip(clock, address=chip_address, scene=scene)
    bus = fake_bus(chip)
    return Amg8833Device(1, address, FakeBuses(bus), clock=clock, fps=fps), chip, bus, clock


@pytest.mark.parametrize(("fps", "fpsc"), [(10, 0x00), (1, 0x01)])
def test_init_sequence_on_the_bus(fps, fpsc):
    async def scenario():
        device, _, bus, _ = rig(fps=fps)
        await device.open()
        return bus.log

    log = run(scenario)
    assert [data for op, _, data in log if op == "write"] == [
        b"\x00\x00", b"\x01\x3f", b"\x03\x00", b"\x02" + bytes([fpsc]),  # PCTL RST INTC FPSC
        b"\x02"]  # then FPSC is read back
    assert log[-1] == ("read", 0x69, bytes([fpsc]))
    assert {address for _, address, _ in log} == {0x69}


def test_frame_is_four_32_byte_block_reads():
    async def scenario():
        device, _, bus, _ = rig()
        await device.open()
        bus.log.clear()
        await device.read_frame()
        return bus.log

    log = run(scenario)
    assert [(op, data) for op, _, data in log[:2]] == [("write", b"\x04"), ("read", b"\x00")]
    blocks = log[2:]
    assert [data for op, _, data in blocks if op == "write"] == [b"\x80", b"\xa0", b"\xc0",
                                                                  b"\xe0"]
    assert [len(data) for op, _, data in blocks if op == "read"] == [32, 32, 32, 32]


def test_scene_round_trips_through_the_bus():
    rng = np.random.default_rng(7)
    scene = rng.uniform(-20.0, 80.0, (8, 8))
    scene[2:4, 3:5] = 36.6

    async def scenario():
        device, chip, _, _ = rig(scene=lambda t: scene)
        chip.thermistor = -3.3
        await device.open()
        image = await device.read_frame()
        thermistor = await device.read_thermistor()
        await device.close()
        return image, thermistor

    image, thermistor = run(scenario)
    assert image.shape == (8, 8)
    assert np.array_equal(image, np.round(scene * 4) / 4)  # exact up to the 0.25 °C step
    assert thermistor == -3.3125


def test_pixel_overflow_is_a_frame_error_that_clears_the_flag():
    hot = {"on": True}

    def scene(t: float) -> np.ndarray:
        image = np.full((8, 8), 24.0)
        if hot["on"]:
            image[4, 4] = 150.0  # a soldering iron
        return image

    async def scenario():
        device, _, bus, clock = rig(scene=scene)
        await device.open()
        with pytest.raises(FrameError) as caught:
            await device.read_frame()
        hot["on"] = False
        await clock.sleep(0.1)
        image = await device.read_frame()
        return caught.value, bus.log, image

    error, log, image = run(scenario)
    assert str(error) == ("AMG8833 at I2C bus 1 address 0x69: pixel temperature overflow "
                          "(STAT 0x04 = 0x04: outside the measuring range); flag cleared")
    assert ("write", 0x69, b"\x05\x04") in log  # SCLR
    assert np.all(image == 24.0)


def test_absent_chip_names_sensor_bus_and_address():
    async def scenario():
        device, chip, bus, _ = rig()
        chip.go_absent()
        with pytest.raises(DriverError) as caught:
            await device.open()
        return caught.value, bus

    error, bus = run(scenario)
    assert not isinstance(error, FrameError)
    assert "AMG8833" in str(error) and "I2C bus 1 address 0x69" in str(error)
    assert "NACK" in str(error) and "register 0x00" in str(error)
    assert bus.closed


def test_chip_on_the_other_address_is_not_found():
    async def scenario():
        device, _, _, _ = rig(chip_address=0x68, address=0x69)
        with pytest.raises(DriverError, match=r"I2C bus 1 address 0x69.*NACK"):
            await device.open()
        device68, _, _, _ = rig(chip_address=0x68, address=0x68)
        await device68.open()
        return await device68.read_thermistor()

    assert run(scenario) == 26.0


class NotAnAmg(Amg8833Chip):
    """Something else at 0x69 that acknowledges but keeps no registers."""

    def read(self, length: int) -> bytes:
        return b"\xff" * length


def test_a_foreign_chip_at_the_address_is_refused():
    async def scenario():
        clock = FakeClock(auto_advance=True)
        device = Amg8833Device(1, 0x69, FakeBuses(fake_bus(NotAnAmg(clock))), clock=clock)
        with pytest.raises(DriverError) as caught:
            await device.open()
        return str(caught.value)

    assert run(scenario) == ("AMG8833 at I2C bus 1 address 0x69: FPSC (0x02) reads 0xFF after "
                             "writing 0x00: another chip at this address (SPS30 and SEN5x also "
                             "use 0x69)?")


def test_chip_lost_and_back_after_a_power_cycle():
    async def scenario():
        device, chip, _, _ = rig(scene=lambda t: np.full((8, 8), 30.0))
        await device.open()
        chip.go_absent()
        with pytest.raises(DriverError, match=r"AMG8833 reading register 0x04.*NACK"):
            await device.read_frame()
        chip.come_back()
        await device.open()  # the device layer's open re-runs the init sequence
        return await device.read_frame()

    assert np.all(run(scenario) == 30.0)


def test_argument_checks_and_not_open():
    clock = FakeClock()
    with pytest.raises(ValueError, match=r"0x68 .* or 0x69 .*, not 0x6A"):
        Amg8833Device(1, 0x6A, clock=clock)
    with pytest.raises(ValueError, match="10 or 1 fps, not 5"):
        Amg8833Device(1, 0x69, clock=clock, fps=5)

    async def scenario():
        device, _, _, _ = rig()
        with pytest.raises(DriverError, match="AMG8833 at I2C bus 1 address 0x69 is not open"):
            await device.read_frame()
        await device.close()
        await device.close()

    run(scenario)
