"""`joulegrid plan`: grid, forecast from earlier results (nearest cell / FLOPs scaling) and the budget,
also as the refusal of `snakemake -n` before any job runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import synth
import yaml
from conftest import REPO, subprocess_env

from joulegrid import config as CFG
from joulegrid import grid as G
from joulegrid import spec as SP
from joulegrid.analysis import plan as P
from joulegrid.grid import Cell

BASE = {
    "grid": {
        "workloads": ["baler_ae"],
        "phases": ["infer"],
        "devices": ["cpu"],
        "precisions": ["fp32", "bf16"],
        "batch_sizes": [256, 512],
        "repeats": 1,
    },
    "workloads": {"baler_ae": {"rows": 10000, "epochs": 2}},
    "measure": {"threads": 2},
}


def cfg(tmp_path, **over):
    c = yaml.safe_load(yaml.safe_dump(BASE))
    c["results"] = str(tmp_path / "results")
    for k, v in over.items():
        c[k] = v
    config, sites = CFG.prepare(c)
    return config, sites


def grid(config, sites):
    return G.expand(config, SP.SpecBuilder(config, sites).hashes())


def earlier(tmp_path, rows):
    p = tmp_path / "results" / "summary.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    synth.summary(p, rows)
    return P.load_earlier(str(tmp_path / "results"))


def test_planned_samples_from_workload_settings(tmp_path):
    config, _ = cfg(tmp_path)
    cache = {}
    assert (
        P.planned_samples(config, Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0), cache) == 2000
    )
    assert (
        P.planned_samples(config, Cell("local", "baler_ae", "train", "cpu", "fp32", "baseline", 256, 0), cache) == 16000
    )


def test_forecast_nearest_cell_scales_by_samples(tmp_path):
    config, sites = cfg(tmp_path)
    # measured: fp32 bs256 infer on 1000 samples at 1e-3 J/sample, 20 W -> wall 0.05 s, overhead 1.5 s
    df = earlier(
        tmp_path,
        [
            synth.row(
                Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0),
                energy_per_sample_j=1e-3,
                n_samples=1000,
            )
        ],
    )
    fc = P.forecast(config, grid(config, sites), sites, df)
    assert fc.to_run == 4 and fc.done == 0 and not fc.unforecast
    assert {c.method for c in fc.cells} == {"nearest"}
    wall = 0.05 / 1000 * 2000  # 2000 planned test samples
    job_s = wall + 1.5
    one = next(c for c in fc.cells if c.cell.precision == "fp32" and c.cell.batch_size == 256)
    assert one.job_s == pytest.approx(job_s)
    assert one.core_hours == pytest.approx(job_s * 2 / 3600)
    assert one.kwh == pytest.approx(20 * job_s / 3.6e6)
    assert one.kg_co2 == pytest.approx(one.kwh * 1.0 * 480 / 1000)  # site local: PUE 1, 480 g/kWh
    assert fc.totals()["kwh"] == pytest.approx(4 * one.kwh)
    assert fc.totals()["gpu_hours"] == 0


def test_forecast_skips_cells_already_measured(tmp_path):
    config, sites = cfg(tmp_path)
    c0 = grid(config, sites).cells[0]
    synth.write_runs(tmp_path / "results", [synth.row(c0, config_hash=c0.config_hash)])
    fc = P.forecast(config, grid(config, sites), sites, earlier(tmp_path, [synth.row(c0)]))
    assert (fc.to_run, fc.done) == (3, 1)


def test_forecast_flops_scaling_and_unforecastable(tmp_path):
    config, sites = cfg(
        tmp_path, grid={**BASE["grid"], "devices": ["cpu", "cuda"], "precisions": ["fp32"], "batch_sizes": [256]}
    )
    rows = [
        # the workload measured on cpu only; the cuda device measured with another workload (FLOP/s, power)
        synth.row(Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0)),
        synth.row(
            Cell("local", "other", "infer", "cuda", "fp32", "baseline", 256, 0),
            flops_per_s=1e12,
            mean_power_w=300.0,
            setup_s=2.0,
            warmup_s=1.0,
        ),
    ]
    fc = P.forecast(config, grid(config, sites), sites, earlier(tmp_path, rows))
    f = next(c for c in fc.cells if c.cell.device == "cuda")
    assert f.method == "flops"
    wall = 1e6 * 2000 / 1e12  # flops_per_sample_fwd (synth) x planned samples / FLOP/s
    assert f.job_s == pytest.approx(wall + 3.0)
    assert f.gpu_hours == pytest.approx(f.job_s * 1 / 3600)
    assert f.kwh == pytest.approx(300 * f.job_s / 3.6e6)
    # nothing known about the device at all -> listed, not counted
    fc2 = P.forecast(config, grid(config, sites), sites, earlier(tmp_path, rows[:1]))
    assert [c.device for c, _ in fc2.unforecast] == ["cuda"]
    assert "no FLOP/s measured on cuda" in fc2.unforecast[0][1]


def test_budget_violations_and_error_message(tmp_path):
    config, sites = cfg(tmp_path, budget={"max_kwh": 1e-9, "max_core_hours": 1000})
    df = earlier(tmp_path, [synth.row(Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0))])
    fc = P.forecast(config, grid(config, sites), sites, df)
    v = P.budget_violations(config, fc)
    assert len(v) == 1 and v[0].startswith("config key budget.max_kwh")
    with pytest.raises(P.BudgetError, match="Nothing was started. Fix:"):
        P.check_budget(config, fc)


def test_snakemake_check_without_results(tmp_path):
    config, sites = cfg(tmp_path)
    assert P.snakemake_check(config, grid(config, sites), sites) is None
    config, sites = cfg(tmp_path, budget={"max_kwh": 1.0})
    assert "cannot be checked" in P.snakemake_check(config, grid(config, sites), sites)


def _write_cfg(tmp_path, **over):
    c = yaml.safe_load(yaml.safe_dump(BASE))
    c.update(results=str(tmp_path / "results"), **over)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(c))
    return p


def test_cli_plan_prints_forecast_and_exits_3_over_budget(tmp_path):
    earlier(tmp_path, [synth.row(Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0))])

    def run(p):
        return subprocess.run(
            [sys.executable, "-m", "joulegrid", "plan", "--configfile", str(p), "--forecast-cells"],
            capture_output=True,
            text=True,
            env=subprocess_env(),
        )

    ok = run(_write_cfg(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "forecast: 4 cell(s) to measure" in ok.stdout and "kWh" in ok.stdout and "(nearest:" in ok.stdout
    over = run(_write_cfg(tmp_path, budget={"max_kg_co2": 1e-12}))
    assert over.returncode == 3 and "OVER BUDGET: config key budget.max_kg_co2" in over.stdout


def test_snakemake_dry_run_refuses_over_budget(tmp_path, run_snakemake):
    earlier(tmp_path, [synth.row(Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0))])
    work = tmp_path / "work"
    work.mkdir()
    ok = run_snakemake(work, "-n", configfile=_write_cfg(tmp_path))
    assert "joulegrid forecast: 4 cell(s) to measure" in ok.stderr
    bad = run_snakemake(work, "-n", configfile=_write_cfg(tmp_path, budget={"max_kwh": 1e-12}), check=False)
    assert bad.returncode != 0
    out = bad.stdout + bad.stderr
    assert "joulegrid budget: config key budget.max_kwh" in out and "Nothing was started" in out
    assert not (tmp_path / "results" / "runs").exists()


def test_cli_plan_grid_and_forecast_counts_agree(tmp_path):
    """One wording and one count: cells in the grid, already measured, to measure (issue 14)."""
    p = _write_cfg(tmp_path)
    config, sites = CFG.load([p])
    c0 = grid(config, sites).cells[0]
    synth.write_runs(tmp_path / "results", [synth.row(c0, config_hash=c0.config_hash)])
    earlier(tmp_path, [synth.row(c0)])
    out = subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", "--configfile", str(p)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        check=True,
    ).stdout
    assert "site local: 4 cell(s) in the grid, 0 excluded; 1 already measured, 3 to measure" in out
    assert "forecast: 3 cell(s) to measure (1 already measured)" in out
    assert f"config hash per workload (run files end in -<hash>.parquet): baler_ae {c0.config_hash}" in out


def test_cli_plan_refuses_a_bad_sites_file_naming_file_key_and_fix(tmp_path):
    """A misspelt key of a site in the sites file stops `joulegrid plan` (as it stops snakemake: the same
    config.prepare) before anything runs, with the file, the key and the fix."""
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    sites["local"]["carbon_intensity_g_per_kWh"] = sites["local"].pop("carbon_intensity_g_per_kwh")
    bad = tmp_path / "sites.yaml"
    bad.write_text(yaml.safe_dump(sites))
    run = subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", "--configfile", str(_write_cfg(tmp_path, sites_file=str(bad)))],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert run.returncode != 0
    assert (
        f"{bad} key local: unknown key(s) 'carbon_intensity_g_per_kWh'. Fix: remove or rename them; allowed keys here: "
        in run.stderr
    )
    assert "carbon_intensity_g_per_kwh" in run.stderr.split("allowed keys here:")[1]
