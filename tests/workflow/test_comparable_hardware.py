"""Comparable hardware (issue 29; docs/sites.md, "Comparable hardware"): job.constraint routes the
measure jobs to one node type (Slurm --constraint, HTCondor requirements), job.cpu_model makes a job on
another CPU model a skipped row naming both, so that precisions and repeats compare on one CPU model
(the rows' cpu_model says which)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import polars as pl
import pytest
import yaml
from conftest import REPO, TINY, cell_file, deep_merge, snakemake

from joulegrid import executors as E
from joulegrid import probes
from joulegrid.cell_settings import CellSettings

TRAIN = deep_merge(TINY, {"grid": {"phases": ["train"]}, "measure": {"meters": ["estimate"]}})
CELL = "local/baler_ae/train/cpu/fp32/bs256/r0"


def test_constraint_becomes_the_scheduler_s_resource():
    def ev(res):
        wc = SimpleNamespace(device="cpu")
        return {k: (v(wc, 1) if callable(v) and k in ("mem_mb", "runtime", "request_memory") else v)
                for k, v in res.items() if k in ("constraint", "requirements")}  # fmt: skip

    assert ev(E.job_resources("s", {"scheduler": "slurm"}, 4000, 60, constraint="epyc7302")) == {
        "constraint": "epyc7302"
    }
    expr = "CPUModelNumber == 49 && CpuFamily == 23"
    assert ev(E.job_resources("c", {"scheduler": "htcondor"}, 4000, 60, constraint=expr)) == {"requirements": expr}
    assert ev(E.job_resources("s", {"scheduler": "slurm"}, 4000, 60)) == {}
    assert E.job_resources("l", {"scheduler": "local"}, 4000, 60, constraint="x") == {}  # not used locally


def test_cpu_model_pin_in_the_settings():
    st = CellSettings.from_dict({"workload": {}, "cpu_model": "AMD EPYC 7302 16-Core Processor"})
    assert st.to_dict()["cpu_model"] == "AMD EPYC 7302 16-Core Processor"
    assert st.cpu_model_problem("AMD EPYC 7302 16-Core Processor", "n1") is None
    why = st.cpu_model_problem("Intel(R) Xeon(R) Gold 6326 CPU @ 2.90GHz", "n2")
    assert "host n2 has CPU model 'Intel(R) Xeon(R) Gold 6326 CPU @ 2.90GHz'" in why and "job.constraint" in why
    assert "cpu_model" not in CellSettings.from_dict({"workload": {}}).to_dict()  # unpinned: the snapshot as before


@pytest.mark.slow
@pytest.mark.parallel  # statuses, skip reasons and the cpu_model column: true beside other work
def test_a_host_of_another_cpu_model_records_a_skipped_row_and_the_pinned_one_measures(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(TRAIN, {"job": {"cpu_model": "Not This CPU 9000"}})))
    snakemake(tmp_path, "--cores", "2", configfile=cfg)
    r = pl.read_parquet(cell_file(tmp_path, CELL, cfg)).row(0, named=True)
    assert r["status"] == "skipped" and "job.cpu_model pins 'Not This CPU 9000'" in r["skip_reason"]
    assert f"has CPU model {r['cpu_model']!r}" in r["skip_reason"]

    here = probes.cpu_model()
    work = tmp_path / "pinned"
    work.mkdir()
    cfg2 = work / "c.yaml"
    cfg2.write_text(yaml.safe_dump(deep_merge(TRAIN, {"job": {"cpu_model": here}})))
    snakemake(work, "--cores", "2", configfile=cfg2)
    r = pl.read_parquet(cell_file(work, CELL, cfg2)).row(0, named=True)
    assert r["status"] == "ok" and r["cpu_model"] == here


@pytest.mark.slow
@pytest.mark.parametrize(("profile", "resource"), [("slurm", "constraint"), ("htcondor", "requirements")])
def test_cluster_profile_dry_run_asks_for_the_node_type(tmp_path, profile, resource):
    """`snakemake --profile <site> --configfile hw.yaml -n` with job.constraint set in the config file:
    every measure job carries it (the dry run prints each job's resources)."""
    value = "epyc7302" if profile == "slurm" else "CpuFamily == 23"
    cfg = tmp_path / "hw.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(TINY, {"job": {"constraint": value}})))
    proc = snakemake(tmp_path, "--profile", profile, "--configfile", str(cfg), "-n", cwd=REPO)
    out = proc.stdout + proc.stderr
    res = dict(re.findall(r"output: (\S*runs/\S+\.parquet).*?resources: ([^\n]*)", out, re.S))
    assert len(res) == 2 and all(f"{resource}={value}" in r for r in res.values()), out[-3000:]
