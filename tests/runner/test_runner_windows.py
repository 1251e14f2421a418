"""The runner's measurement windows on a real tiny cell: idle baseline, minimum inference window,
memory peaks, latencies, hotspots side file, required meters."""

from __future__ import annotations

import copy
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO, TINY, deep_merge

from joulegrid import cli, hotspots, phases, runner
from joulegrid import config as CFG
from joulegrid import grid as G
from joulegrid import schema as S
from joulegrid import spec as SP
from joulegrid.data import dataset_path, prepare


def spec_for(phase: str, measure: dict, repeat: int = 0, precision: str = "fp32") -> dict:
    cfg = deep_merge(copy.deepcopy(TINY), {"measure": {"threads": 1, "warmup_batches": 1, **measure}})
    cfg, sites = CFG.prepare(cfg, base_dir=REPO)
    b = SP.SpecBuilder(cfg, sites)
    cell = G.Cell("local", "baler_ae", phase, "cpu", precision, "baseline", 256, repeat)
    return b.spec(cell)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("cell")
    data = d / dataset_path("resources", "jets", 3000)
    prepare("jets", 3000, data)
    model = d / "ref.pt"
    runner.train_reference(spec_for("train", {"meters": ["estimate"]}), str(model), str(data), threads=1)
    return {"dir": d, "data": str(data), "model": str(model)}


def run_cell(env, phase, measure, repeat=0):
    spec = spec_for(phase, measure, repeat)
    cell = G.Cell(**spec["cell"], config_hash=spec["config_hash"])
    out = env["dir"] / "results" / "runs" / f"{cell.file_id}.parquet"
    row = runner.run_and_write(spec, str(out), env["data"], env["model"] if phase == "infer" else None, threads=1)
    assert row["status"] == "ok", row["error_message"]
    return row, out, cell


def test_infer_min_window_idle_baseline_and_net_energy(env):
    row, out, cell = run_cell(
        env, "infer", {"meters": ["estimate"], "min_window_s": 0.5, "idle_baseline_s": 0.2, "hotspots": "never"}
    )
    # the window repeats whole passes over the test split until it lasts min_window_s
    assert row["wall_s"] >= 0.5 and row["infer_passes"] >= 1
    assert row["n_samples"] == row["infer_passes"] * row["n_test"]
    assert row["n_batches"] == row["infer_passes"] * -(-row["n_test"] // 256)
    # idle baseline: measured before the window with the same meters; net = gross - idle power x wall
    assert row["idle_window_s"] >= 0.2
    # each window: the meter's node reading, and the job's share of it
    windows = [(r["window"], r["scope"]) for r in row["energy_readings"]]
    assert windows == [("idle", "node"), ("idle", "job"), ("measured", "node"), ("measured", "job")]
    idle = row["energy_readings"][1]
    assert row["idle_power_w"] == pytest.approx(idle["energy_j"] / row["idle_window_s"])
    assert row["energy_net_j"] == pytest.approx(row["energy_j"] - row["idle_power_w"] * row["wall_s"])
    assert row["energy_method"] == "estimate-tdp" and row["energy_estimated"] is True
    # the reading error of the CPU-time model (docs/measurement.md, "Sampling and low confidence"): one 10-ms
    # /proc/stat tick per CPU at each edge, on the model's dynamic part W x B only -- recomputed from the row
    node = row["energy_readings"][2]
    dynamic = (node["energy_j"] - min(node["p0_w"] * row["wall_s"], node["energy_j"])) / node["energy_j"]
    want = 2 * row["node_cpus"] * 0.01 / row["node_busy_cpu_s"] * dynamic
    assert row["energy_rel_err"] == pytest.approx(want, rel=1e-9)
    assert row["energy_low_confidence"] is (want > 0.02)  # measure.energy_max_rel_err's default
    assert (row["energy_low_confidence_reason"] is None) is (want <= 0.02)
    # whose energy: the job's share, and every joule of the node in one bucket
    assert row["energy_attribution"] in ("cpu-share", "node-cpu")
    assert (
        row["node_energy_j"] == row["energy_readings"][2]["energy_j"]
        and row["energy_j"] == row["energy_readings"][3]["energy_j"]
    )
    assert row["energy_j"] + row["node_other_active_j"] + row["node_unreserved_idle_j"] == pytest.approx(
        row["node_energy_j"]
    )
    assert row["energy_cpu_j"] == pytest.approx(row["energy_cpu_active_j"] + row["energy_cpu_idle_j"])
    # 10-ms ticks (busy and total are sums of ticks: equal on a fully loaded host, up to float rounding)
    assert 0 < row["job_cpu_s"] <= row["node_busy_cpu_s"] + 0.02
    assert row["node_busy_cpu_s"] <= row["node_cpu_s"] + 1e-9
    assert row["job_cpu_source"] == "process-tree"
    assert row["job_share_cpu"] == pytest.approx(row["job_cpu_s"] / max(row["node_busy_cpu_s"], row["job_cpu_s"]))
    assert row["job_cpus_source"] == "affinity" and row["job_mem_source"] in ("pss", "rss")
    assert 0 < row["job_share_ram"] == pytest.approx(row["job_mem_bytes"] / row["node_mem_bytes"])
    # data vs compute and latencies
    assert 0 < row["data_s"] < row["wall_s"] and row["compute_s"] == pytest.approx(
        row["wall_s"] - row["data_s"] - row["eval_s"]
    )
    assert 0 < row["latency_p50_s"] <= row["latency_p90_s"] <= row["latency_p99_s"]
    assert row["samples_per_s"] == pytest.approx(row["n_samples"] / row["wall_s"])
    # memory peaks: the window's peak (VmHWM reset before it) within the job's
    assert 0 < row["peak_rss_window_bytes"] <= row["peak_rss_bytes"]
    assert row["peak_device_mem_allocated_bytes"] is None  # cpu cell: torch.cuda never touched
    assert row["meters_absent"] == [] and row["meters_ready_s"] >= 0
    # the measured window's UTC times (the analysis integrates a site's intensity series over them): inside the
    # job, and around the window's own clock (read after the first time and before the second)
    ws, wf = row["window_started_at"], row["window_finished_at"]
    assert row["started_at"] < ws < wf <= row["finished_at"] and ws.tzinfo is not None
    assert (wf - ws).total_seconds() >= row["wall_s"] - 1e-3
    assert not hotspots.path_for(out, cell.id).exists()
    t = pq.read_table(out)
    assert t.schema.equals(S.arrow_schema(), check_metadata=False)


def test_min_window_zero_is_one_pass(env):
    row, _, _ = run_cell(
        env, "infer", {"meters": ["estimate"], "min_window_s": 0, "idle_baseline_s": 0, "hotspots": "never"}
    )
    assert row["infer_passes"] == 1 and row["n_samples"] == row["n_test"]
    assert row["idle_power_w"] is None and row["energy_net_j"] is None and row["idle_window_s"] is None


def test_train_window_repeats_whole_training_runs_from_the_same_start(env, monkeypatch):
    """Issue 22, steady windows: training repeats whole training runs until the window lasts min_window_s,
    each from the same initial weights, RNG state and data order; time and energy per run = window / runs.
    The window's clock is faked (0.1 s per look) so that the number of runs does not depend on the host's
    load; the real clock's rule (wall_s >= min_window_s) is checked on a second cell."""
    import torch

    starts = []  # a checksum of the weights and the RNG state as each run begins
    real_run = phases.Phase._train_run

    def spy(self, m, w, first):
        params = torch.cat([p.detach().flatten() for p in self.setup.model.state_dict().values()])
        rng = torch.get_rng_state()
        starts.append((float(params.double().sum()), float(params.double().abs().sum()), torch.rand(1).item()))
        torch.set_rng_state(rng)  # the spy's draw taken back: the run sees the state it was given
        return real_run(self, m, w, first)

    looks = {}

    def fake_elapsed(self):
        looks[id(self)] = looks.get(id(self), 0) + 1
        return 0.1 * looks[id(self)]

    monkeypatch.setattr(phases.Phase, "_train_run", spy)
    monkeypatch.setattr(phases.MeasuredWindow, "elapsed", fake_elapsed)
    measure = {"meters": ["estimate"], "min_window_s": 0.35, "idle_baseline_s": 0, "hotspots": "never"}
    row, _, _ = run_cell(env, "train", measure)
    runs = row["train_runs"]
    assert runs >= 2 and runs == len(starts)
    assert len(set(starts)) == 1  # every run starts from the same weights and RNG state
    # every figure of the window covers all runs; the epoch curves are the first run's
    per_run = row["epochs"] * row["n_train"]
    assert row["n_samples"] == runs * per_run
    assert row["n_batches"] == runs * row["epochs"] * -(-row["n_train"] // 256)
    assert len(row["epoch_wall_s"]) == row["epochs"] and len(row["epoch_energy_j"]) == row["epochs"]
    assert row["train_run_wall_s"] == pytest.approx(row["wall_s"] / runs, rel=1e-12)
    assert row["train_run_energy_j"] == pytest.approx(row["energy_j"] / runs, rel=1e-12)
    # one training run measured alone (min_window_s 0) starts from the same weights and reaches the same loss
    monkeypatch.setattr(phases.MeasuredWindow, "elapsed", lambda self: 0.0)
    first = starts[0]
    starts.clear()
    one, _, _ = run_cell(env, "train", {**measure, "min_window_s": 0})
    assert one["train_runs"] == 1 and starts == [first]
    assert one["loss"] == pytest.approx(row["loss"], rel=1e-6) and one["n_samples"] == per_run
    monkeypatch.undo()
    # the real clock: the window lasts at least min_window_s
    real, _, _ = run_cell(env, "train", {**measure, "min_window_s": 0.3})
    assert real["wall_s"] >= 0.3 and real["train_runs"] >= 1


def test_train_hotspots_side_file_keyed_by_run_id(env):
    row, out, cell = run_cell(
        env,
        "train",
        {
            "meters": ["estimate"],
            "idle_baseline_s": 0,
            "hotspots": "first_repeat",
            "hotspot_batches": 3,
            "hotspot_top": 5,
        },
    )
    hp = hotspots.path_for(out, cell.file_id)
    assert hp == env["dir"] / "results" / "hotspots" / f"{cell.file_id}.parquet"
    t = pq.read_table(hp)
    assert t.schema.equals(S.hotspot_arrow_schema(), check_metadata=False)
    df = hotspots.collect(env["dir"] / "results")
    mine = df.filter(df["run_id"] == row["run_id"])
    assert set(mine["profiler"]) == {"cprofile", "torch"}
    for (_prof, kind), part in mine.group_by("profiler", "kind"):
        part = part.sort("rank")
        if kind != "group":  # groups: their place in hotspots.GROUPS
            assert part["rank"].to_list() == list(range(1, part.height + 1))
        assert set(part["profiled_batches"]) == {3} and set(part["profiled_samples"]) == {3 * 256}
        assert part["cell_id"].unique().to_list() == [cell.id]
    kinds = mine.group_by("profiler", "kind").len()
    assert {(r["profiler"], r["kind"]) for r in kinds.iter_rows(named=True)} == {
        ("cprofile", "function"),
        ("cprofile", "group"),
        ("torch", "step"),
        ("torch", "module"),
        ("torch", "operator"),
    }
    assert 1 <= mine.filter(mine["kind"] == "function").height <= 5  # hotspot_top
    # the trace beside the hotspots file, named in the torch rows (relative to the results folder)
    tf = mine.filter(mine["profiler"] == "torch")["trace_file"].unique().to_list()
    assert tf == [hotspots.trace_path(hp).relative_to(env["dir"] / "results").as_posix()]
    names = {e.get("name") for e in json.loads(hotspots.trace_path(hp).read_text())["traceEvents"]}
    assert "aten::addmm" in names and "joulegrid::step" in names
    # the profiled pass is separate: the measured figures count only the measured epochs
    assert row["n_batches"] == row["epochs"] * -(-row["n_train"] // 256)
    # per-epoch energy: the job's cumulative share at each epoch (attributed like the window), growing
    # up to the window's (a 0.1-s window: the CPU times' 10-ms ticks make the last stretch coarse)
    e = row["epoch_energy_j"]
    assert len(e) == row["epochs"] and all(0 < a <= b for a, b in zip(e, e[1:] + [row["energy_j"]], strict=True))
    # the profiling passes are joulegrid's, not the job's: left out of the whole job
    assert row["job_excluded_s"] >= row["profile_s"] - 0.05
    assert row["profile_s"] > 0
    # cProfile ranks the workload's and the libraries' functions, none of joulegrid's own frames (its loop,
    # the precision's step, the profilers); the workload's loss is in the call paths into them
    funcs = mine.filter(mine["kind"] == "function")
    assert not any(f.startswith(("runner.py", "phases.py", "hotspots.py", "precision.py")) for f in funcs["function"])
    assert set(funcs["group"]) <= {"workload", "torch", "numpy", "python", "data loading", "other libraries"}
    assert any("baler_ae.py:loss" in p for p in funcs["call_path"])
    # the model's modules by name, with their class
    mods = {r["function"]: r["module_type"] for r in mine.filter(mine["kind"] == "module").iter_rows(named=True)}
    assert mods["(model)"] == "AE" and mods["encoder.0"] == "Linear"
    # repeat 1 is not profiled with first_repeat
    row1, out1, cell1 = run_cell(
        env, "train", {"meters": ["estimate"], "hotspots": "first_repeat", "idle_baseline_s": 0}, repeat=1
    )
    assert row1["profile_s"] is None and not hotspots.path_for(out1, cell1.id).exists()


def test_required_meter_stops_the_job_before_it_starts(env, capsys):
    spec = spec_for("train", {"meters": ["estimate"], "required_meters": ["rapl"]})
    out = env["dir"] / "required.parquet"
    import joulegrid.meters.rapl as rapl

    if rapl.readable(rapl.POWERCAP)[1] is None:
        pytest.skip("this host has readable RAPL")
    rc = cli.main(["run-cell", "--spec", json.dumps(spec), "--out", str(out), "--data", env["data"], "--threads", "1"])
    assert rc == 3 and not out.exists()
    err = capsys.readouterr().err
    assert "not started" in err and "required meter(s) unavailable" in err and "rapl" in err


def test_run_cell_process_ends_with_its_row_and_log(env):
    """`joulegrid run-cell` as rule measure runs it (its own process, output into the log file): it
    ends without the interpreter's teardown once the row is written (cli.entry), and nothing
    written before is lost: the row, and the last line of the log."""
    import subprocess
    import sys

    from conftest import subprocess_env

    spec = spec_for("infer", {"meters": ["estimate"], "idle_baseline_s": 0, "min_window_s": 0, "hotspots": "never"})
    out, log = env["dir"] / "process" / "row.parquet", env["dir"] / "process.log"
    cmd = [
        sys.executable,
        "-m",
        "joulegrid",
        "run-cell",
        "--spec",
        json.dumps(spec),
        "--data",
        env["data"],
        "--model",
        env["model"],
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=subprocess_env(), timeout=300).returncode
    assert rc == 0, log.read_text()[-2000:]
    assert pq.read_table(out).to_pylist()[0]["status"] == "ok"
    assert log.read_text().rstrip().splitlines()[-1] == f"joulegrid: {G.Cell(**spec['cell']).id}: ok"


def test_percentile_matches_numpy_linear():
    rng = np.random.default_rng(1)
    vals = sorted(rng.exponential(size=101).tolist())
    for q in (0.5, 0.9, 0.99):
        assert phases.percentile(vals, q) == pytest.approx(float(np.percentile(vals, 100 * q)))
    assert phases.percentile([], 0.5) is None
    assert phases.percentile([3.0], 0.99) == 3.0


def test_a_window_the_outlier_rule_excludes_stays_a_row_and_is_measured_again(env, monkeypatch):
    """Issue 22, outliers by rule: the rule's verdict on the first window excludes it (forced here: the real
    criteria read the host's load); the job measures the phase again, writes the kept row first and the
    excluded window after it, with its own energy and reason; the analysis leaves the excluded row out."""
    import polars as pl

    from joulegrid import diagnostics
    from joulegrid.analysis import metrics

    verdicts = iter(["steal 50.0% of the node's CPU time > 10% (measure.outlier_max_steal)", None])
    monkeypatch.setattr(diagnostics.OutlierRule, "judge", lambda self, d: next(verdicts))
    row, out, cell = run_cell(
        env, "infer", {"meters": ["estimate"], "min_window_s": 0.2, "idle_baseline_s": 0.1, "hotspots": "never"}
    )
    rows = pl.read_parquet(out).to_dicts()
    assert len(rows) == 2
    kept, gone = rows
    assert kept["run_id"] == row["run_id"] and kept["excluded"] is False and kept["exclusion_reason"] is None
    assert kept["window_attempt"] == 2 and gone["window_attempt"] == 1
    assert gone["excluded"] is True and "outlier_max_steal" in gone["exclusion_reason"]
    assert gone["run_id"] != kept["run_id"] and gone["cell_id"] == kept["cell_id"] == cell.id
    # the excluded window is a measurement in its own right: its window, samples and energy
    assert gone["wall_s"] >= 0.2 and gone["n_samples"] == gone["infer_passes"] * gone["n_test"]
    assert gone["energy_j"] > 0 and gone["idle_window_s"] >= 0.1 and gone["energy_rel_err"] is not None
    assert gone["job_energy_j"] is None  # the whole job belongs to the kept row
    # the excluded attempt is joulegrid's stretch of the job, like the idle baseline: not the job's own
    assert kept["job_excluded_s"] >= gone["wall_s"]
    # the diagnostics of both windows are recorded
    for r in rows:
        assert "neighbour_contention" in r and "cpu_freq_source" in r
    stat = metrics.stat_runs(pl.DataFrame(rows))
    assert stat["run_id"].to_list() == [kept["run_id"]]
