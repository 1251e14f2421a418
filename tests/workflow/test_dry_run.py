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
    # 2 workloads x (train: fp32, bf16 + infer: fp32, bf16, int8) x 2 batch sizes x 3 blocked repeats
    assert stats["measure"] == len(combos) == 60, stats
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


def test_dry_run_makes_the_start_checks_as_warnings(tmp_path, write_config, run_snakemake):
    """Issue 29: `snakemake -n` is how a new site is checked (docs/sites.md), so a dry run makes the checks a
    real run makes when it starts (site vs executor, measure.threads vs --cores, the -F guard), as warnings
    naming the fix, and exits 0."""
    import synth

    from joulegrid import config as C
    from joulegrid import grid as G
    from joulegrid import schema as S
    from joulegrid.io import write_table

    cfg = write_config({"measure": {"threads": 2}})
    proc = run_snakemake(tmp_path, "-n", "--executor", "slurm", "--jobs", "1", "--cores", "1", configfile=cfg)
    out = proc.stdout + proc.stderr
    assert "joulegrid (dry run): config key site: site 'local' is a local site" in out and "slurm executor" in out
    assert "joulegrid (dry run): config key measure.threads: 2 threads per cell, but this run allows only 1" in out
    assert out.count("A real run stops here.") == 2
    # the real run refuses both (on_start), before any job
    real = run_snakemake(tmp_path, "--executor", "slurm", "--jobs", "1", "--cores", "1", configfile=cfg, check=False)
    assert real.returncode != 0 and "is a local site (config/sites.yaml) but this run uses the slurm executor" in (
        real.stdout + real.stderr
    )
    # -F over a finished measurement: the real run refuses to overwrite it; the dry run says so
    config, sites = C.load([cfg], [f"results={tmp_path / 'results'}"], base_dir=tmp_path)
    from joulegrid import spec as SP

    cell = G.expand(config, SP.SpecBuilder(config, sites).hashes()).cells[0]
    write_table(S.to_table([synth.row(cell, config_hash=cell.config_hash)]), cell.path(str(tmp_path / "results")))
    forced = run_snakemake(tmp_path, "-n", "-F", "--cores", "2", configfile=cfg)
    out = forced.stdout + forced.stderr
    assert "joulegrid (dry run): -F / -R / -f forces 1 finished measurement(s)" in out and "joulegrid remeasure" in out
    plain = run_snakemake(tmp_path, "-n", "--cores", "2", configfile=cfg)
    assert "joulegrid (dry run)" not in plain.stdout + plain.stderr
