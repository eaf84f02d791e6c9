"""The privacy gate: the only door into the outbox.

Per quantity class the policy sets a minimum window, the statistics allowed to leave and, for
counts, a k-threshold below which a value is *suppressed* (published as ``null`` with
``suppressed: true``, never as 0) or, instead of k, differential privacy: the count is
published with two-sided geometric noise of a declared epsilon per window, within a per-day
budget (:mod:`edgeagent.dp`); an exhausted budget suppresses the count (``dp_budget``).
A partial window (first after start, or closed early on shutdown) shorter than the class
minimum is suppressed the same way, so no value ever describes a finer time slice than the
policy allows. The gate turns a closed window into a
:class:`Released` message; only the gate can make one, and the outbox accepts nothing else.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgeagent.dp import MECHANISM, DpBudget, Rng, noisy_count
from edgeagent.driver import QuantityClass, StatKind, StreamSpec
from edgeagent.units import Duration
from edgeagent.windows import ClosedWindow, StreamStats

Statistic = Literal["mean", "min", "max", "stddev", "sum", "l10", "l50", "l90"]
PresetName = Literal["strict", "crowd-safety", "demo", "research-dp"]

#: Statistics that make sense for each kind of stream.
STATISTICS_BY_KIND: dict[StatKind, frozenset[str]] = {
    StatKind.LINEAR: frozenset({"mean", "min", "max", "stddev"}),
    StatKind.ENERGETIC: frozenset({"mean", "min", "max"}),
    StatKind.COUNTER: frozenset({"sum"}),  # a per-sample peak of crossings means nothing
    StatKind.LEVEL: frozenset({"mean", "min", "max", "l10", "l50", "l90"}),
    StatKind.OCCUPANCY: frozenset({"mean", "max"}),
}
#: Kinds whose values are numbers of people: k-suppression applies (to the sum of a counter,
#: to the max of an occupancy: fewer than k people present at any time in the window).
COUNT_KINDS = frozenset({StatKind.COUNTER, StatKind.OCCUPANCY})
_K_STATISTIC = {StatKind.COUNTER: "sum", StatKind.OCCUPANCY: "max"}
#: Words that mean "send the samples themselves": refused with a plain explanation.
RAW_WORDS = frozenset({"raw", "samples", "values", "all", "frames", "tracks", "objects",
                       "targets", "audio", "events", "per_object", "detections"})
#: Legal floors no preset or override may go below (demo excepted, simulated data only).
MIN_K = 3
FLOOR_WINDOW_S: dict[QuantityClass, float] = {
    QuantityClass.PARTICULATE: 10.0,
    QuantityClass.CLIMATE: 10.0,
    QuantityClass.NOISE: 60.0,  # sound levels per >= 1 min, never finer
    QuantityClass.PEOPLE_COUNT: 60.0,
    QuantityClass.PRESENCE: 60.0,
}
#: Presets whose own floor is lower than the legal one for a class.
PRESET_FLOOR_WINDOW_S = {("crowd-safety", QuantityClass.PEOPLE_COUNT): 10.0}


def floor_window(preset: str, quantity: QuantityClass) -> float:
    """The shortest minimum window an override may set for ``quantity`` under ``preset``."""
    return PRESET_FLOOR_WINDOW_S.get((preset, quantity), FLOOR_WINDOW_S[quantity])


_DECIMALS = {QuantityClass.PARTICULATE: 2, QuantityClass.CLIMATE: 2, QuantityClass.NOISE: 1,
             QuantityClass.PEOPLE_COUNT: 1, QuantityClass.PRESENCE: 1}


class DpPolicy(BaseModel):
    """Differential privacy of a count: epsilon per released window, epsilon per UTC day."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epsilon: float = Field(gt=0, description="privacy loss per published window (smaller = "
                           "more noise); one crossing changes a count by at most 1")
    daily_budget: float = Field(gt=0, description="most epsilon one stream may spend per UTC "
                                "day; windows beyond it are suppressed (dp_budget)")


class ClassPolicy(BaseModel):
    """Policy of one quantity class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_window: Duration
    statistics: tuple[Statistic, ...]
    k: int | None = Field(None, ge=1, description="k-threshold for counts; None = not a count")
    dp: DpPolicy | None = Field(None, description="noise instead of k (people_count only)")

    @field_validator("statistics", mode="before")
    @classmethod
    def _no_raw(cls, value: Any) -> Any:
        for item in value if isinstance(value, list | tuple) else []:
            if str(item).lower() in RAW_WORDS:
                raise ValueError(f"{item!r} would publish raw or per-object data, which never "
                                 "leaves the device; allowed: mean, min, max, stddev, sum, "
                                 "l10, l50, l90")
        return value


_LEVELS = ("mean", "min", "max", "stddev")
_NOISE = ("mean", "min", "max", "l10", "l50", "l90")  # Leq, extremes and percentile levels
_PEOPLE = ("sum", "mean", "max")  # crossings per window; occupancy mean and peak
_PRESENCE = ("mean", "sum")  # share of time someone was there; motion triggers (not people)
PRESETS: dict[str, dict[QuantityClass, ClassPolicy]] = {
    "strict": {
        QuantityClass.PARTICULATE: ClassPolicy(min_window=60, statistics=_LEVELS),
        QuantityClass.CLIMATE: ClassPolicy(min_window=60, statistics=_LEVELS),
        QuantityClass.NOISE: ClassPolicy(min_window=60, statistics=_NOISE),
        QuantityClass.PEOPLE_COUNT: ClassPolicy(min_window=300, statistics=_PEOPLE, k=5),
        QuantityClass.PRESENCE: ClassPolicy(min_window=300, statistics=_PRESENCE),
    },
    # Crowd managers need counts fast (alarms on a full square): count windows down to 10 s,
    # k = 3 stays, no DP.
    "crowd-safety": {
        QuantityClass.PARTICULATE: ClassPolicy(min_window=60, statistics=_LEVELS),
        QuantityClass.CLIMATE: ClassPolicy(min_window=60, statistics=_LEVELS),
        QuantityClass.NOISE: ClassPolicy(min_window=60, statistics=_NOISE),
        QuantityClass.PEOPLE_COUNT: ClassPolicy(min_window=10, statistics=_PEOPLE, k=3),
        QuantityClass.PRESENCE: ClassPolicy(min_window=60, statistics=_PRESENCE),
    },
    # Short windows so a demo shows data within seconds; check-config allows it only when
    # every sensor is simulated. k stays at 5, so suppression is visible in the demo.
    "demo": {
        QuantityClass.PARTICULATE: ClassPolicy(min_window=1, statistics=_LEVELS),
        QuantityClass.CLIMATE: ClassPolicy(min_window=1, statistics=_LEVELS),
        QuantityClass.NOISE: ClassPolicy(min_window=1, statistics=_NOISE),
        QuantityClass.PEOPLE_COUNT: ClassPolicy(min_window=1, statistics=_PEOPLE, k=5),
        QuantityClass.PRESENCE: ClassPolicy(min_window=1, statistics=_PRESENCE),
    },
    # Noised counts instead of k (docs/differential-privacy.md). 5-minute windows are at most
    # 288 a day: 288 x 0.1 = 28.8 fits the budget of 30 with room for the extra partial
    # windows that restarts make. Shorter windows would need a budget so large that the
    # daily guarantee meant nothing (1440 one-minute windows x 0.1 = 144).
    "research-dp": {
        QuantityClass.PARTICULATE: ClassPolicy(min_window=60, statistics=_LEVELS),
        QuantityClass.CLIMATE: ClassPolicy(min_window=60, statistics=_LEVELS),
        QuantityClass.NOISE: ClassPolicy(min_window=60, statistics=_NOISE),
        QuantityClass.PEOPLE_COUNT: ClassPolicy(
            min_window=300, statistics=("sum",),
            dp=DpPolicy(epsilon=0.1, daily_budget=30.0)),
        QuantityClass.PRESENCE: ClassPolicy(min_window=300, statistics=_PRESENCE),
    },
}


class PrivacyConfig(BaseModel):
    """``privacy:`` section: a preset, optionally tightened or changed per quantity class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: PresetName = "strict"
    classes: dict[QuantityClass, ClassPolicy] = Field(default_factory=dict)

    def policy_for(self, quantity: QuantityClass) -> ClassPolicy:
        """The policy in force for one class."""
        return self.classes.get(quantity) or PRESETS[self.preset][quantity]

    def problems(self) -> list[tuple[str, str]]:
        """(path, message) for overrides below the legal floors; demo is checked elsewhere."""
        out = []
        for quantity, policy in self.classes.items():
            path = f"privacy.classes.{quantity.value}"
            floor = floor_window(self.preset, quantity)
            if self.preset != "demo" and policy.min_window < floor:
                out.append((f"{path}.min_window", f"must be at least {floor:g}s for "
                            f"{quantity.value} under preset {self.preset} "
                            f"(got {policy.min_window:g}s)"))
            if quantity is not QuantityClass.PEOPLE_COUNT:
                if policy.k is not None:
                    out.append((f"{path}.k", f"k applies only to people_count, not "
                                f"{quantity.value}"))
                if policy.dp is not None:
                    out.append((f"{path}.dp", f"differential privacy applies only to "
                                f"people_count, not {quantity.value}: noise is calibrated to "
                                "a count one person changes by at most 1"))
            elif policy.dp is not None:
                out += _dp_problems(path, policy)
            elif policy.k is None or policy.k < MIN_K:
                out.append((f"{path}.k", f"counts need a k-threshold of at least {MIN_K} "
                            f"(got {policy.k}), or a dp section instead"))
            if (self.preset == "research-dp" and quantity is QuantityClass.PEOPLE_COUNT
                    and policy.dp is None):
                out.append((f"{path}.dp", "preset research-dp publishes noised counts, but "
                            "this override has no dp section; add one (epsilon, "
                            "daily_budget) or choose preset strict or crowd-safety"))
        return out

    def dp_manifest(self) -> dict[str, Any] | None:
        """The manifest's ``privacy.dp``: the noise of people counts, or None without DP."""
        dp = self.policy_for(QuantityClass.PEOPLE_COUNT).dp
        if dp is None:
            return None
        return {"mechanism": MECHANISM, "epsilon_per_window": dp.epsilon,
                "daily_budget": dp.daily_budget}


def _dp_problems(path: str, policy: ClassPolicy) -> list[tuple[str, str]]:
    """Rules of a people_count policy with dp, in plain words."""
    assert policy.dp is not None
    out = []
    if policy.k is not None:
        out.append((f"{path}.k", "use either k or dp, not both: suppressing below k looks "
                    "at the true count, so whether a value is missing would give away what "
                    "the noise hides; remove k (dp replaces it)"))
    others = [s for s in policy.statistics if s != "sum"]
    if others:
        out.append((f"{path}.statistics", f"with dp only 'sum' may leave: {', '.join(others)} "
                    "would be published without noise and give the count away"))
    if policy.dp.epsilon > policy.dp.daily_budget:
        out.append((f"{path}.dp.epsilon", f"epsilon per window ({policy.dp.epsilon:g}) is "
                    f"larger than the daily_budget ({policy.dp.daily_budget:g}), so not a "
                    "single window could be published"))
    return out


@dataclass(frozen=True)
class Released:
    """A message that passed the gate. Construct only through :class:`PrivacyGate`."""

    stream: str  # outbox sequence key: "data/<sensor>" or "events"
    topic: str  # suffix below the gateway's topic root
    body: dict[str, Any]
    _seal: object

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise PermissionError("Released messages are made only by the privacy gate")


_SEAL = object()


def is_released(item: object) -> bool:
    """True only for genuine gate output (used by the outbox to refuse anything else)."""
    return type(item) is Released and item._seal is _SEAL


def decimals(quantity: QuantityClass) -> int:
    """Decimal places every statistic of the class is rounded to before it leaves."""
    return _DECIMALS[quantity]


def _rounded(value: float, quantity: QuantityClass) -> float:
    return round(value, _DECIMALS[quantity]) if math.isfinite(value) else value


class PrivacyGate:
    """Applies the policy to closed windows and events, producing :class:`Released`."""

    def __init__(self, privacy: PrivacyConfig, gateway_id: str, *,
                 budget: DpBudget | None = None, rng: Rng | None = None) -> None:
        """Make a gate.

        Args:
            privacy: The policy.
            gateway_id: Configured gateway id, put in every message.
            budget: Epsilon ledger for classes with dp; without one their counts are always
                suppressed (``dp_budget``), never published unnoised.
            rng: Random source of the DP noise; default the OS CSPRNG (tests inject one).
        """
        self.privacy = privacy
        self.gateway_id = gateway_id
        self.budget = budget
        self.rng = rng

    def allowed(self, spec: StreamSpec) -> tuple[list[str], int | None]:
        """Statistics allowed for a stream (in publishing order) and its k."""
        policy = self.privacy.policy_for(spec.quantity)
        stats = [s for s in policy.statistics if s in STATISTICS_BY_KIND[spec.kind]
                 and (spec.statistics is None or s in spec.statistics)
                 # with DP only the noised sum of a counter leaves; an un-noised occupancy
                 # of the same people would undo the noise
                 and (policy.dp is None or (s == "sum" and spec.kind is StatKind.COUNTER))]
        return stats, (policy.k if spec.kind in COUNT_KINDS else None)

    def release_window(self, window: ClosedWindow, meta: dict[str, Any]) -> Released:
        """Gate one window: allow-list, minimum window, k-suppression or DP, rounding."""
        values: dict[str, Any] = {}
        for name, spec in window.streams.items():
            policy = self.privacy.policy_for(spec.quantity)
            if window.seconds + 1e-9 < policy.min_window:
                raise PermissionError(f"sensor {window.sensor_id}: {window.seconds:g}s window "
                                      f"is below the {policy.min_window:g}s minimum for "
                                      f"{spec.quantity.value}")
            stats = window.stats[name]
            allowed, k = self.allowed(spec)
            if not allowed:
                k = None  # nothing may leave: there is nothing to suppress either
            entry: dict[str, Any] = {"unit": spec.unit, "quantity": spec.quantity.value,
                                     "n": stats.n}
            result = stats.result()
            dp = policy.dp if spec.kind is StatKind.COUNTER else None
            for stat in allowed:
                if stat in result and dp is None:  # a DP count is filled in below, noised
                    entry[stat] = _rounded(result[stat], spec.quantity)
            if k is not None and stats.n:
                entry["k"] = k
            reason = None
            if stats.n and window.end - window.start + 1e-6 < policy.min_window:
                reason = "short_window"  # a partial window must not be finer than the policy
            elif k is not None and stats.n and result[_K_STATISTIC[spec.kind]] < k:
                reason = "below_k"
            elif dp is not None and stats.n and "sum" in allowed:
                reason = self._noised(window, name, result["sum"], dp, entry)
            if k is not None or reason or (dp is not None and stats.n):
                entry["suppressed"] = reason is not None
            if reason:
                entry.update({stat: None for stat in allowed}, suppressed_reason=reason)
            elif name in window.flags:
                entry["flags"] = window.flags[name]  # plausibility, not personal data
            values[name] = entry
        corrections = [self._correction(window, name, stats, values[name])
                       for name, stats in window.corrected.items()
                       if stats.n and not values[name].get("suppressed")]
        body = {"gateway": self.gateway_id, "sensor": window.sensor_id, **meta,
                "window": {"start": rfc3339(window.start), "end": rfc3339(window.end),
                           "seconds": window.seconds, "clock": window.clock.value,
                           "partial": window.partial},
                "coverage": round(window.coverage, 3), "errors": window.errors,
                "values": values, "corrections": corrections}
        return Released(f"data/{window.sensor_id}", f"data/{window.sensor_id}", body, _SEAL)

    def _noised(self, window: ClosedWindow, name: str, total: float, dp: DpPolicy,
                entry: dict[str, Any]) -> str | None:
        """Put the noised count into ``entry`` if the day's budget allows; else a reason.

        The epsilon is recorded on disk before the value exists, so a crash wastes budget
        rather than releasing twice. Negative noised counts are published as 0: clamping
        is post-processing of a DP output and costs no privacy.
        """
        key = f"{window.sensor_id}/{name}"
        if self.budget is None or not self.budget.spend(key, dp.epsilon, dp.daily_budget,
                                                        at=window.end):
            return "dp_budget"
        entry["sum"] = max(0, noisy_count(round(total), dp.epsilon, 1, self.rng))
        entry["dp"] = {"epsilon": dp.epsilon, "mechanism": MECHANISM}
        return None

    def _correction(self, window: ClosedWindow, name: str, stats: StreamStats,
                    raw: dict[str, Any]) -> dict[str, Any]:
        """A corrected stream: the same allowed statistics as the raw one, plus its method."""
        assert window.correction is not None
        spec = window.streams[name]
        result = stats.result()
        entry: dict[str, Any] = {"stream": name, **window.correction.describe(),
                                 "humidity": {"sensor": window.humidity_source,
                                              "stream": "relativeHumidity"},
                                 "unit": spec.unit, "n": stats.n}
        for stat in self.allowed(spec)[0]:
            if stat in raw and stat in result:
                entry[stat] = _rounded(result[stat], spec.quantity)
        return entry

    def release_event(self, kind: str, message: str, *, time: float, clock: str,
                      sensor: str | None = None,
                      details: dict[str, str | int | float | bool | None] | None = None,
                      ) -> Released:
        """Gate an operational event (faults, drops): plain words and scalars only."""
        body: dict[str, Any] = {"gateway": self.gateway_id, "time": rfc3339(time),
                                "clock": clock, "type": kind, "message": message,
                                "details": {k: v for k, v in (details or {}).items()
                                            if v is None or isinstance(v, str | int | float)}}
        if sensor is not None:
            body["sensor"] = sensor
        return Released("events", "events", body, _SEAL)


def rfc3339(epoch: float) -> str:
    """UTC timestamp like 2026-01-01T10:00:00Z (milliseconds only when not whole)."""
    stamp = dt.datetime.fromtimestamp(round(epoch, 3), tz=dt.UTC)
    text = stamp.isoformat(timespec="milliseconds" if stamp.microsecond else "seconds")
    return text.replace("+00:00", "Z")
