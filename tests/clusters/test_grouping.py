"""Many short cells per cluster job: `group-components: [cells=N]` (docs/sites.md, "Many short cells").

Dry runs show the group jobs Snakemake would submit; on the local test clusters (when up) a grouped
run really submits one job for N cells, and the cells inside it are measured one after the other.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from joulegrid import executors as E

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import conftest as C
from test_schedulers import CONDOR_FAST, SLURM_FAST, _cluster_state, _condor_config

REPO = Path(__file__).resolve().parents[2]
CELLS = 5  # repeats of one cpu train cell: 5 measure jobs
GRID = {"grid": {"phases": ["train"], "repeats": CELLS}, "job": {"mem_mb": 1000, "runtime_min": 10}}
SITES = yaml.safe_load((REPO / "config" / "sites.yaml").read_text())


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump(C.deep_merge(C.TINY, GRID)))
    return cfg


def _group_jobs(out: str) -> list[list[str]]:
    """The output files of the jobs of each 'Group job cells' block of a dry run."""
    groups: list[list[str]] = []
    inside = False
    for line in out.splitlines():
        if "Group job cells" in line:
            groups.append([])
            inside = True
        elif re.match(r"^(\[.*\] )?(local)?rule \w+:", line):
            inside = False  # a job outside any group
        elif inside and (m := re.match(r"^\s+output: (\S+)$", line)):
            groups[-1].append(m.group(1))
    return groups


# ------------------------------------------------------------------ no cluster needed
def test_cells_per_group_reads_group_components():
    assert E.cells_per_group({}) == 1 and E.cells_per_group(None) == 1
    assert E.cells_per_group({"cells": 20}) == 20
    assert E.cells_per_group({"cells": 1}) == 1 and E.cells_per_group({"other": 5}) == 1


def test_group_flavour_covers_the_whole_group():
    lx = SITES["lxplus"]
    one = E.job_resources("lxplus", lx, 2000, 15)
    grouped = E.job_resources("lxplus", lx, 2000, 15, group_size=lambda: 8)  # 8 x 15 = 120 min
    assert one["classad_JobFlavour"](None, 1) == "espresso"
    assert grouped["classad_JobFlavour"](None, 1) == "longlunch"
    assert grouped["classad_JobFlavour"](None, 2) == "workday"  # retries: attempt x the group's runtime
    assert grouped["runtime"](None, 1) == 15  # per cell: Snakemake sums it over the group (Slurm -t)


def test_group_problem_refuses_groups_longer_than_any_flavour_and_warns_on_unknown_groups():
    lx = SITES["lxplus"]  # longest flavour: nextweek, 10080 min
    assert E.group_problem("lxplus", lx, 60, {"cells": 168}) is None
    kind, msg = E.group_problem("lxplus", lx, 60, {"cells": 169})
    assert kind == "error" and "cells=169" in msg and "at most cells=168" in msg and "job.runtime_min" in msg
    assert E.group_problem("slurm", SITES["slurm"], 60, {"cells": 10**4}) is None  # no flavours: -t is the sum
    kind, msg = E.group_problem("slurm", SITES["slurm"], 60, {"cell": 20})
    assert kind == "warning" and "cell" in msg and "cells=N" in msg
    assert E.group_problem("slurm", SITES["slurm"], 60, {"mine": 2}, {"aggregate": "mine"}) is None


def test_dry_run_groups_cells_only_with_group_components(tmp_path):
    cfg = _config(tmp_path)
    plain = C.snakemake(tmp_path, "-n", "--cores", "2", configfile=cfg)
    assert "Group job" not in plain.stdout + plain.stderr
    grouped = C.snakemake(tmp_path, "-n", "--cores", "2", "--group-components", "cells=2", configfile=cfg)
    out = grouped.stdout + grouped.stderr
    groups = _group_jobs(out)
    # 5 cells in groups of at most 2: 3 group jobs holding every cell once
    assert sorted(len(g) for g in groups) == [1, 2, 2], out[-4000:]
    files = [f for g in groups for f in g]
    assert len(set(files)) == CELLS and all("/runs/local/baler_ae/train/cpu/" in f for f in files)
    assert out.count("Group job cells") == 3


# ------------------------------------------------------------------ real clusters
def _grouped_run(tmp_path: Path, profile: str, fast: list[str], env: dict | None = None):
    import polars as pl

    cfg = _config(tmp_path)
    C.snakemake(
        tmp_path,
        "--profile",
        str(REPO / "profiles" / profile),
        *fast,
        "--group-components",
        f"cells={CELLS}",
        configfile=cfg,
        timeout=900,
        env=env,
    )
    files = sorted((tmp_path / "results" / "runs" / profile).rglob("*.parquet"))
    assert len(files) == CELLS, files
    return pl.read_parquet(files).sort("started_at")


def _check_one_job_one_cell_at_a_time(df, scheduler: str):
    assert df["scheduler"].to_list() == [scheduler] * CELLS
    assert df["status"].to_list() == ["ok"] * CELLS, df.select("cell_id", "error_message").to_dicts()
    # one submission for all cells ...
    assert df["job_id"].null_count() == 0 and df["job_id"].n_unique() == 1, df["job_id"].to_list()
    # ... sized for one cell (Snakemake layers the group by energy_meter=1: threads of one cell)
    assert df["alloc_cpus"].to_list() == [1] * CELLS and df["torch_num_threads"].to_list() == [1] * CELLS
    # ... whose cells were measured one after the other (the host's meters see one cell at a time)
    starts, ends = df["started_at"].to_list(), df["finished_at"].to_list()
    for i in range(1, CELLS):
        assert starts[i] >= ends[i - 1], df.select("cell_id", "started_at", "finished_at").to_dicts()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parallel
def test_grouped_run_through_slurm(tmp_path):
    up, why = _cluster_state("slurm")
    if not up:
        pytest.skip(why)
    _check_one_job_one_cell_at_a_time(_grouped_run(tmp_path, "slurm", SLURM_FAST), "slurm")


@pytest.mark.slow
@pytest.mark.htcondor
@pytest.mark.parallel
def test_grouped_run_through_htcondor(tmp_path):
    # HTCondor does not pin a job to its CPUs: without joulegrid's energy_meter inside jobs
    # (common.smk) the group job's snakemake ran two of these cells at once.
    up, why = _cluster_state("condor")
    if not up:
        pytest.skip(why)
    df = _grouped_run(tmp_path, "htcondor", CONDOR_FAST, env={"CONDOR_CONFIG": _condor_config()})
    _check_one_job_one_cell_at_a_time(df, "htcondor")
