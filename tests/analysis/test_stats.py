"""analysis/stats.py: every formula against an independent computation (by hand, in closed form, or another
scipy routine than the one the code uses), and the decision table's corner cases."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import integrate
from scipy import stats as sps

from joulegrid.analysis import stats as S

A = [1.00, 1.10, 0.95, 1.05]  # energies of arm a
B = [1.30, 1.25, 1.42, 1.28, 1.35]  # arm b


def frame(a, b, *, host_b="h", site_b="s") -> pl.DataFrame:
    """Runs of two arms (k = a / b) in the columns stats.compare reads."""
    rows = [{"k": "a", "repeat": i, "site": "s", "config_hash": "c", "hostname": "h", "x": v} for i, v in enumerate(a)]
    rows += [
        {"k": "b", "repeat": i, "site": site_b, "config_hash": "c", "hostname": host_b, "x": v} for i, v in enumerate(b)
    ]
    return pl.DataFrame(rows)


PAIR = pl.DataFrame({"cmp": [0], "a_k": ["a"], "b_k": ["b"]})


def one(df, **kw) -> dict:
    return S.compare(S.usable(df), PAIR, "x", ["k"], **kw).row(0, named=True)


def test_welch_by_hand_and_as_scipy_has_it():
    r = one(frame(A, B, host_b="other"))  # two hosts: no shared blocks -> Welch
    ya, yb = np.log(A), np.log(B)
    va, vb, na, nb = ya.var(ddof=1), yb.var(ddof=1), len(A), len(B)
    se = math.sqrt(va / na + vb / nb)
    df = se**4 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))  # Welch-Satterthwaite
    d = yb.mean() - ya.mean()
    assert r["analysis"] == "Welch" and r["n_a"] == 4 and r["n_b"] == 5
    assert r["d"] == pytest.approx(d) and r["se"] == pytest.approx(se) and r["df"] == pytest.approx(df)
    t = sps.ttest_ind(yb, ya, equal_var=False)
    ci = t.confidence_interval(0.95)
    assert (r["lo"], r["hi"], r["p"]) == pytest.approx((ci.low, ci.high, t.pvalue))
    assert r["verdict"] == "costlier"  # the interval of log(b/a) lies above 0


def test_paired_per_block_by_hand_and_as_scipy_has_it():
    b = B[:4]
    r = one(frame(A, b))  # one site, configuration and host: the blocks are shared
    diff = np.log(b) - np.log(A)
    t = sps.ttest_1samp(diff, 0.0)
    ci = t.confidence_interval(0.95)
    assert r["analysis"] == "paired (4 blocks)" and r["df"] == 3 and r["n_pairs"] == 4
    assert r["d"] == pytest.approx(diff.mean()) and r["se"] == pytest.approx(diff.std(ddof=1) / 2)
    assert (r["lo"], r["hi"], r["p"]) == pytest.approx((ci.low, ci.high, t.pvalue))


def test_the_block_column_pairs_runs_where_the_rows_have_one():
    """The runner's block column, where present, decides the pairs (else the repeat index)."""
    b = B[:4]
    df = frame(A, b).with_columns(block=pl.when(pl.col("k") == "b").then(3 - pl.col("repeat")).otherwise("repeat"))
    r = one(df)
    diff = np.log(b[::-1]) - np.log(A)
    assert r["d"] == pytest.approx(diff.mean()) and r["se"] == pytest.approx(diff.std(ddof=1) / 2)


def test_runs_an_outlier_rule_excluded_are_left_out_and_counted():
    df = frame(A, B, host_b="other").with_columns(excluded=pl.col("x") > 1.4)  # one run of b
    r = one(df)
    assert r["n_b"] == 4
    assert S.excluded_runs(df.with_columns(status=pl.lit("ok"))) == 1
    assert S.excluded_runs(frame(A, B).with_columns(status=pl.lit("ok"))) is None  # no rule ran: no column


def test_one_run_has_no_interval_and_a_zero_variance_arm_breaks_nothing():
    assert one(frame(A, B[:1], host_b="other"))["verdict"] == "one run: no interval"
    # one arm constant: Welch with that arm's term zero, df = the other arm's n - 1
    r = one(frame([2.0] * 4, B, host_b="other"))
    yb = np.log(B)
    assert r["df"] == pytest.approx(len(B) - 1) and r["se"] == pytest.approx(yb.std(ddof=1) / math.sqrt(len(B)))
    # both constant: an exact Δ with a tolerance, no interval
    r = one(frame([2.0] * 3, [3.0] * 3, host_b="other"))
    assert r["analysis"] == "exact" and r["d"] == pytest.approx(math.log(1.5)) and r["lo"] == r["hi"] == r["d"]
    assert r["verdict"] == "costlier (exact)" and r["se"] is None
    r = one(frame([2.0] * 3, [2.0 * (1 + 1e-9)] * 3, host_b="other"))  # within 1 ppm
    assert r["verdict"] == "no difference (exact)"
    # the same on the linear scale (quality): Δ in the value's own units
    r = one(frame([0.5] * 3, [0.52] * 3, host_b="other"), log=False, labels=("higher", "lower"))
    assert r["d"] == pytest.approx(0.02) and r["verdict"] == "higher (exact)"


def test_different_meters_give_a_systematic_term_or_a_withheld_verdict():
    base = frame(A, B, host_b="other")
    meter = pl.when(pl.col("k") == "a")
    # measured (rapl) against a TDP estimate: no stated error -> withheld
    df = base.with_columns(
        energy_method=meter.then(pl.lit("rapl")).otherwise(pl.lit("estimate-tdp")), energy_estimated=pl.col("k") == "b"
    )
    r = one(df, systematic=True)
    assert r["verdict"].startswith("withheld: different energy meters or models (rapl vs estimate-tdp)")
    # against a calibrated model with a stated 4 % error: the interval widens by log(1.04) each side
    df = df.with_columns(model_fit_max_rel_err=pl.when(pl.col("k") == "b").then(0.04))
    r = one(df, systematic=True)
    assert r["sys"] == pytest.approx(math.log(1.04))
    assert r["verdict"] == "costlier"  # lo - sys is still above 0 for these arms
    plain = one(base)
    assert r["mde"] == pytest.approx(plain["mde"] + math.log(1.04))
    # the same meter, same host: nothing added
    assert one(frame(A, B[:4]).with_columns(energy_method=pl.lit("rapl")), systematic=True)["sys"] is None


def _power_by_integration(lam: float, df: float, alpha: float) -> float:
    """P(|Z + lam| / sqrt(X/df) > t_crit), Z ~ N(0,1), X ~ chi2(df): the noncentral t's power integrated over X,
    without scipy's nct."""
    tc = sps.t.ppf(1 - alpha / 2, df)

    def f(x):
        s = tc * math.sqrt(x / df)
        return (sps.norm.sf(s - lam) + sps.norm.cdf(-s - lam)) * sps.chi2.pdf(x, df)

    return integrate.quad(f, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("df", [2, 4, 9.5, 30])
def test_the_minimum_detectable_effect_reaches_its_power(df):
    lam = float(S.noncentrality([df], 0.05, 0.8)[0])
    assert _power_by_integration(lam, df, 0.05) == pytest.approx(0.8, abs=1e-6)
    se = 0.03
    assert float(S.mde_of(se, [df], 0.05, 0.8)[0]) == pytest.approx(lam * se)


def test_the_mde_tends_to_the_normal_formula_and_is_about_1_4_half_widths():
    lam = float(S.noncentrality([1e6], 0.05, 0.8)[0])
    assert lam == pytest.approx(sps.norm.ppf(0.975) + sps.norm.ppf(0.8), rel=1e-4)  # 2.80
    assert lam / sps.norm.ppf(0.975) == pytest.approx(1.43, abs=0.01)  # the recipe: MDE ~ 1.4 half-widths


def test_holm_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert np.allclose(S.holm(p)[:4], [0.03, 0.06, 0.06, 0.02]) and np.isnan(S.holm(p)[4])
    assert list(S.holm([0.9, 0.8])) == [1.0, 1.0]


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005*4/1, 0.01*4/2, 0.03*4/3, 0.04*4/4 = 0.02, 0.02, 0.04, 0.04 (running min from the top)
    assert np.allclose(S.bh(p), [0.02, 0.04, 0.04, 0.02])


@pytest.mark.parametrize(
    "value,err,text",
    [
        (0.279008, 0.0123261, "0.279 ± 0.012"),  # 123: two digits
        (12.2135, 0.03215, "12.214 ± 0.032"),
        (12.2135, 0.06515, "12.21 ± 0.07"),  # 651: one digit
        (0.0704, 0.116, "0.07 ± 0.12"),  # docs/studies.md's fp32 figure
        (1.2345, 0.0996, "1.23 ± 0.10"),  # 996: up to 1000, two digits
        (10.0, 0.354, "10.00 ± 0.35"),  # the edges of the rule
        (10.0, 0.355, "10.0 ± 0.4"),
        (1234.5, 56.7, "1230 ± 60"),
        (-0.5, 0.2, "−0.50 ± 0.20"),
        (3.0, None, "3"),
    ],
)
def test_pdg_rounding(value, err, text):
    assert S.fmt_pm(value, err) == text


def test_pdg_rounding_of_intervals():
    assert S.fmt_interval(-40.3, -45.1, -34.9) == "−40 [−45, −35]"  # near-symmetric: the average, 5.3 -> one digit
    assert S.fmt_interval(10.0, 9.8, 13.0) == "+10.00 [+9.80, +13.00]"  # asymmetric: the narrower, 0.2 -> two digits
    assert S.fmt_interval(1.037, 0.98, 1.098, signed=False) == "1.04 [0.98, 1.10]"
    assert S.fmt_interval(-18.5, None, None) == "−18.5"  # no interval: 3 significant digits
    assert S.fmt_unc(0.0996) == "0.10" and S.fmt_unc(3.4) == "3.4" and S.fmt_unc(None) == ""


def test_single_runs_need_no_scipy_stats_and_intervals_match_scipy():
    """scipy.stats is imported at its first use (its import costs ~1 s of CPU): the t factors of single runs are
    nan without it, and with two or more runs they are scipy's."""
    import subprocess
    import sys

    from conftest import subprocess_env

    code = (
        "import sys\n"
        "from joulegrid.analysis import stats\n"
        "print(stats.t95_of_n([1, 0, float('nan')]).tolist(), stats.t_sf([1.0], [float('nan')]).tolist(),"
        " stats.t_quantile([], 0.05).tolist(), 'scipy.stats' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert proc.stdout.strip() == "[nan, nan, nan] [nan] [] False", proc.stdout + proc.stderr
    assert S.t95_of_n([2, 5, 1]) == pytest.approx([sps.t.ppf(0.975, 1), sps.t.ppf(0.975, 4), np.nan], nan_ok=True)
    assert S.t_sf([1.5], [3.0]) == pytest.approx(sps.t.sf(1.5, 3.0))
