"""Derived metrics (pure polars; no torch). Every formula is documented in docs/metrics.md.

Layers, each a function of a DataFrame in the result schema (plus what the layer before added):

- ``derive``            per run: energy per sample (= per event), samples per joule, CO2 per 1,000
                        samples (= per 1,000 inferences for phase infer), mean power, measured/estimated.
- ``cell_stats``        repeats of one cell -> mean, std, 95 % CI, CV of energy per sample, ``noisy``.
- ``relative_to_baseline``  Δenergy %, Δtime %, Δquality against the fp32 baseline of the same
                        site/workload/phase/device/batch size; ``missing_baselines`` lists the gaps;
                        ``emulated`` the precisions a device only emulates, with their measured slowdown.
- ``time_to_target``    TTA / ETA from the per-epoch curves, Zeus's cost η·ETA + (1-η)·MaxPower·TTA;
                        ``best_batch_size`` picks the cheapest batch size per (workload, device, precision).
- ``pareto``            quality vs energy per sample, per workload and phase (direction-aware).
- ``sci``               Software Carbon Intensity (E·I + M) per functional unit.
- ``fleet``             energy of one equal-work job (samples_per_job samples; + the job's start-up
                        with scope job) scaled to a fleet (jobs/day per site): MWh/day, tCO2/day,
                        and the saving of each variant against the baseline.
- ``scheduler_view``    queue wait and batch efficiency per site.
- ``site_comparison``   the same cell side by side across sites (time, energy and CO2 per sample with each
                        site's intensity and PUE, queue wait, whole-job overhead, batch efficiency);
                        ``where_to_run`` ranks the sites per workload and phase at equal work.
- ``whose_energy``      the node's energy vs the jobs' per site and host; ``model_error`` the CPU power
                        model's prediction against the counters where both measured.

CO2 is ``joulegrid.units.co2_g`` (the runner's ``co2_kg`` uses it too); the cell's axes come from
``joulegrid.axes`` (``CELL_KEYS`` and the keys derived from it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from ..axes import BASELINE_PRECISION, BASELINE_VARIANT, CELL_AXES, CODE_VERSION
from ..base import schema_defaults
from ..units import co2_g, kwh
from . import stats


def _default(section: str, key: str) -> Any:
    """A report: / fleet: default, from the config schema (its one home)."""
    return schema_defaults()[section][key]


# A cell without its repeat index: the unit repeats are averaged over. Runs of two configurations
# (config_hash: other settings, seed, ...) or two code versions (code_version) of the same cell are two
# cells, never averaged.
CELL_KEYS = (*(a for a in CELL_AXES if a != "repeat"), "config_hash", CODE_VERSION)
# What a baseline shares with the cells compared to it (everything but precision and variant);
# baseline_hash: the config hash of the baseline it compares with (with_baseline_hash).
BASELINE_KEYS = (*(k for k in CELL_KEYS if k not in ("precision", "variant", "config_hash")), "baseline_hash")


# ------------------------------------------------------------------ per run
def precision_variant_expr() -> pl.Expr:
    return (
        pl.when(pl.col("variant").is_null() | (pl.col("variant") == BASELINE_VARIANT))
        .then(pl.col("precision"))
        .otherwise(pl.col("precision") + pl.lit("+") + pl.col("variant"))
    )


def derive(df: pl.DataFrame) -> pl.DataFrame:
    """Per-run derived columns (null where an input is missing or zero)."""
    return df.with_columns(
        energy_per_sample_j=pl.when(pl.col("n_samples") > 0).then(pl.col("energy_j") / pl.col("n_samples")),
        samples_per_j=pl.when(pl.col("energy_j") > 0).then(pl.col("n_samples") / pl.col("energy_j")),
        time_per_sample_s=pl.when(pl.col("n_samples") > 0).then(pl.col("wall_s") / pl.col("n_samples")),
        co2_per_1k_samples_kg=pl.when(pl.col("n_samples") > 0).then(pl.col("co2_kg") / pl.col("n_samples") * 1000),
        mean_power_w=pl.coalesce(
            pl.col("mean_power_w"), pl.when(pl.col("wall_s") > 0).then(pl.col("energy_j") / pl.col("wall_s"))
        ),
        energy_source=pl.when(pl.col("energy_estimated").fill_null(False))
        .then(pl.lit("estimated"))
        .otherwise(pl.lit("measured")),
        precision_variant=precision_variant_expr(),
    )


def ok_runs(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("status") == "ok")


def stat_runs(df: pl.DataFrame) -> pl.DataFrame:
    """The runs that enter the statistics: the ok runs (``derive``d) minus those an outlier rule excluded,
    each with its block (stats.usable) and its peak memory (``peak_mem_bytes``: the device's allocated peak
    for cuda cells, else the process's peak RSS in the window)."""
    d = stats.usable(derive(ok_runs(df)))
    return d.with_columns(
        peak_mem_bytes=pl.when(pl.col("device") == "cuda")
        .then(pl.col("peak_device_mem_allocated_bytes"))
        .otherwise(pl.col("peak_rss_window_bytes"))
        .cast(pl.Float64)
    )


# ------------------------------------------------------------------ repeats
def cell_stats(df: pl.DataFrame, noisy_cv: float | None = None) -> pl.DataFrame:
    """One row per cell (repeats averaged) of the runs that enter the statistics (``stat_runs``: ok, not
    excluded by an outlier rule): mean, std, 95 % CI half-width, CV, noisy; the geometric means and the mean
    log energy per sample that the comparisons use (docs/metrics.md, "Intervals and verdicts").

    CI = t.ppf(0.975, n-1) * std / sqrt(n) (scipy.stats; null for a single repeat): the interval of the
    arithmetic mean. ``noisy`` is true when the CV (std/mean) of energy per sample exceeds ``noisy_cv``
    (None: report.noisy_cv's default, 10 %).
    """
    noisy_cv = _default("report", "noisy_cv") if noisy_cv is None else noisy_cv
    d = stat_runs(df)
    n = pl.col("energy_per_sample_j").count()
    pos = lambda c: pl.col(c).filter(pl.col(c) > 0)  # noqa: E731
    agg = d.group_by(*CELL_KEYS, maintain_order=True).agg(
        precision_variant=pl.col("precision_variant").first(),
        repeats=pl.len(),
        n_energy=n,
        energy_per_sample_j=pl.col("energy_per_sample_j").mean(),
        energy_per_sample_std_j=pl.col("energy_per_sample_j").std(),
        log_mean=pos("energy_per_sample_j").log().mean(),
        energy_per_sample_gm_j=pos("energy_per_sample_j").log().mean().exp(),
        time_per_sample_gm_s=pos("time_per_sample_s").log().mean().exp(),
        peak_mem_bytes=pl.col("peak_mem_bytes").mean(),
        energy_j=pl.col("energy_j").mean(),
        wall_s=pl.col("wall_s").mean(),
        wall_std_s=pl.col("wall_s").std(),
        job_overhead_s=(pl.col("setup_s").fill_null(0) + pl.col("warmup_s").fill_null(0)).mean(),
        time_per_sample_s=pl.col("time_per_sample_s").mean(),
        samples_per_s=pl.col("samples_per_s").mean(),
        samples_per_j=pl.col("samples_per_j").mean(),
        n_samples=pl.col("n_samples").mean(),
        n_test=pl.col("n_test").mean(),
        # n_samples / train_runs is one training run's samples (the same in every run of a cell)
        train_runs=pl.col("train_runs").mean() if "train_runs" in d.columns else pl.lit(None, pl.Float64),
        job_energy_j=pl.col("job_energy_j").mean(),
        job_wall_s=pl.col("job_wall_s").mean(),
        job_outside_phase_energy_j=(pl.col("job_energy_j") - pl.col("energy_j")).mean(),
        node_energy_j=pl.col("node_energy_j").mean(),
        neighbour_cpu_fraction=pl.col("neighbour_cpu_fraction").mean(),
        mean_power_w=pl.col("mean_power_w").mean(),
        co2_kg=pl.col("co2_kg").mean(),
        co2_per_1k_samples_kg=pl.col("co2_per_1k_samples_kg").mean(),
        quality=pl.col("quality").mean(),
        quality_std=pl.col("quality").std(),
        quality_metric=pl.col("quality_metric").drop_nulls().first(),
        quality_higher_is_better=pl.col("quality_higher_is_better").drop_nulls().first(),
        energy_estimated=pl.col("energy_estimated").fill_null(False).any(),
        energy_method=pl.col("energy_method").drop_nulls().unique().sort().str.join("; "),
        hostname=pl.col("hostname").drop_nulls().unique().sort().str.join(", "),
        cpu_model=pl.col("cpu_model").drop_nulls().first(),
        gpu_model=pl.col("gpu_model").drop_nulls().first(),
        carbon_intensity_g_per_kwh=pl.col("carbon_intensity_g_per_kwh").mean(),
        pue=pl.col("pue").mean(),
        alloc_cpus=pl.col("alloc_cpus").mean(),
        alloc_gpus=pl.col("alloc_gpus").mean(),
        cpu_cores_logical=pl.col("cpu_cores_logical").mean(),
        gpu_count=pl.col("gpu_count").mean(),
        flops_per_sample_fwd=pl.col("flops_per_sample_fwd").mean(),
        flops_per_sample_train=pl.col("flops_per_sample_train").mean(),
        flops_per_s=pl.col("flops_per_s").mean(),
        # emulated if any repeat ran emulated; null when no run knew
        precision_native=pl.when(pl.col("precision_native").is_null().all())
        .then(None)
        .otherwise(pl.col("precision_native").drop_nulls().all()),
        precision_backend=pl.col("precision_backend").drop_nulls().unique().sort().str.join(", "),
        precision_scheme=pl.col("precision_scheme").drop_nulls().unique().sort().str.join(", "),
        gpu_compute_capability=pl.col("gpu_compute_capability").drop_nulls().first(),
        cpu_flags=pl.col("cpu_flags").drop_nulls().first(),
        compile_s=pl.col("compile_s").mean(),
    )
    k = agg["n_energy"].cast(pl.Float64).to_numpy()
    t = pl.Series(stats.t95_of_n(k), nan_to_null=True)
    return agg.with_columns(
        energy_per_sample_ci95_j=t * pl.col("energy_per_sample_std_j") / pl.col("n_energy").cast(pl.Float64).sqrt(),
        energy_per_sample_cv=pl.when(pl.col("energy_per_sample_j") > 0).then(
            pl.col("energy_per_sample_std_j") / pl.col("energy_per_sample_j")
        ),
        energy_source=pl.when(pl.col("energy_estimated")).then(pl.lit("estimated")).otherwise(pl.lit("measured")),
    ).with_columns(noisy=pl.col("energy_per_sample_cv").fill_null(0.0) > noisy_cv)


# ------------------------------------------------------------------ baseline
def _is_baseline() -> pl.Expr:
    return (pl.col("precision") == BASELINE_PRECISION) & (pl.col("variant") == BASELINE_VARIANT)


def with_baseline_hash(cells: pl.DataFrame) -> pl.DataFrame:
    """Add baseline_hash: the config hash of the baseline a cell compares with. Its own, except where its
    comparison group (site, workload, phase, device, batch size) has no baseline of its hash but a baseline
    of exactly one other: a precision with its own config hash (a pinned precision_options entry changes
    that precision's cells only, docs/configuration.md) compares with the one fp32 baseline measured beside
    it. With baselines of several configurations in the group (a summary of several seeds), none is chosen."""
    if "baseline_hash" in cells.columns:
        return cells
    group = [k for k in BASELINE_KEYS if k != "baseline_hash"]
    base = cells.filter(_is_baseline())
    own = base.select(*group, "config_hash").unique().with_columns(_own=pl.lit(True))
    single = (
        base.group_by(group)
        .agg(_only=pl.col("config_hash").unique())
        .filter(pl.col("_only").list.len() == 1)
        .with_columns(pl.col("_only").list.first())
    )
    out = cells.join(own, on=[*group, "config_hash"], how="left", nulls_equal=True).join(
        single, on=group, how="left", nulls_equal=True
    )
    return out.with_columns(
        baseline_hash=pl.when(pl.col("_own").is_null() & pl.col("_only").is_not_null())
        .then(pl.col("_only"))
        .otherwise(pl.col("config_hash"))
    ).drop("_own", "_only")


def relative_to_baseline(
    cells: pl.DataFrame, runs: pl.DataFrame | None = None, alpha: float | None = None, power: float | None = None
) -> pl.DataFrame:
    """Add Δenergy %, Δtime % (per sample) and Δquality against the fp32 baseline cell, each with its
    interval, verdict and minimum detectable effect when the runs are given (``runs``: the result rows).

    The baseline shares site, workload, phase, device and batch size, and its config hash is the cell's
    baseline_hash (BASELINE_KEYS: its own, or the one fp32 baseline beside a pinned precision). Δenergy
    and Δtime are the change of the ratio of geometric means (docs/metrics.md, "Intervals and verdicts"):
    per block where the two cells share blocks (same site, configuration and host), else Welch, on the log
    scale; ``d_energy_verdict`` is costlier / cheaper / no detectable difference / one run: no interval /
    withheld (different meters or models), ``d_energy_mde_pct`` the change detectable at ``power``,
    ``d_energy_p`` its two-sided p-value and ``d_energy_q`` the Benjamini-Hochberg q-value over this frame's
    comparisons. Δquality is quality - baseline quality in the metric's own units (an exact Δ where neither
    cell's quality varies between runs); ``quality_better`` says whether that is an improvement given the
    metric's direction; ``d_peak_mem_pct`` the change of peak memory. Cells without a baseline get nulls (see
    ``missing_baselines``). alpha, power None: design.alpha's and design.power's defaults.
    """
    alpha = _default("design", "alpha") if alpha is None else alpha
    power = _default("design", "power") if power is None else power
    gm = "energy_per_sample_gm_j" in cells.columns
    cells = with_baseline_hash(cells)
    base = cells.filter(_is_baseline()).select(
        *BASELINE_KEYS,
        base_energy_per_sample_j=pl.col("energy_per_sample_j"),
        base_time_per_sample_s=pl.col("time_per_sample_s"),
        base_quality=pl.col("quality"),
        _base_e=pl.col("energy_per_sample_gm_j" if gm else "energy_per_sample_j"),
        _base_t=pl.col("time_per_sample_gm_s" if gm else "time_per_sample_s"),
    )
    out = cells.join(base, on=list(BASELINE_KEYS), how="left", nulls_equal=True)
    out = out.with_columns(
        d_energy_pct=(pl.col("energy_per_sample_gm_j" if gm else "energy_per_sample_j") / pl.col("_base_e") - 1) * 100,
        d_time_pct=(pl.col("time_per_sample_gm_s" if gm else "time_per_sample_s") / pl.col("_base_t") - 1) * 100,
        d_quality=pl.col("quality") - pl.col("base_quality"),
    )
    if runs is not None:
        out = _baseline_intervals(out, runs, alpha, power)
    return out.drop("_base_e", "_base_t").with_columns(
        quality_better=pl.when(pl.col("d_quality").is_null())
        .then(None)
        .when(pl.col("quality_higher_is_better").fill_null(True))
        .then(pl.col("d_quality") >= 0)
        .otherwise(pl.col("d_quality") <= 0)
    )


# What each comparison against the baseline measures: (prefix, per-run value, log scale, verdict labels,
# energy: a systematic term where the meters differ).
BASELINE_COMPARISONS = (
    ("d_energy", "energy_per_sample_j", True, (stats.COSTLIER, stats.CHEAPER), True),
    ("d_time", "time_per_sample_s", True, ("slower", "faster"), False),
    ("d_quality", "quality", False, ("higher", "lower"), False),
    ("d_peak_mem", "peak_mem_bytes", True, ("more memory", "less memory"), False),
)


def _baseline_pairs(cells: pl.DataFrame) -> pl.DataFrame:
    """One comparison (``cmp``) per cell with a baseline that is not the baseline itself: a_* = the fp32
    baseline's keys, b_* = the cell's (stats.compare's pairs)."""
    cells = with_baseline_hash(cells)
    base = cells.filter(_is_baseline()).select(*BASELINE_KEYS).unique()
    todo = cells.filter(~_is_baseline()).join(base, on=list(BASELINE_KEYS), how="semi", nulls_equal=True)
    # the baseline's keys: the cell's, but its precision and variant, and its config hash (baseline_hash)
    a = [
        pl.col("baseline_hash" if k == "config_hash" else k).alias(f"a_{k}")
        for k in CELL_KEYS
        if k not in ("precision", "variant")
    ]
    b = [pl.col(k).alias(f"b_{k}") for k in CELL_KEYS]
    return todo.select(
        *a, *b, a_precision=pl.lit(BASELINE_PRECISION), a_variant=pl.lit(BASELINE_VARIANT)
    ).with_row_index("cmp")


def against_baseline(
    cells: pl.DataFrame,
    runs: pl.DataFrame,
    value: str,
    prefix: str,
    *,
    log: bool = True,
    labels: tuple[str, str] = (stats.COSTLIER, stats.CHEAPER),
    systematic: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
) -> pl.DataFrame:
    """Each cell of ``cells`` against its fp32 baseline on the per-run ``value`` of ``runs`` (stat_runs' rows):
    ``<prefix>_pct`` (log: the change of the ratio of geometric means, %; linear: ``<prefix>`` = b - a),
    ``_lo``/``_hi`` (the 1 - alpha interval), ``_mde``, ``_verdict`` ('baseline' for the baseline itself),
    ``_analysis`` and ``_p`` (stats.compare), joined to the cells by their keys; ``_sys_pct`` with systematic."""
    cells = with_baseline_hash(cells)
    pairs = _baseline_pairs(cells)
    res = stats.compare(
        runs, pairs, value, CELL_KEYS, log=log, alpha=alpha, power=power, labels=labels, systematic=systematic
    )
    if log:
        res = stats.log_to_pct(res, prefix, ("d", "lo", "hi", "mde", "sys") if systematic else ("d", "lo", "hi", "mde"))
        point = f"{prefix}_pct"
    else:
        res = res.rename({"d": prefix, "lo": f"{prefix}_lo", "hi": f"{prefix}_hi", "mde": f"{prefix}_mde"})
        point = prefix
    res = res.rename({"verdict": f"{prefix}_verdict", "analysis": f"{prefix}_analysis", "p": f"{prefix}_p"})
    keep = [c for c in res.columns if c.startswith(prefix)]
    res = res.join(pairs.select("cmp", *[pl.col(f"b_{k}").alias(k) for k in CELL_KEYS]), on="cmp")
    out = cells.drop(keep, strict=False).join(
        res.select(*CELL_KEYS, *keep, n_base="n_a", n_cell="n_b", n_pairs="n_pairs").rename(
            {"n_base": f"{prefix}_n_base", "n_cell": f"{prefix}_n", "n_pairs": f"{prefix}_n_pairs"}
        ),
        on=list(CELL_KEYS),
        how="left",
        nulls_equal=True,
    )
    bases = cells.filter(_is_baseline()).select(*BASELINE_KEYS).unique().with_columns(_has_base=pl.lit(True))
    out = out.join(bases, on=list(BASELINE_KEYS), how="left", nulls_equal=True)
    is_base = _is_baseline() & pl.col("energy_per_sample_j").is_not_null()
    return out.with_columns(
        pl.when(is_base).then(pl.lit("baseline")).otherwise(pl.col(f"{prefix}_verdict")).alias(f"{prefix}_verdict"),
        pl.when(is_base).then(0.0).when(pl.col("_has_base").fill_null(False)).then(pl.col(point)).alias(point),
    ).drop("_has_base")


def _baseline_intervals(out: pl.DataFrame, df: pl.DataFrame, alpha: float, power: float) -> pl.DataFrame:
    """relative_to_baseline's intervals: one comparison per (cell, its baseline) and quantity."""
    runs = stat_runs(df)
    for prefix, value, log, labels, systematic in BASELINE_COMPARISONS:
        out = against_baseline(
            out, runs, value, prefix, log=log, labels=labels, systematic=systematic, alpha=alpha, power=power
        )
        if prefix != "d_energy":
            out = out.drop(f"{prefix}_n_base", f"{prefix}_n", f"{prefix}_n_pairs")
    out = out.rename({"d_energy_n_base": "n_base", "d_energy_n": "n_cell", "d_energy_n_pairs": "n_pairs"})
    out = out.with_columns(d_energy_q=pl.Series(stats.bh(stats.as_array(out, "d_energy_p")), nan_to_null=True))
    # quality: higher / lower read in the metric's direction
    hib = pl.col("quality_higher_is_better").fill_null(True)
    return out.with_columns(
        d_quality_verdict=pl.when(pl.col("d_quality_verdict") == "higher")
        .then(pl.when(hib).then(pl.lit("better")).otherwise(pl.lit("worse")))
        .when(pl.col("d_quality_verdict") == "lower")
        .then(pl.when(hib).then(pl.lit("worse")).otherwise(pl.lit("better")))
        .otherwise(pl.col("d_quality_verdict"))
    )


def emulated(rel: pl.DataFrame) -> pl.DataFrame:
    """Precisions a device ran emulated (``precision_native`` false), with their measured slowdown.

    One row per (site, device, hardware, precision): the cells (repeats averaged, output of
    ``relative_to_baseline``) and the range of their time per sample relative to the fp32 baseline
    of the same site/workload/phase/device/batch size (``slowdown_min``/``slowdown_max``, from the
    rows; null where no cell has a baseline). Hardware is the GPU model for cuda cells, else the CPU model.
    """
    cols = {
        "site": pl.String,
        "device": pl.String,
        "hardware": pl.String,
        "precision": pl.String,
        "cells": pl.UInt32,
        "cells_with_baseline": pl.UInt32,
        "slowdown_min": pl.Float64,
        "slowdown_max": pl.Float64,
        "workloads": pl.String,
        "cpu_flags": pl.String,
        "gpu_compute_capability": pl.String,
    }
    if rel.height == 0 or "precision_native" not in rel.columns:
        return pl.DataFrame(schema=cols)
    ratio = pl.col("time_per_sample_s") / pl.col("base_time_per_sample_s")
    d = rel.filter(pl.col("precision_native").eq(False)).with_columns(
        hardware=pl.when(pl.col("device") == "cuda").then(pl.col("gpu_model")).otherwise(pl.col("cpu_model")),
        ratio=ratio,
    )
    if d.height == 0:
        return pl.DataFrame(schema=cols)
    return (
        d.group_by("site", "device", "hardware", "precision", maintain_order=True)
        .agg(
            cells=pl.len(),
            cells_with_baseline=pl.col("ratio").count(),
            slowdown_min=pl.col("ratio").min(),
            slowdown_max=pl.col("ratio").max(),
            workloads=pl.col("workload").unique().sort().str.join(", "),
            cpu_flags=pl.col("cpu_flags").drop_nulls().first(),
            gpu_compute_capability=pl.col("gpu_compute_capability").drop_nulls().first(),
        )
        .with_columns(pl.col("cells", "cells_with_baseline").cast(pl.UInt32))
        .sort("site", "device", "precision")
    )


def emulated_notes(emu: pl.DataFrame) -> list[str]:
    """One sentence per row of ``emulated``: 'bf16 on Intel Xeon (site local, cpu) is emulated: 6.1–13.0× slower
    than fp32 ...'."""
    out = []
    for r in emu.iter_rows(named=True):
        what = "CPU" if r["device"] != "cuda" else "GPU"
        hw = r["hardware"] or f"this {what}"
        if r["slowdown_min"] is None:
            cost = "no fp32 baseline was measured, so its slowdown is unknown"
        else:
            lo, hi = r["slowdown_min"], r["slowdown_max"]
            rng = f"{lo:.1f}×" if abs(hi - lo) < 0.05 else f"{lo:.1f}–{hi:.1f}×"
            side = "slower than" if lo > 1 else ("faster than" if hi < 1 else "the time per sample of")
            if side == "faster than":
                rng = f"{1 / hi:.1f}×" if abs(1 / lo - 1 / hi) < 0.05 else f"{1 / hi:.1f}–{1 / lo:.1f}×"
            cost = f"{rng} {side} fp32 per sample"
            cost += f" ({r['cells_with_baseline']} cell(s): {r['workloads']})"
        why = (
            f"compute capability {r['gpu_compute_capability']}"
            if r["device"] == "cuda"
            else f"CPU flags: {r['cpu_flags'] or 'none of the relevant ones'}"
        )
        out.append(
            f"{r['precision']} on {hw} (site {r['site']}, {r['device']}) is emulated: {cost}. "
            f"The host lacks the instructions for it ({why}): the figure is the host's, not the precision's."
        )
    return out


def missing_baselines(cells: pl.DataFrame) -> pl.DataFrame:
    """Comparison groups (site/workload/phase/device/batch) that have cells but no ok fp32 baseline."""
    cells = with_baseline_hash(cells)
    have = cells.filter(_is_baseline()).select(*BASELINE_KEYS).unique()
    groups = cells.group_by(*BASELINE_KEYS).agg(cells=pl.col("precision_variant").unique().sort().str.join(", "))
    return groups.join(have, on=list(BASELINE_KEYS), how="anti", nulls_equal=True).sort(*BASELINE_KEYS)


# ------------------------------------------------------------------ time / energy to target
def _target_met(q: pl.Expr, target: pl.Expr, higher: pl.Expr) -> pl.Expr:
    return pl.when(higher.fill_null(True)).then(q >= target).otherwise(q <= target)


def time_to_target(df: pl.DataFrame, targets: dict[str, float] | None = None, eta: float | None = None) -> pl.DataFrame:
    """TTA / ETA per ok training run from its per-epoch curves, and Zeus's cost.

    The target of a workload is, in order: ``targets[workload]`` (config ``report.targets``); the
    run's own ``target_quality``; else the *common target*: the worst of the per-run best epoch
    qualities of that workload and phase, i.e. the best quality every run reached.
    TTA = cumulative wall time at the first epoch whose quality meets the target; ETA = cumulative
    energy at that epoch (``epoch_energy_j``, primary meter). Cost (Zeus, You et al. NSDI'23) =
    η·ETA + (1-η)·MaxPower·TTA, with MaxPower = ``gpu_power_limit_w`` where known, else the highest
    mean power measured on the same host and device in the results (a stand-in, see docs/metrics.md).
    eta None: report.eta's default.
    """
    eta = _default("report", "eta") if eta is None else eta
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"config key report.eta: {eta!r} must be between 0 and 1")
    targets = targets or {}
    d = derive(ok_runs(df)).filter((pl.col("phase") == "train") & (pl.col("epoch_quality").list.len() > 0))
    if d.height == 0:
        return d.with_columns(
            target=pl.lit(None, pl.Float64),
            target_source=pl.lit(None, pl.String),
            epochs_to_target=pl.lit(None, pl.Int64),
            tta_s=pl.lit(None, pl.Float64),
            eta_j=pl.lit(None, pl.Float64),
            max_power_w=pl.lit(None, pl.Float64),
            zeus_cost=pl.lit(None, pl.Float64),
        )
    higher = pl.col("quality_higher_is_better").fill_null(True)
    best = pl.when(higher).then(pl.col("epoch_quality").list.max()).otherwise(pl.col("epoch_quality").list.min())
    d = d.with_columns(best_epoch_quality=best)
    common = (
        pl.when(higher)
        .then(pl.col("best_epoch_quality").min())
        .otherwise(pl.col("best_epoch_quality").max())
        .over("workload", "phase")
    )
    cfg_target = pl.col("workload").replace_strict(
        {k: float(v) for k, v in targets.items()}, default=None, return_dtype=pl.Float64
    )
    d = d.with_columns(
        target=pl.coalesce(cfg_target, pl.col("target_quality"), common),
        target_source=pl.when(cfg_target.is_not_null())
        .then(pl.lit("config"))
        .when(pl.col("target_quality").is_not_null())
        .then(pl.lit("run"))
        .otherwise(pl.lit("common")),
    )
    ex = _explode_curves(d)
    hit = (
        ex.filter(_target_met(pl.col("q"), pl.col("target"), pl.col("quality_higher_is_better")))
        .group_by("run_id")
        .agg(pl.all().sort_by("epoch").first())
        .select("run_id", epochs_to_target="epoch", tta_s="t", eta_j="e")
    )
    d = d.join(hit, on="run_id", how="left")
    # MaxPower: the device's power limit (Zeus) where known, else the highest mean power seen on the host/device.
    d = d.with_columns(
        max_power_w=pl.coalesce(pl.col("gpu_power_limit_w"), pl.col("mean_power_w").max().over("hostname", "device"))
    )
    return d.with_columns(zeus_cost=eta * pl.col("eta_j") + (1 - eta) * pl.col("max_power_w") * pl.col("tta_s"))


def _explode_curves(d: pl.DataFrame) -> pl.DataFrame:
    """One row per (run, epoch): q, t (cumulative s), e (cumulative J, null if the curve is absent)."""
    n = pl.col("epoch_quality").list.len()
    e_ok = pl.col("epoch_energy_j").list.len().fill_null(-1) == n
    w_ok = pl.col("epoch_wall_s").list.len().fill_null(-1) == n
    base = d.select(
        "run_id",
        "target",
        "quality_higher_is_better",
        q="epoch_quality",
        t=pl.when(w_ok).then(pl.col("epoch_wall_s")).otherwise(pl.lit(None, pl.List(pl.Float64))),
        e=pl.when(e_ok).then(pl.col("epoch_energy_j")).otherwise(pl.lit(None, pl.List(pl.Float64))),
        epoch=pl.int_ranges(1, n + 1),
    )
    base = base.with_columns(
        t=pl.when(pl.col("t").is_null())
        .then(pl.col("epoch").list.eval(pl.lit(None, pl.Float64)))
        .otherwise(pl.col("t")),
        e=pl.when(pl.col("e").is_null())
        .then(pl.col("epoch").list.eval(pl.lit(None, pl.Float64)))
        .otherwise(pl.col("e")),
    )
    return base.explode("q", "t", "e", "epoch")


def best_batch_size(tta: pl.DataFrame) -> pl.DataFrame:
    """Per (site, workload, device, precision+variant): the batch size with the lowest mean Zeus cost."""
    d = tta.filter(pl.col("zeus_cost").is_not_null())
    keys = ("site", "workload", "device", "precision_variant")
    if d.height == 0:
        return pl.DataFrame(
            schema={
                **{k: pl.String for k in keys},
                "batch_size": pl.Int64,
                "zeus_cost": pl.Float64,
                "tta_s": pl.Float64,
                "eta_j": pl.Float64,
                "candidates": pl.UInt32,
            }
        )
    per_bs = d.group_by(*keys, "batch_size").agg(
        zeus_cost=pl.col("zeus_cost").mean(), tta_s=pl.col("tta_s").mean(), eta_j=pl.col("eta_j").mean()
    )
    return (
        per_bs.sort("zeus_cost")
        .group_by(*keys, maintain_order=True)
        .agg(pl.all().first(), candidates=pl.len())
        .select(*keys, "batch_size", "zeus_cost", "tta_s", "eta_j", "candidates")
        .sort(*keys)
    )


def batch_sizes_like_the_best(
    tta: pl.DataFrame, alpha: float | None = None, power: float | None = None
) -> pl.DataFrame:
    """``best_batch_size`` with ``could_be_best``: per (site, workload, device, precision+variant), every batch
    size whose Zeus cost cannot be told apart from the lowest (stats.best_set on the runs' log cost: each batch
    size against every other, one-sided, Holm at design.alpha; a batch size with one run cannot be excluded)."""
    alpha = _default("design", "alpha") if alpha is None else alpha
    power = _default("design", "power") if power is None else power
    best = best_batch_size(tta)
    keys = ("site", "workload", "device", "precision_variant", "batch_size")
    d = tta.filter(pl.col("zeus_cost") > 0)
    if best.height == 0 or d.height == 0:
        return best.with_columns(could_be_best=pl.lit(None, pl.String))
    runs = stats.usable(d)
    cells = runs.group_by(*keys).agg(log_mean=pl.col("zeus_cost").log().mean())
    bs = stats.best_set(runs, cells, keys[:-1], keys, "zeus_cost", alpha=alpha, power=power)
    tied = (
        bs.filter(pl.col("could_be_best"))
        .sort("log_mean")
        .group_by(*keys[:-1], maintain_order=True)
        .agg(could_be_best=pl.col("batch_size").cast(pl.String).str.join(", "))
    )
    return best.join(tied, on=list(keys[:-1]), how="left", nulls_equal=True)


# ------------------------------------------------------------------ Pareto front
def pareto(cells: pl.DataFrame) -> pl.DataFrame:
    """Mark cells on the quality-vs-energy-per-sample Pareto front of their (workload, phase).

    A cell is on the front when no other cell of the group has lower-or-equal energy per sample and
    better-or-equal quality with at least one strictly better (direction from quality_higher_is_better).
    Cells without quality or energy are never on the front.
    """
    d = cells.with_row_index("_i")
    valid = d.filter(pl.col("quality").is_not_null() & pl.col("energy_per_sample_j").is_not_null())
    on_front: list[int] = []
    for _, g in valid.group_by("workload", "phase"):
        higher = g["quality_higher_is_better"].drop_nulls()
        sign = 1.0 if (higher.len() == 0 or bool(higher[0])) else -1.0
        # sort by energy, then best quality first; sweep keeping the running best quality
        pts = sorted(
            zip(g["energy_per_sample_j"], (sign * q for q in g["quality"]), g["_i"], strict=True),
            key=lambda p: (p[0], -p[1]),
        )
        best = -math.inf
        for _e, q, i in pts:
            if q > best:
                on_front.append(i)
                best = q
    return d.with_columns(pareto=pl.col("_i").is_in(on_front)).drop("_i")


# ------------------------------------------------------------------ SCI
def sci(
    cells: pl.DataFrame, sites: dict[str, Any] | None = None, hardware: dict[str, Any] | None = None
) -> pl.DataFrame:
    """Software Carbon Intensity per functional unit R = 1,000 samples (inferences for phase infer).

    SCI = (E·I + M) / R with E = energy_j/3.6e6 kWh × PUE, I = site intensity (gCO2e/kWh) and
    M = embodied_kg × 1000 × (wall_s / lifetime_s) × resource share (allocated CPUs / logical CPUs,
    or allocated GPUs / GPUs of the node for cuda cells). I and PUE come from ``sites`` (config/sites.yaml)
    and fall back to the values recorded in the run; embodied kgCO2e and lifetime from ``hardware``
    (config/hardware.yaml). M is null where the site has no hardware entry.
    """
    sites = sites or {}
    hardware = hardware or {}
    site_i = {k: (v or {}).get("carbon_intensity_g_per_kwh") for k, v in sites.items()}
    site_pue = {k: (v or {}).get("pue") for k, v in sites.items()}

    def hw(key: str, dev: str) -> dict[str, float | None]:
        return {s: (((h or {}).get(dev) or {}).get(key)) for s, h in hardware.items()}

    def site_map(m: dict[str, Any]) -> pl.Expr:
        m = {k: (float(v) if v is not None else None) for k, v in m.items()}
        return pl.col("site").replace_strict(m, default=None, return_dtype=pl.Float64)

    is_gpu = pl.col("device") == "cuda"
    emb_kg = (
        pl.when(is_gpu)
        .then(site_map(hw("embodied_kg_co2e", "gpu_node")))
        .otherwise(site_map(hw("embodied_kg_co2e", "cpu_node")))
    )
    life_y = (
        pl.when(is_gpu)
        .then(site_map(hw("lifetime_years", "gpu_node")))
        .otherwise(site_map(hw("lifetime_years", "cpu_node")))
    )
    share = (
        pl.when(is_gpu)
        .then(pl.col("alloc_gpus").fill_null(1) / pl.col("gpu_count").fill_null(1).clip(lower_bound=1))
        .otherwise(pl.col("alloc_cpus") / pl.col("cpu_cores_logical"))
        .clip(0.0, 1.0)
    )
    out = cells.with_columns(
        sci_intensity_g_per_kwh=pl.coalesce(site_map(site_i), pl.col("carbon_intensity_g_per_kwh")),
        sci_pue=pl.coalesce(site_map(site_pue), pl.col("pue"), pl.lit(1.0)),
        sci_resource_share=share,
    )
    out = out.with_columns(
        sci_operational_g=co2_g(pl.col("energy_j"), pl.col("sci_intensity_g_per_kwh"), pl.col("sci_pue")),
        sci_embodied_g=emb_kg * 1000 * pl.col("wall_s") / (life_y * 365.25 * 86400) * pl.col("sci_resource_share"),
    )
    r = pl.col("n_samples") / 1000
    return out.with_columns(
        sci_g_per_1k=pl.when(r > 0).then((pl.col("sci_operational_g") + pl.col("sci_embodied_g").fill_null(0)) / r),
        sci_embodied_share=pl.col("sci_embodied_g") / (pl.col("sci_operational_g") + pl.col("sci_embodied_g")),
    )


# ------------------------------------------------------------------ fleet what-if
FLEET_SCOPES = ("phase", "job")
# a cell as the report's tables and CSVs name it (precision and variant as one label), in their column order
VIEW_KEYS = ("site", "workload", "phase", "device", "precision_variant", "batch_size")
FLEET_CSV_COLUMNS = (
    *VIEW_KEYS,
    "samples_per_job",
    "mwh_per_day",
    "t_co2_per_day",
    "saving_pct",
    "fleet_scope",
    "jobs_per_day",
    "energy_per_job_j",
    "energy_source",
    # fleet_intervals: each bar's range, and the change of a job's energy against fp32 with its interval and verdict
    "mwh_per_day_lo",
    "mwh_per_day_hi",
    "d_energy_job_pct",
    "d_energy_job_lo_pct",
    "d_energy_job_hi_pct",
    "d_energy_job_mde_pct",
    "d_energy_job_sys_pct",
    "d_energy_job_verdict",
    "d_energy_job_analysis",
)


def samples_per_job_expr(spec: int | dict[str, Any] | None = None) -> pl.Expr:
    """Samples one fleet job processes, per cell: ``fleet.samples_per_job`` (a number for every cell, or
    per workload: a number or {train: N, infer: N}), else the defaults -- inference: one pass over the
    test split (``n_test``); training: one training run as measured (``n_samples / train_runs``). Never the
    whole window (``n_samples`` counts every pass or training run of its window)."""
    runs = pl.col("train_runs").fill_null(1).cast(pl.Float64)  # with_train_runs: present in every frame
    expr = (
        pl.when(pl.col("phase") == "infer")
        .then(pl.col("n_test").cast(pl.Float64))
        .otherwise(pl.col("n_samples").cast(pl.Float64) / runs)
    )
    if spec is None:
        return expr
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return pl.lit(float(spec))
    for wl, v in spec.items():
        if isinstance(v, dict):
            for ph, n in v.items():
                if n:
                    expr = (
                        pl.when((pl.col("workload") == wl) & (pl.col("phase") == ph))
                        .then(pl.lit(float(n)))
                        .otherwise(expr)
                    )
        elif v:
            expr = pl.when(pl.col("workload") == wl).then(pl.lit(float(v))).otherwise(expr)
    return expr


def with_train_runs(d: pl.DataFrame) -> pl.DataFrame:
    """The frame with a ``train_runs`` column (null where the rows have none: one training run per window)."""
    return d if "train_runs" in d.columns else d.with_columns(train_runs=pl.lit(None, pl.Float64))


def fleet(
    cells: pl.DataFrame,
    sites: dict[str, Any] | None = None,
    jobs_per_day: float | None = None,
    per_site: dict[str, float] | None = None,
    samples_per_job: int | dict[str, Any] | None = None,
    scope: str | None = None,
) -> pl.DataFrame:
    """Scale the energy of one equal-work job to a fleet of jobs/day per site.

    A *job* is a fixed amount of work, ``samples_per_job`` samples (``samples_per_job_expr``):
    E_job = energy per sample x samples per job (scope ``phase``), plus the job's measured energy
    outside its phase -- start-up, data, model, warm-up, writing: job_energy_j - energy_j -- with scope
    ``job``. kWh/day = jobs/day × E_job/3.6e6 × PUE; tCO2e/day = kWh/day × I / 1e6.
    ``saving_mwh_per_day`` / ``saving_pct`` compare each cell with its fp32 baseline (same
    site/workload/phase/device/batch); positive = the variant saves energy. jobs_per_day and scope
    None: fleet.jobs_per_day's and fleet.scope's defaults.
    """
    jobs_per_day = _default("fleet", "jobs_per_day") if jobs_per_day is None else jobs_per_day
    scope = _default("fleet", "scope") if scope is None else scope
    if scope not in FLEET_SCOPES:
        raise ValueError(f"config key fleet.scope: {scope!r} is not allowed. Fix: use one of {', '.join(FLEET_SCOPES)}")
    sites = sites or {}
    per_site = per_site or {}
    jobs = pl.col("site").replace_strict(
        {k: float(v) for k, v in per_site.items()}, default=float(jobs_per_day), return_dtype=pl.Float64
    )
    pue_map = {k: float((v or {}).get("pue")) for k, v in sites.items() if (v or {}).get("pue") is not None}
    i_map = {
        k: float((v or {}).get("carbon_intensity_g_per_kwh"))
        for k, v in sites.items()
        if (v or {}).get("carbon_intensity_g_per_kwh") is not None
    }
    pue = pl.coalesce(
        pl.col("site").replace_strict(pue_map, default=None, return_dtype=pl.Float64), pl.col("pue"), pl.lit(1.0)
    )
    inten = pl.coalesce(
        pl.col("site").replace_strict(i_map, default=None, return_dtype=pl.Float64),
        pl.col("carbon_intensity_g_per_kwh"),
    )
    if "job_outside_phase_energy_j" not in cells.columns:
        cells = cells.with_columns(job_outside_phase_energy_j=pl.lit(None, pl.Float64))
    e_job = pl.col("energy_per_sample_j") * pl.col("samples_per_job")
    if scope == "job":
        e_job = e_job + pl.col("job_outside_phase_energy_j")
    d = with_baseline_hash(with_train_runs(cells)).with_columns(
        jobs_per_day=jobs, samples_per_job=samples_per_job_expr(samples_per_job), fleet_scope=pl.lit(scope)
    )
    d = d.with_columns(energy_per_job_j=e_job).with_columns(
        mwh_per_day=kwh(pl.col("jobs_per_day") * pl.col("energy_per_job_j")) * pue / 1000,
        fleet_intensity_g_per_kwh=inten,
    )
    d = d.with_columns(
        t_co2_per_day=co2_g(
            pl.col("jobs_per_day") * pl.col("energy_per_job_j"), pl.col("fleet_intensity_g_per_kwh"), pue
        )
        / 1e6
    )
    base = d.filter(_is_baseline()).select(
        *BASELINE_KEYS, base_mwh_per_day="mwh_per_day", base_t_co2_per_day="t_co2_per_day"
    )
    d = d.join(base, on=list(BASELINE_KEYS), how="left", nulls_equal=True)
    return d.with_columns(
        saving_mwh_per_day=pl.col("base_mwh_per_day") - pl.col("mwh_per_day"),
        saving_t_co2_per_day=pl.col("base_t_co2_per_day") - pl.col("t_co2_per_day"),
        saving_pct=(1 - pl.col("mwh_per_day") / pl.col("base_mwh_per_day")) * 100,
    )


def fleet_intervals(
    fl: pl.DataFrame,
    df: pl.DataFrame,
    samples_per_job: int | dict[str, Any] | None = None,
    scope: str | None = None,
    alpha: float | None = None,
    power: float | None = None,
) -> pl.DataFrame:
    """The fleet table ``fl`` (``fleet``) with the statistics of its runs (``df``: the result rows):

    - ``mwh_per_day_lo`` / ``mwh_per_day_hi``: each bar's range, the 95 % interval of the mean energy of one job
      over the cell's runs (t.ppf(0.975, n - 1) sd / sqrt(n) of the per-run job energy, scaled like the bar);
      null for a single run;
    - ``d_energy_job_pct`` with ``_lo_pct``, ``_hi_pct``, ``_mde_pct``, ``_verdict``: the change of one job's
      energy against the fp32 baseline as a ratio of geometric means with its 1 - alpha interval
      (against_baseline; per block or Welch by the design). ``saving_pct`` stays the arithmetic one (the bill)."""
    alpha = _default("design", "alpha") if alpha is None else alpha
    power = _default("design", "power") if power is None else power
    scope = _default("fleet", "scope") if scope is None else scope
    runs = with_train_runs(stat_runs(df))
    e_job = pl.col("energy_per_sample_j") * samples_per_job_expr(samples_per_job)
    if scope == "job":
        e_job = e_job + (pl.col("job_energy_j") - pl.col("energy_j"))
    runs = runs.with_columns(energy_per_job_j=e_job)
    spread = (
        runs.filter(pl.col("energy_per_job_j").is_not_null())
        .group_by(*CELL_KEYS)
        .agg(_n=pl.len(), _m=pl.col("energy_per_job_j").mean(), _sd=pl.col("energy_per_job_j").std())
    )
    k = spread["_n"].cast(pl.Float64).to_numpy()
    spread = spread.with_columns(_t=pl.Series(stats.t95_of_n(k), nan_to_null=True))
    out = fl.join(spread, on=list(CELL_KEYS), how="left", nulls_equal=True)
    scale = pl.col("mwh_per_day") / pl.col("energy_per_job_j")
    half = pl.col("_t") * pl.col("_sd") / pl.col("_n").cast(pl.Float64).sqrt()
    out = out.with_columns(
        mwh_per_day_lo=(pl.col("_m") - half).clip(lower_bound=0.0) * scale,
        mwh_per_day_hi=(pl.col("_m") + half) * scale,
    ).drop("_n", "_m", "_sd", "_t")
    out = against_baseline(out, runs, "energy_per_job_j", "d_energy_job", systematic=True, alpha=alpha, power=power)
    return out.drop("d_energy_job_n_base", "d_energy_job_n", "d_energy_job_n_pairs")


# ------------------------------------------------------------------ scheduler view
def scheduler_view(df: pl.DataFrame) -> pl.DataFrame:
    """Per (site, scheduler): jobs, queue wait (mean / median / max) and batch efficiency.

    Batch efficiency = measured compute time (wall_s of the measured phase) / turnaround, where
    turnaround = finished_at - submit_time (falls back to job_start_time, then started_at when the
    scheduler did not report a submit time, e.g. local runs; ``turnaround_from`` says which).
    """
    d = _with_turnaround(ok_runs(df)).with_columns(
        overhead_s=pl.col("turnaround_s") - pl.col("queue_wait_s").fill_null(0) - pl.col("wall_s"),
    )
    return (
        d.group_by("site", "scheduler")
        .agg(
            jobs=pl.len(),
            queue_wait_mean_s=pl.col("queue_wait_s").mean(),
            queue_wait_median_s=pl.col("queue_wait_s").median(),
            queue_wait_max_s=pl.col("queue_wait_s").max(),
            wall_mean_s=pl.col("wall_s").mean(),
            overhead_mean_s=pl.col("overhead_s").mean(),
            turnaround_mean_s=pl.col("turnaround_s").mean(),
            batch_efficiency=_batch_efficiency(),
            turnaround_from=pl.col("turnaround_from").unique().sort().str.join(", "),
        )
        .sort("site", "scheduler")
    )


def _batch_efficiency() -> pl.Expr:
    """Batch efficiency of a group of runs: the measured time over the time from submission to the end,
    Σ wall_s / Σ turnaround_s (the scheduler view and the site comparison use the same definition)."""
    return pl.col("wall_s").sum() / pl.col("turnaround_s").sum()


def _with_turnaround(d: pl.DataFrame) -> pl.DataFrame:
    """turnaround_s = finished_at - submit_time (else job_start_time, else started_at) and turnaround_from."""
    start = pl.coalesce("submit_time", "job_start_time", "started_at")
    return d.with_columns(
        turnaround_s=(pl.col("finished_at") - start).dt.total_microseconds() / 1e6,
        turnaround_from=pl.when(pl.col("submit_time").is_not_null())
        .then(pl.lit("submit"))
        .when(pl.col("job_start_time").is_not_null())
        .then(pl.lit("job start"))
        .otherwise(pl.lit("process start")),
    )


# ------------------------------------------------------------------ sites
# The same cell at several sites: the cell without its site (and repeat). config_hash is in it so that
# two configurations are never compared as one (the summary holds the current configuration anyway).
SITE_CELL_KEYS = tuple(
    "precision_variant" if k == "precision" else k for k in CELL_KEYS if k not in ("site", "variant")
)


def _site_factor(sites: dict[str, Any] | None, key: str) -> pl.Expr:
    """A site fact of config/sites.yaml (carbon intensity, PUE) per row, else the value the run recorded."""
    m = {k: float(v[key]) for k, v in (sites or {}).items() if (v or {}).get(key) is not None}
    return pl.coalesce(pl.col("site").replace_strict(m, default=None, return_dtype=pl.Float64), pl.col(key))


def site_comparison(df: pl.DataFrame, sites: dict[str, Any] | None = None) -> pl.DataFrame:
    """The same cell (SITE_CELL_KEYS) side by side across sites: one row per (cell, site) of the ok runs,
    for the cells measured at two sites or more, repeats averaged.

    co2_per_1k_samples_g = energy_per_sample_j × 1000 / 3.6e6 kWh × PUE × intensity, with the site's
    current intensity and PUE (``sites``: config/sites.yaml; the run's recorded ones where the site
    has none). Whole-job overhead: job_wall_s, job_energy_j and the fractions of the job's time and
    energy outside the measured phase (means over repeats). batch_efficiency = Σ wall_s / Σ turnaround
    (scheduler_view's definition)."""
    d = _with_turnaround(derive(ok_runs(df))).with_columns(
        intensity_g_per_kwh=_site_factor(sites, "carbon_intensity_g_per_kwh"),
        site_pue=pl.coalesce(_site_factor(sites, "pue"), pl.lit(1.0)),
    )
    per = d.group_by(*SITE_CELL_KEYS, "site").agg(
        repeats=pl.len(),
        scheduler=pl.col("scheduler").drop_nulls().unique().sort().str.join(", "),
        hosts=pl.col("hostname").drop_nulls().unique().sort().str.join(", "),
        wall_s=pl.col("wall_s").mean(),
        time_per_sample_s=pl.col("time_per_sample_s").mean(),
        energy_per_sample_j=pl.col("energy_per_sample_j").mean(),
        intensity_g_per_kwh=pl.col("intensity_g_per_kwh").mean(),
        pue=pl.col("site_pue").mean(),
        queue_wait_s=pl.col("queue_wait_s").mean(),
        job_wall_s=pl.col("job_wall_s").mean(),
        job_energy_j=pl.col("job_energy_j").mean(),
        job_time_outside_phase_fraction=pl.col("job_time_outside_phase_fraction").mean(),
        job_energy_outside_phase_fraction=pl.col("job_energy_outside_phase_fraction").mean(),
        batch_efficiency=_batch_efficiency(),
        energy_source=pl.col("energy_source").unique().sort().str.join(", "),
    )
    per = per.with_columns(
        co2_per_1k_samples_g=co2_g(pl.col("energy_per_sample_j") * 1000, pl.col("intensity_g_per_kwh"), pl.col("pue")),
        n_sites=pl.col("site").n_unique().over(*SITE_CELL_KEYS),
    )
    cols = [
        *SITE_CELL_KEYS,
        "site",
        "scheduler",
        "hosts",
        "repeats",
        "wall_s",
        "time_per_sample_s",
        "energy_per_sample_j",
        "co2_per_1k_samples_g",
        "intensity_g_per_kwh",
        "pue",
        "queue_wait_s",
        "job_wall_s",
        "job_energy_j",
        "job_time_outside_phase_fraction",
        "job_energy_outside_phase_fraction",
        "batch_efficiency",
        "energy_source",
    ]
    return per.filter(pl.col("n_sites") >= 2).select(cols).sort(*SITE_CELL_KEYS, "site")


WHERE_TO_RUN_CRITERION = (
    "lowest CO2 per sample at equal work: per workload and phase, each site's mean CO2 per 1,000 samples (with its "
    "own carbon intensity and PUE) over the same cells, those (device, precision, batch size) measured at every "
    "site that ran it"
)


def where_to_run(comp: pl.DataFrame) -> pl.DataFrame:
    """Per (workload, phase) and site, from ``site_comparison``: the WHERE_TO_RUN_CRITERION score
    (co2_per_1k_samples_g averaged over the cells every site measured, so every site does the same work),
    the same mean of energy and time per sample, the site's rank (1 = where to run it) and its CO2
    relative to the best site (vs_best: 1.0 for the best)."""
    schema = {
        "workload": pl.String,
        "phase": pl.String,
        "rank": pl.UInt32,
        "site": pl.String,
        "common_cells": pl.UInt32,
        "co2_per_1k_samples_g": pl.Float64,
        "vs_best": pl.Float64,
        "energy_per_sample_j": pl.Float64,
        "time_per_sample_s": pl.Float64,
        "intensity_g_per_kwh": pl.Float64,
        "pue": pl.Float64,
    }
    c = comp.filter(pl.col("co2_per_1k_samples_g").is_not_null())
    if c.height == 0:
        return pl.DataFrame(schema=schema)
    c = c.with_columns(sites_of_workload=pl.col("site").n_unique().over("workload", "phase", "config_hash"))
    common = c.filter(pl.col("site").n_unique().over(*SITE_CELL_KEYS) == pl.col("sites_of_workload"))
    if common.height == 0:
        return pl.DataFrame(schema=schema)
    score = common.group_by("workload", "phase", "config_hash", "site").agg(
        common_cells=pl.len(),
        co2_per_1k_samples_g=pl.col("co2_per_1k_samples_g").mean(),
        energy_per_sample_j=pl.col("energy_per_sample_j").mean(),
        time_per_sample_s=pl.col("time_per_sample_s").mean(),
        intensity_g_per_kwh=pl.col("intensity_g_per_kwh").mean(),
        pue=pl.col("pue").mean(),
    )
    grp = ("workload", "phase", "config_hash")
    score = score.with_columns(
        rank=pl.col("co2_per_1k_samples_g").rank("ordinal").over(*grp).cast(pl.UInt32),
        vs_best=pl.col("co2_per_1k_samples_g") / pl.col("co2_per_1k_samples_g").min().over(*grp),
        common_cells=pl.col("common_cells").cast(pl.UInt32),
    )
    return score.select(list(schema)).sort("workload", "phase", "rank")


def where_to_run_intervals(
    where: pl.DataFrame, comp: pl.DataFrame, df: pl.DataFrame, alpha: float | None = None, power: float | None = None
) -> pl.DataFrame:
    """``where_to_run``'s table with, per site, its CO2 per sample against the best site's and whether the two can
    be told apart (docs/metrics.md, "Sites"): over the common cells, the geometric mean of the ratio

        d = mean_c [mean log E(site, c) - mean log E(best, c)] + log(PUE I / (PUE I)_best)

    with se^2 = sum_c (s^2/n)_both / K^2 and Welch-Satterthwaite df over every term (two sites never share
    blocks); ``vs_best_gm`` = exp(d) with ``vs_best_lo`` / ``vs_best_hi`` (1 - alpha, systematic term included
    where the sites' meters or models differ), ``p_holm`` the one-sided test of "emits more than the best",
    Holm over the sites of the workload and phase, and ``site_verdict``: observed best / cannot be told apart
    from the best / emits more / one run: no interval / withheld (different meters or models, no stated error)."""
    alpha = _default("design", "alpha") if alpha is None else alpha
    power = _default("design", "power") if power is None else power
    grp = ("workload", "phase", "config_hash")
    extra = {
        "vs_best_gm": pl.Float64,
        "vs_best_lo": pl.Float64,
        "vs_best_hi": pl.Float64,
        "p_holm": pl.Float64,
        "site_verdict": pl.String,
    }
    if where.height == 0:
        return where.with_columns([pl.lit(None, t).alias(k) for k, t in extra.items()])
    w = (
        where.join(comp.select(*grp).unique(), on=["workload", "phase"], how="left")
        if "config_hash" not in where.columns
        else where
    )
    best = w.filter(pl.col("rank") == 1).select(*grp, best_site="site")
    cells = comp.select(*SITE_CELL_KEYS, "site").with_columns(
        n_sites=pl.col("site").n_unique().over(*SITE_CELL_KEYS),
        sites_of=pl.col("site").n_unique().over(*grp),
    )
    common = cells.filter(pl.col("n_sites") == pl.col("sites_of")).join(best, on=list(grp))
    sides = [pl.col(k).alias(f"a_{k}") for k in SITE_CELL_KEYS] + [pl.col("best_site").alias("a_site")]
    sides += [pl.col(k).alias(f"b_{k}") for k in SITE_CELL_KEYS] + [pl.col("site").alias("b_site")]
    pairs = common.filter(pl.col("site") != pl.col("best_site")).select(sides).with_row_index("cmp")
    out = w.with_columns([pl.lit(None, t).alias(k) for k, t in extra.items()])
    if pairs.height == 0:
        return out.with_columns(site_verdict=pl.when(pl.col("rank") == 1).then(pl.lit("observed best")))
    keys = ("site", *SITE_CELL_KEYS)
    res = stats.compare(stat_runs(df), pairs, "energy_per_sample_j", keys, alpha=alpha, power=power, systematic=True)
    res = res.join(pairs.select("cmp", *[pl.col(f"a_{k}").alias(k) for k in grp], site="b_site"), on="cmp")
    factor = w.select(*grp, "site", f=(pl.col("pue") * pl.col("intensity_g_per_kwh")).log())
    comb = (
        res.group_by(*grp, "site")
        .agg(
            k=pl.len(),
            d=pl.col("d").mean(),
            sys=pl.col("sys").fill_null(0.0).mean(),
            w=(pl.col("wa").fill_null(0.0) + pl.col("wb").fill_null(0.0)).sum(),
            den=(
                pl.col("wa").fill_null(0.0) ** 2 / (pl.col("n_a") - 1)
                + pl.col("wb").fill_null(0.0) ** 2 / (pl.col("n_b") - 1)
            ).sum(),
            one=(pl.col("verdict") == stats.ONE_RUN).any(),
            held=pl.col("verdict").filter(pl.col("verdict").str.starts_with("withheld")).first(),
        )
        .join(factor, on=[*grp, "site"], how="left")
        .join(factor.rename({"site": "best_site", "f": "f_best"}).join(best, on=[*grp, "best_site"]), on=list(grp))
        .with_columns(d=pl.col("d") + pl.col("f") - pl.col("f_best"))
    )
    d, k = stats.as_array(comb, "d"), stats.as_array(comb, "k")
    se = np.sqrt(stats.as_array(comb, "w")) / k
    with np.errstate(invalid="ignore", divide="ignore"):
        dfree = stats.as_array(comb, "w") ** 2 / stats.as_array(comb, "den")
        tq = stats.t_quantile(dfree, alpha)
        p = np.where(se > 0, stats.t_sf(d / se, dfree), np.where(d > stats.EXACT_RTOL, 0.0, 1.0))
        half = np.where(se > 0, tq * se, 0.0)
    sysv = stats.as_array(comb, "sys", 0.0)
    untestable = comb["one"].to_numpy() | comb["held"].is_not_null().to_numpy()
    p = np.where(untestable, np.nan, p)
    comb = comb.with_columns(
        vs_best_gm=pl.Series(np.exp(d)),
        vs_best_lo=pl.Series(np.where(comb["one"].to_numpy(), np.nan, np.exp(d - half - sysv)), nan_to_null=True),
        vs_best_hi=pl.Series(np.where(comb["one"].to_numpy(), np.nan, np.exp(d + half + sysv)), nan_to_null=True),
        _p=pl.Series(p, nan_to_null=True),
    )
    adj = []
    for _, g in comb.group_by(*grp):
        ph = stats.holm(g["_p"].fill_null(np.nan).to_numpy())
        adj.append(g.select(*grp, "site").with_columns(p_holm=pl.Series(ph, nan_to_null=True)))
    comb = comb.join(pl.concat(adj), on=[*grp, "site"]).with_columns(
        site_verdict=pl.when(pl.col("one"))
        .then(pl.lit(stats.ONE_RUN))
        .when(pl.col("held").is_not_null())
        .then(pl.col("held"))
        .when(pl.col("p_holm") <= alpha)
        .then(pl.lit("emits more"))
        .otherwise(pl.lit("cannot be told apart from the best"))
    )
    out = w.join(comb.select(*grp, "site", *extra), on=[*grp, "site"], how="left", nulls_equal=True)
    return out.with_columns(
        site_verdict=pl.when(pl.col("rank") == 1).then(pl.lit("observed best")).otherwise(pl.col("site_verdict")),
        vs_best_gm=pl.when(pl.col("rank") == 1).then(1.0).otherwise(pl.col("vs_best_gm")),
    )


# ------------------------------------------------------------------ whose energy: the node's and the jobs'
def whose_energy(df: pl.DataFrame) -> pl.DataFrame:
    """Per site and host: the node's energy vs the jobs' in the measured windows, and the neighbours' share."""
    ok = ok_runs(df).filter(pl.col("node_energy_j").is_not_null())
    return (
        ok.group_by("site", "hostname")
        .agg(
            runs=pl.len(),
            node_energy_j=pl.col("node_energy_j").sum(),
            job_energy_j=pl.col("energy_j").sum(),
            job_energy_share=pl.col("energy_j").sum() / pl.col("node_energy_j").sum(),
            neighbour_cpu_share=pl.col("neighbour_cpu_fraction").mean(),
            max_neighbour_cpu_share=pl.col("neighbour_cpu_fraction").max(),
            shared_runs=pl.col("node_shared").fill_null(False).sum(),
            attribution=pl.col("energy_attribution").drop_nulls().unique().sort().str.join("; "),
            p0_cpu_source=pl.col("p0_cpu_source").drop_nulls().unique().sort().str.join(", "),
            job_cpus=pl.col("job_cpus").drop_nulls().unique().sort().cast(pl.String).str.join(", "),
            node_cpus=pl.col("node_cpus").max(),
            job_cpu_source=pl.col("job_cpu_source").drop_nulls().unique().sort().str.join(", "),
            job_mem_source=pl.col("job_mem_source").drop_nulls().unique().sort().str.join(", "),
        )
        .sort("site", "hostname")
    )


def model_error(df: pl.DataFrame) -> pl.DataFrame:
    """Per site, host and CPU power model, over the runs where counters measured the node: the model's
    prediction for the same windows against the counters (docs/measurement.md, "Calibrating a CPU model")."""
    ok = ok_runs(df).filter(pl.col("model_node_energy_j").is_not_null() & pl.col("model_rel_err").is_not_null())
    counter = pl.col("node_energy_cpu_j") + pl.when(pl.col("model_components") == "cpu+dram").then(
        pl.col("node_energy_ram_j")
    ).otherwise(0.0)
    return (
        ok.with_columns(counter_j=counter)
        .group_by("site", "hostname", "cpu_model", "model_method")
        .agg(
            runs=pl.len(),
            components=pl.col("model_components").unique().sort().str.join(", "),
            counter_node_energy_j=pl.col("counter_j").sum(),
            model_node_energy_j=pl.col("model_node_energy_j").sum(),
            model_error_pct=(pl.col("model_node_energy_j").sum() / pl.col("counter_j").sum() - 1.0) * 100,
            median_run_error_pct=pl.col("model_rel_err").median() * 100,
            max_abs_run_error_pct=pl.col("model_rel_err").abs().max() * 100,
            calibration=pl.col("model_calibration").drop_nulls().unique().sort().str.join("; "),
            ladder_error_pct=pl.col("model_fit_max_rel_err").max() * 100,
        )
        .sort("site", "hostname", "model_method")
    )


# ------------------------------------------------------------------ summary
BEST_COLUMNS = (
    "workload",
    "phase",
    "site",
    "device",
    "precision_variant",
    "batch_size",
    "repeats",
    "energy_per_sample_j",
    "energy_per_sample_ci95_j",
    "vs_best_pct",
    "vs_best_lo_pct",
    "vs_best_hi_pct",
    "p_holm",
    "vs_best_verdict",
    "d_energy_pct",
    "d_energy_lo_pct",
    "d_energy_hi_pct",
    "d_energy_verdict",
    "d_time_pct",
    "samples_per_s",
    "quality_metric",
    "quality",
    "d_quality",
    "pareto",
    "energy_source",
    "noisy",
    "configurations",
    "told_apart",
)


def best_per_workload(
    cells: pl.DataFrame, runs: pl.DataFrame | None = None, alpha: float | None = None, power: float | None = None
) -> pl.DataFrame:
    """Per (workload, phase): the configurations (cells, repeats averaged: ``cell_stats``, whose ``noisy``
    flag follows report.noisy_cv) that could be the best by energy per sample, with their change against the
    fp32 baseline and whether they are on the quality/energy Pareto front.

    The observed best is the lowest geometric mean (``log_mean``; the arithmetic mean where the cells lack
    it). With the runs (``runs``: the result rows) every other configuration of the workload and phase is
    tested against it (stats.best_set: one-sided, Holm-adjusted at design.alpha) and each one that cannot be
    told apart from it is listed too, with ``vs_best_pct`` and its interval; ``configurations`` counts the
    group's cells and ``told_apart`` those shown worse than the best. Without the runs: the observed best only."""
    alpha = _default("design", "alpha") if alpha is None else alpha
    power = _default("design", "power") if power is None else power
    cells = cells.filter(pl.col("energy_per_sample_j").is_not_null())
    if cells.height == 0:
        return pl.DataFrame(schema={"workload": pl.String, "phase": pl.String})
    if "log_mean" not in cells.columns:
        cells = cells.with_columns(log_mean=pl.col("energy_per_sample_j").log())
    rel = pareto(relative_to_baseline(cells, runs, alpha=alpha, power=power))
    grp = ("workload", "phase")
    if runs is None:
        chosen = (
            rel.sort("log_mean")
            .group_by(*grp, maintain_order=True)
            .first()
            .with_columns(vs_best_pct=pl.lit(0.0), vs_best_verdict=pl.lit("observed best"))
        )
    else:
        bs = stats.best_set(stat_runs(runs), rel, grp, CELL_KEYS, alpha=alpha, power=power)
        bs = bs.with_columns(configurations=pl.len().over(*grp), told_apart=(~pl.col("could_be_best")).sum().over(*grp))
        chosen = bs.filter(pl.col("could_be_best")).sort(*grp, "log_mean")
    return chosen.select([c for c in BEST_COLUMNS if c in chosen.columns]).sort(*grp, maintain_order=True)
