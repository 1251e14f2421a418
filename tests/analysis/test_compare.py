"""`joulegrid compare` (joulegrid.analysis.compare): the paired statistic from quadruple rows, the decision
table, Holm across cells and the sizing, checked by seeded simulation through the real code.

Expected values come from the test's own arithmetic: the paired statistic ½(log B1 + log B2 - log A1 - log A2)
computed here from the planted energies, the error rates from the simulation's known truth."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import synth
from scipy import stats as sps

from joulegrid import schema as S
from joulegrid.analysis import compare as C
from joulegrid.grid import Cell
from joulegrid.versions import slots

ALPHA = 0.05
DOC = (Path(__file__).resolve().parents[2] / "docs" / "compare.md").read_text()


def quadruple_rows(cell_kw: dict, pairs: int, head_factor: float, rng, noise=0.03, drift=0.0) -> list[dict]:
    """Runs of one cell's quadruples in the pipeline's order (a warm-up slot 0, then ABBA/BAAB): energy per
    sample 1e-3 x head_factor for head, x a log-normal noise, x a linear drift inside the job."""
    out = []
    for q in range(pairs):
        cell = Cell(**cell_kw, repeat=q)
        for slot, label in enumerate(slots(q)):
            eps = 1e-3 * (head_factor if label == "head" else 1.0) * math.exp(rng.normal(0, noise) + drift * slot)
            out.append(
                synth.row(
                    cell,
                    energy_per_sample_j=eps,
                    code_version=label,
                    code_commit=label * 5,
                    code_dirty=False,
                    code_slot=slot,
                )  # fmt: skip
            )
    return out


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.from_arrow(S.to_table(rows))


CELL = dict(site="local", workload="mine", phase="train", device="cpu", precision="fp32", variant="baseline")


def test_the_paired_statistic_of_each_quadruple_and_the_warm_up_left_out():
    rng = np.random.default_rng(1)
    rows = quadruple_rows({**CELL, "batch_size": 256}, 4, 1.3, rng, drift=0.05)
    rows[0]["energy_j"] *= 100  # the warm-up of quadruple 0: must not count
    q = C.quadruples(frame(rows))
    assert q.height == 4
    for k in range(4):
        mine = [r for r in rows if r["repeat"] == k and r["code_slot"] >= 1]
        y = {r["code_slot"]: math.log(r["energy_j"] / r["n_samples"]) for r in mine}
        want = 0.5 * sum(y[r["code_slot"]] * (1 if r["code_version"] == "head" else -1) for r in mine)
        assert q.filter(pl.col("repeat") == k)["q_energy_per_sample_j"][0] == pytest.approx(want, rel=1e-12)
    # a linear drift inside the job cancels in ABBA and BAAB: with no noise each pair is exactly log 1.3
    clean = C.quadruples(frame(quadruple_rows({**CELL, "batch_size": 256}, 2, 1.3, rng, noise=0.0, drift=0.2)))
    assert clean["q_energy_per_sample_j"].to_list() == pytest.approx([math.log(1.3)] * 2, rel=1e-9)


def test_a_planted_regression_is_found_and_an_a_a_comparison_passes():
    rng = np.random.default_rng(2)
    rows = []
    for bs, f in ((256, 1.25), (1024, 1.0)):
        rows += quadruple_rows({**CELL, "batch_size": bs}, 6, f, rng)
    res = C.compare_rows(frame(rows), threshold_pct=10, alpha=ALPHA)
    v = dict(zip(res.table["batch_size"], res.table["verdict"], strict=True))
    assert v[256] == C.REGRESSED and v[1024] == C.EQUIVALENT and res.exit == C.REGRESSION
    md = C.markdown(res)
    assert "REGRESSION" in md and "| local/mine/train/cpu/fp32/bs256" in md and "Exit status 1" in md
    same = C.compare_rows(frame([r for r in rows if r["batch_size"] == 1024]), threshold_pct=10, alpha=ALPHA)
    assert same.exit == C.PASS
    one = C.compare_rows(frame(quadruple_rows({**CELL, "batch_size": 64}, 1, 1.0, rng)), threshold_pct=10)
    assert one.exit == C.INCONCLUSIVE and one.table["verdict"][0] == C.TOO_FEW


def test_rows_without_versions_are_bad_input():
    rows = synth.rows([Cell(**CELL, batch_size=256, repeat=0)])
    with pytest.raises(C.CompareError, match="no code-version runs"):
        C.compare_rows(frame(rows), threshold_pct=5)


# ------------------------------------------------------------------ simulation through decide / grid_verdict
SIMS = 1000


def mc_bound(p: float) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / SIMS)


def simulate(true_delta, cells: int, n: int, sigma: float, delta: float, seed: int):
    """SIMS grids of `cells` cells of n pairs each, q ~ N(true_delta, sigma): the exits and the verdicts."""
    rng = np.random.default_rng(seed)
    exits, verdicts = [], []
    for _ in range(SIMS):
        q = rng.normal(true_delta, sigma, size=(cells, n))
        r = C.decide(np.full(cells, n), q.mean(axis=1), q.std(axis=1, ddof=1), delta, ALPHA)
        exits.append(C.grid_verdict(r["p"], r["verdict"], ALPHA)[0])
        verdicts.append(r["verdict"])
    return np.array(exits), np.array(verdicts)


def test_false_blocks_stay_within_alpha_over_50_cells_at_the_margin():
    """Every one of 50 cells exactly at the margin (the least favourable null): P(exit 1) <= alpha."""
    delta = math.log1p(0.05)
    exits, _ = simulate(delta, 50, 5, 0.04, delta, seed=3)
    assert np.mean(exits == C.REGRESSION) <= mc_bound(ALPHA)
    exits0, _ = simulate(0.0, 50, 5, 0.04, delta, seed=4)  # A/A: nothing changed
    assert np.mean(exits0 == C.REGRESSION) <= mc_bound(ALPHA)


def test_false_passes_stay_within_alpha_when_the_true_change_is_the_margin():
    delta = math.log1p(0.05)
    _, v = simulate(delta, 1, 6, 0.04, delta, seed=5)
    assert np.mean(np.isin(v[:, 0], C.PASSES)) <= mc_bound(ALPHA)


def test_the_planned_pairs_reach_the_stated_power():
    """An unchanged version passes at the pairs pairs_needed plans, with the planned power within 5 points;
    one pair fewer falls short of it."""
    sigma, delta, power = 0.04, math.log1p(0.05), 0.8
    n = C.pairs_needed(sigma, delta, ALPHA, power)
    assert n is not None and 3 <= n < 50
    _, v = simulate(0.0, 1, n, sigma, delta, seed=6)
    rate = np.mean(np.isin(v[:, 0], C.PASSES))
    assert abs(rate - power) <= 0.05 and rate >= power - 3 * math.sqrt(power * (1 - power) / SIMS)
    # the default threshold is the margin max_pairs pairs pass with that power: sized back, the same pairs
    assert C.pairs_needed(sigma, C.threshold_for(sigma, n, ALPHA, power), ALPHA, power) == n


def test_the_report_s_compare_section_shows_the_verdicts_and_the_chart(tmp_path):
    from joulegrid.analysis import report
    from joulegrid.analysis.settings import AnalysisSettings

    rng = np.random.default_rng(7)
    rows = quadruple_rows({**CELL, "batch_size": 256}, 5, 1.25, rng)
    st = AnalysisSettings(compare={"threshold_pct": 10, "alpha": ALPHA, "power": 0.8, "max_pairs": 10})
    r = report.Inputs(tmp_path / "summary.parquet", frame(rows), frame(rows).clear(), [], [], st, tmp_path)
    s = report.compare_section(r)
    assert s.error is None and s.headline.startswith("REGRESSION") and "<svg" in s.svg
    (row,) = [dict(zip(s.table.columns, [t for t, _ in cells], strict=True)) for cells in s.table.rows]
    assert row["verdict"] == "regression" and row["pairs"] == "5"


def test_plan_sizes_the_pairs_and_costs_the_campaign():
    rng = np.random.default_rng(8)
    rows = quadruple_rows({**CELL, "batch_size": 256}, 4, 1.0, rng, noise=0.05)
    for r in rows:
        r["job_wall_s"], r["job_energy_j"] = 36.0, 360.0
    cfg = {"results": "r", "compare": {"threshold_pct": 5, "alpha": ALPHA, "power": 0.8, "max_pairs": 10}}
    lines = C.sizing_lines(cfg, frame(rows), n_cells=3)
    n = int(re.search(r"at (\d+) pairs per cell", lines[0]).group(1))
    # the test's own sizing: the smallest n whose simulated-free power (noncentral t) reaches 0.8 at the pair SD's
    # upper 80 % limit, from the quadruples of the rows
    q = [0.5 * sum(math.log(r["energy_j"] / r["n_samples"]) * (1 if r["code_version"] == "head" else -1)
                   for r in rows if r["repeat"] == k and r["code_slot"] >= 1) for k in range(4)]  # fmt: skip
    s_u = float(np.std(q, ddof=1)) * math.sqrt(3 / sps.chi2.ppf(0.2, 3))
    d = math.log1p(0.05)
    want = next(
        m for m in range(2, 1001) if sps.nct.cdf(-sps.t.ppf(0.95, m - 1), m - 1, -d * math.sqrt(m) / s_u) >= 0.8
    )
    assert abs(n - want) <= 1
    assert f"3 cell(s) x {n} quadruples x 5 runs = {15 * n} runs, {15 * n * 36 / 3600:.3g} job-hours" in lines[1]
    assert f"{15 * n * 360 / 3.6e6:.3g} kWh" in lines[1]


def test_two_result_trees_are_compared_unpaired_cell_by_cell():
    rng = np.random.default_rng(9)

    def tree(site, factor):
        eps = [
            (bs, k, 1e-3 * factor * bs / 256 * math.exp(rng.normal(0, 0.02))) for bs in (256, 1024) for k in range(5)
        ]
        return frame([synth.row(Cell(**CELL | {"site": site}, batch_size=bs, repeat=k), energy_per_sample_j=e)
                      for bs, k, e in eps])  # fmt: skip

    a, b = tree("local", 1.0), tree("slurm", 1.3)
    res = C.compare_trees(a, b, threshold_pct=10, alpha=ALPHA)
    assert res.exit == C.REGRESSION and res.table["verdict"].to_list() == [C.REGRESSED] * 2

    # the Welch interval of the test's own: log means and variances of the two arms of bs256
    def logs(t):
        t = t.filter(pl.col("batch_size") == 256)
        return np.log((t["energy_j"] / t["n_samples"]).to_numpy())

    ya, yb = logs(a), logs(b)
    se = math.sqrt(ya.var(ddof=1) / 5 + yb.var(ddof=1) / 5)
    dfw = se**4 / ((ya.var(ddof=1) / 5) ** 2 / 4 + (yb.var(ddof=1) / 5) ** 2 / 4)
    row = res.table.filter(pl.col("batch_size") == 256).row(0, named=True)
    assert row["lo"] == pytest.approx(yb.mean() - ya.mean() - sps.t.ppf(0.95, dfw) * se, rel=1e-9)
    assert "unpaired" in C.markdown(res) and C.compare_trees(a, tree("x", 1.0), threshold_pct=10).exit == C.PASS


def test_the_command_compares_two_trees_and_says_bad_input(tmp_path, capsys):
    """docs/compare.md, "Two result trees or two sites": `joulegrid compare A B --threshold 10%`."""
    from joulegrid.cli import main

    for name, f in (("a", 1.0), ("b", 1.5)):
        rows = [synth.row(Cell(**CELL, batch_size=256, repeat=k), energy_per_sample_j=1e-3 * f * (1 + 0.01 * k))
                for k in range(4)]  # fmt: skip
        synth.summary(tmp_path / name / "summary.parquet", rows)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--threshold", "10%"]) == C.REGRESSION
    assert "| regression |" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nowhere"), "--threshold", "10%"]) == C.BAD_INPUT
    assert main(["compare", "--results", str(tmp_path / "a"), "--threshold", "10%"]) == C.BAD_INPUT  # no versions
    assert "`joulegrid compare A B --threshold 10%`" in DOC


def test_quality_and_time_and_energy_to_target_get_a_delta_with_an_interval():
    """Training with a target: head's quality is 0.01 worse (recon_mse up) and it reaches the target 1.5x later
    on 1.4x the energy; one run of quadruple 2 never reaches it (that quadruple gives no pair of them)."""
    rng = np.random.default_rng(10)
    rows = quadruple_rows({**CELL, "batch_size": 256}, 5, 1.0, rng)
    for r in rows:
        head = r["code_version"] == "head"
        r["quality"] = 0.05 + (0.01 if head else 0.0) + rng.normal(0, 0.002)
        r["time_to_target_s"] = 10.0 * (1.5 if head else 1.0) * math.exp(rng.normal(0, 0.03))
        r["energy_to_target_j"] = 200.0 * (1.4 if head else 1.0) * math.exp(rng.normal(0, 0.03))
        r["target_quality"] = 0.07
    (gone,) = [r for r in rows if r["repeat"] == 2 and r["code_slot"] == 3]
    gone["time_to_target_s"] = gone["energy_to_target_j"] = None
    res = C.compare_rows(frame(rows), threshold_pct=10, alpha=ALPHA)
    row = res.table.row(0, named=True)

    def paired(metric, log):
        q = []
        for k in range(5):
            mine = [r for r in rows if r["repeat"] == k and r["code_slot"] >= 1]
            if any(r[metric] is None for r in mine):
                continue
            q.append(0.5 * sum((math.log(r[metric]) if log else r[metric]) * (1 if r["code_version"] == "head" else -1)
                               for r in mine))  # fmt: skip
        half = sps.t.ppf(1 - ALPHA, len(q) - 1) * np.std(q, ddof=1) / math.sqrt(len(q))
        return len(q), np.mean(q), np.mean(q) - half, np.mean(q) + half

    for metric, log in (("quality", False), ("time_to_target_s", True), ("energy_to_target_j", True)):
        n, d, lo, hi = paired(metric, log)
        assert row[f"n_{metric}"] == n and n == (5 if metric == "quality" else 4)
        assert (row[f"d_{metric}"], row[f"lo_{metric}"], row[f"hi_{metric}"]) == pytest.approx((d, lo, hi), rel=1e-9)
    assert row["lo_quality"] < 0.01 < row["hi_quality"] and row["lo_time_to_target_s"] < math.log(1.5)
    md = C.markdown(res)
    header = next(x for x in md.splitlines() if x.startswith("| cell |"))
    assert "Δ quality (head − base)" in header and "Δ time to target" in header and "Δ energy to target" in header
    line = next(x for x in md.splitlines() if x.startswith("| local/mine"))
    assert f"{row['d_quality']:+.4g} [" in line and "(recon_mse, lower is better)" in line
    assert f"[+{math.expm1(row['lo_time_to_target_s']) * 100:.1f} %" in line
    # without targets (inference, or training by epochs) the columns are left out
    plain = C.markdown(C.compare_rows(frame(quadruple_rows({**CELL, "batch_size": 64}, 3, 1.0, rng)), threshold_pct=10))
    assert "Δ time to target" not in plain and "Δ quality (head − base)" in plain


def test_two_trees_give_the_quality_delta_as_a_difference_of_means():
    rng = np.random.default_rng(12)

    def tree(site, dq):
        return frame([synth.row(Cell(**CELL | {"site": site}, batch_size=256, repeat=k),
                                quality=0.05 + dq + rng.normal(0, 0.001)) for k in range(4)])  # fmt: skip

    a, b = tree("local", 0.0), tree("slurm", 0.02)
    row = C.compare_trees(a, b, threshold_pct=10, alpha=ALPHA).table.row(0, named=True)
    qa, qb = a["quality"].to_numpy(), b["quality"].to_numpy()
    assert row["d_quality"] == pytest.approx(qb.mean() - qa.mean(), rel=1e-9)
    se = math.sqrt(qa.var(ddof=1) / 4 + qb.var(ddof=1) / 4)
    dfw = se**4 / ((qa.var(ddof=1) / 4) ** 2 / 3 + (qb.var(ddof=1) / 4) ** 2 / 3)
    assert row["hi_quality"] == pytest.approx(qb.mean() - qa.mean() + sps.t.ppf(1 - ALPHA, dfw) * se, rel=1e-9)
