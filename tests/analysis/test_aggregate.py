"""Aggregation of run files: the happy path, and bad input named clearly (nothing is lost)."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import synth

from joulegrid import schema as S
from joulegrid.analysis.aggregate import AggregateError, aggregate


def test_aggregate_many_sites(tmp_path):
    rows = synth.rows(synth.grid_cells()) + synth.rows(synth.grid_cells(site="lxplus", phases=("infer",)))
    synth.write_runs(tmp_path, rows)
    res = aggregate(str(tmp_path / "runs"), str(tmp_path / "summary.parquet"))
    assert (res.n_files, res.n_rows, res.problems) == (len(rows), len(rows), [])
    df = pl.read_parquet(tmp_path / "summary.parquet")
    assert sorted(df["run_id"]) == sorted(r["run_id"] for r in rows)
    assert (
        pq.read_schema(tmp_path / "summary.parquet").metadata[b"joulegrid.schema_version"]
        == str(S.SCHEMA_VERSION).encode()
    )


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_results_dir(tmp_path, make):
    runs = tmp_path / "runs"
    if make == "empty":
        runs.mkdir()
    res = aggregate(str(runs), str(tmp_path / "summary.parquet"))
    assert (res.n_files, res.n_rows) == (0, 0)
    df = pl.read_parquet(tmp_path / "summary.parquet")
    assert df.height == 0 and df.columns == list(S.COLUMN_NAMES)


def _wrong_version(path, rows):
    t = S.to_table(rows)
    t = t.set_column(0, "schema_version", pa.array([S.SCHEMA_VERSION + 1] * len(rows), pa.int64()))
    t = t.replace_schema_metadata({b"joulegrid.schema_version": str(S.SCHEMA_VERSION + 1).encode()})
    pq.write_table(t, path)


def test_wrong_schema_version_is_listed_and_left_out(tmp_path):
    rows = synth.rows(synth.grid_cells())
    files = synth.write_runs(tmp_path, rows)
    _wrong_version(files[0], [rows[0]])
    old = files[1]
    pq.write_table(
        S.to_table([rows[1]]).drop_columns(["quality"]).replace_schema_metadata({b"joulegrid.schema_version": b"0"}),
        old,
    )
    files[2].write_bytes(b"not parquet at all")
    res = aggregate(str(tmp_path / "runs"), str(tmp_path / "summary.parquet"))
    assert res.n_rows == len(rows) - 3
    why = dict(res.problems)
    assert f"schema version {S.SCHEMA_VERSION + 1}" in why[str(files[0])]
    assert "schema version 0" in why[str(old)]
    assert "not a readable Parquet file" in why[str(files[2])]
    listed = json.loads((tmp_path / "summary.problems.json").read_text())
    assert {p["path"] for p in listed} == {str(files[0]), str(old), str(files[2])}
    assert files[0].exists() and old.exists()  # never deleted
    with pytest.raises(AggregateError, match="strict"):
        aggregate(str(tmp_path / "runs"), str(tmp_path / "s2.parquet"), strict=True)


def test_duplicate_run_id_kept_once(tmp_path):
    rows = synth.rows(synth.grid_cells(phases=("infer",), batch_sizes=(256,), precisions=("fp32", "bf16")))
    rows[1]["run_id"] = rows[0]["run_id"]
    synth.write_runs(tmp_path, rows)
    res = aggregate(str(tmp_path / "runs"), str(tmp_path / "summary.parquet"))
    assert res.n_rows == 1 and "copied run file" in res.problems[0][1]


@pytest.mark.parametrize("damage", ["truncated", "empty", "foreign_parquet", "other_version", "text"])
def test_each_kind_of_bad_file_is_named_and_the_rest_aggregated(tmp_path, damage):
    rows = synth.rows(synth.grid_cells())
    files = synth.write_runs(tmp_path, rows)
    bad = files[1]
    if damage == "truncated":
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "foreign_parquet":  # a valid Parquet file, not written by joulegrid
        pq.write_table(pa.table({"x": [1, 2, 3]}), bad)
    elif damage == "other_version":
        _wrong_version(bad, [rows[1]])
    else:
        bad.write_text("hello")
    res = aggregate(str(tmp_path / "runs"), str(tmp_path / "summary.parquet"))
    assert res.n_rows == len(rows) - 1 and [p for p, _ in res.problems] == [str(bad)]
    expect = {
        "truncated": "Parquet",
        "empty": "not a readable Parquet file",
        "foreign_parquet": "not a joulegrid run file",
        "other_version": "schema version",
        "text": "not a readable Parquet file",
    }[damage]
    assert expect in res.problems[0][1]
    got = pl.read_parquet(tmp_path / "summary.parquet")["run_id"].to_list()
    assert sorted(got) == sorted(r["run_id"] for i, r in enumerate(rows) if i != 1)
    with pytest.raises(AggregateError, match=str(bad)):
        aggregate(str(tmp_path / "runs"), str(tmp_path / "strict.parquet"), strict=True)


def test_current_configuration_and_others_are_kept_apart(tmp_path):
    """--current: the summary holds the current config hash per workload (every site); runs of other
    hashes, of workloads the configuration gives no hash, and files named before the hash was in the
    name go to summary.other-configs.parquet. Nothing is left out."""
    from joulegrid.analysis.aggregate import other_path, read_current
    from joulegrid.io import write_table

    cur, old = "a" * 16, "b" * 16
    mine = synth.rows(synth.grid_cells(), config_hash=cur)
    other_site = synth.rows(synth.grid_cells(site="lxplus", phases=("infer",)), config_hash=cur)
    before_edit = synth.rows(synth.grid_cells(), config_hash=old, seed=99)
    not_in_grid = synth.rows(synth.grid_cells(workloads=("jet_tagger",)), config_hash=cur)
    synth.write_runs(tmp_path, mine + other_site + before_edit + not_in_grid)
    legacy = synth.row(synth.grid_cells()[0], config_hash="c" * 16)  # named r0.parquet, as before hashes
    write_table(S.to_table([legacy]), tmp_path / "runs" / f"{legacy['cell_id']}.parquet")
    (tmp_path / "current.json").write_text(json.dumps({"baler_ae": {"config_hash": cur, "identity": {}}}))

    res = aggregate(
        str(tmp_path / "runs"), str(tmp_path / "summary.parquet"), current=read_current(tmp_path / "current.json")
    )
    summary = pl.read_parquet(tmp_path / "summary.parquet")
    other = pl.read_parquet(other_path(tmp_path / "summary.parquet"))
    assert sorted(summary["run_id"]) == sorted(r["run_id"] for r in mine + other_site)
    assert sorted(other["run_id"]) == sorted(r["run_id"] for r in before_edit + not_in_grid + [legacy])
    assert (res.n_rows, res.n_other, res.n_files) == (summary.height, other.height, summary.height + other.height)
    with pytest.raises(AggregateError, match="not a joulegrid current-configuration file"):
        read_current(tmp_path / "summary.problems.json")


def test_without_current_every_run_is_in_the_summary_and_configs_are_not_averaged(tmp_path):
    from joulegrid.analysis import metrics as M

    cell = synth.grid_cells(phases=("train",), precisions=("fp32",), batch_sizes=(256,))[0]
    a = synth.row(cell, config_hash="a" * 16, energy_per_sample_j=1e-3)
    b = synth.row(cell, config_hash="b" * 16, energy_per_sample_j=3e-3)
    synth.write_runs(tmp_path, [a, b])
    aggregate(str(tmp_path / "runs"), str(tmp_path / "summary.parquet"))
    cells = M.cell_stats(pl.read_parquet(tmp_path / "summary.parquet")).sort("config_hash")
    assert cells["energy_per_sample_j"].to_list() == pytest.approx([1e-3, 3e-3])  # two cells, never the mean 2e-3
    assert cells["repeats"].to_list() == [1, 1]


def test_a_pinned_precision_s_own_hash_is_current_and_compares_with_the_fp32_baseline(tmp_path):
    """Issue 29: with precision_options.int8 pinned, the int8 cells have their own config hash (the
    current-configuration stamp lists it under the workload's "precisions"); their runs are current, and
    their Δ against fp32 is against the fp32 baseline of the workload's hash, measured before the pin."""
    from joulegrid.analysis import metrics as M
    from joulegrid.analysis.aggregate import other_path, read_current

    base, pinned, old = "a" * 16, "d" * 16, "e" * 16
    cells = synth.grid_cells(phases=("infer",), precisions=("fp32", "int8"), batch_sizes=(256,))
    fp32 = synth.rows([c for c in cells if c.precision == "fp32"], config_hash=base, energy_per_sample_j=2e-3)
    int8 = synth.rows([c for c in cells if c.precision == "int8"], config_hash=pinned, energy_per_sample_j=1e-3)
    int8_auto = synth.rows([c for c in cells if c.precision == "int8"], config_hash=old)  # before the pin
    synth.write_runs(tmp_path, fp32 + int8 + int8_auto)
    stamp = {"baler_ae": {"config_hash": base, "identity": {}, "precisions": {"int8": {"config_hash": pinned}}}}
    (tmp_path / "current.json").write_text(json.dumps(stamp))
    assert read_current(tmp_path / "current.json") == {"baler_ae": [base, pinned]}
    aggregate(
        str(tmp_path / "runs"), str(tmp_path / "summary.parquet"), current=read_current(tmp_path / "current.json")
    )
    summary = pl.read_parquet(tmp_path / "summary.parquet")
    assert sorted(summary["run_id"]) == sorted(r["run_id"] for r in fp32 + int8)
    assert sorted(pl.read_parquet(other_path(tmp_path / "summary.parquet"))["run_id"]) == [int8_auto[0]["run_id"]]
    rel = M.relative_to_baseline(M.cell_stats(summary))
    i8 = rel.filter(pl.col("precision") == "int8").row(0, named=True)
    assert i8["config_hash"] == pinned and i8["baseline_hash"] == base
    assert i8["d_energy_pct"] == pytest.approx((1e-3 / 2e-3 - 1) * 100)
    assert M.missing_baselines(M.cell_stats(summary)).height == 0
    # two fp32 configurations in the group (no --current): the pinned int8 is paired with neither
    both = pl.concat([summary, pl.from_arrow(S.to_table(synth.rows(
        [c for c in cells if c.precision == "fp32"], config_hash=old)))], how="diagonal_relaxed")  # fmt: skip
    rel2 = M.relative_to_baseline(M.cell_stats(both))
    assert rel2.filter(pl.col("config_hash") == pinned)["d_energy_pct"].to_list() == [None]
