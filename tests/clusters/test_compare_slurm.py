"""A code-version comparison through the real Slurm cluster (docs/compare.md, "Pairing": on Slurm a quadruple is
one job): two quadruples of one cell of a bring-your-own workload in a temporary git repository, base on main
and head on a branch, submitted with the slurm profile. Checks files, statuses and identities only (the parallel
phase): both versions by commit, each quadruple one job on one node, the warm-up then ABBA (quadruple 0) and
BAAB (quadruple 1)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import conftest as C  # tests/conftest.py: TINY, deep_merge, snakemake
from test_schedulers import MEM_MB, RUNTIME_MIN, SLURM_FAST, _cluster_state
from versions_repo import WORKLOAD, commit_version, git, make_repo

REPO = Path(__file__).resolve().parents[2]
# the order of a quadruple's runs, slot 0 the discarded warm-up (docs/compare.md, "Pairing")
ORDER = {0: ["base", "base", "head", "head", "base"], 1: ["head", "head", "base", "base", "head"]}


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parallel
def test_quadruples_run_as_one_slurm_job_each(tmp_path):
    import polars as pl

    up, why = _cluster_state("slurm")
    if not up:
        pytest.skip(why)
    _, repo = make_repo(tmp_path)
    head = commit_version(repo, "feature", WORKLOAD.replace("# how many", "# the number of"), "C: a comment")
    base = git(repo, "rev-parse", "main")
    cfg = tmp_path / "versions.yaml"
    cfg.write_text(
        yaml.safe_dump(
            C.deep_merge(
                C.TINY,
                {
                    "grid": {"workloads": ["mine"], "phases": ["train"], "repeats": 2},
                    "workloads": {"mine": {"class": "mypkg.wl:Tiny", "rows": 1024}},
                    "job": {"mem_mb": MEM_MB, "runtime_min": RUNTIME_MIN},
                    "versions": {"base": "main", "head": "feature", "repo": str(repo)},
                },
            )
        )
    )
    C.snakemake(
        repo,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        *SLURM_FAST,
        "aggregate",  # the target last: after conftest's --configfile (nargs +) it would be read as a config file
        configfile=cfg,
        timeout=900,
        env={"PYTHONPATH": ""},  # the jobs import mypkg from each version's checkout, joulegrid from its install
    )
    runs = repo / "results" / "runs" / "slurm"
    files = sorted(p for p in runs.rglob("r*.parquet") if not p.name.endswith(".warmup.parquet"))
    assert [p.name[:2] for p in files] == ["r0", "r1"], files
    jobs = set()
    for f in files:
        q = int(f.name[1])
        warm = pl.read_parquet(f.with_name(f.name.removesuffix(".parquet") + ".warmup.parquet"))
        rows = pl.concat([warm, pl.read_parquet(f)], how="diagonal_relaxed").sort("code_slot")
        assert rows["code_slot"].to_list() == [0, 1, 2, 3, 4], rows.select("code_slot", "excluded")
        assert rows["code_version"].to_list() == ORDER[q], (f, rows["code_version"].to_list())
        assert rows["status"].to_list() == ["ok"] * 5, rows.select("status", "error_message").to_dicts()
        assert rows["scheduler"].to_list() == ["slurm"] * 5 and rows["site"].to_list() == ["slurm"] * 5
        # one job, one node for the warm-up and the four runs
        assert rows["job_id"].null_count() == 0 and rows["job_id"].n_unique() == 1, rows["job_id"].to_list()
        assert rows["node_name"].to_list() == [socket.gethostname()] * 5
        commits = dict(rows.group_by("code_version").agg(pl.col("code_commit").unique()).iter_rows())
        assert {k: sorted(v) for k, v in commits.items()} == {"base": [base], "head": [head]}
        assert rows["code_dirty"].to_list() == [False] * 5
        jobs.add(rows["job_id"][0])
        acct = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", rows["job_id"][0], "-o", "JobID,State"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        assert acct == f"{rows['job_id'][0]}|COMPLETED", acct
    assert len(jobs) == 2  # a job per quadruple
    # the summary holds the eight measured runs of the two quadruples, not the warm-ups
    summary = pl.read_parquet(repo / "results" / "summary.parquet").filter(pl.col("code_version").is_not_null())
    assert sorted(summary["code_slot"].to_list()) == [1, 1, 2, 2, 3, 3, 4, 4]
