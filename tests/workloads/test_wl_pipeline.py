"""End to end through the real Snakemake: the new workloads and a bring-your-own workload defined
only in this test folder, train + infer, on tiny data."""

import os

import polars as pl
import pytest

from .wlkit import HERE, REPO, needs_fashion


@pytest.mark.slow
@needs_fashion
@pytest.mark.parallel
def test_pipeline_with_builtin_and_user_workloads(tmp_path, write_config, run_snakemake):
    cfg = write_config(
        {
            "grid": {
                "workloads": ["jet_tagger", "image_cnn", "mine"],
                "phases": ["train", "infer"],
                "precisions": ["fp32", "int8"],
                "variants": ["baseline"],
                "batch_sizes": [64],
            },
            "exclude": [
                {"workload": "image_cnn", "phase": "train", "reason": "test kept small: the reference model trains it"},
                {"workload": "mine", "precision": "int8", "reason": "test kept small"},
            ],
            "workloads": {
                "jet_tagger": {"rows": 1500, "epochs": 2, "target_quality": 0.55},
                "image_cnn": {"samples": 400, "epochs": 1},
                "mine": {"class": "byo_pkg.tiny:TinyRegression", "rows": 256},
            },
            "measure": {"meters": ["estimate"], "warmup_batches": 1, "threads": 1},
        }
    )
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(HERE)])}
    run_snakemake(tmp_path, "--cores", "2", configfile=cfg, env=env)
    df = pl.read_parquet(tmp_path / "results" / "summary.parquet")
    assert set(df["status"]) == {"ok"}, df.select("cell_id", "status", "error_message").to_dicts()
    got = {(r["workload"], r["phase"], r["precision"], r["variant"]) for r in df.iter_rows(named=True)}
    assert got == {
        ("jet_tagger", "train", "fp32", "baseline"),
        ("jet_tagger", "infer", "fp32", "baseline"),
        ("jet_tagger", "infer", "int8", "baseline"),
        ("image_cnn", "infer", "fp32", "baseline"),
        ("image_cnn", "infer", "int8", "baseline"),
        ("mine", "train", "fp32", "baseline"),
        ("mine", "infer", "fp32", "baseline"),
    }
    jt = df.filter(pl.col("workload") == "jet_tagger")
    assert jt["roc_auc"].min() > 0.5 and jt["bkg_rejection_at_50"].min() > 1
    assert (jt.filter(pl.col("phase") == "train")["time_to_target_s"].is_not_null()).all()
    cnn = df.filter(pl.col("workload") == "image_cnn").sort("precision")
    assert cnn["quality_metric"].to_list() == ["accuracy", "accuracy"]
    assert cnn["model_size_bytes"][1] < cnn["model_size_bytes"][0]  # int8 < fp32
    assert cnn["flops_per_sample_fwd"].to_list() == [9_097_216.0, 9_097_216.0]
    mine = df.filter(pl.col("workload") == "mine")
    assert set(mine["quality_metric"]) == {"test_mse"} and mine["quality"].max() < 0.5  # var(y) is ~3
    assert set(mine["dataset"]) == {"toy linear table"}
