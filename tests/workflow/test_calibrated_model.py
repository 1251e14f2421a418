"""A calibrated CPU power model through real runs: `joulegrid calibrate` on a fake RAPL node driven by
the real /proc/stat load (tests/meters/fake_node.py), then two real Snakemake runs of a tiny grid
with that hardware table:

- a counter host (the same fake RAPL): the rows are measured (rapl) and also hold the model's
  prediction for the same windows; the report's per-host model error is checked against the rows;
- a host of the same CPU model without readable counters: the rows are labelled model-calibrated with
  the calibration's error; their numbers follow the calibration's law; the report's "How measured"
  shows it."""

from __future__ import annotations

import copy
import subprocess
import sys

import polars as pl
import pytest
import yaml
from conftest import TINY, deep_merge, html_tables, snakemake, subprocess_env
from meters.fake_node import FakeNode

from joulegrid import hardware
from joulegrid.probes import cpu_model

pytestmark = [pytest.mark.slow, pytest.mark.measure]
P0, K, P0_DRAM, K_DRAM = 40.0, 8.0, 6.0, 1.5
# windows of a few seconds: the counters' edges (a 10-ms writer step) are then a small part of them
MEASURE = {"meters": ["rapl", "estimate"], "min_window_s": 3, "idle_baseline_s": 0}
WORKLOAD = {"baler_ae": {"rows": 3000, "epochs": 80}}  # ~3 s of training


def run_grid(work, hw, env, meters):
    cfg = deep_merge(
        copy.deepcopy(TINY),
        {"measure": {**MEASURE, "meters": meters}, "workloads": WORKLOAD, "report": {"hardware_file": str(hw)}},
    )
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--cores", "2", configfile=work / "config.yaml", env=env)
    rows = pl.read_parquet(work / "results" / "summary.parquet").to_dicts()
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), [r["error_message"] for r in rows]
    return rows, (work / "results" / "report" / "index.html").read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not cpu_model():
        pytest.skip("this host's /proc/cpuinfo names no CPU model")
    work = tmp_path_factory.mktemp("calibrated")
    hw = work / "hardware.yaml"
    node = FakeNode(work / "node", P0, K, P0_DRAM, K_DRAM, busy="proc").start()
    try:
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "joulegrid",
                "calibrate",
                "--powercap",
                str(node.powercap),
                "--hardware-file",
                str(hw),
                "--step-s",
                "4",
                "--settle-s",
                "1",
                "--interval-s",
                "0.25",
                "--mem-gb",
                "0.2",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=subprocess_env(),
        )
        assert p.returncode == 0, p.stderr[-3000:]
        counter = run_grid(work / "counter", hw, {"JOULEGRID_POWERCAP": str(node.powercap)}, ["rapl", "estimate"])
    finally:
        node.stop()
    (work / "no-rapl").mkdir()
    model_only = run_grid(work / "model", hw, {"JOULEGRID_POWERCAP": str(work / "no-rapl")}, ["auto"])
    return hardware.read(hw).calibrations[cpu_model()], counter, model_only


def test_counter_host_rows_hold_the_models_prediction(runs):
    cal, (rows, _), _ = runs
    for r in rows:
        assert r["energy_method"] == "rapl" and r["energy_estimated"] is False and r["energy_components"] == "cpu+dram"
        assert r["model_method"] == "model-calibrated" and r["model_components"] == "cpu+dram"
        assert cpu_model() in r["model_calibration"] and r["model_fit_max_rel_err"] == cal["holdout_max_rel_err"]
        counter = r["node_energy_cpu_j"] + r["node_energy_ram_j"]
        assert r["model_rel_err"] == pytest.approx(r["model_node_energy_j"] / counter - 1, rel=1e-9)
        # the calibration came from this fake node, whose power is linear in the busy CPUs: the model predicts
        # the counters of a real workload's window as well as it predicted its own ladder (a few per cent)
        assert abs(r["model_rel_err"]) < 0.05, r["model_rel_err"]
        assert 0 < r["model_energy_j"] <= r["model_node_energy_j"]
        assert r["p0_cpu_source"] == "calibration" and r["p0_cpu_w"] == cal["package"]["idle_w"]


def test_report_shows_the_models_error_per_host(runs):
    _, (rows, page), _ = runs
    (t,) = html_tables(page, "id='model-error'")[0]
    model = sum(r["model_node_energy_j"] for r in rows)
    counter = sum(r["node_energy_cpu_j"] + r["node_energy_ram_j"] for r in rows)
    errs = sorted(r["model_rel_err"] for r in rows)
    assert t["hostname"] == rows[0]["hostname"] and t["model_method"] == "model-calibrated" and t["runs"] == "2"
    assert t["components"] == "cpu+dram"
    assert t["counter_node_energy_j"] == f"{counter:.4g}" and t["model_node_energy_j"] == f"{model:.4g}"
    assert t["model_error_pct"] == f"{100 * (model / counter - 1):+.1f} %"
    assert t["median_run_error_pct"] == f"{100 * (errs[0] + errs[1]) / 2:+.1f} %"
    assert t["max_abs_run_error_pct"] == f"{100 * max(abs(e) for e in errs):+.1f} %"
    assert t["ladder_error_pct"] == f"{100 * rows[0]['model_fit_max_rel_err']:+.1f} %"


def test_a_host_without_counters_uses_the_calibration(runs):
    cal, _, (rows, _) = runs
    pkg, dram = cal["package"], cal["dram"]
    for r in rows:
        assert r["energy_method"] == "model-calibrated" and r["energy_estimated"] is True
        assert r["energy_components"] == "cpu+dram"  # the calibrated DRAM model, not codecarbon's DIMM guess
        assert {a["meter"] for a in r["meters_absent"]} >= {"rapl"}
        assert r["model_method"] == "model-calibrated" and cpu_model() in r["model_calibration"]
        assert (r["model_fit_rmse_w"], r["model_fit_max_rel_err"]) == (
            cal["holdout_rmse_w"],
            cal["holdout_max_rel_err"],
        )
        assert r["model_rel_err"] is None and r["model_node_energy_j"] is None  # nothing to compare with here
        assert r["p0_cpu_source"] == "calibration" and r["p0_ram_source"] == "calibration"
        if pkg["w_per_gb"] is None:
            assert r["p0_cpu_w"] == pytest.approx(pkg["idle_w"])
        # the node's CPU energy follows the calibration's law over the window (the usage window the split
        # uses, dt = usage_window_s; the model's own window contains it): P0 x dt + W x busy CPU-seconds
        dt = r["usage_window_s"]
        assert r["wall_s"] <= dt
        want = r["p0_cpu_w"] * dt + pkg["w_per_busy_cpu"] * r["node_busy_cpu_s"]
        assert r["node_energy_cpu_j"] == pytest.approx(want, rel=0.02)
        want_dram = r["p0_ram_w"] * dt + dram["w_per_busy_cpu"] * r["node_busy_cpu_s"]
        assert r["node_energy_ram_j"] == pytest.approx(want_dram, rel=0.02)
        # the job's share: its own CPU time at W per busy CPU, and the idle power of the CPUs it reserved
        share = r["job_share_cpu"] if r["node_shared"] else 1.0
        assert r["energy_cpu_active_j"] == pytest.approx(
            share * (r["node_energy_cpu_j"] - r["p0_cpu_w"] * dt), rel=0.02
        )
        assert r["energy_cpu_idle_j"] == pytest.approx(r["job_cpus"] / r["node_cpus"] * r["p0_cpu_w"] * dt, rel=0.02)
        # the whole job with the same model: more than its measured phase, the start-up extrapolated
        assert r["job_energy_j"] > r["energy_j"] and 0 < r["job_energy_extrapolated_j"] < r["job_energy_j"]


def test_how_measured_shows_the_calibrated_model(runs):
    cal, _, (rows, page) = runs
    measured = page[page.index("id='measured'") : page.index("id='environment'")]
    table = html_tables(measured, "<table>")[0]
    (t,) = [x for x in table if x["energy_method"] == "model-calibrated"]
    assert t["estimated"] == "yes" and t["runs"] == "2" and cpu_model() in t["calibration"]
    assert t["calibration_error_pct"] == f"{100 * cal['holdout_max_rel_err']:+.1f} %"
    assert "no run with both a counter and the model" in measured  # no counter on this host: no model error to show
