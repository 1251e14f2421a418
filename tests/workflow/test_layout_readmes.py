"""results/README.md and resources/README.md: in every clone (tracked), and deleting what they call
safe to delete re-measures no finished cell, and the next `snakemake` rebuilds the summary and report."""

import shutil
import subprocess

import pytest
from conftest import REPO, TINY, shared_run


def test_readmes_are_tracked():
    """A fresh clone has both folders with their README (.gitignore keeps everything else out)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "results", "resources"], capture_output=True, text=True, check=True
    )
    assert set(tracked.stdout.split()) == {"results/README.md", "resources/README.md"}
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "results/runs/x.parquet", "resources/datasets/x.npz"],
        capture_output=True,
        text=True,
    )
    # what a run writes there stays out of git
    assert ignored.stdout.split() == [
        "results/runs/x.parquet",
        "resources/datasets/x.npz",
    ]


@pytest.mark.slow
@pytest.mark.parallel
def test_what_the_readmes_call_safe_to_delete_is_rebuilt(tmp_path_factory, tmp_path, run_snakemake):
    # a finished run of the tiny grid (conftest.shared_run: also tests/workflow/test_local_run.py's), copied
    work = tmp_path / "w"
    shutil.copytree(shared_run(tmp_path_factory, "tiny", TINY), work, symlinks=True)
    cfg = work / "config.yaml"
    res = work / "results"
    runs = sorted((res / "runs").rglob("*.parquet"))
    assert len(runs) == 2
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs}
    # results/README.md: summary, report, models, logs, .stamps (not .grid); resources/README.md: everything
    for name in ("summary.parquet", "summary.other-configs.parquet", "summary.problems.json"):
        (res / name).unlink()
    for d in (res / "report", res / "models", res / "logs", res / ".stamps", work / "resources"):
        shutil.rmtree(d)
    run_snakemake(work, "--cores", "1", configfile=cfg)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((res / "runs").rglob("*.parquet"))} == before
    assert (res / "summary.parquet").is_file() and (res / "report" / "index.html").is_file()
