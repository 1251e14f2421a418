"""A finished measurement is never overwritten: Snakemake's -R / --forcerun fail on it, and
`joulegrid remeasure` moves it to results/archive/ (nothing deleted) before a new measurement."""

import shutil
import subprocess
import sys

import polars as pl
import pytest
from conftest import TINY, cell_file, deep_merge, shared_run, snakemake, subprocess_env

CELL = "local/baler_ae/train/cpu/fp32/bs256/r0"
TRAIN = deep_merge(TINY, {"grid": {"phases": ["train"]}, "measure": {"meters": ["estimate"]}})


@pytest.fixture
def work(tmp_path_factory, tmp_path):
    """A copy of one finished run of TRAIN (results, Snakemake's metadata; times kept), made once per session."""
    w = tmp_path / "w"
    shutil.copytree(shared_run(tmp_path_factory, "train-estimate", TRAIN), w, symlinks=True)
    return w


@pytest.mark.slow
@pytest.mark.parallel
def test_forcerun_refused_remeasure_archives_then_measures_anew(work):
    cfgfile = work / "config.yaml"
    f = cell_file(work, CELL, cfgfile)
    first = pl.read_parquet(f)["run_id"][0]
    mtime = f.stat().st_mtime_ns

    for how in (["--forcerun", "measure"], ["-R", str(f.relative_to(work))]):
        proc = snakemake(work, "--cores", "2", *how, configfile=cfgfile, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "refusing to overwrite" in out and "joulegrid remeasure" in out, out[-3000:]
        assert f.stat().st_mtime_ns == mtime and pl.read_parquet(f)["run_id"][0] == first

    jg = [sys.executable, "-m", "joulegrid", "remeasure", "--results", str(work / "results")]
    nothing = subprocess.run(jg + ["local/nope/*"], capture_output=True, text=True, env=subprocess_env())
    assert nothing.returncode == 2 and "Fix:" in nothing.stderr
    dry = subprocess.run(jg + ["-n", "local/*/train/*"], capture_output=True, text=True, env=subprocess_env())
    assert dry.returncode == 0 and CELL in dry.stderr and f.exists()
    proc = subprocess.run(jg + ["local/*/train/*"], capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    archived = list((work / "results/archive").glob(f"*/runs/{CELL}-*.parquet"))
    assert len(archived) == 1 and pl.read_parquet(archived[0])["run_id"][0] == first and not f.exists()

    snakemake(work, "--cores", "2", configfile=cfgfile)
    second = pl.read_parquet(f)["run_id"][0]
    assert second != first and pl.read_parquet(archived[0])["run_id"][0] == first
    summary = pl.read_parquet(work / "results/summary.parquet")
    assert summary["run_id"].to_list() == [second], "the summary holds the new measurement once"


def test_guard_rerun_refuses_forced_and_archives_unrecorded(tmp_path):
    from joulegrid.archive import ArchiveError, guard_rerun

    res = tmp_path / "results"
    f = res / "runs" / f"{CELL}.parquet"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"row")
    with pytest.raises(ArchiveError, match="(?s)refusing to overwrite 1 finished.*joulegrid remeasure"):
        guard_rerun([([str(f)], True)], str(res))
    assert f.exists()
    moved = guard_rerun([([str(f)], False), ([str(res / "runs/missing.parquet")], False)], str(res), stamp="T")
    assert moved == [res / "archive/T/runs" / f"{CELL}.parquet"] and moved[0].read_bytes() == b"row" and not f.exists()


def test_remeasure_pattern_with_a_config_hash_moves_that_configuration_only(tmp_path):
    """A cell id pattern moves every configuration's file of the cell; '<cell id>-<hash>' one configuration's."""
    import synth

    from joulegrid.archive import remeasure

    cell = synth.grid_cells(phases=("train",), precisions=("fp32",), batch_sizes=(256,))[0]
    a, b, c = "a" * 16, "b" * 16, "c" * 16
    synth.write_runs(tmp_path, [synth.row(cell, config_hash=h) for h in (a, b, c)])
    moved, _ = remeasure(tmp_path, f"{CELL}-{a}", stamp="one")
    assert [p.name for p in moved] == [f"r0-{a}.parquet"]
    # the hotspots side files go with their run: the table and its traces (a quadruple's: one per run)
    side = tmp_path / "hotspots" / CELL.rsplit("/", 1)[0]
    side.mkdir(parents=True)
    names = [f"r0-{b}.parquet", f"r0-{b}.trace.json", f"r0-{b}.1-base.trace.json", f"r0-{c}.2-head.trace.json"]
    for n in [*names, f"r0-{a}x.trace.json"]:  # the last: another file id, stays
        (side / n).write_text(n)
    moved, _ = remeasure(tmp_path, CELL, stamp="all")
    assert sorted(p.name for p in moved) == [f"r0-{b}.parquet", f"r0-{c}.parquet"]
    assert not list((tmp_path / "runs").rglob("*.parquet"))
    kept = tmp_path / "archive" / "all" / "hotspots" / CELL.rsplit("/", 1)[0]
    assert sorted(p.name for p in kept.iterdir()) == sorted(names) and all((kept / n).read_text() == n for n in names)
    assert [p.name for p in side.iterdir()] == [f"r0-{a}x.trace.json"]


@pytest.mark.slow
@pytest.mark.parallel
def test_a_job_killed_after_writing_its_row_is_archived_not_refused(work):
    """Snakemake killed after a cell wrote its row but before it recorded the job: the next run finds the
    output marked incomplete (Snakemake's own marker under .snakemake/incomplete/) and, with
    profiles/default's rerun-incomplete, calls it "Forced execution". That is not the user's force: the
    file is archived (kept) and the cell measured again, not refused with the -R / --forcerun message."""
    from base64 import urlsafe_b64encode

    cfgfile = work / "config.yaml"
    f = cell_file(work, CELL, cfgfile)
    first = pl.read_parquet(f)["run_id"][0]
    marker = work / ".snakemake" / "incomplete" / urlsafe_b64encode(str(f.relative_to(work)).encode()).decode()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text('{"external_jobid": null}')
    dry = snakemake(work, "-n", "--cores", "2", configfile=cfgfile)
    assert "Forced execution" in dry.stdout + dry.stderr  # what Snakemake says of it
    proc = snakemake(work, "--cores", "2", configfile=cfgfile)
    out = proc.stdout + proc.stderr
    assert "refusing to overwrite" not in out and "killed after writing it" in out, out[-3000:]
    (archived,) = (work / "results/archive").glob(f"*-incomplete/runs/{CELL}-*.parquet")
    assert pl.read_parquet(archived)["run_id"][0] == first
    assert pl.read_parquet(f)["run_id"][0] != first
