"""Derived metrics: every number checked against a hand computation on synthetic rows (tests/synth.py)."""

from __future__ import annotations

import math

import polars as pl
import pytest
import synth

from joulegrid import schema as S
from joulegrid.analysis import metrics as M
from joulegrid.grid import Cell


def frame(rows) -> pl.DataFrame:
    return pl.from_arrow(S.to_table(rows))


def cell(
    precision="fp32",
    bs=256,
    phase="infer",
    repeat=0,
    site="local",
    workload="baler_ae",
    variant="baseline",
    device="cpu",
):
    return Cell(site, workload, phase, device, precision, variant, bs, repeat)


def test_derive_per_run_columns():
    df = frame([synth.row(cell(), energy_per_sample_j=2e-3, n_samples=1000)])
    d = M.derive(df).row(0, named=True)
    assert d["energy_per_sample_j"] == pytest.approx(2e-3)
    assert d["samples_per_j"] == pytest.approx(500)
    assert d["co2_per_1k_samples_kg"] == pytest.approx(2.0 / 3.6e6 * 0.48)  # 1000 samples = 2 J at 480 g/kWh
    assert d["mean_power_w"] == pytest.approx(20.0)
    assert d["energy_source"] == "estimated"
    assert d["precision_variant"] == "fp32"
    pruned = M.derive(frame([synth.row(cell(variant="pruned"))])).row(0, named=True)
    assert pruned["precision_variant"] == "fp32+pruned"


def test_derive_nulls_instead_of_division_by_zero():
    df = frame([synth.row(cell(), n_samples=0, energy_j=0.0, wall_s=0.0, mean_power_w=None)])
    d = M.derive(df).row(0, named=True)
    assert d["energy_per_sample_j"] is None and d["samples_per_j"] is None and d["mean_power_w"] is None


def test_cell_stats_mean_std_ci_cv_and_noisy():
    rows = [synth.row(cell(repeat=k), energy_per_sample_j=e, n_samples=1000) for k, e in enumerate([1e-3, 2e-3, 3e-3])]
    rows += [
        synth.row(cell(bs=1024, repeat=k), energy_per_sample_j=e, n_samples=1000)
        for k, e in enumerate([1.0e-3, 1.02e-3])
    ]
    rows.append(synth.row(cell(bs=2048), status="failed"))  # failures never enter the statistics
    c = M.cell_stats(frame(rows)).sort("batch_size")
    assert c.height == 2
    a, b = c.row(0, named=True), c.row(1, named=True)
    assert a["repeats"] == 3
    assert a["energy_per_sample_j"] == pytest.approx(2e-3)
    assert a["energy_per_sample_std_j"] == pytest.approx(1e-3)
    assert a["energy_per_sample_ci95_j"] == pytest.approx(t975_df2() * 1e-3 / math.sqrt(3))
    assert a["energy_per_sample_cv"] == pytest.approx(0.5)
    assert a["noisy"] is True
    assert b["noisy"] is False and b["energy_per_sample_cv"] < 0.1
    assert b["energy_per_sample_ci95_j"] == pytest.approx(t975_df1() * b["energy_per_sample_std_j"] / math.sqrt(2))


def test_single_repeat_has_no_ci_and_is_not_noisy():
    c = M.cell_stats(frame([synth.row(cell())])).row(0, named=True)
    assert c["energy_per_sample_ci95_j"] is None and c["noisy"] is False


def test_noisy_threshold_is_configurable():
    rows = [synth.row(cell(repeat=k), energy_per_sample_j=e) for k, e in enumerate([1.0e-3, 1.1e-3])]
    assert not M.cell_stats(frame(rows))["noisy"][0]
    assert M.cell_stats(frame(rows), noisy_cv=0.01)["noisy"][0]


def t975_df1() -> float:
    """Student's t(0.975) with 1 df in closed form: the Cauchy quantile tan(pi (p - 1/2))."""
    return math.tan(math.pi * 0.475)


def t975_df2() -> float:
    """Student's t(0.975) with 2 df in closed form: p = 1/2 + q / (2 sqrt(2 + q^2)) solved for q."""
    x = 2 * 0.975 - 1
    return x * math.sqrt(2 / (1 - x * x))


def test_the_t_quantiles_are_scipys_and_match_the_closed_forms():
    assert t975_df1() == pytest.approx(12.7062, abs=1e-4) and t975_df2() == pytest.approx(4.3027, abs=1e-4)
    assert not hasattr(M, "t975")  # no hand-written table left


def test_relative_to_baseline_and_missing_baselines():
    rows = [
        synth.row(cell("fp32"), energy_per_sample_j=1e-3, quality=0.05),
        synth.row(cell("bf16"), energy_per_sample_j=0.6e-3, quality=0.052),
        synth.row(cell("int8", bs=1024), energy_per_sample_j=0.5e-3),  # no fp32 at bs 1024
    ]
    cells = M.cell_stats(frame(rows))
    r = {x["precision"]: x for x in M.relative_to_baseline(cells).to_dicts()}
    assert r["fp32"]["d_energy_pct"] == pytest.approx(0.0)
    assert r["bf16"]["d_energy_pct"] == pytest.approx(-40.0)
    assert r["bf16"]["d_time_pct"] == pytest.approx(-40.0)  # synthetic rows run at constant power
    assert r["bf16"]["d_quality"] == pytest.approx(0.002)
    assert r["bf16"]["quality_better"] is False  # recon_mse: lower is better
    assert r["int8"]["d_energy_pct"] is None
    missing = M.missing_baselines(cells)
    assert missing.select("batch_size", "cells").rows() == [(1024, "int8")]


def curves(q, t, e, higher=True, bs=256, **kw):
    return synth.row(
        cell(phase="train", bs=bs),
        **kw,
        epoch_quality=q,
        epoch_wall_s=t,
        epoch_energy_j=e,
        quality=q[-1],
        quality_higher_is_better=higher,
        quality_metric="roc_auc" if higher else "recon_mse",
    )


def test_time_to_target_config_target_and_zeus_cost():
    df = frame(
        [
            curves([0.7, 0.8, 0.9], [10, 20, 30], [100, 200, 300], bs=256, mean_power_w=12.0),
            curves([0.75, 0.85, 0.86], [5, 10, 15], [80, 160, 240], bs=1024, mean_power_w=16.0),
            curves([0.6, 0.7, 0.75], [5, 10, 15], [50, 100, 150], bs=512, mean_power_w=10.0),  # never reaches 0.8
        ]
    )
    t = {r["batch_size"]: r for r in M.time_to_target(df, targets={"baler_ae": 0.8}, eta=0.25).to_dicts()}
    assert t[256]["target_source"] == "config" and t[256]["target"] == 0.8
    assert (t[256]["epochs_to_target"], t[256]["tta_s"], t[256]["eta_j"]) == (2, 20.0, 200.0)
    assert (t[1024]["epochs_to_target"], t[1024]["tta_s"], t[1024]["eta_j"]) == (2, 10.0, 160.0)
    assert t[512]["tta_s"] is None and t[512]["zeus_cost"] is None
    # MaxPower without a GPU power limit: highest mean power on the host/device (16 W)
    assert t[256]["max_power_w"] == 16.0
    assert t[256]["zeus_cost"] == pytest.approx(0.25 * 200 + 0.75 * 16 * 20)
    assert t[1024]["zeus_cost"] == pytest.approx(0.25 * 160 + 0.75 * 16 * 10)
    best = M.best_batch_size(M.time_to_target(df, targets={"baler_ae": 0.8}, eta=0.25)).to_dicts()
    assert len(best) == 1 and best[0]["batch_size"] == 1024 and best[0]["candidates"] == 2


def test_time_to_target_gpu_power_limit_and_eta_extremes():
    df = frame([curves([0.9], [10.0], [500.0], gpu_power_limit_w=300.0, mean_power_w=50.0)])
    assert M.time_to_target(df, eta=1.0)["zeus_cost"][0] == pytest.approx(500.0)  # energy only
    assert M.time_to_target(df, eta=0.0)["zeus_cost"][0] == pytest.approx(300.0 * 10)  # MaxPower*TTA
    with pytest.raises(ValueError, match="report.eta"):
        M.time_to_target(df, eta=1.5)


def test_time_to_target_lower_is_better_common_target_and_missing_energy_curve():
    df = frame(
        [
            curves([0.3, 0.2, 0.1], [1, 2, 3], [10, 20, 30], higher=False, bs=256),
            curves([0.4, 0.25, 0.2], [1, 2, 3], None, higher=False, bs=1024),  # no per-epoch energy
        ]
    )
    t = {r["batch_size"]: r for r in M.time_to_target(df).to_dicts()}
    # common target = the worst of the per-run best qualities = 0.2 (lower is better)
    assert t[256]["target_source"] == "common" and t[256]["target"] == pytest.approx(0.2)
    assert t[256]["epochs_to_target"] == 2 and t[256]["tta_s"] == 2.0 and t[256]["eta_j"] == 20.0
    assert t[1024]["epochs_to_target"] == 3 and t[1024]["tta_s"] == 3.0 and t[1024]["eta_j"] is None


def test_time_to_target_uses_run_target_quality():
    df = frame([curves([0.5, 0.6], [1, 2], [1, 2], target_quality=0.55)])
    r = M.time_to_target(df).row(0, named=True)
    assert r["target_source"] == "run" and r["epochs_to_target"] == 2


def test_time_to_target_empty():
    df = frame([synth.row(cell(phase="infer"))])
    t = M.time_to_target(df)
    assert t.height == 0 and "zeus_cost" in t.columns
    assert M.best_batch_size(t).height == 0


@pytest.mark.parametrize("higher", [True, False])
def test_pareto_front_respects_direction(higher):
    pts = {  # (energy/sample, quality)
        "a": (1.0, 0.9),
        "b": (2.0, 0.95),
        "c": (3.0, 0.93),
        "d": (0.5, 0.5),
        "e": (2.0, 0.90),
    }
    sign = 1 if higher else -1
    cells = pl.DataFrame(
        {
            "workload": ["w"] * 5,
            "phase": ["infer"] * 5,
            "name": list(pts),
            "energy_per_sample_j": [p[0] for p in pts.values()],
            "quality": [sign * p[1] for p in pts.values()],
            "quality_higher_is_better": [higher] * 5,
        }
    )
    front = set(M.pareto(cells).filter("pareto")["name"])
    assert front == {"a", "b", "d"}


def test_pareto_ignores_missing_and_groups_by_workload():
    cells = pl.DataFrame(
        {
            "workload": ["w", "w", "v"],
            "phase": ["infer"] * 3,
            "energy_per_sample_j": [1.0, None, 5.0],
            "quality": [0.5, 0.9, 0.1],
            "quality_higher_is_better": [True, True, None],
        }
    )
    assert M.pareto(cells)["pareto"].to_list() == [True, False, True]


def test_sci_operational_plus_embodied():
    r = synth.row(cell(), energy_per_sample_j=3.6, n_samples=1000)  # 3600 J = 1 Wh
    cells = M.cell_stats(frame([r]))
    wall = cells["wall_s"][0]
    sites = {"local": {"carbon_intensity_g_per_kwh": 500.0, "pue": 1.2}}
    hw = {"local": {"cpu_node": {"embodied_kg_co2e": 1000.0, "lifetime_years": 4.0}}}
    s = M.sci(cells, sites, hw).row(0, named=True)
    op = 3600 / 3.6e6 * 1.2 * 500  # g
    emb = 1000 * 1000 * wall / (4 * 365.25 * 86400) * (2 / 4)  # 2 of 4 logical CPUs
    assert s["sci_operational_g"] == pytest.approx(op)
    assert s["sci_embodied_g"] == pytest.approx(emb)
    assert s["sci_g_per_1k"] == pytest.approx(op + emb)  # R = 1,000 samples
    # no hardware entry: SCI is operational only; no sites: the intensity/PUE recorded in the run
    s2 = M.sci(cells).row(0, named=True)
    assert s2["sci_embodied_g"] is None and s2["sci_g_per_1k"] == pytest.approx(3600 / 3.6e6 * 1.0 * 480)


def test_fleet_what_if_and_saving():
    rows = [
        synth.row(cell("fp32", site="lxplus"), energy_per_sample_j=1e-3, n_samples=10_000),  # 10 J/job
        synth.row(cell("bf16", site="lxplus"), energy_per_sample_j=0.8e-3, n_samples=10_000),  # 8 J/job
    ]
    cells = M.cell_stats(frame(rows))
    sites = {"lxplus": {"carbon_intensity_g_per_kwh": 56, "pue": 1.5}}
    f = {r["precision"]: r for r in M.fleet(cells, sites, jobs_per_day=1_000_000).to_dicts()}
    mwh = 1e6 * 10 / 3.6e6 * 1.5 / 1000
    assert f["fp32"]["mwh_per_day"] == pytest.approx(mwh)
    assert f["fp32"]["t_co2_per_day"] == pytest.approx(mwh * 1000 * 56 / 1e6)
    assert f["bf16"]["saving_mwh_per_day"] == pytest.approx(mwh * 0.2)
    assert f["bf16"]["saving_pct"] == pytest.approx(20.0)
    # per-site override and samples per job
    g = {r["precision"]: r for r in M.fleet(cells, sites, per_site={"lxplus": 2e6}, samples_per_job=100).to_dicts()}
    assert g["fp32"]["energy_per_job_j"] == pytest.approx(0.1)
    assert g["fp32"]["mwh_per_day"] == pytest.approx(2e6 * 0.1 / 3.6e6 * 1.5 / 1000)


@pytest.mark.parametrize("window_passes", [1, 10, 600])
def test_fleet_compares_equal_work_whatever_the_inference_window(window_passes):
    """bf16 costs 10x fp32 per sample. A fixed inference window (min_window_s) holds ten times fewer bf16
    samples, so both windows cost the same energy: a fleet job of one window would show ~0 %. A fleet
    job is one pass over the test split: bf16 costs +900 %, whatever the window."""
    n_test = 5_000
    fp32 = synth.row(cell("fp32"), energy_per_sample_j=1e-4, n_samples=10 * window_passes * n_test, n_test=n_test)
    bf16 = synth.row(cell("bf16"), energy_per_sample_j=1e-3, n_samples=window_passes * n_test, n_test=n_test)
    assert fp32["energy_j"] == pytest.approx(bf16["energy_j"])  # the same window of the same power
    f = {r["precision"]: r for r in M.fleet(M.cell_stats(frame([fp32, bf16]))).to_dicts()}
    assert f["bf16"]["samples_per_job"] == f["fp32"]["samples_per_job"] == n_test
    assert f["fp32"]["energy_per_job_j"] == pytest.approx(1e-4 * n_test)
    assert f["bf16"]["mwh_per_day"] / f["fp32"]["mwh_per_day"] == pytest.approx(10.0)
    assert f["bf16"]["saving_pct"] == pytest.approx(-900.0)  # +900 % energy
    assert f["fp32"]["fleet_scope"] == "phase"


def test_fleet_samples_per_job_per_workload_and_phase_and_job_scope():
    rows = [
        synth.row(cell("fp32", phase="train"), energy_per_sample_j=2e-3, n_samples=30_000, job_energy_j=80.0),  # 60 J
        synth.row(
            cell("fp32", phase="infer"), energy_per_sample_j=1e-4, n_samples=50_000, n_test=5_000, job_energy_j=9.0
        ),
        synth.row(
            cell("fp32", phase="infer", workload="jet_tagger"), energy_per_sample_j=1e-4, n_samples=8_000, n_test=4_000
        ),
    ]
    cells = M.cell_stats(frame(rows))

    def key(r):
        return (r["workload"], r["phase"])

    # defaults: training = one training run as measured; inference = one pass over the test split
    d = {key(r): r for r in M.fleet(cells).to_dicts()}
    assert d[("baler_ae", "train")]["samples_per_job"] == 30_000 and d[("baler_ae", "train")][
        "energy_per_job_j"
    ] == pytest.approx(60.0)
    assert (
        d[("baler_ae", "infer")]["samples_per_job"] == 5_000 and d[("jet_tagger", "infer")]["samples_per_job"] == 4_000
    )
    # per workload and phase; other workloads keep the defaults; a number applies to every cell
    spec = {"baler_ae": {"infer": 1_000_000}}
    d = {key(r): r for r in M.fleet(cells, samples_per_job=spec).to_dicts()}
    assert (
        d[("baler_ae", "infer")]["samples_per_job"] == 1_000_000
        and d[("baler_ae", "train")]["samples_per_job"] == 30_000
    )
    assert d[("jet_tagger", "infer")]["samples_per_job"] == 4_000
    d = {key(r): r for r in M.fleet(cells, samples_per_job={"jet_tagger": 7}).to_dicts()}
    assert d[("jet_tagger", "infer")]["samples_per_job"] == 7 and d[("baler_ae", "infer")]["samples_per_job"] == 5_000
    assert {r["samples_per_job"] for r in M.fleet(cells, samples_per_job=123).to_dicts()} == {123}
    # scope job: + the job's energy outside its phase (start-up, data, model, writing)
    d = {key(r): r for r in M.fleet(cells, scope="job").to_dicts()}
    assert d[("baler_ae", "train")]["energy_per_job_j"] == pytest.approx(60.0 + (80.0 - 60.0))
    assert d[("baler_ae", "infer")]["energy_per_job_j"] == pytest.approx(1e-4 * 5_000 + (9.0 - 5.0))
    assert d[("jet_tagger", "infer")]["energy_per_job_j"] is None  # no whole-job energy recorded: no job figure
    with pytest.raises(ValueError, match="fleet.scope"):
        M.fleet(cells, scope="everything")


def test_scheduler_view_queue_wait_and_batch_efficiency():
    rows = [
        synth.row(cell(site="blackett", repeat=k), scheduler="htcondor", queue_wait_s=q)
        for k, q in enumerate([10.0, 30.0])
    ]
    rows.append(synth.row(cell(repeat=5)))  # local: no submit time
    v = {r["site"]: r for r in M.scheduler_view(frame(rows)).to_dicts()}
    b = v["blackett"]
    assert b["jobs"] == 2 and b["queue_wait_mean_s"] == pytest.approx(20.0) and b["queue_wait_max_s"] == 30.0
    # synth: submit = start - q - 2 s, finished = start + wall + 3 s
    wall = rows[0]["wall_s"]
    turn = [q + 2 + wall + 3 for q in (10.0, 30.0)]
    assert b["batch_efficiency"] == pytest.approx(2 * wall / sum(turn))
    assert b["turnaround_from"] == "submit"
    assert v["local"]["turnaround_from"] == "process start" and v["local"]["queue_wait_mean_s"] is None


def test_best_per_workload_and_empty_inputs():
    rows = synth.rows(synth.grid_cells(precisions=("fp32", "bf16")))
    best = M.best_per_workload(M.cell_stats(frame(rows)))
    assert best.height == 2 and set(best["precision_variant"]) == {"bf16"}
    assert best["d_energy_pct"].to_list() == pytest.approx([-40.0, -40.0])
    empty = pl.DataFrame(schema=S.polars_schema())
    cells = M.cell_stats(empty)
    assert M.best_per_workload(cells).height == 0
    for fn in (M.relative_to_baseline, M.missing_baselines, M.pareto, M.sci, M.fleet):
        assert fn(cells).height == 0
    assert M.scheduler_view(empty).height == 0


def test_emulated_precisions_with_the_slowdown_measured_in_the_rows():
    """bf16 emulated on one CPU: the note's range is time per sample / fp32's, derived here from the rows."""
    native = dict(cpu_model="Xeon AMX", cpu_flags="avx512_bf16,amx_bf16")
    emul = dict(cpu_model="EPYC AVX2", cpu_flags="avx2")
    rows = []
    # site a: emulated bf16, 8x and 12x the fp32 time at two batch sizes (wall_s = energy/20 W in synth)
    for bs, slow in ((256, 8.0), (1024, 12.0)):
        rows.append(synth.row(cell("fp32", bs=bs, site="a"), energy_per_sample_j=1e-3, precision_native=True, **emul))
        rows.append(
            synth.row(cell("bf16", bs=bs, site="a"), energy_per_sample_j=slow * 1e-3, precision_native=False, **emul)
        )
    # site b: native bf16, and an emulated fp16 cell without a baseline
    rows.append(synth.row(cell("fp32", site="b"), energy_per_sample_j=1e-3, precision_native=True, **native))
    rows.append(synth.row(cell("bf16", site="b"), energy_per_sample_j=0.5e-3, precision_native=True, **native))
    rows.append(synth.row(cell("fp16", site="b", bs=64), energy_per_sample_j=3e-3, precision_native=False, **native))
    rel = M.relative_to_baseline(M.cell_stats(frame(rows)))
    emu = M.emulated(rel)
    assert emu.select("site", "precision", "hardware", "cells", "cells_with_baseline").rows() == [
        ("a", "bf16", "EPYC AVX2", 2, 2),
        ("b", "fp16", "Xeon AMX", 1, 0),
    ]

    def per_sample(prec, bs):
        r = next(x for x in rows if x["site"] == "a" and x["precision"] == prec and x["batch_size"] == bs)
        return r["wall_s"] / r["n_samples"]

    expected = sorted(per_sample("bf16", bs) / per_sample("fp32", bs) for bs in (256, 1024))
    a = emu.row(0, named=True)
    assert (a["slowdown_min"], a["slowdown_max"]) == pytest.approx(tuple(expected)) and expected == pytest.approx(
        [8.0, 12.0]
    )
    notes = M.emulated_notes(emu)
    assert notes[0].startswith("bf16 on EPYC AVX2 (site a, cpu) is emulated: 8.0–12.0× slower than fp32 per sample")
    assert "CPU flags: avx2" in notes[0]
    assert "fp16 on Xeon AMX" in notes[1] and "no fp32 baseline" in notes[1]


def test_emulated_is_empty_without_emulated_cells_and_for_old_rows():
    rows = [synth.row(cell("fp32")), synth.row(cell("bf16"))]  # precision_native null: unknown, never "emulated"
    rel = M.relative_to_baseline(M.cell_stats(frame(rows)))
    assert M.emulated(rel).height == 0 and M.emulated_notes(M.emulated(rel)) == []
    assert rel["precision_native"].to_list() == [None, None]


def test_batch_sizes_that_cannot_be_told_apart_from_the_cheapest_by_zeus_cost():
    """Three repeats each, the same per-repeat jitter in both batch sizes (blocks): bs 256 costs 1.5x bs 1024 in
    every block (exact: told apart); two batch sizes of equal cost in every block are both listed."""

    def rows(ratio_256):
        out = []
        for k, j in enumerate([0.0, 0.1, -0.05]):
            for bs, e in ((256, 1.5e-3 * ratio_256), (1024, 1.5e-3)):
                out.append(run_row([0.7, 0.8, 0.9], [10, 20, 30], 100 * e / 1e-3 * (1 + j), bs=bs, repeat=k))
        return frame(out)

    def run_row(q, t, e, bs, repeat):  # one repeat of a training cell: its curves end at energy e
        return synth.row(
            cell(phase="train", bs=bs, repeat=repeat),
            epoch_quality=q,
            epoch_wall_s=t,
            epoch_energy_j=[e / 3, 2 * e / 3, e],
            quality=q[-1],
            quality_higher_is_better=True,
            quality_metric="roc_auc",
            mean_power_w=10.0,
        )

    told = M.batch_sizes_like_the_best(M.time_to_target(rows(1.5), targets={"baler_ae": 0.9}, eta=1.0))
    assert told.select("batch_size", "could_be_best").rows() == [(1024, "1024")]
    tied = M.batch_sizes_like_the_best(M.time_to_target(rows(1.0), targets={"baler_ae": 0.9}, eta=1.0))
    assert sorted(tied["could_be_best"][0].split(", ")) == ["1024", "256"]
