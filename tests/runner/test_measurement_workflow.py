"""End to end through Snakemake: the measurement windows and the hotspots side files do not
disturb the DAG (hotspots are not declared outputs), and the summary carries the new columns."""

from __future__ import annotations

import polars as pl
import pytest

from joulegrid import hotspots


@pytest.mark.slow
@pytest.mark.parallel  # lower bounds on the windows, files, no-op rerun: true beside other work
def test_tiny_grid_with_idle_min_window_and_hotspots(tmp_path, write_config, run_snakemake):
    cfg = write_config(
        {
            "measure": {
                "idle_baseline_s": 0.3,
                "min_window_s": 0.5,
                "hotspots": "always",
                "hotspot_batches": 2,
                "meters": ["auto"],
            }
        }
    )
    work = tmp_path / "w"
    run_snakemake(work, "--cores", "2", configfile=cfg)
    df = pl.read_parquet(work / "results" / "summary.parquet")
    assert df["status"].to_list() == ["ok", "ok"]
    infer = df.filter(pl.col("phase") == "infer").row(0, named=True)
    assert infer["wall_s"] >= 0.5 and infer["infer_passes"] >= 1
    for r in df.iter_rows(named=True):
        assert r["idle_window_s"] >= 0.3 and r["energy_net_j"] is not None
        assert {m["meter"] for m in r["meters_absent"]} >= {"nvml"}
        assert r["energy_readings"] and all(x["window"] in ("idle", "measured") for x in r["energy_readings"])
    hs = hotspots.collect(work / "results", run_ids=df["run_id"].to_list())
    assert set(hs["run_id"]) == set(df["run_id"]) and set(hs["profiler"]) == {"cprofile", "torch"}
    # a second run is a no-op: the side files are not outputs, nothing is rerun or overwritten
    before = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*.parquet")}
    proc = run_snakemake(work, "--cores", "2", configfile=cfg)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*.parquet")}
