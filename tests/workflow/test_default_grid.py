"""The default grid (config/config.yaml, what `make run` measures) through the real Snakemake, with
shorter windows: every row's energy is the job's share (RAM never the host's), the fleet what-if and
the report's figures are those of the run's rows (recomputed here from the run files with plain
Python), and every section of the report is filled -- the hotspots from the profiler's per-cell files.
"""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
import yaml
from conftest import NO_OUTLIER_RULE, REPO, snakemake
from report import test_browser

pytestmark = [pytest.mark.slow, pytest.mark.measure]
browser_context = test_browser.browser_context  # the chromium fixture, shared with the report's browser tests

# the default grid as configured (2 workloads x train/infer x fp32/bf16/int8 x bs 256/1024 = 20 cells),
# shorter: one repeat, one epoch, 1-s windows, small profiling passes, the outlier rule off (on a shared test
# machine it would measure windows again at random: tests/runner/test_outliers.py covers it)
SPEED = {
    "grid": {"repeats": 1},
    "workloads": {"baler_ae": {"epochs": 1}, "jet_tagger": {"epochs": 1}},
    "measure": {
        "min_window_s": 1,
        "idle_baseline_s": 0.5,
        "hotspot_batches": 3,
        "hotspot_top": 5,
        **NO_OUTLIER_RULE,
    },
    "fleet": {"jobs_per_day": 500000},
}
SECTIONS = ("summary", "charts", "fleet", "tables", "scheduler", "hotspots", "missing", "measured", "environment")


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("default_grid")
    cfg = work / "speed.yaml"
    cfg.write_text(yaml.safe_dump(SPEED))
    snakemake(work, "--cores", "2", configfile=cfg, timeout=3600)
    files = sorted((work / "results" / "runs").rglob("r*.parquet"))
    rows = [pl.read_parquet(f).row(0, named=True) for f in files]
    return work, rows


def test_every_row_is_the_jobs_energy(grid_run):
    _, rows = grid_run
    assert len(rows) == 20 and {r["status"] for r in rows} == {"ok"}, [(r["cell_id"], r["error_message"]) for r in rows]
    for r in rows:
        cid = r["cell_id"]
        assert r["energy_j"] > 0 and r["node_energy_j"] >= r["energy_j"], cid
        # every joule of the node in one bucket
        total = r["energy_j"] + r["node_other_active_j"] + r["node_unreserved_idle_j"]
        assert total == pytest.approx(r["node_energy_j"], rel=1e-9), cid
        assert r["energy_cpu_j"] == pytest.approx(r["energy_cpu_active_j"] + r["energy_cpu_idle_j"]), cid
        assert 0 < r["job_share_cpu"] <= 1 and 0 <= r["neighbour_cpu_fraction"] < 1, cid
        assert (
            r["job_cpu_source"] in ("process-tree", "cgroup-v1", "cgroup-v2") and r["job_cpus_source"] == "affinity"
        ), cid
        # the whole job: from interpreter start to the row, less the idle baseline and the profiling passes
        life = (r["finished_at"] - r["process_started_at"]).total_seconds()
        assert r["job_wall_s"] == pytest.approx(life - r["job_excluded_s"], abs=0.05), cid
        # excluded: the idle baseline's sleep (0.5 s, SPEED above) and the profiling passes; at most the
        # idle window as its own clock saw it (which also counts the meters' start and stop, e.g.
        # codecarbon's last sample: seconds on a loaded host) plus the profiling passes
        idle_sleep = SPEED["measure"]["idle_baseline_s"]
        assert r["profile_s"] + idle_sleep <= r["job_excluded_s"] <= r["idle_window_s"] + r["profile_s"] + 0.05, cid
        assert r["job_wall_s"] > r["wall_s"] and r["job_energy_j"] > r["energy_j"], cid
        assert 0 < r["job_time_outside_phase_fraction"] < 1 and 0 < r["job_energy_outside_phase_fraction"] < 1, cid
        assert 0 < r["job_energy_extrapolated_j"] < r["job_energy_j"] and 0 < r["job_untracked_s"] < r["job_wall_s"], (
            cid
        )


def test_no_ram_component_exceeds_the_jobs_resident_share_of_the_hosts_ram(grid_run):
    """The issue's RAM test: a job's RAM energy is at most its resident-memory share of the host's RAM power."""
    _, rows = grid_run
    for r in rows:
        host_ram_j = next(
            x["energy_j"]
            for x in r["energy_readings"]
            if x["window"] == "measured" and x["scope"] == "node" and x["component"] == "ram-model"
        )
        resident_share = r["peak_rss_bytes"] / r["memory_total_bytes"]
        assert r["energy_ram_j"] <= resident_share * host_ram_j * 1.001, (
            r["cell_id"],
            r["energy_ram_j"],
            resident_share,
            host_ram_j,
        )
        # was 71-77 % of energy_j with the host's RAM model
        assert r["energy_ram_j"] < 0.2 * r["energy_j"], r["cell_id"]
        assert "mem-share" in r["energy_attribution"] and r["job_mem_source"] in ("pss", "rss")


def _expected_fleet(rows, jobs_per_day, pue, intensity):
    """fleet.csv recomputed from the run's rows: equal work = one pass over the test split (infer) or
    one training run (train: the window repeats whole runs, train_runs of them), at the run's energy per sample."""
    out = {}
    for r in rows:
        pv = r["precision"] if r["variant"] == "baseline" else f"{r['precision']}+{r['variant']}"
        spj = r["n_test"] if r["phase"] == "infer" else r["n_samples"] / r["train_runs"]
        mwh = jobs_per_day * r["energy_j"] / r["n_samples"] * spj / 3.6e6 * pue / 1000
        out[(r["workload"], r["phase"], pv, r["batch_size"])] = {
            "samples_per_job": spj,
            "mwh_per_day": mwh,
            "t_co2_per_day": mwh * 1000 * intensity / 1e6,
        }
    for (wl, ph, _pv, bs), v in out.items():
        v["saving_pct"] = (1 - v["mwh_per_day"] / out[(wl, ph, "fp32", bs)]["mwh_per_day"]) * 100
    return out


def test_fleet_csv_is_the_rows_at_equal_work(grid_run):
    work, rows = grid_run
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    want = _expected_fleet(rows, 500000, sites["local"]["pue"], sites["local"]["carbon_intensity_g_per_kwh"])
    fl = pl.read_csv(work / "results" / "report" / "fleet.csv")
    assert fl.height == 20
    for r in fl.to_dicts():
        w = want[(r["workload"], r["phase"], r["precision_variant"], r["batch_size"])]
        for k in ("samples_per_job", "mwh_per_day", "t_co2_per_day", "saving_pct"):
            assert r[k] == pytest.approx(w[k], rel=1e-9, abs=1e-12), (r, k)
    # an inference window repeats passes: a fleet job is one pass, never the window
    infer = [r for r in rows if r["phase"] == "infer"]
    assert all(r["n_samples"] == r["infer_passes"] * r["n_test"] for r in infer) and any(
        r["infer_passes"] > 1 for r in infer
    )


def _specs(html: str) -> dict:
    m = re.search(r"const specs = (\{.*?\});\n", html, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def _fmt(v: float) -> str:
    return f"{v:.4g}"  # the report's number format (analysis.report._fmt)


def test_every_report_section_from_the_run(grid_run):
    work, rows = grid_run
    rep = work / "results" / "report"
    html = (rep / "index.html").read_text()
    for sec in SECTIONS:
        assert f"id='{sec}'" in html, sec
    # hotspots: the profiler's per-cell files (results/hotspots/<cell id>.parquet), every cell is repeat 0
    files = sorted((work / "results" / "hotspots").rglob("*.parquet"))
    assert len(files) == 20 and not list((work / "results" / "hotspots").glob("*.parquet"))
    hot = html[html.index("id='hotspots'") : html.index("id='missing'")]
    assert "No hotspot table" not in hot and "aten::" in hot and "in 20 profiled cell(s)" in hot
    assert sum(r["cell_id"] in hot for r in rows) >= 1
    # how measured: node vs job energy summed over the host's runs, and the neighbours' share
    measured = html[html.index("id='measured'") : html.index("id='environment'")]
    assert _fmt(sum(r["node_energy_j"] for r in rows)) in measured
    assert _fmt(sum(r["energy_j"] for r in rows)) in measured
    share = sum(r["energy_j"] for r in rows) / sum(r["node_energy_j"] for r in rows)
    assert f"{share:.1%}" in measured
    # per-cell metrics and the fleet chart carry the rows' numbers
    cells = {
        (c["workload"], c["phase"], c["precision_variant"], c["batch_size"]): c
        for c in pl.read_csv(rep / "cells.csv").to_dicts()
    }
    for r in rows:
        assert cells[(r["workload"], r["phase"], r["precision"], r["batch_size"])][
            "energy_per_sample_j"
        ] == pytest.approx(r["energy_j"] / r["n_samples"], rel=1e-9)
    fl = {round(r["mwh_per_day"], 12) for r in pl.read_csv(rep / "fleet.csv").to_dicts()}
    chart = _specs(html)["fleet_whatif"]
    data = [v for ds in chart.get("datasets", {}).values() for v in ds]
    assert {round(d["mwh_per_day"], 12) for d in data} == fl
    assert "one pass over the test split" in html[html.index("id='fleet'") : html.index("id='tables'")]
    assert "Nothing missing" in html


@pytest.mark.browser
def test_the_runs_report_renders_in_chromium(grid_run, browser_context, tmp_path):
    from report.test_browser import open_report

    from joulegrid.analysis import CHART_NAMES

    work, _ = grid_run
    state, marks, requests, errors, _sites = open_report(
        browser_context, work / "results" / "report" / "index.html", tmp_path / "run.png"
    )
    # the report's charts, and the hotspot charts: per profiled workload (its section's <h3>) one, and an icicle
    # of its modules where they were profiled
    html = (work / "results" / "report" / "index.html").read_text()
    hot = html[html.index("id='hotspots'") : html.index("id='missing'")]
    n_charts = len(CHART_NAMES) + hot.count("<div class='chart' id='chart-hotspots-")
    assert hot.count("<h3>") <= hot.count("<div class='chart' id='chart-hotspots-") <= 2 * hot.count("<h3>")
    assert state["errors"] == [] and state["rendered"] == state["expected"] == n_charts, (state, errors)
    assert all(n >= 1 for n in marks.values()), marks
