"""Derived metrics (pure polars): energy per sample, samples per joule, measured vs estimated.

Documented in docs/metrics.md. Every function takes and returns a polars DataFrame in the result
schema plus derived columns; nothing here imports torch.
"""

from __future__ import annotations

import polars as pl


def derive(df: pl.DataFrame) -> pl.DataFrame:
    """Add per-run derived columns."""
    return df.with_columns(
        energy_per_sample_j=pl.when(pl.col("n_samples") > 0).then(pl.col("energy_j") / pl.col("n_samples")),
        samples_per_j=pl.when(pl.col("energy_j") > 0).then(pl.col("n_samples") / pl.col("energy_j")),
        co2_per_1k_samples_kg=pl.when(pl.col("n_samples") > 0).then(pl.col("co2_kg") / pl.col("n_samples") * 1000),
        energy_source=pl.when(pl.col("energy_estimated")).then(pl.lit("estimated")).otherwise(pl.lit("measured")),
        precision_variant=pl.when(pl.col("variant") == "baseline")
        .then(pl.col("precision"))
        .otherwise(pl.col("precision") + pl.lit("+") + pl.col("variant")),
    )


def ok_runs(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(pl.col("status") == "ok")


def best_per_workload(df: pl.DataFrame) -> pl.DataFrame:
    """Per (workload, phase): the ok run with the lowest energy per sample."""
    d = derive(ok_runs(df)).filter(pl.col("energy_per_sample_j").is_not_null())
    if d.height == 0:
        return d
    return (
        d.sort("energy_per_sample_j")
        .group_by("workload", "phase", maintain_order=True)
        .first()
        .select(
            "workload", "phase", "site", "device", "precision_variant", "batch_size",
            "energy_per_sample_j", "samples_per_s", "quality_metric", "quality", "energy_method", "energy_source",
        )
        .sort("workload", "phase")
    )
