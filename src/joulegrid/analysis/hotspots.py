"""The hotspots analysed: per cell, where a step's time and (modelled) energy go, and why a configuration
differs from its baseline (docs/hotspots.md).

Inputs: the hotspot rows the jobs wrote (``joulegrid.hotspots.collect``) and the summary's runs. Every
figure is per batch of the profiled pass (a separate pass after the measured window: ``profiled_pass``):

- ``ms_per_batch``: the row's time (``fraction`` x ``profiled_wall_s``) / ``profiled_batches``; for a
  module its forward and backward with its submodules (``own_ms_per_batch``: without them, so that modules
  add up), for an operator its self time (on CUDA its kernels' time), for a step its time.
- ``energy_per_batch_modelled_mj``: MODELLED -- the measured phase's energy per batch
  (``energy_j / n_batches`` of the run) x the row's share of the profiled pass (``fraction``).
- differences (``differences``): a configuration against its baseline (``COMPARISONS``): precision and
  variant against fp32 at the same batch size; a larger batch against the smallest one at fp32, per
  sample (the baseline scaled to the configuration's batch size); a cell's head code version against its base
  version (a versions campaign, docs/compare.md), where cProfile's functions are compared too: which of
  the workload's functions got slower (``regressions_markdown``: the lines `joulegrid compare` adds).

Pure polars (and altair for the chart): no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ..axes import BASELINE_PRECISION, BASELINE_VARIANT, PRECISIONS, VARIANTS
from ..schema import HOTSPOT_COLUMN_NAMES
from ..versions import BASE, HEAD
from . import metrics

CELL_KEYS = metrics.CELL_KEYS  # the cell's axes, config hash and code version (from the run)
CODE_VERSION = metrics.CODE_VERSION
STEP_ORDER = ("data", "forward", "backward", "optimizer", "other")
DIFF_KINDS = ("step", "operator", "module", "kernel")
CPROFILE_KINDS = ("function", "group")  # compared where a Comparison says so (code versions)
TOP_OPERATORS = 8  # operators per chart (the rest stacked as "other operators") and per table
TOP_ROWS = 10  # rows of each per-cell table
RUN_COLUMNS = ("run_id", "config_hash", "energy_j", "n_batches", "energy_estimated", "precision_native")
DERIVED = (
    "precision_variant",
    "ms_per_batch",
    "own_ms_per_batch",
    "pct_of_step",
    "own_pct_of_step",
    "energy_modelled_j",
    "energy_per_batch_modelled_mj",
    "own_energy_per_batch_modelled_mj",
    "energy_basis",
)
# hotspots.csv: every hotspot row of the summary's runs, with its run's facts and the derived figures
CSV_COLUMNS = (*HOTSPOT_COLUMN_NAMES, *RUN_COLUMNS[1:], CODE_VERSION, *DERIVED)
# hotspot-diffs.csv: every comparison's rows (differences)
DIFF_CSV_COLUMNS = (
    "axis",
    *CELL_KEYS,
    *(f"base_{k}" for k in CELL_KEYS),
    "precision_variant",
    "base_precision_variant",
    "per_sample",
    "kind",
    "function",
    "module_type",
    "base_module_type",
    "group",
    "call_path",
    "change",
    "base_ms",
    "ms",
    "d_ms",
    "of_delta_pct",
    "base_pct",
    "pct",
    "base_mj",
    "mj",
    "d_mj",
)


# ------------------------------------------------------------------ per run and per cell
def joined(hs: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """The hotspot rows of the summary's successful runs with their run's facts and the derived figures:
    ms_per_batch, own_ms_per_batch, pct_of_step, energy_modelled_j, energy_per_batch_modelled_mj, energy_basis
    and precision_variant."""
    ok = runs.filter(pl.col("status") == "ok").select([c for c in (*RUN_COLUMNS, CODE_VERSION) if c in runs.columns])
    d = hs.join(ok, on="run_id", how="inner")
    if CODE_VERSION not in d.columns:  # a summary from before code versions: one version, unnamed
        d = d.with_columns(pl.lit(None, pl.String).alias(CODE_VERSION))
    t = pl.col("fraction") * pl.col("profiled_wall_s")
    per_batch = pl.when(pl.col("profiled_batches") > 0).then(1000 / pl.col("profiled_batches"))
    own = pl.when(pl.col("kind") == "module").then(pl.col("self_s")).otherwise(t)
    phase_per_batch = pl.when(pl.col("n_batches") > 0).then(pl.col("energy_j") / pl.col("n_batches"))
    own_fraction = pl.when(pl.col("profiled_wall_s") > 0).then(own / pl.col("profiled_wall_s"))
    return d.with_columns(
        precision_variant=metrics.precision_variant_expr(),
        ms_per_batch=t * per_batch,
        own_ms_per_batch=own * per_batch,
        pct_of_step=pl.col("fraction") * 100,
        own_pct_of_step=own_fraction * 100,
        energy_modelled_j=pl.col("energy_j") * pl.col("fraction"),
        energy_per_batch_modelled_mj=phase_per_batch * pl.col("fraction") * 1000,
        own_energy_per_batch_modelled_mj=phase_per_batch * own_fraction * 1000,
        energy_basis=pl.when(pl.col("energy_j").is_null())
        .then(None)
        .when(pl.col("energy_estimated").fill_null(False))
        .then(pl.lit("modelled: estimated phase energy x time share"))
        .otherwise(pl.lit("modelled: measured phase energy x time share")),
    )


def per_cell(d: pl.DataFrame) -> pl.DataFrame:
    """One row per cell (CELL_KEYS), profiler, kind and name: the mean over the cell's profiled runs (a row a
    run did not have counts as 0: its pass did not run it)."""
    if d.height == 0:
        return d
    runs = d.group_by(*CELL_KEYS, "profiler").agg(_runs=pl.col("run_id").n_unique())
    keep_first = ("precision_variant", "module_type", "depth", "group", "file", "call_path", "profiled_pass")
    mean = lambda c: (pl.col(c).fill_null(0).sum() / pl.col("_runs").first()).alias(c)  # noqa: E731
    out = (
        d.join(runs, on=[*CELL_KEYS, "profiler"], how="left", nulls_equal=True)
        .group_by(*CELL_KEYS, "profiler", "kind", "function", maintain_order=True)
        .agg(
            *(pl.col(c).drop_nulls().first().alias(c) for c in keep_first),
            *(
                mean(c)
                for c in (
                    "ms_per_batch",
                    "own_ms_per_batch",
                    "pct_of_step",
                    "own_pct_of_step",
                    "energy_per_batch_modelled_mj",
                    "own_energy_per_batch_modelled_mj",
                    "calls",
                )
            ),
            runs=pl.col("_runs").first(),
            profiled_batches=pl.col("profiled_batches").mean(),
            profiled_samples=pl.col("profiled_samples").mean(),
            energy_basis=pl.col("energy_basis").drop_nulls().first(),
            trace_file=pl.col("trace_file").drop_nulls().first(),
        )
    )
    return out.with_columns(
        ms_per_1k_samples=pl.when(pl.col("profiled_samples") > 0).then(
            pl.col("ms_per_batch") * pl.col("profiled_batches") / pl.col("profiled_samples") * 1000
        ),
        **{
            c: pl.when(pl.col("energy_basis").is_not_null()).then(pl.col(c))
            for c in ("energy_per_batch_modelled_mj", "own_energy_per_batch_modelled_mj")
        },
    )


def cell_label(precision_variant: str, batch_size: int, code_version: str | None = None) -> str:
    return f"{precision_variant} bs{batch_size}" + (f" · {code_version}" if code_version else "")


def _version_suffix() -> pl.Expr:
    """' · <code version>' for a run of a versions campaign, '' otherwise."""
    return pl.when(pl.col(CODE_VERSION).is_not_null()).then(pl.lit(" · ") + pl.col(CODE_VERSION)).otherwise(pl.lit(""))


# ------------------------------------------------------------------ which configuration against which
@dataclass(frozen=True)
class Comparison:
    """One axis of "why it differs": the cells compared on it (``candidate``) each against the cell of
    ``baseline`` that shares ``same`` with it. Evaluated on the profiled cells (CELL_KEYS + baseline_hash,
    ``_smallest``: the smallest batch size of its site, workload, phase, device and configuration).
    ``per_sample``: the two differ in batch size, the baseline's figures are scaled to the candidate's.
    ``functions``: cProfile's functions and groups are compared too (the same code paths on both sides: two
    versions of the workload's code; other axes run the same Python, only its operators change)."""

    axis: str
    same: tuple[str, ...]
    baseline: Callable[[], pl.Expr]
    candidate: Callable[[], pl.Expr]
    per_sample: bool = False
    functions: bool = False


def _fp32() -> pl.Expr:
    return (pl.col("precision") == BASELINE_PRECISION) & (pl.col("variant") == BASELINE_VARIANT)


COMPARISONS: tuple[Comparison, ...] = (
    # precision and variant (bf16, int8, pruned, compiled, ...) against fp32 at the same batch size
    Comparison("precision / variant", metrics.BASELINE_KEYS, _fp32, lambda: ~_fp32()),
    # a larger batch against the smallest one, at fp32, per sample (of the same code version)
    Comparison(
        "batch size",
        ("site", "workload", "phase", "device", "config_hash", CODE_VERSION),
        lambda: _fp32() & pl.col("_smallest"),
        lambda: _fp32() & ~pl.col("_smallest"),
        per_sample=True,
    ),
    # a cell's head code version against its base version (a versions campaign: docs/compare.md)
    Comparison(
        "code version",
        tuple(k for k in CELL_KEYS if k != CODE_VERSION),
        lambda: pl.col(CODE_VERSION) == BASE,
        lambda: pl.col(CODE_VERSION) == HEAD,
        functions=True,
    ),
)


def profiled_cells(cells: pl.DataFrame) -> pl.DataFrame:
    """The profiled cells (one row each, CELL_KEYS) with baseline_hash and _smallest (see Comparison)."""
    c = metrics.with_baseline_hash(cells.select(*CELL_KEYS).unique(maintain_order=True))
    grp = ["site", "workload", "phase", "device", "config_hash", CODE_VERSION]
    return c.with_columns(_smallest=pl.col("batch_size") == pl.col("batch_size").min().over(grp))


def pairs(cells: pl.DataFrame, comparisons: tuple[Comparison, ...] = COMPARISONS) -> pl.DataFrame:
    """Every comparison of the profiled ``cells`` (profiled_cells): the candidate's CELL_KEYS, the baseline's
    as base_<key>, the axis, per_sample and functions."""
    out = []
    for cmp in comparisons:
        if not all(k in cells.columns for k in cmp.same):
            continue  # an axis these cells do not have (code_version before it exists)
        base = cells.filter(cmp.baseline()).select(*cmp.same, *[pl.col(k).alias(f"base_{k}") for k in CELL_KEYS])
        cand = cells.filter(cmp.candidate()).select(*set(CELL_KEYS) | set(cmp.same))
        p = cand.join(base, on=list(cmp.same), how="inner", nulls_equal=True)
        out.append(
            p.select(*CELL_KEYS, *[f"base_{k}" for k in CELL_KEYS]).with_columns(
                axis=pl.lit(cmp.axis), per_sample=pl.lit(cmp.per_sample), functions=pl.lit(cmp.functions)
            )
        )
    if not out:
        return pl.DataFrame()
    return pl.concat(out, how="vertical_relaxed")


# ------------------------------------------------------------------ why it differs
def differences(pc: pl.DataFrame, pr: pl.DataFrame) -> pl.DataFrame:
    """For each pair of ``pr`` (pairs), the torch rows (steps, operators, modules, kernels) of the candidate
    and its baseline side by side, per batch of the candidate: base_ms / ms (modules: their own time), Δ,
    the share of the step's Δ (``of_delta_pct``: steps and operators each add up to the step), the % of the
    step on both sides and the modelled energy per batch (mJ). Where the pair compares functions too (code
    versions), cProfile's functions and groups by self time: their ``of_delta_pct`` is of the change of the
    groups' total (the cProfile pass without joulegrid's frames); a function outside one side's top
    ``measure.hotspot_top`` counts as 0 there. Sorted per pair by kind, then by |Δ|."""
    if pr.height == 0 or pc.height == 0:
        return pl.DataFrame()
    if "functions" not in pr.columns:
        pr = pr.with_columns(functions=pl.lit(False))
    torch_rows = (pl.col("profiler") == "torch") & pl.col("kind").is_in(DIFF_KINDS)
    cprofile_rows = (pl.col("profiler") == "cprofile") & pl.col("kind").is_in(CPROFILE_KINDS)
    t = pc.filter(torch_rows | cprofile_rows).select(
        *CELL_KEYS,
        "kind",
        "function",
        "module_type",
        "precision_variant",
        *(c for c in ("group", "call_path") if c in pc.columns),
        ms="own_ms_per_batch",
        pct="own_pct_of_step",
        mj="own_energy_per_batch_modelled_mj",
    )
    for c in ("group", "call_path"):
        if c not in t.columns:
            t = t.with_columns(pl.lit(None, pl.String).alias(c))
    pr = pr.with_row_index("pair")
    cand = pr.join(t, on=list(CELL_KEYS), how="inner", nulls_equal=True)
    base_t = t.rename({k: f"base_{k}" for k in CELL_KEYS}).rename(
        {
            "ms": "base_ms",
            "pct": "base_pct",
            "mj": "base_mj",
            "module_type": "base_module_type",
            "precision_variant": "base_precision_variant",
            "group": "base_group",
            "call_path": "base_call_path",
        }
    )
    base = pr.join(base_t, on=[f"base_{k}" for k in CELL_KEYS], how="inner", nulls_equal=True).select(
        "pair",
        "kind",
        "function",
        "base_module_type",
        "base_precision_variant",
        "base_group",
        "base_call_path",
        "base_ms",
        "base_pct",
        "base_mj",
    )
    keys = pr.select("pair", *CELL_KEYS, *[f"base_{k}" for k in CELL_KEYS], "axis", "per_sample", "functions")
    both = (
        cand.select(
            "pair", "kind", "function", "module_type", "precision_variant", "group", "call_path", "ms", "pct", "mj"
        )
        .join(base, on=["pair", "kind", "function"], how="full", coalesce=True)
        .join(keys, on="pair", how="left")
        .filter(pl.col("kind").is_in(DIFF_KINDS) | pl.col("functions"))
    )
    scale = pl.when(pl.col("per_sample")).then(pl.col("batch_size") / pl.col("base_batch_size")).otherwise(1.0)
    both = both.with_columns(
        base_ms=pl.col("base_ms").fill_null(0) * scale,
        base_mj=pl.when(pl.col("base_ms").is_null()).then(0.0).otherwise(pl.col("base_mj")) * scale,  # no row: 0
        mj=pl.when(pl.col("ms").is_null()).then(0.0).otherwise(pl.col("mj")),
        ms=pl.col("ms").fill_null(0),
        base_pct=pl.col("base_pct").fill_null(0),
        pct=pl.col("pct").fill_null(0),
        group=pl.coalesce("group", "base_group"),
        call_path=pl.coalesce("call_path", "base_call_path"),
    ).with_columns(d_ms=pl.col("ms") - pl.col("base_ms"), d_mj=pl.col("mj") - pl.col("base_mj"))
    # the Δ each row is a share of: the steps' (torch rows), the cProfile groups' (cProfile rows)
    whole = pl.when(pl.col("kind").is_in(CPROFILE_KINDS)).then(pl.lit("group")).otherwise(pl.lit("step"))
    both = both.with_columns(_whole=whole)
    total = both.filter(pl.col("kind") == pl.col("_whole")).group_by("pair", "_whole").agg(_d_step=pl.col("d_ms").sum())
    order = (*DIFF_KINDS, *CPROFILE_KINDS)
    both = both.join(total, on=["pair", "_whole"], how="left").with_columns(
        of_delta_pct=pl.when(pl.col("_d_step").abs() > 0).then(pl.col("d_ms") / pl.col("_d_step") * 100),
        change=pl.when(pl.col("base_ms") == 0)
        .then(pl.lit("new"))
        .when(pl.col("ms") == 0)
        .then(pl.lit("gone"))
        .when(pl.col("d_ms") > 0)
        .then(pl.lit("grew"))
        .when(pl.col("d_ms") < 0)
        .then(pl.lit("shrank"))
        .otherwise(pl.lit("same")),
        kind_order=pl.col("kind").replace_strict({k: i for i, k in enumerate(order)}, return_dtype=pl.Int64),
        step_order=pl.col("function").replace_strict(
            {k: i for i, k in enumerate(STEP_ORDER)}, default=len(STEP_ORDER), return_dtype=pl.Int64
        ),
    )
    both = both.with_columns(
        _abs=pl.when(pl.col("kind") == "step")
        .then(-pl.col("step_order").cast(pl.Float64))
        .otherwise(pl.col("d_ms").abs())
    )
    return both.sort(["pair", "kind_order", "_abs"], descending=[False, False, True]).drop(
        "_abs", "_d_step", "_whole", "kind_order", "step_order", "base_group", "base_call_path"
    )


# ------------------------------------------------------------------ the report's view
@dataclass
class View:
    """What the Hotspots section shows (report.hotspots_section turns the frames into tables)."""

    rows: pl.DataFrame  # every hotspot row of the summary's runs, with the derived figures (hotspots.csv)
    cells: pl.DataFrame  # per cell (per_cell)
    diffs: pl.DataFrame  # differences (hotspot-diffs.csv)
    workloads: list[dict[str, Any]] = field(default_factory=list)  # per workload: overview, charts, cells, diffs
    notes: list[str] = field(default_factory=list)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.1f} %"


def _signed_pct(v: float | None) -> str:
    return "" if v is None else f"{v:+.1f} %"


def _order(d: pl.DataFrame) -> pl.DataFrame:
    """Cells in the grid's order: the baseline precision and variant first (axes.PRECISIONS, VARIANTS), a cell's
    base code version before its head."""
    rank = lambda c, vals: pl.col(c).replace_strict({v: i for i, v in enumerate(vals)}, default=len(vals))  # noqa: E731
    return d.sort(
        "phase",
        "site",
        "device",
        rank("precision", PRECISIONS),
        rank("variant", VARIANTS),
        "precision",
        "batch_size",
        CODE_VERSION,  # base before head
        nulls_last=True,
    )


def overview(pc: pl.DataFrame) -> pl.DataFrame:
    """Per profiled cell of a workload: the step's time and where it goes (steps, top module, top operator,
    the workload's own Python code), and its modelled energy per batch."""
    rows = []
    for key, g in pc.group_by(*CELL_KEYS, maintain_order=True):
        k = dict(zip(CELL_KEYS, key, strict=True))
        steps = {r["function"]: r for r in g.filter(pl.col("kind") == "step").to_dicts()}
        mods = g.filter((pl.col("kind") == "module") & (pl.col("depth") > 0)).sort("ms_per_batch", descending=True)
        ops = g.filter(pl.col("kind") == "operator").sort("ms_per_batch", descending=True)
        own = g.filter((pl.col("kind") == "group") & (pl.col("function") == "workload"))
        step_ms = sum(r["ms_per_batch"] or 0 for r in steps.values()) if steps else None
        mj = sum(r["energy_per_batch_modelled_mj"] or 0 for r in steps.values()) if steps else None
        top_mod = mods.row(0, named=True) if mods.height else None
        top_op = ops.row(0, named=True) if ops.height else None
        rows.append(
            {
                "phase": k["phase"],
                "site": k["site"],
                "device": k["device"],
                "precision": g["precision_variant"][0],
                "batch_size": k["batch_size"],
                **({"version": k[CODE_VERSION]} if pc[CODE_VERSION].drop_nulls().len() else {}),
                "ms/batch": step_ms,
                **{f"{s} %": _pct(steps[s]["pct_of_step"]) if s in steps else "" for s in STEP_ORDER},
                "top module (% of step)": (
                    f"{top_mod['function']} ({top_mod['module_type']}) {_pct(top_mod['pct_of_step'])}"
                    if top_mod
                    else ""
                ),
                "top operator (% of step)": f"{top_op['function']} {_pct(top_op['pct_of_step'])}" if top_op else "",
                "own Python code % (cProfile)": _pct(own["pct_of_step"][0]) if own.height else "",
                "energy mJ/batch (modelled)": mj if steps and g["energy_basis"].drop_nulls().len() else None,
            }
        )
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def cell_tables(g: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """One cell's tables: its modules (by name, forward and backward), operators and cProfile's functions
    grouped (the workload's own code first)."""
    mods = g.filter(pl.col("kind") == "module").sort("ms_per_batch", descending=True).head(TOP_ROWS)
    per_batch = lambda c: pl.col(c) / pl.col("profiled_batches")  # noqa: E731
    modules = mods.select(
        module=pl.col("function") + pl.lit(" (") + pl.col("module_type") + pl.lit(")"),
        **{"% of step": pl.col("pct_of_step").map_elements(_pct, return_dtype=pl.String)},
        **{"ms/batch": pl.col("ms_per_batch")},
        **{"own ms/batch": pl.col("own_ms_per_batch")},
        **{"mJ/batch (modelled)": pl.col("energy_per_batch_modelled_mj")},
    )
    ops = (
        g.filter(pl.col("kind").is_in(["operator", "kernel"]))
        .sort("kind", "ms_per_batch", descending=[True, True])
        .head(TOP_ROWS)
        .select(
            "kind",
            operator="function",
            **{"% of step": pl.col("pct_of_step").map_elements(_pct, return_dtype=pl.String)},
            **{"ms/batch": pl.col("ms_per_batch")},
            **{"calls/batch": per_batch("calls")},
            **{"mJ/batch (modelled)": pl.col("energy_per_batch_modelled_mj")},
        )
    )
    from ..hotspots import GROUPS

    order = {k: i for i, k in enumerate(GROUPS)}
    groups = g.filter(pl.col("kind") == "group").with_columns(_o=pl.col("function").replace_strict(order, default=99))
    funcs = g.filter(pl.col("kind") == "function").with_columns(_o=pl.col("group").replace_strict(order, default=99))
    share = {r["function"]: r["pct_of_step"] for r in groups.to_dicts()}
    cprof = (
        funcs.sort("_o", "ms_per_batch", descending=[False, True])
        .group_by("group", maintain_order=True)
        .head(5)
        .select(
            group=pl.col("group").map_elements(lambda s: f"{s} ({_pct(share.get(s))})", return_dtype=pl.String),
            function="function",
            **{"self ms/batch": pl.col("ms_per_batch")},
            **{"% of pass": pl.col("pct_of_step").map_elements(_pct, return_dtype=pl.String)},
            **{"calls/batch": per_batch("calls")},
            call_path="call_path",
        )
    )
    return {"modules": modules, "operators": ops, "cprofile": cprof}


def diff_table(d: pl.DataFrame, cuda: bool) -> pl.DataFrame:
    """One comparison's rows as shown: the steps, then the operators (and kernels) and modules that changed
    most (TOP_OPERATORS, TOP_ROWS // 2 modules), and where compared (code versions) cProfile's functions
    that changed most (TOP_OPERATORS; "function" rows, named with their file and line)."""
    steps = d.filter(pl.col("kind") == "step")
    ops = d.filter(pl.col("kind") == "operator").head(TOP_OPERATORS)
    kernels = d.filter(pl.col("kind") == "kernel").head(TOP_ROWS // 2) if cuda else d.clear()
    mods = d.filter(pl.col("kind") == "module").head(TOP_ROWS // 2)
    funcs = d.filter(pl.col("kind") == "function").head(TOP_OPERATORS)
    shown = pl.concat([steps, ops, kernels, mods, funcs], how="vertical_relaxed")
    name = (
        pl.when((pl.col("kind") == "module") & pl.col("module_type").is_not_null())
        .then(
            pl.col("function")
            + pl.lit(" (")
            + pl.when(pl.col("base_module_type").is_not_null() & (pl.col("base_module_type") != pl.col("module_type")))
            .then(pl.col("base_module_type") + pl.lit(" → "))
            .otherwise(pl.lit(""))
            + pl.col("module_type")
            + pl.lit(")")
        )
        .otherwise(pl.col("function"))
    )
    return shown.select(
        "kind",
        name=name,
        change="change",
        **{"baseline ms/batch": pl.col("base_ms")},
        **{"ms/batch": pl.col("ms")},
        **{"Δ ms/batch": pl.col("d_ms")},
        **{"of the Δ": pl.col("of_delta_pct").map_elements(_signed_pct, return_dtype=pl.String)},
        **{"baseline % of step": pl.col("base_pct").map_elements(_pct, return_dtype=pl.String)},
        **{"% of step": pl.col("pct").map_elements(_pct, return_dtype=pl.String)},
        **{"Δ mJ/batch (modelled)": pl.col("d_mj")},
    )


def chart(pc: pl.DataFrame, title: str):
    """Per configuration of a workload: the steps and the top operators stacked, in ms per 1,000 samples of the
    profiled pass (comparable across batch sizes)."""
    import altair as alt

    d = pc.filter(pl.col("profiler") == "torch").with_columns(
        configuration=pl.col("phase")
        + pl.lit(" · ")
        + pl.col("precision_variant")
        + pl.lit(" bs")
        + pl.col("batch_size").cast(pl.String)
        + _version_suffix()
    )
    order = _order(d.select(*CELL_KEYS, "configuration").unique())["configuration"].unique(maintain_order=True)
    y = alt.Y("configuration:N", sort=order.to_list(), title=None)
    steps = d.filter(pl.col("kind") == "step").select(
        "configuration", step="function", ms="ms_per_1k_samples", share="pct_of_step"
    )
    ops = d.filter(pl.col("kind") == "operator")
    top = (
        (ops.group_by("function").agg(pl.col("ms_per_1k_samples").sum()).sort("ms_per_1k_samples", descending=True))[
            "function"
        ]
        .head(TOP_OPERATORS)
        .to_list()
    )
    ops = (
        ops.with_columns(operator=pl.when(pl.col("function").is_in(top)).then("function").otherwise(pl.lit("other")))
        .group_by("configuration", "operator")
        .agg(ms=pl.col("ms_per_1k_samples").sum(), share=pl.col("pct_of_step").sum())
    )
    tip = [alt.Tooltip("ms:Q", format=".3g", title="ms per 1,000 samples"), alt.Tooltip("share:Q", format=".1f")]
    left = (
        alt.Chart(steps, title="steps")
        .mark_bar()
        .encode(
            y=y,
            x=alt.X("ms:Q", title="ms per 1,000 samples (profiled pass)"),
            color=alt.Color("step:N", sort=list(STEP_ORDER), scale=alt.Scale(scheme="set2"), title="step"),
            order=alt.Order("step_i:Q"),
            tooltip=["configuration:N", "step:N", *tip],
        )
        .transform_calculate(step_i=f"indexof({list(STEP_ORDER)}, datum.step)")
        .properties(width=300)
    )
    right = (
        alt.Chart(ops, title=f"top {len(top)} operators (self time)")
        .mark_bar()
        .encode(
            y=alt.Y("configuration:N", sort=order.to_list(), title=None, axis=None),
            x=alt.X("ms:Q", title="ms per 1,000 samples (profiled pass)"),
            color=alt.Color("operator:N", sort=[*top, "other"], scale=alt.Scale(scheme="tableau10"), title="operator"),
            tooltip=["configuration:N", "operator:N", *tip],
        )
        .properties(width=300)
    )
    return alt.hconcat(left, right).resolve_scale(color="independent").properties(title=title)


ICICLE_LABEL_PCT = 8.0  # a rectangle narrower than this % of the pass is not labelled (its tooltip says it)


def icicle_cells(pc: pl.DataFrame) -> pl.DataFrame:
    """The cells an icicle is drawn for: per workload and phase, its baseline configuration with module rows
    (fp32 baseline, the smallest batch size, the first site and device, the base code version)."""
    mods = pc.filter((pl.col("profiler") == "torch") & (pl.col("kind") == "module") & _fp32())
    if mods.height == 0:
        return mods.select(*CELL_KEYS)
    cells = _order(mods.select(*CELL_KEYS).unique())
    return cells.group_by("workload", "phase", maintain_order=True).first().select(*CELL_KEYS)


def _parent(path: str, present: set[str]) -> str | None:
    """The nearest profiled ancestor of a module path ('(model)' the root; None for the root itself)."""
    while path != "(model)":
        path = path.rsplit(".", 1)[0] if "." in path else "(model)"
        if path in present:
            return path
    return None


def icicle_rects(g: pl.DataFrame) -> pl.DataFrame:
    """One cell's modules (its torch "module" rows) as the rectangles of an icicle: ``x0``..``x1`` in % of the
    profiled pass (``pct_of_step``: a module's forward and backward, submodules included), each module's
    children side by side from its left edge, the largest first; ``depth`` its depth in the model (0: the
    model). ``label``: name and % where the rectangle is at least ICICLE_LABEL_PCT wide."""
    mods = g.filter(pl.col("kind") == "module").select(
        module="function", module_type="module_type", depth="depth", pct="pct_of_step", ms="ms_per_batch"
    )
    rows = {r["module"]: r for r in mods.to_dicts()}
    present = set(rows)
    children: dict[str | None, list[str]] = {}
    for m in rows:
        children.setdefault(_parent(m, present), []).append(m)
    out = []

    def place(m: str, x0: float) -> None:
        r = rows[m]
        w = r["pct"] or 0.0
        label = f"{m} {w:.0f} %" if w >= ICICLE_LABEL_PCT else ""
        out.append({**r, "x0": x0, "x1": x0 + w, "label": label})
        x = x0
        for c in sorted(children.get(m, []), key=lambda c: (-(rows[c]["pct"] or 0.0), c)):
            place(c, x)
            x += rows[c]["pct"] or 0.0

    x = 0.0
    for root in sorted(children.get(None, []), key=lambda c: (-(rows[c]["pct"] or 0.0), c)):
        place(root, x)
        x += rows[root]["pct"] or 0.0
    return pl.DataFrame(out) if out else pl.DataFrame()


def icicle(pc: pl.DataFrame, title: str):
    """An icicle of the model's nn.Module hierarchy per phase of the workload's baseline configuration
    (icicle_cells, icicle_rects): one row of rectangles per depth, widths in % of the profiled pass. None where
    no module was profiled (a compiled model, no torch pass)."""
    import altair as alt

    panels = []
    for k in icicle_cells(pc).iter_rows(named=True):
        g = pc.join(pl.DataFrame([k], schema={c: pc.schema[c] for c in CELL_KEYS}), on=list(CELL_KEYS), how="semi",
                    nulls_equal=True).filter(pl.col("profiler") == "torch")  # fmt: skip
        rects = icicle_rects(g)
        if rects.height == 0:
            continue
        name = f"{k['phase']} · {cell_label(g['precision_variant'][0], k['batch_size'], k[CODE_VERSION])}"
        base = alt.Chart(rects, title=name)
        y = alt.Y("depth:O", title="depth", axis=alt.Axis(labelAngle=0))
        tip = [
            alt.Tooltip("module:N"),
            alt.Tooltip("module_type:N", title="class"),
            alt.Tooltip("pct:Q", format=".1f", title="% of the pass (submodules included)"),
            alt.Tooltip("ms:Q", format=".3g", title="ms per batch"),
        ]
        rect = base.mark_rect(stroke="white", strokeWidth=1).encode(
            x=alt.X("x0:Q", title="% of the profiled pass", scale=alt.Scale(domain=[0, 100])),
            x2="x1:Q",
            y=y,
            color=alt.Color("module_type:N", title="module class", scale=alt.Scale(scheme="tableau20")),
            tooltip=tip,
        )
        text = (
            base.mark_text(fontSize=10, color="black")
            .encode(x=alt.X("mid:Q"), y=y, text="label:N", tooltip=tip)
            .transform_calculate(mid="(datum.x0 + datum.x1) / 2")
        )
        n = int(rects["depth"].max() or 0) + 1
        panels.append(alt.layer(rect, text).properties(width=640, height=26 * n))
    if not panels:
        return None
    return alt.vconcat(*panels).properties(title=title)


def view(hs: pl.DataFrame, runs: pl.DataFrame, results_dir: Path, out_dir: Path) -> View:
    """Everything the Hotspots section shows, from the hotspot rows and the summary's runs."""
    d = joined(hs, runs)
    pc = per_cell(d)
    if pc.height == 0:
        return View(d, pc, pl.DataFrame())
    cells = profiled_cells(pc)
    pr = pairs(cells)
    diffs = differences(pc, pr)
    v = View(d, pc, diffs)
    for (wl,), g in sorted(pc.group_by("workload"), key=lambda kv: kv[0]):
        cuda = "cuda" in g["device"].to_list()
        w: dict[str, Any] = {"workload": wl, "overview": overview(_order(g)) if g.height else None}
        w["chart"] = chart(g, f"{wl}: where a step's time goes")
        w["icicle"] = icicle(g, f"{wl}: the model's modules in its baseline configuration")
        w["cells"] = []
        for key, cg in _order(g).group_by(*CELL_KEYS, maintain_order=True):
            k = dict(zip(CELL_KEYS, key, strict=True))
            tf = cg["trace_file"].drop_nulls()
            trace = os.path.relpath(results_dir / tf[0], out_dir) if tf.len() else None
            w["cells"].append(
                {
                    "label": f"{k['phase']} · "
                    + cell_label(cg["precision_variant"][0], k["batch_size"], k[CODE_VERSION])
                    + (f" · {k['site']}" if pc["site"].n_unique() > 1 else "")
                    + (f" · {k['device']}" if pc["device"].n_unique() > 1 else ""),
                    "what": cg["profiled_pass"].drop_nulls().first() or "",
                    "trace": Path(trace).as_posix() if trace else None,
                    "runs": int(cg["runs"].max() or 0),
                    **cell_tables(cg),
                }
            )
        w["diffs"] = []
        if diffs.height:
            mine = diffs.filter(pl.col("workload") == wl)
            for (_pair,), dg in mine.group_by("pair", maintain_order=True):
                r = dg.row(0, named=True)
                steps = dg.filter(pl.col("kind") == "step")
                base_ms, ms = steps["base_ms"].sum(), steps["ms"].sum()
                pv = r["precision_variant"] or r["base_precision_variant"]
                label = f"{r['phase']} · {cell_label(pv, r['batch_size'], r[CODE_VERSION])}"
                base = cell_label(
                    r["base_precision_variant"] or BASELINE_PRECISION, r["base_batch_size"], r[f"base_{CODE_VERSION}"]
                )
                w["diffs"].append(
                    {
                        "label": label,
                        "baseline": base,
                        "axis": r["axis"],
                        "per_sample": bool(r["per_sample"]),
                        "base_ms": base_ms,
                        "ms": ms,
                        "d_pct": (ms / base_ms - 1) * 100 if base_ms else None,
                        "table": diff_table(dg, cuda),
                    }
                )
        v.workloads.append(w)
    return v


# ------------------------------------------------------------------ `joulegrid compare`: where head grew
GREW_KINDS = (("operator", "operators"), ("module", "modules"), ("function", "functions"))
COMPARE_KEYS = ("site", "workload", "phase", "device", "precision", "variant", "batch_size", "config_hash")


def code_version_differences(pc: pl.DataFrame) -> pl.DataFrame:
    """``differences`` of the code-version comparison only (head against base per cell)."""
    cmp = tuple(c for c in COMPARISONS if c.axis == "code version")
    return differences(pc, pairs(profiled_cells(pc), cmp)) if pc.height else pl.DataFrame()


def regressions_markdown(rows: pl.DataFrame, results_dir: str | Path, verdicts: pl.DataFrame, top: int = 3) -> str:
    """The lines `joulegrid compare` adds to its Markdown: per cell of ``verdicts`` (compare's table: COMPARE_KEYS
    and ``verdict``) called a regression, the ``top`` operators, modules and cProfile functions whose time per
    batch grew most from base to head in the profiled passes (hotspot files of ``rows``' runs under
    ``results_dir``), with their share of the change. '' where no regressed cell was profiled."""
    from .. import hotspots as collected

    if verdicts.height == 0 or "verdict" not in verdicts.columns:
        return ""
    reg = verdicts.filter(pl.col("verdict") == "regression").select(*COMPARE_KEYS).unique(maintain_order=True)
    if reg.height == 0:
        return ""
    hs = collected.collect(results_dir, run_ids=rows["run_id"].to_list())
    d = code_version_differences(per_cell(joined(hs, rows))) if hs.height else pl.DataFrame()
    if d.height == 0:
        return ""
    d = d.join(reg, on=list(COMPARE_KEYS), how="semi", nulls_equal=True).filter(pl.col("d_ms") > 0)
    out = []
    for _, g in d.group_by("pair", maintain_order=True):
        r = g.row(0, named=True)
        cell = "/".join(str(r[k]) for k in ("site", "workload", "phase", "device", "precision") if r[k] is not None)
        parts = []
        for kind, title in GREW_KINDS:
            k = g.filter(pl.col("kind") == kind).sort("d_ms", descending=True).head(top)
            shown = [
                f"`{x['function']}`" + (f" ({x['module_type']})" if kind == "module" and x["module_type"] else "")
                + f" +{x['d_ms']:.3g} ms" + (f" ({x['of_delta_pct']:.0f} % of the Δ)" if x["of_delta_pct"] else "")
                for x in k.iter_rows(named=True)
            ]  # fmt: skip
            if shown:
                parts.append(f"{title} " + ", ".join(shown))
        if parts:
            out.append(f"- {cell}/bs{r['batch_size']}: " + "; ".join(parts))
    if not out:
        return ""
    head = (
        "Where head's time grew (regressed cells; the profiled passes after the measured windows, per batch, head − "
        "base; operators and modules: their self time, of the step's Δ; functions: cProfile's self time, of the "
        "cProfile pass's Δ; docs/hotspots.md):"
    )
    return "\n".join(["", head, *out]) + "\n"
