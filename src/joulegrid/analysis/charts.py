"""Comparison charts (altair). Estimated energies are drawn hollow, measured ones filled."""

from __future__ import annotations

import altair as alt
import polars as pl

from .metrics import derive, ok_runs

SOURCE_SCALE = alt.Scale(domain=["measured", "estimated"], range=[1.0, 0.0])


def _data(df: pl.DataFrame) -> pl.DataFrame:
    d = derive(ok_runs(df))
    return d.select(
        "workload", "phase", "device", "site", "precision_variant", "batch_size", "repeat", "energy_j",
        "energy_per_sample_j", "samples_per_s", "quality", "quality_metric", "energy_method", "energy_source",
        "wall_s", "hostname",
    ).filter(pl.col("energy_j").is_not_null()).with_columns(phase_device=pl.col("phase") + " / " + pl.col("device"))


def energy_per_sample(df: pl.DataFrame) -> alt.Chart:
    d = _data(df)
    base = alt.Chart().encode(
        x=alt.X("batch_size:O", title="batch size"),
        y=alt.Y("energy_per_sample_j:Q", title="energy per sample (J)", scale=alt.Scale(type="log")),
        color=alt.Color("precision_variant:N", title="precision"),
        tooltip=[
            "workload", "phase", "device", "precision_variant", "batch_size", "repeat",
            alt.Tooltip("energy_per_sample_j:Q", format=".3e"), alt.Tooltip("samples_per_s:Q", format=",.0f"),
            "energy_method", "energy_source", "hostname",
        ],
    )
    pts = base.mark_point(size=80, filled=True, strokeWidth=2).encode(
        fillOpacity=alt.FillOpacity("energy_source:N", scale=SOURCE_SCALE, title="energy"),
    )
    line = base.mark_line(opacity=0.4).encode(detail="precision_variant:N")
    return (
        alt.layer(line, pts, data=d)
        .properties(width=220, height=180)
        .facet(row=alt.Row("workload:N"), column=alt.Column("phase_device:N", title="phase / device"))
        .resolve_scale(y="independent")
        .properties(title="Energy per sample by precision and batch size")
    )


def quality_vs_energy(df: pl.DataFrame) -> alt.Chart:
    d = _data(df).filter(pl.col("quality").is_not_null())
    base = alt.Chart(d).encode(
        x=alt.X("energy_per_sample_j:Q", title="energy per sample (J)", scale=alt.Scale(type="log")),
        y=alt.Y("quality:Q", title="quality (see metric)", scale=alt.Scale(zero=False)),
        color=alt.Color("precision_variant:N", title="precision"),
        shape=alt.Shape("phase:N"),
        tooltip=[
            "workload", "phase", "device", "precision_variant", "batch_size", "quality_metric",
            alt.Tooltip("quality:Q", format=".4g"), alt.Tooltip("energy_per_sample_j:Q", format=".3e"),
            "energy_method", "energy_source",
        ],
    )
    pts = base.mark_point(size=80, filled=True, strokeWidth=2).encode(
        fillOpacity=alt.FillOpacity("energy_source:N", scale=SOURCE_SCALE, title="energy")
    )
    return (
        pts.properties(width=320, height=220)
        .facet(column=alt.Column("workload:N"))
        .resolve_scale(x="independent", y="independent")
        .properties(title="Quality vs energy per sample")
    )


CHARTS = {
    "energy_per_sample": energy_per_sample,
    "quality_vs_energy": quality_vs_energy,
}
