"""Software sound level meter core: A/C/Z frequency weighting, Fast/Slow time weighting, Leq.

Imported only by the audio driver (it needs numpy, the ``audio`` extra); raw audio never leaves
the driver, only the per-125-ms :class:`LevelSample` values computed here.

Pipeline (all float64, per sample, state kept across :meth:`SoundLevelMeter.process` calls)::

    x ─┬─ LP·LP·HP1·HP1 ──────────────── c  (C weighted) ─┬─ HP2·HP3 ─ a  (A weighted)
       └─ DC blocker (1 Hz) ─────────── z  (Z weighted)   │
    a² ─ exponential averager τ = 0.125 s → LAF, LAFmax, LAFmin (per-sample running level)
    a² ─ exponential averager τ = 1 s     → LAS, LASmax, LASmin
    per 125-ms interval (round(fs/8) samples): mean of a², c², z² → LAeq, LCeq, LZeq;
    max |c| → LCpeak.

Levels are ``10·log10(mean square, full scale 1.0) + offset_db``; a full-scale sine has mean
square 0.5, i.e. −3.0103 dB re 1.0. A level whose mean square is exactly zero (digital silence)
is ``-inf``, never NaN; filter states below ``1e-100`` (−2000 dB) are flushed to zero so that
digital silence becomes exact zeros and no denormal numbers slow the meter down.

Frequency weighting design
--------------------------
The analogue prototypes are those of IEC 61672-1:2013 Annex E (the 2002 edition, clause 5.4,
is identical): C(s) = s² ω₄² / ((s+ω₁)² (s+ω₄)²) and A(s) = C(s) · s² / ((s+ω₂)(s+ω₃)), with the
pole frequencies computed here from the standard's construction (f_L = 10^1.5 Hz,
f_H = 10^3.9 Hz, f_A = 10^2.45 Hz, D² = 1/2): f₁ = 20.598997 Hz, f₂ = 107.65265 Hz,
f₃ = 737.86223 Hz, f₄ = 12194.217 Hz. Both weightings are normalised to exactly 0 dB at 1 kHz
on the *digital* response (the standard's A₁₀₀₀ = −2.000 dB and C₁₀₀₀ = −0.062 dB are that
normalisation, rounded).

All poles are real, so every filter is a cascade of first-order sections
``y[n] = p·y[n−1] + g0·x[n] + g1·x[n−1]``:

* the high-pass poles f₁ (twice), f₂, f₃ (and the 1 Hz DC blocker of Z) use the bilinear
  transform, which is exact to < 0.005 dB below 4 kHz;
* the low-pass double pole f₄ is where the plain bilinear transform fails (its zeros at Nyquist
  give −6.4 dB at 16 kHz for fs = 48 kHz, −8.5 dB at 44.1 kHz). Each of the two f₄ sections is
  instead a first-order digital low-pass (pole q, zero −b, unity gain at DC) fitted to the
  analogue magnitude 1/√(1 + (f/f₄)²) from 0 Hz to min(18 kHz, 0.4·fs) by an iteratively
  reweighted (Lawson / Steiglitz–McBride) least-squares fit, computed at start-up for the
  actual sample rate. At 48 kHz the whole A and C responses stay within 0.1 dB of the analogue
  design goal up to 18 kHz, at 44.1 kHz within 0.13 dB up to 16 kHz (see
  ``docs/sound-level-meter.md`` for the table per 1/3-octave frequency).

A first-order recursion is computed without a Python loop in closed form,
``y[n] = pⁿ·(p·y[−1] + Σ_{i≤n} p^(−i)·u[i])`` (a cumulative sum), in chunks short enough that
p^(−L) ≤ 1e100: one chunk per block for the slow poles; for the fast f₄ poles a reshaped
matrix of ~128-sample chunks with the state carried from chunk to chunk (p^L ≤ 1e−100, so one
correction term is exact).

Time weighting (IEC 61672-1 5.8): y[n] = α·y[n−1] + (1−α)·a²[n], α = exp(−1/(fs·τ)),
τ = 0.125 s (F) or 1 s (S): the exponential time weighting of the squared A-weighted signal,
starting from 0 at start/reset. LAFmax/LAFmin are the extremes of the per-sample level in the
interval, LAF the value at its last sample.

Sources for the tables (the numbers in the project's reference notes were unverified)
------------------------------------------------------------------------------------
* :data:`A_WEIGHTING_TABLE`, :data:`C_WEIGHTING_TABLE`, :data:`CLASS2_TOLERANCE`: IEC 61672-1:2013
  Table 3, as transcribed in ggrecow/SQAT ``validation/sound_level_meter/
  validation_Do_SLM_frequency_weightings.m`` ("IEC 61672-1:2013, Table 3 ... acceptance limits,
  dB, -Inf meaning that no lower limit is specified": ``class2_upper = [5.0 5.0 5.0 3.0 3.0 3.0
  2.0 ...]``, ``class2_lower = [-Inf -Inf -Inf -3.0 -3.0 -3.0 -2.0 ...]``), cross-checked against
  the independent transcription from BS EN 61672-1:2013 in jmrplens/phonometry
  ``tests/reference_data/sound_level_meters.py`` at the nine octaves 63 Hz–16 kHz
  (``("1 000", "±0,7", "±1,0")``, ``("8 000", "+1,5; -2,5", "±5,0")``,
  ``("16 000", "+2,5; -16,0", "+5,0; -∞")``) and, for A and C, ``tests/reference_data/
  filters.py`` (``(16000, -6.6, -8.5, 2.5, -16.0)``). These are *acceptance limits* for the
  deviation from the design goal (2013 edition). The 2002 edition's Table 2 "tolerance limits"
  include the maximum measurement uncertainty and are 0.4–0.6 dB wider (class 2: ±1.4 dB at
  1 kHz, ±3.5 dB at 31.5 Hz, +6.0; −∞ at 12.5/16 kHz; IS 15575-1:2005 / GOST 17187-2010);
  they are not used.
* Tone-burst responses (tests): IEC 61672-1:2013 Table 4, same two transcriptions.

Not verified here: the standard's own text (only the transcriptions above were read); the
1/3-octave *class 2* limits between the octave points rest on the SQAT transcription alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy

__all__ = [
    "A_WEIGHTING_TABLE",
    "CLASS2_TOLERANCE",
    "C_WEIGHTING_TABLE",
    "FAST_TAU",
    "SLOW_TAU",
    "LevelSample",
    "SoundLevelMeter",
    "calibration_offset",
    "offset_from_sensitivity",
    "weighting_response",
]

#: Exponential time constants of IEC 61672-1 5.8.1, seconds.
FAST_TAU = 0.125
SLOW_TAU = 1.0

#: Sound pressure level of an acoustic calibrator and of the datasheet sensitivity point, dB.
REFERENCE_SPL_DB = 94.0

_INF = math.inf
_NOMINAL = (
    10.0, 12.5, 16.0, 20.0, 25.0, 31.5, 40.0, 50.0, 63.0, 80.0, 100.0, 125.0, 160.0, 200.0,
    250.0, 315.0, 400.0, 500.0, 630.0, 800.0, 1000.0, 1250.0, 1600.0, 2000.0, 2500.0, 3150.0,
    4000.0, 5000.0, 6300.0, 8000.0, 10000.0, 12500.0, 16000.0, 20000.0,
)  # fmt: skip
_A_GOALS = (
    -70.4, -63.4, -56.7, -50.5, -44.7, -39.4, -34.6, -30.2, -26.2, -22.5, -19.1, -16.1, -13.4,
    -10.9, -8.6, -6.6, -4.8, -3.2, -1.9, -0.8, 0.0, 0.6, 1.0, 1.2, 1.3, 1.2, 1.0, 0.5, -0.1,
    -1.1, -2.5, -4.3, -6.6, -9.3,
)  # fmt: skip
_C_GOALS = (
    -14.3, -11.2, -8.5, -6.2, -4.4, -3.0, -2.0, -1.3, -0.8, -0.5, -0.3, -0.2, -0.1, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.1, -0.2, -0.3, -0.5, -0.8, -1.3, -2.0, -3.0, -4.4,
    -6.2, -8.5, -11.2,
)  # fmt: skip
_CLASS2_UPPER = (
    5.0, 5.0, 5.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5,
    1.5, 1.5, 1.0, 1.5, 2.0, 2.0, 2.5, 2.5, 3.0, 3.5, 4.5, 5.0, 5.0, 5.0, 5.0, 5.0,
)  # fmt: skip
_CLASS2_LOWER = (
    -_INF, -_INF, -_INF, -3.0, -3.0, -3.0, -2.0, -2.0, -2.0, -2.0, -1.5, -1.5, -1.5, -1.5,
    -1.5, -1.5, -1.5, -1.5, -1.5, -1.5, -1.0, -1.5, -2.0, -2.0, -2.5, -2.5, -3.0, -3.5, -4.5,
    -5.0, -_INF, -_INF, -_INF, -_INF,
)  # fmt: skip

#: IEC 61672-1:2013 Table 3: nominal 1/3-octave frequency (Hz) → A-weighting design goal (dB),
#: 10 Hz … 20 kHz. The values are the Annex E formula at the *exact* base-10 frequencies
#: 1000·10^((n−30)/10), n = 10…43, rounded to 0.1 dB (Table 3, note).
A_WEIGHTING_TABLE: dict[float, float] = dict(zip(_NOMINAL, _A_GOALS, strict=True))
#: IEC 61672-1:2013 Table 3: nominal frequency (Hz) → C-weighting design goal (dB).
C_WEIGHTING_TABLE: dict[float, float] = dict(zip(_NOMINAL, _C_GOALS, strict=True))
#: IEC 61672-1:2013 Table 3, class 2 acceptance limits: nominal frequency (Hz) →
#: (upper +dB, lower −dB as a negative number, ``-inf`` where no lower limit is specified),
#: for the deviation of the response from the design goal. The same for A, C and Z.
CLASS2_TOLERANCE: dict[float, tuple[float, float]] = {
    f: (up, lo) for f, up, lo in zip(_NOMINAL, _CLASS2_UPPER, _CLASS2_LOWER, strict=True)
}


def _pole_frequencies() -> tuple[float, float, float, float]:
    """f₁…f₄ from IEC 61672-1:2013 Annex E (E.2–E.8)."""
    f_r, f_l, f_h, f_a = 1000.0, 10.0**1.5, 10.0**3.9, 10.0**2.45
    d = math.sqrt(0.5)
    b = (f_r**2 + f_l**2 * f_h**2 / f_r**2 - d * (f_l**2 + f_h**2)) / (1.0 - d)
    c = f_l**2 * f_h**2
    root = math.sqrt(b * b - 4.0 * c)
    f1 = math.sqrt((-b - root) / 2.0)
    f4 = math.sqrt((-b + root) / 2.0)
    f2 = (3.0 - math.sqrt(5.0)) / 2.0 * f_a
    f3 = (3.0 + math.sqrt(5.0)) / 2.0 * f_a
    return f1, f2, f3, f4


F1, F2, F3, F4 = _pole_frequencies()
_DC_BLOCK_HZ = 1.0  # Z weighting: first-order DC blocker (−0.04 dB at 10 Hz, −0.004 at 31.5 Hz)
_FLUSH = 1e-100  # states below this (−2000 dB re full scale) are set to 0
_MAX_PIECE = 16384  # process() filters at most this many samples at once (bounded temporaries)
_SCAN_DECADES = 100.0  # closed-form chunks keep p**-L below 10**100


def _analog_db(weighting: str, frequencies: numpy.ndarray) -> numpy.ndarray:
    """Annex E design goal in dB (normalised to 0 dB at 1 kHz), for the tests and docs."""
    f = numpy.asarray(frequencies, dtype=numpy.float64)

    def c_mag(ff: numpy.ndarray) -> numpy.ndarray:
        return F4**2 * ff**2 / ((ff**2 + F1**2) * (ff**2 + F4**2))

    def a_mag(ff: numpy.ndarray) -> numpy.ndarray:
        return c_mag(ff) * ff**2 / numpy.sqrt((ff**2 + F2**2) * (ff**2 + F3**2))

    w = weighting.upper()
    if w == "Z":
        return numpy.zeros_like(f)
    mag = {"A": a_mag, "C": c_mag}[w]
    with numpy.errstate(divide="ignore"):
        return 20.0 * numpy.log10(mag(f) / mag(numpy.float64(1000.0)))


# --------------------------------------------------------------------------- filter design


@dataclass(frozen=True, slots=True)
class _Section:
    """First-order section y[n] = p·y[n−1] + g0·x[n] + g1·x[n−1]."""

    p: float
    g0: float
    g1: float

    def response(self, z1: numpy.ndarray) -> numpy.ndarray:
        """Complex response at z⁻¹ = ``z1``."""
        return (self.g0 + self.g1 * z1) / (1.0 - self.p * z1)

    def scaled(self, gain: float) -> _Section:
        return _Section(self.p, self.g0 * gain, self.g1 * gain)


def _bilinear_highpass(fc: float, fs: float) -> _Section:
    """s/(s + ω) by the bilinear transform."""
    k, w = 2.0 * fs, 2.0 * math.pi * fc
    return _Section((k - w) / (k + w), k / (k + w), -k / (k + w))


def _fit_lowpass(fs: float) -> _Section:
    """First-order digital low-pass fitted to 1/√(1 + (f/f₄)²), unity gain at DC.

    |H|² of a first-order section is (A0 + A1·cos ω)/(1 + B1·cos ω); the fit solves for A0, A1,
    B1 by least squares on the linearised equation error, reweighted by the current denominator
    (Steiglitz–McBride) and by the error itself (Lawson) to approach the minimax solution.
    Falls back to the bilinear transform if the fit were ever unusable.
    """
    k, w4 = 2.0 * fs, 2.0 * math.pi * F4
    q_bil = (k - w4) / (k + w4)
    fallback = _Section(q_bil, (1.0 - q_bil) / 2.0, (1.0 - q_bil) / 2.0)
    f = numpy.linspace(0.0, min(18000.0, 0.4 * fs), 800)
    cw = numpy.cos(2.0 * math.pi * f / fs)
    t2 = 1.0 / (1.0 + (f / F4) ** 2)
    design = numpy.stack([numpy.ones_like(cw), cw, -cw * t2], axis=1)
    lawson = numpy.full(f.size, 1.0 / f.size)
    denom = numpy.ones_like(f)
    best: tuple[float, _Section] = (_INF, fallback)
    for _ in range(40):
        weight = numpy.sqrt(lawson) * denom / t2
        sol = numpy.linalg.lstsq(design * weight[:, None], t2 * weight, rcond=None)[0]
        a0, a1, b1 = (float(v) for v in sol)
        if not (0.0 < abs(b1) < 1.0 and a0 > 0.0 and 0.0 < abs(a1 / a0) < 1.0):
            break
        denom = 1.0 / numpy.abs(1.0 + b1 * cw)
        q = (-1.0 + math.sqrt(1.0 - b1 * b1)) / b1  # 1 + B1·c ∝ 1 + q² − 2q·c, |q| < 1
        r = a1 / a0
        b = (1.0 - math.sqrt(1.0 - r * r)) / r  # A0 + A1·c ∝ 1 + b² + 2b·c, minimum phase
        gain = (1.0 - q) / (1.0 + b)
        sec = _Section(q, gain, gain * b)
        z1 = numpy.exp(-1j * 2.0 * math.pi * f / fs)
        err = numpy.abs(10.0 * numpy.log10(numpy.abs(sec.response(z1)) ** 2 / t2))
        peak = float(err.max())
        if peak < best[0]:
            best = (peak, sec)
        lawson = lawson * (err + 1e-12)
        lawson /= lawson.sum()
    return best[1]


@dataclass(frozen=True, slots=True)
class _Design:
    c_chain: tuple[_Section, ...]  # x → c (C weighted, 0 dB at 1 kHz)
    a_extra: tuple[_Section, ...]  # c → a (A weighted, 0 dB at 1 kHz)
    z_chain: tuple[_Section, ...]  # x → z (DC blocked)

    def response(self, weighting: str, frequencies: numpy.ndarray, fs: float) -> numpy.ndarray:
        z1 = numpy.exp(-1j * 2.0 * math.pi * numpy.asarray(frequencies, numpy.float64) / fs)
        chain = {
            "A": self.c_chain + self.a_extra,
            "C": self.c_chain,
            "Z": self.z_chain,
        }[weighting]
        h = numpy.ones_like(z1)
        for sec in chain:
            h = h * sec.response(z1)
        return h


@lru_cache(maxsize=8)
def _design(fs: int) -> _Design:
    lp = _fit_lowpass(fs)
    c_raw = (lp, lp, _bilinear_highpass(F1, fs), _bilinear_highpass(F1, fs))
    a_raw = (_bilinear_highpass(F2, fs), _bilinear_highpass(F3, fs))
    z1k = numpy.array([numpy.exp(-1j * 2.0 * math.pi * 1000.0 / fs)])
    h_c = numpy.prod([s.response(z1k) for s in c_raw], axis=0)
    h_a = h_c * numpy.prod([s.response(z1k) for s in a_raw], axis=0)
    g_c = 1.0 / float(abs(h_c[0]))
    g_a = 1.0 / float(abs(h_a[0]))
    c_chain = (*c_raw[:-1], c_raw[-1].scaled(g_c))
    a_extra = (a_raw[0].scaled(g_a / g_c), a_raw[1])
    return _Design(c_chain, a_extra, (_bilinear_highpass(_DC_BLOCK_HZ, fs),))


def weighting_response(weighting: str, frequencies, sample_rate) -> numpy.ndarray:
    """Gain in dB of this module's digital weighting filter at the given frequencies.

    Args:
        weighting: ``"A"``, ``"C"`` or ``"Z"`` (Z includes the 1 Hz DC blocker).
        frequencies: Frequencies in Hz, 0 … sample_rate/2 (scalar or array-like).
        sample_rate: Sample rate in Hz.

    Returns:
        ``20·log10|H(f)|`` as a float64 array of the shape of ``frequencies`` (``-inf`` at 0 Hz
        for A and C).

    Raises:
        ValueError: Unknown weighting, or a frequency outside 0 … sample_rate/2.
    """
    fs = _check_rate(sample_rate)
    w = str(weighting).upper()
    if w not in ("A", "C", "Z"):
        raise ValueError(f"weighting must be 'A', 'C' or 'Z', not {weighting!r}")
    f = numpy.asarray(frequencies, dtype=numpy.float64)
    if numpy.any(~numpy.isfinite(f)) or numpy.any(f < 0.0) or numpy.any(f > fs / 2.0):
        raise ValueError(f"frequencies must be within 0 … {fs / 2.0:g} Hz")
    with numpy.errstate(divide="ignore"):
        return 20.0 * numpy.log10(numpy.abs(_design(fs).response(w, f, fs)))


def _check_rate(sample_rate) -> int:
    if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate:
        raise ValueError(f"sample_rate must be an integer number of Hz, not {sample_rate!r}")
    fs = int(sample_rate)
    if not 8000 <= fs <= 768000:
        raise ValueError(f"sample_rate must be 8000 … 768000 Hz, not {fs}")
    return fs


# --------------------------------------------------------------------------- recursion


class _Recursion:
    """y[n] = p·y[n−1] + u[n] computed in closed form (no per-sample Python loop)."""

    __slots__ = ("_ipow", "_max_chunk", "_pow", "p")

    def __init__(self, p: float) -> None:
        self.p = p
        decades = -math.log10(abs(p)) if p != 0.0 else _INF
        self._max_chunk = max(1, min(_MAX_PIECE, int(_SCAN_DECADES / decades)))
        n = numpy.arange(self._max_chunk, dtype=numpy.float64)
        with numpy.errstate(divide="ignore", over="ignore"):
            self._pow = numpy.power(p, n)  # pⁿ
            self._ipow = numpy.power(1.0 / p, n) if p != 0.0 else n  # p⁻ⁿ (unused for p = 0)

    def run(self, u: numpy.ndarray, y0: float) -> numpy.ndarray:
        """Return y for input u (modified in place and returned) and previous output y0."""
        m = u.size
        p = self.p
        if p == 0.0:
            return u
        big_l = self._max_chunk
        if m <= big_l:  # one chunk: y[n] = pⁿ (p·y0 + Σ p⁻ⁱ u[i])
            u *= self._ipow[:m]
            numpy.cumsum(u, out=u)
            u += p * y0
            u *= self._pow[:m]
            return u
        # Several chunks of length L (only for fast poles, where p**L <= 1e-100).
        rows = -(-m // big_l)
        t = numpy.zeros((rows, big_l))
        t.reshape(-1)[:m] = u
        t *= self._ipow
        numpy.cumsum(t, axis=1, out=t)
        p_l = p * self._pow[-1]  # p**L
        ends = t[:, -1] * self._pow[-1]  # zero-state output at each chunk's last sample
        # State entering chunk k: carry_k = ends_{k-1} + p^L·carry_{k-1}. Chunks are only split
        # when p^L <= 1e-50, so one correction term is exact (the next is below 1e-100).
        carry = numpy.empty(rows)
        carry[0] = y0
        carry[1:] = ends[:-1]
        carry[1:] += p_l * carry[:-1].copy()
        t += (p * carry)[:, None]
        t *= self._pow
        return t.reshape(-1)[:m].copy()


class _FilterState:
    """A first-order section with its state (last input, last output)."""

    __slots__ = ("g0", "g1", "rec", "x_prev", "y_prev")

    def __init__(self, sec: _Section) -> None:
        self.g0, self.g1 = sec.g0, sec.g1
        self.rec = _Recursion(sec.p)
        self.x_prev = 0.0
        self.y_prev = 0.0

    def run(self, x: numpy.ndarray) -> numpy.ndarray:
        u = x * self.g0
        if self.g1 != 0.0:
            u[1:] += x[:-1] * self.g1
            u[0] += self.g1 * self.x_prev
        y = self.rec.run(u, self.y_prev)
        self.x_prev = float(x[-1])
        self.y_prev = float(y[-1])
        return y

    def flush(self) -> None:
        if abs(self.x_prev) < _FLUSH:
            self.x_prev = 0.0
        if abs(self.y_prev) < _FLUSH:
            self.y_prev = 0.0


# --------------------------------------------------------------------------- the meter


@dataclass(frozen=True, slots=True)
class LevelSample:
    """Levels of one completed 125-ms interval, in dB re the meter's offset.

    Attributes:
        t_end: Seconds of audio processed since the meter started (or was reset) at the end of
            the interval.
        laeq: A-weighted Leq over the interval.
        lceq: C-weighted Leq over the interval.
        lzeq: Z-weighted Leq over the interval.
        laf: A-weighted Fast level at ``t_end``.
        lafmax: Maximum of the per-sample A-weighted Fast level within the interval.
        lafmin: Minimum of the per-sample A-weighted Fast level within the interval.
        las: A-weighted Slow level at ``t_end``.
        lasmax: Maximum of the per-sample A-weighted Slow level within the interval.
        lasmin: Minimum of the per-sample A-weighted Slow level within the interval.
        lcpeak: C-weighted peak within the interval, ``20·log10 max|c|`` (sample peak).
    """

    t_end: float
    laeq: float
    lceq: float
    lzeq: float
    laf: float
    lafmax: float
    lafmin: float
    las: float
    lasmax: float
    lasmin: float
    lcpeak: float


def _db(power: float, offset: float) -> float:
    return 10.0 * math.log10(power) + offset if power > 0.0 else -_INF


class SoundLevelMeter:
    """A/C/Z-weighted Leq, A-weighted Fast/Slow levels and C peak per 125-ms interval.

    One interval is ``round(sample_rate / 8)`` samples (6000 at 48 kHz; 5512 = 124.99 ms at
    44.1 kHz). Memory is bounded (a few hundred kilobytes) whatever the run time; CPU is about
    0.6 % of one x86 core at 48 kHz (``bench/soundlevel.py``).

    Args:
        sample_rate: Sample rate in Hz (8000 … 768000; the design is verified at 44.1 and 48 kHz).
        offset_db: Added to every level: ``10·log10(mean square, full scale 1.0) + offset_db``.
            Use :func:`offset_from_sensitivity` or :func:`calibration_offset`.
    """

    def __init__(self, sample_rate: int, *, offset_db: float = 0.0) -> None:
        self.sample_rate = _check_rate(sample_rate)
        if not math.isfinite(offset_db):
            raise ValueError(f"offset_db must be finite, not {offset_db!r}")
        self.offset_db = float(offset_db)
        self.interval_samples = round(self.sample_rate / 8)
        design = _design(self.sample_rate)
        self._c_secs = [_FilterState(s) for s in design.c_chain]
        self._a_secs = [_FilterState(s) for s in design.a_extra]
        self._z_secs = [_FilterState(s) for s in design.z_chain]
        self._alpha_f = math.exp(-1.0 / (self.sample_rate * FAST_TAU))
        self._alpha_s = math.exp(-1.0 / (self.sample_rate * SLOW_TAU))
        self._fast = _Recursion(self._alpha_f)
        self._slow = _Recursion(self._alpha_s)
        self.reset()

    def reset(self) -> None:
        """Forget all filter and time-weighting state and restart the interval clock at 0."""
        for sec in (*self._c_secs, *self._a_secs, *self._z_secs):
            sec.x_prev = sec.y_prev = 0.0
        self._yf = 0.0
        self._ys = 0.0
        self._samples = 0  # samples processed since start/reset
        self._new_interval()

    def _new_interval(self) -> None:
        self._count = 0
        self._sum_a = self._sum_c = self._sum_z = 0.0
        self._fmax = self._smax = -_INF
        self._fmin = self._smin = _INF
        self._peak = 0.0

    def process(self, block: numpy.ndarray) -> list[LevelSample]:
        """Feed samples; return every 125-ms interval this block completed (0, 1 or more).

        Args:
            block: Mono samples of any length: a 1-D array (or one column), float32/float64 in
                −1 … 1 (full scale 1.0), or signed integers scaled by their full scale
                (int16 / 32768, int32 / 2³¹, …). State carries over between calls.

        Returns:
            The :class:`LevelSample` of each interval completed by this block, oldest first.

        Raises:
            TypeError: Unsigned, complex or non-numeric samples.
            ValueError: More than one channel, or NaN/infinite samples (the state is untouched).
        """
        x = _as_samples(block)
        out: list[LevelSample] = []
        for start in range(0, x.size, _MAX_PIECE):
            self._process_piece(x[start : start + _MAX_PIECE], out)
        return out

    def _process_piece(self, x: numpy.ndarray, out: list[LevelSample]) -> None:
        c = x
        for sec in self._c_secs:
            c = sec.run(c)
        a = c
        for sec in self._a_secs:
            a = sec.run(a)
        z = x
        for sec in self._z_secs:
            z = sec.run(z)
        a2 = a * a
        c2 = c * c
        z2 = z * z
        yf = self._fast.run(a2 * (1.0 - self._alpha_f), self._yf)
        ys = self._slow.run(a2 * (1.0 - self._alpha_s), self._ys)
        self._yf = float(yf[-1]) if yf[-1] >= _FLUSH else 0.0
        self._ys = float(ys[-1]) if ys[-1] >= _FLUSH else 0.0
        for sec in (*self._c_secs, *self._a_secs, *self._z_secs):
            sec.flush()

        n_int = self.interval_samples
        pos, m = 0, x.size
        while pos < m:
            take = min(n_int - self._count, m - pos)
            end = pos + take
            self._sum_a += float(a2[pos:end].sum())
            self._sum_c += float(c2[pos:end].sum())
            self._sum_z += float(z2[pos:end].sum())
            self._fmax = max(self._fmax, float(yf[pos:end].max()))
            self._fmin = min(self._fmin, float(yf[pos:end].min()))
            self._smax = max(self._smax, float(ys[pos:end].max()))
            self._smin = min(self._smin, float(ys[pos:end].min()))
            self._peak = max(self._peak, float(c[pos:end].max()), -float(c[pos:end].min()))
            self._count += take
            self._samples += take
            pos = end
            if self._count == n_int:
                out.append(self._emit(float(yf[end - 1]), float(ys[end - 1])))
                self._new_interval()

    def _emit(self, yf_end: float, ys_end: float) -> LevelSample:
        off, n = self.offset_db, float(self.interval_samples)
        return LevelSample(
            t_end=self._samples / self.sample_rate,
            laeq=_db(self._sum_a / n, off),
            lceq=_db(self._sum_c / n, off),
            lzeq=_db(self._sum_z / n, off),
            laf=_db(yf_end, off),
            lafmax=_db(self._fmax, off),
            lafmin=_db(self._fmin, off),
            las=_db(ys_end, off),
            lasmax=_db(self._smax, off),
            lasmin=_db(self._smin, off),
            lcpeak=_db(self._peak * self._peak, off),
        )


def _as_samples(block) -> numpy.ndarray:
    arr = numpy.asarray(block)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"expected mono samples (n,) or (n, 1), got shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "i":
        x = arr.astype(numpy.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))
    elif kind == "f":
        x = numpy.asarray(arr, dtype=numpy.float64)  # never modified in place
    else:
        raise TypeError(f"samples must be float or signed integer, not {arr.dtype}")
    if x.size and not math.isfinite(float(x.sum())):
        raise ValueError("samples contain NaN or infinity")
    return x


# --------------------------------------------------------------------------- calibration


def offset_from_sensitivity(sensitivity_dbfs: float) -> float:
    """Offset that makes a 94 dB SPL, 1 kHz tone read 94.0 dB, from a datasheet sensitivity.

    Datasheets give the digital output for 94 dB SPL at 1 kHz in dBFS, 0 dBFS being a
    full-scale *sine* (mean square 0.5, i.e. −3.0103 dB re the meter's full scale 1.0). So the
    tone's mean-square level is ``sensitivity_dbfs − 3.0103`` dB and the offset is
    ``94 − sensitivity_dbfs + 3.0103`` (123.0103 dB for the −26 dBFS of INMP441, ICS-43434 and
    SPH0645LM4H).

    Args:
        sensitivity_dbfs: Datasheet sensitivity, dBFS at 94 dB SPL, 1 kHz (negative).

    Returns:
        The ``offset_db`` for :class:`SoundLevelMeter`.

    Raises:
        ValueError: Not a finite number.
    """
    if not math.isfinite(sensitivity_dbfs):
        raise ValueError(f"sensitivity_dbfs must be finite, not {sensitivity_dbfs!r}")
    return REFERENCE_SPL_DB - (float(sensitivity_dbfs) + 10.0 * math.log10(0.5))


def calibration_offset(
    measured_db: float, reference_db: float = 94.0, current_offset_db: float = 0.0
) -> float:
    """New offset after measuring an acoustic calibrator (94 dB, 1 kHz) with the current one.

    Args:
        measured_db: Level the meter showed for the calibrator (LAeq or LCeq over a few
            seconds; A and C are both 0 dB at 1 kHz) with ``current_offset_db``.
        reference_db: The calibrator's level (its certificate value, usually 94.0 or 114.0).
        current_offset_db: The offset in use while measuring.

    Returns:
        ``current_offset_db + reference_db − measured_db``.

    Raises:
        ValueError: A non-finite argument (e.g. a −inf reading of silence).
    """
    values = (measured_db, reference_db, current_offset_db)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"calibration values must be finite, got {values!r}")
    return float(current_offset_db) + float(reference_db) - float(measured_db)
