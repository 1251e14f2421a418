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
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from ..axes import BASELINE_PRECISION, BASELINE_VARIANT
from ..config import schema_defaults


def _default(section: str, key: str) -> Any:
    """A report: / fleet: default, from the config schema (its one home)."""
    return schema_defaults()[section][key]


# A cell without its repeat index: the unit repeats are averaged over. Runs of two configurations
# (config_hash: other settings, seed, ...) of the same cell are two cells, never averaged.
CELL_KEYS = ("site", "workload", "phase", "device", "precision", "variant", "batch_size", "config_hash")
# What a baseline shares with the cells compared to it (everything but precision and variant);
# baseline_hash: the config hash of the baseline it compares with (with_baseline_hash).
BASELINE_KEYS = ("site", "workload", "phase", "device", "batch_size", "baseline_hash")
J_PER_KWH = 3.6e6

# Two-sided 95 % Student-t quantiles t(0.975, dof) for small samples; 1.96 (normal) beyond 30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(dof: int) -> float | None:
    """Student-t 0.975 quantile for dof degrees of freedom (None for dof < 1)."""
    if dof < 1:
        return None
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


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


# ------------------------------------------------------------------ repeats
def cell_stats(df: pl.DataFrame, noisy_cv: float | None = None) -> pl.DataFrame:
    """One row per cell (repeats averaged) of the ok runs: mean, std, 95 % CI half-width, CV, noisy.

    CI = t(0.975, n-1) * std / sqrt(n) (Student t; null for a single repeat). ``noisy`` is true when
    the CV (std/mean) of energy per sample exceeds ``noisy_cv`` (None: report.noisy_cv's default, 10 %).
    """
    noisy_cv = _default("report", "noisy_cv") if noisy_cv is None else noisy_cv
    d = derive(ok_runs(df))
    n = pl.col("energy_per_sample_j").count()
    agg = d.group_by(*CELL_KEYS, maintain_order=True).agg(
        precision_variant=pl.col("precision_variant").first(),
        repeats=pl.len(),
        n_energy=n,
        energy_per_sample_j=pl.col("energy_per_sample_j").mean(),
        energy_per_sample_std_j=pl.col("energy_per_sample_j").std(),
        energy_j=pl.col("energy_j").mean(),
        wall_s=pl.col("wall_s").mean(),
        wall_std_s=pl.col("wall_s").std(),
        job_overhead_s=(pl.col("setup_s").fill_null(0) + pl.col("warmup_s").fill_null(0)).mean(),
        time_per_sample_s=pl.col("time_per_sample_s").mean(),
        samples_per_s=pl.col("samples_per_s").mean(),
        samples_per_j=pl.col("samples_per_j").mean(),
        n_samples=pl.col("n_samples").mean(),
        n_test=pl.col("n_test").mean(),
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
    t = pl.col("n_energy").map_elements(lambda k: t975(int(k) - 1), return_dtype=pl.Float64)
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


def relative_to_baseline(cells: pl.DataFrame) -> pl.DataFrame:
    """Add Δenergy %, Δtime % (per sample) and Δquality against the fp32 baseline cell.

    The baseline shares site, workload, phase, device and batch size (BASELINE_KEYS). Δquality is
    quality - baseline quality in the metric's own units; ``quality_better`` says whether that is
    an improvement given the metric's direction. Cells without a baseline get nulls (see
    ``missing_baselines``).
    """
    cells = with_baseline_hash(cells)
    base = cells.filter(_is_baseline()).select(
        *BASELINE_KEYS,
        base_energy_per_sample_j=pl.col("energy_per_sample_j"),
        base_time_per_sample_s=pl.col("time_per_sample_s"),
        base_quality=pl.col("quality"),
    )
    out = cells.join(base, on=list(BASELINE_KEYS), how="left", nulls_equal=True)
    return out.with_columns(
        d_energy_pct=(pl.col("energy_per_sample_j") / pl.col("base_energy_per_sample_j") - 1) * 100,
        d_time_pct=(pl.col("time_per_sample_s") / pl.col("base_time_per_sample_s") - 1) * 100,
        d_quality=pl.col("quality") - pl.col("base_quality"),
    ).with_columns(
        quality_better=pl.when(pl.col("d_quality").is_null())
        .then(None)
        .when(pl.col("quality_higher_is_better").fill_null(True))
        .then(pl.col("d_quality") >= 0)
        .otherwise(pl.col("d_quality") <= 0)
    )


def emulated(rel: pl.DataFrame) -> pl.DataFrame:
    """Precisions a device ran emulated (``precision_native`` false), with their measured slowdown.

    One row per (site, device, hardware, precision): the cells (repeats averaged, output of
    ``relative_to_baseline``) and the range of their time per sample relative to the fp32 baseline
    of the same site/workload/phase/device/batch size (``slowdown_min``/``slowdown_max``, from the
    rows; null where no cell has a baseline). Hardware is the GPU model for cuda cells, else the CPU model.
    """
    cols = {"site": pl.String, "device": pl.String, "hardware": pl.String, "precision": pl.String, "cells": pl.UInt32,
            "cells_with_baseline": pl.UInt32, "slowdown_min": pl.Float64, "slowdown_max": pl.Float64,
            "workloads": pl.String, "cpu_flags": pl.String, "gpu_compute_capability": pl.String}  # fmt: skip
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
    """One sentence per row of ``emulated``: 'bf16 on Intel Xeon (site local, cpu) is emulated: 6.1–13.0× slower than fp32 ...'."""
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
        why = (f"compute capability {r['gpu_compute_capability']}" if r["device"] == "cuda"
               else f"CPU flags: {r['cpu_flags'] or 'none of the relevant ones'}")  # fmt: skip
        out.append(f"{r['precision']} on {hw} (site {r['site']}, {r['device']}) is emulated: {cost}. "
                   f"The host lacks the instructions for it ({why}): the figure is the host's, not the precision's.")  # fmt: skip
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
            schema={**{k: pl.String for k in keys}, "batch_size": pl.Int64, "zeus_cost": pl.Float64,
                    "tta_s": pl.Float64, "eta_j": pl.Float64, "candidates": pl.UInt32}
        )  # fmt: skip
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
            zip(g["energy_per_sample_j"], (sign * q for q in g["quality"]), g["_i"]), key=lambda p: (p[0], -p[1])
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
        sci_operational_g=pl.col("energy_j") / J_PER_KWH * pl.col("sci_pue") * pl.col("sci_intensity_g_per_kwh"),
        sci_embodied_g=emb_kg * 1000 * pl.col("wall_s") / (life_y * 365.25 * 86400) * pl.col("sci_resource_share"),
    )
    r = pl.col("n_samples") / 1000
    return out.with_columns(
        sci_g_per_1k=pl.when(r > 0).then((pl.col("sci_operational_g") + pl.col("sci_embodied_g").fill_null(0)) / r),
        sci_embodied_share=pl.col("sci_embodied_g") / (pl.col("sci_operational_g") + pl.col("sci_embodied_g")),
    )


# ------------------------------------------------------------------ fleet what-if
FLEET_SCOPES = ("phase", "job")
FLEET_CSV_COLUMNS = (
    "site", "workload", "phase", "device", "precision_variant", "batch_size", "samples_per_job", "mwh_per_day",
    "t_co2_per_day", "saving_pct", "fleet_scope", "jobs_per_day", "energy_per_job_j", "energy_source",
)  # fmt: skip


def samples_per_job_expr(spec: int | dict[str, Any] | None = None) -> pl.Expr:
    """Samples one fleet job processes, per cell: ``fleet.samples_per_job`` (a number for every cell, or
    per workload: a number or {train: N, infer: N}), else the defaults -- inference: one pass over the
    test split (``n_test``); training: one training run as measured (``n_samples``). Never the
    inference time window (``n_samples`` of an inference cell counts every pass of its window)."""
    expr = pl.when(pl.col("phase") == "infer").then(pl.col("n_test")).otherwise(pl.col("n_samples")).cast(pl.Float64)
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
    d = with_baseline_hash(cells).with_columns(
        jobs_per_day=jobs, samples_per_job=samples_per_job_expr(samples_per_job), fleet_scope=pl.lit(scope)
    )
    d = d.with_columns(energy_per_job_j=e_job).with_columns(
        mwh_per_day=pl.col("jobs_per_day") * pl.col("energy_per_job_j") / J_PER_KWH * pue / 1000,
        fleet_intensity_g_per_kwh=inten,
    )
    d = d.with_columns(t_co2_per_day=pl.col("mwh_per_day") * 1000 * pl.col("fleet_intensity_g_per_kwh") / 1e6)
    base = d.filter(_is_baseline()).select(
        *BASELINE_KEYS, base_mwh_per_day="mwh_per_day", base_t_co2_per_day="t_co2_per_day"
    )
    d = d.join(base, on=list(BASELINE_KEYS), how="left", nulls_equal=True)
    return d.with_columns(
        saving_mwh_per_day=pl.col("base_mwh_per_day") - pl.col("mwh_per_day"),
        saving_t_co2_per_day=pl.col("base_t_co2_per_day") - pl.col("t_co2_per_day"),
        saving_pct=(1 - pl.col("mwh_per_day") / pl.col("base_mwh_per_day")) * 100,
    )


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
SITE_CELL_KEYS = ("workload", "phase", "device", "precision_variant", "batch_size", "config_hash")


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
        co2_per_1k_samples_g=pl.col("energy_per_sample_j")
        * 1000
        / J_PER_KWH
        * pl.col("pue")
        * pl.col("intensity_g_per_kwh"),
        n_sites=pl.col("site").n_unique().over(*SITE_CELL_KEYS),
    )
    cols = [*SITE_CELL_KEYS, "site", "scheduler", "hosts", "repeats", "wall_s", "time_per_sample_s", "energy_per_sample_j",
            "co2_per_1k_samples_g", "intensity_g_per_kwh", "pue", "queue_wait_s", "job_wall_s", "job_energy_j",
            "job_time_outside_phase_fraction", "job_energy_outside_phase_fraction", "batch_efficiency", "energy_source"]  # fmt: skip
    return per.filter(pl.col("n_sites") >= 2).select(cols).sort(*SITE_CELL_KEYS, "site")


WHERE_TO_RUN_CRITERION = (
    "lowest CO2 per sample at equal work: per workload and phase, each site's mean CO2 per 1,000 samples (with its own "
    "carbon intensity and PUE) over the same cells, those (device, precision, batch size) measured at every site that ran it"
)


def where_to_run(comp: pl.DataFrame) -> pl.DataFrame:
    """Per (workload, phase) and site, from ``site_comparison``: the WHERE_TO_RUN_CRITERION score
    (co2_per_1k_samples_g averaged over the cells every site measured, so every site does the same work),
    the same mean of energy and time per sample, the site's rank (1 = where to run it) and its CO2
    relative to the best site (vs_best: 1.0 for the best)."""
    schema = {"workload": pl.String, "phase": pl.String, "rank": pl.UInt32, "site": pl.String, "common_cells": pl.UInt32,
              "co2_per_1k_samples_g": pl.Float64, "vs_best": pl.Float64, "energy_per_sample_j": pl.Float64,
              "time_per_sample_s": pl.Float64, "intensity_g_per_kwh": pl.Float64, "pue": pl.Float64}  # fmt: skip
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


# ------------------------------------------------------------------ summary
def best_per_workload(cells: pl.DataFrame) -> pl.DataFrame:
    """Per (workload, phase): the cell (repeats averaged: ``cell_stats``, whose ``noisy`` flag follows the
    report's report.noisy_cv) with the lowest energy per sample, with its change against the fp32
    baseline and whether it is on the quality/energy Pareto front."""
    cells = cells.filter(pl.col("energy_per_sample_j").is_not_null())
    if cells.height == 0:
        return pl.DataFrame(schema={"workload": pl.String, "phase": pl.String})
    cells = pareto(relative_to_baseline(cells))
    return (
        cells.sort("energy_per_sample_j")
        .group_by("workload", "phase", maintain_order=True)
        .first()
        .select(
            "workload", "phase", "site", "device", "precision_variant", "batch_size", "repeats",
            "energy_per_sample_j", "energy_per_sample_ci95_j", "samples_per_s", "d_energy_pct", "d_time_pct",
            "quality_metric", "quality", "d_quality", "pareto", "energy_source", "noisy",
        )
        .sort("workload", "phase")
    )  # fmt: skip
