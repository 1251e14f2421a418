"""A configuration means what it says (issue 14), through the real Snakemake:

- changed settings measure new cells and keep the old files; the summary and report show the
  current configuration's rows, the others are named, never averaged; a rerun does nothing;
- returning to an earlier configuration measures nothing and shows its rows again;
- a report-settings change re-renders the report (rerun-triggers [mtime] notwithstanding);
- on the default grid itself (dry runs over the default run's files): `--config seed=7` plans 20 new
  cells, the time-to-target experiment plans its own fp32 cells.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import synth
import yaml
from conftest import REPO, TINY, deep_merge, shared_run, snakemake, subprocess_env

from joulegrid import config as C
from joulegrid import grid as G
from joulegrid import schema as S
from joulegrid.io import write_table

# train + infer of baler_ae, estimate meter (fast), as in tests/workflow/test_local_run.py
BASE = deep_merge(TINY, {"measure": {"meters": ["estimate"]}})


def measure_outputs(proc) -> list[str]:
    """Run files of the measure jobs a (dry) run lists."""
    out = proc.stdout + proc.stderr
    return sorted(set(re.findall(r"output: (\S*runs/\S+\.parquet)", out)))


def run_files(work) -> dict:
    """{run file: (mtime, run_id)} of every run file under work/results/runs."""
    return {
        p: (p.stat().st_mtime_ns, pl.read_parquet(p)["run_id"][0])
        for p in map(Path, G.run_files(work / "results/runs"))
    }


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    return shared_run(tmp_path_factory, "tiny-estimate", BASE)  # the same run as tests/workflow/test_sites.py's tree A


@pytest.fixture
def work(first_run, tmp_path):
    """A copy of the first run's working directory (results, Snakemake's metadata) for one test."""
    w = tmp_path / "w"
    shutil.copytree(first_run, w, symlinks=True)
    return w


@pytest.mark.slow
@pytest.mark.parallel
def test_changed_seed_measures_new_cells_keeps_old_and_shows_current(work):
    cfg = work / "config.yaml"
    before = run_files(work)
    assert len(before) == 2
    old_hash = {G.cell_from_path(str(p)).config_hash for p in before}
    assert len(old_hash) == 1

    snakemake(work, "--cores", "2", "--config", "seed=7", configfile=cfg)
    after = run_files(work)
    assert len(after) == 4, "two new cells next to the two old ones"
    for p, (mtime, rid) in before.items():
        assert after[p] == (mtime, rid), f"{p} was changed"
    new = {G.cell_from_path(str(p)) for p in after if p not in before}
    assert {c.id for c in new} == {G.cell_from_path(str(p)).id for p in before}
    assert {c.config_hash for c in new}.isdisjoint(old_hash) and len({c.config_hash for c in new}) == 1

    summary = pl.read_parquet(work / "results/summary.parquet")
    assert sorted(summary["seed"]) == [7, 7], "seed 7's rows only (seed + repeat 0)"
    assert set(summary["config_hash"]) == {c.config_hash for c in new}
    other = pl.read_parquet(work / "results/summary.other-configs.parquet")
    assert sorted(other["run_id"]) == sorted(rid for _, rid in before.values()) and set(other["seed"]) == {
        yaml.safe_load(C.DEFAULT_CONFIG.read_text())["seed"]
    }
    # the report: seed 7's runs in the metrics, the earlier configuration named apart
    cells = pl.read_csv(work / "results/report/cells.csv")
    assert cells.height == 2 and set(cells["config_hash"]) == {c.config_hash for c in new}
    html = (work / "results/report/index.html").read_text()
    assert "Other configurations (2 run(s))" in html and old_hash.pop() in html

    rerun = snakemake(work, "--cores", "2", "--config", "seed=7", configfile=cfg)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    assert run_files(work) == after

    # back to the first configuration: nothing measured, its rows are current again
    back = snakemake(work, "-n", "--cores", "2", configfile=cfg)
    assert measure_outputs(back) == [] and "aggregate" in back.stdout + back.stderr
    snakemake(work, "--cores", "2", configfile=cfg)
    assert run_files(work) == after
    assert sorted(pl.read_parquet(work / "results/summary.parquet")["run_id"]) == sorted(
        rid for _, rid in before.values()
    )


@pytest.mark.slow
@pytest.mark.parallel
def test_report_settings_change_rerenders_the_report(work):
    cfg = work / "config.yaml"
    index = work / "results/report/index.html"
    html, mtime = index.read_text(), index.stat().st_mtime_ns
    summary_mtime = (work / "results/summary.parquet").stat().st_mtime_ns
    fleet = ["fleet={samples_per_job: 1000000}"]
    dry = snakemake(work, "-n", "--cores", "2", "--config", *fleet, configfile=cfg)
    jobs = dry.stdout + dry.stderr
    assert re.search(r"^report\s+1$", jobs, re.M) and not re.search(r"^(measure|aggregate)\s", jobs, re.M), jobs[-2000:]
    snakemake(work, "--cores", "2", "--config", *fleet, configfile=cfg)
    assert index.stat().st_mtime_ns != mtime and index.read_text() != html
    assert "equal work, 1,000,000 samples per job" in index.read_text()
    assert (work / "results/summary.parquet").stat().st_mtime_ns == summary_mtime, "the summary is not rebuilt"
    again = snakemake(work, "-n", "--cores", "2", "--config", *fleet, configfile=cfg)
    assert "Nothing to be done" in again.stdout + again.stderr
    # a site fact (carbon intensity) of the sites file is a report setting too
    sites = yaml.safe_load((REPO / "config/sites.yaml").read_text())
    sites["local"]["carbon_intensity_g_per_kwh"] = 100.0
    (work / "sites.yaml").write_text(yaml.safe_dump(sites))
    dry = snakemake(work, "-n", "--cores", "2", "--config", *fleet, f"sites_file={work / 'sites.yaml'}", configfile=cfg)
    assert re.search(r"^report\s+1$", dry.stdout + dry.stderr, re.M) and measure_outputs(dry) == []


@pytest.mark.slow
@pytest.mark.parallel
def test_a_run_file_of_another_configuration_is_not_measured_with_the_current_settings(work):
    """Asking Snakemake for a run file whose hash is not the current configuration's is refused."""
    p = next(iter(run_files(work)))
    other = p.with_name(re.sub(r"-[0-9a-f]{16}\.parquet$", "-" + "0" * 16 + ".parquet", p.name))
    proc = snakemake(work, "--cores", "1", str(other.relative_to(work)), configfile=work / "config.yaml", check=False)
    assert (
        proc.returncode != 0
        and "config hash 0000000000000000 is not one of the current configuration's" in proc.stdout + proc.stderr
    )
    assert not other.exists()


# ------------------------------------------------------------------ the default grid, literally
def plan_json(work, *args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "joulegrid", "plan", "--json", *args], cwd=work, capture_output=True,
                          text=True, env=subprocess_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fake_default_run(work):
    """The default grid's 20 run files where `snakemake` (no arguments) writes them. Synthetic rows
    (tests/synth.py): the dry runs below only look at which files exist."""
    plan = plan_json(work)
    assert len(plan["cells"]) == 20
    for path in plan["cells"]:
        cell = G.cell_from_path(path)
        write_table(S.to_table([synth.row(cell, config_hash=cell.config_hash)]), work / path)
    return plan


@pytest.mark.slow
def test_default_run_then_seed_7_plans_20_new_cells_and_keeps_the_old(tmp_path):
    default = fake_default_run(tmp_path)
    files = {p: (tmp_path / p).stat().st_mtime_ns for p in default["cells"]}
    assert measure_outputs(snakemake(tmp_path, "-n", "--cores", "2")) == []
    seed7 = snakemake(tmp_path, "-n", "--cores", "2", "--config", "seed=7")
    planned = measure_outputs(seed7)
    assert len(planned) == 20 and set(planned).isdisjoint(default["cells"])
    assert planned == sorted(plan_json(tmp_path, "--config", "seed=7")["cells"])
    assert {G.cell_from_path(p).id for p in planned} == {G.cell_from_path(p).id for p in default["cells"]}
    assert files == {p: (tmp_path / p).stat().st_mtime_ns for p in default["cells"]}


@pytest.mark.slow
def test_time_to_target_experiment_after_a_default_run_measures_its_own_fp32_cells(tmp_path):
    default = fake_default_run(tmp_path)
    exp = REPO / "config/experiments/time_to_target.yaml"
    planned = measure_outputs(snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(exp)))
    cells = [G.cell_from_path(p) for p in planned]
    fp32 = [c for c in cells if c.precision == "fp32"]
    assert len(fp32) == 6, "fp32 x 2 workloads x 3 repeats, measured with the experiment's settings"
    assert not set(planned) & set(default["cells"])
    assert {c.config_hash for c in cells}.isdisjoint({G.cell_from_path(p).config_hash for p in default["cells"]})
    assert len(cells) == len(plan_json(tmp_path, "--configfile", str(exp))["cells"]) == 30
