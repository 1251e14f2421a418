"""The same tiny grid through the local executor, a real Slurm cluster and a real HTCondor pool.

The clusters are the single-node ones of tests/clusters/start-{slurm,condor}.sh (tests/run-tests.sh
and .ci/run start them). When one is not up, its tests skip with the reason status-*.sh gives
(and the end of its start log); nothing here imitates a scheduler.

One working directory is shared by the module, as a user would do: the local run prepares the data
and the reference model, the Slurm and HTCondor runs reuse them and only submit the grid's cells
(site slurm / htcondor -> results/runs/<site>/), and every run re-aggregates all sites into one
results/summary.parquet.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conftest as C  # tests/conftest.py: TINY, deep_merge, snakemake, subprocess_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MEM_MB = 1000
RUNTIME_MIN = 10

# 4 cells per site: train/infer x cpu/cuda. The test clusters advertise one GPU that does not
# exist (SLURM_FAKE_GPUS / CONDOR_FAKE_GPUS), so cuda cells are really scheduled with a GPU
# request and then record a skipped row (no CUDA device in this CPU-only torch).
GRID = {
    "grid": {"devices": ["cpu", "cuda"]},
    "job": {"mem_mb": MEM_MB, "runtime_min": RUNTIME_MIN},
}
MEASURING_RULES = ("prepare_dataset", "train_reference", "measure")
# Test-only speed-ups (site profiles keep the plugins' defaults, which are right for real clusters).
SLURM_FAST = ["--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5"]
CONDOR_FAST = ["--seconds-between-status-checks", "1", "--htcondor-held-timeout", "0", "--latency-wait", "5"]


# ------------------------------------------------------------------ helpers
def _cluster_state(name: str) -> tuple[bool, str]:
    """(usable, reason) from tests/clusters/status-<name>.sh (+ the end of its start log)."""
    proc = subprocess.run([str(HERE / f"status-{name}.sh")], capture_output=True, text=True, timeout=60)
    msg = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0:
        return True, msg
    log = Path(f"/tmp/joulegrid-start-{name}.log")  # written by tests/run-tests.sh and .ci/run
    text = log.read_text(errors="replace") if log.is_file() else ""
    if text and not re.search(r"cluster up:|pool ready", text):  # the last start failed: say why
        tail = " | ".join(text.strip().splitlines()[-6:])
        msg += f" (start failed, end of {log}: {tail})"
    else:
        msg += f" (start it with: tests/clusters/start-{name}.sh)"
    return False, msg


def _condor_config() -> str:
    out = subprocess.run([str(HERE / "start-condor.sh"), "--env"], capture_output=True, text=True, check=True).stdout
    return re.search(r"CONDOR_CONFIG=(\S+)", out).group(1)


def _rows(workdir: Path, site: str):
    import polars as pl

    files = sorted((workdir / "results" / "runs" / site).rglob("*.parquet"))
    assert len(files) == 4, f"expected 4 run files for site {site}, found {[str(f) for f in files]}"
    return pl.read_parquet(files).sort("cell_id")


def max_concurrent(log: str, rules=MEASURING_RULES) -> int:
    """Most jobs of `rules` running at once, from a Snakemake log (job blocks and 'Finished jobid')."""
    running: set[str] = set()
    rule = None
    peak = 0
    for line in log.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+jobid: (\d+)$", line)
        if m and rule in rules:
            running.add(m.group(1))
            peak = max(peak, len(running))
            rule = None
            continue
        m = re.match(r"^Finished jobid: (\d+)", line)
        if m:
            running.discard(m.group(1))
    return peak


def _check_scheduler_rows(df, scheduler: str, site: str) -> None:
    """What every cluster row must say: job id, node, queue wait, allocation, thread settings."""
    assert df["site"].to_list() == [site] * 4
    assert df["scheduler"].to_list() == [scheduler] * 4, df.select("cell_id", "scheduler", "error_message").to_dicts()
    assert df["job_id"].null_count() == 0 and df["job_id"].n_unique() == 4, df["job_id"].to_list()
    assert df["node_name"].to_list() == [socket.gethostname()] * 4
    for r in df.iter_rows(named=True):
        assert r["submit_time"] is not None and r["job_start_time"] is not None, r["cell_id"]
        # checked against the scheduler's records below
        assert r["queue_wait_s"] is not None and r["queue_wait_s"] >= 0, r["cell_id"]
        assert r["alloc_cpus"] == 1, r  # measure.threads (TINY) -> --cpus-per-task / request_cpus
        assert r["alloc_mem_mb"] >= MEM_MB, r  # job.mem_mb -> --mem / request_memory (HTCondor rounds up)
        if r["device"] == "cuda":
            assert r["alloc_gpus"] == 1, r  # cuda cells request a GPU
            assert r["status"] == "skipped" and "no CUDA device" in r["skip_reason"], r
        else:
            # Slurm allocates exactly what was asked; HTCondor may hand a partitionable slot's
            # leftovers (here the GPU) to the job that takes its last CPU: alloc_gpus records what
            # the slot provisioned, checked against the job's history ad in the HTCondor test.
            if scheduler == "slurm":
                assert r["alloc_gpus"] == 0, r
            assert r["status"] == "ok", (r["error_type"], r["error_message"])
            # torch ran with the allocated CPUs, and the scheduler's/Snakemake's OMP/MKL agree
            assert r["torch_num_threads"] == 1 and r["omp_num_threads"] == "1" and r["mkl_num_threads"] == "1", r
            assert r["threads_consistent"] is True and r["threads_mismatch"] is None, r
            _check_job_share(r, scheduler)


def _check_job_share(r, scheduler: str) -> None:
    """Whose energy on a cluster node: the scheduler's reservation, the job's share of the node."""
    cid = r["cell_id"]
    assert (r["job_cpus"], r["job_cpus_source"]) == (r["alloc_cpus"], scheduler), cid
    assert r["job_mem_source"] == f"{scheduler}-reservation", cid
    # the job's RAM share = its reservation (MB, as the scheduler recorded it) over the node's memory
    assert r["job_share_ram"] == pytest.approx(r["alloc_mem_mb"] * 2**20 / r["node_mem_bytes"], rel=1e-9), cid
    assert r["node_mem_bytes"] == pytest.approx(r["memory_total_bytes"], rel=0.01), cid
    assert r["node_cpus"] == r["cpu_cores_logical"] and r["job_cpu_source"] in (
        "process-tree",
        "cgroup-v1",
        "cgroup-v2",
    ), cid
    # (TINY's windows last tens of ms: CPU times count 10-ms ticks, the usage window ~1 ms more than wall_s)
    assert 0 <= r["job_cpu_s"] <= r["node_busy_cpu_s"] + 0.02, cid
    if r["node_busy_cpu_s"] > 0:
        assert r["job_share_cpu"] == pytest.approx(r["job_cpu_s"] / max(r["node_busy_cpu_s"], r["job_cpu_s"])), cid
        assert r["neighbour_cpu_fraction"] == pytest.approx(1 - r["job_cpu_s"] / r["node_busy_cpu_s"], abs=1e-9), cid
    assert r["energy_j"] + r["node_other_active_j"] + r["node_unreserved_idle_j"] == pytest.approx(
        r["node_energy_j"]
    ), cid
    # the job's idle share: its CPUs' share of P0 over the window the split used (the usage window), which
    # the chosen reading's window contains (the meters start before the usage read and stop after it)
    (cpu,) = [
        x for x in r["energy_readings"] if (x["window"], x["scope"], x["component"]) == ("measured", "job", "cpu")
    ]
    assert 0 < r["usage_window_s"] <= cpu["duration_s"], cid
    idle_w = r["job_cpus"] / r["node_cpus"] * r["p0_cpu_w"]
    assert r["energy_cpu_idle_j"] == pytest.approx(idle_w * r["usage_window_s"], rel=1e-9), cid
    assert r["job_wall_s"] > r["wall_s"] and r["job_energy_j"] > r["energy_j"], cid


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Shared working directory with a local run of the grid (data, model, 4 local rows)."""
    wd = tmp_path_factory.mktemp("sites")
    cfg = wd / "grid.yaml"
    cfg.write_text(yaml.safe_dump(C.deep_merge(C.TINY, GRID)))
    proc = C.snakemake(wd, "--cores", "2", configfile=cfg, timeout=900)
    return wd, cfg, proc.stderr


@pytest.fixture(scope="module")
def slurm_run(request):
    up, why = _cluster_state("slurm")
    if not up:
        pytest.skip(why)
    wd, cfg, _ = request.getfixturevalue("workdir")  # only once the cluster is known to be up
    proc = C.snakemake(wd, "--profile", str(REPO / "profiles" / "slurm"), *SLURM_FAST, configfile=cfg, timeout=900)
    return proc.stderr


@pytest.fixture(scope="module")
def condor_run(request):
    up, why = _cluster_state("condor")
    if not up:
        pytest.skip(why)
    wd, cfg, _ = request.getfixturevalue("workdir")
    proc = C.snakemake(
        wd,
        "--profile",
        str(REPO / "profiles" / "htcondor"),
        *CONDOR_FAST,
        configfile=cfg,
        timeout=900,
        env={"CONDOR_CONFIG": _condor_config()},
    )
    return proc.stderr


# ------------------------------------------------------------------ tests
@pytest.mark.slow
@pytest.mark.parallel
def test_local_rows_and_energy_meter_serialises(workdir):
    wd, _, log = workdir
    df = _rows(wd, "local")
    assert df["scheduler"].to_list() == ["local"] * 4
    assert df["job_id"].null_count() == 4 and df["queue_wait_s"].null_count() == 4
    ok = df.filter(df["device"] == "cpu")
    assert ok["status"].to_list() == ["ok", "ok"]
    assert ok["alloc_cpus"].to_list() == [1, 1] and ok["torch_num_threads"].to_list() == [1, 1]
    assert ok["threads_consistent"].to_list() == [True, True]
    for r in ok.iter_rows(named=True):  # a local run: no reservation; the job may use every CPU
        assert (
            r["job_cpus_source"] == "affinity"
            and r["job_cpus"] == r["cpu_affinity"]
            and r["job_mem_source"] in ("pss", "rss")
        )
        assert r["energy_j"] + r["node_other_active_j"] + r["node_unreserved_idle_j"] == pytest.approx(
            r["node_energy_j"]
        )
    # --cores 2 and 1 thread per job would allow 2 at once: energy_meter=1 (profiles/default,
    # scope local) lets only one measuring job run at a time on this machine
    assert max_concurrent(log) == 1, log[-3000:]


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parallel
def test_grid_through_slurm(slurm_run, workdir):
    wd, _, _ = workdir
    df = _rows(wd, "slurm")
    _check_scheduler_rows(df, "slurm", "slurm")
    assert df["partition"].to_list() == ["debug"] * 4
    # the job ids are real Slurm jobs, with the resources the rules asked for
    for r in df.iter_rows(named=True):
        acct = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", r["job_id"], "-o", "JobID,State,AllocCPUS,ReqMem,Timelimit,AllocTRES"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        jid, state, cpus, mem, limit, tres = acct.split("|")
        assert (jid, state, cpus, mem) == (r["job_id"], "COMPLETED", "1", f"{MEM_MB}M"), acct
        assert limit == f"00:{RUNTIME_MIN:02d}:00", acct  # job.runtime_min -> sbatch -t
        assert ("gres/gpu=1" in tres) == (r["device"] == "cuda"), acct
        # queue wait against Slurm's accounting: Start - Submit, as epoch seconds (SLURM_TIME_FORMAT=%s)
        times = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", r["job_id"], "-o", "Submit,Start"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**C.subprocess_env(), "SLURM_TIME_FORMAT": "%s"},
        ).stdout.strip()
        submit, start = (int(x) for x in times.split("|"))
        assert (r["submit_time"].timestamp(), r["job_start_time"].timestamp()) == (submit, start), (r["job_id"], times)
        assert r["queue_wait_s"] == start - submit, (r["job_id"], times)
    # energy_meter (scope local) does not hold back cluster jobs: the two cpu cells ran at once
    assert max_concurrent(slurm_run) >= 2, slurm_run[-3000:]


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parallel
def test_two_cells_share_the_slurm_node(slurm_run, workdir, tmp_path):
    """Two inference cells with 10-s windows submitted together to the one-node Slurm cluster run side by
    side: each row's node energy holds the other's work, the job's share does not, and the columns say so."""
    import polars as pl

    wd, _, _ = workdir
    for d in ("resources", "results/models"):  # prepared data and reference model: only the cells run
        shutil.copytree(wd / d, tmp_path / d)
    cfg = tmp_path / "two.yaml"
    cfg.write_text(
        yaml.safe_dump(
            C.deep_merge(
                C.TINY,
                {
                    "grid": {"phases": ["infer"], "precisions": ["fp32", "bf16"]},
                    "measure": {"min_window_s": 10},
                    "job": {"mem_mb": MEM_MB, "runtime_min": RUNTIME_MIN},
                },
            )
        )
    )
    log = C.snakemake(
        tmp_path, "--profile", str(REPO / "profiles" / "slurm"), *SLURM_FAST, configfile=cfg, timeout=900
    ).stderr
    assert max_concurrent(log) >= 2, log[-3000:]
    files = sorted((tmp_path / "results" / "runs" / "slurm").rglob("r*.parquet"))
    a, b = pl.read_parquet(files).sort("started_at").to_dicts()
    # their measured windows overlapped: each job's life covers most of the other's window
    overlap = (min(a["finished_at"], b["finished_at"]) - max(a["started_at"], b["started_at"])).total_seconds()
    assert overlap > 0.5 * min(a["wall_s"], b["wall_s"]), (
        a["started_at"],
        a["finished_at"],
        b["started_at"],
        b["finished_at"],
    )
    for r in (a, b):
        assert r["scheduler"] == "slurm" and r["status"] == "ok" and r["wall_s"] >= 10, r["cell_id"]
        _check_job_share(r, "slurm")
        assert r["node_shared"] is True and r["neighbour_cpu_fraction"] > 0.2, r["cell_id"]  # at least the other cell
        assert r["energy_j"] < r["node_energy_j"] and r["energy_cpu_j"] < 0.9 * r["node_energy_cpu_j"], r["cell_id"]


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parallel
def test_slurm_allocation_torch_does_not_use_is_flagged(slurm_run, workdir, tmp_path):
    """A real job allocated 2 CPUs (cpus_per_task overriding threads) whose torch ran 1 thread."""
    import polars as pl

    wd, cfg, _ = workdir
    shutil.copytree(wd / "resources", tmp_path / "resources")  # prepared data: only the cell is submitted
    cell = C.cell_file(Path("."), "slurm/baler_ae/train/cpu/fp32/bs256/r0", cfg)  # the site is not part of the hash
    C.snakemake(  # the target first: --configfile and --set-resources take several values
        tmp_path,
        str(cell),
        "--profile",
        str(REPO / "profiles" / "slurm"),
        *SLURM_FAST,
        "--set-resources",
        "measure:cpus_per_task=2",
        "--configfile",
        str(cfg),
        timeout=600,
    )
    r = pl.read_parquet(tmp_path / cell).row(0, named=True)
    assert (r["scheduler"], r["status"], r["alloc_cpus"], r["torch_num_threads"]) == ("slurm", "ok", 2, 1)
    assert r["threads_consistent"] is False
    assert r["threads_mismatch"] == "torch_num_threads=1, alloc_cpus=2, omp_num_threads=1, mkl_num_threads=1"


@pytest.mark.slow
@pytest.mark.htcondor
@pytest.mark.parallel
def test_grid_through_htcondor(condor_run, workdir):
    wd, _, _ = workdir
    df = _rows(wd, "htcondor")
    _check_scheduler_rows(df, "htcondor", "htcondor")
    assert all(re.fullmatch(r"\d+\.0", j) for j in df["job_id"]), df["job_id"].to_list()
    bindir = Path(_condor_config()).parents[1] / "bin"
    attrs = [
        "JobStatus",
        "RequestCpus",
        "RequestMemory",
        "RequestGPUs",
        "CpusProvisioned",
        "MemoryProvisioned",
        "GpusProvisioned",
        "QDate",
        "JobCurrentStartDate",
    ]
    for r in df.iter_rows(named=True):
        out = subprocess.run(
            [str(bindir / "condor_history"), r["job_id"], "-af", *attrs],
            capture_output=True,
            text=True,
            timeout=30,
            env=C.subprocess_env({"CONDOR_CONFIG": _condor_config()}),
        ).stdout.split()
        ad = dict(zip(attrs, out, strict=False))
        gpus = "1" if r["device"] == "cuda" else "0"
        # 4 = completed; mem_mb reached request_memory (the plugin alone would not map it)
        assert [ad["JobStatus"], ad["RequestCpus"], ad["RequestMemory"], ad["RequestGPUs"]] == [
            "4",
            "1",
            str(MEM_MB),
            gpus,
        ], ad
        # the row's allocation is what the slot provisioned
        assert [r["alloc_cpus"], r["alloc_mem_mb"], r["alloc_gpus"]] == [
            int(ad["CpusProvisioned"]),
            int(ad["MemoryProvisioned"]),
            int(ad["GpusProvisioned"]),
        ], (r["job_id"], ad)
        # queue wait against the job's history ad: JobCurrentStartDate - QDate (epoch seconds)
        q, start = int(ad["QDate"]), int(ad["JobCurrentStartDate"])
        assert (r["submit_time"].timestamp(), r["job_start_time"].timestamp()) == (q, start), (r["job_id"], ad)
        assert r["queue_wait_s"] == start - q, (r["job_id"], ad)
    assert max_concurrent(condor_run) >= 2, condor_run[-3000:]


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.htcondor
@pytest.mark.parallel
def test_one_summary_merges_local_slurm_htcondor(slurm_run, condor_run, workdir):
    import polars as pl

    wd, _, _ = workdir
    assert sorted(p.name for p in (wd / "results" / "runs").iterdir()) == ["htcondor", "local", "slurm"]
    summary = pl.read_parquet(wd / "results" / "summary.parquet")
    by = summary.group_by("site", "scheduler").len().sort("site")
    assert by.rows() == [("htcondor", "htcondor", 4), ("local", "local", 4), ("slurm", "slurm", 4)], by
    assert (wd / "results" / "report" / "index.html").is_file()
