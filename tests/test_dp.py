"""Differential privacy for counts: mechanism, budget, gate, config rules, contract."""

import json
import math
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from conftest import EDGEAGENT
from edgeagent import contract
from edgeagent.clock import FakeClock
from edgeagent.config import ConfigError, load_config
from edgeagent.dp import DpBudget, geometric_noise, noisy_count
from edgeagent.driver import QuantityClass, Reading, StatKind, StreamSpec
from edgeagent.privacy import PRESETS, ClassPolicy, DpPolicy, PrivacyConfig, PrivacyGate
from edgeagent.windows import SensorWindows

ROOT = Path(__file__).resolve().parents[1]
DATA_SCHEMA = json.loads((ROOT / "deploy/schemas/data.schema.json").read_text())
PEOPLE = StreamSpec("people", "count", QuantityClass.PEOPLE_COUNT, StatKind.COUNTER)
PM = StreamSpec("pm25", "ug/m3", QuantityClass.PARTICULATE)
META = {"driver": "simulated", "model": "m", "simulated": True}
DAY0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RESEARCH = PrivacyConfig(preset="research-dp")
EPS = PRESETS["research-dp"][QuantityClass.PEOPLE_COUNT].dp.epsilon


def discrete_laplace_pmf(k: int, epsilon: float) -> float:
    q = math.exp(-epsilon)
    return (1 - q) / (1 + q) * q ** abs(k)


def chi_square(draws: list[int], epsilon: float) -> tuple[float, int]:
    """Chi-square statistic against the discrete Laplace law; bins with expectation < 5 merged
    into the two tails. Returns (statistic, degrees of freedom)."""
    n = len(draws)
    counts = Counter(draws)
    edge = 0
    while n * discrete_laplace_pmf(edge + 1, epsilon) >= 5:
        edge += 1
    tail = (1 - sum(discrete_laplace_pmf(k, epsilon) for k in range(-edge, edge + 1))) / 2
    cells = [(counts[k], n * discrete_laplace_pmf(k, epsilon)) for k in range(-edge, edge + 1)]
    cells.append((sum(c for k, c in counts.items() if k < -edge), n * tail))
    cells.append((sum(c for k, c in counts.items() if k > edge), n * tail))
    return sum((o - e) ** 2 / e for o, e in cells), len(cells) - 1


# Upper 0.1 % points of the chi-square distribution (Wilson-Hilferty, z = 3.09; within 1 % of
# the exact quantile for df >= 5). The seeds are fixed, so the tests are deterministic.
CHI2_999 = {df: df * (1 - 2 / (9 * df) + 3.09 * math.sqrt(2 / (9 * df))) ** 3
            for df in range(1, 200)}


# --- the mechanism ------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.5, 1.0])
def test_noise_follows_the_discrete_laplace_law(epsilon):
    rng = random.Random(20260101)
    draws = [geometric_noise(epsilon, rng=rng) for _ in range(20_000)]
    stat, df = chi_square(draws, epsilon)
    assert stat < CHI2_999[df], (stat, df)
    q = math.exp(-epsilon)
    sd = math.sqrt(2 * q) / (1 - q)
    assert abs(sum(draws) / len(draws)) < 4 * sd / math.sqrt(len(draws))  # mean ~ 0
    assert Counter(draws)[0] / len(draws) == pytest.approx(discrete_laplace_pmf(0, epsilon),
                                                           abs=0.015)


def test_the_distribution_test_rejects_the_wrong_epsilon():
    """The chi-square check can fail: noise of epsilon 1 is not the law of epsilon 0.5."""
    rng = random.Random(7)
    draws = [geometric_noise(1.0, rng=rng) for _ in range(20_000)]
    stat, df = chi_square(draws, 0.5)
    assert stat > CHI2_999[df]


def test_sensitivity_scales_the_noise():
    rng = random.Random(3)
    draws = [geometric_noise(1.0, sensitivity=2, rng=rng) for _ in range(20_000)]
    stat, df = chi_square(draws, 0.5)  # eps / sensitivity
    assert stat < CHI2_999[df]


def test_noisy_count_is_the_count_plus_the_noise_of_the_same_stream():
    assert noisy_count(40, 0.5, rng=random.Random(1)) == 40 + geometric_noise(
        0.5, rng=random.Random(1))


def test_default_source_is_the_system_csprng():
    draws = {noisy_count(10, 0.5) for _ in range(200)}
    assert len(draws) > 3  # really random, not a fixed seed


@pytest.mark.parametrize("epsilon", [0, -1.0, float("nan"), float("inf")])
def test_bad_epsilon_is_refused(epsilon):
    with pytest.raises(ValueError, match="epsilon"):
        noisy_count(3, epsilon)


def test_bad_sensitivity_is_refused():
    with pytest.raises(ValueError, match="sensitivity"):
        noisy_count(3, 1.0, sensitivity=0)


# --- the budget ---------------------------------------------------------------------------


def test_budget_is_enforced_and_survives_a_restart(tmp_path):
    budget = DpBudget(tmp_path)
    assert all(budget.spend("s/people", 0.1, 0.5, at=DAY0 + i) for i in range(5))
    assert not budget.spend("s/people", 0.1, 0.5, at=DAY0 + 10)
    assert budget.spend("s/other", 0.1, 0.5, at=DAY0 + 10)  # per stream
    restarted = DpBudget(tmp_path)
    assert restarted.spent("s/people", at=DAY0 + 20) == pytest.approx(0.5)
    assert not restarted.spend("s/people", 0.1, 0.5, at=DAY0 + 20)
    assert restarted.remaining("s/other", 0.5, at=DAY0 + 20) == pytest.approx(0.4)
    assert json.loads((tmp_path / "dp_budget.json").read_text())["day"] == "2026-01-01"


def test_288_windows_of_research_dp_fit_one_day(tmp_path):
    dp = PRESETS["research-dp"][QuantityClass.PEOPLE_COUNT].dp
    budget = DpBudget(tmp_path)
    assert all(budget.spend("s/p", dp.epsilon, dp.daily_budget, at=DAY0 + 300 * i)
               for i in range(288))


def test_budget_rolls_over_at_utc_midnight_with_an_injected_clock(tmp_path):
    now = [DAY0 + 86_399]
    budget = DpBudget(tmp_path, clock=lambda: now[0])
    assert budget.spend("s/p", 1.0, 1.0)
    assert not budget.spend("s/p", 1.0, 1.0)
    now[0] = DAY0 + 86_400  # 2026-01-02T00:00:00Z
    assert budget.spend("s/p", 1.0, 1.0)
    assert not DpBudget(tmp_path, clock=lambda: now[0]).spend("s/p", 1.0, 1.0)


def test_a_clock_that_jumps_back_keeps_charging_the_latest_day(tmp_path):
    budget = DpBudget(tmp_path)
    assert budget.spend("s/p", 1.0, 1.0, at=DAY0 + 86_400)
    assert not budget.spend("s/p", 1.0, 1.0, at=DAY0)  # "yesterday" is not a fresh budget
    assert not DpBudget(tmp_path).spend("s/p", 1.0, 1.0, at=DAY0)


@pytest.mark.parametrize("text", ["{not json", '{"day": "2026-13-01", "spent": {}}',
                                  '{"day": "2026-01-01", "spent": {"s/p": -1}}', "[]"])
def test_corrupt_ledger_means_exhausted_today_and_is_reported(tmp_path, text):
    (tmp_path / "dp_budget.json").write_text(text)
    budget = DpBudget(tmp_path)
    assert not budget.spend("s/p", 0.1, 30.0, at=DAY0)
    assert budget.problem and "no DP value is released" in budget.problem
    assert (tmp_path / "dp_budget.json.corrupt").read_text() == text
    assert not DpBudget(tmp_path).spend("s/p", 0.1, 30.0, at=DAY0 + 60)  # restart: still
    tomorrow = DpBudget(tmp_path)
    assert tomorrow.spend("s/p", 0.1, 30.0, at=DAY0 + 86_400)
    assert tomorrow.problem is None


def test_a_ledger_that_cannot_be_written_refuses(tmp_path, monkeypatch):
    budget = DpBudget(tmp_path)
    assert budget.spend("s/p", 0.1, 30.0, at=DAY0)

    def full_disk(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("edgeagent.dp.os.replace", full_disk)
    assert not budget.spend("s/p", 0.1, 30.0, at=DAY0)
    assert budget.problem and "cannot write" in budget.problem
    assert budget.spent("s/p", at=DAY0) == pytest.approx(0.1)  # the refused one is not counted
    assert not list(tmp_path.glob(".dp_budget.json.*"))  # no temp file left behind


def test_an_unreadable_ledger_is_treated_as_corrupt(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    budget = DpBudget(blocker)  # its "state dir" is a file: nothing can be read
    assert not budget.spend("s/p", 0.1, 30.0, at=DAY0)
    assert budget.problem and "cannot read" in budget.problem


def test_budget_does_not_touch_the_disk_until_used(tmp_path):
    DpBudget(tmp_path / "state")
    assert not (tmp_path / "state").exists()


# --- through the gate ---------------------------------------------------------------------


def window_with(people, length=300.0, start=DAY0, streams=(PM, PEOPLE)):
    clock = FakeClock(start_wall=start)
    windows = SensorWindows("s", list(streams), length, 1.0, clock)
    for i in range(int(length)):
        windows.add([Reading("pm25", 5.0, clock.monotonic()),
                     Reading("people", people[i % len(people)], clock.monotonic())])
        clock.advance(1)
    (closed,) = windows.close_due()
    return closed



def schema_errors(body):
    doc = {"seq": 0, "store": "0" * 32, **body}
    return [e.message for e in Draft202012Validator(DATA_SCHEMA).iter_errors(doc)]


def test_gate_publishes_the_noised_count_with_its_epsilon(tmp_path):
    gate = PrivacyGate(RESEARCH, "gw", budget=DpBudget(tmp_path), rng=random.Random(5))
    body = gate.release_window(window_with([1.0, 0.0]), META).body
    people = body["values"]["people"]
    expected = max(0, noisy_count(150, EPS, 1, random.Random(5)))
    assert people["sum"] == expected
    assert people["dp"] == {"epsilon": EPS, "mechanism": "geometric"}
    assert people["suppressed"] is False and "k" not in people
    assert set(people) == {"unit", "quantity", "n", "sum", "dp", "suppressed"}
    assert schema_errors(body) == []
    assert DpBudget(tmp_path).spent("s/people", at=DAY0) == pytest.approx(EPS)


def test_negative_noise_on_a_zero_count_is_published_as_zero(tmp_path):
    seeds = [s for s in range(200) if noisy_count(0, EPS, 1, random.Random(s)) < 0]
    assert seeds
    gate = PrivacyGate(RESEARCH, "gw", budget=DpBudget(tmp_path), rng=random.Random(seeds[0]))
    assert gate.release_window(window_with([0.0]), META).body["values"]["people"]["sum"] == 0


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 300), seed=st.integers(0, 2**32))
def test_released_value_is_always_the_mechanism_output(tmp_path_factory, count, seed):
    gate = PrivacyGate(RESEARCH, "gw", budget=DpBudget(tmp_path_factory.mktemp("b")),
                       rng=random.Random(seed))
    people = [1.0] * count + [0.0] * (300 - count)
    entry = gate.release_window(window_with(people), META).body["values"]["people"]
    assert entry["sum"] == max(0, noisy_count(count, EPS, 1, random.Random(seed)))
    assert "min" not in entry and "max" not in entry


def test_exhausted_budget_suppresses_with_reason_dp_budget(tmp_path):
    privacy = PrivacyConfig(preset="research-dp", classes={
        QuantityClass.PEOPLE_COUNT: ClassPolicy(
            min_window=300, statistics=("sum",), dp=DpPolicy(epsilon=0.5, daily_budget=1.0))})
    gate = PrivacyGate(privacy, "gw", budget=DpBudget(tmp_path), rng=random.Random(1))
    bodies = [gate.release_window(window_with([1.0], start=DAY0 + 300 * i), META).body
              for i in range(3)]
    assert [b["values"]["people"].get("suppressed_reason") for b in bodies] == [
        None, None, "dp_budget"]
    last = bodies[2]["values"]["people"]
    assert last["sum"] is None and last["suppressed"] is True and "dp" not in last
    assert all(schema_errors(b) == [] for b in bodies)
    restarted = PrivacyGate(privacy, "gw", budget=DpBudget(tmp_path))
    entry = restarted.release_window(window_with([1.0], start=DAY0 + 900), META).body
    assert entry["values"]["people"]["suppressed_reason"] == "dp_budget"
    next_day = restarted.release_window(window_with([1.0], start=DAY0 + 86_400), META).body
    assert next_day["values"]["people"]["suppressed"] is False


def test_without_a_budget_a_dp_count_is_never_published(tmp_path):
    entry = PrivacyGate(RESEARCH, "gw").release_window(window_with([1.0]), META).body
    assert entry["values"]["people"] | {"n": 0} == {
        "unit": "count", "quantity": "people_count", "n": 0, "sum": None,
        "suppressed": True, "suppressed_reason": "dp_budget"}


def test_a_short_partial_window_spends_nothing(tmp_path):
    clock = FakeClock(start_wall=DAY0 + 200)  # starts 100 s before the 300 s boundary
    windows = SensorWindows("s", [PEOPLE], 300.0, 1.0, clock)
    for _ in range(100):
        windows.add([Reading("people", 1.0, clock.monotonic())])
        clock.advance(1)
    closed = windows.close_due() or [windows.close_partial()]
    budget = DpBudget(tmp_path)
    body = PrivacyGate(RESEARCH, "gw", budget=budget).release_window(closed[0], META).body
    assert body["values"]["people"]["suppressed_reason"] == "short_window"
    assert budget.spent("s/people", at=DAY0) == 0


def test_gate_drops_unnoised_counter_statistics_even_if_configured(tmp_path):
    privacy = PrivacyConfig(classes={QuantityClass.PEOPLE_COUNT: ClassPolicy(
        min_window=300, statistics=("sum", "min", "max"), dp=DpPolicy(epsilon=1, daily_budget=9))})
    gate = PrivacyGate(privacy, "gw", budget=DpBudget(tmp_path))
    entry = gate.release_window(window_with([1.0, 3.0]), META).body["values"]["people"]
    assert "min" not in entry and "max" not in entry and "dp" in entry
    assert gate.allowed(PEOPLE) == (["sum"], None)


def test_other_presets_are_unchanged_and_without_dp():
    for name in ("strict", "crowd-safety", "demo"):
        assert all(p.dp is None for p in PRESETS[name].values())
        assert PrivacyConfig(preset=name).dp_manifest() is None
    assert PRESETS["strict"][QuantityClass.PEOPLE_COUNT].k == 5
    assert RESEARCH.dp_manifest() == {"mechanism": "geometric", "epsilon_per_window": 0.1,
                                      "daily_budget": 30.0}
    assert RESEARCH.problems() == []


# --- config rules -------------------------------------------------------------------------


def problems_of(quantity, preset="strict", **policy):
    fields = {"min_window": 300, "statistics": ("sum",)} | policy
    return PrivacyConfig(preset=preset,
                         classes={quantity: ClassPolicy(**fields)}).problems()


def test_dp_config_rules_in_plain_words():
    dp = DpPolicy(epsilon=0.5, daily_budget=10)
    people = QuantityClass.PEOPLE_COUNT
    assert problems_of(people, dp=dp) == []
    ((path, why),) = problems_of(people, dp=dp, k=5)
    assert path == "privacy.classes.people_count.k" and "either k or dp" in why
    ((path, why),) = problems_of(QuantityClass.NOISE, statistics=("mean",), min_window=60, dp=dp)
    assert path == "privacy.classes.noise.dp" and "only to people_count" in why
    ((path, why),) = problems_of(people, dp=DpPolicy(epsilon=2, daily_budget=1))
    assert path == "privacy.classes.people_count.dp.epsilon" and "not a single window" in why
    ((path, why),) = problems_of(people, dp=dp, statistics=("sum", "max"))
    assert path == "privacy.classes.people_count.statistics" and "without noise" in why
    ((path, why),) = problems_of(people, preset="research-dp", k=5)
    assert path == "privacy.classes.people_count.dp" and "research-dp" in why
    ((path, why),) = problems_of(people)
    assert "or a dp section" in why


@pytest.mark.parametrize("bad", [{"epsilon": 0, "daily_budget": 1},
                                 {"epsilon": 1, "daily_budget": -1},
                                 {"epsilon": float("nan"), "daily_budget": 1},
                                 {"epsilon": 1}, {"epsilon": 1, "daily_budget": 2, "x": 1}])
def test_dp_section_fields_are_validated(bad):
    with pytest.raises(ValidationError):
        DpPolicy(**bad)


CONFIG = """\
gateway: {{id: gw-1}}
mqtt: {{host: broker.example.org}}
state_dir: {state}
sensors:
  - id: crowd
    driver: simulated
    quantities: [people]
    window: 5min
privacy:
{privacy}
"""


def test_check_config_explains_a_dp_rejection(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(state=tmp_path, privacy=(
        "  classes:\n    people_count: {min_window: 5min, statistics: [sum], k: 5,\n"
        "                   dp: {epsilon: 0.5, daily_budget: 0.1}}")))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = [str(issue) for issue in caught.value.issues]
    assert any("people_count.k" in i and "either k or dp" in i for i in text), text
    assert any("people_count.dp.epsilon" in i and "daily_budget" in i for i in text), text


def test_manifest_of_research_dp_declares_the_noise_and_validates(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(state=tmp_path, privacy="  preset: research-dp"))
    result = subprocess.run([*EDGEAGENT, "manifest", "-c", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert contract.problems("manifest", manifest) == []
    assert manifest["privacy"]["dp"] == {"mechanism": "geometric", "epsilon_per_window": 0.1,
                                         "daily_budget": 30.0}
    assert manifest["privacy"]["classes"]["people_count"]["k"] is None
    manifest["privacy"]["dp"] = None  # research-dp without dp parameters is a contradiction
    assert contract.problems("manifest", manifest)
