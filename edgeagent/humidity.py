"""Humidity corrections for optical (light-scattering) PM sensors.

Optical sensors count the water on hygroscopic particles, and fog droplets, as particulate
matter, so they over-read at high relative humidity (RH). A correction estimates the dry mass
from the raw value and an RH reading. It never replaces the raw value: the pipeline publishes
the correction next to the untouched raw statistics (see ``docs/humidity-correction.md``).

Two methods, built with :func:`make_correction`:

``epa-barkjohn-2021`` — US EPA nationwide correction for PurpleAir (Plantower) sensors,
Barkjohn, Gantt & Clements (2021), Atmos. Meas. Tech. 14, 4617–4637,
doi:10.5194/amt-14-4617-2021::

    PM2.5 = 0.524 × PM2.5(cf_1) − 0.0862 × RH + 5.75        [µg/m³, RH in %]

Valid for ``0 ≤ PM2.5(cf_1) < 570 µg/m³``: the extended EPA correction (Barkjohn, Holder,
Frederick & Clements 2022, Sensors 22, 9669, doi:10.3390/s22249669) keeps this formula only
below 570 µg/m³ ("(1) PAcf1 < 570 (corrected = 300 µg/m3 at 50% RH)"; the PurpleAir
community thread https://community.purpleair.com/t/new-epa-correction/10372) and switches to
smoke formulas above it, which this module does not implement. (The older 2021 Fire and
Smoke Map version, documented by AirSensor2's ``pat_applyCorrection``, switched at 343 µg/m³
to a quadratic with rounded coefficients 0.52 / 0.086.) RH range 0–100 %: the formula is
linear in RH and does not diverge. It is defined on the Plantower **CF=1** PM2.5 channel
with the sensor's own RH; applying it to other sensors, or to Plantower "atmospheric"
(CF=ATM) values, is wrong.

``kappa-koehler`` — hygroscopic growth from κ-Köhler theory (Petters & Kreidenweis 2007, Atmos.
Chem. Phys. 7, 1961–1971) in the bulk form used for low-cost optical particle counters by
Crilley et al. (2018), Atmos. Meas. Tech. 11, 709–720, doi:10.5194/amt-11-709-2018::

    a_w = RH / 100
    C = 1 + (κ / 1.65) / (−1 + 1 / a_w)   ( = 1 + (κ / 1.65) · a_w / (1 − a_w) )
    PM_dry = PM_measured / C

Read physically, 1.65 is the dry-particle density relative to water: κ-Köhler gives the
water volume per dry volume as κ · a_w / (1 − a_w) (Kelvin term neglected), and dividing by
1.65 turns that into water mass per dry mass. (The form and the 1.65 are confirmed by
secondary sources only — Nilson et al. 2022 and implementations citing Crilley et al.; the
equation in the paper itself could not be read here.) Valid for ``0 ≤ RH ≤ rh_max``
(default 95 %; C diverges as RH → 100 %) and any finite ``PM_measured ≥ 0``.

Default κ = 0.4: Nilson et al. (2022), Atmos. Meas. Tech. 15, 3315,
doi:10.5194/amt-15-3315-2022, fitted
``PM2.5_cf1 / (1 + 0.24 / (100 / RH − 1))`` ("based on the RH growth model developed by
Crilley et al. (2018)") on 32 North American PurpleAir–FEM collocation sites, and it was the
best of eight models on 15 further sites; 0.24 = κ / 1.65 gives κ ≈ 0.40. That lies inside
0.1 < κ < 0.9, the range Petters & Kreidenweis (2007) give for atmospheric particulate
matter. (Nilson et al. also limited RH to 30–70 %; this module does not clamp RH.)

Every corrected value is clipped at 0.0 µg/m³ (the EPA formula's negative RH term takes it
below zero at low PM and high RH, e.g. cf_1 0 at RH 100 % gives −2.87).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: Plausibility flag added to a PM stream whose humidity exceeded :data:`RH_HIGH`.
HIGH_HUMIDITY_FLAG = "high_humidity"
#: RH (%) above which a PM value is flagged :data:`HIGH_HUMIDITY_FLAG` (fog, droplets).
RH_HIGH = 95.0

EPA_BARKJOHN_2021 = "epa-barkjohn-2021"
KAPPA_KOEHLER = "kappa-koehler"

_EPA_SLOPE = 0.524
_EPA_RH_COEFFICIENT = -0.0862
_EPA_INTERCEPT = 5.75
#: The extended EPA correction (Barkjohn et al. 2022) uses the 2021 formula below this cf_1.
_EPA_CF1_MAX = 570.0
#: Dry-particle density relative to water in the Crilley et al. (2018) growth factor.
_KAPPA_DENSITY_RATIO = 1.65
_KAPPA_DEFAULT = 0.4
_KAPPA_MAX = 1.5
_KAPPA_RH_MAX_DEFAULT = 95.0
_KAPPA_RH_MAX_RANGE = (50.0, 99.0)


@dataclass(frozen=True)
class MethodSpec:
    """A correction method in the registry :data:`KNOWN_METHODS`.

    Attributes:
        name: Registry name, the config ``correction`` value.
        reference: Citation published with every corrected value.
        streams: PM stream names the method applies to.
        summary: One line for docs and ``--help`` texts.
        options: Parameters a config may set, with their accepted range as text.
    """

    name: str
    reference: str
    streams: tuple[str, ...]
    summary: str
    options: Mapping[str, str]
    _resolve: Callable[[dict[str, object]], dict[str, float]] = field(repr=False)
    _rh_max: Callable[[Mapping[str, float]], float] = field(repr=False)
    _formula: Callable[[float, float, Mapping[str, float]], float | None] = field(repr=False)


@dataclass(frozen=True)
class HumidityCorrection:
    """A resolved humidity correction: one method with its parameters.

    Build it with :func:`make_correction`. Treat ``parameters`` as read-only.

    Attributes:
        method: Registry name (a key of :data:`KNOWN_METHODS`).
        reference: Citation: authors, year, journal, volume:pages, DOI.
        streams: PM stream names the correction applies to.
        parameters: The resolved parameters, as published in payloads.
        rh_max: Highest RH (%) for which a corrected value is produced.
    """

    method: str
    reference: str
    streams: tuple[str, ...]
    parameters: dict[str, float] = field(hash=False)
    rh_max: float

    def __post_init__(self) -> None:
        spec = _spec(self.method)
        resolved = spec._resolve(dict(self.parameters))
        if resolved != self.parameters:
            raise ValueError(f"{self.method}: parameters must be the resolved set {resolved} "
                             f"(got {self.parameters}); build it with make_correction()")
        if self.rh_max != spec._rh_max(resolved):
            raise ValueError(f"{self.method}: rh_max must be {spec._rh_max(resolved)}")

    def correct(self, stream: str, value: float, rh: float) -> float | None:
        """Return the corrected concentration of one value.

        Args:
            stream: PM stream name, e.g. ``"pm25"``.
            value: Raw concentration in µg/m³ (for ``epa-barkjohn-2021``: Plantower CF=1).
            rh: Relative humidity in %.

        Returns:
            The corrected concentration in µg/m³, clipped at 0.0; ``None`` when the stream is
            not in :attr:`streams`, ``rh`` is outside ``[0, rh_max]`` or not finite, or
            ``value`` is outside the method's validity range (see the module docstring).
        """
        if stream not in self.streams or not _finite(value) or not _finite(rh):
            return None
        if not 0.0 <= rh <= self.rh_max:
            return None
        corrected = _spec(self.method)._formula(float(value), float(rh), self.parameters)
        return None if corrected is None else max(0.0, corrected)

    def describe(self) -> dict[str, object]:
        """Return ``{"method", "reference", "parameters", "rh_max"}`` for payloads (JSON-ready)."""
        return {"method": self.method, "reference": self.reference,
                "parameters": dict(self.parameters), "rh_max": self.rh_max}


def make_correction(method: str, **parameters: object) -> HumidityCorrection:
    """Build a humidity correction from its registry name and optional parameters.

    Args:
        method: A key of :data:`KNOWN_METHODS`.
        **parameters: Method options: none for ``epa-barkjohn-2021`` (fixed coefficients);
            ``kappa`` (0 < κ ≤ 1.5, default 0.4) and ``rh_max`` (50–99 %, default 95) for
            ``kappa-koehler``.

    Returns:
        The resolved correction.

    Raises:
        ValueError: Unknown method, unknown parameter, or a parameter out of range.
    """
    spec = _spec(method)
    resolved = spec._resolve(dict(parameters))
    return HumidityCorrection(method=spec.name, reference=spec.reference, streams=spec.streams,
                              parameters=resolved, rh_max=spec._rh_max(resolved))


def is_high_humidity(rh: float) -> bool:
    """Return whether ``rh`` (%) is above :data:`RH_HIGH`, i.e. earns the ``high_humidity`` flag."""
    return _finite(rh) and rh > RH_HIGH


# --- epa-barkjohn-2021 ---------------------------------------------------------------------

def _epa_resolve(given: dict[str, object]) -> dict[str, float]:
    fixed = dict(_EPA_PARAMETERS)
    unknown = sorted(set(given) - set(fixed))
    if unknown:
        raise ValueError(f"{EPA_BARKJOHN_2021} has no parameter {', '.join(unknown)}; "
                         "it takes no parameters (its coefficients are fixed)")
    changed = sorted(k for k, v in given.items() if v != fixed[k])
    if changed:
        raise ValueError(f"{EPA_BARKJOHN_2021} has fixed coefficients; "
                         f"{', '.join(changed)} cannot be changed")
    return fixed


def _epa_formula(cf1: float, rh: float, p: Mapping[str, float]) -> float | None:
    if not 0.0 <= cf1 < p["cf1_max"]:
        return None
    return p["slope"] * cf1 + p["rh_coefficient"] * rh + p["intercept"]


_EPA_PARAMETERS: dict[str, float] = {"slope": _EPA_SLOPE, "rh_coefficient": _EPA_RH_COEFFICIENT,
                                     "intercept": _EPA_INTERCEPT, "cf1_max": _EPA_CF1_MAX}


# --- kappa-koehler -------------------------------------------------------------------------

def _number(method: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise ValueError(f"{method}: {name} must be a finite number (got {value!r})")
    return float(value)


def _kappa_resolve(given: dict[str, object]) -> dict[str, float]:
    unknown = sorted(set(given) - {"kappa", "rh_max", "density_ratio"})
    if unknown:
        raise ValueError(f"{KAPPA_KOEHLER} has no parameter {', '.join(unknown)} "
                         "(known: kappa, rh_max)")
    kappa = _number(KAPPA_KOEHLER, "kappa", given.get("kappa", _KAPPA_DEFAULT))
    if not 0.0 < kappa <= _KAPPA_MAX:
        raise ValueError(f"{KAPPA_KOEHLER}: kappa must be > 0 and ≤ {_KAPPA_MAX:g} "
                         f"(got {kappa:g}); ambient aerosol is typically 0.1–0.9")
    rh_max = _number(KAPPA_KOEHLER, "rh_max", given.get("rh_max", _KAPPA_RH_MAX_DEFAULT))
    low, high = _KAPPA_RH_MAX_RANGE
    if not low <= rh_max <= high:
        raise ValueError(f"{KAPPA_KOEHLER}: rh_max must be between {low:g} and {high:g} % "
                         f"(got {rh_max:g}); the growth factor diverges as RH approaches 100 %")
    if "density_ratio" in given and given["density_ratio"] != _KAPPA_DENSITY_RATIO:
        raise ValueError(f"{KAPPA_KOEHLER}: density_ratio is fixed at "
                         f"{_KAPPA_DENSITY_RATIO:g} (Crilley et al. 2018)")
    return {"kappa": kappa, "rh_max": rh_max, "density_ratio": _KAPPA_DENSITY_RATIO}


def _kappa_formula(pm: float, rh: float, p: Mapping[str, float]) -> float | None:
    if pm < 0.0:
        return None
    a_w = rh / 100.0
    # (κ/ρ)/(−1 + 1/a_w) written as (κ/ρ)·a_w/(1 − a_w): no division by zero in dry air.
    growth = 1.0 + (p["kappa"] / p["density_ratio"]) * a_w / (1.0 - a_w)
    return pm / growth


# --- registry ------------------------------------------------------------------------------

KNOWN_METHODS: dict[str, MethodSpec] = {
    EPA_BARKJOHN_2021: MethodSpec(
        name=EPA_BARKJOHN_2021,
        reference=("Barkjohn, K. K., Gantt, B., and Clements, A. L. (2021): Development and "
                   "application of a United States-wide correction for PM2.5 data collected "
                   "with the PurpleAir sensor, Atmos. Meas. Tech. 14, 4617–4637, "
                   "https://doi.org/10.5194/amt-14-4617-2021; validity limit cf_1 < 570 µg/m³ "
                   "from Barkjohn, K. K. et al. (2022), Sensors 22, 9669, "
                   "https://doi.org/10.3390/s22249669"),
        streams=("pm25",),
        summary="US EPA PurpleAir/Plantower PM2.5 correction; Plantower CF=1 input only",
        options={},
        _resolve=_epa_resolve,
        _rh_max=lambda _p: 100.0,
        _formula=_epa_formula,
    ),
    KAPPA_KOEHLER: MethodSpec(
        name=KAPPA_KOEHLER,
        reference=("Crilley, L. R., Shaw, M., Pound, R., Kramer, L. J., Price, R., Young, S., "
                   "Lewis, A. C., and Pope, F. D. (2018): Evaluation of a low-cost optical "
                   "particle counter (Alphasense OPC-N2) for ambient air monitoring, Atmos. "
                   "Meas. Tech. 11, 709–720, https://doi.org/10.5194/amt-11-709-2018"),
        streams=("pm1", "pm25", "pm4", "pm10"),
        summary="κ-Köhler hygroscopic growth, PM_dry = PM / C; any optical sensor",
        options={"kappa": "0 < kappa ≤ 1.5, default 0.4",
                 "rh_max": "50–99 %, default 95"},
        _resolve=_kappa_resolve,
        _rh_max=lambda p: p["rh_max"],
        _formula=_kappa_formula,
    ),
}


def _spec(method: object) -> MethodSpec:
    spec = KNOWN_METHODS.get(method) if isinstance(method, str) else None
    if spec is None:
        raise ValueError(f"unknown humidity correction {method!r}; "
                         f"known: {', '.join(KNOWN_METHODS)}")
    return spec


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
