"""Intervals, verdicts and multiple comparisons for every Δ the report prints (pure polars + scipy.stats; no torch).

Every formula is in docs/metrics.md, "Intervals and verdicts". The unit of replication is one measured
run; batches and meter samples inside a window are never counted as replicates.

- ``usable``           the runs that enter the statistics: ok runs minus those an outlier rule excluded
                       (an optional boolean ``excluded`` column), each with its block (the optional ``block``
                       column, else its ``repeat`` index: block k = every cell's repeat k).
- ``compare``          one comparison per row of a pairs frame (arm a = the reference, arm b = the other):
                       on the log scale (ratios) or the linear one (quality). The analysis is fixed by the
                       design, never by the data: two arms of the same site, config hash and single host share
                       blocks and are compared per block (one log-ratio per block, df = blocks - 1); any
                       other pair is unpaired (Welch). Constant arms get an exact Δ with a tolerance; arms
                       measured with different meters or energy models carry a systematic term or a withheld
                       verdict. Each comparison states its minimum detectable effect (noncentral t).
- ``holm``, ``bh``     family-wise (Holm 1979) and false-discovery (Benjamini-Hochberg, scipy) adjustment.
- ``best_set``         every configuration that cannot be told apart from the observed best: one-sided tests
                       against it, Holm-adjusted (overlapping intervals are not a test).
- ``pdg``, ``fmt_pm``, ``fmt_interval``   the PDG rounding of an uncertainty and its value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import polars as pl


class _ScipyStats:
    """scipy.stats, imported at its first use: its import takes ~1 s of CPU (it builds its distributions'
    docstrings), and a report, summary or plan of single runs computes no interval (docs/benchmarks.md)."""

    def __getattr__(self, name: str):
        from scipy import stats

        return getattr(stats, name)


sps = _ScipyStats()

# Optional columns of the rows (the runner writes them when it runs blocked repeats and an outlier rule):
# read through these names, and only where the rows have them.
BLOCK = "block"
EXCLUDED = "excluded"
# Two values "do not vary" when they differ by at most this fraction of their size (1 ppm): an exact Δ
# with this tolerance replaces the interval (peak memory, the quality of a seeded reference model).
EXACT_RTOL = 1e-6
EXACT_ATOL = 1e-12

COSTLIER, CHEAPER, NO_DIFF, ONE_RUN = "costlier", "cheaper", "no detectable difference", "one run: no interval"


# ------------------------------------------------------------------ formulas (numpy, vectorised)
def welch_se_df(va, na, vb, nb) -> tuple[np.ndarray, np.ndarray]:
    """Standard error of mean(b) - mean(a) and its Welch-Satterthwaite degrees of freedom:
    se = sqrt(va/na + vb/nb), df = se^4 / ((va/na)^2/(na-1) + (vb/nb)^2/(nb-1)). A zero-variance arm adds
    nothing (df = the other arm's n - 1); both zero: se 0, df nan."""
    va, na, vb, nb = (np.asarray(x, dtype=float) for x in (va, na, vb, nb))
    wa, wb = va / na, vb / nb
    se2 = wa + wb
    with np.errstate(divide="ignore", invalid="ignore"):
        den = np.where(wa > 0, wa**2 / (na - 1), 0.0) + np.where(wb > 0, wb**2 / (nb - 1), 0.0)
        df = np.where(den > 0, se2**2 / den, np.nan)
    return np.sqrt(se2), df


def t_quantile(df, alpha: float) -> np.ndarray:
    """t.ppf(1 - alpha/2, df): the two-sided (1 - alpha) interval's factor (nan where df is nan)."""
    df = np.asarray(df, dtype=float)
    if not np.isfinite(df).any():  # no interval to compute: scipy.stats is not needed
        return np.full(df.shape, np.nan)
    return sps.t.ppf(1 - alpha / 2, df)


def t_sf(x, df) -> np.ndarray:
    """t.sf(x, df), the upper tail (nan where df is nan; scipy.stats is imported only for a finite df)."""
    x, df = np.asarray(x, dtype=float), np.asarray(df, dtype=float)
    if not np.isfinite(df).any():
        return np.full(np.broadcast(x, df).shape, np.nan)
    return sps.t.sf(x, df)


def t95_of_n(n) -> np.ndarray:
    """The 95 % interval's t factor of a mean of n values, t.ppf(0.975, n - 1); nan where n < 2."""
    n = np.asarray(n, dtype=float)
    return t_quantile(np.where(n >= 2, n - 1, np.nan), 0.05)


def power_two_sided(lam, df, alpha: float) -> np.ndarray:
    """Power of the two-sided t-test at level alpha when the true effect is lam standard errors:
    P(|T| > t_crit) with T ~ noncentral t(df, lam). (scipy's nct returns nan far in its tails, where the
    probability is 0 or 1: read from the other tail, else as the limit.)"""
    lam, df = np.asarray(lam, dtype=float), np.asarray(df, dtype=float)
    tc = t_quantile(df, alpha)
    with np.errstate(invalid="ignore"):
        up = sps.nct.sf(tc, df, lam)
        up = np.where(np.isnan(up), 1 - sps.nct.cdf(tc, df, lam), up)
        up = np.where(np.isnan(up), np.where(lam > tc, 1.0, 0.0), up)
        down = sps.nct.cdf(-tc, df, lam)
        down = np.where(np.isnan(down), np.where(-lam < -tc, 1.0, 0.0), down)
    return np.clip(up + down, 0.0, 1.0)


def noncentrality(df, alpha: float, power: float) -> np.ndarray:
    """The effect, in standard errors, that the two-sided t-test at level alpha detects with the given power:
    lam >= 0 with P(|T| > t_crit) = power, T ~ nct(df, lam). Newton's method from the normal-theory start
    t_crit + t.ppf(power), bisection where that did not converge (the power rises with lam). nan where df is not
    positive."""
    df = np.atleast_1d(np.asarray(df, dtype=float))
    out = np.full(df.shape, np.nan)
    ok = np.isfinite(df) & (df > 0)
    if not ok.any():
        return out
    # one solve per distinct df: Welch df are continuous, rounded here to 3 significant digits (the effect moves by
    # less than 1e-4 of itself; integer df up to 999 stay exact)
    key = np.array([float(f"{x:.3g}") for x in df[ok]])
    u, inv = np.unique(key, return_inverse=True)
    lam = t_quantile(u, alpha) + sps.t.ppf(power, u)
    for _ in range(8):
        f = power_two_sided(lam, u, alpha) - power
        h = 1e-5 * np.maximum(1.0, lam)
        slope = (power_two_sided(lam + h, u, alpha) - power_two_sided(lam - h, u, alpha)) / (2 * h)
        good = np.isfinite(slope) & (slope > 1e-12)
        lam = np.where(good, np.clip(lam - f / np.where(good, slope, 1.0), 1e-9, None), lam)
    bad = ~(np.abs(power_two_sided(lam, u, alpha) - power) < 1e-9)
    if bad.any():  # bisection on [0, hi], hi doubled until its power reaches the target
        d = u[bad]
        lo, hi = np.zeros(d.shape), np.maximum(2 * (t_quantile(d, alpha) + 2), 10.0)
        for _ in range(40):
            short = power_two_sided(hi, d, alpha) < power
            if not short.any():
                break
            hi = np.where(short, 2 * hi, hi)
        for _ in range(80):
            mid = (lo + hi) / 2
            above = power_two_sided(mid, d, alpha) >= power
            lo, hi = np.where(above, lo, mid), np.where(above, mid, hi)
        lam[bad] = (lo + hi) / 2
    out[ok] = lam[inv]
    return out


def mde_of(se, df, alpha: float, power: float) -> np.ndarray:
    """The minimum detectable effect of a comparison with standard error se and df degrees of freedom: the true
    |Δ| (same scale as se) that its two-sided test at alpha detects with the given power, se x noncentrality."""
    return np.asarray(se, dtype=float) * noncentrality(df, alpha, power)


def holm(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): sorted ascending, p_(i) x (m - i + 1), made monotone,
    capped at 1; reject where adjusted p <= alpha. nan (no test) stays nan and does not count in m."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(p[idx], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adj
    return out


def bh(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values; scipy.stats.false_discovery_control), nan kept."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = sps.false_discovery_control(p[ok], method="bh")
    return out


# ------------------------------------------------------------------ the runs
def usable(runs: pl.DataFrame) -> pl.DataFrame:
    """The (already ok) runs that enter the statistics, with their block ``_block``: runs an outlier rule
    excluded (``excluded`` true) are left out; the block is the ``block`` column where the rows have one,
    else the repeat index (block k = every cell's repeat k)."""
    import polars as pl

    if EXCLUDED in runs.columns:
        runs = runs.filter(~pl.col(EXCLUDED).fill_null(False))
    block = pl.coalesce(pl.col(BLOCK), pl.col("repeat")) if BLOCK in runs.columns else pl.col("repeat")
    return runs.with_columns(_block=block.cast(pl.Int64))


def excluded_runs(df: pl.DataFrame) -> int | None:
    """How many ok runs an outlier rule excluded; None when the rows carry no such rule (no column)."""
    import polars as pl

    if EXCLUDED not in df.columns:
        return None
    return df.filter((pl.col("status") == "ok") & pl.col(EXCLUDED).fill_null(False)).height


def _first(c: str) -> pl.Expr:
    import polars as pl

    return pl.col(c).drop_nulls().first()


def _uniq(c: str) -> pl.Expr:
    import polars as pl

    return pl.col(c).drop_nulls().cast(pl.String).unique().sort().str.join("; ")


# ------------------------------------------------------------------ comparisons
def compare(
    runs: pl.DataFrame,
    pairs: pl.DataFrame,
    value: str,
    keys: Sequence[str],
    *,
    log: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    labels: tuple[str, str] = (COSTLIER, CHEAPER),
    systematic: bool = False,
    one_sided: bool = False,
) -> pl.DataFrame:
    """One row per comparison of ``pairs`` (column ``cmp`` and, per key k of ``keys``, ``a_k`` and ``b_k``):
    Δ = b - a of ``value`` per run (of log(value) with log=True: the log of the ratio of geometric means).

    ``runs``: the output of ``usable`` (with ``_block``). Returned columns: ``cmp``, ``n_a``, ``n_b``,
    ``n_pairs``, ``analysis`` (paired / Welch / exact / one run), ``d``, ``se``, ``df``, ``lo``, ``hi`` (the
    two-sided 1 - alpha interval of Δ), ``p`` (two-sided; one-sided for b > a with one_sided), ``mde`` (the
    |Δ| detectable with ``power`` at alpha, systematic term included), ``sys`` (the systematic term added to
    each side of the interval, null if none), ``verdict`` (labels[0] if lo > 0, labels[1] if hi < 0, "no
    detectable difference", "one run: no interval" or "withheld: <why>") and ``wa``/``wb`` (each arm's
    variance of its mean; Welch only). ``systematic``: the value is an energy, so arms measured with
    different meters or energy models get a systematic term (docs/metrics.md)."""
    import polars as pl

    keys = list(keys)
    a = pairs.select("cmp", *[pl.col(f"a_{k}").alias(k) for k in keys]).with_columns(side=pl.lit("a"))
    b = pairs.select("cmp", *[pl.col(f"b_{k}").alias(k) for k in keys]).with_columns(side=pl.lit("b"))
    arms = pl.concat([a, b])
    y = pl.col(value).log() if log else pl.col(value)
    keep = pl.col(value).is_not_null() & (pl.col(value) > 0 if log else pl.col(value).is_not_nan())
    extra = (
        "site",
        "config_hash",
        "device",
        "hostname",
        "cpu_model",
        "gpu_model",
        "energy_method",
        "energy_estimated",
        "model_fit_max_rel_err",
    )
    opt = [c for c in extra if c in runs.columns and c not in keys]
    r = runs.filter(keep).select(*keys, "_block", *opt, _y=y, _v=pl.col(value).cast(pl.Float64))
    long = arms.join(r, on=keys, how="inner", nulls_equal=True)
    hw = (
        pl.when(pl.col("device") == "cuda").then(pl.col("gpu_model")).otherwise(pl.col("cpu_model"))
        if {"cpu_model", "gpu_model", "device"} <= set(runs.columns)
        else pl.lit(None, pl.String)
    )
    long = long.with_columns(_hw=hw)
    est = pl.col("energy_estimated").fill_null(False) if "energy_estimated" in long.columns else pl.lit(False)
    rel = pl.col("model_fit_max_rel_err") if "model_fit_max_rel_err" in long.columns else pl.lit(None, pl.Float64)
    per_arm = long.group_by("cmp", "side").agg(
        n=pl.len(),
        m=pl.col("_y").mean(),
        v=pl.col("_y").var(),
        vmin=pl.col("_v").min(),
        vmax=pl.col("_v").max(),
        vmean=pl.col("_v").mean(),
        hosts=pl.col("hostname").n_unique() if "hostname" in long.columns else pl.lit(1, pl.UInt32),
        host=_first("hostname") if "hostname" in long.columns else pl.lit(None, pl.String),
        site=_first("site") if "site" in long.columns else pl.lit(None, pl.String),
        chash=_first("config_hash") if "config_hash" in long.columns else pl.lit(None, pl.String),
        hw=_uniq("_hw"),
        method=_uniq("energy_method") if "energy_method" in long.columns else pl.lit("", pl.String),
        est=est.any(),
        # a calibrated model's stated error; null if any estimated run of the arm has none (a TDP guess)
        sys_rel=pl.when(~est.any())
        .then(pl.lit(0.0))
        .when(rel.filter(est).is_null().any())
        .then(None)
        .otherwise(rel.filter(est).max()),
    )
    blocks = long.group_by("cmp", "side", "_block").agg(_y=pl.col("_y").mean())
    paired = (
        blocks.filter(pl.col("side") == "a")
        .join(blocks.filter(pl.col("side") == "b").select("cmp", "_block", _yb="_y"), on=["cmp", "_block"])
        .group_by("cmp")
        .agg(n_pairs=pl.len(), mr=(pl.col("_yb") - pl.col("_y")).mean(), vr=(pl.col("_yb") - pl.col("_y")).var())
    )
    wide = (
        pairs.select("cmp")
        .join(per_arm.filter(pl.col("side") == "a").drop("side"), on="cmp", how="left")
        .join(per_arm.filter(pl.col("side") == "b").drop("side"), on="cmp", how="left", suffix="_b")
        .join(paired, on="cmp", how="left")
    )
    return _finish(wide, log=log, alpha=alpha, power=power, labels=labels, systematic=systematic, one_sided=one_sided)


def as_array(df: pl.DataFrame, c: str, fill=np.nan) -> np.ndarray:
    import polars as pl

    return df[c].cast(pl.Float64).fill_null(fill).to_numpy().astype(float)


def _finish(w: pl.DataFrame, *, log, alpha, power, labels, systematic, one_sided) -> pl.DataFrame:
    import polars as pl

    na, nb = as_array(w, "n", 0), as_array(w, "n_b", 0)
    ma, mb, va, vb = as_array(w, "m"), as_array(w, "m_b"), as_array(w, "v"), as_array(w, "v_b")
    npairs, mr, vr = as_array(w, "n_pairs", 0), as_array(w, "mr"), as_array(w, "vr")

    def same(c: str) -> np.ndarray:
        return (w[c] == w[f"{c}_b"]).fill_null(False).to_numpy().astype(bool)

    single = (w["hosts"].fill_null(0) == 1).to_numpy() & (w["hosts_b"].fill_null(0) == 1).to_numpy()
    # the design: the arms share blocks (same site, configuration and one and the same host)
    blocked = same("site") & same("chash") & single & same("host")
    use_pairs = blocked & (npairs >= 2)
    none = (na == 0) | (nb == 0)
    one = ~none & ~use_pairs & ((na < 2) | (nb < 2))
    # constant arms (an exact quantity): every run within EXACT_RTOL of the arm's mean
    vmean_a, vmean_b = as_array(w, "vmean"), as_array(w, "vmean_b")
    const_a = (as_array(w, "vmax", 0) - as_array(w, "vmin", 0)) <= EXACT_RTOL * np.abs(
        np.nan_to_num(vmean_a)
    ) + EXACT_ATOL
    const_b = (as_array(w, "vmax_b", 0) - as_array(w, "vmin_b", 0)) <= EXACT_RTOL * np.abs(
        np.nan_to_num(vmean_b)
    ) + EXACT_ATOL
    with np.errstate(invalid="ignore", divide="ignore"):
        se_w, df_w = welch_se_df(np.where(const_a, 0.0, va), na, np.where(const_b, 0.0, vb), nb)
        d = np.where(use_pairs, mr, mb - ma)
        se = np.where(use_pairs, np.sqrt(vr / npairs), se_w)
        df = np.where(use_pairs, npairs - 1, df_w)
        # exact: both arms constant, or a Δ that does not vary (every block's log-ratio the same), within 1 ppm
        scale = np.maximum(np.abs(np.nan_to_num(vmean_a)), np.abs(np.nan_to_num(vmean_b)))
        still = se <= (np.log1p(EXACT_RTOL) if log else EXACT_RTOL * scale + EXACT_ATOL)
        exact = ~none & ~one & ((const_a & const_b & (na >= 2) & (nb >= 2)) | still)
        # the Δ of the values themselves where every run of an arm is the same
        d = np.where(exact & const_a & const_b, np.log(vmean_b / vmean_a) if log else vmean_b - vmean_a, d)
        se = np.where(exact | one | none, np.nan, se)
        df = np.where(exact | one | none, np.nan, df)
        tq = t_quantile(df, alpha)
        lo = np.where(exact, d, d - tq * se)
        hi = np.where(exact, d, d + tq * se)
        tstat = d / se
        p = t_sf(tstat, df) if one_sided else 2 * t_sf(np.abs(tstat), df)
        tol = np.log1p(EXACT_RTOL) + 0 * d if log else EXACT_RTOL * scale + EXACT_ATOL
        differs = (d > tol) if one_sided else (np.abs(d) > tol)
        p = np.where(exact, np.where(differs, 0.0, 1.0), p)
        mde = mde_of(se, df, alpha, power) if len(df) else df
    # the systematic term: different meters or energy models in the two arms
    sys = np.zeros_like(d)
    withheld: list[str | None] = [None] * len(d)
    if systematic and len(d):
        est_a, est_b = w["est"].fill_null(False).to_numpy(), w["est_b"].fill_null(False).to_numpy()
        m_a, m_b = w["method"].fill_null("").to_list(), w["method_b"].fill_null("").to_list()
        rel_a, rel_b = w["sys_rel"].to_list(), w["sys_rel_b"].to_list()
        diff_meter = np.array([x != y for x, y in zip(m_a, m_b, strict=True)], dtype=bool)
        two_models = (est_a | est_b) & ~(same("site") & same("hw"))
        for i in np.flatnonzero((diff_meter | two_models) & ~none):
            if rel_a[i] is None or rel_b[i] is None or (diff_meter[i] and not (est_a[i] or est_b[i])):
                what = (
                    f"{m_a[i] or '?'} vs {m_b[i] or '?'}" if diff_meter[i] else "estimates at two sites or CPU models"
                )
                withheld[i] = f"withheld: different energy meters or models ({what}), no stated error"
            else:
                sys[i] = math.log1p(rel_a[i]) + math.log1p(rel_b[i])
    lo_v, hi_v = lo - sys, hi + sys
    verdict = np.where(lo_v > 0, labels[0], np.where(hi_v < 0, labels[1], NO_DIFF)).astype(object)
    verdict = np.array([f"{v} (exact)" if e else v for v, e in zip(verdict, exact, strict=True)], dtype=object)
    verdict = np.where(exact & ~differs, "no difference (exact)", verdict)
    verdict = np.where(one, ONE_RUN, verdict)
    held = np.array([x is not None for x in withheld], dtype=bool) & ~one
    verdict = np.where(held, np.array(withheld, dtype=object), verdict)
    verdict = np.where(none | np.isnan(d), None, verdict)
    analysis = [
        None
        if n_
        else "one run"
        if o
        else "exact"
        if e
        else f"paired ({int(k)} blocks)"
        if u
        else "Welch (blocks missing)"
        if b
        else "Welch"
        for n_, o, e, u, b, k in zip(none, one, exact, use_pairs, blocked, npairs, strict=True)
    ]
    mde = mde + sys
    none_or_paired = use_pairs | one | exact | none
    return pl.DataFrame({"cmp": w["cmp"]}).with_columns(
        n_a=pl.Series(na.astype(np.int64)),
        n_b=pl.Series(nb.astype(np.int64)),
        n_pairs=pl.Series(np.where(use_pairs, npairs, 0).astype(np.int64)),
        analysis=pl.Series(analysis, dtype=pl.String),
        d=pl.Series(d, nan_to_null=True),
        se=pl.Series(se, nan_to_null=True),
        df=pl.Series(df, nan_to_null=True),
        lo=pl.Series(lo, nan_to_null=True),
        hi=pl.Series(hi, nan_to_null=True),
        p=pl.Series(p, nan_to_null=True),
        mde=pl.Series(mde, nan_to_null=True),
        sys=pl.Series(np.where(sys > 0, sys, np.nan), nan_to_null=True),
        verdict=pl.Series(verdict.tolist(), dtype=pl.String),
        # each arm's variance of its mean (the Welch terms; sites combine them over cells)
        wa=pl.Series(
            np.where(none_or_paired, np.nan, np.where(const_a, 0.0, va) / np.maximum(na, 1)), nan_to_null=True
        ),
        wb=pl.Series(
            np.where(none_or_paired, np.nan, np.where(const_b, 0.0, vb) / np.maximum(nb, 1)), nan_to_null=True
        ),
    )


def log_to_pct(df: pl.DataFrame, prefix: str, cols: Sequence[str] = ("d", "lo", "hi", "mde", "sys")) -> pl.DataFrame:
    """Log-scale columns as % changes of the ratio: (exp(x) - 1) x 100, renamed <prefix>_pct, <prefix>_lo_pct, ..."""
    import polars as pl

    name = {
        "d": f"{prefix}_pct",
        "lo": f"{prefix}_lo_pct",
        "hi": f"{prefix}_hi_pct",
        "mde": f"{prefix}_mde_pct",
        "sys": f"{prefix}_sys_pct",
    }
    return df.with_columns([((pl.col(c).exp() - 1) * 100).alias(name[c]) for c in cols]).drop(list(cols))


# ------------------------------------------------------------------ which configurations could be the best
def best_set(
    runs: pl.DataFrame,
    cells: pl.DataFrame,
    group: Sequence[str],
    keys: Sequence[str],
    value: str = "energy_per_sample_j",
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> pl.DataFrame:
    """Per group (e.g. workload, phase) of ``cells`` (one row per configuration, identified by ``keys``, with
    ``log_mean``, the mean log value of its usable runs): which configurations could be the best (the lowest).

    Hsu-type multiple comparisons with the best, by tests: configuration i is compared with every other
    configuration j of its group, one-sided ("i costs more than j"; stats.compare, per block or Welch by the
    design); its p-value is the Bonferroni minimum over those m_i comparisons, min(1, m_i min_j p_ij), a valid
    p-value for "i is a best configuration"; Holm over the group's configurations then rejects at ``alpha``.
    Every truly best configuration stays in the set with probability >= 1 - alpha, ties included -- testing only
    against the observed best (selected as the lowest) does not keep that promise. Overlapping intervals are not
    a test and are not used.

    Adds ``best`` (the observed best: the lowest geometric mean), ``could_be_best`` (not rejected; also where no
    test was possible: one run, different meters without a stated error), ``vs_best_pct``, ``vs_best_lo_pct``,
    ``vs_best_hi_pct`` (the ratio to the observed best and its two-sided 1 - alpha interval, %), ``p_holm`` and
    ``vs_best_verdict``."""
    import polars as pl

    keys, group = list(keys), list(group)
    c = cells.filter(pl.col("log_mean").is_not_null()).with_columns(
        _rank=pl.col("log_mean").rank("ordinal").over(group)
    )
    out = c.with_columns(best=pl.col("_rank") == 1).drop("_rank")
    cols = {
        "could_be_best": pl.Boolean,
        "vs_best_pct": pl.Float64,
        "vs_best_lo_pct": pl.Float64,
        "vs_best_hi_pct": pl.Float64,
        "p_holm": pl.Float64,
        "vs_best_verdict": pl.String,
    }
    a_side = c.select(*group, *[pl.col(k).alias(f"a_{k}") for k in keys], _ra="_rank")
    b_side = c.select(*group, *[pl.col(k).alias(f"b_{k}") for k in keys], _rb="_rank")
    pairs = (
        b_side.join(a_side, on=group, how="inner", nulls_equal=True)
        .filter(pl.col("_ra") != pl.col("_rb"))
        .with_row_index("cmp")
    )
    if pairs.height == 0:
        out = out.with_columns([pl.lit(None, t).alias(k) for k, t in cols.items()])
    else:
        res = compare(runs, pairs, value, keys, alpha=alpha, power=power, systematic=True, one_sided=True)
        untestable = res["verdict"].is_null() | (res["verdict"] == ONE_RUN) | res["verdict"].str.starts_with("withheld")
        res = res.with_columns(
            _p=pl.Series(np.where(untestable.fill_null(True).to_numpy(), np.nan, as_array(res, "p")), nan_to_null=True)
        ).join(
            pairs.select("cmp", *group, "_ra", "_rb", *[pl.col(f"b_{k}").alias(k) for k in keys if k not in group]),
            on="cmp",
        )
        bkeys = [k for k in keys if k not in group]
        # i's p-value: Bonferroni over its testable comparisons; then Holm over the group's configurations
        per = res.group_by(*group, *bkeys).agg(_m=pl.col("_p").count(), _pmin=pl.col("_p").min())
        per = per.with_columns(_pi=(pl.col("_pmin") * pl.col("_m")).clip(upper_bound=1.0))
        adj = []
        for _, g in per.group_by(group, maintain_order=True):
            adj.append(
                g.select(*group, *bkeys).with_columns(
                    p_holm=pl.Series(holm(g["_pi"].fill_null(np.nan).to_numpy()), nan_to_null=True)
                )
            )
        per = per.join(pl.concat(adj), on=[*group, *bkeys], nulls_equal=True)
        # the ratio to the observed best and its interval, for the table
        pct = lambda c: (pl.col(c).exp() - 1) * 100  # noqa: E731
        vs = (
            res.filter(pl.col("_ra") == 1)
            .with_columns(vs_best_pct=pct("d"), vs_best_lo_pct=pct("lo"), vs_best_hi_pct=pct("hi"))
            .select(*group, *bkeys, "vs_best_pct", "vs_best_lo_pct", "vs_best_hi_pct", _vs_verdict="verdict")
        )
        per = per.join(vs, on=[*group, *bkeys], how="left", nulls_equal=True).with_columns(
            could_be_best=pl.col("p_holm").is_null() | (pl.col("p_holm") > alpha),
            vs_best_verdict=pl.when(pl.col("p_holm") <= alpha)
            .then(pl.lit("worse than the best"))
            .when(pl.col("_vs_verdict").str.starts_with("withheld") | (pl.col("_vs_verdict") == ONE_RUN))
            .then(pl.col("_vs_verdict"))  # no test against the best itself: why it stays
            .when(pl.col("p_holm").is_not_null())
            .then(pl.lit("cannot be told apart from the best"))
            .otherwise(pl.lit("no test")),
        )
        out = out.join(per.select(*group, *bkeys, *cols), on=[*group, *bkeys], how="left", nulls_equal=True)
    return out.with_columns(
        could_be_best=pl.col("best") | pl.col("could_be_best").fill_null(True),
        vs_best_pct=pl.when(pl.col("best")).then(0.0).otherwise(pl.col("vs_best_pct")),
        vs_best_verdict=pl.when(pl.col("best")).then(pl.lit("observed best")).otherwise(pl.col("vs_best_verdict")),
    )


# ------------------------------------------------------------------ PDG rounding
def pdg(err: float) -> tuple[float, int] | None:
    """The PDG rounding of an uncertainty (Review of Particle Physics, Introduction 5.3): from its three
    highest-order digits, 100-354 keep two significant digits, 355-949 one, 950-999 round up to 1000 and
    keep two. Returns (rounded uncertainty, the decimal exponent of its last digit); None if err <= 0."""
    if err is None or not math.isfinite(err) or err <= 0:
        return None
    mant, exp = f"{err:.5e}".split("e")  # 5 decimals: float noise (0.0999999...) does not change 3 digits
    e = int(exp)
    three = int(mant.replace(".", "")[:3])
    if three <= 354:
        place = e - 1
    elif three <= 949:
        place = e
    else:  # 950-999: up to 1000, two significant digits
        return 10.0 ** (e + 1), e
    return round(err / 10.0**place) * 10.0**place, place


def _at(x: float, place: int) -> str:
    """x rounded half up (as written in decimal: 12.2135 -> 12.214) at the decimal exponent place, written with
    exactly that many decimals."""
    from decimal import ROUND_HALF_UP, Decimal

    q = Decimal(repr(float(x))).quantize(Decimal(1).scaleb(place), rounding=ROUND_HALF_UP)
    return f"{q:.{max(0, -place)}f}" if place < 0 else f"{q.quantize(Decimal(1)):f}"


def _sig(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


def _minus(s: str) -> str:
    return s.replace("-", "−")


def fmt_pm(value: float | None, err: float | None) -> str:
    """'0.07 ± 0.12' (PDG: the uncertainty to one or two significant digits, the value to match); the value
    alone (4 significant digits) without an uncertainty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    r = pdg(err) if err is not None else None
    if r is None:
        return _minus(_sig(value))
    u, place = r
    return _minus(f"{_at(value, place)} ± {_at(u, place)}")


def fmt_unc(err: float | None) -> str:
    """An uncertainty alone (an MDE, a systematic term), PDG-rounded: '0.12', '5', '1.0'."""
    r = pdg(err) if err is not None else None
    return "" if r is None else _at(r[0], r[1])


def interval_place(value: float, lo: float, hi: float) -> int | None:
    """The decimal place of an asymmetric interval by the PDG rule: from the average of the two distances when
    they differ by less than 10 % of it, else from the narrower one."""
    dl, dh = value - lo, hi - value
    if not (dl > 0 and dh > 0):
        return None
    avg = (dl + dh) / 2
    r = pdg(avg if abs(dh - dl) < 0.1 * avg else min(dl, dh))
    return None if r is None else r[1]


def fmt_interval(value: float | None, lo: float | None, hi: float | None, signed: bool = True) -> str:
    """'−40 [−45, −35]': a value with its interval, all at the PDG place of the interval; the value alone
    (3 significant digits) without one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    sign = "+" if signed else ""
    if lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return _minus(f"{value:{sign}.3g}")
    place = interval_place(value, lo, hi)
    if place is None:
        return _minus(f"{value:{sign}.3g}")

    def s(x: float) -> str:
        t = _at(x, place)
        return ("+" + t) if signed and not t.startswith("-") and float(t) != 0 else t

    return _minus(f"{s(value)} [{s(lo)}, {s(hi)}]")
