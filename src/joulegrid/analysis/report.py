"""The self-contained HTML report (inline Vega, no CDN) and the chart PNGs.

``build_report(summary, out_dir)`` writes ``<out_dir>/index.html``, ``<out_dir>/<chart>.png`` for
every name in CHART_NAMES (a "no data" chart when there is nothing to draw, so every PNG the
Snakemake rule declares exists), ``<out_dir>/cells.csv`` (per-cell derived metrics) and
``<out_dir>/fleet.csv`` (the fleet what-if, for spreadsheet users). The page
embeds the Vega/Vega-Lite/vega-embed bundle from vl-convert once and every chart spec as JSON, so
it opens offline from a file:// URL; ``window.joulegridCharts = {expected, rendered, errors}`` tells
a browser test whether every chart rendered.

The page is a Jinja2 template (``templates/report.html.j2``, autoescaped) that includes one template per
section (``templates/sections/<id>.html.j2``); each section is one function here (``*_section``) that
reads the inputs (``Inputs``: the summary, repeats averaged, the other configurations' runs, the
left-out run files) and returns a ``Section`` holding what its template draws. A new section is one
function, one template and one entry in ``build_report``'s list.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from markupsafe import Markup

from .. import schema
from ..io import atomic_path
from . import CHART_NAMES, metrics, stats
from .settings import AnalysisSettings

CHART_TEXT = {
    "energy_per_sample": (
        "Energy per sample",
        "Mean energy per sample (= per event) over repeats, by batch size and precision; bars are 95 % confidence "
        "intervals. Rings (hollow marks) are estimated energies (no hardware counter), disks measured ones.",
    ),
    "quality_vs_energy": (
        "Quality vs energy",
        "Every cell's quality against its energy per sample; the dashed line joins the Pareto-optimal cells "
        "(nothing else is both cheaper and at least as good). The arrow in each panel title gives the better "
        "direction.",
    ),
    "time_to_target": (
        "Time to target",
        "Per-epoch quality of each training run against cumulative wall time; the dotted line is the target "
        "quality, the large dot the epoch that reached it (TTA).",
    ),
    "scheduler_overhead": (
        "Scheduler overhead per site",
        "Mean time per job spent waiting in the queue, starting up (imports, data, model, warm-up, writing) and "
        "in the measured phase. Batch efficiency = measured time / (end - submission).",
    ),
    "fleet_whatif": (
        "Fleet what-if",
        "The energy of one equal-work job (the same samples per job for every precision and batch size) scaled to "
        "the configured jobs per day at each site (MWh/day, PUE included); the label is the change against the fp32 "
        "baseline of the same workload, phase, device and batch size.",
    ),
    "sites": (
        "Sites",
        "CO2 per 1,000 samples of each cell measured at two sites or more, one line per precision and batch size "
        "across the sites; rings are estimated energies.",
    ),
    "when_to_run": (
        "CO2 per sample by hour of day",
        "Per site with an intensity series and per workload and phase, the site's cell with the lowest energy per "
        "sample: g CO2e per 1,000 samples = energy per sample × PUE × the series' mean intensity at that hour of day "
        "(UTC, over the days it covers); dashed: the same with the site's annual mean.",
    ),
}
assert set(CHART_TEXT) == set(CHART_NAMES)


# ------------------------------------------------------------------ tables
def _fmt(col: str, v) -> tuple[str, str]:
    """(text, css class) of one table cell."""
    if v is None:
        return "", ""
    if isinstance(v, bool):
        return ("yes" if v else "no"), ""
    if isinstance(v, float):
        if v != v:  # NaN
            return "", "num"
        if col.endswith("_pct"):
            cls = "good" if v < 0 and col.startswith("d_") else ("worse" if v > 0 and col.startswith("d_") else "")
            if col.startswith("saving"):
                cls = "good" if v > 0 else ("worse" if v < 0 else "")
            return f"{v:+.1f} %", f"num {cls}".strip()
        if col.endswith(("_cv", "efficiency", "_share")):
            return f"{v:.1%}", "num"
        a = abs(v)
        return (f"{v:.3e}" if (a and (a < 1e-3 or a >= 1e6)) else f"{v:.4g}"), "num"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v), "num"
    if col.endswith("verdict"):
        return str(v), VERDICT_CLASS.get(str(v).removesuffix(" (exact)"), "")
    if "±" in col or "[" in col or col.startswith("MDE"):  # stats.fmt_pm / fmt_interval: PDG-rounded figures
        return str(v), "num"
    return str(v), ""


# css class of a verdict (a cheaper, faster or better cell green, a costlier, slower or worse one red)
VERDICT_CLASS = {
    "cheaper": "good",
    "faster": "good",
    "better": "good",
    "observed best": "good",
    "costlier": "worse",
    "slower": "worse",
    "worse": "worse",
    "worse than the best": "worse",
    "emits more": "worse",
}


@dataclass
class Table:
    """A table as the template draws it (macros.html.j2, ``table``): formatted cells with their css class,
    or ``rows`` None and the text saying it is empty; ``n`` = its rows, ``more`` = rows left out."""

    columns: list[str]
    rows: list[list[tuple[str, str]]] | None
    n: int
    more: int = 0
    empty: str = "none"

    def __bool__(self) -> bool:
        return self.rows is not None


def table(df: pl.DataFrame, max_rows: int = 200, empty: str = "none") -> Table:
    if df.height == 0:
        return Table(df.columns, None, 0, empty=empty)
    rows = [[_fmt(c, v) for c, v in zip(df.columns, r, strict=True)] for r in df.head(max_rows).iter_rows()]
    return Table(df.columns, rows, df.height, max(0, df.height - max_rows), empty)


def _js_bundle() -> str:
    import vl_convert as vlc

    return vlc.javascript_bundle()


def _script_json(obj) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(obj).replace("</", "<\\/").replace("<!--", "<\\!--")


# ------------------------------------------------------------------ inputs
def load_summary(summary: str | Path) -> tuple[pl.DataFrame, list[str]]:
    """The summary frame (empty if absent) and messages about what is wrong with it."""
    p = Path(summary)
    notes: list[str] = []
    if not p.is_file():
        notes.append(f"No summary at {p}: run the grid and `joulegrid aggregate` (or `snakemake`) first.")
        return pl.DataFrame(schema=schema.polars_schema()), notes
    try:
        df = pl.read_parquet(p)
    except Exception as e:  # noqa: BLE001 - the report says why it has no data
        notes.append(f"The summary {p} cannot be read ({type(e).__name__}: {e}); re-run `joulegrid aggregate`.")
        return pl.DataFrame(schema=schema.polars_schema()), notes
    missing = [c for c in schema.COLUMN_NAMES if c not in df.columns]
    if missing:
        notes.append(
            f"The summary {p} lacks {len(missing)} column(s) of result schema version {schema.SCHEMA_VERSION} "
            f"({', '.join(missing[:6])}{'…' if len(missing) > 6 else ''}): it was written by another joulegrid; "
            "re-run `joulegrid aggregate` with this one. Missing columns are shown empty."
        )
        df = df.with_columns([pl.lit(None).alias(c) for c in missing])
    try:
        df = df.select(schema.COLUMN_NAMES).cast(dict(schema.polars_schema()), strict=False)
    except Exception as e:  # noqa: BLE001 - the report says why it has no data
        notes.append(f"The summary {p} has columns of unexpected types ({e}); re-run `joulegrid aggregate`.")
        return pl.DataFrame(schema=schema.polars_schema()), notes
    return df, notes


def load_hotspots(results_dir: Path) -> tuple[pl.DataFrame | None, str | None]:
    """The hotspots table: every <results>/hotspots/<cell id>.parquet the profiler wrote (per-cell
    subfolders; joulegrid.hotspots.collect), None if there is none; unreadable files are named."""
    import warnings

    from .. import hotspots

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hs = hotspots.collect(results_dir)
    bad = [str(w.message) for w in caught if "joulegrid.hotspots" in str(w.message)]
    note = f"{len(bad)} hotspot file(s) left out: " + "; ".join(bad[:3]) if bad else None
    return (hs if hs.height else None), note


def _hotspots_view(hs: pl.DataFrame, df: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    """The most expensive functions/ops of the summary's profiled runs: per profiler, the top rows by
    fraction of the profiled pass (cprofile: cumulative time; torch: self time)."""
    if df.height:
        hs = hs.filter(pl.col("run_id").is_in(df["run_id"].to_list()))
    cols = ["cell_id", "profiler", "rank", "function", "calls", "self_s", "cumulative_s", "device_self_s", "fraction"]
    parts = [
        g.sort("fraction", descending=True, nulls_last=True).head(top)
        for _, g in hs.group_by("profiler", maintain_order=True)
    ]
    out = pl.concat(parts) if parts else hs
    return out.select([c for c in cols if c in out.columns]).sort(
        "profiler", "fraction", descending=[False, True], nulls_last=True
    )


# ------------------------------------------------------------------ what the sections read
@dataclass
class Inputs:
    """Everything the sections are built from, read once (build_report)."""

    summary: Path
    df: pl.DataFrame  # the current configuration's runs
    other: pl.DataFrame  # the runs of other configurations (summary.other-configs.parquet)
    problems: list[dict]  # run files aggregate left out
    notes: list[str]  # what is wrong with the inputs
    st: AnalysisSettings
    results_dir: Path
    cells: pl.DataFrame = field(init=False)  # repeats averaged (metrics.cell_stats)
    rel: pl.DataFrame = field(init=False)  # cells against their fp32 baseline
    tta: pl.DataFrame = field(init=False)  # time and energy to target of the training runs

    def __post_init__(self) -> None:
        self.cells = metrics.cell_stats(self.df, noisy_cv=self.st.noisy_cv)
        self.rel = (
            metrics.relative_to_baseline(self.cells, self.df, alpha=self.st.alpha, power=self.st.power)
            if self.cells.height
            else self.cells
        )
        self.tta = metrics.time_to_target(self.df, targets=self.st.targets, eta=self.st.eta)


@dataclass
class Section:
    """One section of the page: its anchor, navigation text and heading; the rest is what its template
    (templates/sections/<id>.html.j2) draws, as attributes."""

    id: str
    nav: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:  # the template's s.<name>
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(name) from None


def _chart(name: str) -> dict[str, str]:
    title, caption = CHART_TEXT[name]
    return {"name": name, "title": title, "caption": caption}


# ------------------------------------------------------------------ figures with their uncertainty
def level(st: AnalysisSettings) -> str:
    """The intervals' confidence level, 1 - design.alpha, in words ('95 %')."""
    return f"{(1 - st.alpha) * 100:g} %"


def _with_text(df: pl.DataFrame, **cols) -> pl.DataFrame:
    """df with display columns: name -> a function of the row (a dict) giving its text."""
    rows = df.to_dicts()
    return df.with_columns([pl.Series(name, [f(x) for x in rows], dtype=pl.String) for name, f in cols.items()])


def _analysis(x: dict, prefix: str = "d_energy") -> str:
    """How a comparison was made (paired / Welch / exact / one run) and its systematic term, if any."""
    a = x.get(f"{prefix}_analysis") or ""
    sys_pct = x.get(f"{prefix}_sys_pct")
    return a + (f"; systematic ±{stats.fmt_unc(sys_pct)} %" if sys_pct else "")


def energy_pm(lvl: str) -> str:
    return f"energy/sample (J) ± {lvl}"


def best_view(r: Inputs) -> pl.DataFrame:
    """The best configurations per workload and phase (metrics.best_per_workload with the runs): the observed
    best and every configuration that cannot be told apart from it, with PDG-rounded figures."""
    b = metrics.best_per_workload(r.cells, r.df, alpha=r.st.alpha, power=r.st.power)
    if b.height == 0 or "vs_best_verdict" not in b.columns:
        return b
    lvl = level(r.st)
    iv = lambda p: lambda x: stats.fmt_interval(x.get(f"{p}_pct"), x.get(f"{p}_lo_pct"), x.get(f"{p}_hi_pct"))  # noqa: E731
    b = _with_text(
        b,
        **{
            energy_pm(lvl): lambda x: stats.fmt_pm(x["energy_per_sample_j"], x["energy_per_sample_ci95_j"]),
            f"vs best % [{lvl}]": iv("vs_best"),
            f"Δenergy vs fp32 % [{lvl}]": iv("d_energy"),
            "of": lambda x: (
                f"{x['configurations'] - x['told_apart']} of {x['configurations']}" if "configurations" in x else ""
            ),
        },
    )
    return b.select(
        "workload",
        "phase",
        "of",
        "site",
        "device",
        "precision_variant",
        "batch_size",
        "repeats",
        energy_pm(lvl),
        f"vs best % [{lvl}]",
        "p_holm",
        "vs_best_verdict",
        f"Δenergy vs fp32 % [{lvl}]",
        "d_energy_verdict",
        "quality_metric",
        "quality",
        "d_quality",
        "pareto",
        "energy_source",
        "noisy",
    ).rename({"of": "could be best"})


def verdict_counts(r: Inputs) -> dict[str, Any] | None:
    """The verdicts of every comparison against the fp32 baseline, counted, with Holm over all of them."""
    rel = r.rel
    if rel.height == 0 or "d_energy_verdict" not in rel.columns:
        return None
    cmp = rel.filter(pl.col("d_energy_verdict").is_not_null() & (pl.col("d_energy_verdict") != "baseline"))
    if cmp.height == 0:
        return None
    counts = dict(cmp.group_by("d_energy_verdict").len().sort("d_energy_verdict").iter_rows())
    decided = cmp["d_energy_verdict"].is_in([stats.COSTLIER, stats.CHEAPER]).to_numpy()
    holm = stats.holm(stats.as_array(cmp, "d_energy_p"))  # the family: every comparison with a test
    kept = int(np.sum(decided & (holm <= r.st.alpha)))
    nd = cmp.filter(pl.col("d_energy_verdict") == stats.NO_DIFF)["d_energy_mde_pct"].drop_nulls()
    return {
        "n": cmp.height,
        "counts": counts,
        "holm_kept": kept,
        "decided": int(decided.sum()),
        "median_mde": stats.fmt_unc(nd.median()) if nd.len() else None,
    }


# ------------------------------------------------------------------ the sections, in page order
def summary_section(r: Inputs) -> Section:
    """Cards (counts of runs, cells, failures, sites, estimates), what is wrong with the inputs, the best
    configuration per workload and the best batch size by Zeus cost."""
    df, cells = r.df, r.cells
    n_ok = df.filter(pl.col("status") == "ok").height
    n_bad = df.height - n_ok
    hosts = df.select(pl.col("hostname").drop_nulls().n_unique()).item() if df.height else 0
    sites = df.select(pl.col("site").drop_nulls().n_unique()).item() if df.height else 0
    est = df.filter(pl.col("energy_estimated").fill_null(False) & (pl.col("status") == "ok")).height
    noisy = cells.filter(pl.col("noisy")).height if cells.height else 0
    cards = [
        (df.height, "runs", ""),
        (cells.height, "cells (repeats averaged)", ""),
        (n_ok, "ok", ""),
        (n_bad, "failed / skipped", "bad" if n_bad else ""),
        (sites, "sites", ""),
        (hosts, "hosts", ""),
        (est, "runs with estimated energy", "warn" if est else ""),
        (noisy, "noisy cells (CV > threshold)", "warn" if noisy else ""),
        (len(r.problems), "run files left out", "bad" if r.problems else ""),
    ]
    excluded = stats.excluded_runs(df)
    if excluded is not None:  # the runner's outlier rule marks runs it excluded (and measured again)
        cards.append((excluded, "runs excluded by the outlier rule", "warn" if excluded else ""))
    return Section(
        "summary",
        "Summary",
        "Summary",
        {
            "cards": cards,
            "notes": r.notes,
            "no_results": df.height == 0,
            "estimated": df.filter(pl.col("energy_estimated").fill_null(False)).height > 0,
            "best": table(best_view(r), empty="no successful run with an energy figure yet"),
            "level": level(r.st),
            "alpha": f"{r.st.alpha:g}",
            "verdicts": verdict_counts(r),
            "eta": f"{r.st.eta:g}",
            "best_batch": table(
                metrics.batch_sizes_like_the_best(r.tta, r.st.alpha, r.st.power),
                empty="no training run reached a target quality (or none has per-epoch curves)",
            ),
        },
    )


def charts_section(r: Inputs) -> Section:
    """Which precisions ran emulated (with the slowdown measured in the rows), how the others ran (int8
    backend, native, time and quality against fp32), then the charts (fleet and scheduler have their sections)."""
    data: dict[str, Any] = {"emulated": [], "precisions": None}
    rel = r.rel
    if rel.height:
        data["emulated"] = metrics.emulated_notes(metrics.emulated(rel))
        d = rel.filter((pl.col("precision") != "fp32") | (pl.col("variant") != "baseline"))
        if d.height:
            d = d.with_columns(
                time_vs_fp32=pl.col("time_per_sample_s") / pl.col("base_time_per_sample_s"),
                native=pl.col("precision_native"),
                backend=pl.when(pl.col("precision_backend") != "").then(
                    pl.col("precision_backend") + pl.lit(" (") + pl.col("precision_scheme") + pl.lit(")")
                ),
            )
            data["precisions"] = table(
                d.select(
                    "site",
                    "workload",
                    "phase",
                    "device",
                    "precision_variant",
                    "batch_size",
                    "backend",
                    "native",
                    "time_vs_fp32",
                    "quality_metric",
                    "quality",
                    "d_quality",
                    "compile_s",
                ).sort("site", "workload", "phase", "device", "batch_size", "precision_variant")
            )
    own = ("fleet_whatif", "scheduler_overhead", "sites", "when_to_run")  # drawn in their own sections
    data["charts"] = [_chart(n) for n in CHART_NAMES if n not in own]
    return Section("charts", "Charts", "Charts", data)


def fleet_table(r: Inputs) -> pl.DataFrame:
    """The fleet what-if of the cells with an energy figure (also fleet.csv), sorted."""
    fleet_cells = r.cells.filter(pl.col("energy_j").is_not_null()) if r.cells.height else r.cells
    if fleet_cells.height == 0:
        return pl.DataFrame(schema={c: pl.String for c in metrics.FLEET_CSV_COLUMNS})
    return r.st.fleet_with_intervals(fleet_cells, r.df).sort(
        "site", "workload", "phase", "device", "batch_size", "precision_variant"
    )


def _range(v: float | None, lo: float | None, hi: float | None) -> str:
    """'0.0028 [0.0020, 0.0036]': a bar's value with its range at the PDG place; the value alone without one."""
    return stats.fmt_interval(v, lo, hi, signed=False)


def fleet_section(r: Inputs, fl: pl.DataFrame) -> Section:
    """The fleet what-if: the equal-work job, jobs per day, its chart and table."""
    st = r.st
    lvl = level(st)
    if fl.height:
        fl = _with_text(
            fl,
            **{
                "MWh/day (95 % range)": lambda x: _range(
                    x["mwh_per_day"], x.get("mwh_per_day_lo"), x.get("mwh_per_day_hi")
                ),
                f"Δenergy/job % [{lvl}]": lambda x: stats.fmt_interval(
                    x.get("d_energy_job_pct"), x.get("d_energy_job_lo_pct"), x.get("d_energy_job_hi_pct")
                ),
            },
        )
    t = (
        table(
            fl.select(
                "site",
                "workload",
                "phase",
                "device",
                "precision_variant",
                "batch_size",
                "samples_per_job",
                "jobs_per_day",
                "energy_per_job_j",
                "MWh/day (95 % range)",
                "t_co2_per_day",
                "saving_mwh_per_day",
                "saving_t_co2_per_day",
                "saving_pct",
                f"Δenergy/job % [{lvl}]",
                "d_energy_job_verdict",
                "energy_source",
            )
        )
        if fl.height
        else None
    )
    return Section(
        "fleet",
        "Fleet what-if",
        "Fleet what-if",
        {
            "jobs_per_day": f"{st.jobs_per_day:,.0f}",
            "per_site": bool(st.per_site),
            "job_text": st.fleet_job_text(),
            "chart": _chart("fleet_whatif"),
            "table": t,
        },
    )


def cells_table(r: Inputs) -> pl.DataFrame:
    """Per-cell metrics (also cells.csv): against the baseline, SCI, the Pareto front."""
    if not r.cells.height:
        return r.cells
    from ..carbon import sci_series

    return sci_series(metrics.pareto(r.st.sci_table(r.rel)), r.df)  # SCI with the sites' intensity series beside


def cells_view(r: Inputs, full: pl.DataFrame) -> pl.DataFrame:
    """The per-cell table of the page: every Δ against the fp32 baseline with its interval, verdict and minimum
    detectable effect, PDG-rounded (the numbers themselves are in cells.csv)."""
    lvl = level(r.st)
    iv = lambda p: lambda x: stats.fmt_interval(x.get(f"{p}_pct"), x.get(f"{p}_lo_pct"), x.get(f"{p}_hi_pct"))  # noqa: E731
    d = _with_text(
        full,
        **{
            energy_pm(lvl): lambda x: stats.fmt_pm(x["energy_per_sample_j"], x["energy_per_sample_ci95_j"]),
            f"Δenergy % [{lvl}]": iv("d_energy"),
            "MDE %": lambda x: stats.fmt_unc(x.get("d_energy_mde_pct")),
            "analysis": _analysis,
            f"Δtime % [{lvl}]": iv("d_time"),
            "Δquality": lambda x: stats.fmt_interval(x.get("d_quality"), x.get("d_quality_lo"), x.get("d_quality_hi")),
        },
    )
    cols = [
        "site",
        "workload",
        "phase",
        "device",
        "precision_variant",
        "batch_size",
        "repeats",
        energy_pm(lvl),
        f"Δenergy % [{lvl}]",
        "d_energy_verdict",
        "MDE %",
        "analysis",
        f"Δtime % [{lvl}]",
        "d_time_verdict",
        "energy_per_sample_cv",
        "noisy",
        "samples_per_j",
        "mean_power_w",
        "co2_per_1k_samples_kg",
        "sci_g_per_1k",
        "sci_embodied_share",
        "quality_metric",
        "quality",
        "Δquality",
        "d_quality_verdict",
        "pareto",
        "energy_source",
    ]
    return d.select([c for c in cols if c in d.columns]).sort(
        "site", "workload", "phase", "device", "batch_size", "precision_variant"
    )


def tables_section(r: Inputs, full: pl.DataFrame) -> Section:
    """Metrics per cell, and time and energy to target of the training runs."""
    return Section(
        "tables",
        "Metrics",
        "Metrics per cell",
        {
            "hardware_source": r.st.hardware_source or "no hardware table",
            "cells": table(cells_view(r, full)) if r.cells.height else None,
            "level": level(r.st),
            "power": f"{r.st.power:g}",
            "excluded": stats.excluded_runs(r.df),
            "tta": table(
                r.tta.select(
                    "site",
                    "workload",
                    "device",
                    "precision_variant",
                    "batch_size",
                    "repeat",
                    "target",
                    "target_source",
                    "epochs_to_target",
                    "tta_s",
                    "eta_j",
                    "max_power_w",
                    "zeus_cost",
                ).sort("workload", "device", "precision_variant", "batch_size", "repeat")
            )
            if r.tta.height
            else None,
        },
    )


def scheduler_section(r: Inputs) -> Section:
    """Where a job's time goes per site: chart and the scheduler view."""
    return Section(
        "scheduler",
        "Scheduler",
        "Scheduler view",
        {"chart": _chart("scheduler_overhead"), "table": table(metrics.scheduler_view(r.df))},
    )


def sites_section(r: Inputs) -> Section:
    """The same cell side by side across sites (metrics.site_comparison) and where to run each workload
    (metrics.where_to_run), from the summary's rows (the current configuration's)."""
    df = r.df
    comp = metrics.site_comparison(df, r.st.sites)
    sites = sorted(df.filter(pl.col("status") == "ok")["site"].drop_nulls().unique().to_list()) if df.height else []
    data: dict[str, Any] = {"chart": _chart("sites"), "advice": [], "where": None, "comparison": None}
    if comp.height == 0:
        data["nothing"] = (
            (f"one site only ({', '.join(sites)})" if len(sites) == 1 else "no cell was measured at two sites")
            if sites
            else "no runs"
        )
        return Section("sites", "Sites", "Sites", data)
    lvl = level(r.st)
    where = metrics.where_to_run_intervals(metrics.where_to_run(comp), comp, df, alpha=r.st.alpha, power=r.st.power)
    where = _with_text(
        where,
        **{
            f"vs best × [{lvl}]": lambda x: stats.fmt_interval(
                x.get("vs_best_gm"), x.get("vs_best_lo"), x.get("vs_best_hi"), signed=False
            ),
        },
    )
    for (wl, ph), g in where.group_by("workload", "phase", maintain_order=True):
        best = g.row(0, named=True)
        rest = g.slice(1).to_dicts()
        tied = [x["site"] for x in rest if x["site_verdict"] == "cannot be told apart from the best"]
        data["advice"].append(
            {
                "workload": wl,
                "phase": ph,
                "best": best,
                "next": rest[0] if rest else None,
                "tied": tied,
                "ratio_col": f"vs best × [{lvl}]",
            }
        )
    # the same cell at each site, with its energy per sample's interval (cell_stats: repeats of that site)
    ci = r.cells.select("site", *metrics.SITE_CELL_KEYS, "energy_per_sample_ci95_j")
    comp = comp.join(ci, on=["site", *metrics.SITE_CELL_KEYS], how="left", nulls_equal=True)
    comp = _with_text(
        comp,
        **{
            energy_pm(lvl): lambda x: stats.fmt_pm(x["energy_per_sample_j"], x.get("energy_per_sample_ci95_j")),
        },
    )
    first = ["workload", "phase", "device", "precision_variant", "batch_size", "site", "scheduler", "hosts", "repeats"]
    comp = comp.select(
        *first,
        energy_pm(lvl),
        *[
            c
            for c in comp.columns
            if c not in (*first, energy_pm(lvl), "config_hash", "energy_per_sample_j", "energy_per_sample_ci95_j")
        ],
    )
    data.update(
        nothing=None,
        criterion=metrics.WHERE_TO_RUN_CRITERION,
        level=lvl,
        alpha=f"{r.st.alpha:g}",
        where=table(
            where.select(
                "workload",
                "phase",
                "rank",
                "site",
                "common_cells",
                "co2_per_1k_samples_g",
                "vs_best",
                f"vs best × [{lvl}]",
                "p_holm",
                "site_verdict",
                "energy_per_sample_j",
                "time_per_sample_s",
                "intensity_g_per_kwh",
                "pue",
            )
        ),
        comparison=table(comp),
    )
    return Section("sites", "Sites", "Sites", data)


def when_to_run_section(r: Inputs, fl: pl.DataFrame, full: pl.DataFrame) -> Section:
    """Carbon over time (joulegrid.carbon): the sites' intensity series, the runs' time-resolved CO2 beside the
    annual-mean CO2, CO2 per sample by hour of day, the fleet's CO2 per day spread evenly / as measured / in
    the cleanest k hours with its assumptions, and SCI with the series."""
    from .. import carbon

    st, k = r.st, r.st.cleanest_hours
    loaded = carbon.load(st.carbon_series, st.sites)
    data: dict[str, Any] = {"chart": _chart("when_to_run"), "k": k, "nothing": not loaded}
    if not loaded:
        return Section("when-to-run", "When to run", "When to run", data)
    data["series"] = table(carbon.site_table(st.sites, loaded, k))
    data["mismatch"] = carbon.annual_mismatches(st.sites, loaded)
    ok = r.df.filter((pl.col("status") == "ok") & pl.col("site").is_in(list(loaded)))
    window_fell_back = pl.col("carbon_fallback").str.contains("measured window").fill_null(False)
    data["runs"] = table(
        ok.group_by("site")
        .agg(
            runs=pl.len(),
            window_from_series=(~window_fell_back).sum(),
            window_annual_fallback=window_fell_back.sum(),
            co2_series_kg=pl.col("co2_series_kg").sum(),
            co2_annual_kg=pl.col("co2_annual_kg").sum(),
            job_co2_series_kg=pl.col("job_co2_series_kg").sum(),
            job_co2_annual_kg=pl.col("job_co2_annual_kg").sum(),
            fallback_example=pl.col("carbon_fallback").drop_nulls().first(),
        )
        .with_columns(series_vs_annual_pct=(pl.col("co2_series_kg") / pl.col("co2_annual_kg") - 1) * 100)
        .sort("site"),
        empty="no successful run at a site with a series",
    )
    cases = carbon.intensity_cases(r.df, st.sites, loaded, k, st.fleet_scope)
    data["cases"] = table(cases, empty="no series covers every hour of the day: no what-if")
    fc = carbon.fleet_cases(fl, cases) if fl.height and cases.height and "mwh_per_day" in fl.columns else None
    data["fleet"] = (
        table(
            fc.select(
                "site",
                "workload",
                "phase",
                "device",
                "precision_variant",
                "batch_size",
                "jobs_per_day",
                "mwh_per_day",
                "t_co2_per_day_even",
                "t_co2_per_day_measured",
                "t_co2_per_day_cleanest",
                "saving_t_per_day_vs_even",
                "saving_t_per_day_vs_measured",
                "energy_source",
            )
        )
        if fc is not None and fc.height
        else None
    )
    kinds = {carbon.site_carbon(s_, st.sites.get(s_)).kind for s_ in loaded}
    spans = "their measured windows" if st.fleet_scope == "phase" else "their whole jobs"
    data["assumptions"] = [
        f"A typical day per site: the series' mean intensity in each UTC hour of the day over the clock hours it "
        f"covers fully ({'; '.join(f'{s_}: {v.coverage_text()}' for s_, v in sorted(loaded.items()))}); every day of "
        "the fleet's year is assumed to follow it.",
        "Each job takes the same energy at any hour (the fleet what-if's MWh/day, PUE included, at "
        f"{st.jobs_per_day:,.0f} jobs/day per site): moving jobs changes when the energy is drawn, not how much.",
        "Jobs spread evenly: the mean of the typical day's 24 hours. As measured: the typical day weighted by the time "
        f"the site's successful runs spent in each hour ({spans}, "
        "fleet.scope). Cleanest k hours: every job inside the k cleanest hours of the typical day "
        f"(fleet.cleanest_hours = {k}), spread evenly over them; a job longer than those hours' stretches would "
        "not fit.",
        f"Confining the jobs to {k} h a day needs {24 / k:.3g}× the concurrent job slots of an even spread "
        "(capacity_factor), and the queue must hold the jobs until then.",
        (
            "Marginal series: the saving estimates the change in the grid's emissions when the jobs move, which is "
            "what a decision to shift load needs."
            if kinds == {"marginal"}
            else "Average intensity (the grid mix's emissions per kWh) is what CO2 reporting uses; how much the grid's "
            "emissions change when jobs move is the marginal intensity, which can differ a lot: treat the saving as an "
            "average-intensity estimate (give a marginal series, kind: marginal, for the shifting decision)."
        ),
    ]
    sci_cols = [
        "site",
        "workload",
        "phase",
        "device",
        "precision_variant",
        "batch_size",
        "repeats",
        "sci_g_per_1k",
        "sci_series_g_per_1k",
        "series_runs",
        "carbon_kind",
        "carbon_basis",
    ]
    sci = (
        full.filter(pl.col("site").is_in(list(loaded)))
        if full.height and "sci_series_g_per_1k" in full.columns
        else None
    )
    data["sci"] = (
        table(
            sci.select(sci_cols)
            .with_columns(series_vs_annual_pct=(pl.col("sci_series_g_per_1k") / pl.col("sci_g_per_1k") - 1) * 100)
            .sort("site", "workload", "phase", "device", "batch_size", "precision_variant")
        )
        if sci is not None and sci.height
        else None
    )
    return Section("when-to-run", "When to run", "When to run", data)


def hotspots_section(r: Inputs) -> Section:
    """The profiled runs' top functions and operators (measure.hotspots)."""
    hs, err = load_hotspots(r.results_dir)
    view = _hotspots_view(hs, r.df) if hs is not None else None
    data: dict[str, Any] = {"error": err, "table": None, "folder": str(r.results_dir / "hotspots")}
    if view is not None and view.height:
        mine = hs.filter(pl.col("run_id").is_in(r.df["run_id"].to_list())) if r.df.height else hs
        data.update(table=table(view), n_cells=mine["cell_id"].n_unique())
    return Section("hotspots", "Hotspots", "Hotspots", data)


def missing_section(r: Inputs) -> Section:
    """Run files left out, comparisons without a baseline, failed and skipped runs."""
    df = r.df
    missing_base = metrics.missing_baselines(r.cells) if r.cells.height else pl.DataFrame()
    not_ok = df.filter(pl.col("status") != "ok")
    return Section(
        "missing",
        "Missing & failures",
        "Missing and failures",
        {
            "problems": table(pl.DataFrame(r.problems)) if r.problems else None,
            "baselines": table(missing_base) if missing_base.height else None,
            "counts": table(not_ok.group_by("status").agg(runs=pl.len()).sort("status")) if not_ok.height else None,
            "failed": table(
                not_ok.select("cell_id", "status", "error_type", "skip_reason", "error_message", "hostname", "attempt"),
                empty="none: every run finished ok",
            ),
            "nothing_missing": not r.problems and not missing_base.height and not not_ok.height and df.height > 0,
        },
    )


def compare_section(r: Inputs) -> Section:
    """A versions campaign's decision table and its chart (analysis.compare; docs/compare.md)."""
    from . import compare

    try:
        res = compare.compare_rows(r.df, **r.st.compare_args())
    except compare.CompareError as e:
        return Section("compare", "Compare", "Compare: head against base", {"error": str(e)})
    head = compare.markdown(res).splitlines()[0].removeprefix("### joulegrid compare: ")
    return Section(
        "compare",
        "Compare",
        "Compare: head against base",
        {
            "error": None,
            "headline": head,
            "table": table(compare.report_view(res)),
            "svg": Markup(compare.chart_svg(res)),
            "delta_pct": res.threshold_pct,
            "source": res.threshold_source,
            "versions": res.versions,
        },
    )


def other_configs_section(r: Inputs) -> Section:
    """The runs of other configurations (aggregate --current): named per site, workload and config
    hash with what tells them apart in the rows, never averaged with the current ones."""
    other, df = r.other, r.df
    current = (
        df.group_by("workload").agg(pl.col("config_hash").drop_nulls().unique().sort().str.join(", ")).sort("workload")
    )

    def uniq(c):
        return pl.col(c).drop_nulls().unique().sort().cast(pl.String).str.join(", ")

    t = (
        other.group_by("site", "workload", "config_hash")
        .agg(
            runs=pl.len(),
            cells=pl.col("cell_id").n_unique(),
            phases=uniq("phase"),
            seeds=uniq("seed"),
            epochs=uniq("epochs"),
            target_quality=uniq("target_quality"),
            dataset_rows=uniq("dataset_rows"),
            first_finished=pl.col("finished_at").min(),
            last_finished=pl.col("finished_at").max(),
        )
        .sort("workload", "site", "last_finished")
    )
    return Section(
        "other-configs",
        "Other configurations",
        f"Other configurations ({other.height} run(s))",
        {
            "runs": other.height,
            "current": "; ".join(f"{w} {h}" for w, h in current.iter_rows()) or "none measured yet",
            "table": table(t),
        },
    )


def measured_section(r: Inputs) -> Section:
    """Energy method per site and host, whose energy (node vs job), the CPU model's error, absent meters."""
    ok = r.df.filter(pl.col("status") == "ok")
    if ok.height == 0:
        return Section("measured", "How measured", "How measured", {"methods": None})
    methods = (
        ok.group_by("site", "hostname", "scheduler", "energy_method", "energy_components")
        .agg(
            runs=pl.len(),
            estimated=pl.col("energy_estimated").fill_null(False).any(),
            low_confidence_runs=pl.col("energy_low_confidence").fill_null(False).sum(),
            meter_interval_s=pl.col("energy_interval_s").mean(),
            calibration=pl.col("model_calibration").drop_nulls().unique().sort().str.join("; "),
            calibration_error_pct=pl.col("model_fit_max_rel_err").max() * 100,
            intensity_g_per_kwh=pl.col("carbon_intensity_g_per_kwh").mean(),
            pue=pl.col("pue").mean(),
        )
        .sort("site", "hostname", "energy_method")
    )
    absent = (
        ok.select("hostname", "meters_absent")
        .explode("meters_absent")
        .drop_nulls("meters_absent")
        .unnest("meters_absent")
        .group_by("hostname", "meter", "reason")
        .agg(runs=pl.len())
        .sort("hostname", "meter")
    )
    return Section(
        "measured",
        "How measured",
        "How measured",
        {
            "methods": table(methods),
            "whose": table(
                metrics.whose_energy(r.df), empty="no run with a node energy (results of an older joulegrid?)"
            ),
            "model_error": table(
                metrics.model_error(r.df),
                empty="no run with both a counter and the model's prediction (no readable "
                "RAPL, or the estimate meter was not among measure.meters)",
            ),
            "absent": table(absent) if absent.height else None,
        },
    )


def environment_section(r: Inputs) -> Section:
    """Hosts, software versions and thread settings of the runs."""
    env = (
        r.df.group_by("hostname", "site", "scheduler")
        .agg(
            runs=pl.len(),
            cpu_model=pl.col("cpu_model").drop_nulls().first(),
            cpu_flags=pl.col("cpu_flags").drop_nulls().first(),
            cores_logical=pl.col("cpu_cores_logical").max(),
            memory_gib=(pl.col("memory_total_bytes").max() / 2**30).round(1),
            gpu_model=pl.col("gpu_model").drop_nulls().first(),
            gpu_compute_capability=pl.col("gpu_compute_capability").drop_nulls().first(),
            gpu_count=pl.col("gpu_count").max(),
            os=pl.col("os").drop_nulls().first(),
            python=pl.col("python_version").drop_nulls().first(),
            torch=pl.col("torch_version").drop_nulls().first(),
            torch_threads=pl.col("torch_num_threads").drop_nulls().unique().sort().cast(pl.String).str.join(","),
            codecarbon=pl.col("codecarbon_version").drop_nulls().first(),
            zeus=pl.col("zeus_version").drop_nulls().first(),
            joulegrid=pl.col("joulegrid_version").drop_nulls().first(),
            git_commit=pl.col("joulegrid_git_commit").drop_nulls().first(),
        )
        .sort("site", "hostname")
    )
    return Section("environment", "Environment", "Environment", {"table": table(env, empty="no runs")})


# ------------------------------------------------------------------ the page
@functools.cache
def _templates():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("joulegrid.analysis", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def read_inputs(
    summary: str,
    problems_file: str | None,
    settings: AnalysisSettings | None,
    results_dir: str | None,
    other_file: str | None,
) -> Inputs:
    """The summary, the other configurations' runs and the left-out run files, with what is wrong with them."""
    from .aggregate import other_path

    p = Path(summary)
    df, notes = load_summary(p)
    op = Path(other_file) if other_file else other_path(p)
    other = load_summary(op)[0] if op.is_file() else pl.DataFrame(schema=schema.polars_schema())
    problems: list[dict] = []
    pf = Path(problems_file) if problems_file else p.with_suffix(".problems.json")
    if pf.is_file():
        try:
            problems = json.loads(pf.read_text())
        except ValueError as e:
            notes.append(f"{pf} is not valid JSON ({e}); the list of left-out run files is unknown.")
    st = settings or AnalysisSettings.defaults()
    from ..carbon import apply  # the carbon columns with the report's sites file and series (as aggregate did)

    df, other = apply(df, st.sites, st.carbon_series), apply(other, st.sites, st.carbon_series)
    return Inputs(p, df, other, problems, notes, st, Path(results_dir) if results_dir else p.parent)


def build_report(
    summary: str,
    out_dir: str,
    problems_file: str | None = None,
    settings: AnalysisSettings | None = None,
    results_dir: str | None = None,
    other_file: str | None = None,
) -> str:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = read_inputs(summary, problems_file, settings, results_dir, other_file)

    specs: dict[str, dict] = {}
    from . import charts

    for name in CHART_NAMES:
        chart = charts.build(name, r.df, r.st)
        with atomic_path(out / f"{name}.png", suffix=".png") as tmp:
            chart.save(tmp, format="png", scale_factor=1.5)
        specs[name] = chart.to_dict()
    fl = fleet_table(r)
    _write_csv(fl.select(metrics.FLEET_CSV_COLUMNS), out / "fleet.csv")
    full = cells_table(r)
    _write_csv(full, out / "cells.csv")

    sections = [
        summary_section(r),
        charts_section(r),
        fleet_section(r, fl),
        tables_section(r, full),
        scheduler_section(r),
        sites_section(r),
        when_to_run_section(r, fl, full),
        hotspots_section(r),
        missing_section(r),
    ]
    if "code_version" in r.df.columns and r.df["code_version"].drop_nulls().len():  # a versions campaign
        sections.append(compare_section(r))
    if r.other.height:
        sections.append(other_configs_section(r))
    sections += [measured_section(r), environment_section(r)]
    st = r.st
    page = (
        _templates()
        .get_template("report.html.j2")
        .render(
            sections=sections,
            subtitle=(
                f"{r.df.height} run(s) · {r.cells.height} cell(s) · η = {st.eta:g} · noisy if CV > {st.noisy_cv:.0%}"
            ),
            n_charts=len(specs),
            js_bundle=Markup(_js_bundle()),
            specs_json=Markup(_script_json(specs)),
            generated=f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
            summary=str(r.summary),
            schema_version=schema.SCHEMA_VERSION,
        )
    )
    index = out / "index.html"
    with atomic_path(index, suffix=".html") as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return str(index)


def _write_csv(df: pl.DataFrame, path: Path) -> None:
    flat = df.select([c for c, t in df.schema.items() if not isinstance(t, (pl.List, pl.Struct, pl.Array))])
    with atomic_path(path, suffix=".csv") as tmp:
        flat.write_csv(tmp)
