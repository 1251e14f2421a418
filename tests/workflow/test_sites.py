"""Campaigns across sites (issue 15, sections 1-2), with real result trees of real Snakemake runs:

- tree A: the tiny grid at site local; tree B: the same grid as site slurm (run locally: its rows say
  scheduler local), with hotspots; tree C: the grid with another seed (another configuration) at a
  site also named local, on another machine (a UTS namespace whose hostname is laptop2).
- Copying B's runs/slurm/ into A (old mtimes, as rsync -a keeps them) and running snakemake rebuilds
  the summary and the report with both sites; a rerun does nothing.
- `joulegrid import` does the same with its checks: identical files skipped and counted, a site name
  taken by another machine refused (nothing copied) until --as-site, other configurations named.
- The report's Sites section: its figures against the rows, derived here independently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import BIN, REPO, SNAKEFILE, TINY, deep_merge, shared_run, snakemake, subprocess_env

from joulegrid import grid as G
from joulegrid.analysis import metrics as M
from joulegrid.analysis.aggregate import aggregate, read_current
from joulegrid.analysis.report import build_report
from joulegrid.analysis.settings import AnalysisSettings

BASE = deep_merge(TINY, {"measure": {"meters": ["estimate"]}})


def _run_tree(work: Path, cfg: dict, hostname: str | None = None) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    if hostname is None:
        snakemake(work, "--cores", "2", configfile=work / "config.yaml")
        return work
    # another machine: a UTS namespace with its own hostname (unprivileged: a user namespace maps us to root in it)
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        "--cores",
        "2",
    ]
    wrapped = [
        "unshare",
        "--user",
        "--map-root-user",
        "--uts",
        "sh",
        "-c",
        f'hostname {hostname} && exec "$@"',
        "sh",
        *cmd,
    ]
    try:
        proc = subprocess.run(wrapped, capture_output=True, text=True, timeout=900, env=subprocess_env())
    except FileNotFoundError:
        pytest.skip("unshare (util-linux) not installed: no second machine to run on")
    if proc.returncode != 0 and "hostname" in proc.stderr and not (work / "results" / "runs").exists():
        pytest.skip(f"cannot make a UTS namespace here: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    a = shared_run(tmp_path_factory, "tiny-estimate", BASE)  # the same run as tests/workflow/test_config_identity.py's
    b = _run_tree(root / "B", deep_merge(BASE, {"site": "slurm", "measure": {"hotspots": "first_repeat"}}))
    return {"A": a, "B": b, "root": root}


@pytest.fixture(scope="module")
def tree_c(trees):
    return _run_tree(trees["root"] / "C", deep_merge(BASE, {"seed": 7}), hostname="laptop2")


def rows(results: Path) -> pl.DataFrame:
    """Every run file's row under results/runs, read one by one (not through aggregate)."""
    return pl.concat([pl.read_parquet(f) for f in G.run_files(results / "runs")], how="vertical_relaxed")


@pytest.fixture
def work(trees, tmp_path):
    """A copy of tree A's working directory (results and Snakemake's metadata; times kept)."""
    w = tmp_path / "w"
    shutil.copytree(trees["A"], w, symlinks=True)
    return w


def jg_import(work: Path, *args: str):
    return subprocess.run(
        [str(BIN / "joulegrid"), "import", *args],
        capture_output=True,
        text=True,
        cwd=work,
        env=subprocess_env(),
        timeout=300,
    )


@pytest.mark.parallel
def test_copied_site_folder_merges_with_the_main_command(trees, work):
    a_ids = set(rows(trees["A"] / "results")["run_id"])
    b_ids = set(rows(trees["B"] / "results")["run_id"])
    summary = work / "results" / "summary.parquet"
    assert set(pl.read_parquet(summary)["run_id"]) == a_ids
    # copied as rsync -a does: the files keep the other site's modification times, here those of a site
    # that finished an hour before this one (older than every output here: mtime triggers see nothing)
    shutil.copytree(trees["B"] / "results" / "runs" / "slurm", work / "results" / "runs" / "slurm")
    copied = G.run_files(work / "results" / "runs" / "slurm")
    earlier = min(Path(f).stat().st_mtime for f in G.run_files(work / "results" / "runs" / "local")) - 3600
    for f in copied:
        os.utime(f, (earlier, earlier))
    assert len(copied) == 2 and all(Path(f).stat().st_mtime < summary.stat().st_mtime for f in copied)

    proc = snakemake(work, "--cores", "2", configfile=work / "config.yaml")
    assert "rule measure" not in proc.stdout + proc.stderr  # nothing measured: the copied rows are merged
    df = pl.read_parquet(summary)
    assert set(df["run_id"]) == a_ids | b_ids and sorted(set(df["site"])) == ["local", "slurm"]
    page = (work / "results" / "report" / "index.html").read_text()
    assert "<h2 id='sites'>Sites</h2>" in page and "run it at <b>" in page
    again = snakemake(work, "--cores", "2", configfile=work / "config.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.parallel
def test_import_takes_another_tree_with_its_checks(trees, work):
    b = trees["B"] / "results"
    before = set(G.run_files(work / "results" / "runs"))
    proc = jg_import(work, str(b))
    assert proc.returncode == 0, proc.stderr
    assert "took 2 run file(s) (slurm: 2)" in proc.stderr, proc.stderr
    for f in map(Path, G.run_files(b / "runs")):
        rel = f.relative_to(b)
        assert (work / "results" / rel).read_bytes() == f.read_bytes()
        hs = b / "hotspots" / rel.relative_to("runs")
        assert hs.is_file() and (work / "results" / hs.relative_to(b)).read_bytes() == hs.read_bytes()
        log = b / "logs" / rel.with_suffix(".log")  # logs/runs/<file id>.log
        assert (work / "results" / log.relative_to(b)).read_bytes() == log.read_bytes()
    assert len(set(G.run_files(work / "results" / "runs")) - before) == 2

    again = jg_import(work, str(b / "runs" / "slurm"))
    assert (
        again.returncode == 0
        and "took 0 run file(s)" in again.stderr
        and "skipped 2 run file(s) already there" in again.stderr
    ), again.stderr

    snakemake(work, "--cores", "2", configfile=work / "config.yaml")
    df = pl.read_parquet(work / "results" / "summary.parquet")
    assert set(df["run_id"]) == set(rows(trees["A"] / "results")["run_id"]) | set(rows(b)["run_id"])


@pytest.mark.parallel
def test_import_skips_what_it_cannot_read_and_says_why(trees, work, tmp_path):
    src = tmp_path / "other" / "results"
    shutil.copytree(trees["B"] / "results" / "runs", src / "runs")
    good, bad = map(Path, G.run_files(src / "runs"))
    bad.chmod(0o644)
    bad.write_bytes(bad.read_bytes()[:500])  # truncated in transfer
    proc = jg_import(work, str(src))
    assert proc.returncode == 0, proc.stderr
    assert (
        "took 1 run file(s) (slurm: 1)" in proc.stderr and f"skipped {bad}: not a readable Parquet file" in proc.stderr
    ), proc.stderr
    assert not (work / "results" / bad.relative_to(src)).exists()


@pytest.mark.parallel
def test_import_refuses_a_site_name_of_another_machine_until_renamed(trees, tree_c, work):
    c = tree_c / "results"
    c_rows = rows(c)
    assert set(c_rows["hostname"]) == {"laptop2"} and set(c_rows["site"]) == {"local"}
    before = sorted(G.run_files(work / "results" / "runs"))
    proc = jg_import(work, str(c))
    assert proc.returncode == 2
    assert "two different sites under one name" in proc.stderr and "--as-site local=<new name>" in proc.stderr, (
        proc.stderr
    )
    assert "laptop2" in proc.stderr and sorted(G.run_files(work / "results" / "runs")) == before  # nothing copied

    proc = jg_import(work, str(c), "--as-site", "laptop2")
    assert proc.returncode == 0, proc.stderr
    chash = c_rows["config_hash"][0]
    assert (
        "took 2 run file(s) (laptop2: 2)" in proc.stderr
        and f"another configuration (config hash {chash})" in proc.stderr
    ), proc.stderr
    got = rows(work / "results").filter(pl.col("site") == "laptop2")
    assert sorted(got["run_id"]) == sorted(c_rows["run_id"])
    assert all(cid.startswith("laptop2/") for cid in got["cell_id"]) and set(got["hostname"]) == {"laptop2"}
    moved = G.run_files(work / "results" / "runs" / "laptop2")
    assert len(moved) == 2 and all(G.cell_from_path(f).site == "laptop2" for f in moved)
    # everything else of the row is kept
    for r in got.iter_rows(named=True):
        orig = c_rows.filter(pl.col("run_id") == r["run_id"]).row(0, named=True)
        assert {k: v for k, v in r.items() if k not in ("site", "cell_id")} == {
            k: v for k, v in orig.items() if k not in ("site", "cell_id")
        }

    snakemake(work, "--cores", "2", configfile=work / "config.yaml")
    summary = pl.read_parquet(work / "results" / "summary.parquet")
    other = pl.read_parquet(work / "results" / "summary.other-configs.parquet")
    assert set(summary["run_id"]) == set(rows(trees["A"] / "results")["run_id"])  # never averaged with seed 7's
    assert set(other["run_id"]) == set(c_rows["run_id"])
    page = (work / "results" / "report" / "index.html").read_text()
    assert "id='other-configs'" in page and "laptop2" in page


@pytest.mark.parallel
def test_sites_section_figures_against_the_rows(trees, tmp_path):
    runs = tmp_path / "results" / "runs"
    for t in ("A", "B"):
        shutil.copytree(trees[t] / "results" / "runs", runs, dirs_exist_ok=True)
    current = read_current(trees["A"] / "results" / ".stamps" / "current.json")
    aggregate(str(runs), str(tmp_path / "results" / "summary.parquet"), current=current)
    df = pl.read_parquet(tmp_path / "results" / "summary.parquet")
    sites = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())

    comp = M.site_comparison(df, sites)
    # expected, from the run files' rows with plain Python
    raw = [pq.read_table(f).to_pylist()[0] for t in ("A", "B") for f in G.run_files(trees[t] / "results" / "runs")]
    assert comp.height == len(raw) == 4
    expected = {}
    for r in raw:
        i, pue = sites[r["site"]]["carbon_intensity_g_per_kwh"], sites[r["site"]]["pue"]
        e = r["energy_j"] / r["n_samples"]
        start = r["submit_time"] or r["job_start_time"] or r["started_at"]
        turnaround = (r["finished_at"] - start).total_seconds()
        expected[(r["phase"], r["site"])] = {
            "energy_per_sample_j": e,
            "co2_per_1k_samples_g": e * 1000 / 3.6e6 * pue * i,
            "intensity_g_per_kwh": i,
            "pue": pue,
            "time_per_sample_s": r["wall_s"] / r["n_samples"],
            "job_wall_s": r["job_wall_s"],
            "job_energy_j": r["job_energy_j"],
            "job_time_outside_phase_fraction": r["job_time_outside_phase_fraction"],
            "job_energy_outside_phase_fraction": r["job_energy_outside_phase_fraction"],
            "batch_efficiency": r["wall_s"] / turnaround,
            "queue_wait_s": r["queue_wait_s"],
        }
    for row in comp.iter_rows(named=True):
        exp = expected[(row["phase"], row["site"])]
        for k, v in exp.items():
            assert row[k] == (pytest.approx(v, rel=1e-9) if v is not None else None), (row["phase"], row["site"], k)
    assert {r["scheduler"] for r in comp.iter_rows(named=True)} == {"local"}

    where = M.where_to_run(comp)
    for phase in ("train", "infer"):
        by_site = {s: expected[(phase, s)]["co2_per_1k_samples_g"] for s in ("local", "slurm")}
        best = min(by_site, key=by_site.get)
        w = where.filter(pl.col("phase") == phase).sort("rank")
        assert w["site"].to_list() == sorted(by_site, key=by_site.get) and w["common_cells"].to_list() == [1, 1]
        worst = max(by_site, key=by_site.get)
        assert w["vs_best"][1] == pytest.approx(by_site[worst] / by_site[best], rel=1e-9)

    index = Path(
        build_report(
            str(tmp_path / "results" / "summary.parquet"),
            str(tmp_path / "report"),
            settings=AnalysisSettings(sites=sites),
        )
    )
    page = index.read_text()
    for phase in ("train", "infer"):
        by_site = {s: expected[(phase, s)]["co2_per_1k_samples_g"] for s in ("local", "slurm")}
        best = min(by_site, key=by_site.get)
        assert f"<b>baler_ae {phase}</b>: run it at <b>{best}</b> — {by_site[best]:.3g} g CO2 per 1,000 samples" in page
