"""The grid snapshot (<results>/.grid/<hash>.json): what every job of a configuration reads, the cell
and its config hash coming from the run file's path (issue 17, the lean measure rule)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, TINY, deep_merge, subprocess_env

from joulegrid import config as C
from joulegrid import grid as G
from joulegrid import spec as SP
from joulegrid.sites import load_sites


def builder(tmp_path, **over):
    cfg, sites = C.load(
        config_args=deep_merge(
            TINY, {"results": str(tmp_path / "results"), "resources_dir": str(tmp_path / "res"), **over}
        ),
        base_dir=REPO,
    )
    return cfg, SP.SpecBuilder(cfg, sites)


def test_snapshot_is_content_addressed_written_once_and_holds_every_workload(tmp_path):
    cfg, sb = builder(tmp_path, grid={"workloads": ["baler_ae", "jet_tagger"]})
    path = sb.snapshot_path(write=True)
    snap = json.loads(open(path).read())
    assert path == f"{cfg['results']}/.grid/{SP.settings_hash(snap)}.json"
    assert set(snap["workloads"]) == {"baler_ae", "jet_tagger"} and snap["resources_dir"] == cfg["resources_dir"]
    for w, entry in snap["workloads"].items():
        assert entry["config_hash"] == sb.config_hash(w) and entry["settings"] == sb.settings(w)
        assert entry["data"] == sb.data_path(w) and entry["model"] == sb.model_path(w)
    mtime = os.stat(path).st_mtime_ns
    assert SP.SpecBuilder(cfg, load_sites(REPO / "config/sites.yaml")).snapshot_path(write=True) == path
    assert os.stat(path).st_mtime_ns == mtime, "an existing snapshot is never rewritten"
    # another configuration is another snapshot; the first stays
    _, sb7 = builder(tmp_path, seed=7, grid={"workloads": ["baler_ae", "jet_tagger"]})
    other = sb7.snapshot_path(write=True)
    assert other != path and json.loads(open(path).read()) == snap
    # a fact that is not part of the config hash (the sites file) still makes another snapshot: jobs record it
    assert builder(tmp_path, site="lxplus", grid={"workloads": ["baler_ae", "jet_tagger"]})[1].snapshot_path() != path


def test_a_cell_is_read_from_the_snapshot_and_its_run_file(tmp_path):
    cfg, sb = builder(tmp_path)
    path = sb.snapshot_path(write=True)
    cell = G.expand(cfg, sb.hashes()).cells[0]
    got = SP.cell_spec_from_snapshot(path, cell.path(cfg["results"]))
    assert got.spec == sb.cell_spec(cell) and got.resources_dir == cfg["resources_dir"]
    assert got.data == sb.data_path(cell.workload)
    assert got.model == (sb.model_path(cell.workload) if cell.phase == "infer" else None)
    spec, data, model = SP.reference_spec_from_snapshot(path, "baler_ae")
    assert spec.cell.phase == "train" and spec.cell.precision == "fp32" and model == sb.model_path("baler_ae")


@pytest.mark.parametrize(
    "out,words",
    [
        (
            "results/runs/local/baler_ae/train/cpu/fp32/bs256/r0-0000000000000000.parquet",
            ["belongs to configuration 0000000000000000"],
        ),
        (
            "results/runs/local/jet_tagger/train/cpu/fp32/bs256/r0-0000000000000000.parquet",
            ["'jet_tagger' is not in the grid snapshot"],
        ),
        ("elsewhere/r0.parquet", ["not a joulegrid run path"]),
    ],
)
def test_a_run_file_the_snapshot_does_not_describe_is_refused(tmp_path, out, words):
    _, sb = builder(tmp_path)
    with pytest.raises(C.ConfigError) as e:
        SP.cell_spec_from_snapshot(sb.snapshot_path(write=True), out)
    for w in words:
        assert w in str(e.value)


def test_run_cell_without_the_snapshot_names_the_shared_filesystem_and_writes_no_row(tmp_path):
    """A cluster job whose host does not see the results folder: a clear error, exit 2, no row."""
    cfg, sb = builder(tmp_path)
    cell = G.expand(cfg, sb.hashes()).cells[0]
    out = cell.path(cfg["results"])
    cmd = [sys.executable, "-m", "joulegrid"]
    args = ["--grid", str(tmp_path / "results/.grid/missing.json"), "--out", out]
    run = subprocess.run([*cmd, "run-cell", *args], capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path)
    assert run.returncode == 2 and "not found on host" in run.stderr and "shared" in run.stderr and "Fix:" in run.stderr
    rec = subprocess.run(
        [*cmd, "record-failure", *args, "--exit-code", "2"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert rec.returncode == 2
    assert not (tmp_path / out).exists()


def test_a_job_reads_its_planned_block_position_from_the_snapshot(tmp_path):
    """The Snakefile's snapshot carries the block plan (seed and cells); each job's spec, and so its row, gets
    the cell's planned position in its block (grid.block_order), and its block = its repeat."""
    cfg, sb = builder(tmp_path, grid={"repeats": 2, "precisions": ["fp32", "bf16"]})
    cells = G.expand(cfg, sb.hashes()).cells
    path = sb.snapshot_path(write=True, cells=cells)
    planned = {c.id: p for c, p in G.block_order(cells, cfg["seed"])}
    for c in cells:
        spec = SP.cell_spec_from_snapshot(path, c.path(cfg["results"])).spec
        assert spec.block_position == planned[c.id]
        ids = SP.identity_columns(spec, attempt=1)
        assert ids["block"] == c.repeat and ids["block_position"] == planned[c.id]
    # a snapshot without the plan (train-reference, a --spec run): no position, the block still the repeat
    _, plain = builder(tmp_path / "plain", grid={"repeats": 2, "precisions": ["fp32", "bf16"]})
    bare = SP.cell_spec_from_snapshot(plain.snapshot_path(write=True), cells[0].path(plain.config["results"])).spec
    assert bare.block_position is None and SP.identity_columns(bare, 1)["block"] == cells[0].repeat
