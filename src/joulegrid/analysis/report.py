"""The self-contained HTML report (inline Vega, no CDN) and the chart PNGs.

``build_report(summary, out_dir)`` writes ``<out_dir>/index.html``, ``<out_dir>/<chart>.png`` for
every name in CHART_NAMES (a "no data" chart when there is nothing to draw, so every PNG the
Snakemake rule declares exists) and ``<out_dir>/<table>.csv`` for every name in REPORT_TABLES: the
full rows behind the page's tables (``cells.csv``: per-cell derived metrics; ``fleet.csv``: the fleet
what-if; ``best.csv``, ``precisions.csv``, ``sites.csv``, ``time_to_target.csv``), empty where there is
nothing to list. The page embeds the Vega/Vega-Lite/vega-embed bundle from vl-convert once (built once
per process: ``_js_bundle``) and every chart spec as JSON, so it opens offline from a file:// URL;
``window.joulegridCharts = {expected, rendered, errors}`` tells a browser test whether every chart
rendered, ``window.joulegridViews[name]`` holds each chart's Vega view.

The page is a Jinja2 template (``templates/report.html.j2``, autoescaped) that includes one template per
section (``templates/sections/<id>.html.j2``); each section is one function here (``*_section``) that
reads the inputs (``Inputs``: the summary, repeats averaged, the other configurations' runs, the
left-out run files) and returns a ``Section`` holding what its template draws (and the tables it writes
as CSV). A new section is one function, one template and one entry in ``build_report``'s list. The
first screen answers the campaign's questions (``answers``); long tables are collapsed, filterable and
sortable (``table``, macros.html.j2 and the page's small inline script).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from markupsafe import Markup, escape

from .. import schema
from ..io import atomic_path
from ..units import scaled_unit
from . import CHART_NAMES, REPORT_TABLES, metrics, stats
from .settings import AnalysisSettings

log = logging.getLogger(__name__)

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
        "the configured jobs per day at each site (Wh, kWh or MWh per day as the figures need, PUE included); the "
        "label is the change against the fp32 baseline of the same workload, phase, device and batch size.",
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
    if "±" in col or "[" in col or "range)" in col or col.startswith("MDE"):  # stats.fmt_pm / fmt_interval: PDG-rounded
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


# A table with more rows than this is collapsed (<details>): one click away, not one scroll away
COLLAPSE_ROWS = 12
# Columns a long table can be filtered by (a drop-down each, where the table holds two values or more)
FILTER_COLUMNS = ("site", "workload", "phase", "device", "precision_variant", "precision", "batch_size")
LONG_TEXT = 40  # a text cell longer than this may break anywhere (a path, an error message)
SHARED = ("site", "device", "energy_source")  # said once above a long table where every row has the same


@dataclass
class Filter:
    """A drop-down of a table (macros.html.j2): its column's index and name, and each value with the rows it shows."""

    index: int
    column: str
    options: list[tuple[str, int]]


@dataclass
class Table:
    """A table as the template draws it (macros.html.j2, ``table``): formatted cells with their css class,
    or ``rows`` None and the text saying it is empty; ``n`` = its rows, ``more`` = rows left out.

    ``title`` names it where it is collapsed (more than COLLAPSE_ROWS rows: a <details> whose summary says
    how many rows and links ``csv``, the file next to the report with every row); ``filters``: its
    drop-downs (FILTER_COLUMNS with two values or more, on a collapsed table); ``id``: the anchor that
    links to it (a link may preset its filters)."""

    columns: list[str]
    rows: list[list[tuple[str, str]]] | None
    n: int
    more: int = 0
    empty: str = "none"
    title: str | None = None
    csv: str | None = None
    id: str | None = None
    filters: list[Filter] = field(default_factory=list)
    collapse: bool = False
    note: str | None = None  # what every row shares (columns left out: constant_columns)

    def __bool__(self) -> bool:
        return self.rows is not None

    @property
    def headers(self) -> list[Markup]:
        """The column names, each allowed to break after an underscore (a narrow column wraps its name)."""
        return [Markup(escape(c).replace("_", Markup("_<wbr>"))) for c in self.columns]


def table(
    df: pl.DataFrame,
    max_rows: int = 500,
    empty: str = "none",
    *,
    title: str | None = None,
    csv: str | None = None,
    id: str | None = None,
    collapse: bool | None = None,
    shared: list[str] | tuple[str, ...] = (),
) -> Table:
    """A frame as a Table (formatted cells); collapsed with filters when longer than COLLAPSE_ROWS (or as
    ``collapse`` says). ``shared``: columns left out where every row has the same value, said once above the
    table instead (a grid of one site or one device)."""
    if df.height == 0:
        return Table(df.columns, None, 0, empty=empty, title=title, csv=csv, id=id)
    note = None
    if df.height > 1:
        same = [c for c in shared if c in df.columns and df[c].n_unique() == 1]
        if same:
            note = "Every row: " + ", ".join(f"{c.replace('_', ' ')} {_fmt(c, df[c][0])[0]}" for c in same) + "."
            df = df.drop(same)
    rows = []
    for r in df.head(max_rows).iter_rows():
        cells = [_fmt(c, v) for c, v in zip(df.columns, r, strict=True)]
        rows.append(
            [(t, (cls + " long").strip()) if len(t) > LONG_TEXT and "num" not in cls else (t, cls) for t, cls in cells]
        )
    fold = df.height > COLLAPSE_ROWS if collapse is None else collapse
    filters = []
    if fold:
        for i, c in enumerate(df.columns):
            if c not in FILTER_COLUMNS:
                continue
            counts: dict[str, int] = {}
            for row in rows:
                counts[row[i][0]] = counts.get(row[i][0], 0) + 1
            if len(counts) >= 2:
                num = df[c].dtype.is_numeric()
                order = sorted(counts, key=(lambda t: float(t.replace(",", "") or "nan")) if num else str)
                filters.append(Filter(i, c, [(v, counts[v]) for v in order]))
    return Table(
        df.columns,
        rows,
        df.height,
        max(0, df.height - max_rows),
        empty,
        title=title,
        csv=csv,
        id=id,
        filters=filters,
        collapse=fold,
        note=note,
    )


BUNDLE_END = "\n// joulegrid: end of the cached bundle\n"  # the last line of a whole cached bundle


def bundle_cache_path(version: str) -> Path:
    """Where the bundle of vl-convert `version` is kept between processes: $JOULEGRID_CACHE_DIR, else
    $XDG_CACHE_HOME/joulegrid, else ~/.cache/joulegrid."""
    root = os.environ.get("JOULEGRID_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "joulegrid"
    )
    return Path(root) / f"vega-bundle-vl-convert-{version}.js"


@functools.cache
def _js_bundle() -> str:
    """The Vega, Vega-Lite and vega-embed bundle the page inlines: vl_convert.javascript_bundle() takes seconds
    to build and is the same for every report made with one vl-convert version, so it is built once per process
    (a test session, `joulegrid report` over several summaries) and kept in the user's cache for the next
    processes (bundle_cache_path; bench/bench_report.py measures what that saves). A cache that cannot be read
    or written is rebuilt or skipped: the page is the same."""
    import vl_convert as vlc

    cache = bundle_cache_path(getattr(vlc, "__version__", "unknown"))
    try:
        text = cache.read_text(encoding="utf-8")
        if text.endswith(BUNDLE_END):  # a whole file (written atomically; an older partial copy is rebuilt)
            return text[: -len(BUNDLE_END)]
    except OSError:
        pass
    text = vlc.javascript_bundle()
    try:
        with atomic_path(cache, suffix=".js") as tmp:
            Path(tmp).write_text(text + BUNDLE_END, encoding="utf-8")
    except OSError as e:
        log.debug("could not cache the Vega bundle in %s: %s", cache, e)
    return text


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

    # what several sections read, computed once
    @functools.cached_property
    def best(self) -> pl.DataFrame:
        """metrics.best_per_workload: every configuration that could be the best, per workload and phase."""
        return metrics.best_per_workload(self.cells, self.df, alpha=self.st.alpha, power=self.st.power)

    @functools.cached_property
    def site_comp(self) -> pl.DataFrame:
        """metrics.site_comparison: the same cell at each site (cells measured at two sites or more)."""
        return metrics.site_comparison(self.df, self.st.sites)

    @functools.cached_property
    def where(self) -> pl.DataFrame | None:
        """metrics.where_to_run with its intervals and verdicts; None without a cell measured at two sites."""
        if self.site_comp.height == 0:
            return None
        return metrics.where_to_run_intervals(
            metrics.where_to_run(self.site_comp), self.site_comp, self.df, alpha=self.st.alpha, power=self.st.power
        )

    @functools.cached_property
    def fleet(self) -> pl.DataFrame:
        """The fleet what-if of the cells with an energy figure (fleet_table; also fleet.csv)."""
        return fleet_table(self)


@dataclass
class Section:
    """One section of the page: its anchor, navigation text and heading; the rest is what its template
    (templates/sections/<id>.html.j2) draws, as attributes."""

    id: str
    nav: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)
    # tables written next to the report as <name>.csv (every name of REPORT_TABLES is written, empty if no section
    # gives it): the full rows behind what the page shows
    csv: dict[str, pl.DataFrame] = field(default_factory=dict)

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


def energy_pm(lvl: str, unit: str = "J") -> str:
    return f"energy/sample ({unit}) ± {lvl}"


def _pm_scaled(div: float):
    """A row's energy per sample ± its interval, in the table's unit (J divided by div), PDG-rounded."""

    def f(x: dict) -> str:
        v, e = x.get("energy_per_sample_j"), x.get("energy_per_sample_ci95_j")
        return stats.fmt_pm(v / div if v is not None else None, e / div if e is not None else None)

    return f


def best_view(r: Inputs) -> pl.DataFrame:
    """The best configurations per workload and phase (metrics.best_per_workload with the runs): the observed
    best and every configuration that cannot be told apart from it, with PDG-rounded figures."""
    b = r.best
    if b.height == 0 or "vs_best_verdict" not in b.columns:
        return b
    lvl = level(r.st)
    div, unit = scaled_unit(b["energy_per_sample_j"].to_list(), "J", "mµn")
    iv = lambda p: lambda x: stats.fmt_interval(x.get(f"{p}_pct"), x.get(f"{p}_lo_pct"), x.get(f"{p}_hi_pct"))  # noqa: E731
    b = _with_text(
        b,
        **{
            energy_pm(lvl, unit): _pm_scaled(div),
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
        energy_pm(lvl, unit),
        f"vs best % [{lvl}]",
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


# ------------------------------------------------------------------ the first screen: the answers
def config_text(x: dict, sites: bool = True, devices: bool = True) -> str:
    """'bf16 bs1024' (+ ' cpu' with several devices, + ' @ lxplus' with several sites)."""
    t = f"{x['precision_variant']} bs{x['batch_size']}"
    if devices:
        t += f" {x['device']}"
    return t + (f" @ {x['site']}" if sites else "")


def _filter_link(**keys) -> str:
    """A link's filter (data-filter): the detail table's drop-downs it presets ('workload=baler_ae&phase=infer')."""
    from urllib.parse import urlencode

    return urlencode({k: str(v) for k, v in keys.items() if v is not None})


# what the first screen's template reads of each answer ("" where it has nothing to say)
ANSWER_KEYS = (
    "use",
    "use_verdict",
    "use_class",
    "saving",
    "saving_config",
    "saving_value",
    "saving_verdict",
    "saving_class",
    "saving_lead",
    "saving_filter",
    "saving_fleet",
    "level",
    "site",
    "site_note",
    "site_class",
)


def answers(r: Inputs) -> list[dict[str, Any]]:
    """The campaign's questions, per workload and phase, each with the link to its detail (docs/metrics.md, "The
    report's first screen"): the configuration to use with its verdict (metrics.best_per_workload: the observed
    best, or the tie set when the best cannot be told apart); the largest saving against the fp32 baseline with its
    interval (among the comparisons whose verdict is cheaper; else the lowest Δ with its verdict) and what it saves
    a day at the fleet; the site to run it at (metrics.where_to_run_intervals)."""
    cells = r.cells.filter(pl.col("energy_per_sample_j").is_not_null()) if r.cells.height else r.cells
    if cells.height == 0:
        return []
    lvl = level(r.st)
    many_sites = cells["site"].n_unique() > 1
    many_devices = cells["device"].n_unique() > 1
    name = functools.partial(config_text, sites=many_sites, devices=many_devices)
    best, rel, fl, where = r.best, r.rel, r.fleet, r.where
    out = []
    for wl, ph in cells.select("workload", "phase").unique().sort("workload", "phase").iter_rows():
        here = (pl.col("workload") == wl) & (pl.col("phase") == ph)
        a: dict[str, Any] = dict.fromkeys(ANSWER_KEYS, "")
        a.update(workload=wl, phase=ph, filter=_filter_link(workload=wl, phase=ph), site_others=[])
        # 1. the configuration to use
        bset = best.filter(here).to_dicts() if best.height else []
        if bset:
            top, rest = bset[0], bset[1:]
            n_all = top.get("configurations") or 1
            a["use"] = name(top)
            if n_all == 1:
                a["use_verdict"], a["use_class"] = "the only configuration measured", ""
            elif not rest:
                a["use_verdict"], a["use_class"] = f"the best: told apart from the other {n_all - 1}", "good"
            elif all(x.get("vs_best_verdict") == stats.ONE_RUN for x in rest):
                a["use_verdict"] = (
                    f"observed best; one run per cell, so none of the other {len(rest)} can be excluded "
                    "(grid.repeats: 3 or more gives intervals)"
                )
                a["use_class"] = "warn"
            else:
                names = [name(x) for x in rest]
                shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                held = sum(str(x.get("vs_best_verdict") or "").startswith("withheld") for x in rest)
                a["use_verdict"] = f"tie: {len(bset)} of {n_all} cannot be told apart — also {shown}" + (
                    f" ({held} of them not testable: different meters or models)" if held else ""
                )
                a["use_class"] = "warn"
        # 2. the largest saving against the fp32 baseline
        cmp = (
            rel.filter(here & pl.col("d_energy_verdict").is_not_null() & (pl.col("d_energy_verdict") != "baseline"))
            if rel.height and "d_energy_verdict" in rel.columns
            else pl.DataFrame()
        )
        if cmp.height == 0:
            has_base = rel.height and rel.filter(here & (pl.col("d_energy_verdict") == "baseline")).height
            a["saving"] = "no comparison: " + ("fp32 only" if has_base else "no fp32 baseline measured")
            a["saving_class"] = ""
        else:
            cheaper = cmp.filter(pl.col("d_energy_verdict").str.starts_with(stats.CHEAPER))
            pick = (cheaper if cheaper.height else cmp).sort("d_energy_pct").row(0, named=True)
            iv = stats.fmt_interval(pick["d_energy_pct"], pick.get("d_energy_lo_pct"), pick.get("d_energy_hi_pct"))
            a["saving_config"] = name(pick)
            a["saving_value"] = f"{iv} %"
            a["saving_verdict"] = pick["d_energy_verdict"]
            a["saving_class"] = "good" if cheaper.height else ""
            a["saving_lead"] = "" if cheaper.height else f"none of {cmp.height} shown cheaper; the lowest: "
            a["saving_filter"] = _filter_link(workload=wl, phase=ph, site=pick["site"] if many_sites else None)
            per_day = (
                fl.filter(
                    here
                    & (pl.col("site") == pick["site"])
                    & (pl.col("device") == pick["device"])
                    & (pl.col("precision_variant") == pick["precision_variant"])
                    & (pl.col("batch_size") == pick["batch_size"])
                )
                if fl.height and "saving_mwh_per_day" in fl.columns
                else pl.DataFrame()
            )
            if per_day.height and (per_day["saving_mwh_per_day"][0] or 0) > 0:
                wh = per_day["saving_mwh_per_day"][0] * 1e6
                div, unit = scaled_unit([wh], "Wh", "kMG")
                a["saving_fleet"] = f"{wh / div:.3g} {unit}/day at {per_day['jobs_per_day'][0]:,.0f} jobs/day"
            a["level"] = lvl
        # 3. the site to run it at
        w = where.filter(here) if where is not None and where.height else None
        ran = cells.filter(here)["site"].unique().sort().to_list()
        if w is None or w.height == 0:
            a["site"] = ran[0] if len(ran) == 1 else ""
            a["site_note"] = (
                "the only site that ran it" if len(ran) == 1 else "no cell measured at every site that ran it"
            )
        else:
            top = w.sort("rank").row(0, named=True)
            a["site"] = top["site"]
            div, unit = scaled_unit([top["co2_per_1k_samples_g"]], "g", "kmµn")
            a["site_note"] = f"{top['co2_per_1k_samples_g'] / div:.3g} {unit} CO2 per 1,000 samples"
            others = []
            for x in w.sort("rank").slice(1).iter_rows(named=True):
                v = str(x.get("site_verdict") or "")
                if v == "emits more":
                    others.append(f"{x['site']} {x['vs_best']:.2f}× (emits more)")
                elif v.startswith("withheld"):
                    others.append(f"{x['site']} {x['vs_best']:.2f}× (not testable: different meters or models)")
                elif v == stats.ONE_RUN:
                    others.append(f"{x['site']} {x['vs_best']:.2f}× (one run)")
                else:
                    others.append(f"{x['site']} {x['vs_best']:.2f}× (cannot be told apart)")
            a["site_others"] = others
            a["site_class"] = "good" if others and all("emits more" in o for o in others) else ""
        out.append(a)
    return out


# ------------------------------------------------------------------ the sections, in page order
def summary_section(r: Inputs) -> Section:
    """The answers per workload and phase (answers), cards (counts of runs, cells, failures, sites, estimates),
    what is wrong with the inputs, the verdicts counted; the best configurations and the best batch size by Zeus
    cost one click away."""
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
    best = best_view(r)
    return Section(
        "summary",
        "Summary",
        "Summary",
        {
            "answers": answers(r),
            "jobs_per_day": f"{r.st.jobs_per_day:,.0f}",
            "cards": cards,
            "notes": r.notes,
            "no_results": df.height == 0,
            "estimated": df.filter(pl.col("energy_estimated").fill_null(False)).height > 0,
            "best": table(
                best,
                empty="no successful run with an energy figure yet",
                title="Best configuration per workload",
                csv="best.csv",
                id="best-table",
                shared=("repeats", "energy_source", "quality_metric"),
            ),
            "level": level(r.st),
            "alpha": f"{r.st.alpha:g}",
            "verdicts": verdict_counts(r),
            "eta": f"{r.st.eta:g}",
            "best_batch": table(
                metrics.batch_sizes_like_the_best(r.tta, r.st.alpha, r.st.power),
                empty="no training run reached a target quality (or none has per-epoch curves)",
                title="Best batch size by Zeus cost",
                id="best-batch-table",
            ),
        },
        csv={"best": r.best},  # the numbers (the page rounds them)
    )


def _span(values: list, col: str) -> str:
    """One figure as the tables print it (_fmt), or 'lo – hi' where the values differ."""
    v = [x for x in values if x is not None and x == x]
    if not v:
        return ""
    lo, hi = min(v), max(v)
    if abs(hi - lo) <= 1e-9 * max(abs(hi), abs(lo), 1e-300):
        return _fmt(col, float(lo))[0]
    return f"{_fmt(col, float(lo))[0]} – {_fmt(col, float(hi))[0]}"


def precisions_view(d: pl.DataFrame) -> pl.DataFrame:
    """How each precision ran, grouped by what varies: one row per workload, phase, device, precision, backend and
    native, with the sites and batch sizes it covers and the range of its time per sample and quality change
    against fp32 over them (every cell: precisions.csv)."""
    g = (
        d.group_by("workload", "phase", "device", "precision_variant", "backend", "native", maintain_order=True)
        .agg(
            sites=pl.col("site").unique().sort().str.join(", "),
            batch_sizes=pl.col("batch_size").unique().sort(),
            cells=pl.len(),
            _t=pl.col("time_vs_fp32"),
            quality_metric=pl.col("quality_metric").drop_nulls().first(),
            _q=pl.col("d_quality"),
            compile_s=pl.col("compile_s").mean(),
        )
        .sort("workload", "phase", "device", "precision_variant")
    )
    return g.with_columns(
        batch_sizes=pl.Series(
            [(str(b[0]) if len(b) == 1 else f"{b[0]}–{b[-1]} ({len(b)})") for b in g["batch_sizes"].to_list()],
            dtype=pl.String,
        ),
        time_vs_fp32=pl.Series([_span(t, "time_vs_fp32") for t in g["_t"].to_list()], dtype=pl.String),
        d_quality=pl.Series([_span(q, "d_quality") for q in g["_q"].to_list()], dtype=pl.String),
    ).select(
        "workload",
        "phase",
        "device",
        "precision_variant",
        "backend",
        "native",
        "sites",
        "batch_sizes",
        "cells",
        "time_vs_fp32",
        "quality_metric",
        "d_quality",
        "compile_s",
    )


def charts_section(r: Inputs) -> Section:
    """Which precisions ran emulated (with the slowdown measured in the rows), how the others ran (int8
    backend, native, time and quality against fp32; grouped over sites and batch sizes, every cell in
    precisions.csv), then the charts (fleet and scheduler have their sections)."""
    data: dict[str, Any] = {"emulated": [], "precisions": None}
    rel = r.rel
    full = pl.DataFrame()
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
            full = d.select(
                *metrics.VIEW_KEYS,
                "backend",
                "native",
                "time_vs_fp32",
                "quality_metric",
                "quality",
                "d_quality",
                "compile_s",
            ).sort("site", "workload", "phase", "device", "batch_size", "precision_variant")
            data["precisions"] = table(
                precisions_view(full), title="How each precision ran", csv="precisions.csv", id="precisions-table"
            )
    own = ("fleet_whatif", "scheduler_overhead", "sites", "when_to_run")  # drawn in their own sections
    data["charts"] = [_chart(n) for n in CHART_NAMES if n not in own]
    return Section("charts", "Charts", "Charts", data, csv={"precisions": full})


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
    """The fleet what-if: the equal-work job, jobs per day, its chart and table (energy per day in Wh, kWh, MWh or
    GWh: whichever fits the largest figure)."""
    st = r.st
    lvl = level(st)
    div, unit = scaled_unit((fl["mwh_per_day"] * 1e6).to_list() if fl.height else [], "Wh", "kMG")
    day, saving = f"{unit}/day ({lvl} range)", f"saving {unit}/day"
    if fl.height:
        k = 1e6 / div
        fl = _with_text(
            fl,
            **{
                day: lambda x: _range(
                    x["mwh_per_day"] * k,
                    x["mwh_per_day_lo"] * k if x.get("mwh_per_day_lo") is not None else None,
                    x["mwh_per_day_hi"] * k if x.get("mwh_per_day_hi") is not None else None,
                ),
                f"Δenergy/job % [{lvl}]": lambda x: stats.fmt_interval(
                    x.get("d_energy_job_pct"), x.get("d_energy_job_lo_pct"), x.get("d_energy_job_hi_pct")
                ),
            },
        ).with_columns((pl.col("saving_mwh_per_day") * k).alias(saving))
    t = (
        table(
            fl.select(
                *metrics.VIEW_KEYS,
                "samples_per_job",
                *(["jobs_per_day"] if st.per_site else []),
                "energy_per_job_j",
                day,
                "t_co2_per_day",
                saving,
                "saving_pct",
                f"Δenergy/job % [{lvl}]",
                "d_energy_job_verdict",
                "energy_source",
            ),
            title="Fleet what-if per cell",
            csv="fleet.csv",
            id="fleet-table",
            shared=SHARED,
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
            "unit": unit,
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
    div, unit = scaled_unit(full["energy_per_sample_j"].to_list(), "J", "mµn")
    iv = lambda p: lambda x: stats.fmt_interval(x.get(f"{p}_pct"), x.get(f"{p}_lo_pct"), x.get(f"{p}_hi_pct"))  # noqa: E731
    d = _with_text(
        full,
        **{
            energy_pm(lvl, unit): _pm_scaled(div),
            f"Δenergy % [{lvl}]": iv("d_energy"),
            "MDE %": lambda x: stats.fmt_unc(x.get("d_energy_mde_pct")),
            "analysis": _analysis,
            f"Δtime % [{lvl}]": iv("d_time"),
            "Δquality": lambda x: stats.fmt_interval(x.get("d_quality"), x.get("d_quality_lo"), x.get("d_quality_hi")),
        },
    )
    # the page's columns (every column, unrounded, in cells.csv)
    cols = [
        *metrics.VIEW_KEYS,
        "repeats",
        energy_pm(lvl, unit),
        f"Δenergy % [{lvl}]",
        "d_energy_verdict",
        "MDE %",
        "analysis",
        f"Δtime % [{lvl}]",
        "Δquality",
        "sci_g_per_1k",
        "pareto",
        "energy_source",
    ]
    return d.select([c for c in cols if c in d.columns]).sort(
        "site", "workload", "phase", "device", "batch_size", "precision_variant"
    )


def tta_view(tta: pl.DataFrame) -> pl.DataFrame:
    """Time and energy to target per training cell (its runs averaged: how many reached the target, mean TTA,
    ETA and Zeus cost; every run in time_to_target.csv)."""
    keys = ("site", "workload", "device", "precision_variant", "batch_size")
    return (
        tta.group_by(*keys, "target", "target_source")
        .agg(
            runs=pl.len(),
            reached=pl.col("epochs_to_target").is_not_null().sum(),
            epochs_to_target=pl.col("epochs_to_target").mean(),
            tta_s=pl.col("tta_s").mean(),
            eta_j=pl.col("eta_j").mean(),
            max_power_w=pl.col("max_power_w").mean(),
            zeus_cost=pl.col("zeus_cost").mean(),
        )
        .with_columns(reached=pl.col("reached").cast(pl.String) + " of " + pl.col("runs").cast(pl.String))
        .drop("runs")
        .sort("workload", "site", "device", "precision_variant", "batch_size")
    )


TTA_COLUMNS = (
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
)


def tables_section(r: Inputs, full: pl.DataFrame) -> Section:
    """Metrics per cell (collapsed, filterable; cells.csv), and time and energy to target of the training runs
    (per cell; every run in time_to_target.csv)."""
    runs = r.tta.select(TTA_COLUMNS).sort("workload", "device", "precision_variant", "batch_size", "repeat")
    return Section(
        "tables",
        "Metrics",
        "Metrics per cell",
        {
            "hardware_source": r.st.hardware_source or "no hardware table",
            "cells": table(
                cells_view(r, full), title="Metrics per cell", csv="cells.csv", id="cells-table", shared=SHARED
            )
            if r.cells.height
            else None,
            "level": level(r.st),
            "power": f"{r.st.power:g}",
            "excluded": stats.excluded_runs(r.df),
            "tta": table(
                tta_view(r.tta), title="Time and energy to target per cell", csv="time_to_target.csv", id="tta-table"
            )
            if r.tta.height
            else None,
        },
        csv={"time_to_target": runs},
    )


def scheduler_section(r: Inputs) -> Section:
    """Where a job's time goes per site: chart and the scheduler view."""
    return Section(
        "scheduler",
        "Scheduler",
        "Scheduler view",
        {"chart": _chart("scheduler_overhead"), "table": table(metrics.scheduler_view(r.df), title="Scheduler view")},
    )


def sites_view(comp: pl.DataFrame, cells: pl.DataFrame, lvl: str) -> pl.DataFrame:
    """The same cell at each site, pivoted: one row per cell, per site its energy per sample (± its interval, in
    the table's unit) and CO2 per 1,000 samples (with the site's intensity and PUE); the long table, with queue
    wait, whole-job overhead and batch efficiency per site, is sites.csv."""
    ci = cells.select("site", *metrics.SITE_CELL_KEYS, "energy_per_sample_ci95_j")
    comp = comp.join(ci, on=["site", *metrics.SITE_CELL_KEYS], how="left", nulls_equal=True)
    div, unit = scaled_unit(comp["energy_per_sample_j"].to_list(), "J", "mµn")
    comp = _with_text(comp, _e=_pm_scaled(div))
    gdiv, gunit = scaled_unit(comp["co2_per_1k_samples_g"].to_list(), "g", "kmµn")
    keys = ["workload", "phase", "device", "precision_variant", "batch_size"]
    sites = sorted(comp["site"].unique().to_list())
    wide = comp.select(*keys, "site", "_e", "co2_per_1k_samples_g").pivot(
        on="site", index=keys, values=["_e", "co2_per_1k_samples_g"], aggregate_function="first"
    )
    cols = []
    for s_ in sites:
        cols += [
            pl.col(f"_e_{s_}").alias(f"{s_}: {unit}/sample ± {lvl}"),
            (pl.col(f"co2_per_1k_samples_g_{s_}") / gdiv).round_sig_figs(4).alias(f"{s_}: {gunit} CO2/1k samples"),
        ]
    return wide.select(*keys, *cols).sort(*keys)


def sites_section(r: Inputs) -> Section:
    """The same cell side by side across sites (metrics.site_comparison, pivoted: one row per cell) and where to run
    each workload (metrics.where_to_run), from the summary's rows (the current configuration's)."""
    df = r.df
    comp = r.site_comp
    sites = sorted(df.filter(pl.col("status") == "ok")["site"].drop_nulls().unique().to_list()) if df.height else []
    data: dict[str, Any] = {"chart": _chart("sites"), "advice": [], "where": None, "comparison": None}
    if comp.height == 0:
        data["nothing"] = (
            (f"one site only ({', '.join(sites)})" if len(sites) == 1 else "no cell was measured at two sites")
            if sites
            else "no runs"
        )
        return Section("sites", "Sites", "Sites", data, csv={"sites": comp})
    lvl = level(r.st)
    where = _with_text(
        r.where,
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
            ),
            title="Where to run each workload",
            id="where-table",
        ),
        comparison=table(
            sites_view(comp, r.cells, lvl), title="The same cell at each site", csv="sites.csv", id="sites-table"
        ),
    )
    return Section("sites", "Sites", "Sites", data, csv={"sites": comp})


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
    data["series"] = table(carbon.site_table(st.sites, loaded, k), title="Intensity series")
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
        title="The runs' CO2 with the series",
    )
    cases = carbon.intensity_cases(r.df, st.sites, loaded, k, st.fleet_scope)
    data["cases"] = table(
        cases, empty="no series covers every hour of the day: no what-if", title="Intensity of each case per site"
    )
    fc = carbon.fleet_cases(fl, cases) if fl.height and cases.height and "mwh_per_day" in fl.columns else None
    data["fleet"] = (
        table(
            fc.select(
                *metrics.VIEW_KEYS,
                "jobs_per_day",
                "mwh_per_day",
                "t_co2_per_day_even",
                "t_co2_per_day_measured",
                "t_co2_per_day_cleanest",
                "saving_t_per_day_vs_even",
                "saving_t_per_day_vs_measured",
                "energy_source",
            ),
            title="The fleet's cells in tonnes CO2e per day",
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
        *metrics.VIEW_KEYS,
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
            .sort("site", "workload", "phase", "device", "batch_size", "precision_variant"),
            title="SCI per 1,000 samples with the series",
        )
        if sci is not None and sci.height
        else None
    )
    return Section("when-to-run", "When to run", "When to run", data)


def hotspots_section(r: Inputs, out: Path) -> Section:
    """Where the profiled runs spend a step's time (measure.hotspots): per workload, a chart of the steps and
    operators per configuration, each cell's modules, operators and Python functions (its trace linked), and
    why each configuration differs from its baseline (joulegrid.analysis.hotspots). Writes hotspots.csv and
    hotspot-diffs.csv next to the page; ``specs``: the charts' Vega-Lite specs (build_report embeds them)."""
    from .. import hotspots as collected
    from . import hotspots

    notes: list[str] = []
    hs = collected.collect(r.results_dir, notes=notes)
    v = hotspots.view(hs, r.df, r.results_dir, out)
    _write_csv(v.rows.select(hotspots.CSV_COLUMNS) if v.rows.height else v.rows, out / "hotspots.csv")
    _write_csv(v.diffs.select(hotspots.DIFF_CSV_COLUMNS) if v.diffs.height else v.diffs, out / "hotspot-diffs.csv")
    specs: dict[str, dict] = {}
    workloads = []
    for i, w in enumerate(v.workloads):
        name = f"hotspots-{i}"
        specs[name] = w["chart"].to_dict()
        if w.get("icicle") is not None:  # the model's modules where they were profiled
            specs[f"{name}-modules"] = w["icicle"].to_dict()
        workloads.append(
            {
                **w,
                "chart": name,
                "icicle": f"{name}-modules" if w.get("icicle") is not None else None,
                "overview": table(w["overview"]) if w["overview"] is not None else None,
                "cells": [{**c, **{k: table(c[k]) for k in ("modules", "operators", "cprofile")}} for c in w["cells"]],
                "diffs": [{**d, "table": table(d["table"])} for d in w["diffs"]],
            }
        )
    data: dict[str, Any] = {
        "notes": notes,
        "workloads": workloads,
        "n_cells": v.cells.select(metrics.CELL_KEYS).unique().height if v.cells.height else 0,
        "n_diffs": sum(len(w["diffs"]) for w in workloads),
        "folder": str(r.results_dir / "hotspots"),
        "specs": specs,
    }
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
            "problems": table(pl.DataFrame(r.problems), title="Run files left out") if r.problems else None,
            "baselines": table(missing_base, title="Baselines not run") if missing_base.height else None,
            "counts": table(not_ok.group_by("status").agg(runs=pl.len()).sort("status")) if not_ok.height else None,
            "failed": table(
                not_ok.select("cell_id", "status", "error_type", "skip_reason", "error_message", "hostname", "attempt"),
                empty="none: every run finished ok",
                title="Failed and skipped runs",
            ),
            "nothing_missing": not r.problems and not missing_base.height and not not_ok.height and df.height > 0,
        },
    )


def compare_section(r: Inputs) -> Section:
    """A versions campaign's decision table and its chart (analysis.compare; docs/compare.md)."""
    from . import compare

    try:
        # a campaign's group-sequential plan, where `joulegrid compare --looks` fixed one, decides as it does there
        plan = compare.stored_plan(r.df, r.results_dir)
        res = compare.compare_rows(r.df, **r.st.compare_args(), plan=plan)
    except (compare.CompareError, compare.PlanError) as e:
        return Section("compare", "Compare", "Compare: head against base", {"error": str(e)})
    head = compare.markdown(res).splitlines()[0].removeprefix("### joulegrid compare: ")
    return Section(
        "compare",
        "Compare",
        "Compare: head against base",
        {
            "error": None,
            "headline": head,
            "table": table(compare.report_view(res), title="Decision per cell"),
            "svg": Markup(compare.chart_svg(res)),
            "delta_pct": res.threshold_pct,
            "source": res.threshold_source,
            "versions": res.versions,
            "sequential": compare.sequential_line(res) if res.sequential else None,
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
            "table": table(t, title="Other configurations"),
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
            "methods": table(methods, title="Energy method per site and host"),
            "whose": table(
                metrics.whose_energy(r.df), empty="no run with a node energy (results of an older joulegrid?)"
            ),
            "model_error": table(
                metrics.model_error(r.df),
                empty="no run with both a counter and the model's prediction (no readable "
                "RAPL, or the estimate meter was not among measure.meters)",
            ),
            "absent": table(absent, title="Meters asked for but not available") if absent.height else None,
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
    if 0 < env.height <= ENV_COLUMNS:  # one column per host: the long fields (CPU flags) wrap inside the page
        names = [f"{h} @ {s} ({c})" for h, s, c in env.select("hostname", "site", "scheduler").iter_rows()]
        env = env.select(pl.all().cast(pl.String)).transpose(
            include_header=True, header_name="host", column_names=names
        )
    return Section(
        "environment",
        "Environment",
        "Environment",
        {
            "table": table(
                env, empty="no runs", title="Hosts and software", collapse=False if "host" in env.columns else None
            )
        },
    )


ENV_COLUMNS = 6  # up to this many hosts, the environment table has a column per host (more: a row per host)


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
        specs[name] = charts.build(name, r.df, r.st).to_dict()  # validated once: the page's spec and the PNG's
        png = charts.png(specs[name], scale=1.5)
        with atomic_path(out / f"{name}.png", suffix=".png") as tmp:
            Path(tmp).write_bytes(png)
    fl = r.fleet
    full = cells_table(r)
    tables = {"fleet": fl.select(metrics.FLEET_CSV_COLUMNS), "cells": full}

    sections = [
        summary_section(r),
        charts_section(r),
        fleet_section(r, fl),
        tables_section(r, full),
        scheduler_section(r),
        sites_section(r),
        when_to_run_section(r, fl, full),
        hotspots_section(r, out),
        missing_section(r),
    ]
    if "code_version" in r.df.columns and r.df["code_version"].drop_nulls().len():  # a versions campaign
        sections.append(compare_section(r))
    if r.other.height:
        sections.append(other_configs_section(r))
    sections += [measured_section(r), environment_section(r)]
    for sec in sections:  # sections with charts of their own (hotspots: one per workload)
        specs.update(sec.data.get("specs") or {})
    for s_ in sections:
        tables.update(s_.csv)
    for name in REPORT_TABLES:  # every declared CSV exists, empty where there is nothing to list
        _write_csv(tables.get(name, pl.DataFrame()), out / f"{name}.csv")
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
