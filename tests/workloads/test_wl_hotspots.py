"""Hotspots of real (in-process, tiny) cells: a workload's own slow function is cProfile's top entry with no
joulegrid frame ranked, and bf16 against fp32 training shows the casts and copies among what grew (issue 25)."""

from __future__ import annotations

import polars as pl
import pytest

from joulegrid import hotspots
from joulegrid.schema import hotspots_to_table

from .wlkit import assert_ok, base_config

PROFILED = {"hotspots": "always", "hotspot_batches": 4, "hotspot_top": 10}


def _rows(runner) -> pl.DataFrame:
    """The cell's hotspots, profiled as CellRunner._profile does after its measured window (CellKit runs
    cells without meters, so the runner itself does not profile)."""
    p = hotspots.profile(
        runner.phase.profile_pass(PROFILED["hotspot_batches"]),
        "cpu",
        runner.identity,
        PROFILED["hotspot_top"],
        runner.setup.workload,
    )
    return pl.from_arrow(hotspots_to_table(p.rows))


def test_a_workloads_slow_function_is_the_top_self_time_entry(cells):
    cfg = base_config(
        {"mine": {"class": "byo_pkg.slow_prep:SlowPrep", "epochs": 1, "params": {"n_features": 256}}},
        grid={"workloads": ["mine"], "batch_sizes": [64], "precisions": ["fp32"]},
        measure=PROFILED,
    )
    row, runner = cells.run("mine", "train", "fp32", batch_size=64, cfg=cfg, keep_runner=True)
    assert_ok(row)
    hs = _rows(runner)
    funcs = hs.filter(pl.col("kind") == "function").sort("rank")
    top = funcs.row(0, named=True)
    assert top["function"].endswith("(normalise)") and top["group"] == "workload", funcs["function"].to_list()
    assert top["file"].endswith("byo_pkg/slow_prep.py")
    assert "slow_prep.py:loss" in top["call_path"] and top["call_path"].startswith(hotspots.LOOP)
    # none of joulegrid's own frames is ranked: the user's package, the libraries and Python only
    assert not any("joulegrid" in (f or "") for f in funcs["file"].to_list())
    assert set(funcs["group"]) <= set(hotspots.GROUPS)
    groups = hs.filter(pl.col("kind") == "group").sort("rank")
    assert groups["function"][0] == "workload"
    own = groups.row(0, named=True)
    assert own["self_s"] >= top["self_s"] and own["fraction"] == own["self_s"] / own["profiled_wall_s"]
    # the profiled pass is the measured loop's, 4 batches of 32, and it is described
    assert set(hs["profiled_batches"]) == {4} and set(hs["profiled_samples"]) == {256}
    assert hs["profiled_pass"][0].startswith("train: 4 batch(es) of 64")


@pytest.mark.measure  # the casts' growth is a difference of profiled times: alone, not beside other tests
def test_bf16_against_fp32_shows_the_casts_among_what_grew(cells):
    from joulegrid.analysis import hotspots as A

    cfg = base_config(measure=PROFILED)
    profiled, runs = [], []
    for prec in ("fp32", "bf16"):
        row, runner = cells.run("baler_ae", "train", prec, batch_size=64, cfg=cfg, keep_runner=True)
        assert_ok(row)
        profiled.append(_rows(runner))
        runs.append({k: row.get(k) for k in ("run_id", "status", "config_hash", "energy_j", "n_batches")})
    hs = pl.concat(profiled)
    for one in profiled:
        # the steps add up to the torch pass; the modules' own times add up to the model's (forward + backward)
        steps = one.filter(pl.col("kind") == "step")
        assert steps["self_s"].sum() == pytest.approx(steps["profiled_wall_s"][0], rel=1e-6)
        mods = one.filter(pl.col("kind") == "module")
        model = mods.filter(pl.col("function") == "(model)").row(0, named=True)
        assert mods["self_s"].sum() == pytest.approx(model["cumulative_s"], rel=1e-6)
        assert model["backward_s"] > 0 and model["forward_s"] > 0
        assert set(mods["function"]) >= {"encoder", "encoder.0", "decoder"}
    # the analysis over the two real profiles: bf16 against fp32 at the same batch size
    runs_df = pl.from_dicts(
        [{**r, "energy_j": 1.0, "n_batches": 10, "energy_estimated": True, "precision_native": None} for r in runs]
    )
    pc = A.per_cell(A.joined(hs, runs_df))
    diffs = A.differences(pc, A.pairs(A.profiled_cells(pc)))
    assert set(diffs["precision"]) == {"bf16"} and set(diffs["base_precision"]) == {"fp32"}
    ops = diffs.filter(pl.col("kind") == "operator")
    casts = ops.filter(pl.col("function").is_in(["aten::_to_copy", "aten::to", "aten::copy_"]))
    grew = casts.filter(pl.col("change").is_in(["grew", "new"]) & (pl.col("d_ms") > 0))
    # the casts' work (the conversion itself is in aten::copy_, under aten::to / aten::_to_copy) grew in all
    assert grew.height and casts["d_ms"].sum() > 0, casts.select("function", "change", "d_ms")
    # autocast casts the weights and inputs of every layer in every step: more cast calls per batch than fp32
    calls = {
        p: hs.filter(
            (pl.col("precision") == p) & (pl.col("kind") == "operator") & (pl.col("function") == "aten::_to_copy")
        )["calls"].sum()
        for p in ("fp32", "bf16")
    }
    assert calls["bf16"] > calls["fp32"]
    # the figures are the hotspot rows': ms per batch = time share x pass time / batches
    r = grew.row(0, named=True)
    src = hs.filter(
        (pl.col("precision") == "bf16") & (pl.col("kind") == "operator") & (pl.col("function") == r["function"])
    ).row(0, named=True)
    assert r["ms"] == pytest.approx(src["fraction"] * src["profiled_wall_s"] * 1000 / src["profiled_batches"])
    # sorted by the size of the change within the operators
    assert ops["d_ms"].abs().to_list() == sorted(ops["d_ms"].abs().to_list(), reverse=True)
