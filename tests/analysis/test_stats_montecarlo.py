"""The seeded Monte Carlo harness of issue 22: the statistics through the real code path.

A fake meter (tests/analysis/fake_meter.py) draws result rows -- lognormal energies times a planted ratio,
optional linear drift in time, rare one-sided slowdowns -- for 2,000 replicates of a small grid at once, each
replicate its own workload and config hash. One call of the real analysis then treats every replicate as a
user's results would be treated: rows -> blocks (repeat index) -> metrics.cell_stats -> relative_to_baseline
(paired per block on one host, Welch where every run had its own node) -> verdicts -> best_per_workload (the
configurations that cannot be told apart from the best) -> design (the repeats `joulegrid plan` sizes).

What is asserted, per scenario, against numbers computed here from the planted values:
- coverage of the nominal 95 % interval of the ratio within [93, 97.5] % (z instead of t, SD instead of SE, the
  wrong df, no log, pairing ignored: each fails this band in one scenario or another);
- the mean width of the log interval within 10 % of theory, 2 t(df) sigma_d c4 (c4 = E[s]/sigma for df);
- under linear drift, blocked order keeps >= 93 % while back-to-back order fails;
- under the null, the rate of costlier/cheaper verdicts at most alpha plus three Monte Carlo SDs;
- the power at the repeats the design sizes within +-5 points of design.power;
- the observed best set keeps the truly best configurations (>= 1 - alpha - 3 MC SD) and drops a clearly worse one.
The figures are printed (pytest -s) for docs/metrics.md.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import special
from scipy import stats as sps

from joulegrid.analysis import design as D
from joulegrid.analysis import metrics as M

from . import fake_meter as F

R = 2000  # replicates per scenario
ALPHA = 0.05
MC_SD = math.sqrt(ALPHA * (1 - ALPHA) / R)  # Monte Carlo SD of a 5 % rate


def analyse(df: pl.DataFrame, arm: str = "bf16") -> pl.DataFrame:
    """The real path from rows to verdicts: one row per replicate, the comparison of ``arm`` with fp32."""
    rel = M.relative_to_baseline(M.cell_stats(df), df, alpha=ALPHA, power=0.8)
    return rel.filter(pl.col("precision") == arm)


def coverage(res: pl.DataFrame, ratio: float) -> float:
    lo, hi = 1 + res["d_energy_lo_pct"] / 100, 1 + res["d_energy_hi_pct"] / 100
    return float(((lo <= ratio) & (ratio <= hi)).mean())


def mean_log_width(res: pl.DataFrame) -> float:
    return float(((1 + res["d_energy_hi_pct"] / 100).log() - (1 + res["d_energy_lo_pct"] / 100).log()).mean())


def c4(df: float) -> float:
    """E[s] / sigma for a sample SD with df degrees of freedom (chi distribution)."""
    return math.exp(0.5 * math.log(2 / df) + special.gammaln((df + 1) / 2) - special.gammaln(df / 2))


def theory_width(n: int, cv_a: float, cv_b: float, paired: bool) -> float:
    """Expected width of the 95 % log interval for normal log energies. Paired: 2 t(n-1) c4(n-1) sqrt(sa^2 + sb^2)
    / sqrt(n), in closed form. Welch: E[2 t(df^) se^] over the two arms' sample variances, s^2 = sigma^2 X / (n-1)
    with X ~ chi2(n-1) independent per arm, integrated on a 400 x 400 grid of chi2 quantiles."""
    sa, sb = F.sigma_of(cv_a), F.sigma_of(cv_b)
    if paired:
        return 2 * sps.t.ppf(0.975, n - 1) * c4(n - 1) * math.sqrt((sa * sa + sb * sb) / n)
    q = sps.chi2.ppf((np.arange(400) + 0.5) / 400, n - 1)
    wa = (sa * sa * q / (n - 1) / n)[:, None]
    wb = (sb * sb * q / (n - 1) / n)[None, :]
    se = np.sqrt(wa + wb)
    df = (wa + wb) ** 2 / (wa**2 / (n - 1) + wb**2 / (n - 1))
    return float(np.mean(2 * sps.t.ppf(0.975, df) * se))


FIGURES: dict[str, str] = {}


def report(name: str, text: str) -> None:
    FIGURES[name] = text
    print(f"\n[montecarlo] {name}: {text}")


# (name, n, CV of fp32, CV of bf16, planted ratio, hosts: one = paired per block, each = Welch)
COVERAGE = [
    ("paired n=3 cv=2%", 3, 0.02, 0.02, 1.3, "one"),
    ("paired n=3 cv=20%", 3, 0.20, 0.20, 0.8, "one"),
    ("paired n=5 cv=5%", 5, 0.05, 0.05, 1.1, "one"),
    ("paired n=10 cv=10%", 10, 0.10, 0.10, 0.7, "one"),
    ("paired n=5 cv=2%:20%", 5, 0.02, 0.20, 1.2, "one"),
    ("welch n=3 cv=5%", 3, 0.05, 0.05, 1.3, "each"),
    ("welch n=5 cv=20%", 5, 0.20, 0.20, 0.9, "each"),
    ("welch n=10 cv=2%", 10, 0.02, 0.02, 1.05, "each"),
    ("welch n=3 cv=2%:20%", 3, 0.02, 0.20, 1.2, "each"),
    ("welch n=10 cv=20%:2%", 10, 0.20, 0.02, 0.8, "each"),
]


@pytest.mark.parametrize("name,n,cv_a,cv_b,ratio,hosts", COVERAGE, ids=[c[0] for c in COVERAGE])
def test_coverage_and_width_of_the_95_percent_interval(name, n, cv_a, cv_b, ratio, hosts):
    rng = np.random.default_rng(sum(map(ord, name)))
    res = analyse(F.runs(rng, R, n, {"fp32": (1.0, cv_a), "bf16": (ratio, cv_b)}, hosts=hosts))
    assert res.height == R
    want = "paired" if hosts == "one" else "Welch"
    assert res["d_energy_analysis"].str.starts_with(want).all(), res["d_energy_analysis"].unique().to_list()
    cov, width = coverage(res, ratio), mean_log_width(res)
    theory = theory_width(n, cv_a, cv_b, paired=hosts == "one")
    report(name, f"coverage {cov:.1%}, mean log width {width:.4f} vs theory {theory:.4f} ({width / theory - 1:+.1%})")
    assert 0.93 <= cov <= 0.975, cov
    assert abs(width / theory - 1) <= 0.10, (width, theory)


def test_drift_blocked_order_keeps_coverage_back_to_back_order_loses_it():
    """Linear drift of 1 % per run slot (CV 3 %, n = 5): blocked repeats put it into every block alike, and the
    per-block log-ratios cancel it; repeats run back to back put it onto whichever arm ran later."""
    n, arms = 5, {"fp32": (1.0, 0.03), "bf16": (1.1, 0.03)}
    blocked = analyse(F.runs(np.random.default_rng(11), R, n, arms, order="blocked", drift=0.01))
    b2b = analyse(F.runs(np.random.default_rng(12), R, n, arms, order="back_to_back", drift=0.01))
    cb, cx = coverage(blocked, 1.1), coverage(b2b, 1.1)
    report("drift 1 %/run, n=5, cv=3%", f"blocked coverage {cb:.1%}, back-to-back coverage {cx:.1%}")
    assert cb >= 0.93, cb
    assert cx < 0.93, cx


@pytest.mark.parametrize("hosts", ["one", "each"])
def test_rare_one_sided_slowdowns_cost_power_not_validity(hosts):
    """10 % of runs 10-40 % slower (both arms alike): the interval still covers the planted ratio."""
    n, arms = 5, {"fp32": (1.0, 0.05), "bf16": (1.15, 0.05)}
    res = analyse(F.runs(np.random.default_rng(21 if hosts == "one" else 22), R, n, arms, slow_share=0.10, hosts=hosts))
    cov = coverage(res, 1.15)
    costlier = float((res["d_energy_verdict"] == "costlier").mean())
    report(f"slowdowns 10 % x +10-40 %, n=5, cv=5%, {hosts} host(s)", f"coverage {cov:.1%}, power {costlier:.1%}")
    assert 0.93 <= cov <= 0.975, cov


NULL = [
    ("paired n=3 cv=5%", 3, 0.05, "one"),
    ("welch n=5 cv=10%", 5, 0.10, "each"),
    ("paired n=10 cv=20%", 10, 0.20, "one"),
]


@pytest.mark.parametrize("name,n,cv,hosts", NULL, ids=[c[0] for c in NULL])
def test_no_difference_gives_a_verdict_at_most_alpha_of_the_time(name, n, cv, hosts):
    res = analyse(
        F.runs(
            np.random.default_rng(sum(map(ord, name)) + 1), R, n, {"fp32": (1.0, cv), "bf16": (1.0, cv)}, hosts=hosts
        )
    )
    false = float(res["d_energy_verdict"].is_in(["costlier", "cheaper"]).mean())
    nd = res.filter(pl.col("d_energy_verdict") == "no detectable difference")
    mde = nd["d_energy_mde_pct"].median()
    report(f"null {name}", f"false verdicts {false:.2%} (alpha {ALPHA:.0%}); median MDE {mde:.3g} %")
    assert false <= ALPHA + 3 * MC_SD, false
    assert nd["d_energy_mde_pct"].is_not_null().all()  # every "no detectable difference" states its MDE


def test_the_repeats_the_design_sizes_reach_the_stated_power(tmp_path):
    """`joulegrid plan`'s design from earlier rows of the same CPU model and workload (100 cells x 5 runs at
    CV 12 %), then the planted 10 % change measured with that many repeats: detected in power +-5 points (the
    design errs high on purpose: an upper limit of sigma, and whole repeats)."""
    from joulegrid import config as CFG

    cv, detect, power = 0.12, 10.0, 0.8
    # earlier rows: the noise the design pools (workload baler_ae, infer, cpu on "Fake CPU")
    pilot = F.runs(np.random.default_rng(31), 100, 5, {"fp32": (1.0, cv)}, workload_prefix="baler_ae")
    pilot = pilot.with_columns(workload=pl.lit("baler_ae"), config_hash=pl.col("config_hash"))
    results = tmp_path / "results"
    results.mkdir()
    pilot.write_parquet(results / "summary.parquet")
    config, _ = CFG.prepare(
        {
            "results": str(results),
            "grid": {
                "workloads": ["baler_ae"],
                "phases": ["infer"],
                "precisions": ["fp32", "bf16"],
                "batch_sizes": [256],
                "repeats": "auto",
            },
            "design": {"detect_pct": detect, "power": power},
        }
    )
    d = D.compute(config)
    (g,) = d.groups
    assert g.source == "earlier runs" and g.cells == 100 and g.runs == 500 and g.nu == 400
    assert g.sigma == pytest.approx(F.sigma_of(cv), rel=0.05)  # pooled over the cells
    n = d.repeats
    res = analyse(F.runs(np.random.default_rng(32), R, n, {"fp32": (1.0, cv), "bf16": (1 + detect / 100, cv)}))
    got = float((res["d_energy_verdict"] == "costlier").mean())
    predicted = float(D.power_at(n, F.sigma_of(cv), detect, ALPHA))
    report(
        "power at the designed repeats",
        f"n={n} (sigma {g.sigma:.4f}, upper limit {g.sigma_u:.4f}): detected "
        f"{got:.1%} of {R} (target {power:.0%}; noncentral t at the true sigma {predicted:.1%})",
    )
    assert abs(got - power) <= 0.05, (n, got)
    assert abs(got - predicted) <= 4 * math.sqrt(predicted * (1 - predicted) / R), (got, predicted)


def test_the_best_set_keeps_the_truly_best_and_drops_a_clearly_worse_one():
    """Four configurations (fp32 and bf16 equally cheap, int8 5 % dearer, fp16 50 % dearer), n = 5, CV 5 %:
    best_per_workload lists the configurations that cannot be told apart from the best. Both truly best ones
    stay (dropping either is at most alpha); the clearly worse one goes."""
    arms = {"fp32": (1.0, 0.05), "bf16": (1.0, 0.05), "int8": (1.05, 0.05), "fp16": (1.5, 0.05)}
    df = F.runs(np.random.default_rng(41), R, 5, arms)
    best = M.best_per_workload(M.cell_stats(df), df, alpha=ALPHA)
    listed = best.group_by("workload").agg(pl.col("precision_variant"))
    sets = [set(x) for x in listed["precision_variant"].to_list()]
    assert len(sets) == R
    lost = sum(not {"fp32", "bf16"} <= s for s in sets) / R
    kept_fp16 = sum("fp16" in s for s in sets) / R
    kept_int8 = sum("int8" in s for s in sets) / R
    report(
        "best set (n=5, cv=5%)",
        f"a truly best one dropped in {lost:.2%}, int8 (+5 %) kept in {kept_int8:.1%}, "
        f"fp16 (+50 %) kept in {kept_fp16:.2%}",
    )
    assert lost <= ALPHA + 3 * MC_SD, lost
    assert kept_fp16 <= 0.01, kept_fp16
