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
from joulegrid import spec as SP
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
def test_a_new_or_corrected_intensity_series_reaggregates_and_rerenders_measuring_nothing(work):
    """A site's intensity series is an input of rule aggregate through <results>/.stamps/carbon.json (its sha256):
    adding one, then correcting one value, rebuilds the summary's carbon columns and the report, and measures nothing
    (docs/sites.md, "Carbon intensity over time")."""
    cfg = work / "config.yaml"
    series = work / "series.csv"
    shutil.copy(REPO / "config/carbon/synthetic-daily-shape.csv", series)
    sites = yaml.safe_load((REPO / "config/sites.yaml").read_text())
    sites["local"]["carbon_intensity"] = {"series": str(series), "kind": "average", "basis": "direct", "source": "t"}
    (work / "sites.yaml").write_text(yaml.safe_dump(sites))
    conf = ["--config", f"sites_file={work / 'sites.yaml'}"]

    def planned() -> str:
        dry = snakemake(work, "-n", "--cores", "2", *conf, configfile=cfg)
        assert measure_outputs(dry) == [], "nothing is measured again"
        return dry.stdout + dry.stderr

    def series_column() -> set:
        return set(pl.read_parquet(work / "results/summary.parquet")["carbon_series"])

    before = run_files(work)
    jobs = planned()
    assert re.search(r"^aggregate\s+1$", jobs, re.M) and re.search(r"^report\s+1$", jobs, re.M), jobs[-2000:]
    snakemake(work, "--cores", "2", *conf, configfile=cfg)
    first = series_column()
    assert len(first) == 1 and next(iter(first)).startswith(f"{series} (sha256 ")
    assert "Intensity series" in (work / "results/report/index.html").read_text()
    assert "Nothing to be done" in planned()
    series.write_text(series.read_text().replace("2025-01-06T00:00Z,166.0", "2025-01-06T00:00Z,166.5"))
    jobs = planned()
    assert re.search(r"^aggregate\s+1$", jobs, re.M) and re.search(r"^report\s+1$", jobs, re.M), jobs[-2000:]
    snakemake(work, "--cores", "2", *conf, configfile=cfg)
    assert series_column() != first and run_files(work) == before


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
    proc = subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", "--json", *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fake_default_run(work):
    """The default grid's 60 run files (20 cells x 3 repeats) where `snakemake` (no arguments) writes them.
    Synthetic rows (tests/synth.py): the dry runs below only look at which files exist."""
    plan = plan_json(work)
    assert len(plan["cells"]) == 60
    for path in plan["cells"]:
        cell = G.cell_from_path(path)
        write_table(S.to_table([synth.row(cell, config_hash=cell.config_hash)]), work / path)
    return plan


@pytest.mark.slow
def test_default_run_then_seed_7_plans_60_new_runs_and_keeps_the_old(tmp_path):
    default = fake_default_run(tmp_path)
    files = {p: (tmp_path / p).stat().st_mtime_ns for p in default["cells"]}
    assert measure_outputs(snakemake(tmp_path, "-n", "--cores", "2")) == []
    seed7 = snakemake(tmp_path, "-n", "--cores", "2", "--config", "seed=7")
    planned = measure_outputs(seed7)
    assert len(planned) == 60 and set(planned).isdisjoint(default["cells"])
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


PIN_X86 = "precision_options={int8: {backend: x86}}"


@pytest.mark.slow
def test_pinning_int8_after_a_default_run_measures_the_int8_cells_only(tmp_path):
    """Issue 29 (docs/workloads.md, docs/configuration.md "A cell's identity"): `joulegrid plan --config
    'precision_options={int8: {backend: x86}}'` after a default run plans the 4 int8 cells (x 3 repeats) anew and keeps
    the fp32 and bf16 cells (their measurement does not depend on the int8 pin); `snakemake -n` agrees,
    and the int8 cells' jobs find their own hash in the grid snapshot."""
    default = fake_default_run(tmp_path)
    # what the default run also left: the dataset, the reference models (placeholders: a dry run only looks
    # at which files exist) and the cells' input stamps (the cell_inputs rule itself)
    cfg, sites = C.load(base_dir=tmp_path)
    sb = SP.SpecBuilder(cfg, sites)
    for w in cfg["grid"]["workloads"]:
        for f in (sb.data_path(w), sb.model_path(w)):
            (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / f).touch()
    stamps = [f"results/.grid/{h}/{ph}.inputs.json" for h in sb.hashes().values() for ph in ("train", "infer")]
    snakemake(tmp_path, "--cores", "1", *stamps)
    assert measure_outputs(snakemake(tmp_path, "-n", "--cores", "2")) == []
    proc = subprocess.run([sys.executable, "-m", "joulegrid", "plan", "--config", PIN_X86], cwd=tmp_path,
                          capture_output=True, text=True, env=subprocess_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # 20 cells x 3 repeats; the int8 exclusions count per repeat too
    assert "60 cell(s) in the grid, 12 excluded; 48 already measured, 12 to measure" in proc.stdout, proc.stdout
    pinned = plan_json(tmp_path, "--config", PIN_X86)
    todo = sorted(set(pinned["cells"]) - set(default["cells"]))
    assert [G.cell_from_path(p).precision for p in todo] == ["int8"] * 12
    h8 = {G.cell_from_path(p).config_hash for p in todo}
    assert len(h8) == 2  # one per workload, printed beside the workload's hash
    for w, v in pinned["workloads"].items():
        if w in ("baler_ae", "jet_tagger"):
            assert v["config_hash"] == default["workloads"][w]["config_hash"]
            assert v["precisions"]["int8"]["identity"]["precision_options"]["int8"]["backend"] == "x86"
            assert (
                v["precisions"]["int8"]["config_hash"] in h8
                and f"(int8 {v['precisions']['int8']['config_hash']})" in proc.stdout
            )
    planned = measure_outputs(snakemake(tmp_path, "-n", "--cores", "2", "--config", PIN_X86))
    assert planned == todo
    cfg, sites = C.load(config_args=["results=" + str(tmp_path / "results"), PIN_X86], base_dir=tmp_path)
    sb = SP.SpecBuilder(cfg, sites)
    spec = SP.cell_spec_from_snapshot(sb.snapshot_path(write=True), todo[0]).spec
    assert spec.config_hash == G.cell_from_path(todo[0]).config_hash
