"""Differential privacy for released counts: the geometric mechanism and a per-day budget.

Mechanism
    :func:`noisy_count` adds two-sided geometric (discrete Laplace) noise to an integer count:
    ``P(noise = k) = (1 - q) / (1 + q) * q**|k|`` with ``q = exp(-epsilon / sensitivity)``,
    which is pure epsilon-DP for a count one contributor changes by at most ``sensitivity``.
    The noise is drawn as the difference of two independent geometric variables (number of
    successes before the first failure, success probability ``q``, i.e. ``p = 1 - q``).

Exact sampling
    No floating-point arithmetic touches the probabilities. ``epsilon`` (a binary float) is an
    exact rational, and each ``Bernoulli(exp(-gamma))`` trial is sampled exactly from uniform
    integers with the algorithm of Canonne, Kamath & Steinke (2020, "The Discrete Gaussian
    for Differential Privacy", Algorithm 1). So the output distribution is exactly the
    discrete Laplace one; the floating-point "snapping" weaknesses of textbook continuous
    Laplace samplers (Mironov 2012) do not arise. Expected cost: about ``2 / (1 - q)``
    Bernoulli trials, i.e. ~``2 * sensitivity / epsilon`` (20 for epsilon 0.1). Run time grows
    with the size of the noise, not with the count, and is not observable by MQTT consumers.

Randomness
    The default source is :class:`secrets.SystemRandom` (the OS CSPRNG). Tests inject a seeded
    :class:`random.Random`; only ``randrange(n)`` is used.

Budget
    :class:`DpBudget` implements sequential composition: every released window of a stream
    spends its epsilon, and the sum per stream per UTC day may not exceed the daily budget.
    The ledger lives in ``<state_dir>/dp_budget.json`` (atomic write: temp file, fsync,
    rename, directory fsync) and is written *before* a value is released, so a crash can
    waste budget but never hand it out twice. A corrupt or unreadable ledger is never taken
    as "nothing spent": the day is treated as exhausted (every release refused) and
    :attr:`DpBudget.problem` says why; the next UTC day starts a fresh, valid ledger.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Protocol

log = logging.getLogger("edgeagent.dp")

MECHANISM = "geometric"
BUDGET_FILE = "dp_budget.json"
#: Slack for float sums of epsilons (288 x 0.1 must fit a budget of 28.8).
_TOLERANCE = 1e-9


class Rng(Protocol):
    """The part of :class:`random.Random` the sampler uses."""

    def randrange(self, stop: int, /) -> int:
        """A uniform integer in ``[0, stop)``."""
        ...


_SYSTEM_RNG = secrets.SystemRandom()


def _bernoulli(p: Fraction, rng: Rng) -> bool:
    """Exact Bernoulli(p) for a rational 0 <= p <= 1."""
    return rng.randrange(p.denominator) < p.numerator


def _bernoulli_exp(gamma: Fraction, rng: Rng) -> bool:
    """Exact Bernoulli(exp(-gamma)) for a rational gamma >= 0 (CKS20, Algorithm 1)."""
    while gamma > 1:
        if not _bernoulli_exp(Fraction(1), rng):
            return False
        gamma -= 1
    k = 1
    while _bernoulli(gamma / k, rng):
        k += 1
    return k % 2 == 1


def _geometric(gamma: Fraction, rng: Rng) -> int:
    """Successes before the first failure, success probability exp(-gamma)."""
    count = 0
    while _bernoulli_exp(gamma, rng):
        count += 1
    return count


def geometric_noise(epsilon: float, sensitivity: int = 1, rng: Rng | None = None) -> int:
    """One draw of two-sided geometric noise, ``P(k)`` proportional to ``exp(-eps*|k|/sens)``.

    Args:
        epsilon: Privacy parameter per release, > 0.
        sensitivity: Largest change one contributor can make to the count (L1), >= 1.
        rng: Random source; default the operating system's CSPRNG.

    Returns:
        The integer noise.

    Raises:
        ValueError: For a non-positive or non-finite epsilon or a sensitivity below 1.
    """
    if not (isinstance(epsilon, int | float) and 0 < epsilon < float("inf")):
        raise ValueError(f"epsilon must be a positive finite number, got {epsilon!r}")
    if not isinstance(sensitivity, int) or sensitivity < 1:
        raise ValueError(f"sensitivity must be a positive integer, got {sensitivity!r}")
    source = rng or _SYSTEM_RNG
    gamma = Fraction(epsilon) / sensitivity
    return _geometric(gamma, source) - _geometric(gamma, source)


def noisy_count(true_count: int, epsilon: float, sensitivity: int = 1,
                rng: Rng | None = None) -> int:
    """The count plus two-sided geometric noise (pure epsilon-DP); may be negative.

    Clamping to 0 is post-processing and left to the caller (the privacy gate does it).

    Args:
        true_count: The exact count.
        epsilon: Privacy parameter of this release, > 0.
        sensitivity: Largest change one contributor can make to the count, >= 1.
        rng: Random source; default the operating system's CSPRNG.

    Returns:
        ``true_count`` + noise.
    """
    return int(true_count) + geometric_noise(epsilon, sensitivity, rng)


class DpBudget:
    """Epsilon spent per stream per UTC day, persisted in ``<state_dir>/dp_budget.json``.

    The file is read on first use, not on construction, so an agent without DP classes never
    touches it. The day of a release is the UTC date of the time passed to :meth:`spend`
    (the gate passes the window end) or of ``clock()``. The ledger's day never moves back:
    a wall clock that jumps to an earlier date keeps charging the latest day seen.
    """

    def __init__(self, state_dir: Path | str, *, clock: Callable[[], float] = time.time
                 ) -> None:
        self.path = Path(state_dir) / BUDGET_FILE
        self.clock = clock
        #: Why releases are refused although the budget would allow them (corrupt ledger,
        #: failed write); None when all is well.
        self.problem: str | None = None
        self._loaded = False
        self._day: str | None = None
        self._spent: dict[str, float] = {}
        self._blocked = False  # the whole day is refused (the ledger was corrupt)

    # -- public -------------------------------------------------------------------------
    def spent(self, stream: str, at: float | None = None) -> float:
        """Epsilon already spent today by one stream (inf when the day is blocked)."""
        self._roll(self._day_of(at))
        return float("inf") if self._blocked else self._spent.get(stream, 0.0)

    def remaining(self, stream: str, daily_budget: float, at: float | None = None) -> float:
        """Epsilon still available today for one stream (never below 0)."""
        return max(0.0, daily_budget - self.spent(stream, at))

    def spend(self, stream: str, epsilon: float, daily_budget: float,
              at: float | None = None) -> bool:
        """Record one release of ``epsilon`` if the day's budget allows it.

        Args:
            stream: Stream key, e.g. ``"<sensor>/<stream>"``.
            epsilon: Epsilon of this release.
            daily_budget: Most epsilon the stream may spend per UTC day.
            at: Epoch seconds that select the UTC day; default ``clock()``.

        Returns:
            True when the release may go ahead (the spend is on disk); False when it would
            exceed the budget, the ledger is corrupt, or it could not be written.
        """
        self._roll(self._day_of(at))
        if self._blocked:
            return False
        total = self._spent.get(stream, 0.0) + epsilon
        if total > daily_budget + _TOLERANCE:
            return False
        previous = dict(self._spent)
        self._spent[stream] = total
        try:
            self._write()
        except OSError as exc:
            self._spent = previous
            self.problem = f"cannot write {self.path}: {exc}; DP releases are refused"
            log.error("%s", self.problem)
            return False
        self.problem = None  # a write that failed before works again
        return True

    # -- internals ----------------------------------------------------------------------
    def _day_of(self, at: float | None) -> str:
        stamp = self.clock() if at is None else at
        return dt.datetime.fromtimestamp(stamp, tz=dt.UTC).date().isoformat()

    def _roll(self, day: str) -> None:
        if not self._loaded:
            self._load(day)
        if self._day is None or day > self._day:
            self._day, self._spent, self._blocked = day, {}, False
            with contextlib.suppress(OSError):
                self._write()  # a failed write surfaces on the next spend
            self.problem = None

    def _load(self, day: str) -> None:
        self._loaded = True
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            self._corrupt(day, f"cannot read {self.path}: {exc}")
            return
        try:
            doc = json.loads(text)
            stored_day = doc["day"]
            dt.date.fromisoformat(stored_day)
            spent = {str(k): float(v) for k, v in doc["spent"].items()}
            if any(not (v >= 0 and v < float("inf")) for v in spent.values()):
                raise ValueError("negative or non-finite epsilon")
            blocked = doc.get("blocked", False)
            if not isinstance(blocked, bool):
                raise ValueError("blocked is not a boolean")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._corrupt(day, f"{self.path} is corrupt ({exc})")
            return
        self._day, self._spent, self._blocked = stored_day, spent, blocked

    def _corrupt(self, day: str, why: str) -> None:
        """Refuse every release for the rest of ``day``; keep the bad file for inspection."""
        self.problem = (f"{why}: the privacy budget spent today is unknown, so no DP value "
                        f"is released until the next UTC day (after {day})")
        log.error("%s", self.problem)
        with contextlib.suppress(OSError):
            os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
        self._day, self._spent, self._blocked = day, {}, True
        with contextlib.suppress(OSError):
            self._write()  # a valid "blocked" ledger, so a restart today refuses too

    def _write(self) -> None:
        doc = {"version": 1, "day": self._day, "blocked": self._blocked,
               "spent": dict(sorted(self._spent.items()))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dirfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)

