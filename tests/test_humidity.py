import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.humidity import (
    HIGH_HUMIDITY_FLAG,
    KNOWN_METHODS,
    RH_HIGH,
    HumidityCorrection,
    is_high_humidity,
    make_correction,
)

EPA = make_correction("epa-barkjohn-2021")
KAPPA = make_correction("kappa-koehler")

# --- worked numbers, computed by hand --------------------------------------------------------


def test_epa_worked_example():
    # 0.524 × 20 − 0.0862 × 50 + 5.75 = 10.48 − 4.31 + 5.75 = 11.92
    assert EPA.correct("pm25", 20.0, 50.0) == pytest.approx(11.92)
    # 0.524 × 100 − 0 + 5.75 = 58.15 (dry air)
    assert EPA.correct("pm25", 100.0, 0.0) == pytest.approx(58.15)


def test_epa_is_clipped_at_zero():
    # 0.524 × 0 − 0.0862 × 100 + 5.75 = −2.87 → 0.0
    assert EPA.correct("pm25", 0.0, 100.0) == 0.0
    # 0.524 × 2 − 0.0862 × 90 + 5.75 = 1.048 − 7.758 + 5.75 = −0.96 → 0.0
    assert EPA.correct("pm25", 2.0, 90.0) == 0.0


def test_epa_validity_range_ends_below_570_cf1():
    # The extended EPA correction keeps this formula only for cf_1 < 570 µg/m³.
    # 0.524 × 569 − 0.0862 × 50 + 5.75 = 298.156 − 4.31 + 5.75 = 299.596
    assert EPA.correct("pm25", 569.0, 50.0) == pytest.approx(299.596)
    assert EPA.correct("pm25", 570.0, 50.0) is None
    assert EPA.correct("pm25", 1000.0, 50.0) is None
    assert EPA.correct("pm25", -0.5, 50.0) is None


def test_epa_covers_the_whole_rh_scale():
    assert EPA.rh_max == 100.0
    # 0.524 × 50 − 0.0862 × 100 + 5.75 = 26.2 − 8.62 + 5.75 = 23.33
    assert EPA.correct("pm25", 50.0, 100.0) == pytest.approx(23.33)
    assert EPA.correct("pm25", 50.0, 100.5) is None
    assert EPA.correct("pm25", 50.0, -1.0) is None


def test_kappa_worked_example():
    # κ 0.4, RH 80 %: a_w = 0.8, −1 + 1/0.8 = 0.25, C = 1 + (0.4/1.65)/0.25 = 1.969697
    c = 1 + (0.4 / 1.65) / 0.25
    assert c == pytest.approx(1.969697, abs=1e-6)
    assert KAPPA.correct("pm25", 30.0, 80.0) == pytest.approx(15.2308, abs=1e-4)
    # RH 50 %: −1 + 1/0.5 = 1, C = 1 + 0.4/1.65 = 1.242424; 30 / 1.242424 = 24.1463
    assert KAPPA.correct("pm10", 30.0, 50.0) == pytest.approx(24.1463, abs=1e-4)


def test_kappa_at_rh_max_still_corrects_and_just_above_does_not():
    # RH 95 %: −1 + 1/0.95 = 0.0526316, C = 1 + 0.242424 / 0.0526316 = 5.606061
    assert KAPPA.correct("pm25", 100.0, 95.0) == pytest.approx(100 / 5.606061, rel=1e-6)
    assert KAPPA.correct("pm25", 100.0, 95.0001) is None
    assert KAPPA.correct("pm25", 100.0, 100.0) is None


def test_kappa_matches_the_nilson_2022_form():
    # Nilson et al. 2022: PM / (1 + 0.24 / (100/RH − 1)); 0.24 = κ/1.65 → κ = 0.396
    corr = make_correction("kappa-koehler", kappa=0.24 * 1.65)
    for rh in (30.0, 55.0, 70.0, 90.0):
        assert corr.correct("pm25", 42.0, rh) == pytest.approx(42.0 / (1 + 0.24 / (100 / rh - 1)))


def test_kappa_dry_air_leaves_the_value_unchanged():
    for stream in ("pm1", "pm25", "pm4", "pm10"):
        assert KAPPA.correct(stream, 37.5, 0.0) == 37.5
    assert KAPPA.correct("pm25", 0.0, 0.0) == 0.0


def test_kappa_rejects_negative_values():
    assert KAPPA.correct("pm25", -1.0, 60.0) is None


def test_a_larger_kappa_removes_more_water():
    low = make_correction("kappa-koehler", kappa=0.1).correct("pm25", 50.0, 85.0)
    high = make_correction("kappa-koehler", kappa=1.2).correct("pm25", 50.0, 85.0)
    assert high < low < 50.0


def test_custom_rh_max_applies():
    corr = make_correction("kappa-koehler", rh_max=85)
    assert corr.rh_max == 85.0
    assert corr.correct("pm25", 10.0, 85.0) is not None
    assert corr.correct("pm25", 10.0, 86.0) is None


# --- streams ---------------------------------------------------------------------------------


def test_streams_covered():
    assert EPA.streams == ("pm25",)
    assert KAPPA.streams == ("pm1", "pm25", "pm4", "pm10")


@pytest.mark.parametrize(("correction", "stream"), [
    (EPA, "pm10"), (EPA, "pm1"), (EPA, "pm4"), (EPA, "relativeHumidity"),
    (KAPPA, "laeq"), (KAPPA, "people"), (KAPPA, "typical_size"), (KAPPA, "PM25"),
])
def test_streams_not_covered_give_none(correction, stream):
    assert correction.correct(stream, 20.0, 50.0) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_give_none(bad):
    for corr in (EPA, KAPPA):
        assert corr.correct("pm25", bad, 50.0) is None
        assert corr.correct("pm25", 20.0, bad) is None


# --- properties ------------------------------------------------------------------------------

_values = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)
_rh = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
_kappas = st.floats(min_value=0.01, max_value=1.5, allow_nan=False)
_rh_maxes = st.floats(min_value=50.0, max_value=99.0, allow_nan=False)


@st.composite
def _corrections(draw):
    if draw(st.booleans()):
        return EPA
    return make_correction("kappa-koehler", kappa=draw(_kappas), rh_max=draw(_rh_maxes))


@settings(max_examples=300)
@given(corr=_corrections(), value=_values, rh_a=_rh, rh_b=_rh)
def test_corrected_value_never_increases_with_rh(corr, value, rh_a, rh_b):
    low_rh, high_rh = sorted((rh_a, rh_b))
    at_low = corr.correct("pm25", value, low_rh)
    at_high = corr.correct("pm25", value, high_rh)
    if at_low is not None and at_high is not None:
        assert at_high <= at_low


@settings(max_examples=300)
@given(corr=_corrections(), value=_values, rh=_rh)
def test_never_negative_and_none_above_rh_max(corr, value, rh):
    out = corr.correct("pm25", value, rh)
    if rh > corr.rh_max:
        assert out is None
    elif out is not None:
        assert out >= 0.0


@settings(max_examples=200)
@given(kappa=_kappas, rh_max=_rh_maxes, value=_values, rh=_rh)
def test_kappa_never_raises_the_value(kappa, rh_max, value, rh):
    corr = make_correction("kappa-koehler", kappa=kappa, rh_max=rh_max)
    out = corr.correct("pm10", value, rh)
    if rh <= rh_max:
        assert out is not None and out <= value
    else:
        assert out is None


# --- construction and validation -------------------------------------------------------------


def test_known_methods_registry():
    assert set(KNOWN_METHODS) == {"epa-barkjohn-2021", "kappa-koehler"}
    for name, spec in KNOWN_METHODS.items():
        assert spec.name == name
        assert "doi.org/10.5194/amt-" in spec.reference
        assert make_correction(name).method == name


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown humidity correction 'rivm-2020'") as info:
        make_correction("rivm-2020")
    assert "epa-barkjohn-2021" in str(info.value) and "kappa-koehler" in str(info.value)
    with pytest.raises(ValueError, match="unknown humidity correction"):
        make_correction("none")


def test_epa_takes_no_parameters():
    with pytest.raises(ValueError, match="no parameter kappa"):
        make_correction("epa-barkjohn-2021", kappa=0.4)
    with pytest.raises(ValueError, match="slope cannot be changed"):
        make_correction("epa-barkjohn-2021", slope=0.6)


@pytest.mark.parametrize(("params", "message"), [
    ({"kappa": 0}, "kappa must be > 0"),
    ({"kappa": -0.2}, "kappa must be > 0"),
    ({"kappa": 1.6}, "≤ 1.5"),
    ({"kappa": math.nan}, "kappa must be a finite number"),
    ({"kappa": "0.4"}, "kappa must be a finite number"),
    ({"kappa": True}, "kappa must be a finite number"),
    ({"rh_max": 49.9}, "rh_max must be between 50 and 99"),
    ({"rh_max": 99.5}, "rh_max must be between 50 and 99"),
    ({"rh_max": 100}, "diverges"),
    ({"rh_max": None}, "rh_max must be a finite number"),
    ({"density_ratio": 1.5}, "density_ratio is fixed"),
    ({"kapa": 0.4}, r"no parameter kapa \(known: kappa, rh_max\)"),
])
def test_bad_kappa_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        make_correction("kappa-koehler", **params)


def test_resolved_parameters_are_published():
    assert KAPPA.parameters == {"kappa": 0.4, "rh_max": 95.0, "density_ratio": 1.65}
    assert KAPPA.rh_max == 95.0
    assert EPA.parameters == {"slope": 0.524, "rh_coefficient": -0.0862, "intercept": 5.75,
                              "cf1_max": 570.0}
    corr = make_correction("kappa-koehler", kappa=1, rh_max=90)
    assert corr.parameters == {"kappa": 1.0, "rh_max": 90.0, "density_ratio": 1.65}
    assert all(type(v) is float for v in corr.parameters.values())


def test_describe_is_json_ready():
    for corr in (EPA, KAPPA):
        doc = corr.describe()
        assert set(doc) == {"method", "reference", "parameters", "rh_max"}
        assert json.loads(json.dumps(doc)) == doc
        assert all(isinstance(v, float) for v in doc["parameters"].values())
        doc["parameters"]["kappa"] = 9.0  # a copy: the correction is unaffected
    assert KAPPA.parameters["kappa"] == 0.4
    assert KAPPA.describe()["method"] == "kappa-koehler"
    assert "Crilley" in KAPPA.describe()["reference"]
    assert "Barkjohn" in EPA.describe()["reference"]


def test_correction_is_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        KAPPA.rh_max = 99.0
    assert make_correction("kappa-koehler") == KAPPA
    assert hash(make_correction("kappa-koehler")) == hash(KAPPA)
    assert make_correction("kappa-koehler", kappa=0.2) != KAPPA


def test_direct_construction_is_checked():
    with pytest.raises(ValueError, match="unknown humidity correction"):
        HumidityCorrection("magic", "", ("pm25",), {}, 95.0)
    with pytest.raises(ValueError, match="resolved set"):
        HumidityCorrection("kappa-koehler", "", ("pm25",), {"kappa": 0.4}, 95.0)
    with pytest.raises(ValueError, match="rh_max must be 95"):
        HumidityCorrection("kappa-koehler", "", ("pm25",),
                           {"kappa": 0.4, "rh_max": 95.0, "density_ratio": 1.65}, 99.0)


# --- high-humidity flag ----------------------------------------------------------------------


def test_high_humidity_flag():
    assert HIGH_HUMIDITY_FLAG == "high_humidity"
    assert RH_HIGH == 95.0
    assert not is_high_humidity(95.0)
    assert is_high_humidity(95.1)
    assert is_high_humidity(100.0)
    assert not is_high_humidity(40.0)
    assert not is_high_humidity(math.nan)
