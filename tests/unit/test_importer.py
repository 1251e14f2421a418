"""joulegrid import's checks on small trees of synthetic run files (the real trees of real runs:
tests/workflow/test_sites.py); and the runs stamp's manifest (grid.run_manifest)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import synth

from joulegrid import grid as G
from joulegrid import schema as S
from joulegrid.importer import ImportRefused, import_trees, parse_renames
from joulegrid.io import write_table


def tree(
    root: Path, site: str = "slurm", hostname: str = "node1", scheduler: str = "slurm", n: int = 2, skip: int = 0
) -> list[dict]:
    cells = synth.grid_cells(site=site, phases=("train",))[skip : skip + n]
    rows = [synth.row(c, scheduler=scheduler, hostname=hostname) for c in cells]
    synth.write_runs(root, rows)
    return rows


def test_a_different_file_at_the_same_path_is_never_overwritten(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    mine = tree(here)
    theirs = [dict(r, run_id=r["run_id"][::-1]) for r in mine]  # the same cells, other runs
    synth.write_runs(there, theirs)
    before = {p: Path(p).read_bytes() for p in G.run_files(here / "runs")}
    res = import_trees([there], here)
    assert (
        res.taken == []
        and len(res.skipped) == 2
        and all("already at" in why and "never overwritten" in why for _, why in res.skipped)
    )
    assert {p: Path(p).read_bytes() for p in G.run_files(here / "runs")} == before


def test_the_same_run_twice_in_the_sources_is_taken_once(tmp_path):
    a, b, here = tmp_path / "a", tmp_path / "b", tmp_path / "here"
    rows = tree(a, n=1)
    synth.write_runs(b, [dict(rows[0], config_hash="1" * 16)])  # the same run_id under another name
    res = import_trees([a, b], here)
    assert len(res.taken) == 1 and len(res.skipped) == 1 and "taken once" in res.skipped[0][1]


def test_another_schema_version_is_skipped_with_the_reason(tmp_path):
    src, here = tmp_path / "src", tmp_path / "here"
    rows = tree(src, n=1)
    old = src / "runs" / f"{rows[0]['cell_id']}-{rows[0]['config_hash']}.parquet"
    t = pq.read_table(old)
    os.unlink(old)
    write_table(t.replace_schema_metadata({b"joulegrid.schema_version": str(S.SCHEMA_VERSION - 1).encode()}), old)
    res = import_trees([src], here)
    assert res.taken == [] and f"schema version {S.SCHEMA_VERSION - 1}" in res.skipped[0][1]


def test_a_cluster_site_spans_nodes_but_not_schedulers(tmp_path):
    here = tmp_path / "here"
    tree(here, hostname="node1", n=1)
    tree(tmp_path / "more", hostname="node7", skip=1)  # the same Slurm site, another node: fine
    assert len(import_trees([tmp_path / "more"], here).taken) == 2
    tree(tmp_path / "laptop", hostname="node1", scheduler="local", skip=3, n=1)
    with pytest.raises(ImportRefused, match="two different sites under one name.*--as-site slurm=<new name>"):
        import_trees([tmp_path / "laptop"], here)


def test_bad_as_site_values_are_refused():
    with pytest.raises(ImportRefused, match="not a site name"):
        parse_renames(["../x"])
    with pytest.raises(ImportRefused, match="either one NAME"):
        parse_renames(["a", "b=c"])
    assert parse_renames(["a=b", "c=d"]) == {"a": "b", "c": "d"} and parse_renames(["x"]) == "x"


def test_nothing_to_import_says_what_to_give(tmp_path):
    with pytest.raises(ImportRefused, match="holds no run files"):
        import_trees([tmp_path], tmp_path / "here")
    with pytest.raises(ImportRefused, match="does not exist"):
        import_trees([tmp_path / "nope"], tmp_path / "here")


def test_run_manifest_lists_what_the_grid_does_not_make(tmp_path):
    runs = tmp_path / "runs"
    mine = ["local/baler_ae/train/cpu/fp32/bs256/r0-0123456789abcdef.parquet"]
    for rel in mine:
        (runs / rel).parent.mkdir(parents=True)
        (runs / rel).write_bytes(b"x")
    assert G.run_manifest(runs, mine) == "" and G.run_manifest(tmp_path / "absent") == ""
    copied = runs / "slurm/baler_ae/infer/cpu/fp32/bs256/r0-0123456789abcdef.parquet"
    copied.parent.mkdir(parents=True)
    copied.write_bytes(b"yy")
    os.utime(copied, ns=(1, 10**18))  # an old mtime, as rsync -a keeps it
    (runs / "slurm" / ".r1-0123456789abcdef.parquet.x.tmp").write_bytes(b"")  # an unfinished write: not listed
    (runs / "notes.parquet").write_bytes(b"")  # not a run file
    assert G.run_manifest(runs, mine) == f"slurm/baler_ae/infer/cpu/fp32/bs256/r0-0123456789abcdef.parquet 2 {10**18}\n"


def test_dry_run_copies_nothing_and_old_new_renames_one_site_of_several(tmp_path):
    src, here = tmp_path / "src", tmp_path / "here"
    tree(src, site="slurm", n=1)
    tree(src, site="htcondor", scheduler="htcondor", n=1)
    res = import_trees([src], here, dry_run=True)
    assert len(res.taken) == 2 and not (here / "runs").exists()
    res = import_trees([src], here, as_site=parse_renames(["htcondor=condor2"]))
    assert sorted(res.sites) == ["condor2", "slurm"]
    got = {G.cell_from_path(p).site: pq.read_table(p).to_pylist()[0] for p in G.run_files(here / "runs")}
    assert (
        got["condor2"]["site"] == "condor2"
        and got["condor2"]["cell_id"].startswith("condor2/")
        and got["slurm"]["site"] == "slurm"
    )
    with pytest.raises(ImportRefused, match="several sites"):
        import_trees([src], tmp_path / "elsewhere", as_site="x")
