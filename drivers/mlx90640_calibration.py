"""Melexis MLX90640 calibration: EEPROM extraction and the object-temperature computation.

Pure functions on numpy arrays, no I/O. This is an independent, vectorised implementation of the
procedure in the MLX90640 datasheet (chapter 11, "Calculation of the object temperature"), as
implemented in the Melexis reference library ``melexis/mlx90640-library``
(``MLX90640_API.cpp``: ``MLX90640_ExtractParameters``, ``MLX90640_GetVdd``, ``MLX90640_GetTa``,
``MLX90640_CalculateTo``). Differences from that library, all deliberate:

- float64 throughout; the per-pixel alpha, Kta and Kv are kept as exact floats instead of being
  re-quantised to 16-bit integers with a common scale (that changes To by < 0.001 °C);
- the row/column/subpage bit fields are decoded with array operations, not per-pixel loops.

Pixel order everywhere is the RAM order: index ``32 · row + column``, row 0 … 23, column 0 … 31.
The two subpages form a chess pattern: pixel (row, column) belongs to subpage
``(row + column) % 2`` (interleaved mode: ``row % 2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeagent.driver import DriverError

ROWS, COLUMNS = 24, 32
PIXELS = ROWS * COLUMNS
EEPROM_ADDRESS = 0x2400
EEPROM_WORDS = 832  # 0x2400 … 0x273F
RAM_ADDRESS = 0x0400
RAM_WORDS = 832  # 0x0400 … 0x073F: 768 pixels, then the auxiliary words
# auxiliary RAM words, as indices from 0x0400
RAM_TA_VBE = 0x0700 - RAM_ADDRESS
RAM_CP_SUBPAGE0 = 0x0708 - RAM_ADDRESS
RAM_GAIN = 0x070A - RAM_ADDRESS
RAM_TA_PTAT = 0x0720 - RAM_ADDRESS
RAM_CP_SUBPAGE1 = 0x0728 - RAM_ADDRESS
RAM_VDD_PIX = 0x072A - RAM_ADDRESS
CONTROL_CHESS = 0x1000  # control register 1 bit 12: chess (1) or interleaved (0) readout
KELVIN = 273.15
VDD0 = 3.3  # V, the calibration supply
TA0 = 25.0  # °C, the calibration ambient temperature
MAX_DEVIATING_PIXELS = 4  # the datasheet's limit for broken + outlier pixels

_ROW = np.repeat(np.arange(ROWS), COLUMNS)
_COLUMN = np.tile(np.arange(COLUMNS), ROWS)
#: Interleaved-mode subpage of each pixel (row parity).
IL_PATTERN = _ROW % 2
#: Chess-mode subpage of each pixel.
CHESS_PATTERN = (_ROW + _COLUMN) % 2
# the datasheet's "conversion pattern" of the interleaved-mode correction (0, +1, 0, −1 …)
_P = np.arange(PIXELS)
CONVERSION_PATTERN = (((_P + 2) // 4 - (_P + 3) // 4 + (_P + 1) // 4 - _P // 4)
                      * (1 - 2 * IL_PATTERN))
# which of the four row/column-parity coefficients (Kta, Kv) a pixel uses: 0 = odd row, odd
# column in the datasheet's 1-based numbering (even/even 0-based), 1 = odd row, even column …
_SPLIT = 2 * IL_PATTERN + _COLUMN % 2


def _signed(value: np.ndarray | int, bits: int) -> np.ndarray | int:
    """Two's complement of a ``bits``-wide field."""
    half = 1 << (bits - 1)
    return (value ^ half) - half


def _nibbles(words: np.ndarray) -> np.ndarray:
    """Signed 4-bit fields of ``words``, least significant nibble first."""
    raw = (words[:, None] >> np.array([0, 4, 8, 12])) & 0xF
    return _signed(raw.reshape(-1), 4)


@dataclass(frozen=True, eq=False)
class Calibration:
    """The parameters of one MLX90640 unit, extracted from its EEPROM (datasheet names)."""

    k_vdd: int
    vdd25: int
    kv_ptat: float
    kt_ptat: float
    v_ptat25: int
    alpha_ptat: float
    gain_ee: int
    tgc: float
    resolution_ee: int
    ks_ta: float
    ks_to: tuple[float, float, float, float]
    #: Corner temperatures of the four KsTo ranges (°C): −40, 0, CT3, CT4.
    ct: tuple[int, int, int, int]
    cp_alpha: tuple[float, float]
    cp_offset: tuple[int, int]
    cp_kta: float
    cp_kv: float
    #: True if the unit was calibrated in chess mode (EEPROM 0x240A bit 11 clear).
    calibrated_chess: bool
    il_chess: tuple[float, float, float]
    alpha: np.ndarray = field(repr=False)
    offset: np.ndarray = field(repr=False)
    kta: np.ndarray = field(repr=False)
    kv: np.ndarray = field(repr=False)
    #: Pixels whose EEPROM word is 0 (no calibration): their output must be interpolated.
    broken: tuple[int, ...] = ()
    #: Pixels flagged as outliers (EEPROM pixel word bit 0): out of specification.
    outliers: tuple[int, ...] = ()
    #: Datasheet rules the EEPROM breaks that still allow use (too many or adjacent bad pixels).
    warnings: tuple[str, ...] = ()
    device_id: tuple[int, int, int] = (0, 0, 0)

    @property
    def alpha_corr(self) -> np.ndarray:
        """The sensitivity correction of each KsTo range (continuous at the corners)."""
        k, ct = self.ks_to, self.ct
        r2 = 1 + k[1] * (ct[2] - ct[1])
        return np.array([1 / (1 + k[0] * (ct[1] - ct[0])), 1.0, r2,
                         r2 * (1 + k[2] * (ct[3] - ct[2]))])


def check_eeprom(words: Sequence[int] | np.ndarray, where: str = "MLX90640") -> np.ndarray:
    """Return the dump as an int64 array, or raise a DriverError saying what is wrong with it."""
    ee = np.asarray(words, dtype=np.int64)
    if ee.shape != (EEPROM_WORDS,):
        raise DriverError(f"{where}: EEPROM dump has {ee.size} words, expected {EEPROM_WORDS} "
                          "(0x2400-0x273F)")
    if np.any((ee < 0) | (ee > 0xFFFF)):
        raise DriverError(f"{where}: EEPROM dump holds values outside 0x0000-0xFFFF")
    for blank in (0x0000, 0xFFFF):
        if np.all(ee[16:] == blank):
            raise DriverError(f"{where}: EEPROM reads all 0x{blank:04X} (calibration area "
                              "0x2410-0x273F): a blank or unreadable EEPROM, a bus that floats "
                              "high or is held low, or another chip at this address",
                              retryable=False)
    if ee[10] & 0x0040:
        raise DriverError(f"{where}: EEPROM word 0x240A = 0x{int(ee[10]):04X} has bit 6 set, "
                          "which marks a device other than an MLX90640 (MLX90641?)",
                          retryable=False)
    missing = [name for name, value in (("gain (0x2430)", ee[48]),
                                        ("KtPTAT (0x2432)", ee[50] & 0x03FF),
                                        ("Kvdd (0x2433)", ee[51] & 0xFF00)) if value == 0]
    if missing:
        raise DriverError(f"{where}: EEPROM calibration is corrupt: {', '.join(missing)} is zero",
                          retryable=False)
    return ee


def extract(words: Sequence[int] | np.ndarray, where: str = "MLX90640") -> Calibration:
    """Decode the 832-word EEPROM dump (0x2400 … 0x273F) into a :class:`Calibration`.

    Raises:
        DriverError: a blank, foreign or corrupt EEPROM (see :func:`check_eeprom`).
    """
    ee = check_eeprom(words, where)
    pix = ee[64:]

    k_vdd = int(_signed((ee[51] >> 8) & 0xFF, 8)) * 32
    vdd25 = (int(ee[51] & 0xFF) - 256) * 32 - 8192
    kv_ptat = int(_signed((ee[50] >> 10) & 0x3F, 6)) / 4096
    kt_ptat = int(_signed(ee[50] & 0x03FF, 10)) / 8
    v_ptat25 = int(_signed(ee[49], 16))
    alpha_ptat = int((ee[16] >> 12) & 0xF) / 4 + 8
    gain_ee = int(_signed(ee[48], 16))
    tgc = int(_signed(ee[60] & 0xFF, 8)) / 32
    resolution_ee = int((ee[56] >> 12) & 0x3)
    ks_ta = int(_signed((ee[60] >> 8) & 0xFF, 8)) / 8192

    step = int((ee[63] >> 12) & 0x3) * 10
    ct3 = int((ee[63] >> 4) & 0xF) * step
    ct4 = ct3 + int((ee[63] >> 8) & 0xF) * step
    ks_to_scale = 1 << (int(ee[63] & 0xF) + 8)
    ks_to_raw = [ee[61] & 0xFF, ee[61] >> 8, ee[62] & 0xFF, ee[62] >> 8]
    ks_to = tuple(int(_signed(int(v), 8)) / ks_to_scale for v in ks_to_raw)

    # compensation pixels
    alpha_scale_cp = int((ee[32] >> 12) & 0xF) + 27
    cp_alpha0 = int(_signed(ee[57] & 0x03FF, 10)) / 2.0 ** alpha_scale_cp
    cp_alpha1 = (1 + int(_signed((ee[57] >> 10) & 0x3F, 6)) / 128) * cp_alpha0
    cp_offset0 = int(_signed(ee[58] & 0x03FF, 10))
    cp_offset1 = cp_offset0 + int(_signed((ee[58] >> 10) & 0x3F, 6))
    kta_scale1 = int((ee[56] >> 4) & 0xF) + 8
    kta_scale2 = int(ee[56] & 0xF)
    kv_scale = int((ee[56] >> 8) & 0xF)
    cp_kta = int(_signed(ee[59] & 0xFF, 8)) / 2.0 ** kta_scale1
    cp_kv = int(_signed((ee[59] >> 8) & 0xFF, 8)) / 2.0 ** kv_scale

    # sensitivity alpha: reference + row + column + pixel remainder, each with its own scale
    acc_rem_scale = int(ee[32] & 0xF)
    acc_column_scale = int((ee[32] >> 4) & 0xF)
    acc_row_scale = int((ee[32] >> 8) & 0xF)
    alpha_scale = int((ee[32] >> 12) & 0xF) + 30
    acc_row = _nibbles(ee[34:40])[_ROW]
    acc_column = _nibbles(ee[40:48])[_COLUMN]
    alpha_int = (int(ee[33]) + acc_row * (1 << acc_row_scale)
                 + acc_column * (1 << acc_column_scale)
                 + _signed((pix >> 4) & 0x3F, 6) * (1 << acc_rem_scale))
    alpha = alpha_int / 2.0 ** alpha_scale

    # offset: the same structure
    occ_rem_scale = int(ee[16] & 0xF)
    occ_column_scale = int((ee[16] >> 4) & 0xF)
    occ_row_scale = int((ee[16] >> 8) & 0xF)
    occ_row = _nibbles(ee[18:24])[_ROW]
    occ_column = _nibbles(ee[24:32])[_COLUMN]
    offset = (int(_signed(ee[17], 16)) + occ_row * (1 << occ_row_scale)
              + occ_column * (1 << occ_column_scale)
              + _signed((pix >> 10) & 0x3F, 6) * (1 << occ_rem_scale))

    # Kta and Kv: one coefficient per row/column parity, Kta plus a per-pixel remainder
    kta_rc = np.array([_signed(ee[54] >> 8, 8), _signed(ee[55] >> 8, 8),
                       _signed(ee[54] & 0xFF, 8), _signed(ee[55] & 0xFF, 8)])
    kta = (kta_rc[_SPLIT] + _signed((pix >> 1) & 0x7, 3) * (1 << kta_scale2)) / 2.0 ** kta_scale1
    kv_t = np.array([_signed(ee[52] >> 12, 4), _signed((ee[52] >> 4) & 0xF, 4),
                     _signed((ee[52] >> 8) & 0xF, 4), _signed(ee[52] & 0xF, 4)])
    kv = kv_t[_SPLIT] / 2.0 ** kv_scale

    il_chess = (int(_signed(ee[53] & 0x3F, 6)) / 16, int(_signed((ee[53] >> 6) & 0x1F, 5)) / 2,
                int(_signed((ee[53] >> 11) & 0x1F, 5)) / 8)

    broken = tuple(int(p) for p in np.flatnonzero(pix == 0))
    outliers = tuple(int(p) for p in np.flatnonzero((pix != 0) & (pix & 1 == 1)))
    return Calibration(
        k_vdd=k_vdd, vdd25=vdd25, kv_ptat=kv_ptat, kt_ptat=kt_ptat, v_ptat25=v_ptat25,
        alpha_ptat=alpha_ptat, gain_ee=gain_ee, tgc=tgc, resolution_ee=resolution_ee,
        ks_ta=ks_ta, ks_to=ks_to, ct=(-40, 0, ct3, ct4),  # type: ignore[arg-type]
        cp_alpha=(cp_alpha0, cp_alpha1), cp_offset=(cp_offset0, cp_offset1), cp_kta=cp_kta,
        cp_kv=cp_kv, calibrated_chess=not ee[10] & 0x0800, il_chess=il_chess,
        alpha=alpha, offset=offset.astype(np.float64), kta=kta, kv=kv, broken=broken,
        outliers=outliers, warnings=_deviation_warnings(broken, outliers),
        device_id=(int(ee[7]), int(ee[8]), int(ee[9])))


def _deviation_warnings(broken: tuple[int, ...], outliers: tuple[int, ...]) -> tuple[str, ...]:
    """The datasheet's rules for deviating pixels (as ``ExtractDeviatingPixels`` checks them)."""
    warnings = []
    bad = sorted(broken + outliers)
    if len(bad) > MAX_DEVIATING_PIXELS:
        warnings.append(f"{len(broken)} broken and {len(outliers)} outlier pixels (the "
                        f"datasheet allows at most {MAX_DEVIATING_PIXELS} together)")
    for i, a in enumerate(bad):
        for b in bad[i + 1:]:
            if abs(a - b) in (1, 31, 32, 33):
                warnings.append(f"deviating pixels {a} and {b} are adjacent: interpolation "
                                "between them is unreliable")
    return tuple(warnings)


@dataclass(frozen=True)
class FrameConstants:
    """What one subpage's auxiliary RAM words say: supply, die temperature, gain, CP signal."""

    vdd: float  # V
    ta: float  # °C, the sensor's own temperature
    gain: float  # gain compensation factor (gainEE / gain word)
    cp: tuple[float, float]  # compensation pixels of subpage 0 and 1, offset-compensated
    chess: bool  # readout pattern in the control register
    resolution: int  # ADC resolution code of the control register (0 = 16 bit … 3 = 19 bit)


def resolution_correction(control: int, cal: Calibration) -> float:
    """2^resolutionEE / 2^resolutionRAM: the supply word's scale at the current ADC setting."""
    return 2.0 ** cal.resolution_ee / 2.0 ** ((control >> 10) & 0x3)


def _word(ram: np.ndarray, index: int) -> int:
    return int(_signed(int(ram[index]), 16))


def frame_constants(ram: Sequence[int] | np.ndarray, control: int,
                    cal: Calibration) -> FrameConstants:
    """Vdd (§11.2.2.2), Ta (§11.2.2.3), gain (§11.2.2.4) and the CP signals (§11.2.2.6)."""
    ram = np.asarray(ram)
    vdd = ((resolution_correction(control, cal) * _word(ram, RAM_VDD_PIX) - cal.vdd25)
           / cal.k_vdd + VDD0)
    ptat = _word(ram, RAM_TA_PTAT)
    v_ptat_art = ptat / (ptat * cal.alpha_ptat + _word(ram, RAM_TA_VBE)) * 2.0 ** 18
    ta = (v_ptat_art / (1 + cal.kv_ptat * (vdd - VDD0)) - cal.v_ptat25) / cal.kt_ptat + TA0
    gain_word = _word(ram, RAM_GAIN)
    if gain_word == 0:
        raise DriverError("MLX90640: the gain RAM word (0x070A) is 0: no measurement yet or a "
                          "bus fault")
    gain = cal.gain_ee / gain_word
    chess = bool(control & CONTROL_CHESS)
    ta_vdd = (1 + cal.cp_kta * (ta - TA0)) * (1 + cal.cp_kv * (vdd - VDD0))
    cp_offset1 = cal.cp_offset[1] + (0.0 if chess == cal.calibrated_chess else cal.il_chess[0])
    cp = (_word(ram, RAM_CP_SUBPAGE0) * gain - cal.cp_offset[0] * ta_vdd,
          _word(ram, RAM_CP_SUBPAGE1) * gain - cp_offset1 * ta_vdd)
    return FrameConstants(vdd, ta, gain, cp, chess, (control >> 10) & 0x3)


def subpage_mask(subpage: int, chess: bool = True) -> np.ndarray:
    """Boolean (768,) mask of the pixels a subpage measures."""
    return (CHESS_PATTERN if chess else IL_PATTERN) == subpage


def ir_signal(raw: np.ndarray, subpage: int, fc: FrameConstants, cal: Calibration) -> np.ndarray:
    """Compensated IR signal of every pixel (before emissivity), §11.2.2.5 – §11.2.2.7.

    Gain, offset with its Ta and Vdd dependence, the interleaved-mode pattern correction when
    the readout differs from the calibration mode, and the IR gradient (TGC) from the
    compensation pixel of ``subpage``.
    """
    signal = (raw * fc.gain
              - cal.offset * (1 + cal.kta * (fc.ta - TA0)) * (1 + cal.kv * (fc.vdd - VDD0)))
    if fc.chess != cal.calibrated_chess:
        signal = (signal + cal.il_chess[2] * (2 * IL_PATTERN - 1)
                  - cal.il_chess[1] * CONVERSION_PATTERN)
    return signal - cal.tgc * fc.cp[subpage]


def alpha_compensated(subpage: int, fc: FrameConstants, cal: Calibration) -> np.ndarray:
    """Sensitivity normalised for the TGC and the die temperature, §11.2.2.8.

    As the datasheet does, with the compensation pixel of the pixel's own subpage (the current
    Melexis library uses the mean of both CP alphas instead; that differs only when TGC ≠ 0, by
    0.03 °C on the datasheet's example pixel).
    """
    return (cal.alpha - cal.tgc * cal.cp_alpha[subpage]) * (1 + cal.ks_ta * (fc.ta - TA0))


def reflected_term(fc: FrameConstants, emissivity: float, reflected: float | None) -> float:
    """TaTr = Tr⁴ − (Tr⁴ − Ta⁴)/ε in K⁴; ``reflected`` None means Tr = Ta − 8 (open air)."""
    tr = fc.ta - 8.0 if reflected is None else reflected
    ta4 = (fc.ta + KELVIN) ** 4
    tr4 = (tr + KELVIN) ** 4
    return tr4 - (tr4 - ta4) / emissivity


def to_basic_range(v_ir: np.ndarray, alpha_c: np.ndarray, ta_tr: float,
                   cal: Calibration) -> np.ndarray:
    """To (°C) with the KsTo of the basic range 0 … CT3 only: the datasheet's first equation."""
    ks_to1 = cal.ks_to[1]
    with np.errstate(invalid="ignore"):
        sx = ks_to1 * np.sqrt(np.sqrt(alpha_c ** 3 * (v_ir + alpha_c * ta_tr)))
        return np.sqrt(np.sqrt(v_ir / (alpha_c * (1 - ks_to1 * KELVIN) + sx) + ta_tr)) - KELVIN


def ir_to_celsius(v_ir: np.ndarray, alpha_c: np.ndarray, ta_tr: float,
                  cal: Calibration) -> np.ndarray:
    """To (°C) from the emissivity-corrected IR signal, §11.2.2.9 with the extended ranges.

    The basic-range estimate picks one of the four KsTo ranges (−40 … 0 … CT3 … CT4 …); the
    final value uses that range's KsTo and sensitivity correction. Non-physical input (a
    negative radicand) gives NaN.
    """
    first = to_basic_range(v_ir, alpha_c, ta_tr, cal)
    ct = np.asarray(cal.ct, dtype=np.float64)
    rng = np.searchsorted(ct[1:], first, side="right")  # NaN sorts last: range 3, stays NaN
    scale = (alpha_c * cal.alpha_corr[rng]
             * (1 + np.asarray(cal.ks_to)[rng] * (first - ct[rng])))
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.sqrt(v_ir / scale + ta_tr)) - KELVIN


def object_temperatures(ram: Sequence[int] | np.ndarray, subpage: int, control: int,
                        cal: Calibration, *, emissivity: float = 1.0,
                        reflected: float | None = None,
                        fc: FrameConstants | None = None) -> np.ndarray:
    """To (°C) of the pixels one subpage measured; the other subpage's pixels are NaN.

    ``ram`` is the 832-word RAM read (0x0400 …), ``control`` control register 1 (0x800D) at the
    time of the read, ``subpage`` status register bit 0.
    """
    ram = np.asarray(ram)
    fc = fc or frame_constants(ram, control, cal)
    raw = _signed(ram[:PIXELS].astype(np.int64), 16).astype(np.float64)
    v_ir = ir_signal(raw, subpage, fc, cal) / emissivity
    to = ir_to_celsius(v_ir, alpha_compensated(subpage, fc, cal),
                       reflected_term(fc, emissivity, reflected), cal)
    return np.where(subpage_mask(subpage, fc.chess), to, np.nan)


def interpolate_pixels(image: np.ndarray, pixels: Sequence[int]) -> np.ndarray:
    """Replace ``pixels`` of a (768,) image by the mean of their valid neighbours.

    Neighbours are the four diagonal ones first (the same chess subpage, as the Melexis
    ``BadPixelsCorrection``), then the four edge neighbours; pixels in ``pixels`` and NaNs are
    never used. A pixel with no valid neighbour becomes NaN.
    """
    out = image.astype(np.float64, copy=True)
    bad = set(pixels)
    for p in pixels:
        row, column = divmod(p, COLUMNS)
        for ring in (((-1, -1), (-1, 1), (1, -1), (1, 1)), ((-1, 0), (1, 0), (0, -1), (0, 1))):
            values = [image[(row + dr) * COLUMNS + column + dc] for dr, dc in ring
                      if 0 <= row + dr < ROWS and 0 <= column + dc < COLUMNS
                      and (row + dr) * COLUMNS + column + dc not in bad]
            values = [v for v in values if np.isfinite(v)]
            if values:
                out[p] = float(np.mean(values))
                break
        else:
            out[p] = np.nan
    return out
