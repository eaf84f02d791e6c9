"""MLX90640 chip model for :class:`~edgeagent.drivers.sim.i2cbus.FakeI2cBus`, word for word.

Memory map as the chip: EEPROM 0x2400–0x273F, RAM 0x0400–0x073F (0x0740–0x07FF read 0),
status register 0x8000, control register 1 0x800D (power-on value: EEPROM word 0x240C),
I2C configuration 0x800F (EEPROM 0x240E); other addresses read 0. Reads start with the
2-byte address written with a repeated start and auto-increment by word; writes are address then
big-endian words. Measurements run on an injected clock at the refresh rate of control register
1 (bits 9:7), alternating subpage 0 and 1; each one writes the pixels of its subpage (chess or
interleaved pattern, control bit 12) and the auxiliary words, then sets status bit 3 (new data)
and bit 0 (subpage). With RAM overwrite disabled (status bit 4 clear, the power-on state) a
measurement is dropped while bit 3 is still set.

Pixel words come from a scene callback ``scene(t) -> (24, 32) °C`` by inverting the driver's own
To computation (:mod:`edgeagent.drivers.mlx90640_calibration`) for the sensor temperature
:attr:`Mlx90640Chip.ambient`, supply :attr:`Mlx90640Chip.vdd`, emissivity and reflected
temperature: exact up to the rounding of the 16-bit words. Model choices, not from the
datasheet: PTAT is fixed at 1600 and VBE solved for Ta; the gain word is gainEE /
:attr:`gain_factor`; reserved RAM words read 0; EEPROM writes are recorded and ignored; the
subpage-repeat and step modes are not modelled. Faults: :meth:`go_absent` / :meth:`come_back`
(NACK, then a power cycle), :attr:`stalled` (no more measurements), a custom ``eeprom``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from edgeagent.clock import Clock
from edgeagent.drivers.mlx90640_calibration import (
    COLUMNS,
    CONTROL_CHESS,
    EEPROM_ADDRESS,
    EEPROM_WORDS,
    KELVIN,
    PIXELS,
    RAM_ADDRESS,
    RAM_CP_SUBPAGE0,
    RAM_CP_SUBPAGE1,
    RAM_GAIN,
    RAM_TA_PTAT,
    RAM_TA_VBE,
    RAM_VDD_PIX,
    ROWS,
    TA0,
    VDD0,
    Calibration,
    alpha_compensated,
    extract,
    frame_constants,
    ir_signal,
    ir_to_celsius,
    reflected_term,
    resolution_correction,
    subpage_mask,
)
from edgeagent.drivers.mlx90640_device import (
    ADDRESS,
    REG_CONTROL1,
    REG_STATUS,
    STATUS_NEW_DATA,
    STATUS_SUBPAGE,
    refresh_rate,
)
from edgeagent.drivers.sim.i2cbus import FakeI2cBus, nack

# The EEPROM of a real unit: "MLX90640 example data.xlsx", sheet "Input data", in
# melexis/mlx90640-library (Apache-2.0, (C) 2017 Melexis N.V.), as transcribed in
# paxswill/mlx9064x-rs, mlx9064x-test-data/src/mlx90640_example_data.rs. The same dump is the
# golden case tests/drivers/cases/mlx90640/melexis-example.
EXAMPLE_EEPROM = np.array([int(w, 16) for w in " ".join((
    "00AE 499A 0000 2061 0005 0320 03E0 1710 A224 0185 0499 0000 1901 0000 0000 B533",  # 0x2400
    "4210 FFC2 0202 0202 F202 F1F2 D1E1 AFC0 FF00 F002 F103 E103 E1F5 D1E4 C1D5 91C2",  # 0x2410
    "8895 30D9 EDCB 110F 3322 2233 0011 CCEE FFED 1100 2222 3333 2233 0022 DEF0 9ACC",  # 0x2420
    "15CC 2FA4 2555 9C78 7666 01C8 3B38 3534 2452 0463 13BB 0623 EC00 9797 9797 2AFB",  # 0x2430
    "00AE FBE0 1B70 F3BE 000E F86E 1B7E F3CE FFCE F41E 102E EC0E FFDE EC3E 139E EF9E",  # 0x2440
    "FB9E F77E 13E0 E7EE F7AE F750 0C30 EBEE F730 F010 0B50 E430 F420 F370 07C0 E450",  # 0x2450
    "0470 FBCE FF5C 0F90 07D0 FC3E FF6C 0F90 03A0 FC0E F40C 0BF0 03A0 F41E F78C 0B70",  # 0x2460
    "FF72 FF6E F7DE 07C0 FFA2 0330 F42E 0BC0 FF22 FC00 F75E 0410 0022 0350 F3A0 0832",  # 0x2470
    "04DE FBF0 1BCE F00E FC5E FC80 1BF0 F02E 0002 F81E 142E EC9E 07DE F09E 17CE F3AE",  # 0x2480
    "FFC0 FBB0 1080 EBFE FFE0 FF90 1460 E4AE FBC0 F840 0FE0 E860 F8C0 F400 0842 E4B0",  # 0x2490
    "0890 03BE FF9C 0FD0 0020 0450 FFCC 0FE0 07D0 03FE FBEE 0C60 0B80 F86E FB8E 1370",  # 0x24A0
    "0782 038E F85E 0FC2 07C2 037E F84E 0880 0392 0420 F7CE 0C42 FCB2 FFE0 F020 0490",  # 0x24B0
    "107E 03D0 1F90 FBCE 089E 0080 1820 F40E 0800 FC30 141E F06E 0400 FFA0 17CE F7B0",  # 0x24C0
    "07D0 FFB0 1830 F3FE 0002 FFE0 14D0 ECB0 FBE2 FCB0 13B0 ECA0 F8DE F432 0832 E8D0",  # 0x24D0
    "1420 FF8E FF6E 1380 0840 005E FBEC 0FB0 0BB2 FFFE FBDE 0820 0BC0 0360 FB8C 0F70",  # 0x24E0
    "0794 036E FBFE 0FA0 0BC4 0390 F89E 0C72 FFB2 FC70 FB7E 0470 FCB0 FFF0 F3F0 04A0",  # 0x24F0
    "049E 03B0 1F90 F7D0 042E 0070 1F70 FBBE 0F00 03B0 142E F01E 07B0 FFB0 1B60 F37E",  # 0x2500
    "FBD0 FF90 1410 F3C0 FC00 0370 1482 F030 F800 FC50 13C2 F050 0070 F812 0C02 EC80",  # 0x2510
    "00D0 FBFE FBCC 0810 FC60 FCB0 FBCE 0FE0 0B40 FFFE F05C 0840 07D0 FFD0 F79E 0FB0",  # 0x2520
    "F802 FFD0 F44E 0BF0 FC32 07A0 F4BE 0C60 F822 0080 F01E 0892 00B4 F850 F040 04B2",  # 0x2530
    "085E 0782 1F70 FBEE 001E 0420 1F80 FBB0 03B0 0390 17F0 F04E 0770 FFE0 1B40 F76E",  # 0x2540
    "FFC0 FFB0 17E0 EC1E 03A0 03A0 10C0 EC60 FBC2 FC80 0C00 EC60 0050 F800 0802 EC90",  # 0x2550
    "0080 F7B0 F7AE 0410 FC32 FC50 F7BE 07F0 FFD2 FBC0 F02E 0460 0382 F410 F36E 0BA0",  # 0x2560
    "FBF2 FBC0 F01C 0440 FFE2 FBE0 F0EE 08A2 F804 FCB0 EC3E 04A2 0082 F830 E830 04B2",  # 0x2570
    "13F0 0380 1F40 FBB0 0F90 0420 17A0 F7AE 0F40 FFE2 13AE F03E 0F12 FF60 0F50 F340",  # 0x2580
    "0362 FF30 1760 EFD0 0762 0360 1072 EC50 F7B2 F852 07B0 E480 F820 F7C2 03C2 E490",  # 0x2590
    "1422 03AE 036E 13C2 13B2 0440 FFCE 13D2 1362 0002 FBDE 0C40 1732 0390 FF8E 1760",  # 0x25A0
    "0B82 0750 039E 1000 0F82 0B80 FCAE 1080 0BD4 0470 FBCE 0C92 0832 07E0 F7FE 0CA2",  # 0x25B0
    "0010 0380 13D0 F7A0 FFBE 0052 1380 F770 FF70 FFA0 0FC0 F3BE 0340 FF60 0FC0 F370",  # 0x25C0
    "FB30 FB80 0C10 E40E FBA0 FBB0 0C42 E860 FB92 F4A2 0B82 E850 F832 FBA2 0002 E470",  # 0x25D0
    "0022 F7A0 EFFE 0BC0 03D2 F860 F79E 0F92 0390 FFB0 F3FE 0FC0 0762 FF70 EFFE 1380",  # 0x25E0
    "0362 FFB0 F42E 0810 07A2 07C0 F87E 0C82 0B94 0490 FB90 1062 0842 07B0 EC10 0C82",  # 0x25F0
    "0850 13E2 2360 0420 0460 10B0 1FB0 03E0 0B80 0BF0 1430 FC00 0F90 0BC2 1BA0 FFC0",  # 0x2600
    "07C2 0B82 1BF0 F44E 0BB2 0FD2 14C2 F8A0 0792 0852 13E2 F850 00A0 0032 0C22 F0D0",  # 0x2610
    "F452 EFE0 EF7E FC32 F072 F4C0 EBCE 03F0 FBA2 F400 E45E 0410 FFA2 F7D0 EBBE 0BD0",  # 0x2620
    "FBC2 FB80 F00E 0050 03D2 03D0 F0E0 0CA0 0384 0440 F3EE 0C52 00A2 0030 EC20 04C0",  # 0x2630
    "1022 0FD2 1F80 03F0 0830 0C82 17E0 FFB0 0410 0432 0870 F48E 0BD0 07B2 0F90 FBB0",  # 0x2640
    "FFF0 07A2 1410 F410 0022 0BC2 0CE0 F850 FFB2 0490 0BC0 ECC0 FC70 0012 0400 F0B2",  # 0x2650
    "0402 F7D0 F37E 0BF2 0022 FC90 EFFE 0FC2 FC12 F84E E87E 0480 07E2 FFB0 F7AE 0FC0",  # 0x2660
    "0002 07A0 F81E 1002 0422 0FD0 F8CE 1842 07A4 0880 FBB0 0CB0 0C62 0BF0 FBF0 10A0",  # 0x2670
    "F030 07D2 0BE0 F800 ECA0 0482 0830 FBE0 F040 FC80 0810 F030 F410 F830 0BA0 F7A0",  # 0x2680
    "F3D2 FFF2 0840 EFF0 F400 03B2 0872 F030 EFB2 0042 03B2 EC40 FFE0 FFE2 0012 F420",  # 0x2690
    "F422 F7B0 E7CE 0BD2 F080 0070 EC2E 0FE2 F850 0070 F00E 0C42 0020 0030 F7AE 17B2",  # 0x26A0
    "03D2 0400 F84E 17F0 0BE2 13A0 FC4E 1820 0792 1020 FB9E 1C10 1BC2 13C0 FBE0 2002",  # 0x26B0
    "F040 13A2 0F80 FC30 F46E 0CC2 17B2 0010 FC10 0872 1000 F8B0 07BE 0BE2 13B0 FFE0",  # 0x26C0
    "F410 0450 0C70 F420 03C0 0F82 1060 FFE0 FB70 13D2 0F90 F820 FC40 0FA2 0BE2 FC60",  # 0x26D0
    "F012 FB80 EB5E 0802 F420 0090 F78E 13E2 FC02 0060 F40E 1090 0F90 0BD0 FBAE 1FD2",  # 0x26E0
    "0002 0820 F85E 1800 0F82 1B60 FC3E 23C2 0B42 1BA0 FF7E 27E0 1012 1B70 FFC0 2040",  # 0x26F0
    "FC70 1BA2 0FA0 0BA0 0002 1432 0FE0 0010 F83E 13E0 085E 07E0 005E 0842 0FEE 03D0",  # 0x2700
    "FC20 0FE2 1400 0780 0B90 1772 1410 07B0 FB10 17F2 0B20 03F0 FC1E 17B2 07CE 0830",  # 0x2710
    "E050 EF80 D38E 0382 EBE0 F810 DFBE 07D0 EC10 FFC0 E01E 0BB0 F820 F810 EBBE 0BA0",  # 0x2720
    "FBF0 07A0 F3EE 1B50 0752 0F30 F7EE 1B80 02F2 0FD0 F70E 13C0 0BE0 1390 F79E 1C00",  # 0x2730
)).split()], dtype=np.int64)
REG_I2C_CONFIG = 0x800F
RAM_END = 0x0800  # the RAM block; words past 0x073F are not used and read 0
REGISTERS_END = 0x8017
STATUS_OVERWRITE = 0x0010
PTAT_WORD = 1600  # model choice: PTAT fixed, VBE carries Ta
NEWTON_STEPS = 6

Scene = Callable[[float], np.ndarray]


def _u16(value: float) -> int:
    """Round to a signed 16-bit word and return it unsigned (clamped to the int16 range)."""
    return int(min(max(round(value), -0x8000), 0x7FFF)) & 0xFFFF


def aux_words(cal: Calibration, control: int, ta: float, vdd: float,
              gain_factor: float = 1.0, cp_signal: float = 0.0) -> dict[int, int]:
    """RAM words (index from 0x0400 → value) that decode to this die temperature and supply."""
    vdd_word = ((vdd - VDD0) * cal.k_vdd + cal.vdd25) / resolution_correction(control, cal)
    vdd_decoded = (resolution_correction(control, cal) * round(vdd_word) - cal.vdd25) / cal.k_vdd
    vdd_decoded += VDD0
    # Ta = (VPTATart / (1 + KvPTAT ΔV) − VPTAT25) / KtPTAT + 25, VPTATart = PTAT/(PTAT·α + VBE)·2¹⁸
    v_ptat_art = ((ta - TA0) * cal.kt_ptat + cal.v_ptat25) * (
        1 + cal.kv_ptat * (vdd_decoded - VDD0))
    vbe = PTAT_WORD * (2.0 ** 18 / v_ptat_art - cal.alpha_ptat)
    gain_word = cal.gain_ee / gain_factor
    gain = cal.gain_ee / round(gain_word)
    chess = bool(control & CONTROL_CHESS)
    ta_vdd = (1 + cal.cp_kta * (ta - TA0)) * (1 + cal.cp_kv * (vdd_decoded - VDD0))
    cp1 = cal.cp_offset[1] + (0.0 if chess == cal.calibrated_chess else cal.il_chess[0])
    return {RAM_VDD_PIX: _u16(vdd_word), RAM_TA_PTAT: _u16(PTAT_WORD), RAM_TA_VBE: _u16(vbe),
            RAM_GAIN: _u16(gain_word),
            RAM_CP_SUBPAGE0: _u16((cal.cp_offset[0] * ta_vdd + cp_signal) / gain),
            RAM_CP_SUBPAGE1: _u16((cp1 * ta_vdd + cp_signal) / gain)}


def pixel_words(target: np.ndarray, ram: np.ndarray, subpage: int, control: int,
                cal: Calibration, *, emissivity: float = 0.95,
                reflected: float | None = None) -> np.ndarray:
    """Raw pixel words (768, unsigned) whose To is ``target`` (°C) for this subpage's RAM.

    ``ram`` must already hold the auxiliary words. Inverts the forward computation: Newton's
    method on the IR signal (the forward map is monotonic), then the affine gain/offset step,
    then the nearer of the two neighbouring integers.
    """
    fc = frame_constants(ram, control, cal)
    alpha_c = alpha_compensated(subpage, fc, cal)
    ta_tr = reflected_term(fc, emissivity, reflected)
    target = np.asarray(target, dtype=np.float64).reshape(PIXELS)
    kelvin = target + KELVIN
    v = (kelvin ** 4 - ta_tr) * alpha_c  # the equation without KsTo: a close first guess
    for _ in range(NEWTON_STEPS):
        slope = 4 * alpha_c * kelvin ** 3  # dV/dTo of the equation without KsTo
        v = v + (target - ir_to_celsius(v, alpha_c, ta_tr, cal)) * slope
    offset_part = ir_signal(np.zeros(PIXELS), subpage, fc, cal)
    raw = (v * emissivity - offset_part) / fc.gain
    low = np.floor(raw)
    candidates = np.stack([low, low + 1])
    errors = np.abs(np.stack([
        ir_to_celsius((ir_signal(c, subpage, fc, cal)) / emissivity, alpha_c, ta_tr, cal)
        for c in candidates]) - target)
    best = np.take_along_axis(candidates, np.nanargmin(np.nan_to_num(errors, nan=np.inf),
                                                       axis=0)[None], axis=0)[0]
    return np.clip(best, -0x8000, 0x7FFF).astype(np.int64) & 0xFFFF


class Mlx90640Chip:
    """One simulated MLX90640; plug it into ``FakeI2cBus(1, {0x33: chip})``.

    Set :attr:`scene` (``t -> (24, 32)`` °C), :attr:`ambient` (the die temperature, °C) and
    :attr:`vdd`; ``emissivity`` and ``reflected`` must match what the device layer assumes for
    its output to reproduce the scene.
    """

    def __init__(self, clock: Clock, *, address: int = ADDRESS,
                 eeprom: np.ndarray | None = None, scene: Scene | None = None,
                 ambient: float = 30.0, vdd: float = 3.3, emissivity: float = 0.95,
                 reflected: float | None = None, gain_factor: float = 1.0) -> None:
        self.clock = clock
        self.address = address
        self.eeprom = np.array(EXAMPLE_EEPROM if eeprom is None else eeprom, dtype=np.int64)
        if self.eeprom.shape != (EEPROM_WORDS,):
            raise ValueError(f"an MLX90640 EEPROM has {EEPROM_WORDS} words")
        try:
            self.calibration: Calibration | None = extract(self.eeprom)
        except Exception:  # a blank or broken EEPROM: the model still serves it
            self.calibration = None
        self.scene: Scene = scene or (lambda t: np.full((ROWS, COLUMNS), 24.0))
        self.ambient, self.vdd = ambient, vdd
        self.emissivity, self.reflected, self.gain_factor = emissivity, reflected, gain_factor
        self.present = True
        self.stalled = False
        self.measurements = 0
        self.eeprom_writes: list[tuple[int, int]] = []
        self._power_on()

    def _power_on(self) -> None:
        self.ram = np.zeros((RAM_END - RAM_ADDRESS), dtype=np.int64)
        self.status = 0x0000
        self.control = int(self.eeprom[0x240C - EEPROM_ADDRESS])
        self.i2c_config = int(self.eeprom[0x240E - EEPROM_ADDRESS])
        self._pointer = 0
        self._next_subpage = 0
        self._next_at = self.clock.monotonic() + self.period

    @property
    def period(self) -> float:
        """Seconds per subpage at the current refresh rate."""
        return 1.0 / refresh_rate(self.control)

    # --- faults ---

    def go_absent(self) -> None:
        """Stop acknowledging: every transfer NACKs."""
        self.present = False

    def come_back(self) -> None:
        """Answer again, as after a power cycle (control register back to its EEPROM value)."""
        self.present = True
        self._power_on()

    # --- measurements ---

    def _settle(self) -> None:
        now = self.clock.monotonic()
        if now < self._next_at:
            return
        due = math.floor((now - self._next_at) / self.period) + 1
        skipped = max(0, due - 2)  # only the newest of each subpage can still be seen
        self._next_subpage = (self._next_subpage + skipped) % 2
        for k in range(skipped, due):
            self._measure(self._next_at + k * self.period)
        self._next_at += due * self.period

    def _measure(self, t: float) -> None:
        subpage, self._next_subpage = self._next_subpage, 1 - self._next_subpage
        if self.stalled or (self.status & STATUS_NEW_DATA and not self.status & STATUS_OVERWRITE):
            return
        self.measurements += 1
        if self.calibration is not None:
            cal, ram = self.calibration, self.ram
            for index, word in aux_words(cal, self.control, self.ambient, self.vdd,
                                         self.gain_factor).items():
                ram[index] = word
            target = np.asarray(self.scene(t), dtype=np.float64).reshape(PIXELS)
            mask = subpage_mask(subpage, bool(self.control & CONTROL_CHESS))
            raw = pixel_words(target, ram[:832], subpage, self.control, cal,
                              emissivity=self.emissivity, reflected=self.reflected)
            ram[:PIXELS][mask] = raw[mask]
        self.status = (self.status & ~STATUS_SUBPAGE) | STATUS_NEW_DATA | subpage

    # --- the bus side ---

    def _word(self, address: int) -> int:
        if EEPROM_ADDRESS <= address < EEPROM_ADDRESS + EEPROM_WORDS:
            return int(self.eeprom[address - EEPROM_ADDRESS])
        if RAM_ADDRESS <= address < RAM_END:
            return int(self.ram[address - RAM_ADDRESS])
        return {REG_STATUS: self.status, REG_CONTROL1: self.control,
                REG_I2C_CONFIG: self.i2c_config}.get(address, 0)

    def _write_word(self, address: int, value: int) -> None:
        if address == REG_STATUS:  # bits 5:3 writable; bit 5 (start) needs no modelling here
            self.status = (self.status & 0x0007) | (value & 0x0018)
        elif address == REG_CONTROL1:
            old_rate = refresh_rate(self.control)
            self.control = value & 0x1FFF
            if refresh_rate(self.control) != old_rate:
                self._next_at = self.clock.monotonic() + self.period
        elif address == REG_I2C_CONFIG:
            self.i2c_config = value & 0x000F
        elif EEPROM_ADDRESS <= address < EEPROM_ADDRESS + EEPROM_WORDS:
            self.eeprom_writes.append((address, value))  # needs the erase/write cycle: ignored

    def write(self, data: bytes) -> None:
        """A 2-byte address, optionally followed by big-endian words to write from there."""
        if not self.present:
            raise nack(self.address)
        self._settle()
        if len(data) < 2:
            return  # an address probe (i2cdetect): acknowledged
        self._pointer = int.from_bytes(data[:2], "big")
        for i in range(2, len(data) - 1, 2):
            self._write_word(self._pointer + (i - 2) // 2, int.from_bytes(data[i:i + 2], "big"))

    def read(self, length: int) -> bytes:
        """Words from the pointer on, big-endian, auto-incrementing."""
        if not self.present:
            raise nack(self.address)
        self._settle()
        count = (length + 1) // 2
        out = b"".join(self._word(self._pointer + i).to_bytes(2, "big") for i in range(count))
        return out[:length]


def fake_bus(chip: Mlx90640Chip, number: int = 1) -> FakeI2cBus:
    """A fake bus with this chip at its address."""
    return FakeI2cBus(number, {chip.address: chip})



@contextlib.asynccontextmanager
async def conformance_driver(clock: Clock) -> AsyncIterator[Any]:
    """Yield an MLX90640 counter on the simulated example unit (empty floor), not yet opened."""
    from edgeagent.driver import DriverContext
    from edgeagent.drivers.mlx90640 import Mlx90640, Mlx90640Config
    from edgeagent.drivers.sim.i2cbus import FakeBuses

    chip = Mlx90640Chip(clock, scene=lambda t: np.full((24, 32), 21.0))
    config = Mlx90640Config.model_validate(Mlx90640.sample_config)
    yield Mlx90640(config, DriverContext(clock=clock, i2c=FakeBuses(fake_bus(chip))))
