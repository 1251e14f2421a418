"""`joulegrid plan`: grid, forecast from earlier results (nearest cell / FLOPs scaling) and the budget,
also as the refusal of `snakemake -n` before any job runs."""

from __future__ import annotations

import math
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


HOST = ("h1", "CPU A")  # the host the forecast prefers (default: this one's hostname and CPU model)


def whole_job_row(cell, **over):
    """A row whose parts are known (seconds): start-up 1.5, set-up 1 + meters 0.5, warm-up 0.5, window 8
    (4 passes of 1000 test samples, infer), other 2 (job_wall_s 13.5), idle baseline 2.1 at 5 W,
    profiling 3; the window at 20 W (energy_j 160), the rest of the job at 10 W (job_energy_j 215)."""
    r = dict(n_samples=4000, n_test=1000, infer_passes=4, wall_s=8.0, energy_j=160.0, mean_power_w=20.0,
             setup_s=1.0, meters_ready_s=0.5, warmup_s=0.5, job_untracked_s=1.5, job_wall_s=13.5,
             job_energy_j=215.0, idle_window_s=2.1, idle_power_w=5.0, profile_s=3.0, job_excluded_s=5.1,
             hostname=HOST[0], cpu_model=HOST[1])  # fmt: skip
    r.update(over)
    return synth.row(cell, **r)


def test_stretch_repeats_whole_units_until_min_window():
    """The runner's rule (phases.Phase): passes over the test split (infer) or whole training runs (train)
    until the window lasts min_window_s."""
    assert P.stretch("infer", 4.0, 6.0) == (8.0, 2)
    assert P.stretch("infer", 2.0, 6.0) == (6.0, 3)
    assert P.stretch("infer", 7.0, 6.0) == (7.0, 1)
    assert P.stretch("infer", 0.1, 0) == (0.1, 1)
    assert P.stretch("train", 4.0, 6.0) == (8.0, 2)  # whole training runs (issue 22)
    assert P.stretch("train", 0.5, 0) == (0.5, 1)


def test_forecast_models_the_whole_job_part_by_part(tmp_path):
    """Issue 29: start-up, set-up, warm-up, idle baseline, the window stretched to min_window_s, the rest
    (quality, writing) and profiling, each from the measured row; energy per part at its measured power."""
    config, sites = cfg(tmp_path, grid={**BASE["grid"], "precisions": ["fp32"], "batch_sizes": [256], "repeats": 2},
                        measure={"threads": 2, "min_window_s": 6, "idle_baseline_s": 2})  # fmt: skip
    df = earlier(tmp_path, [whole_job_row(Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0))])
    fc = P.forecast(config, grid(config, sites), sites, df, host=HOST)
    assert fc.to_run == 2 and not fc.unforecast and fc.pool == "site local on this host (h1)"
    r0, r1 = sorted(fc.cells, key=lambda c: c.cell.repeat)
    # one pass: 2 s per 1000 samples x 2000 planned test samples = 4 s; 6 s window -> 2 passes, 8 s
    parts = {"startup": 1.5, "setup": 1.5, "warmup": 0.5, "idle": 2.0, "window": 8.0, "other": 2.0, "profile": 3.0}
    assert r0.parts == pytest.approx(parts) and r0.units == 2
    assert r1.parts == pytest.approx({**parts, "profile": 0.0})  # hotspots: first_repeat
    job_j = 8.0 * 20 + 10.0 * (1.5 + 1.5 + 0.5 + 2.0)  # the window at 20 W, the rest of the job at 10 W
    assert r0.job_s == pytest.approx(18.5) and r0.job_wall_s == pytest.approx(13.5)
    assert r0.job_kwh == pytest.approx(job_j / 3.6e6)
    assert r0.kwh == pytest.approx((job_j + 2.0 * 5.0 + 3.0 * 20) / 3.6e6)  # + idle at 5 W + profiling at 20 W
    assert r0.core_hours == pytest.approx(18.5 * 2 / 3600)
    assert r0.kg_co2 == pytest.approx(r0.kwh * 1.0 * 480 / 1000)  # site local: PUE 1, 480 g/kWh
    t = fc.totals()
    assert t["core_hours"] == pytest.approx((18.5 + 15.5) * 2 / 3600)
    assert t["job_core_hours"] == pytest.approx(2 * 13.5 * 2 / 3600)
    assert t["job_kwh"] == pytest.approx(2 * job_j / 3.6e6) and t["gpu_hours"] == 0
    # no idle baseline, one pass: those parts go
    config0, _ = cfg(tmp_path, grid={**BASE["grid"], "precisions": ["fp32"], "batch_sizes": [256]},
                     measure={"threads": 2, "min_window_s": 0, "idle_baseline_s": 0, "hotspots": "never"})  # fmt: skip
    (c0,) = P.forecast(config0, grid(config0, sites), sites, df, host=HOST).cells
    assert c0.parts == pytest.approx({**parts, "idle": 0.0, "window": 4.0, "profile": 0.0}) and c0.units == 1


def test_forecast_learns_from_this_host_first(tmp_path):
    """Earlier rows of this host win over another host's (then this CPU model, then the site, then any)."""
    config, sites = cfg(tmp_path, grid={**BASE["grid"], "precisions": ["fp32"], "batch_sizes": [256]})
    c = Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0)
    mine = whole_job_row(c)
    slow = whole_job_row(c, hostname="h2", cpu_model="CPU B", setup_s=50.0)
    same_model = whole_job_row(c, hostname="h3", setup_s=7.0)
    df = earlier(tmp_path, [slow, mine])
    (f,) = P.forecast(config, grid(config, sites), sites, df, host=HOST).cells
    assert f.parts["setup"] == pytest.approx(1.5)
    (f,) = P.forecast(config, grid(config, sites), sites, earlier(tmp_path, [slow, same_model]), host=HOST).cells
    assert f.parts["setup"] == pytest.approx(7.5)
    fc = P.forecast(config, grid(config, sites), sites, earlier(tmp_path, [slow]), host=HOST)
    assert fc.cells[0].parts["setup"] == pytest.approx(50.5) and fc.pool == "site local"
    # per workload/phase/device: this host measured inference only, another host of the site training
    config2, _ = cfg(tmp_path, grid={**BASE["grid"], "phases": ["train", "infer"], "precisions": ["fp32"],
                                     "batch_sizes": [256]})  # fmt: skip
    other_train = whole_job_row(Cell("local", "baler_ae", "train", "cpu", "fp32", "baseline", 256, 0),
                                hostname="h2", cpu_model="CPU B", setup_s=20.0)  # fmt: skip
    fc = P.forecast(config2, grid(config2, sites), sites, earlier(tmp_path, [mine, other_train]), host=HOST)
    by_phase = {c.cell.phase: c for c in fc.cells}
    assert by_phase["infer"].parts["setup"] == pytest.approx(1.5) and by_phase["train"].parts["setup"] == 20.5
    assert {c.method for c in fc.cells} == {"nearest"}


def test_forecast_nearest_cell_without_whole_job_columns(tmp_path):
    """Rows without the whole-job columns (older runs): set-up and warm-up as measured, the rest of the job
    at the window's power, the idle baseline at it too."""
    config, sites = cfg(tmp_path, measure={"threads": 2, "hotspots": "never"})
    # measured: fp32 bs256 infer on 1000 samples at 1e-3 J/sample, 20 W -> wall 0.05 s; setup 1, warm-up 0.5
    df = earlier(tmp_path, [synth.row(Cell("local", "baler_ae", "infer", "cpu", "fp32", "baseline", 256, 0),
                                      energy_per_sample_j=1e-3, n_samples=1000)])  # fmt: skip
    fc = P.forecast(config, grid(config, sites), sites, df)
    assert fc.to_run == 4 and fc.done == 0 and not fc.unforecast
    assert {c.method for c in fc.cells} == {"nearest"}
    unit = 0.05 / 1000 * 2000  # 2000 planned test samples
    window = math.ceil(6 / unit - 1e-9) * unit  # min_window_s 6 (the schema's default)
    job_s = 1.0 + 0.5 + 2.0 + window  # set-up, warm-up, idle baseline (2 s default), window
    one = next(c for c in fc.cells if c.cell.precision == "fp32" and c.cell.batch_size == 256)
    assert one.job_s == pytest.approx(job_s)
    assert one.core_hours == pytest.approx(job_s * 2 / 3600)
    assert one.kwh == pytest.approx(20 * job_s / 3.6e6)
    assert fc.totals()["kwh"] == pytest.approx(sum(c.kwh for c in fc.cells))


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
    unit = 1e6 * 2000 / 1e12  # flops_per_sample_fwd (synth) x planned samples / FLOP/s
    window = math.ceil(6 / unit - 1e-9) * unit  # stretched to min_window_s (6 s)
    assert f.parts["window"] == pytest.approx(window) and f.units == math.ceil(6 / unit - 1e-9)
    assert f.job_s == pytest.approx(window + 3.0 + 2.0)  # + set-up and warm-up on cuda, + the idle baseline
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
