"""Comparison charts (altair). Estimated energies are drawn hollow, measured ones filled.

Every chart function takes the summary DataFrame (result schema) and an ``AnalysisSettings`` and
returns an altair chart; when there is nothing to draw it returns an honest "no data" chart, so
every PNG the report rule declares is always written. Chart names live in
``joulegrid.analysis.CHART_NAMES`` (cheap to import from the Snakemake rules).
"""

from __future__ import annotations

from collections.abc import Callable

import altair as alt
import polars as pl

from ..grid import BASELINE_VARIANT, PRECISIONS, VARIANTS
from ..units import scaled_unit
from . import CHART_NAMES, metrics
from .settings import AnalysisSettings

SOURCE_DOMAIN = ["measured", "estimated"]
# The width a chart may take: the report's content width at a 1400-px window (docs/metrics.md, "The report").
PAGE_PX = 1280
# a facet row's label above its panel, not beside it (the panel keeps the page's width)
TOP_HEADER = alt.Header(labelAngle=0, labelOrient="top", labelAnchor="start", labelFontWeight="bold")
# Measured energies are drawn as filled disks, estimated ones as rings (a hollow mark): an SVG path of
# an outer circle and an inner one drawn the other way round, so the middle stays empty.
RING = "M -1 0 A 1 1 0 1 0 1 0 A 1 1 0 1 0 -1 0 Z M -0.6 0 A 0.6 0.6 0 1 1 0.6 0 A 0.6 0.6 0 1 1 -0.6 0 Z"
SOURCE_SHAPE = alt.Scale(domain=SOURCE_DOMAIN, range=["circle", RING])

# One colour per precision in every chart and every report: a fixed domain (every precision and
# variant joulegrid knows, in grid order) with fixed colours, not a scheme that hands colours out in
# the order values appear (fp32 was orange in one report, red in another). Other variants than the
# baseline are lighter shades of their precision's colour, one shade per variant.
PRECISION_COLOURS = {
    "fp64": "#7b4fa0",
    "fp32": "#4c78a8",
    "bf16": "#f58518",
    "fp16": "#54a24b",
    "fp16_noscaler": "#1c8a86",
    "int8": "#e45756",
}
assert set(PRECISION_COLOURS) == set(PRECISIONS), "give every precision of joulegrid.grid.PRECISIONS a colour"


def variant_colour(precision: str, variant: str) -> str:
    """The colour of precision+variant: the precision's colour for the baseline, lighter for the others."""
    base = PRECISION_COLOURS[precision]
    k = [BASELINE_VARIANT, *[v for v in VARIANTS if v != BASELINE_VARIANT]].index(variant)
    t = 0.55 * k / max(1, len(VARIANTS) - 1)  # towards white
    rgb = [int(base[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * t):02x}" for c in rgb)


PRECISION_DOMAIN = [p if v == BASELINE_VARIANT else f"{p}+{v}" for v in VARIANTS for p in PRECISIONS]
PRECISION_RANGE = [variant_colour(p, v) for v in VARIANTS for p in PRECISIONS]


def precision_colour(field: str = "precision_variant:N", present=None) -> alt.Color:
    """The colour encoding of a precision (+variant) field: the same colour for a precision everywhere. With
    ``present`` (the values the chart draws) the legend lists only those, each in its fixed colour."""
    domain, colours = PRECISION_DOMAIN, PRECISION_RANGE
    if present is not None:
        have = {v for v in present if v is not None}
        known = [(d, c) for d, c in zip(PRECISION_DOMAIN, PRECISION_RANGE, strict=True) if d in have]
        other = [(d, "#8c8c8c") for d in sorted(have - set(PRECISION_DOMAIN))]  # a precision joulegrid lacks
        domain, colours = [d for d, _ in known + other], [c for _, c in known + other]
    return alt.Color(
        field, title="precision", scale=alt.Scale(domain=domain, range=colours), legend=alt.Legend(symbolOpacity=1)
    )


def _source_shape(present=None) -> alt.Shape:
    """Disks for measured energies, rings for estimated ones; the legend lists the kinds present."""
    have = [s for s in SOURCE_DOMAIN if present is None or s in set(present)]
    rng = [dict(zip(SOURCE_DOMAIN, ["circle", RING], strict=True))[s] for s in have]
    return alt.Shape("energy_source:N", scale=alt.Scale(domain=have, range=rng), title="energy")


def _present(d: pl.DataFrame, col: str) -> list:
    return d[col].drop_nulls().unique().to_list() if col in d.columns else []


def _points(base: alt.Chart, d: pl.DataFrame, field: str = "precision_variant:N", **kw) -> alt.Chart:
    """Points in the series colour: a disk where the energy was measured, a ring where it is an estimate."""
    return base.mark_point(size=kw.pop("size", 110), filled=True, opacity=1).encode(
        color=precision_colour(field, _present(d, field.split(":")[0])),
        shape=_source_shape(_present(d, "energy_source")),
        **kw,
    )


def chooser(
    d: pl.DataFrame, chart: str, field: str = "site", what: str = "cells", everything: bool = False
) -> tuple[alt.Parameter | None, str | None]:
    """A drop-down above the chart that shows one value of ``field`` at a time (a Vega-Lite parameter bound to a
    select element: works offline, the bundle is inlined), each option labelled with what it shows ("lxplus (80
    cells)"); ``everything``: a first option "all" shows every value. None when the data has one value only.
    Returns (the parameter, the filter expression); the PNG shows the first option."""
    if field not in d.columns:
        return None, None
    counts = d.group_by(field).len().drop_nulls(field).sort(field)
    if counts.height < 2:
        return None, None
    values, ns = counts[field].to_list(), counts["len"].to_list()
    labels = [f"{v} ({n} {what})" for v, n in zip(values, ns, strict=True)]
    name = f"{chart}_{field}"
    if everything:
        values, labels = [None, *values], [f"all ({sum(ns)} {what})", *labels]
    p = alt.param(
        name=name,
        value=values[0],
        bind=alt.binding_select(options=values, labels=labels, name=f"{field.replace('_', ' ')} "),
    )
    test = f"datum.{field} === {name}"
    return p, (f"{name} === null || {test}" if everything else test)


def _choose(chart, params: list[tuple[alt.Parameter | None, str | None]]):
    """The chart with its drop-downs (chooser) and their filters."""
    for p, test in params:
        if p is not None:
            chart = chart.add_params(p).transform_filter(test)
    return chart


def _per_sample_unit(d: pl.DataFrame, col: str = "energy_per_sample_j") -> tuple[float, str]:
    """J, mJ, µJ or nJ per sample: whichever puts the largest value in [1, 1000)."""
    return scaled_unit(d[col].to_list() if col in d.columns else [], "J", "mµn")


def no_data(title: str, why: str) -> alt.Chart:
    """A chart that says there is nothing to draw, and why (keeps declared PNGs honest)."""
    msg = pl.DataFrame({"msg": [f"No data: {why}"]})
    return (
        alt.Chart(msg)
        .mark_text(size=14, color="#666")
        .encode(text="msg:N")
        .properties(title=title, width=520, height=60)
    )


def _cells(df: pl.DataFrame, st: AnalysisSettings) -> pl.DataFrame:
    return metrics.cell_stats(df, noisy_cv=st.noisy_cv)


def _keep(d: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return d.select([c for c in cols if c in d.columns])


# ------------------------------------------------------------------ 1. energy per sample
def _columns(n_panels: int, panel_px: int, room: int = PAGE_PX) -> int:
    """Facet columns that fit the page: as many panels of panel_px (axis and padding included) as room allows."""
    return max(1, min(n_panels, room // panel_px))


def energy_per_sample(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "Energy per sample by precision and batch size"
    d = _cells(df, st).filter(pl.col("energy_per_sample_j").is_not_null())
    if d.height == 0:
        return no_data(title, "no successful run with an energy figure")
    div, unit = _per_sample_unit(d)
    d = d.with_columns(
        panel=pl.col("workload") + " · " + pl.col("phase") + " / " + pl.col("device"),
        lo=pl.col("energy_per_sample_j") - pl.col("energy_per_sample_ci95_j").fill_null(0),
        hi=pl.col("energy_per_sample_j") + pl.col("energy_per_sample_ci95_j").fill_null(0),
    ).with_columns(
        lo=pl.when(pl.col("lo") > 0).then(pl.col("lo")).otherwise(pl.col("energy_per_sample_j")) / div,
        hi=pl.col("hi") / div,
        eps=pl.col("energy_per_sample_j") / div,
    )
    d = _keep(
        d,
        [
            "workload",
            "panel",
            "site",
            "precision_variant",
            "batch_size",
            "repeats",
            "eps",
            "energy_per_sample_j",
            "energy_per_sample_ci95_j",
            "energy_per_sample_cv",
            "noisy",
            "lo",
            "hi",
            "samples_per_s",
            "energy_method",
            "energy_source",
            "hostname",
            "precision_native",
            "precision_backend",
        ],
    )
    colour = precision_colour(present=_present(d, "precision_variant"))
    base = alt.Chart().encode(x=alt.X("batch_size:O", title="batch size"), color=colour)
    y = alt.Y("eps:Q", title=f"energy per sample ({unit})", scale=alt.Scale(type="log", zero=False))
    tooltip = [
        "workload",
        "panel",
        "site",
        "precision_variant",
        "batch_size",
        "repeats",
        alt.Tooltip("energy_per_sample_j:Q", title="J/sample (mean)", format=".3e"),
        alt.Tooltip("energy_per_sample_ci95_j:Q", title="± 95 % CI", format=".2e"),
        alt.Tooltip("energy_per_sample_cv:Q", title="CV", format=".1%"),
        "noisy",
        alt.Tooltip("samples_per_s:Q", title="samples/s", format=",.0f"),
        "energy_method",
        "energy_source",
        "hostname",
        alt.Tooltip("precision_native:N", title="native (false = emulated)"),
        alt.Tooltip("precision_backend:N", title="int8 backend"),
    ]
    line = base.mark_line(opacity=0.45).encode(y=y, detail="precision_variant:N")
    err = base.mark_rule(strokeWidth=1.5).encode(y=alt.Y("lo:Q", scale=alt.Scale(type="log", zero=False)), y2="hi:Q")
    pts = _points(base, d, y=y, tooltip=tooltip)
    panels = d["panel"].n_unique()
    chart = (
        alt.layer(line, err, pts, data=d)
        .properties(width=230, height=180)
        .facet(facet=alt.Facet("panel:N", title=None), columns=_columns(panels, 310))
        .resolve_scale(y="independent")
        .properties(title=_title(title, d))
    )
    return _choose(chart, [chooser(d, "energy_per_sample")])


def _title(text: str, d: pl.DataFrame, extra: str | None = None) -> alt.TitleParams:
    """A chart title; with several sites in the data, a subtitle saying the drop-down picks one."""
    sub = []
    if "site" in d.columns and d["site"].n_unique() > 1:
        sub.append("one site at a time: choose it above the chart (the PNG shows the first)")
    if extra:
        sub.append(extra)
    return alt.TitleParams(text, subtitle=sub, anchor="start") if sub else alt.TitleParams(text, anchor="start")


# ------------------------------------------------------------------ 2. quality vs energy + Pareto front
def quality_vs_energy(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "Quality vs energy per sample (dashed line and black circles: Pareto front)"
    cells = _cells(df, st).filter(pl.col("energy_per_sample_j").is_not_null() & pl.col("quality").is_not_null())
    if cells.height == 0:
        return no_data(title, "no successful run with both a quality and an energy figure")
    # the front of each site's cells (the chart shows one site at a time)
    d = pl.concat([metrics.pareto(g) for _, g in cells.group_by("site", maintain_order=True)])
    div, unit = _per_sample_unit(d)
    d = d.with_columns(
        panel=pl.col("workload")
        + " · "
        + pl.col("phase")
        + " · "
        + pl.col("quality_metric").fill_null("quality")
        + pl.when(pl.col("quality_higher_is_better").fill_null(True)).then(pl.lit(" ↑")).otherwise(pl.lit(" ↓")),
        config=pl.col("precision_variant") + " bs" + pl.col("batch_size").cast(pl.String) + " " + pl.col("device"),
        eps=pl.col("energy_per_sample_j") / div,
    )
    d = _keep(
        d,
        [
            "panel",
            "config",
            "site",
            "precision_variant",
            "batch_size",
            "device",
            "eps",
            "energy_per_sample_j",
            "quality",
            "quality_metric",
            "pareto",
            "energy_source",
            "energy_method",
            "repeats",
        ],
    )
    x = alt.X("eps:Q", title=f"energy per sample ({unit})", scale=alt.Scale(type="log", zero=False))
    y = alt.Y(
        "quality:Q", title="quality (arrow: better direction)", scale=alt.Scale(zero=False), axis=alt.Axis(format="~g")
    )
    tooltip = [
        "config",
        "site",
        "quality_metric",
        alt.Tooltip("quality:Q", format=".4g"),
        alt.Tooltip("energy_per_sample_j:Q", title="J/sample", format=".3e"),
        "pareto",
        "energy_source",
        "energy_method",
        "repeats",
    ]
    base = alt.Chart().encode(x=x, y=y)
    front = base.transform_filter("datum.pareto").mark_line(color="#444", strokeDash=[4, 3]).encode(order="eps:Q")
    pts = _points(base, d, tooltip=tooltip)
    ring = base.transform_filter("datum.pareto").mark_point(size=300, color="#222", strokeWidth=1, filled=False)
    chart = (
        alt.layer(front, ring, pts, data=d)
        .properties(width=250, height=200)
        .facet(facet=alt.Facet("panel:N", title=None), columns=_columns(d["panel"].n_unique(), 330))
        .resolve_scale(x="independent", y="independent")
        .properties(title=_title(title, d, "the front of the site shown" if d["site"].n_unique() > 1 else None))
    )
    return _choose(chart, [chooser(d, "quality_vs_energy")])


# ------------------------------------------------------------------ 3. time-to-target curves
def time_to_target(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "Training curves: quality vs wall time (dotted: target, ● target reached)"
    tta = metrics.time_to_target(df, targets=st.targets, eta=st.eta)
    if tta.height == 0:
        return no_data(title, "no successful training run with per-epoch quality")
    curves = (
        tta.select(
            "run_id",
            "site",
            "workload",
            "precision_variant",
            "batch_size",
            "repeat",
            "target",
            "epochs_to_target",
            "energy_source",
            "epoch_quality",
            "epoch_wall_s",
            epoch=pl.int_ranges(1, pl.col("epoch_quality").list.len() + 1),
        )
        .filter(pl.col("epoch_wall_s").list.len() == pl.col("epoch_quality").list.len())
        .explode("epoch_quality", "epoch_wall_s", "epoch")
        .with_columns(
            run=pl.col("precision_variant")
            + " bs"
            + pl.col("batch_size").cast(pl.String)
            + " r"
            + pl.col("repeat").cast(pl.String),
            reached=pl.col("epoch") == pl.col("epochs_to_target"),
        )
        .rename({"run_id": "run_key"})
    )
    if curves.height == 0:
        return no_data(title, "training runs recorded no per-epoch wall times")
    x = alt.X("epoch_wall_s:Q", title="cumulative wall time (s)")
    y = alt.Y("epoch_quality:Q", title="quality", scale=alt.Scale(zero=False))
    tooltip = [
        "run",
        "epoch",
        alt.Tooltip("epoch_wall_s:Q", format=".2f"),
        alt.Tooltip("epoch_quality:Q", format=".4g"),
        alt.Tooltip("target:Q", format=".4g"),
        "reached",
    ]
    base = alt.Chart().encode(x=x, y=y, color=precision_colour(present=_present(curves, "precision_variant")))
    few = curves["batch_size"].n_unique() <= 4  # a dash per batch size; more: a drop-down picks them
    dash = {"strokeDash": alt.StrokeDash("batch_size:O", title="batch size")} if few else {}
    lines = base.mark_line(opacity=0.7).encode(detail="run:N", **dash)
    pts = base.mark_point(size=30, filled=True).encode(detail="run:N", tooltip=tooltip)
    hit = base.transform_filter("datum.reached").mark_point(size=140, filled=True, opacity=0.9).encode(tooltip=tooltip)
    # one dotted rule per distinct target of the workload's runs (a mean of two targets is a target
    # nobody set); its tooltip says which runs have it
    rule = (
        alt.Chart()
        .transform_aggregate(runs="distinct(run)", groupby=["target"])
        .mark_rule(strokeDash=[2, 2], color="#333")
        .encode(
            y="target:Q",
            tooltip=[alt.Tooltip("target:Q", format=".4g"), alt.Tooltip("runs:Q", title="runs with this target")],
        )
    )
    chart = (
        alt.layer(lines, pts, hit, rule, data=curves)
        .properties(width=360, height=230)
        .facet(facet=alt.Facet("workload:N", title=None), columns=_columns(curves["workload"].n_unique(), 450))
        .resolve_scale(y="independent", x="independent")
        .properties(title=_title(title, curves))
    )
    runs = curves.unique("run_key")
    params = [chooser(runs, "time_to_target", what="runs")]
    if not few:
        params.append(chooser(runs, "time_to_target", "batch_size", what="runs", everything=True))
    return _choose(chart, params)


# ------------------------------------------------------------------ 4. scheduler overhead per site
def scheduler_overhead(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "Where a job's time goes, per site (mean seconds per job)"
    v = metrics.scheduler_view(df).filter(pl.col("turnaround_mean_s").is_not_null())
    if v.height == 0:
        return no_data(title, "no successful run with start/finish times")
    parts = v.select(
        site_label=pl.col("site") + " (" + pl.col("scheduler").fill_null("?") + ")",
        jobs="jobs",
        batch_efficiency="batch_efficiency",
        queue=pl.col("queue_wait_mean_s").fill_null(0.0),
        overhead=pl.col("overhead_mean_s").fill_null(0.0).clip(lower_bound=0.0),
        measured=pl.col("wall_mean_s").fill_null(0.0),
    ).unpivot(index=["site_label", "jobs", "batch_efficiency"], variable_name="part", value_name="seconds")
    parts = parts.with_columns(
        part=pl.col("part").replace(
            {"queue": "queue wait", "overhead": "start-up, setup, write", "measured": "measured phase"}
        )
    )
    labels = ["queue wait", "start-up, setup, write", "measured phase"]
    return (
        alt.Chart(parts)
        .mark_bar()
        .encode(
            y=alt.Y("site_label:N", title=None),
            x=alt.X("seconds:Q", title="mean seconds per job", stack="zero"),
            color=alt.Color(
                "part:N", title=None, scale=alt.Scale(domain=labels, range=["#e45756", "#f2cf5b", "#4c78a8"])
            ),
            order=alt.Order("part_order:Q"),
            tooltip=[
                "site_label",
                "part",
                alt.Tooltip("seconds:Q", format=".2f"),
                "jobs",
                alt.Tooltip("batch_efficiency:Q", title="batch efficiency", format=".1%"),
            ],
        )
        .transform_calculate(part_order=f"indexof({labels!r}, datum.part)")
        .properties(width=560, height=alt.Step(34), title=title)
    )


# ------------------------------------------------------------------ 5. fleet what-if
FLEET_TOP = 10  # the fleet chart's bars per panel: the configurations with the least energy per day


def fleet_whatif(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    jobs = f"{st.jobs_per_day:,.0f}"
    title = f"Fleet what-if: energy per day at {jobs} jobs/day per site, equal work per job"
    cells = _cells(df, st).filter(pl.col("energy_j").is_not_null())
    if cells.height == 0:
        return no_data(title, "no successful run with an energy figure")
    f = st.fleet_with_intervals(cells, df).filter(pl.col("mwh_per_day").is_not_null())
    if f.height == 0:
        return no_data(title, "no cell with an energy per job")
    # Wh, kWh, MWh or GWh per day: whichever puts the largest bar in [1, 1000)
    div, unit = scaled_unit((f["mwh_per_day"] * 1e6).to_list(), "Wh", "kMG")
    scale = 1e6 / div
    key = ("site", "workload", "phase", "device")
    f = f.with_columns(
        config=pl.col("precision_variant") + " bs" + pl.col("batch_size").cast(pl.String),
        per_day=pl.col("mwh_per_day") * scale,
        per_day_lo=pl.col("mwh_per_day_lo") * scale,
        per_day_hi=pl.col("mwh_per_day_hi") * scale,
        _n=pl.len().over(key),
        _rank=pl.col("mwh_per_day").rank("ordinal").over(key),
    )
    left_out = f.filter(pl.col("_rank") > FLEET_TOP).height
    f = f.filter(pl.col("_rank") <= FLEET_TOP).with_columns(
        group=pl.col("workload")
        + " · "
        + pl.col("phase")
        + " · "
        + pl.col("device")
        + pl.when(pl.col("_n") > FLEET_TOP)
        .then(pl.lit(f": the {FLEET_TOP} lowest of ") + pl.col("_n").cast(pl.String))
        .otherwise(pl.lit(""))
    )
    f = f.with_columns(saving_label=pl.Series([_change_label(x) for x in f.to_dicts()], dtype=pl.String))
    f = f.with_columns(label_x=pl.max_horizontal("per_day", "per_day_hi"))
    f = _keep(
        f,
        [
            "site",
            "group",
            "config",
            "precision_variant",
            "per_day",
            "per_day_lo",
            "per_day_hi",
            "label_x",
            "mwh_per_day",
            "t_co2_per_day",
            "saving_pct",
            "saving_label",
            "saving_mwh_per_day",
            "jobs_per_day",
            "samples_per_job",
            "energy_per_job_j",
            "energy_source",
            "d_energy_job_verdict",
        ],
    )
    base = alt.Chart().encode(y=alt.Y("config:N", title=None, sort=alt.EncodingSortField("per_day", order="ascending")))
    bars = base.mark_bar(stroke="#333", strokeWidth=1).encode(
        x=alt.X("per_day:Q", title=f"{unit} per day"),
        color=precision_colour(present=_present(f, "precision_variant")),
        opacity=alt.Opacity(
            "energy_source:N",
            scale=alt.Scale(
                domain=[s for s in SOURCE_DOMAIN if s in _present(f, "energy_source")],
                range=[
                    r for s, r in zip(SOURCE_DOMAIN, [0.95, 0.35], strict=True) if s in _present(f, "energy_source")
                ],
            ),
            title="energy (pale = estimated)",
        ),
        tooltip=[
            "config",
            "site",
            alt.Tooltip("jobs_per_day:Q", format=",.0f"),
            alt.Tooltip("samples_per_job:Q", title="samples/job", format=",.0f"),
            alt.Tooltip("energy_per_job_j:Q", title="J/job", format=".3g"),
            alt.Tooltip("per_day:Q", title=f"{unit}/day", format=".4g"),
            alt.Tooltip("t_co2_per_day:Q", title="tCO2e/day", format=".4g"),
            alt.Tooltip("saving_mwh_per_day:Q", title="saving MWh/day", format=".4g"),
            "saving_label",
            "energy_source",
        ],
    )
    rng = base.mark_rule(color="#222", strokeWidth=1.5).encode(x="per_day_lo:Q", x2="per_day_hi:Q")
    # the label sits right of the bar and of its range
    text = base.mark_text(align="left", dx=4, fontSize=11).encode(x="label_x:Q", text="saving_label:N")
    extra = (
        f"{left_out} configuration(s) with more energy per day are left out (every one is in fleet.csv)"
        if left_out
        else None
    )
    chart = (
        alt.layer(bars, rng, text, data=f)
        .properties(width=560, height=alt.Step(16))
        .facet(row=alt.Row("group:N", title=None, header=TOP_HEADER))
        .resolve_scale(y="independent", x="independent")
        .properties(title=_title(title + " (label: change against the fp32 baseline)", f, extra))
    )
    return _choose(chart, [chooser(f, "fleet_whatif", what="bars")])


def _change_label(x: dict) -> str:
    """A fleet bar's label: the change of one job's energy against the fp32 baseline with its interval and verdict
    ('−40 % [−45, −35]', '+3 % [−5, +12] no detectable difference', '−18 % one run'), 'baseline', 'no baseline'."""
    from .stats import fmt_interval

    v = x.get("d_energy_job_verdict")
    if v == "baseline":
        return "baseline"
    if x.get("d_energy_job_pct") is None:
        return "no baseline"
    text = fmt_interval(x["d_energy_job_pct"], x.get("d_energy_job_lo_pct"), x.get("d_energy_job_hi_pct")) + " %"
    if v in ("costlier", "cheaper"):
        return text
    return f"{text} ({'one run' if v == 'one run: no interval' else v})" if v else text


# ------------------------------------------------------------------ 6. sites
def sites(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "CO2 per 1,000 samples of the same cell at each site (each site's carbon intensity and PUE)"
    comp = metrics.site_comparison(df, st.sites).filter(pl.col("co2_per_1k_samples_g") > 0)
    if comp.height == 0:
        return no_data(title, "no cell measured at two sites or more")
    d = comp.with_columns(
        group=pl.col("workload") + " · " + pl.col("phase") + " · " + pl.col("device"),
        config=pl.col("precision_variant") + " bs" + pl.col("batch_size").cast(pl.String),
    )
    # µg, mg, g or kg per 1,000 samples: whichever puts the largest value in [1, 1000)
    div, unit = scaled_unit(d["co2_per_1k_samples_g"].to_list(), "g", "kmµn")
    d = d.with_columns(co2_1k=pl.col("co2_per_1k_samples_g") / div)
    d = _keep(
        d,
        [
            "group",
            "config",
            "site",
            "precision_variant",
            "batch_size",
            "co2_1k",
            "co2_per_1k_samples_g",
            "energy_per_sample_j",
            "time_per_sample_s",
            "intensity_g_per_kwh",
            "pue",
            "queue_wait_s",
            "batch_efficiency",
            "energy_source",
        ],
    )
    base = alt.Chart().encode(
        y=alt.Y("site:N", title=None),
        x=alt.X("co2_1k:Q", title=f"{unit} CO2 per 1,000 samples", scale=alt.Scale(type="log", zero=False)),
    )
    line = base.mark_line(opacity=0.4).encode(
        color=precision_colour(present=_present(d, "precision_variant")), detail="config:N"
    )
    pts = _points(
        base,
        d,
        tooltip=[
            "group",
            "config",
            "site",
            alt.Tooltip("co2_per_1k_samples_g:Q", title="g CO2 / 1k samples", format=".3g"),
            alt.Tooltip("energy_per_sample_j:Q", title="J/sample", format=".3e"),
            alt.Tooltip("time_per_sample_s:Q", title="s/sample", format=".3e"),
            alt.Tooltip("intensity_g_per_kwh:Q", title="gCO2/kWh"),
            "pue",
            alt.Tooltip("queue_wait_s:Q", title="queue wait s", format=".1f"),
            alt.Tooltip("batch_efficiency:Q", format=".1%"),
            "energy_source",
        ],
    )
    return (
        alt.layer(line, pts, data=d)
        .properties(width=420, height=alt.Step(26))
        .facet(row=alt.Row("group:N", title=None, header=TOP_HEADER))
        .resolve_scale(x="independent")
        .properties(title=title)
    )


# ------------------------------------------------------------------ 7. when to run
def when_to_run(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    from .. import carbon

    title = (
        "CO2 per 1,000 samples by hour of day (UTC), per site with an intensity series (dashed: with the annual mean)"
    )
    loaded = carbon.load(st.carbon_series, st.sites)
    if not loaded:
        return no_data(
            title, "no site has an intensity series (carbon_intensity.series in the sites file; docs/sites.md)"
        )
    d = carbon.hourly_co2_per_sample(_cells(df, st), st.sites, loaded)
    if d.height == 0:
        return no_data(title, "no successful run with an energy figure at a site with an intensity series")
    d = d.with_columns(panel=pl.col("workload") + " · " + pl.col("phase"))
    colour = alt.Color("site:N", title="site")
    base = alt.Chart().encode(x=alt.X("hour:O", title="hour of day (UTC)"), color=colour)
    line = base.mark_line(point=True).encode(
        y=alt.Y(
            "co2_per_1k_samples_g:Q",
            title="g CO2e per 1,000 samples",
            scale=alt.Scale(zero=False),
            axis=alt.Axis(format=".2e"),
        ),
        tooltip=[
            "site",
            "panel",
            alt.Tooltip("cell:N", title="cell (lowest energy/sample)"),
            "hour",
            alt.Tooltip("g_per_kwh:Q", title="gCO2e/kWh (typical day)", format=".1f"),
            alt.Tooltip("co2_per_1k_samples_g:Q", title="g CO2e / 1k samples", format=".3g"),
            alt.Tooltip("annual_g:Q", title="with the annual mean", format=".3g"),
        ],
    )
    annual = base.mark_line(strokeDash=[5, 4], opacity=0.7).encode(y="annual_g:Q")
    return (
        alt.layer(line, annual, data=d)
        .properties(width=420, height=200)
        .facet(facet=alt.Facet("panel:N", title=None), columns=2)
        .resolve_scale(y="independent")
        .properties(title=title)
    )


CHARTS: dict[str, Callable[[pl.DataFrame, AnalysisSettings], alt.TopLevelMixin]] = {
    "energy_per_sample": energy_per_sample,
    "quality_vs_energy": quality_vs_energy,
    "time_to_target": time_to_target,
    "scheduler_overhead": scheduler_overhead,
    "fleet_whatif": fleet_whatif,
    "sites": sites,
    "when_to_run": when_to_run,
}
assert tuple(CHARTS) == CHART_NAMES, "keep joulegrid.analysis.CHART_NAMES in step with charts.CHARTS"


def png(spec: dict, scale: float = 1.0) -> bytes:
    """A chart's PNG from its Vega-Lite spec (a chart's to_dict(): validated already), rendered by vl-convert for
    the Vega-Lite version of this altair; a drop-down's first option is what it shows."""
    import vl_convert as vlc
    from altair.utils.mimebundle import vl_version_for_vl_convert

    return vlc.vegalite_to_png(spec, vl_version=vl_version_for_vl_convert(), scale=scale)


def build(name: str, df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    """The chart called name; a "no data" chart (naming the error) if building it fails."""
    try:
        return CHARTS[name](df, st)
    except Exception as e:  # noqa: BLE001 - one broken chart must not cost the whole report
        return no_data(name.replace("_", " "), f"chart could not be built ({type(e).__name__}: {e})")
