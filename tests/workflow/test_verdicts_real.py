"""Issue 22's end-to-end checks of the verdicts, through one real Snakemake run (tests/workflow/planted.py):

- A/A: the same workload under two names (``aa_a``, ``aa_b``: the same class and settings), measured in the
  same blocks on one host, must not be told apart: at most one of its compared cells may be flagged (at
  alpha = 5 %, two flagged of two by chance has probability 0.25 %), and what is flagged is printed;
- a planted cost: ``planted`` runs its counted inference step twice per batch; every cell must be judged
  costlier than ``aa_a``'s, with an interval of the ratio that overlaps [1.7, 2.05] (other work in the
  window dilutes the factor of 2);
- blocked order: one job at a time (--cores 1), the windows start block by block, each block in its planned
  order (grid.block_order), and every row records its block and planned position.

The comparisons go through the analysis' own code (metrics.stat_runs, stats.compare: the design decides
paired or Welch). The outlier rule is off (on a shared test machine it would re-measure windows at random)."""

from __future__ import annotations

import math
import os
import sys

import polars as pl
import pytest
import yaml
from conftest import NO_OUTLIER_RULE, REPO, TINY, deep_merge, snakemake

from joulegrid import config as C
from joulegrid import grid as G
from joulegrid import spec as SP
from joulegrid.analysis import metrics, stats

pytestmark = [pytest.mark.slow, pytest.mark.measure]  # energy verdicts: in the serial phase (tests/phases.py)
HERE = os.path.dirname(os.path.abspath(__file__))
ENV = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), HERE])}
BATCHES = [128, 256]
KEYS = ["workload", "phase", "device", "precision", "variant", "batch_size"]


def wl(factor: int) -> dict:
    # wide layers: the counted step (the model's forward) dominates the window, as in a real workload
    params = {"latent": 12, "widths": [512, 256, 128], "factor": factor}
    return {"class": "planted:Planted", "rows": 3000, "epochs": 1, "params": params}


@pytest.fixture(scope="module")
def verdict_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("verdicts")
    cfg = deep_merge(
        TINY,
        {
            "grid": {
                "workloads": ["aa_a", "aa_b", "planted"],
                "phases": ["infer"],
                "precisions": ["fp32"],
                "batch_sizes": BATCHES,
                "repeats": 3,
            },
            "workloads": {"aa_a": wl(1), "aa_b": wl(1), "planted": wl(2)},
            "measure": {"meters": ["estimate"], "min_window_s": 1, **NO_OUTLIER_RULE},
        },
    )
    cfg.pop("results", None)
    path = work / "verdicts.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sys.path.insert(0, HERE)  # the config names planted:Planted, which C.load imports to validate it
    try:
        loaded, sites = C.load([path], base_dir=REPO)
        cells = G.expand(loaded, SP.SpecBuilder(loaded, sites).hashes()).cells
    finally:
        sys.path.remove(HERE)
    targets = [c.path("results") for c in cells]
    snakemake(work, "--cores", "1", *targets, configfile=path, env=ENV, timeout=1800)
    rows = pl.concat([pl.read_parquet(work / t) for t in targets], how="diagonal_relaxed")
    return loaded, cells, rows


def compare(rows: pl.DataFrame, a: str, b: str) -> pl.DataFrame:
    runs = metrics.stat_runs(rows)
    pairs = pl.DataFrame(
        [
            {
                "cmp": f"{b} vs {a} bs{bs}",
                **{f"a_{k}": v for k, v in base.items()},
                **{f"b_{k}": v for k, v in (base | {"workload": b}).items()},
            }
            for bs in BATCHES
            for base in [
                {
                    "workload": a,
                    "phase": "infer",
                    "device": "cpu",
                    "precision": "fp32",
                    "variant": "baseline",
                    "batch_size": bs,
                }
            ]
        ]
    )
    return stats.compare(runs, pairs, "energy_per_sample_j", KEYS)


def test_every_run_ok_in_blocks_in_the_planned_order(verdict_run):
    cfg, cells, rows = verdict_run
    assert rows.height == len(cells) == 18 and set(rows["status"]) == {"ok"}
    plan = {c.id: p for c, p in G.block_order(cells, cfg["seed"])}
    assert rows["block"].to_list() == rows["repeat"].to_list()
    assert all(plan[cid] == pos for cid, pos in zip(rows["cell_id"], rows["block_position"], strict=True))
    ran = rows.sort("window_started_at")
    assert list(zip(ran["block"], ran["block_position"], strict=True)) == sorted(
        zip(rows["block"], rows["block_position"], strict=True)
    )


def test_a_a_is_not_told_apart(verdict_run):
    _, _, rows = verdict_run
    res = compare(rows, "aa_a", "aa_b")
    flagged = res.filter(pl.col("verdict").is_in([stats.COSTLIER, stats.CHEAPER]))
    print("A/A flagged:", flagged.select("cmp", "verdict", "d", "lo", "hi").to_dicts())
    assert res.height == len(BATCHES) and (res["n_a"] == 3).all() and (res["n_b"] == 3).all()
    assert flagged.height <= 1, flagged.to_dicts()


def test_a_planted_cost_is_found_in_every_cell(verdict_run):
    _, _, rows = verdict_run
    res = compare(rows, "aa_a", "planted")
    print(res.select("cmp", "analysis", "verdict", "d", "lo", "hi").to_dicts())
    for r in res.to_dicts():
        lo, hi = math.exp(r["lo"]), math.exp(r["hi"])  # the interval of the ratio of geometric means
        assert r["verdict"] == stats.COSTLIER, r
        assert lo <= 2.05 and hi >= 1.7, (r["cmp"], lo, hi)
