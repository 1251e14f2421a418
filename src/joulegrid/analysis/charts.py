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
from . import CHART_NAMES, metrics
from .settings import AnalysisSettings

SOURCE_DOMAIN = ["measured", "estimated"]
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


def precision_colour(field: str = "precision_variant:N") -> alt.Color:
    """The colour encoding of a precision (+variant) field: the same colour for a precision everywhere."""
    return alt.Color(field, title="precision", scale=alt.Scale(domain=PRECISION_DOMAIN, range=PRECISION_RANGE))


def _source_shape() -> alt.Shape:
    return alt.Shape("energy_source:N", scale=SOURCE_SHAPE, title="energy")


def _points(base: alt.Chart, field: str = "precision_variant:N", **kw) -> alt.Chart:
    """Points in the series colour: a disk where the energy was measured, a ring where it is an estimate."""
    return base.mark_point(size=kw.pop("size", 110), filled=True, opacity=1).encode(
        color=precision_colour(field), shape=_source_shape(), **kw
    )


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
def energy_per_sample(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "Energy per sample by precision and batch size"
    d = _cells(df, st).filter(pl.col("energy_per_sample_j").is_not_null())
    if d.height == 0:
        return no_data(title, "no successful run with an energy figure")
    d = d.with_columns(
        phase_device=pl.col("phase") + " / " + pl.col("device") + " @ " + pl.col("site"),
        lo=pl.col("energy_per_sample_j") - pl.col("energy_per_sample_ci95_j").fill_null(0),
        hi=pl.col("energy_per_sample_j") + pl.col("energy_per_sample_ci95_j").fill_null(0),
    ).with_columns(lo=pl.when(pl.col("lo") > 0).then(pl.col("lo")).otherwise(pl.col("energy_per_sample_j")))
    d = _keep(
        d,
        [
            "workload",
            "phase_device",
            "site",
            "precision_variant",
            "batch_size",
            "repeats",
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
    base = alt.Chart().encode(x=alt.X("batch_size:O", title="batch size"), color=precision_colour())
    y = alt.Y("energy_per_sample_j:Q", title="energy per sample (J)", scale=alt.Scale(type="log", zero=False))
    tooltip = [
        "workload",
        "phase_device",
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
    pts = _points(base, y=y, tooltip=tooltip)
    return (
        alt.layer(line, err, pts, data=d)
        .properties(width=240, height=190)
        .facet(
            row=alt.Row("workload:N", title=None), column=alt.Column("phase_device:N", title="phase / device @ site")
        )
        .resolve_scale(y="independent")
        .properties(title=title)
    )


# ------------------------------------------------------------------ 2. quality vs energy + Pareto front
def quality_vs_energy(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "Quality vs energy per sample (dashed line and black circles: Pareto front)"
    cells = _cells(df, st).filter(pl.col("energy_per_sample_j").is_not_null() & pl.col("quality").is_not_null())
    if cells.height == 0:
        return no_data(title, "no successful run with both a quality and an energy figure")
    d = metrics.pareto(cells).with_columns(
        panel=pl.col("workload")
        + " · "
        + pl.col("phase")
        + " · "
        + pl.col("quality_metric").fill_null("quality")
        + pl.when(pl.col("quality_higher_is_better").fill_null(True)).then(pl.lit(" ↑")).otherwise(pl.lit(" ↓")),
        config=pl.col("precision_variant") + " bs" + pl.col("batch_size").cast(pl.String) + " " + pl.col("device"),
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
            "energy_per_sample_j",
            "quality",
            "quality_metric",
            "pareto",
            "energy_source",
            "energy_method",
            "repeats",
        ],
    )
    x = alt.X("energy_per_sample_j:Q", title="energy per sample (J)", scale=alt.Scale(type="log", zero=False))
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
    front = (
        base.transform_filter("datum.pareto")
        .mark_line(color="#444", strokeDash=[4, 3])
        .encode(order="energy_per_sample_j:Q")
    )
    pts = _points(base, tooltip=tooltip)
    ring = base.transform_filter("datum.pareto").mark_point(size=300, color="#222", strokeWidth=1, filled=False)
    return (
        alt.layer(front, ring, pts, data=d)
        .properties(width=300, height=220)
        .facet(facet=alt.Facet("panel:N", title=None), columns=3)
        .resolve_scale(x="independent", y="independent")
        .properties(title=title)
    )


# ------------------------------------------------------------------ 3. time-to-target curves
def time_to_target(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    title = "Training curves: quality vs wall time (dotted: target, ● target reached)"
    tta = metrics.time_to_target(df, targets=st.targets, eta=st.eta)
    if tta.height == 0:
        return no_data(title, "no successful training run with per-epoch quality")
    curves = (
        tta.select(
            "run_id",
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
        .drop("run_id")
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
    base = alt.Chart().encode(x=x, y=y, color=precision_colour())
    lines = base.mark_line(opacity=0.7).encode(
        detail="run:N", strokeDash=alt.StrokeDash("batch_size:O", title="batch size")
    )
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
    return (
        alt.layer(lines, pts, hit, rule, data=curves)
        .properties(width=360, height=230)
        .facet(facet=alt.Facet("workload:N", title=None), columns=2)
        .resolve_scale(y="independent", x="independent")
        .properties(title=title)
    )


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
def fleet_whatif(df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    jobs = f"{st.jobs_per_day:,.0f}"
    title = (
        f"Fleet what-if: energy per day at {jobs} jobs/day per site, equal work per job (label: energy change vs "
        "fp32 baseline)"
    )
    cells = _cells(df, st).filter(pl.col("energy_j").is_not_null())
    if cells.height == 0:
        return no_data(title, "no successful run with an energy figure")
    f = st.fleet_with_intervals(cells, df).with_columns(
        group=pl.col("workload") + " · " + pl.col("phase") + " · " + pl.col("device") + " @ " + pl.col("site"),
        config=pl.col("precision_variant") + " bs" + pl.col("batch_size").cast(pl.String),
    )
    f = f.with_columns(saving_label=pl.Series([_change_label(x) for x in f.to_dicts()], dtype=pl.String))
    f = _keep(
        f,
        [
            "group",
            "config",
            "precision_variant",
            "mwh_per_day",
            "mwh_per_day_lo",
            "mwh_per_day_hi",
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
    base = alt.Chart().encode(
        y=alt.Y("config:N", title=None, sort=alt.EncodingSortField("mwh_per_day", order="descending"))
    )
    bars = base.mark_bar(stroke="#333", strokeWidth=1).encode(
        x=alt.X("mwh_per_day:Q", title="MWh per day"),
        color=precision_colour(),
        opacity=alt.Opacity(
            "energy_source:N",
            scale=alt.Scale(domain=SOURCE_DOMAIN, range=[0.95, 0.35]),
            title="energy (pale = estimated)",
        ),
        tooltip=[
            "config",
            alt.Tooltip("jobs_per_day:Q", format=",.0f"),
            alt.Tooltip("samples_per_job:Q", title="samples/job", format=",.0f"),
            alt.Tooltip("energy_per_job_j:Q", title="J/job", format=".3g"),
            alt.Tooltip("mwh_per_day:Q", format=".4g"),
            alt.Tooltip("t_co2_per_day:Q", title="tCO2e/day", format=".4g"),
            alt.Tooltip("saving_mwh_per_day:Q", title="saving MWh/day", format=".4g"),
            "saving_label",
            "energy_source",
        ],
    )
    rng = base.mark_rule(color="#222", strokeWidth=1.5).encode(x="mwh_per_day_lo:Q", x2="mwh_per_day_hi:Q")
    # the label sits right of the bar and of its range
    text = base.mark_text(align="left", dx=4, fontSize=11).encode(x="label_x:Q", text="saving_label:N")
    f = f.with_columns(label_x=pl.max_horizontal("mwh_per_day", "mwh_per_day_hi"))
    return (
        alt.layer(bars, rng, text, data=f)
        .properties(width=420, height=alt.Step(20))
        .facet(row=alt.Row("group:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")))
        .resolve_scale(y="independent", x="independent")
        .properties(title=title)
    )


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
    d = _keep(
        d,
        [
            "group",
            "config",
            "site",
            "precision_variant",
            "batch_size",
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
        x=alt.X("co2_per_1k_samples_g:Q", title="g CO2 per 1,000 samples", scale=alt.Scale(type="log", zero=False)),
    )
    line = base.mark_line(opacity=0.4).encode(color=precision_colour(), detail="config:N")
    pts = _points(
        base,
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
        .facet(row=alt.Row("group:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")))
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


def build(name: str, df: pl.DataFrame, st: AnalysisSettings) -> alt.TopLevelMixin:
    """The chart called name; a "no data" chart (naming the error) if building it fails."""
    try:
        return CHARTS[name](df, st)
    except Exception as e:  # noqa: BLE001 - one broken chart must not cost the whole report
        return no_data(name.replace("_", " "), f"chart could not be built ({type(e).__name__}: {e})")
