"""The group-sequential plan of `joulegrid compare` (joulegrid.analysis.sequential; docs/compare.md, "Reruns").

Expected values are the test's own: the spending function computed here from its formula and checked against a
simulated Brownian motion of the look statistics, the error rates from simulations whose truth is known, the
looks' pairs counted from the planted rows."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import synth
from scipy import stats as sps

from joulegrid.analysis import compare as C
from joulegrid.analysis import sequential as Q

from .test_compare import CELL, frame, quadruple_rows

ALPHA = 0.05
DELTA = math.log1p(0.05)


def spent(t: np.ndarray, alpha: float) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming-type spending, one-sided level alpha (docs/compare.md)."""
    return 2 * sps.norm.sf(sps.norm.isf(alpha / 2) / np.sqrt(t))


@pytest.mark.parametrize("looks, alpha", [((3, 6, 10), 0.05), ((5, 10), 0.05), ((3, 10, 20), 0.01 / 50)])
def test_the_boundaries_spend_alpha_as_the_plan_says(looks, alpha):
    """Z_k = the standardised sum of the first n_k of n_K independent normal pairs: the probability of crossing
    a boundary by look k is the spending function at n_k / n_K (within Monte Carlo error)."""
    rng = np.random.default_rng(11)
    sims = 400_000
    inc = np.diff(np.r_[0, looks])
    s = np.cumsum(rng.standard_normal((sims, len(looks))) * np.sqrt(inc), axis=1)
    z = s / np.sqrt(looks)
    c = np.asarray(Q.boundaries(tuple(k / looks[-1] for k in looks), alpha))
    crossed = np.maximum.accumulate(z > c, axis=1).mean(axis=0)
    want = spent(np.asarray(looks) / looks[-1], alpha)
    # the last look spends alpha; tiny spends (alpha / 50 at a third of the pairs) are checked at their scale
    assert want[-1] == pytest.approx(alpha, rel=1e-12)
    assert np.all(np.abs(crossed - want) <= 4 * np.sqrt(want * (1 - want) / sims) + 2 / sims), (crossed, want)
    # one look is the fixed design: its boundary is the one-sided normal quantile, its nominal level alpha
    assert Q.nominal_levels((1.0,), alpha)[0] == pytest.approx(alpha, rel=1e-9)


# ------------------------------------------------------------------ simulation through the real decision code
def looks_of(q: np.ndarray, looks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, J, m) pairs, means and SDs of the first n_k pairs of each simulated cell (q: S x m x n_K)."""
    s, m, _ = q.shape
    n = np.stack([np.full((s, m), k) for k in looks], axis=1)
    d = np.stack([q[:, :, :k].mean(axis=2) for k in looks], axis=1)
    sd = np.stack([q[:, :, :k].std(axis=2, ddof=1) for k in looks], axis=1)
    return n, d, sd


def mc_bound(p: float, sims: int) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / sims)


def run_plan(true_delta: float, cells: int, looks, sims: int, seed: int, sigma: float = 0.04):
    rng = np.random.default_rng(seed)
    q = rng.normal(true_delta, sigma, size=(sims, cells, looks[-1]))
    plan = Q.make(looks, ALPHA, 5.0)
    return Q.decide_looks(*looks_of(q, looks), plan, C.decide)


@pytest.mark.parametrize("looks", [(3, 6, 10), (3, 10, 20)])
def test_the_plan_s_false_blocks_and_false_passes_stay_within_alpha(looks):
    """Every cell at the margin (the least favourable truth for both errors): over all looks, P(exit 1) <= alpha
    for one cell and for 50 (Holm at each look), P(exit 0) <= alpha for one cell."""
    sims = 4000
    one = run_plan(DELTA, 1, looks, sims, seed=1)
    assert np.mean(one["exit"] == C.REGRESSION) <= mc_bound(ALPHA, sims)
    assert np.mean(one["exit"] == C.PASS) <= mc_bound(ALPHA, sims)
    grid = run_plan(DELTA, 50, looks, 1000, seed=2)
    assert np.mean(grid["exit"] == C.REGRESSION) <= mc_bound(ALPHA, 1000)
    # the plan does stop early: an unchanged head (true change 0) mostly passes before the last look
    same = run_plan(0.0, 1, looks, 1000, seed=3)
    assert np.mean(same["exit"] == C.PASS) > 0.8 and np.mean(same["stop"][same["exit"] == C.PASS] < 2) > 0.5


def test_naive_re_testing_at_more_pairs_exceeds_alpha():
    """The contrast: the fixed design's test repeated at 3, 5, 10 and 20 pairs (the rerun a plan replaces) blocks
    a cell at the margin far more often than alpha; the plan's three looks up to 20 pairs do not."""
    sims, looks = 4000, (3, 5, 10, 20)
    q = np.random.default_rng(4).normal(DELTA, 0.04, size=(sims, 1, 20))
    blocked = np.zeros(sims, bool)
    for k in looks:
        r = C.decide(np.full((sims, 1), k), q[:, :, :k].mean(axis=2), q[:, :, :k].std(axis=2, ddof=1), DELTA, ALPHA)
        blocked |= r["verdict"][:, 0] == C.REGRESSED
    naive = blocked.mean()
    assert naive > ALPHA + 6 * math.sqrt(ALPHA * (1 - ALPHA) / sims), naive  # about 0.14
    plan = Q.decide_looks(*looks_of(q, (3, 10, 20)), Q.make((3, 10, 20), ALPHA, 5.0), C.decide)
    assert np.mean(plan["exit"] == C.REGRESSION) <= mc_bound(ALPHA, sims)


# ------------------------------------------------------------------ through compare_rows and the command
def rows_of(pairs: int, factors=((256, 1.25), (1024, 1.0)), seed: int = 5, config_hash: str = "0" * 16):
    rng = np.random.default_rng(seed)
    rows = []
    for bs, f in factors:
        rows += quadruple_rows({**CELL, "batch_size": bs}, pairs, f, rng)
    for r in rows:
        r["config_hash"] = config_hash
    return rows


def test_a_look_uses_the_first_pairs_of_each_cell_at_its_nominal_level():
    rows = rows_of(7)
    plan = Q.make((3, 6, 10), ALPHA, 10.0)
    res = C.compare_rows(frame(rows), plan=plan)
    lev = plan.levels()
    for r in res.table.iter_rows(named=True):
        k = plan.looks[r["look"] - 1]
        q = []
        for rep in range(k):  # the test's own paired statistics of the first k quadruples
            mine = [x for x in rows if x["batch_size"] == r["batch_size"] and x["repeat"] == rep and x["code_slot"]]
            q.append(0.5 * sum(math.log(x["energy_j"] / x["n_samples"]) * (1 if x["code_version"] == "head" else -1)
                               for x in mine))  # fmt: skip
        half = sps.t.ppf(1 - lev[r["look"] - 1], k - 1) * np.std(q, ddof=1) / math.sqrt(k)
        assert r[f"n_{C.METRIC}"] == k and r["lo"] == pytest.approx(np.mean(q) - half, rel=1e-9)
        assert r["hi"] == pytest.approx(np.mean(q) + half, rel=1e-9)
    assert res.exit == C.REGRESSION and res.sequential["taken"] == 2  # 7 pairs: looks at 3 and 6 taken
    md = C.markdown(res)
    assert "look 2 of 3 at 6 pairs" in md and "after 6 pairs are not part of the plan's decision" in md
    # one look is the fixed design at those pairs
    one = C.compare_rows(frame([x for x in rows if x["repeat"] < 6]), plan=Q.make((6,), ALPHA, 10.0))
    fixed = C.compare_rows(frame([x for x in rows if x["repeat"] < 6]), threshold_pct=10.0, alpha=ALPHA)
    for col in ("lo", "hi"):
        assert one.table[col].to_list() == pytest.approx(fixed.table[col].to_list(), rel=1e-9)
    assert one.table["verdict"].to_list() == fixed.table["verdict"].to_list() and one.exit == fixed.exit


def test_the_command_fixes_a_plan_before_its_first_look_and_follows_it(tmp_path, capsys):
    """docs/compare.md, "Reruns": `joulegrid compare --looks 3,6,10 --threshold 10%` at the first look, then
    `joulegrid compare` after each rerun."""
    from joulegrid.cli import main

    res = tmp_path / "results"
    synth.summary(res / "summary.parquet", rows_of(3))
    assert main(["compare", "--results", str(res), "--looks", "3,6,10", "--threshold", "10%"]) == C.INCONCLUSIVE
    out = capsys.readouterr().out
    assert "INCONCLUSIVE at look 1 of 3: continue to look 2 at 6 pairs" in out and "grid.repeats: 6" in out
    (stored,) = (res / "compare-plans").glob("*.json")
    saved = json.loads(stored.read_text())
    assert saved["looks"] == [3, 6, 10] and saved["threshold_pct"] == 10 and saved["alpha"] == ALPHA
    # the rerun: 6 pairs of the same campaign; the plan is found, its looks and margin apply
    synth.summary(res / "summary.parquet", rows_of(6))
    assert main(["compare", "--results", str(res)]) == C.REGRESSION
    out = capsys.readouterr().out
    assert "look 2 of 3 at 6 pairs" in out and "the plan stopped at look 2" in out
    assert re.search(r"bs256 .*\| regression \(look 2\) \|", out)
    # the report's Compare section follows the stored plan too
    from joulegrid.analysis import report
    from joulegrid.analysis.settings import AnalysisSettings

    st = AnalysisSettings(compare={"threshold_pct": None, "alpha": ALPHA, "power": 0.8, "max_pairs": 10})
    df = frame(rows_of(6))
    sec = report.compare_section(report.Inputs(res / "summary.parquet", df, df.clear(), [], [], st, res))
    assert sec.error is None and sec.headline.startswith("REGRESSION") and "look 2 of 3" in sec.sequential
    # a plan is fixed once: other looks or another margin are refused, naming the plan's file
    assert main(["compare", "--results", str(res), "--looks", "3,5"]) == C.BAD_INPUT
    assert main(["compare", "--results", str(res), "--threshold", "5%"]) == C.BAD_INPUT
    assert main(["compare", str(res), str(res), "--looks", "3,6", "--threshold", "10%"]) == C.BAD_INPUT  # two trees
    capsys.readouterr()
    # a new campaign (new config hashes) without --looks: the fixed design; with --looks past its 2nd look: refused
    synth.summary(res / "summary.parquet", rows_of(10, config_hash="1" * 16))
    assert main(["compare", "--results", str(res), "--threshold", "10%"]) == C.REGRESSION
    assert "Group-sequential" not in capsys.readouterr().out
    assert main(["compare", "--results", str(res), "--looks", "3,6,10", "--threshold", "10%"]) == C.BAD_INPUT
    assert len(list((res / "compare-plans").glob("*.json"))) == 1


def test_plan_suggests_looks_sized_like_the_fixed_design():
    """The suggested plan's last look has the pairs an unchanged head needs at the level the plan leaves it."""
    sigma = 0.04
    looks = C.sequential_looks(sigma, DELTA, ALPHA, 0.8)
    assert len(looks) == 3 and looks[0] >= 2 and looks == sorted(set(looks))
    lev = Q.nominal_levels(tuple(k / looks[-1] for k in looks), ALPHA)[-1]
    assert lev < ALPHA
    want = next(
        n
        for n in range(2, 1001)
        if sps.nct.cdf(-sps.t.ppf(1 - lev, n - 1), n - 1, -DELTA * math.sqrt(n) / sigma) >= 0.8
    )
    assert abs(looks[-1] - want) <= 1 and looks[-1] >= C.pairs_needed(sigma, DELTA, ALPHA, 0.8)
    # joulegrid plan prints them (with versions:, from the earlier quadruples' pair SD)
    rows = quadruple_rows({**CELL, "batch_size": 256}, 4, 1.0, np.random.default_rng(8), noise=0.05)
    cfg = {"results": "r", "compare": {"threshold_pct": 5, "alpha": ALPHA, "power": 0.8, "max_pairs": 10}}
    lines = C.sizing_lines(cfg, frame(rows), n_cells=1)
    (hint,) = [x for x in lines if "--looks" in x]
    s_u = float(re.search(r"upper 80 % limit ([0-9.e-]+)\)", lines[0]).group(1))
    suggested = C.sequential_looks(s_u, DELTA, ALPHA, 0.8)
    assert f"--looks {','.join(map(str, suggested))}" in hint and f"grid.repeats: {suggested[0]}" in hint
    # and the plan of those looks passes an unchanged head with at least that power
    rate = np.mean(run_plan(0.0, 1, tuple(looks), 2000, seed=6, sigma=sigma)["exit"] == C.PASS)
    assert rate >= 0.8 - 3 * math.sqrt(0.8 * 0.2 / 2000)


def test_a_cell_without_pairs_at_an_early_look_waits_for_the_next():
    """A cell whose first quadruples failed has no pairs at look 1: it is too few there, and judged at look 2
    on the pairs it has by then (repeats 3 to 5: 3 pairs)."""
    rng = np.random.default_rng(13)
    rows = rows_of(6, factors=((256, 1.6),), seed=13)
    late = [r for r in quadruple_rows({**CELL, "batch_size": 64}, 6, 1.0, rng) if r["repeat"] >= 3]
    res = C.compare_rows(frame(rows + late), plan=Q.make((3, 6, 10), ALPHA, 10.0))
    t = {r["batch_size"]: r for r in res.table.iter_rows(named=True)}
    assert set(t) == {64, 256} and t[64][f"n_{C.METRIC}"] == 3 and t[64]["look"] == 2
    assert res.exit == C.REGRESSION and t[256]["verdict"] == C.REGRESSED and t[64]["verdict"] == C.UNDECIDED
    assert "inconclusive (the plan stopped)" in C.markdown(res)
