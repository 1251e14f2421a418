"""A tiny grid through real Snakemake: result rows, summary and report files."""

import polars as pl
import pytest

from joulegrid import schema as S

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A copy of the tiny grid's run (conftest.shared_run: also tests/workflow/test_layout_readmes.py's)."""
    import shutil

    from conftest import TINY, shared_run

    work = tmp_path_factory.mktemp("tiny") / "w"
    shutil.copytree(shared_run(tmp_path_factory, "tiny", TINY), work, symlinks=True)
    return work, None


@pytest.mark.parallel
def test_result_rows_follow_the_schema(tiny_run):
    work, _ = tiny_run
    from conftest import cell_file

    files = sorted((work / "results" / "runs").rglob("r*.parquet"))
    assert files == sorted(
        cell_file(work, f"local/baler_ae/{ph}/cpu/fp32/bs256/r0", work / "config.yaml") for ph in ("train", "infer")
    )
    for f in files:
        df = pl.read_parquet(f)
        assert df.height == 1 and df.columns == list(S.COLUMN_NAMES)
        r = df.row(0, named=True)
        assert r["status"] == "ok", r["error_message"]
        assert r["schema_version"] == S.SCHEMA_VERSION
        assert r["wall_s"] > 0 and r["cpu_s"] > 0 and r["samples_per_s"] > 0
        assert r["peak_rss_bytes"] > 0 and r["n_samples"] > 0
        assert r["energy_j"] > 0 and r["co2_kg"] > 0
        assert r["energy_method"] and r["torch_version"] and r["cpu_model"] is not None
        assert r["quality_metric"] == "recon_mse" and r["quality"] > 0
        assert r["torch_num_threads"] == 1  # measure.threads of the tiny config
        # this host has no RAPL: the energy must say it is an estimate
        if "rapl" not in r["energy_method"]:
            assert r["energy_estimated"] is True
        assert r["compression_ratio"] == 2.0
        if r["phase"] == "train":
            assert r["epochs"] == 1 and len(r["epoch_quality"]) == 1
            assert r["flops_per_sample_train"] > r["flops_per_sample_fwd"] > 0


@pytest.mark.parallel
def test_summary_and_report(tiny_run):
    work, _ = tiny_run
    summary = pl.read_parquet(work / "results" / "summary.parquet")
    assert summary.height == 2 and set(summary["phase"]) == {"train", "infer"}
    rep = work / "results" / "report"
    html = (rep / "index.html").read_text()
    assert "joulegrid report" in html and "vegaEmbed" in html
    assert "cdn.jsdelivr" not in html and "<script src=" not in html  # self-contained
    for png in ("energy_per_sample.png", "quality_vs_energy.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parallel
def test_rerun_does_nothing_and_measurements_are_protected(tiny_run, run_snakemake):
    work, _ = tiny_run
    proc = run_snakemake(work, "-n", "--cores", "1", configfile=work / "config.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    from conftest import cell_file

    f = cell_file(work, "local/baler_ae/train/cpu/fp32/bs256/r0", work / "config.yaml")
    assert not (f.stat().st_mode & 0o222), "finished measurements are write-protected"


@pytest.mark.parallel
def test_snakemake_report_zip(tiny_run, run_snakemake):
    work, _ = tiny_run
    run_snakemake(work, "--report", str(work / "report.zip"), configfile=work / "config.yaml")
    assert (work / "report.zip").stat().st_size > 0
