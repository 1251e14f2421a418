"""grid.repeats: auto through real Snakemake: `joulegrid plan --pilot` measures a pilot into <results>/pilot and
sizes the repeats from its noise; `joulegrid plan` and `snakemake -n` list the same cells; after the run a
second `snakemake` plans nothing although the new runs would give another design (it is frozen in
<results>/design.json); `joulegrid plan --redesign` replans from the runs measured since."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import yaml
from analysis import fake_meter as F
from conftest import TINY, deep_merge, snakemake, subprocess_env

from joulegrid.analysis.design import Design

# the pilot measures; its noise is then replaced by a known one (detect_pct 1000 copes with a loaded host)
pytestmark = [pytest.mark.slow, pytest.mark.parallel]


def plan(work, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", "--configfile", str(work / "config.yaml"), *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=900,
    )


def design(work) -> Design:
    return Design.from_json((work / "results/design.json").read_text())


def test_pilot_then_auto_repeats_plan_and_snakemake_agree_and_converge(tmp_path):
    work = tmp_path
    # inference only; the pilot's tiny windows on a shared host scatter by tens of %: ask for a change that any
    # noise up to a CV of ~200 % can detect
    cfg = deep_merge(TINY, {"grid": {"phases": ["infer"], "repeats": "auto"}, "design": {"detect_pct": 1000}})
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))

    pilot = plan(work, "--pilot", "--pilot-repeats", "3", "--cores", "2")
    assert pilot.returncode == 0, pilot.stdout[-3000:] + pilot.stderr[-3000:]
    assert len(list((work / "results/pilot/runs").rglob("r*.parquet"))) == 3  # one cell x 3 repeats, apart
    assert not (work / "results/runs").exists()
    (g,) = design(work).groups
    assert (g.source, g.runs, g.nu) == ("pilot runs", 3, 2.0)
    assert g.sigma_u == pytest.approx(g.sigma * math.sqrt(2 / (-2 * math.log(0.8))))  # chi2(2) in closed form
    assert f"design: {design(work).repeats} repeat(s) per cell" in pilot.stdout

    # A known noise instead of this host's, for a short and deterministic run: earlier runs of the same workload
    # (160 runs at CV 5 %) and a 50 % change to detect -> 3 repeats. A changed design.* key replans.
    shutil.rmtree(work / "results/pilot")
    earlier = F.runs(np.random.default_rng(5), 40, 4, {"fp32": (1.0, 0.05)}, workload_prefix="x")
    earlier.with_columns(workload=pl.lit("baler_ae")).write_parquet(work / "results/summary.parquet")
    cfg["design"] = {"detect_pct": 50}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))

    planned = json.loads(plan(work, "--json").stdout)["cells"]
    dry = snakemake(work, "-n", "--cores", "2", configfile=work / "config.yaml")
    d = design(work)  # written by snakemake's dry run (the design keys changed)
    assert d.repeats == 3 and d.detect_pct == 50 and d.groups[0].hardware == "Fake CPU"
    listed = sorted(set(re.findall(r"output: (\S*runs/\S+\.parquet)", dry.stdout + dry.stderr)))
    assert listed == sorted(planned) and len(planned) == 3  # fp32 bs256 infer x the designed repeats

    snakemake(work, "--cores", "2", configfile=work / "config.yaml")
    assert len(list((work / "results/runs").rglob("r*.parquet"))) == 3
    # the summary now holds this host's 3 runs, a different noise: the design stays, nothing is left to do
    again = snakemake(work, "-n", "--cores", "2", configfile=work / "config.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:]
    assert design(work) == d

    # asked, the plan sizes again from the runs measured since (this host's CPU model, not the fake one)
    re_ = plan(work, "--redesign")
    assert re_.returncode in (0, 2), re_.stderr  # 2: this host's 3 runs too noisy for a 50 % change
    if re_.returncode == 0:
        assert "replanned into" in re_.stdout and design(work).groups[0].hardware != "Fake CPU"
    else:
        assert "config key design.detect_pct" in re_.stderr and design(work) == d
