"""An interrupted grid (kill -9 of Snakemake and its jobs mid-run) resumes: finished cells are not
rerun, half-written files are never taken as results, the summary has every cell once."""

import os
import signal
import subprocess
import time

import polars as pl
import pytest
import yaml
from conftest import BIN, SNAKEFILE, TINY, deep_merge, snakemake, subprocess_env

from joulegrid import config as C
from joulegrid import grid as G


@pytest.mark.slow
@pytest.mark.parallel
def test_kill_9_mid_run_then_rerun_resumes(tmp_path):
    cfg = deep_merge(TINY, {"grid": {"batch_sizes": [128, 256]}, "measure": {"meters": ["estimate"]}})
    cfgfile = tmp_path / "config.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg))
    runs = tmp_path / "results" / "runs"
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(cfgfile),
        "--cores",
        "2",
    ]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600

        # wait until Snakemake has recorded a measurement as finished (it write-protects the protected()
        # output when it handles the finished job; a file merely written by run-cell is not enough),
        # then kill it while the next job runs
        def recorded():
            return [p for p in runs.rglob("r*.parquet") if not p.stat().st_mode & 0o222] if runs.is_dir() else []

        while not recorded():
            assert proc.poll() is None, "snakemake ended before it could be interrupted:\n" + log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started, like a lost node
        proc.wait()
    # finished = recorded by Snakemake (write-protected); a row written in the instant before the kill
    # whose job Snakemake had not yet recorded is measured again (docs/reliability.md)
    done = {p: p.stat().st_mtime_ns for p in runs.rglob("r*.parquet") if not p.stat().st_mode & 0o222}
    unfinished = [p.relative_to(runs) for p in runs.rglob("r*.parquet") if p.stat().st_mode & 0o222]
    expected = {c.id for c in G.expand(C.prepare(yaml.safe_load(cfgfile.read_text()), C.REPO_ROOT)[0]).cells}
    assert 0 < len(done) < len(expected), "the kill must hit mid-grid"
    # a half-written result as a killed writer leaves it (joulegrid.io temp name) is never taken as a result
    half = next(iter(done)).parent / ".r9.parquet.abc.parquet.tmp"
    half.write_bytes(b"PAR1 half written")

    # A kill -9 leaves Snakemake's lock: the rerun says so, `--unlock` (documented) clears it.
    locked = snakemake(tmp_path, "--cores", "2", configfile=cfgfile, check=False)
    if locked.returncode != 0:
        assert "unlock" in (locked.stdout + locked.stderr).lower()
        snakemake(tmp_path, "--unlock", configfile=cfgfile)
    snakemake(tmp_path, "--cores", "2", configfile=cfgfile)

    for p, mtime in done.items():
        assert p.stat().st_mtime_ns == mtime, f"finished cell {p} was rerun"
    for rel in unfinished:  # written, but not recorded by Snakemake: archived, never lost
        assert list((tmp_path / "results" / "archive").glob(f"*/runs/{rel}")), rel
    summary = pl.read_parquet(tmp_path / "results" / "summary.parquet")
    assert sorted(summary["cell_id"]) == sorted(expected), "same cells as an uninterrupted run, none twice"
    assert set(summary["status"]) == {"ok"}
    assert summary["run_id"].n_unique() == summary.height
    problems = (tmp_path / "results" / "summary.problems.json").read_text()
    assert problems.strip() == "[]", problems
