"""Commands the docs give a user, run as written (issue 29: "every sentence that tells a user to do
something is a promise"). Dry runs where the real command needs a GPU or a cluster site."""

from __future__ import annotations

import re

import pytest
from conftest import REPO, snakemake

pytestmark = pytest.mark.slow

GPU_VALIDATION = REPO / "config/experiments/gpu_validation.yaml"


def measure_outputs(out: str) -> list[str]:
    return sorted(set(re.findall(r"output: (\S*runs/\S+\.parquet)", out)))


def test_gpu_validation_command_with_a_cluster_profile_plans_the_site_s_cells(tmp_path):
    """docs/gpu-validation.md step 2: `snakemake --profile slurm --configfile
    config/experiments/gpu_validation.yaml`. The grid sets strict_devices itself, so the profile's
    config: {site: slurm} stays: 126 cells under results/runs/slurm/, each asking for its GPU, and no
    start-time problem. The command the page gave before (with --config strict_devices=true) replaced
    the profile's site: its cells went to results/runs/local/ and the dry run now warns that a real run
    stops there."""
    assert "strict_devices: true" in GPU_VALIDATION.read_text()
    doc = (REPO / "docs/gpu-validation.md").read_text()
    cmd = "snakemake --profile slurm --configfile config/experiments/gpu_validation.yaml"
    assert cmd in doc and "--config strict_devices" not in doc
    proc = snakemake(tmp_path, "--profile", "slurm", "--configfile", str(GPU_VALIDATION), "-n", cwd=REPO)
    out = proc.stdout + proc.stderr
    runs = measure_outputs(out)
    assert len(runs) == 126 and all(p.startswith("results/runs/slurm/") and "/cuda/" in p for p in runs)
    requests = dict(re.findall(r"output: (\S*runs/\S+\.parquet).*?resources: ([^\n]*)", out, re.S))
    assert len(requests) == 126 and all("gpu=1" in r for r in requests.values())
    assert "joulegrid (dry run)" not in out
    old = snakemake(tmp_path, "--profile", "slurm", "--configfile", str(GPU_VALIDATION), "--config",
                    "strict_devices=true", "-n", cwd=REPO)  # fmt: skip
    old_out = old.stdout + old.stderr
    assert all(p.startswith("results/runs/local/") for p in measure_outputs(old_out))
    assert "joulegrid (dry run): config key site: site 'local' is a local site" in old_out


def test_gpu_workers_example_with_the_lxplus_profile(tmp_path):
    """docs/sites.md, "GPU workers on lxplus and Blackett": `snakemake --profile lxplus --configfile
    config/experiments/gpu_cluster.yaml` plans its cuda cells under results/runs/lxplus/, each asking
    HTCondor for a GPU (request_gpus) on an el9 worker, with no start-time problem."""
    exp = REPO / "config/experiments/gpu_cluster.yaml"
    doc = (REPO / "docs/sites.md").read_text()
    assert "snakemake --profile lxplus --configfile config/experiments/gpu_cluster.yaml" in doc
    proc = snakemake(tmp_path, "--profile", "lxplus", "--configfile", str(exp), "-n", cwd=REPO)
    out = proc.stdout + proc.stderr
    requests = dict(re.findall(r"output: (\S*runs/\S+\.parquet).*?resources: ([^\n]*)", out, re.S))
    assert len(requests) == 72 and all(p.startswith("results/runs/lxplus/") and "/cuda/" in p for p in requests)
    assert all("request_gpus=1" in r and "classad_WantOS=el9" in r for r in requests.values())
    assert "joulegrid (dry run)" not in out and "72 cuda cells" in doc


def test_a_data_file_travels_with_every_job_without_a_shared_filesystem(tmp_path):
    """docs/sites.md, "Data on EOS without a shared filesystem": the AFS copy named in workloads.<name>.data
    is among every measure job's htcondor_transfer_input_files under profiles/lxplus."""
    import numpy as np
    import yaml

    data = tmp_path / "data" / "jets.npz"
    data.parent.mkdir()
    np.savez(data, x=np.random.default_rng(0).normal(size=(3000, 24)).astype("float32"))
    cfg = tmp_path / "eos.yaml"
    cfg.write_text(yaml.safe_dump({
        "grid": {"workloads": ["baler_ae"], "phases": ["train", "infer"], "precisions": ["fp32"], "batch_sizes": [256],
                 "repeats": 1},
        "workloads": {"baler_ae": {"data": "data/jets.npz", "epochs": 1}},
    }))  # fmt: skip
    proc = snakemake(tmp_path, "--profile", "lxplus", "--configfile", str(cfg), "-n", cwd=REPO)
    out = proc.stdout + proc.stderr
    requests = dict(re.findall(r"output: (\S*runs/\S+\.parquet).*?resources: ([^\n]*)", out, re.S))
    assert len(requests) == 2
    for r in requests.values():
        files = re.search(r"htcondor_transfer_input_files=(.*?), htcondor_transfer_output_files", r).group(1)
        assert "data/jets.npz" in files.split(", "), r
