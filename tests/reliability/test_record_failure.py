"""joulegrid record-failure in-process: exit codes, never overwriting, attempt history, OOM evidence."""

import json

import polars as pl
import pytest

from joulegrid import failures as F
from joulegrid import schema as S
from joulegrid.io import write_table
from joulegrid.spec import CellSpec

CELL = {
    "site": "local",
    "workload": "baler_ae",
    "phase": "train",
    "device": "cpu",
    "precision": "fp32",
    "variant": "baseline",
    "batch_size": 64,
    "repeat": 0,
}
SPEC = CellSpec.from_dict(
    {"cell": CELL, "settings": {"workload": {}, "seed": 7, "site_facts": {"pue": 1.2}}, "config_hash": "abc"}
)


def out_path(tmp_path):
    return tmp_path / "results/runs/local/baler_ae/train/cpu/fp32/bs64/r0-abc.parquet"


def test_describe_exit_names_signals():
    assert F.describe_exit(137)[0] == "SIGKILL" and "out-of-memory" in F.describe_exit(137)[1]
    assert F.describe_exit(139)[0] == "SIGSEGV"
    assert F.describe_exit(1) == ("exit1", "the job process exited with status 1 without writing its result row")


@pytest.mark.parametrize("code", [2, 3])
def test_refusals_pass_through_without_a_row(tmp_path, code):
    assert F.record_failure(SPEC, str(out_path(tmp_path)), code, attempt=1, retries=0) == code
    assert not out_path(tmp_path).exists() and not (tmp_path / "results/attempts").exists()


def test_retries_left_fail_the_job_last_attempt_writes_the_row(tmp_path):
    out = out_path(tmp_path)
    log = tmp_path / "run.log"
    log.write_text("Fatal Python error: Segmentation fault\n")
    assert F.record_failure(SPEC, str(out), 139, attempt=1, retries=1, log=str(log)) == 139
    assert not out.exists()
    assert F.record_failure(SPEC, str(out), 137, attempt=2, retries=1) == 0
    r = pl.read_parquet(out).row(0, named=True)
    assert (r["status"], r["attempt"], r["error_type"], r["seed"], r["pue"]) == ("failed", 2, "SIGKILL", 7, 1.2)
    assert "attempt 1: SIGSEGV" in r["error_message"] and r["cell_id"] == "local/baler_ae/train/cpu/fp32/bs64/r0"
    hist = [
        json.loads(x)
        for x in (tmp_path / "results/attempts/local/baler_ae/train/cpu/fp32/bs64/r0-abc.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [h["exit_code"] for h in hist] == [139, 137]
    assert "Segmentation fault" in hist[0]["log_tail"]


def test_an_existing_row_is_never_overwritten(tmp_path):
    out = out_path(tmp_path)
    write_table(S.to_table([{"run_id": "first", "status": "ok"}]), out)
    assert F.record_failure(SPEC, str(out), 137, attempt=1, retries=0) == 0
    assert pl.read_parquet(out)["run_id"].to_list() == ["first"]


def test_cgroup_oom_kill_counter_makes_it_oom(tmp_path, monkeypatch):
    proc, cg = tmp_path / "proc", tmp_path / "cg"
    proc.mkdir()
    (proc / "cgroup").write_text("0::/job_42\n")
    (cg / "job_42").mkdir(parents=True)
    (cg / "job_42/memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert F.cgroup_oom_kills(str(proc), str(cg)) == 1
    assert F.cgroup_oom_kills(str(tmp_path / "nope"), str(cg)) is None
    monkeypatch.setattr(F, "cgroup_oom_kills", lambda: 1)
    assert F.record_failure(SPEC, str(out_path(tmp_path)), 137) == 0
    r = pl.read_parquet(out_path(tmp_path)).row(0, named=True)
    assert r["status"] == "oom" and "OOM kill" in r["error_message"]


def test_truncated_history_line_is_skipped(tmp_path):
    p = tmp_path / "h.jsonl"
    F.append_attempt(p, {"attempt": 1, "error_type": "SIGKILL", "error": "x"})
    with open(p, "a") as f:
        f.write('{"attempt": 2, "err')
    assert [e["attempt"] for e in F.read_attempts(p)] == [1]
