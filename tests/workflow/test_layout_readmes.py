"""results/README.md and resources/README.md: in every clone (tracked), and deleting what they call
safe to delete re-measures no finished cell, and the next `snakemake` rebuilds the summary and report."""

import shutil
import subprocess

import pytest
from conftest import REPO


def test_readmes_are_tracked():
    """A fresh clone has both folders with their README (.gitignore keeps everything else out)."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "results", "resources"], capture_output=True, text=True, check=True
    )
    assert set(tracked.stdout.split()) == {"results/README.md", "resources/README.md"}
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "results/runs/x.parquet", "resources/datasets/x.npz"],
                             capture_output=True, text=True)  # fmt: skip
    assert ignored.stdout.split() == [
        "results/runs/x.parquet",
        "resources/datasets/x.npz",
    ]  # what a run writes there stays out of git


@pytest.mark.slow
@pytest.mark.parallel
def test_what_the_readmes_call_safe_to_delete_is_rebuilt(tmp_path, write_config, run_snakemake):
    cfg = write_config()
    run_snakemake(tmp_path, "--cores", "1", configfile=cfg)
    res = tmp_path / "results"
    runs = sorted((res / "runs").rglob("*.parquet"))
    assert len(runs) == 2
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs}
    # results/README.md: summary, report, models, logs, .stamps (not .grid); resources/README.md: everything
    for name in ("summary.parquet", "summary.other-configs.parquet", "summary.problems.json"):
        (res / name).unlink()
    for d in (res / "report", res / "models", res / "logs", res / ".stamps", tmp_path / "resources"):
        shutil.rmtree(d)
    run_snakemake(tmp_path, "--cores", "1", configfile=cfg)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((res / "runs").rglob("*.parquet"))} == before
    assert (res / "summary.parquet").is_file() and (res / "report" / "index.html").is_file()
