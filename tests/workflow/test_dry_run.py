"""Dry runs: quick planning, no torch import, bad configs fail before any job."""

import itertools
import re
import subprocess
import sys

import pytest
import yaml
from conftest import SNAKEFILE, subprocess_env


def job_stats(out: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run: {rule: count} (and "total")."""
    block = out[out.index("Job stats:") :]
    stats = {}
    for line in block.splitlines()[3:]:
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not m:
            break
        stats[m.group(1)] = int(m.group(2))
    return stats


def test_default_grid_dry_run_lists_jobs(tmp_path, run_snakemake):
    """The default grid's jobs, counted from config/config.yaml's axes by hand: every combination of
    workload x phase x device x precision x variant x batch size x repeat, less int8 for training
    (int8 is inference only, the rule config.yaml states next to grid.precisions)."""
    cfg = yaml.safe_load((SNAKEFILE.parent / "config" / "config.yaml").read_text())
    g = cfg["grid"]
    combos = [
        (w, ph, d, p, v, b, r)
        for w, ph, d, p, v, b, r in itertools.product(
            g["workloads"],
            g["phases"],
            g["devices"],
            g["precisions"],
            g["variants"],
            g["batch_sizes"],
            range(g["repeats"]),
        )
        if not (p == "int8" and ph != "infer")
    ]
    proc = run_snakemake(tmp_path, "-n", "--cores", "2")
    out = proc.stdout + proc.stderr
    assert "This was a dry-run" in out
    stats = job_stats(out)
    # 2 workloads x (train: fp32, bf16 + infer: fp32, bf16, int8) x 2 batch sizes
    assert stats["measure"] == len(combos) == 20, stats
    # one reference model per workload with inference cells; one inputs file per workload and phase
    assert stats["train_reference"] == len({c[0] for c in combos if c[1] == "infer"})
    assert stats["cell_inputs"] == len({(c[0], c[1]) for c in combos})
    assert stats["aggregate"] == stats["report"] == stats["all"] == 1
    assert stats["total"] == sum(n for rule, n in stats.items() if rule != "total")


def test_dry_run_does_not_import_torch(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "snakemake",
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(tmp_path),
            "-n",
            "--cores",
            "1",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
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
