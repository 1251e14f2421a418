"""analysis/design.py: the repeats `joulegrid plan` sizes (grid.repeats: auto), checked by hand, and the frozen
design that keeps a finished grid finished."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import REPO, subprocess_env
from scipy import integrate
from scipy import stats as sps

from joulegrid import config as CFG
from joulegrid import grid as G
from joulegrid.analysis import design as D

from . import fake_meter as F

GRID = {
    "workloads": ["baler_ae"],
    "phases": ["infer"],
    "precisions": ["fp32", "bf16"],
    "batch_sizes": [256],
    "repeats": "auto",
}


def cfg(tmp_path, **design):
    config, _ = CFG.prepare({"results": str(tmp_path / "results"), "grid": dict(GRID), "design": design})
    return config


def earlier(tmp_path, cv: float, cells: int = 40, n: int = 4, seed: int = 1) -> pl.DataFrame:
    rows = F.runs(np.random.default_rng(seed), cells, n, {"fp32": (1.0, cv)}).with_columns(workload=pl.lit("baler_ae"))
    (tmp_path / "results").mkdir(exist_ok=True)
    rows.write_parquet(tmp_path / "results" / "summary.parquet")
    return rows


def test_the_upper_limit_of_sigma_by_hand():
    # chi2 with 2 df is exponential with mean 2: its 20 % quantile is -2 ln 0.8
    assert D.sigma_upper(0.1, 2) == pytest.approx(0.1 * math.sqrt(2 / (-2 * math.log(0.8))))
    assert D.sigma_upper(0.1, 2) == pytest.approx(0.2117, abs=1e-4)  # a 3-run pilot: x2.1
    assert D.sigma_upper(0.1, 400) == pytest.approx(0.1 * math.sqrt(400 / sps.chi2.ppf(0.2, 400)))


def _paired_power(n: int, sigma: float, detect_pct: float, alpha: float) -> float:
    """Power of the per-block test by integration over the sample variance (no noncentral-t routine)."""
    df, lam = n - 1, math.log1p(detect_pct / 100) / (sigma * math.sqrt(2 / n))
    tc = sps.t.ppf(1 - alpha / 2, df)

    def f(x):
        s = tc * math.sqrt(x / df)
        return (sps.norm.sf(s - lam) + sps.norm.cdf(-s - lam)) * sps.chi2.pdf(x, df)

    return integrate.quad(f, 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("sigma,detect", [(0.05, 10), (0.10, 10), (0.03, 5), (0.2, 50)])
def test_repeats_needed_is_the_smallest_n_that_reaches_the_power(sigma, detect):
    n, p = D.repeats_needed(sigma, detect, 0.8, 0.05)
    assert _paired_power(n, sigma, detect, 0.05) >= 0.8 - 1e-6
    assert p == pytest.approx(_paired_power(n, sigma, detect, 0.05), abs=1e-5)
    if n > D.MIN_REPEATS:
        assert _paired_power(n - 1, sigma, detect, 0.05) < 0.8


def test_noise_pooled_over_the_cells_of_one_cpu_model_and_workload_by_hand(tmp_path):
    rows = earlier(tmp_path, 0.05, cells=3, n=4)
    got = D.noise(rows).row(0, named=True)
    y = rows.select("config_hash", y=pl.col("energy_j").log())
    per = y.group_by("config_hash").agg(v=pl.col("y").var(), k=pl.len())
    pooled = sum((k - 1) * v for v, k in zip(per["v"], per["k"], strict=True)) / sum(k - 1 for k in per["k"])
    assert (got["hardware"], got["workload"], got["phase"], got["cells"], got["runs"], got["nu"]) == (
        "Fake CPU",
        "baler_ae",
        "infer",
        3,
        12,
        9.0,
    )
    assert got["sigma"] == pytest.approx(math.sqrt(pooled))


def test_without_earlier_runs_the_prior_and_the_plan_says_so(tmp_path):
    d = D.compute(cfg(tmp_path))
    (g,) = d.groups
    assert (
        g.source == "prior"
        and g.sigma == D.PRIOR_SIGMA
        and d.repeats == D.repeats_needed(D.PRIOR_SIGMA, 10, 0.8, 0.05)[0]
    )
    assert "no earlier runs: the prior sigma 0.1" in "\n".join(d.lines())


def test_the_design_is_frozen_until_replanned(tmp_path):
    config = cfg(tmp_path, detect_pct=20)
    earlier(tmp_path, 0.04)
    d, what = D.freeze(config)
    assert what == "written" and D.path(config).is_file() and d.groups[0].source == "earlier runs"
    cells = G.expand(config, repeats=D.grid_repeats(config)).cells
    assert len(cells) == 2 * d.repeats and {c.repeat for c in cells} == set(range(d.repeats))
    # more runs arrive, much noisier: the frozen design does not move (a finished grid stays finished)
    earlier(tmp_path, 0.30, seed=2)
    assert D.compute(config).repeats > d.repeats
    assert D.freeze(config) == (d, "frozen")
    assert len(G.expand(config, repeats=D.grid_repeats(config)).cells) == 2 * d.repeats
    # asked to replan, it does; so does a change of design.*
    d2, what = D.freeze(config, redesign=True)
    assert what == "replanned" and d2.repeats > d.repeats
    assert D.read(cfg(tmp_path, detect_pct=25)) is None  # other design keys: not this design
    assert json.loads(D.path(config).read_text())["repeats"] == d2.repeats


def test_a_difference_no_repeats_can_detect_is_refused_naming_the_key(tmp_path):
    earlier(tmp_path, 2.0)  # CV 200 %
    with pytest.raises(D.DesignError, match=r"design.detect_pct: a 1 % change cannot be detected with 1000 repeats"):
        D.compute(cfg(tmp_path, detect_pct=1))


def plan_cli(tmp_path, detect_pct, *args, grid=GRID):
    """`joulegrid plan` on a config of ``grid`` with design.detect_pct, its results under tmp_path."""
    p = tmp_path / "c.yaml"
    config = {"results": str(tmp_path / "results"), "grid": grid, "design": {"detect_pct": detect_pct}}
    p.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", "--configfile", str(p), *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
    )


def test_cli_plan_writes_the_design_and_prints_its_cost(tmp_path):
    earlier(tmp_path, 0.05)

    def run(*a):
        return plan_cli(tmp_path, 20, *a)

    out = run().stdout
    d = D.Design.from_json((tmp_path / "results" / "design.json").read_text())
    assert f"design: {d.repeats} repeat(s) per cell to detect a 20 % change" in out
    assert "written to" in out and f"that design: {2 * d.repeats} run(s)" in out
    assert f"site local: {2 * d.repeats} cell(s) in the grid" in out  # the grid uses it
    assert "frozen in" in run().stdout
    again = run("--redesign").stdout
    assert "replanned into" in again


def test_docs_example_plan_for_a_5_percent_change(tmp_path):
    """docs/configuration.md: `joulegrid plan --config 'design={detect_pct: 5}'` (default grid, nothing measured)."""
    cmd = [sys.executable, "-m", "joulegrid", "plan", "--config", "design={detect_pct: 5}"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=subprocess_env())
    assert out.returncode == 0, out.stderr
    n, _ = D.repeats_needed(D.PRIOR_SIGMA, 5, 0.8, 0.05)
    assert f"design: {n} repeat(s) per cell to detect a 5 % change" in out.stdout
    repeats = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["grid"]["repeats"]
    assert "no earlier runs: the prior sigma 0.1" in out.stdout
    assert f"grid.repeats is {repeats}: set it to auto" in out.stdout
    assert not (tmp_path / "results" / "design.json").exists()  # a number of repeats: nothing frozen


def test_cli_plan_with_an_impossible_design_says_why_and_fails(tmp_path):
    earlier(tmp_path, 2.0)  # CV 200 %
    out = plan_cli(tmp_path, 1)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "config key design.detect_pct: a 1 % change cannot be detected with 1000 repeats" in out.stderr
    assert "Fix: raise design.detect_pct" in out.stderr and not (tmp_path / "results" / "design.json").exists()


def test_cli_plan_with_a_number_of_repeats_reports_an_unreachable_design_and_goes_on(tmp_path):
    """grid.repeats a number (the default config's 3): the design is advice. After a noisy default run,
    `joulegrid plan --config seed=7` must still print the grid and its forecast (it once failed with exit 2)."""
    earlier(tmp_path, 2.0)  # CV 200 %: no repeats detect 1 %
    out = plan_cli(tmp_path, 1, grid={**GRID, "repeats": 3})
    assert out.returncode == 0, out.stderr
    assert "design: config key design.detect_pct: a 1 % change cannot be detected with 1000 repeats" in out.stdout
    assert "grid.repeats is 3: the plan goes on with it" in out.stdout
    assert "site local: 6 cell(s) in the grid" in out.stdout and "forecast:" in out.stdout
    assert not (tmp_path / "results" / "design.json").exists()
