"""A grid asking for cuda on a host without it: skipped rows with the reason, shown in the report;
strict_devices: true makes it an error instead (no row)."""

import pytest
import yaml
from conftest import TINY, cell_file, deep_merge, snakemake

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA: the cells would run"),
]

CUDA = deep_merge(TINY, {"grid": {"devices": ["cuda"], "phases": ["train"]}, "measure": {"meters": ["estimate"]}})
CELL = "local/baler_ae/train/cuda/fp32/bs256/r0"


def test_cuda_on_cpu_host_is_a_skipped_row_listed_in_the_report(tmp_path):
    import polars as pl

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CUDA))
    snakemake(tmp_path, "--cores", "2", configfile=cfg)
    r = pl.read_parquet(cell_file(tmp_path, CELL, cfg)).row(0, named=True)
    assert r["status"] == "skipped" and "no CUDA device" in r["skip_reason"] and r["error_type"] is None
    html = (tmp_path / "results/report/index.html").read_text()
    assert "Failed and skipped runs (1)" in html and "no CUDA device" in html


def test_strict_devices_makes_it_an_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CUDA, "strict_devices": True}))
    proc = snakemake(tmp_path, "--cores", "2", configfile=cfg, check=False)
    assert proc.returncode != 0
    assert not cell_file(tmp_path, CELL, cfg).exists(), "strict: no row, the job failed"
    log = cell_file(tmp_path, CELL, cfg, kind="logs/runs", ext=".log").read_text()
    assert "no CUDA device" in log and "strict_devices" in log
