"""Fault injection through the real Snakemake: every failing cell still yields its row (also when
the job process is killed), retries happen, and no attempt's error is lost."""

import json
import os

import polars as pl
import pytest
from conftest import REPO

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), HERE])}


def faulty(fault: str, **params) -> dict:
    return {"class": "jg_faults:Faulty", "rows": 256, "epochs": 1, "params": {"fault": fault, **params}}


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory):
    import yaml
    from conftest import TINY, deep_merge, snakemake

    work = tmp_path_factory.mktemp("faults")
    marker = work / "kill_once.marker"
    wls = {
        "fine": faulty("none"),
        "crash": faulty("raise"),
        "nanloss": faulty("nan"),
        "oomed": faulty("memory"),
        "killed": faulty("kill"),
        "flaky": faulty("kill_once", marker=str(marker)),
        "aborted": faulty("abort"),
    }
    cfg = deep_merge(
        TINY,
        {
            "grid": {"workloads": list(wls), "phases": ["train"], "batch_sizes": [32]},
            "workloads": wls,
            "measure": {"meters": ["estimate"]},
        },
    )
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    # one retry: 'flaky' succeeds on attempt 2, 'killed'/'aborted' die twice and keep a row of attempt 2
    proc = snakemake(work, "--cores", "2", "--retries", "1", configfile=work / "config.yaml", env=ENV)
    return work, proc


def _row(work, wl):
    (f,) = (work / f"results/runs/local/{wl}/train/cpu/fp32/bs32").glob("r0-*.parquet")  # one configuration
    df = pl.read_parquet(f)
    assert df.height == 1
    return df.row(0, named=True)


@pytest.mark.slow
@pytest.mark.parallel
def test_every_failure_is_a_row_and_the_grid_goes_on(fault_run):
    work, proc = fault_run
    assert proc.returncode == 0
    expect = {
        "fine": "ok",
        "crash": "failed",
        "nanloss": "nan",
        "oomed": "oom",
        "killed": "failed",
        "flaky": "ok",
        "aborted": "failed",
    }
    got = {wl: _row(work, wl) for wl in expect}
    assert {wl: r["status"] for wl, r in got.items()} == expect
    assert got["crash"]["error_type"] == "RuntimeError" and "injected failure" in got["crash"]["error_message"]
    assert got["nanloss"]["error_type"] == "NonFiniteLoss" and "non-finite" in got["nanloss"]["error_message"]
    assert got["oomed"]["error_type"] == "MemoryError"
    # what was measured before the failure is kept: host, dataset, FLOPs
    assert got["crash"]["hostname"] and got["crash"]["n_train"] == 192 and got["crash"]["flops_per_sample_train"] > 0
    # Python-level failures are deterministic: recorded on attempt 1, not retried
    assert got["crash"]["attempt"] == 1


@pytest.mark.slow
@pytest.mark.parallel
def test_killed_job_leaves_a_row_with_signal_and_earlier_attempts(fault_run):
    work, _ = fault_run
    for wl, sig in (("killed", "SIGKILL"), ("aborted", "SIGABRT")):
        r = _row(work, wl)
        assert r["attempt"] == 2, "retried once (--retries 1), the last attempt keeps the row"
        assert r["error_type"] == sig and f"killed by {sig}" in r["error_message"]
        assert f"attempt 1: {sig}" in r["error_message"], "attempt 1's error is kept in the final row"
        assert r["cell_id"] == f"local/{wl}/train/cpu/fp32/bs32/r0" and r["run_id"]
        hist = [
            json.loads(x)
            for x in next((work / f"results/attempts/local/{wl}/train/cpu/fp32/bs32").glob("r0-*.jsonl"))
            .read_text()
            .splitlines()
        ]
        assert [(h["attempt"], h["error_type"], h["retried"]) for h in hist] == [(1, sig, True), (2, sig, False)]


@pytest.mark.slow
@pytest.mark.parallel
def test_transient_kill_is_retried_and_the_first_attempt_is_kept(fault_run):
    work, _ = fault_run
    r = _row(work, "flaky")
    assert r["status"] == "ok" and r["attempt"] == 2 and r["quality"] is not None
    hist = [
        json.loads(x)
        for x in next((work / "results/attempts/local/flaky/train/cpu/fp32/bs32").glob("r0-*.jsonl"))
        .read_text()
        .splitlines()
    ]
    assert len(hist) == 1 and hist[0]["attempt"] == 1 and hist[0]["error_type"] == "SIGKILL" and hist[0]["retried"]


@pytest.mark.slow
@pytest.mark.parallel
def test_report_counts_and_lists_failures(fault_run):
    work, _ = fault_run
    summary = pl.read_parquet(work / "results/summary.parquet")
    assert summary.height == 7 and summary["cell_id"].n_unique() == 7
    html = (work / "results/report/index.html").read_text()
    assert "Failed and skipped runs (5)" in html
    for wl in ("crash", "nanloss", "oomed", "killed", "aborted"):
        assert f"local/{wl}/train" in html
