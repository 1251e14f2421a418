"""`joulegrid compare`: is the head version an energy regression of the base version? (docs/compare.md)

Pure polars + numpy + scipy.stats (no torch). The formulas reuse analysis.stats (Holm, Benjamini-Hochberg,
noncentral t) and analysis.design (the upper confidence limit of a pooled SD).

Pairs. A versions campaign (config ``versions:``, joulegrid.quadruple) measures every cell in quadruples:
one job, one node, a discarded warm-up then ABBA or BAAB. Each quadruple gives one paired statistic of the
metric y = log(energy per sample):

    q = ½ (y_B1 + y_B2 − y_A1 − y_A2)

which cancels a linear drift inside the job and everything the node adds to both versions alike. Over the
n quadruples of a cell: Δ = mean(q), se = sd(q)/√n, df = n − 1. Cells are also told apart by CPU and GPU
model: quadruples of different hardware are never pooled.

The decision table (``decide``), on the (1 − 2α) interval [L, U] = Δ ∓ t(1 − α, df)·se against a margin
δ = log(1 + threshold):

    regression      L > δ
    pass            U < δ: "improvement" if U < −δ, "equivalent" if also L > −δ, else "no regression"
    inconclusive    otherwise, with the pairs at which this Δ and SD would decide

so P(a regression called when the true Δ ≤ δ) ≤ α and P(a pass when the true Δ ≥ δ) ≤ α, per cell.

The grid (``grid_verdict``): exit 1 when Holm's step-down over the cells' one-sided p-values of
H0: Δ ≤ δ rejects any cell at α (P(a merge request falsely blocked) ≤ α under any dependence); else exit
0 when every cell passes (an intersection-union test: P(a false pass) ≤ α without adjustment); else exit 2.
Benjamini-Hochberg q-values only list the cells worth a look. A pooled Δ over the cells, with
DerSimonian-Laird random effects, summarises the grid; it decides nothing.

Reruns: with a group-sequential plan (``--looks``, analysis.sequential) the same table is applied at each
look's nominal level, and Holm at the levels of the plan; without one every compare is the fixed design.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from . import stats

# the exit statuses and verdicts live in sequential (which decides over looks with them), so that neither
# module imports the other back
from .sequential import (
    EQUIVALENT,
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_REGRESSION,
    PASS,
    PASSES,
    REGRESSED,
    REGRESSION,
    TOO_FEW,
    UNDECIDED,
    PlanError,
)

log = logging.getLogger(__name__)

BAD_INPUT = 3
METRIC = "energy_per_sample_j"
# the other metrics each get a Δ with its interval (no verdict): of the log (a ratio), quality of the value itself
# (head - base in the metric's units: a loss or an accuracy may be 0 or negative); time and energy to target are
# training's (null where a run never reached target_quality: that quadruple gives no pair of them)
ALSO = (
    ("time_per_sample_s", "time/sample"),
    ("peak_mem_bytes", "peak memory"),
    ("quality", "quality"),
    ("time_to_target_s", "time to target"),
    ("energy_to_target_j", "energy to target"),
)
LINEAR = ("quality",)
MAX_PAIRS = 1000


class CompareError(ValueError):
    """The results cannot be compared (names what is missing and the fix)."""


# ------------------------------------------------------------------ the decision rule (numpy, vectorised)
def decide(n, d, sd, delta: float, alpha: float) -> dict[str, np.ndarray]:
    """Per cell: the (1 - 2 alpha) interval [lo, hi] of Δ from n pairs of mean d and SD sd, the one-sided
    p-value of H0: Δ <= delta (``p``), and the verdict of the decision table (module docstring)."""
    n, d, sd = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (n, d, sd))
    ok = n >= 2
    df = np.where(ok, n - 1, np.nan)
    se = np.where(ok, sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return decide_se(d, se, df, delta, alpha)


def decide_se(d, se, df, delta: float, alpha: float) -> dict[str, np.ndarray]:
    """``decide`` from Δ, its standard error and degrees of freedom (nan df: too few runs to decide)."""
    d, se, df = (np.atleast_1d(np.asarray(x, dtype=float)) for x in (d, se, df))
    ok = np.isfinite(df) & (df > 0) & np.isfinite(se)
    t = sps.t.ppf(1 - alpha, df)
    lo, hi = d - t * se, d + t * se
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (d - delta) / se
        p = np.where(se > 0, sps.t.sf(z, df), np.where(d > delta, 0.0, 1.0))
    p = np.where(ok, p, np.nan)
    verdict = np.full(np.shape(d), UNDECIDED, dtype=object)
    verdict[~ok] = TOO_FEW
    verdict[ok & (lo > delta)] = REGRESSED
    passed = ok & (hi < delta)
    verdict[passed] = NO_REGRESSION
    verdict[passed & (lo > -delta)] = EQUIVALENT
    verdict[passed & (hi < -delta)] = IMPROVEMENT
    return {"df": df, "se": se, "lo": lo, "hi": hi, "p": p, "verdict": verdict}


def pairs_to_decide(d: float, sd: float, delta: float, alpha: float) -> int | None:
    """The pairs at which an interval of this Δ and SD would clear the margin (its half-width below
    |Δ − δ|), None beyond MAX_PAIRS: what an inconclusive cell would need."""
    gap = abs(d - delta)
    if not (np.isfinite(sd) and gap > 0):
        return None
    n = np.arange(2, MAX_PAIRS + 1)
    hit = np.flatnonzero(sps.t.ppf(1 - alpha, n - 1) * sd / np.sqrt(n) < gap)
    return int(n[hit[0]]) if hit.size else None


def grid_verdict(p, verdict, alpha: float) -> tuple[int, np.ndarray]:
    """The exit status of the grid and the cells' Holm-adjusted p-values of H0: Δ <= δ (module docstring)."""
    adj = stats.holm(p)
    if np.any(adj <= alpha):
        return REGRESSION, adj
    v = np.asarray(verdict, dtype=object)
    if v.size and all(x in PASSES for x in v):
        return PASS, adj
    return INCONCLUSIVE, adj


def pairs_needed(sigma: float, delta: float, alpha: float, power: float) -> int | None:
    """Pairs for an unchanged version (true Δ = 0) to pass with the given power: the smallest n with
    P(U < δ) >= power, U the upper (1 - 2 alpha) limit of n pairs of SD sigma (noncentral t on n - 1 df;
    stats.power_two_sided at 2 alpha, whose far tail is negligible here). None beyond MAX_PAIRS."""
    if not (sigma > 0 and delta > 0):
        return None
    n = np.arange(2, MAX_PAIRS + 1)
    pw = stats.power_two_sided(delta * np.sqrt(n) / sigma, n - 1, 2 * alpha)
    hit = np.flatnonzero(pw >= power - 1e-9)  # threshold_for's margin reaches the power at its pairs exactly
    return int(n[hit[0]]) if hit.size else None


def threshold_for(sigma: float, pairs: int, alpha: float, power: float) -> float:
    """The smallest margin δ (log scale) that ``pairs`` pairs of SD sigma pass with the given power when
    nothing changed: sigma / sqrt(pairs) x the noncentrality of the test at 2 alpha (stats.noncentrality)."""
    lam = float(stats.noncentrality(pairs - 1, 2 * alpha, power)[0])
    return sigma / math.sqrt(pairs) * lam


def random_effects(d, se) -> tuple[float, float, float] | None:
    """DerSimonian-Laird pooled Δ over cells: (mean, its se, tau²), None without two cells with an se."""
    d, se = np.asarray(d, dtype=float), np.asarray(se, dtype=float)
    ok = np.isfinite(d) & np.isfinite(se) & (se > 0)
    if ok.sum() < 2:
        return None
    y, v = d[ok], se[ok] ** 2
    w = 1 / v
    m = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - m) ** 2)
    tau2 = max(0.0, (q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    ws = 1 / (v + tau2)
    return float(np.sum(ws * y) / np.sum(ws)), float(math.sqrt(1 / np.sum(ws))), float(tau2)


# ------------------------------------------------------------------ from the rows
GROUP = ("site", "workload", "phase", "device", "precision", "variant", "batch_size", "config_hash", "hardware")


def quadruples(rows) -> Any:
    """One row per measured quadruple (cell, hardware, repeat) of a versions campaign: the paired statistic q
    of log energy per sample (and of the ALSO metrics), from the ok, not-excluded runs (metrics.stat_runs) of
    code_slot 1-4. A quadruple that lost a run is left out (its counts are in ``runs``)."""
    import polars as pl

    from .metrics import stat_runs

    if "code_version" not in rows.columns or rows["code_version"].drop_nulls().is_empty():
        raise CompareError(
            "the results hold no code-version runs (code_version is null in every row). Fix: set versions: "
            "{base: ..., head: ...} in the config and run snakemake (docs/compare.md)"
        )
    d = stat_runs(rows.filter(pl.col("code_version").is_not_null() & (pl.col("code_slot").fill_null(0) >= 1)))
    d = d.with_columns(
        hardware=pl.when(pl.col("device") == "cuda").then(pl.col("gpu_model")).otherwise(pl.col("cpu_model")),
        _sign=pl.when(pl.col("code_version") == "head").then(0.5).otherwise(-0.5),
    )
    metrics = [METRIC, *(m for m, _ in ALSO)]
    aggs = [pl.len().alias("runs"), (pl.col("code_version") == "head").sum().alias("n_head")]
    for m in metrics:
        ok = pl.col(m).is_not_null() & (pl.col(m).is_finite() if m in LINEAR else pl.col(m) > 0)
        y = pl.col(m) if m in LINEAR else pl.col(m).log()
        aggs.append((pl.col("_sign") * y).filter(ok).sum().alias(f"q_{m}"))
        aggs.append(ok.sum().alias(f"ok_{m}"))
    aggs.append(pl.col("hostname").first().alias("hostname"))
    aggs += [pl.col(c).drop_nulls().first().alias(c) for c in QUALITY_KEYS]
    q = d.group_by(*GROUP, "repeat").agg(aggs)
    q = q.filter((pl.col("runs") == 4) & (pl.col("n_head") == 2))
    for m in metrics:  # a metric missing in one of the four runs gives no pair
        q = q.with_columns(pl.when(pl.col(f"ok_{m}") == 4).then(pl.col(f"q_{m}")).alias(f"q_{m}"))
    return q.sort(*GROUP, "repeat", nulls_last=True)


QUALITY_KEYS = ("quality_metric", "quality_higher_is_better")


def cells(q) -> Any:
    """Per cell (GROUP): pairs n, mean d and SD sd of q per metric."""
    import polars as pl

    aggs = [pl.len().alias("n"), pl.col("hostname").n_unique().alias("hosts")]
    aggs += [pl.col(c).drop_nulls().first().alias(c) for c in QUALITY_KEYS]
    for m in (METRIC, *(m for m, _ in ALSO)):
        aggs += [
            pl.col(f"q_{m}").drop_nulls().len().alias(f"n_{m}"),
            pl.col(f"q_{m}").mean().alias(f"d_{m}"),
            pl.col(f"q_{m}").std().alias(f"sd_{m}"),
        ]
    return q.group_by(*GROUP).agg(aggs).sort(*GROUP, nulls_last=True)


def pooled_sigma(c) -> tuple[float, float] | None:
    """The SD of q pooled over the cells (sum (n - 1) sd² / nu) and nu, None without a cell of 2 pairs."""
    n = c[f"n_{METRIC}"].to_numpy().astype(float)
    sd = c[f"sd_{METRIC}"].fill_null(np.nan).to_numpy().astype(float)
    ok = (n >= 2) & np.isfinite(sd)
    nu = float(np.sum(n[ok] - 1))
    if nu <= 0:
        return None
    return float(math.sqrt(np.sum((n[ok] - 1) * sd[ok] ** 2) / nu)), nu


@dataclass
class Result:
    exit: int
    delta: float  # log scale
    threshold_pct: float
    threshold_source: str
    alpha: float
    power: float
    table: Any  # polars frame, one row per cell
    pooled: tuple[float, float, float] | None
    sigma: tuple[float, float] | None
    planned_pairs: int | None
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sequential: dict[str, Any] | None = None  # with a plan: the plan, the looks taken, the look that decided


def compare_rows(
    rows,
    threshold_pct: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    max_pairs: int = 10,
    plan=None,
) -> Result:
    """The comparison of a versions campaign's rows (module docstring); with a group-sequential plan
    (analysis.sequential.Plan) its looks taken so far decide, at the plan's α and margin."""
    import polars as pl

    from .design import sigma_upper

    if plan is not None:
        return _compare_sequential(rows, plan, power)
    c = cells(quadruples(rows))
    if c.is_empty():
        raise CompareError(
            "no complete quadruple (two ok runs of each version in one job) in the results. Fix: run snakemake "
            "until the measure jobs succeed; `joulegrid compare` reads <results>/summary.parquet"
        )
    sig = pooled_sigma(c)
    notes = []
    if threshold_pct is not None:
        delta, source = math.log1p(threshold_pct / 100), "given"
    else:
        if sig is None:
            raise CompareError(
                "no cell has 2 pairs, so the noise that sizes the default threshold is unknown. Fix: give "
                "--threshold (e.g. 5%) or grid.repeats >= 2"
            )
        s_u = sigma_upper(sig[0], sig[1])
        delta = threshold_for(s_u, max_pairs, alpha, power)
        threshold_pct = math.expm1(delta) * 100
        source = (
            f"from the pooled pair SD {sig[0]:.3g} (nu {sig[1]:g}; upper 80 % limit {s_u:.3g}) and a budget of "
            f"{max_pairs} pairs (compare.max_pairs) at power {power:g}"
        )
    n = c[f"n_{METRIC}"].to_numpy().astype(float)
    d = c[f"d_{METRIC}"].fill_null(np.nan).to_numpy().astype(float)
    sd = c[f"sd_{METRIC}"].fill_null(np.nan).to_numpy().astype(float)
    r = decide(n, d, sd, delta, alpha)
    status, holm = grid_verdict(r["p"], r["verdict"], alpha)
    need = [
        pairs_to_decide(di, si, delta, alpha) if v == UNDECIDED else None
        for di, si, v in zip(d, sd, r["verdict"], strict=True)
    ]
    table = c.with_columns(
        lo=pl.Series(r["lo"]),
        hi=pl.Series(r["hi"]),
        p=pl.Series(r["p"]),
        p_holm=pl.Series(holm),
        q_bh=pl.Series(stats.bh(r["p"])),
        verdict=pl.Series(r["verdict"].astype(str)),
        pairs_to_decide=pl.Series(need, dtype=pl.Int64),
    )
    table = _also_intervals(table, alpha)
    if (table["hosts"] > 1).any():
        notes.append(
            "some cells' quadruples ran on several nodes: each pair is within one job, so node differences cancel"
        )
    planned = pairs_needed(sigma_upper(*sig), delta, alpha, power) if sig else None
    pooled, vers = random_effects(d, r["se"]), _commits(rows)
    return Result(status, delta, threshold_pct, source, alpha, power, table, pooled, sig, planned, vers, notes)


def _also_intervals(table, alpha: float):
    """The table with a plain (1 - 2 alpha) interval (lo_<m>, hi_<m>) of each other metric's Δ (ALSO)."""
    import polars as pl

    for m, _ in ALSO:
        x = decide(table[f"n_{m}"], table[f"d_{m}"].fill_null(np.nan), table[f"sd_{m}"].fill_null(np.nan), 0.0, alpha)
        table = table.with_columns(pl.Series(f"lo_{m}", x["lo"]), pl.Series(f"hi_{m}", x["hi"]))
    return table


def _commits(rows) -> dict[str, str]:
    import polars as pl

    vers = {}
    for label in ("base", "head"):
        x = rows.filter(pl.col("code_version") == label)["code_commit"].drop_nulls().unique().to_list()
        vers[label] = ", ".join(sorted(x)) or "(not a commit)"
    return vers


def pairs_measured(rows) -> int:
    """The quadruples per cell the campaign has run so far (the highest repeat + 1 of its code-version runs)."""
    import polars as pl

    r = rows.filter(pl.col("code_version").is_not_null() & (pl.col("code_slot").fill_null(0) >= 1))["repeat"]
    return int(r.max()) + 1 if r.len() else 0


def _compare_sequential(rows, plan, power: float) -> Result:
    """compare_rows at the looks of a group-sequential plan (analysis.sequential): look k uses each cell's
    quadruples of repeat < plan.looks[k]; the latest look the campaign has reached decides, with every earlier
    look as it was."""
    import polars as pl

    from . import sequential

    q = quadruples(rows)
    measured = pairs_measured(rows)
    taken = [k for k in plan.looks if k <= measured]
    if not taken:
        raise CompareError(
            f"the compare plan's first look is at {plan.looks[0]} pairs per cell and the results hold {measured}. "
            f"Fix: run snakemake with grid.repeats: {plan.looks[0]}, then compare"
        )
    key = pl.concat_str([pl.col(k).cast(pl.String).fill_null("\0") for k in GROUP], separator="\x1f")
    per_look = [
        cells(q.filter(pl.col("repeat") < k)).with_columns(_key=key, _look=pl.lit(j)) for j, k in enumerate(taken)
    ]
    last = per_look[-1]
    keys = last["_key"].to_list()
    arrays = {x: np.full((1, len(taken), len(keys)), np.nan) for x in ("n", "d", "sd")}
    for j, c in enumerate(per_look):
        at = {k: i for i, k in enumerate(c["_key"].to_list())}
        for x, col in (("n", f"n_{METRIC}"), ("d", f"d_{METRIC}"), ("sd", f"sd_{METRIC}")):
            v = c[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
            arrays[x][0, j] = [v[at[k]] if k in at else (0.0 if x == "n" else np.nan) for k in keys]
    r = sequential.decide_looks(arrays["n"], arrays["d"], arrays["sd"], plan, decide)
    look = r["look"][0].astype(int)
    # each cell's figures (every metric) from the look that decided it, else from the latest look (also for a
    # cell with no complete quadruple yet at the look the grid stopped)
    present = {(k, j) for j, c in enumerate(per_look) for k in c["_key"].to_list()}
    rows_at = [j if (k, j) in present else len(taken) - 1 for k, j in zip(keys, look, strict=True)]
    table = pl.concat(per_look, how="vertical_relaxed").join(
        pl.DataFrame({"_key": keys, "_look": rows_at}, schema={"_key": pl.String, "_look": pl.Int32}),
        on=["_key", "_look"],
        how="semi",
    )
    table = table.with_columns(pl.col("_key").replace_strict({k: i for i, k in enumerate(keys)}).alias("_i")).sort("_i")
    stop = int(r["stop"][0])
    nxt = taken[-1] < plan.looks[-1] and int(r["exit"][0]) == INCONCLUSIVE
    verdict = r["verdict"][0].astype(str)
    need = [plan.looks[len(taken)] if nxt and v == UNDECIDED else None for v in verdict]
    table = table.with_columns(
        look=pl.Series(look + 1),
        level=pl.Series(r["level"][0]),
        lo=pl.Series(r["lo"][0]),
        hi=pl.Series(r["hi"][0]),
        p=pl.Series(r["p"][0]),
        p_holm=pl.Series(r["p"][0]),  # the nominal p of its look: compared with the look's Holm levels
        q_bh=pl.Series(stats.bh(r["p"][0])),
        verdict=pl.Series(verdict),
        rejected=pl.Series(r["rejected"][0]),
        pairs_to_decide=pl.Series(need, dtype=pl.Int64),
    )
    table = _also_intervals(table, plan.alpha)  # at the cell's look
    table = table.drop("_key", "_look", "_i")
    status = int(r["exit"][0])
    seq = {
        "plan": plan,
        "taken": len(taken),
        "stop": stop + 1,
        "levels": [float(x) for x in plan.levels()],
        "next": plan.looks[len(taken)] if nxt else None,
        "measured": measured,
    }
    notes = []
    if measured > plan.looks[stop]:
        notes.append(f"The quadruples after {plan.looks[stop]} pairs are not part of the plan's decision at this look.")
    sig = pooled_sigma(last)
    from .design import sigma_upper

    planned = pairs_needed(sigma_upper(*sig), plan.delta, plan.alpha, power) if sig else None
    vers = _commits(rows)
    d, se = table[f"d_{METRIC}"].fill_null(np.nan).to_numpy(), (table["hi"] - table["lo"]).to_numpy()
    with np.errstate(invalid="ignore"):
        se = se / (2 * sps.t.ppf(1 - table["level"].to_numpy(), np.maximum(table[f"n_{METRIC}"].to_numpy() - 1, 1)))
    pooled = random_effects(d, se)
    return Result(
        status, plan.delta, plan.threshold_pct, "the plan's", plan.alpha, power, table, pooled, sig, planned, vers,
        notes, seq,
    )  # fmt: skip


TREE_KEYS = ("workload", "phase", "device", "precision", "variant", "batch_size", "config_hash")


def _arms(rows) -> Any:
    """Per cell of one result tree (TREE_KEYS): runs, mean and variance of the log of each metric."""
    import polars as pl

    from .metrics import stat_runs

    d = stat_runs(rows).with_columns(
        hardware=pl.when(pl.col("device") == "cuda").then(pl.col("gpu_model")).otherwise(pl.col("cpu_model"))
    )
    aggs = [
        pl.col("site").unique().sort().str.join(", ").alias("site"),
        pl.col("hardware").unique().sort().str.join(", ").alias("hardware"),
    ]
    for m in (METRIC, *(m for m, _ in ALSO)):
        y = pl.col(m).filter(pl.col(m).is_finite()) if m in LINEAR else pl.col(m).filter(pl.col(m) > 0).log()
        aggs += [y.len().alias(f"n_{m}"), y.mean().alias(f"m_{m}"), y.var().alias(f"v_{m}")]
    aggs += [pl.col(c).drop_nulls().first().alias(c) for c in QUALITY_KEYS]
    return d.group_by(*TREE_KEYS).agg(aggs)


def compare_trees(a_rows, b_rows, threshold_pct: float, alpha: float = 0.05, power: float = 0.8) -> Result:
    """Two result trees or two sites (a = base, b = head), cell by cell: unpaired (Welch on the log of each
    metric, stats.welch_se_df), never pooled across the runs of different hardware into pairs. The same decision
    table and grid verdict as a versions campaign; the rows say "unpaired"."""
    import polars as pl

    if threshold_pct is None:
        raise CompareError("comparing two result trees needs --threshold (the noise of unpaired runs sizes none)")
    delta = math.log1p(threshold_pct / 100)
    j = _arms(a_rows).join(_arms(b_rows), on=list(TREE_KEYS), how="inner", suffix="_b")
    if j.is_empty():
        raise CompareError(
            "the two result trees have no cell in common (same workload, phase, device, precision, variant, batch "
            "size and config hash). Fix: compare trees measured with the same configuration"
        )
    cols = {}
    for m in (METRIC, *(m for m, _ in ALSO)):
        se, df = stats.welch_se_df(
            j[f"v_{m}"].fill_null(np.nan), j[f"n_{m}"], j[f"v_{m}_b"].fill_null(np.nan), j[f"n_{m}_b"]
        )
        d = (j[f"m_{m}_b"] - j[f"m_{m}"]).fill_null(np.nan).to_numpy()
        cols[m] = (d, se, df, decide_se(d, se, df, delta if m == METRIC else 0.0, alpha))
    d, se, df, r = cols[METRIC]
    status, holm = grid_verdict(r["p"], r["verdict"], alpha)
    table = j.select(
        pl.concat_str([pl.col("site"), pl.lit(" → "), pl.col("site_b")]).alias("site"),
        *[k for k in TREE_KEYS if k != "config_hash"],
        pl.concat_str([pl.col("hardware"), pl.lit(" → "), pl.col("hardware_b"), pl.lit("; unpaired")]).alias(
            "hardware"
        ),
        pl.concat_str(
            [pl.col(f"n_{METRIC}").cast(pl.String), pl.lit("+"), pl.col(f"n_{METRIC}_b").cast(pl.String)]
        ).alias(f"n_{METRIC}"),
        *QUALITY_KEYS,
    ).with_columns(
        pl.Series(f"d_{METRIC}", d),
        pl.Series("lo", r["lo"]),
        pl.Series("hi", r["hi"]),
        pl.Series("p", r["p"]),
        pl.Series("p_holm", holm),
        pl.Series("q_bh", stats.bh(r["p"])),
        pl.Series("verdict", r["verdict"].astype(str)),
        pl.Series("pairs_to_decide", [None] * j.height, dtype=pl.Int64),
    )
    for m, _ in ALSO:
        x = cols[m][3]
        table = table.with_columns(
            pl.Series(f"d_{m}", cols[m][0]), pl.Series(f"lo_{m}", x["lo"]), pl.Series(f"hi_{m}", x["hi"])
        )
    vers = {
        "base": ", ".join(sorted(set(a_rows["site"].unique().to_list()))),
        "head": ", ".join(sorted(set(b_rows["site"].unique().to_list()))),
    }
    notes = ["Two result trees: each cell's runs compared unpaired (Welch), no pairing cancels node or drift."]
    pooled = random_effects(d, se)
    return Result(status, delta, threshold_pct, "given", alpha, power, table, pooled, None, None, vers, notes)


# ------------------------------------------------------------------ output
def _pct(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{math.expm1(x) * 100:+.1f} %"


def _interval(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "–"
    return f"[{_pct(lo)}, {_pct(hi)}]"


EXIT_WORDS = {
    PASS: "PASS: no cell is a regression",
    REGRESSION: "REGRESSION: head costs more energy per sample than the margin allows",
    INCONCLUSIVE: "INCONCLUSIVE: not every cell could be decided with these pairs",
}


def _num(x) -> str:
    return f"{x:+.4g}" if x is not None and np.isfinite(x) else "–"


def quality_delta(r: dict) -> str:
    """Δ quality (head − base, the metric's own units) with its interval, and which way is better."""
    if r.get("d_quality") is None or not np.isfinite(r["d_quality"]):
        return "–"
    text = f"{_num(r['d_quality'])} [{_num(r['lo_quality'])}, {_num(r['hi_quality'])}]"
    if r.get("quality_metric"):
        better = {True: "higher is better", False: "lower is better"}.get(r.get("quality_higher_is_better"), "")
        text += f" ({r['quality_metric']}" + (f", {better})" if better else ")")
    return text


def extra_columns(t) -> list[tuple[str, Any]]:
    """The columns of quality and of time and energy to target, where some cell has them (training with a
    target_quality for the latter): (header, the cell's text)."""
    out = []
    if "d_quality" in t.columns and t["d_quality"].fill_nan(None).drop_nulls().len():
        out.append(("Δ quality (head − base)", quality_delta))
    for m, label in ALSO:
        if m in ("time_to_target_s", "energy_to_target_j") and t[f"lo_{m}"].fill_nan(None).drop_nulls().len():
            out.append((f"Δ {label}", lambda r, m=m: _interval(r[f"lo_{m}"], r[f"hi_{m}"])))
    return out


def exit_words(res: Result) -> str:
    seq = res.sequential
    if seq and res.exit == INCONCLUSIVE:
        if seq["next"]:
            return (
                f"INCONCLUSIVE at look {seq['taken']} of {len(seq['plan'].looks)}: continue to look "
                f"{seq['taken'] + 1} at {seq['next']} pairs per cell"
            )
        return "INCONCLUSIVE at the plan's last look: the plan is spent, a rerun starts a fresh campaign"
    return EXIT_WORDS[res.exit]


def sequential_line(res: Result) -> str:
    """What the group-sequential plan did at this look (docs/compare.md, "Reruns")."""
    seq = res.sequential
    plan = seq["plan"]
    looks = ", ".join(str(x) for x in plan.looks)
    k = seq["stop"] if res.exit != INCONCLUSIVE else seq["taken"]
    lev = seq["levels"][k - 1]
    text = (
        f"Group-sequential plan: look {k} of {len(plan.looks)} at {plan.looks[k - 1]} pairs per cell (looks at "
        f"{looks} pairs; O'Brien–Fleming-type α spending, the pass boundary its futility stop); this look's "
        f"boundary: nominal one-sided level α_{k} = {lev:.3g} (a {1 - 2 * lev:.2%} interval, t on each cell's df)"
    )
    if res.exit != INCONCLUSIVE:
        text += f"; the plan stopped at look {k}"
    elif seq["next"]:
        text += (
            f". Next: run snakemake with grid.repeats: {seq['next']} (the same config otherwise), then "
            "joulegrid compare again"
        )
    return text + "."


def markdown(res: Result) -> str:
    """The summary for a merge-request comment."""
    t = res.table
    lvl = 1 - 2 * res.alpha
    seq = res.sequential
    out = [
        f"### joulegrid compare: {exit_words(res)}",
        "",
        f"base `{res.versions.get('base', '?')[:12]}` → head `{res.versions.get('head', '?')[:12]}`; margin "
        f"δ = {res.threshold_pct:.2f} % of energy per sample ({res.threshold_source}); intervals at "
        + (f"{lvl:.0%}" if not seq else "1 − 2α_k of each cell's look")
        + f"; α = {res.alpha:g}, Holm over {t.height} cell(s). Δ is the ratio head/base − 1 "
        "(geometric mean of the pairs).",
    ]
    if seq:
        out += ["", sequential_line(res)]
    extra = extra_columns(t)
    out += [
        "",
        f"| cell | pairs | Δ energy/sample | interval | verdict | {'p (nominal)' if seq else 'Holm p'} "
        "| Δ time/sample | Δ peak memory |" + "".join(f" {name} |" for name, _ in extra),
        "|---|---|---|---|---|---|---|---|" + "---|" * len(extra),
    ]
    for r in t.iter_rows(named=True):
        cell = "/".join(str(r[k]) for k in ("site", "workload", "phase", "device", "precision") if r[k] is not None)
        cell += f"/bs{r['batch_size']}" + (f" ({r['hardware']})" if r["hardware"] else "")
        verdict = r["verdict"]
        if verdict == UNDECIDED and seq:
            if r["pairs_to_decide"]:
                verdict += f" (next look at {r['pairs_to_decide']} pairs)"
            else:
                verdict += " (the plan stopped)" if res.exit != INCONCLUSIVE else " (the plan is spent)"
        elif verdict == UNDECIDED:
            verdict += (
                f" (≈{r['pairs_to_decide']} pairs would decide)" if r["pairs_to_decide"] else " (needs >1000 pairs)"
            )
        if seq:
            if verdict == REGRESSED and not r["rejected"]:
                verdict += " (not after Holm)"
            elif r["verdict"] not in (UNDECIDED, TOO_FEW):
                verdict += f" (look {r['look']})"
        elif verdict == REGRESSED and not (r["p_holm"] is not None and r["p_holm"] <= res.alpha):
            verdict += " (not after Holm)"
        holm = "–" if r["p_holm"] is None or not np.isfinite(r["p_holm"]) else f"{r['p_holm']:.3g}"
        out.append(
            f"| {cell} | {r[f'n_{METRIC}']} | {_pct(r[f'd_{METRIC}'])} | {_interval(r['lo'], r['hi'])} | {verdict} | "
            f"{holm} | {_interval(r['lo_time_per_sample_s'], r['hi_time_per_sample_s'])} | "
            f"{_interval(r['lo_peak_mem_bytes'], r['hi_peak_mem_bytes'])} |" + "".join(f" {f(r)} |" for _, f in extra)
        )
    out.append("")
    if res.pooled:
        m, se, tau2 = res.pooled
        z = sps.norm.ppf(1 - res.alpha)
        out.append(
            f"Grid (random effects over cells, DerSimonian-Laird): Δ {_pct(m)} {_interval(m - z * se, m + z * se)}, "
            f"between-cell SD {math.sqrt(tau2):.3g} (log scale); a summary, not the decision."
        )
    look = t.filter(pl_col_le("q_bh", 0.1))
    if look.height:
        out.append(f"Worth a look (Benjamini-Hochberg q ≤ 0.1): {look.height} cell(s).")
    if res.sigma:
        s, nu = res.sigma
        plan = f"{res.planned_pairs}" if res.planned_pairs else f"more than {MAX_PAIRS}"
        out.append(
            f"Sizing: pair SD {s:.3g} (log scale, nu {nu:g}); an unchanged head passes this margin with power "
            f"{res.power:g} at {plan} pairs per cell."
        )
    out += res.notes
    out.append(f"Exit status {res.exit} (0 pass, 1 regression, 2 inconclusive, 3 bad input).")
    return "\n".join(out) + "\n"


def pl_col_le(c: str, x: float):
    import polars as pl

    return pl.col(c).is_not_null() & pl.col(c).is_not_nan() & (pl.col(c) <= x)


def parse_threshold(text: str) -> float:
    """--threshold: a percentage ("5%", "5") of energy per sample, > 0."""
    try:
        x = float(str(text).strip().removesuffix("%"))
    except ValueError:
        x = float("nan")
    if not (np.isfinite(x) and 0 < x <= 1000):
        raise CompareError(f"--threshold {text!r}: give a margin in percent above 0, e.g. --threshold 5%")
    return x


def stored_plan(rows, results):
    """The group-sequential plan stored for these rows' campaign under <results>/compare-plans/, else None."""
    import polars as pl

    from . import sequential

    if "code_version" not in rows.columns:
        return None
    hashes = rows.filter(pl.col("code_version").is_not_null())["config_hash"].unique().to_list()
    return sequential.load(results, sequential.key_of(hashes)) if hashes else None


def the_plan(rows, results, looks_text: str | None, threshold: float | None, alpha: float):
    """The campaign's group-sequential plan (analysis.sequential): the one stored under <results>/compare-plans/
    for these rows' config hashes, else a new one from --looks (stored now, before its first look is judged),
    else None (the fixed design). A threshold or alpha that differs from a stored plan's is refused."""
    import polars as pl

    from . import sequential

    if "code_version" not in rows.columns:
        return None
    hashes = rows.filter(pl.col("code_version").is_not_null())["config_hash"].unique().to_list()
    if not hashes:
        return None
    key = sequential.key_of(hashes)
    plan = sequential.load(results, key)
    where = sequential.path_for(results, key)
    if plan is None and looks_text is None:
        return None
    if plan is None:
        looks = sequential.parse_looks(looks_text)
        if threshold is None:
            raise CompareError(
                "a group-sequential plan fixes its margin before the first look. Fix: give --threshold (e.g. 10%) "
                "or compare.threshold_pct with --looks"
            )
        measured = pairs_measured(rows)
        if len(looks) > 1 and measured >= looks[1]:
            raise CompareError(
                f"--looks {looks_text}: the results already hold {measured} pairs per cell, past the plan's second "
                "look: a plan is fixed before its first look. Fix: start a fresh campaign (versions.campaign + 1) "
                "and give --looks at its first compare"
            )
        b, h = _commits(rows).values()
        plan = sequential.make(looks, alpha, threshold, key=key, base=b, head=h)
        sequential.save(plan, results)
        log.info("compare plan fixed: %s", where)
        return sequential.load(results, key)
    if looks_text is not None and tuple(sequential.parse_looks(looks_text)) != plan.looks:
        raise CompareError(
            f"--looks {looks_text}: this campaign's plan {where} was fixed with looks at "
            f"{', '.join(map(str, plan.looks))} pairs. Fix: leave out --looks, or start a fresh campaign "
            "(versions.campaign + 1)"
        )
    if (threshold is not None and not math.isclose(threshold, plan.threshold_pct)) or not math.isclose(
        alpha, plan.alpha
    ):
        raise CompareError(
            f"this campaign's plan {where} was fixed with threshold {plan.threshold_pct:g} % and alpha "
            f"{plan.alpha:g}; given {threshold} % and {alpha:g}. Fix: compare at the plan's settings, or start a "
            "fresh campaign (versions.campaign + 1)"
        )
    return plan


def run(args) -> int:
    """`joulegrid compare`: print the decision table (Markdown), write it to --markdown; the exit status."""
    from pathlib import Path

    import polars as pl

    from ..config import load

    try:
        config, _ = load(args.configfile, args.config, replace_workflow_config=args.replace_workflow_config)
        cc = config["compare"]
        threshold = parse_threshold(args.threshold) if args.threshold is not None else cc["threshold_pct"]
        alpha = float(args.alpha if args.alpha is not None else cc["alpha"])
        trees = list(args.trees or [])
        if trees:
            if getattr(args, "looks", None):
                raise CompareError(
                    "--looks plans the reruns of a versions campaign; two result trees are compared once"
                )
            if len(trees) != 2:
                raise CompareError(f"give two result trees (base, then head), not {len(trees)}: joulegrid compare A B")
            frames = []
            for t in trees:
                f = Path(t) / "summary.parquet"
                if not f.is_file():
                    raise CompareError(f"no summary at {f}. Fix: give result folders that snakemake aggregated")
                frames.append(pl.read_parquet(f))
            res = compare_trees(*frames, threshold_pct=threshold, alpha=alpha, power=float(cc["power"]))
            print(markdown(res), end="")
            if args.markdown:
                Path(args.markdown).write_text(markdown(res))
            return res.exit
        results = Path(args.results or config["results"])
        summary = results / "summary.parquet"
        if not summary.is_file():
            raise CompareError(
                f"no summary at {summary}. Fix: run snakemake with versions: in the config first (it writes "
                "the summary), or give --results the folder it wrote"
            )
        rows = pl.read_parquet(summary)
        plan = the_plan(rows, results, getattr(args, "looks", None), threshold, alpha)
        res = compare_rows(
            rows,
            threshold_pct=threshold,
            alpha=alpha,
            power=float(cc["power"]),
            max_pairs=int(cc["max_pairs"]),
            plan=plan,
        )
    except (CompareError, PlanError) as e:
        log.error("%s", e)
        return BAD_INPUT
    text = markdown(res) + _where_head_grew(rows, summary.parent, res)
    print(text, end="")
    if args.markdown:
        Path(args.markdown).write_text(text)
    return res.exit


def _where_head_grew(rows, results_dir, res: Result) -> str:
    """The hotspot lines of the regressed cells (analysis.hotspots.regressions_markdown; '' when not profiled):
    an extra, so a failure is logged and leaves the decision as it is."""
    from . import hotspots

    try:
        return hotspots.regressions_markdown(rows, results_dir, res.table)
    except Exception as e:  # noqa: BLE001 - the verdict does not depend on the hotspots
        log.warning("compare: the hotspots of the regressed cells were left out: %s: %s", type(e).__name__, e)
        return ""


# ------------------------------------------------------------------ the report's Compare section
def cell_label(r: dict) -> str:
    cell = "/".join(str(r[k]) for k in ("site", "workload", "phase", "device", "precision") if r[k] is not None)
    return cell + f"/bs{r['batch_size']}" + (f" ({r['hardware']})" if r["hardware"] else "")


def report_view(res: Result) -> Any:
    """The decision table as the report shows it: one row per cell, percentages."""
    import polars as pl

    rows = []
    extra = extra_columns(res.table)
    for r in res.table.iter_rows(named=True):
        rows.append(
            {
                "cell": cell_label(r),
                "pairs": r[f"n_{METRIC}"],
                "Δ energy/sample": _pct(r[f"d_{METRIC}"]),
                (
                    f"interval ({1 - 2 * res.alpha:.0%})" if not res.sequential else "interval (its look's level)"
                ): _interval(r["lo"], r["hi"]),
                "verdict": r["verdict"],
                "Holm p": None if r["p_holm"] is None or not np.isfinite(r["p_holm"]) else float(r["p_holm"]),
                "Δ time/sample": _interval(r["lo_time_per_sample_s"], r["hi_time_per_sample_s"]),
                **{name: f(r) for name, f in extra},
            }
        )
    return pl.DataFrame(rows)


def chart_svg(res: Result) -> str:
    """Δ energy per sample and its interval per cell against ±δ (an inline SVG, altair + vl-convert)."""
    import altair as alt
    import polars as pl
    import vl_convert as vlc

    def pct(x):
        return math.expm1(x) * 100 if x is not None and np.isfinite(x) else None

    t = res.table
    d = pl.DataFrame(
        {
            "cell": [cell_label(r) for r in t.iter_rows(named=True)],
            "delta_pct": [pct(x) for x in t[f"d_{METRIC}"].to_list()],
            "lo_pct": [pct(x) for x in t["lo"].to_list()],
            "hi_pct": [pct(x) for x in t["hi"].to_list()],
            "verdict": t["verdict"].to_list(),
        }
    )
    y = alt.Y("cell:N", title=None)
    x = alt.X("lo_pct:Q", title="Δ energy per sample, head against base (%)")
    rules = alt.Chart(d).mark_rule().encode(y=y, x=x, x2="hi_pct:Q")
    points = alt.Chart(d).mark_point(filled=True, size=60).encode(y=y, x="delta_pct:Q", color="verdict:N")
    margin = pl.DataFrame({"x": [pct(res.delta), pct(-res.delta)]})
    lines = alt.Chart(margin).mark_rule(strokeDash=[4, 3], color="grey").encode(x="x:Q")
    chart = (rules + points + lines).properties(width=520, height=max(40, 28 * d.height))
    return vlc.vegalite_to_svg(chart.to_json())


# ------------------------------------------------------------------ sizing (`joulegrid plan` with versions:)
def sequential_looks(sigma: float, delta: float, alpha: float, power: float) -> list[int] | None:
    """The looks of a 3-look plan sized like the fixed design, its last look at the nominal level the plan leaves
    it (below alpha: the earlier looks spent the rest): pairs_needed at that level, the looks spread evenly up to
    it. The earlier looks' chances to pass only add power, so the stated power is a lower bound."""
    from . import sequential

    n = pairs_needed(sigma, delta, alpha, power)
    for _ in range(5):  # the final level depends on the looks' fractions, which depend on n: a few rounds settle it
        if n is None:
            return None
        looks = sequential.suggested_looks(n)
        lev = float(sequential.nominal_levels(tuple(k / looks[-1] for k in looks), alpha)[-1])
        m = pairs_needed(sigma, delta, lev, power)
        if m == n:
            return looks
        n = m
    return sequential.suggested_looks(n) if n else None


def sequential_sizing(sigma: float, delta: float, alpha: float, power: float) -> str:
    looks = sequential_looks(sigma, delta, alpha, power)
    if not looks:
        return f"a group-sequential plan: more than {MAX_PAIRS} pairs per cell"
    return (
        f"a group-sequential plan of up to 3 looks (docs/compare.md, Reruns): joulegrid compare --looks "
        f"{','.join(map(str, looks))} at the first look, grid.repeats: {looks[0]} to start"
    )


def sizing_lines(config: dict[str, Any], earlier, n_cells: int) -> list[str]:
    """`joulegrid plan` with versions: the pairs per cell an unchanged head needs to pass the margin with
    compare.power, from the pair noise of earlier quadruples, and what the campaign of ``n_cells`` cells costs
    (5 runs a quadruple, each the mean job time and job energy of the earlier code-version runs)."""
    import polars as pl

    from .design import sigma_upper

    cc = config["compare"]
    alpha, power = float(cc["alpha"]), float(cc["power"])
    head = "compare sizing (docs/compare.md):"
    if earlier is None or "code_version" not in earlier.columns or earlier["code_version"].drop_nulls().is_empty():
        return [f"{head} no earlier quadruples in {config['results']}/summary.parquet: run a first campaign"]
    try:
        per_cell = cells(quadruples(earlier))
    except CompareError as e:
        return [f"{head} {e}"]
    sig = pooled_sigma(per_cell) if per_cell.height else None
    if sig is None:
        return [f"{head} no cell with 2 complete quadruples yet: no pair noise to size from"]
    s_u = sigma_upper(*sig)
    if cc["threshold_pct"] is not None:
        delta, src = math.log1p(float(cc["threshold_pct"]) / 100), "compare.threshold_pct"
    else:
        delta, src = threshold_for(s_u, int(cc["max_pairs"]), alpha, power), f"sized for {cc['max_pairs']} pairs"
    n = pairs_needed(s_u, delta, alpha, power)
    runs = earlier.filter(pl.col("code_version").is_not_null() & (pl.col("status") == "ok"))
    job_s = runs["job_wall_s"].mean() if "job_wall_s" in runs.columns else None
    job_j = runs["job_energy_j"].mean() if "job_energy_j" in runs.columns else None
    out = [
        f"{head} pair SD {sig[0]:.3g} (log energy/sample, nu {sig[1]:g}; upper 80 % limit {s_u:.3g}); margin "
        f"{math.expm1(delta) * 100:.2f} % ({src}); an unchanged head passes with power {power:g} at "
        + (f"{n} pairs per cell" if n else f"more than {MAX_PAIRS} pairs per cell")
    ]
    if n and job_s:
        runs_total = n_cells * n * 5
        cost = f"  that campaign: {n_cells} cell(s) x {n} quadruples x 5 runs = {runs_total} runs, "
        cost += f"{runs_total * job_s / 3600:.3g} job-hours"
        if job_j:
            cost += f", {runs_total * job_j / 3.6e6:.3g} kWh"
        out.append(cost + " (the mean job of the earlier code-version runs)")
    if n:
        out.append("  " + sequential_sizing(s_u, delta, alpha, power))
    return out
