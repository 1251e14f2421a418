"""The group-sequential plan of `joulegrid compare` (docs/compare.md, "Reruns: a group-sequential plan").

A rerun that adds pairs and tests again at the fixed design's level raises the false alarms: testing at 3, 5,
10 and 20 pairs blocks an unchanged merge request about three times as often as α. A plan fixes, before its
first look, at most MAX_LOOKS looks (the pairs per cell at each, cumulative), α and the margin δ; each look
then tests at a nominal level that spends α over the looks.

Spending: the Lan-DeMets O'Brien-Fleming-type function of a one-sided level α at information fraction
t = n_k / n_K (the planned pairs):

    α*(t) = 2 − 2 Φ(z_{1−α/2} / √t)          (α*(1) = α)

The boundaries c_1 .. c_K of the standardised statistics Z_k (joint normal, corr(Z_i, Z_j) = √(t_i / t_j),
i ≤ j) solve P(Z_1 ≤ c_1, .., Z_{k−1} ≤ c_{k−1}, Z_k > c_k) = α*(t_k) − α*(t_{k−1}), each by brentq on
scipy's multivariate normal CDF. Each look applies its boundary to the paired t statistic through the nominal
level α_k = 1 − Φ(c_k): the look's (1 − 2 α_k) interval, t quantiles on its df, goes into the decision table
unchanged (regression if L > δ, pass if U < δ). With one look the plan is the fixed design.

Both errors are bounded at the least favourable Δ = δ, where the regression and the pass boundaries are mirror
images: P(a false regression over the looks) ≤ α and P(a false pass) ≤ α. The pass boundary is the futility
stop: a cell that crosses it stops and passes ("no regression can be reached at α"). It is non-binding: the
regression boundaries are computed as if it did not exist, so the false-regression bound holds whether or
not one stops there.

The grid: Holm's step-down over the cells at each look, each step at the nominal level of a plan of level
α / (cells not yet rejected) (the graphical Holm procedure of group-sequential trials, Maurer & Bretz 2013):
P(a merge request falsely blocked) ≤ α. The grid stops at the first look with a regression (exit 1) or with
every cell passed (exit 0); a cell that passed at an earlier look stays passed. After the last look an
undecided grid is inconclusive (exit 2) and the plan is spent: a rerun starts a fresh campaign.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

MAX_LOOKS = 3
SPENDING = "Lan-DeMets O'Brien-Fleming-type, one-sided: alpha*(t) = 2 - 2 Phi(z_(1-alpha/2) / sqrt(t))"
PLANS_DIR = "compare-plans"

PASS, REGRESSION, INCONCLUSIVE = 0, 1, 2  # compare's exit statuses
EQUIVALENT, IMPROVEMENT, NO_REGRESSION = "equivalent", "improvement", "no regression"  # compare's verdicts
REGRESSED, UNDECIDED, TOO_FEW = "regression", "inconclusive", "inconclusive: fewer than 2 pairs"
PASSES = (EQUIVALENT, IMPROVEMENT, NO_REGRESSION)


class PlanError(ValueError):
    """A plan that cannot be made or used (names the problem and the fix)."""


# ------------------------------------------------------------------ spending and boundaries
def spend(t, alpha: float) -> np.ndarray:
    """The cumulative one-sided α spent by information fraction t (0 < t <= 1)."""
    t = np.asarray(t, dtype=float)
    return 2 - 2 * sps.norm.cdf(sps.norm.isf(alpha / 2) / np.sqrt(t))


@lru_cache(maxsize=4096)
def boundaries(times: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """The critical values c_k of the standardised statistics at information fractions ``times`` (increasing,
    the last 1) for a one-sided level α (module docstring)."""
    t = np.asarray(times, dtype=float)
    cum = spend(t, alpha)
    cs: list[float] = []
    for k in range(len(t)):
        inc = float(cum[k] - (cum[k - 1] if k else 0.0))
        if k == 0:
            cs.append(float(sps.norm.isf(inc)))
            continue
        tk = t[: k + 1]
        cov = np.sqrt(np.minimum.outer(tk, tk) / np.maximum.outer(tk, tk))
        upper = np.r_[cs, np.inf]

        def crossing_first_here(c, k=k, cov=cov, upper=upper, inc=inc):
            p = sps.multivariate_normal.cdf(
                upper,
                mean=np.zeros(k + 1),
                cov=cov,
                lower_limit=np.r_[np.full(k, -np.inf), c],
                abseps=1e-4 * inc,
                releps=0,
                rng=np.random.default_rng(0),  # Genz's quasi-Monte Carlo: the same boundaries every time
            )
            return p / inc - 1

        # P(.., Z_k > c) lies between sf(c) - cum[k-1] and sf(c): the root is between these two quantiles (widened
        # by a margin that the integration error cannot cross)
        lo, hi = sps.norm.isf(cum[k]) - 0.5, sps.norm.isf(inc) + 0.5
        cs.append(float(optimize.brentq(crossing_first_here, lo, hi, xtol=1e-6)))
    return tuple(cs)


def nominal_levels(times: tuple[float, ...], alpha: float) -> np.ndarray:
    """The one-sided nominal level of each look, 1 − Φ(c_k)."""
    return sps.norm.sf(np.asarray(boundaries(tuple(float(x) for x in times), float(alpha))))


# ------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Plan:
    looks: tuple[int, ...]  # pairs per cell at each look, cumulative
    alpha: float
    threshold_pct: float
    key: str = ""  # the campaign's config hashes (key_of)
    base: str = ""
    head: str = ""
    created: str = ""
    spending: str = SPENDING

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(n / self.looks[-1] for n in self.looks)

    @property
    def delta(self) -> float:
        return math.log1p(self.threshold_pct / 100)

    def levels(self, alpha: float | None = None) -> np.ndarray:
        return nominal_levels(self.times, self.alpha if alpha is None else alpha)

    def to_json(self) -> str:
        d = asdict(self)
        d["looks"] = list(self.looks)
        d["nominal_levels"] = [float(x) for x in self.levels()]
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        d.pop("nominal_levels", None)
        return make(d.pop("looks"), **d)


def parse_looks(text: str) -> list[int]:
    """--looks: "3,6,10" (the pairs per cell at each look)."""
    try:
        looks = [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        looks = []
    if not looks:
        raise PlanError(f"--looks {text!r}: give the pairs per cell at each look, e.g. --looks 3,6,10")
    return looks


def make(looks, alpha: float, threshold_pct: float, **kw: Any) -> Plan:
    """A checked plan: 1 to MAX_LOOKS looks of increasing pairs, the first at 2 pairs or more."""
    looks = tuple(int(x) for x in looks)
    if not 1 <= len(looks) <= MAX_LOOKS:
        raise PlanError(
            f"a plan has 1 to {MAX_LOOKS} looks, not {len(looks)} ({list(looks)}). Fix: e.g. --looks 3,6,10"
        )
    if looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:], strict=False)):
        raise PlanError(
            f"looks {list(looks)}: the pairs per cell must increase from look to look and start at 2 or more "
            "(a look needs a df). Fix: e.g. --looks 3,6,10"
        )
    if not 0 < alpha < 0.5 or not threshold_pct > 0:
        raise PlanError(f"a plan needs 0 < alpha < 0.5 and a threshold above 0 (got {alpha}, {threshold_pct})")
    return Plan(looks, float(alpha), float(threshold_pct), **kw)


def key_of(config_hashes) -> str:
    """The campaign a plan belongs to: its rows' config hashes (they change with the versions and with
    versions.campaign, not with grid.repeats)."""
    text = "\n".join(sorted({str(h) for h in config_hashes if h is not None}))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def path_for(results: str | Path, key: str) -> Path:
    return Path(results) / PLANS_DIR / f"{key}.json"


def load(results: str | Path, key: str) -> Plan | None:
    p = path_for(results, key)
    if not p.is_file():
        return None
    try:
        return Plan.from_json(p.read_text())
    except (ValueError, KeyError, TypeError) as e:
        raise PlanError(f"the compare plan {p} cannot be read ({e}). Fix: restore it, or start a fresh campaign") from e


def save(plan: Plan, results: str | Path) -> Path:
    """Write the plan once; an existing plan of the campaign is never overwritten."""
    p = path_for(results, plan.key)
    p.parent.mkdir(parents=True, exist_ok=True)
    if not plan.created:
        plan = Plan(**{**asdict(plan), "created": datetime.now(UTC).isoformat(timespec="seconds")})
    with open(p, "x") as f:  # exclusive: a plan fixed once
        f.write(plan.to_json())
    return p


def suggested_looks(n_final: int, k: int = MAX_LOOKS) -> list[int]:
    """Looks spread evenly up to n_final pairs (at least 2 at the first, increasing)."""
    out: list[int] = []
    for j in range(1, k + 1):
        x = max(2, math.ceil(n_final * j / k))
        if not out or x > out[-1]:
            out.append(x)
    return out


# ------------------------------------------------------------------ the decision over looks (vectorised)
def decide_looks(n, d, sd, plan: Plan, decide) -> dict[str, np.ndarray]:
    """The plan's decision at every look taken so far, for S grids at once.

    n, d, sd: arrays (S, J, m): per grid, look (J <= len(plan.looks) taken) and cell, the pairs, mean and SD
    of the paired statistic at that look. ``decide`` is compare.decide (the decision table at a level).
    Returns per grid ``exit`` (0, 1, 2) and ``stop`` (the look that decided, else the last taken), and per
    cell (S, m): ``look`` (where its figures come from: the look it was decided at, else the grid's last),
    ``n``, ``d``, ``lo``, ``hi`` (its look's (1 − 2 α_k) interval), ``p`` (nominal one-sided p of Δ ≤ δ),
    ``level`` (α_k), ``verdict`` and ``rejected`` (a regression by the grid's Holm at its look)."""
    n, d, sd = (np.asarray(x, dtype=float) for x in (n, d, sd))
    S, J, m = n.shape
    if not 1 <= J <= len(plan.looks):
        raise PlanError(f"{J} looks taken of a plan of {len(plan.looks)}")
    alive = np.ones(S, bool)
    exit_ = np.full(S, INCONCLUSIVE)
    stop = np.full(S, J - 1)
    passed = np.zeros((S, m), bool)
    rejected = np.zeros((S, m), bool)
    out = {k: np.full((S, m), np.nan) for k in ("look", "n", "d", "lo", "hi", "p", "level")}
    verdict = np.full((S, m), "", dtype=object)
    for j in range(J):
        lev = float(plan.levels()[j])
        r = decide(n[:, j], d[:, j], sd[:, j], plan.delta, lev)
        open_ = alive[:, None] & ~passed
        for k, v in (("n", n[:, j]), ("d", d[:, j]), ("lo", r["lo"]), ("hi", r["hi"]), ("p", r["p"])):
            out[k] = np.where(open_, v, out[k])
        out["look"][open_], out["level"][open_] = j, lev
        verdict[open_] = r["verdict"][open_]
        # Holm's step-down at this look: step i at the nominal level of a plan of level alpha / (m - i)
        pp = np.where(open_ & np.isfinite(r["p"]), r["p"], 1.0)
        order = np.sort(pp, axis=1)
        count = np.zeros(S, int)
        go = alive.copy()
        for i in range(m):
            go &= order[:, i] <= plan.levels(plan.alpha / (m - i))[j]
            count += go
            if not go.any():
                break
        ranks = np.argsort(np.argsort(pp, axis=1, kind="stable"), axis=1, kind="stable")
        rejected |= open_ & (ranks < count[:, None])
        passed |= open_ & np.isin(r["verdict"], PASSES)
        blocked = alive & (count > 0)
        done = alive & ~blocked & passed.all(axis=1)
        exit_[blocked], exit_[done] = REGRESSION, PASS
        stop[blocked | done] = j
        alive &= ~(blocked | done)
    return {"exit": exit_, "stop": stop, "verdict": verdict, "rejected": rejected, **out}
