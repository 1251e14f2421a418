"""Real `joulegrid run-cell` processes: the whole job's time and energy, and the same cell alone and
beside a CPU-burning neighbour on a fake node (tests/meters/fake_node.py) whose RAPL counters follow
the real CPU time of the cell and the neighbour ($JOULEGRID_POWERCAP / $JOULEGRID_PROC)."""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, TINY, deep_merge, subprocess_env
from meters.fake_node import FakeNode

from joulegrid import config as CFG
from joulegrid import grid as G
from joulegrid import spec as SP
from joulegrid.data import dataset_path, prepare

pytestmark = pytest.mark.slow
P0, K, P0_DRAM, K_DRAM = 4.0, 12.0, 2.0, 1.0


def spec_for(workload: str, measure: dict, sites_file: str | None = None, rows: int = 3000, epochs: int = 1) -> dict:
    cfg = deep_merge(
        copy.deepcopy(TINY),
        {
            "grid": {"workloads": [workload]},
            "measure": {"threads": 1, **measure},
            "workloads": {workload: {"rows": rows, "epochs": epochs}},
        },
    )
    if sites_file:
        cfg["sites_file"] = sites_file
    cfg, sites = CFG.prepare(cfg, base_dir=REPO)
    return SP.SpecBuilder(cfg, sites).spec(G.Cell("local", workload, "train", "cpu", "fp32", "baseline", 256, 0))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("jobdata")
    out = {}
    for rows in (3000, 0):
        p = d / dataset_path("resources", "jets", rows)
        prepare("jets", rows, p)
        out[rows] = str(p)
    return out


def start_cell(spec: dict, data_file: str, out, env: dict | None = None) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "joulegrid",
        "run-cell",
        "--spec",
        json.dumps(spec),
        "--data",
        data_file,
        "--out",
        str(out),
        "--threads",
        "1",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=subprocess_env(env))


def test_whole_job_from_interpreter_start(data, tmp_path):
    """job_wall_s / job_energy_j of a real cell process, checked against the kernel's accounting of it.

    With the estimate meter (E_job = W x J + (A/N) x P0 x dt, the node counted as shared), the whole
    job's energy is W x (the process's CPU time) + (A/N) x P0 x job_wall_s, where the CPU time is what
    os.wait4 reports for the child (less its idle baseline, which sleeps)."""
    spec = spec_for(
        "baler_ae",
        {
            "meters": ["estimate"],
            "idle_baseline_s": 0.5,
            "min_window_s": 0,
            "hotspots": "never",
            "node_shared_above": 0.0,
            "cpu_tdp_w_per_thread": 5.0,
        },
    )
    out = tmp_path / "r.parquet"
    t_start = time.time()
    p = start_cell(spec, data[3000], out)
    _, status, ru = os.wait4(p.pid, 0)
    t_end = time.time()
    assert os.waitstatus_to_exitcode(status) == 0, p.stdout.read()[-3000:]
    r = pq.read_table(out).to_pylist()[0]
    assert r["status"] == "ok"
    # time: the process's life, from the interpreter's start, less the idle baseline
    assert t_start - 0.05 <= r["process_started_at"].timestamp() <= r["started_at"].timestamp()
    life = (r["finished_at"] - r["process_started_at"]).total_seconds()
    assert r["job_wall_s"] == pytest.approx(life - r["job_excluded_s"], abs=0.05)
    assert r["job_excluded_s"] == pytest.approx(r["idle_window_s"], abs=0.05)
    assert r["job_wall_s"] + r["job_excluded_s"] <= t_end - t_start
    assert r["job_time_outside_phase_fraction"] == pytest.approx(1 - r["wall_s"] / r["job_wall_s"])
    # energy: the model over the whole process, from the kernel's CPU time of it
    cpu = ru.ru_utime + ru.ru_stime
    n, a = r["node_cpus"], r["job_cpus"]
    want = 5.0 * cpu + a / n * (0.1 * n * 5.0) * r["job_wall_s"]
    assert r["job_energy_j"] == pytest.approx(want, rel=0.05), (r["job_energy_j"], want, cpu)
    assert r["job_energy_j"] > r["energy_j"] and r["job_energy_outside_phase_fraction"] == pytest.approx(
        1 - r["energy_j"] / r["job_energy_j"]
    )
    # the start-up before the meters ran is extrapolated, and says so
    assert 0 < r["job_untracked_s"] < r["job_wall_s"] and 0 < r["job_energy_extrapolated_j"] < r["job_energy_j"]
    assert r["p0_cpu_source"] == "model" and r["energy_attribution"] == "cpu-share"


def test_the_same_cell_alone_and_beside_a_neighbour(data, tmp_path):
    """The issue's measurement (a jet-tagger training cell, 1 thread, beside a process burning one core;
    13.4 J alone and 17.7 J beside it before this split), on a fake node whose counters the cell's own
    meters read, with the site's idle power from a sites file (config/sites.yaml node_power). Medians of
    three alternating runs each."""
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())
    sites["local"]["node_power"] = {"cpu_idle_w": P0, "dram_idle_w": P0_DRAM, "source": "fake node"}
    sites_file = tmp_path / "sites.yaml"
    sites_file.write_text(yaml.safe_dump(sites))
    # (~2 CPU-s: ticks are 10 ms)
    spec = spec_for(
        "jet_tagger",
        {"meters": ["rapl"], "idle_baseline_s": 0, "hotspots": "never", "counter_interval_s": 0.05},
        sites_file=str(sites_file),
        rows=0,
        epochs=20,
    )
    node = FakeNode(tmp_path / "node", P0, K, P0_DRAM, K_DRAM, n_cpus=2).start()
    env = {"JOULEGRID_POWERCAP": str(node.powercap), "JOULEGRID_PROC": str(node.proc)}
    runs: dict[str, list[dict]] = {"alone": [], "neighbour": []}
    try:
        for k in range(3):
            for case in ("alone", "neighbour") if k % 2 == 0 else ("neighbour", "alone"):
                nb = None
                if case == "neighbour":
                    nb = subprocess.Popen(
                        [sys.executable, "-c", "import os; os.sched_setaffinity(0, {1})\nwhile True: pass"]
                    )
                    node.track(nb.pid)
                out = tmp_path / f"{case}{k}.parquet"
                p = start_cell(spec, data[0], out, env)
                os.sched_setaffinity(p.pid, {0})
                node.track(p.pid)
                log = p.communicate(timeout=600)[0]
                if nb:
                    nb.kill()
                    nb.wait()
                assert p.returncode == 0, log[-3000:]
                runs[case].append(pq.read_table(out).to_pylist()[0])
    finally:
        node.stop()
    for r in runs["alone"] + runs["neighbour"]:
        assert (
            r["status"] == "ok"
            and r["energy_method"] == "rapl"
            and r["p0_cpu_source"] == "site"
            and r["p0_cpu_w"] == P0
        )
        assert r["energy_j"] + r["node_other_active_j"] + r["node_unreserved_idle_j"] == pytest.approx(
            r["node_energy_j"]
        )
        assert r["energy_cpu_active_j"] == pytest.approx(K * r["job_cpu_s"], rel=0.1)  # k x its own CPU time
    keys = ("energy_cpu_active_j", "neighbour_cpu_fraction", "job_cpu_s")
    med = {c: {k: statistics.median(r[k] for r in rs) for k in keys} for c, rs in runs.items()}
    # The cell's active energy follows its OWN CPU time only. Unlike the fixed-work job of
    # tests/meters/test_attribution_processes.py, a real cell's CPU time for the same work grows
    # beside a neighbour on a shared host (caches, memory bandwidth: +11 % seen on the build host), a
    # real cost of the cell's; what must not show up is the neighbour's work, which doubles the node's.
    a, n = med["alone"], med["neighbour"]
    assert n["energy_cpu_active_j"] / a["energy_cpu_active_j"] == pytest.approx(
        n["job_cpu_s"] / a["job_cpu_s"], rel=0.1
    ), med
    # (+27 % on the 2-core build host while other test suites ran); the neighbour's work charged to the
    # cell would double it (it burns a whole CPU for as long as the cell runs): 1.5 separates the two
    assert n["job_cpu_s"] < 1.5 * a["job_cpu_s"], med
    # ... while the node's counters did carry it: per run, the node's active CPU energy (its counter less
    # the site's idle power over the window) against the cell's own. Per run, not a ratio of medians of
    # different runs: the cell's CPU time varies between runs (1.9 s beside, 2.2 s alone in one CI run)
    # and the idle part is the same in both cases.
    node_over_job = {
        c: sorted((r["node_energy_cpu_j"] - P0 * r["wall_s"]) / r["energy_cpu_active_j"] for r in rs)
        for c, rs in runs.items()
    }
    assert statistics.median(node_over_job["alone"]) == pytest.approx(1.0, abs=0.15), node_over_job
    assert statistics.median(node_over_job["neighbour"]) > 1.5, node_over_job
    assert med["alone"]["neighbour_cpu_fraction"] < 0.05 < 0.2 < med["neighbour"]["neighbour_cpu_fraction"], med
    assert [r["node_shared"] for r in runs["alone"]] == [False] * 3 and [
        r["node_shared"] for r in runs["neighbour"]
    ] == [True] * 3
