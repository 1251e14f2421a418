"""The real pipeline on the tiny grid: the report rule writes every declared output, and
`snakemake --report report.zip` packs the report()-tagged outputs with their captions."""

from __future__ import annotations

import zipfile

import polars as pl
import pytest

from joulegrid.analysis import CHART_NAMES, REPORT_TABLES


@pytest.mark.slow
@pytest.mark.parallel
def test_pipeline_report_and_snakemake_report_zip(tmp_path, write_config, run_snakemake):
    cfg = write_config({"fleet": {"jobs_per_day": 250000}, "report": {"eta": 0.7}})
    work = tmp_path / "work"
    work.mkdir()
    run_snakemake(work, "--cores", "1", configfile=cfg, timeout=1200)
    rep = work / "results" / "report"
    html = (rep / "index.html").read_text()
    for name in CHART_NAMES:
        assert (rep / f"{name}.png").stat().st_size > 1000
    assert "250,000 jobs/day" in html and "η = 0.7" in html
    assert pl.read_csv(rep / "cells.csv").height == 2  # train + infer cell of the tiny grid
    assert pl.read_csv(rep / "fleet.csv").height == 2
    assert pl.read_csv(rep / "best.csv").height >= 2  # at least the observed best of train and infer
    run_snakemake(work, "--report", "report.zip", configfile=cfg, timeout=600)
    with zipfile.ZipFile(work / "report.zip") as z:
        names = z.namelist()
        body = "\n".join(z.read(n).decode("utf-8", "replace") for n in names if n.endswith((".html", ".js", ".json")))
    for name in CHART_NAMES:
        assert any(n.endswith(f"{name}.png") for n in names), name
    assert any(n.endswith("index.html") for n in names) and any(n.endswith("cells.csv") for n in names)
    for name in REPORT_TABLES:  # every table's CSV, with its caption (workflow/report/table_<name>.rst)
        assert any(n.endswith(f"{name}.csv") for n in names), name
    assert "Pareto front" in body  # a caption made it into the Snakemake report
