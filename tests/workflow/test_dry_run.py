"""Dry runs: quick planning, no torch import, bad configs fail before any job."""

import subprocess
import sys

import pytest

from conftest import SNAKEFILE, subprocess_env


def test_default_grid_dry_run_lists_jobs(tmp_path, run_snakemake):
    proc = run_snakemake(tmp_path, "-n", "--cores", "2")
    out = proc.stdout + proc.stderr
    assert "measure" in out and "10" in out and "This was a dry-run" in out


def test_dry_run_does_not_import_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(tmp_path), "-n", "--cores", "1"],
        capture_output=True, text=True, env=subprocess_env(), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in imported
    assert "torch" not in imported and "codecarbon" not in imported


@pytest.mark.parametrize(
    "overrides,words",
    [
        ({"grid": {"precisions": ["fp8"]}}, ["grid.precisions[0]", "fp8"]),
        ({"grid": {"batch_sizes": [-1]}}, ["grid.batch_sizes[0]", "too small"]),
        ({"grid": {"workloads": ["nope"]}}, ["grid.workloads[0]", "unknown workload"]),
        ({"grid": {"devices": []}}, ["grid.devices", "empty"]),
        ({"colour": 1}, ["unknown key", "colour"]),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, write_config, run_snakemake, overrides, words):
    proc = run_snakemake(tmp_path, "--cores", "1", configfile=write_config(overrides), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for w in words:
        assert w in out, out[-2000:]
    assert not (tmp_path / "results").exists(), "no job may run on a bad config"
