"""grid.repeats: auto through real Snakemake: `joulegrid plan --pilot` measures a pilot into <results>/pilot and
sizes the repeats from its noise; `joulegrid plan` and `snakemake -n` list the same cells; after the run a
second `snakemake` plans nothing although the runs moved the noise estimate (the design is frozen in
<results>/design.json); `joulegrid plan --redesign` replans from the runs measured since."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import yaml
from conftest import TINY, deep_merge, snakemake, subprocess_env

from joulegrid.analysis.design import Design
from joulegrid.analysis.stats import noncentrality

pytestmark = pytest.mark.slow


def plan(work, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "joulegrid", "plan", "--configfile", str(work / "config.yaml"), *args],
                          cwd=work, capture_output=True, text=True, env=subprocess_env(), timeout=900)  # fmt: skip


def design(work) -> Design:
    return Design.from_json((work / "results/design.json").read_text())


def test_pilot_then_auto_repeats_plan_and_snakemake_agree_and_converge(tmp_path):
    work = tmp_path
    # inference only (the reference model is trained once per results folder); the pilot's tiny windows on a shared
    # host can scatter by tens of %: first ask for a change any noise up to CV ~200 % can detect
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

    # The pilot's noise on this (shared, tiny-window) host decides the repeats. For a short test, ask for the
    # change that 3 repeats detect at that noise: power(3) >= 0.8 needs log(1 + p) >= lam(df 2) sigma_u sqrt(2/3).
    # A changed design.* key replans the frozen design.
    lam = float(noncentrality([2], 0.05, 0.8)[0])
    cfg["design"] = {"detect_pct": round(100 * (math.exp(1.02 * lam * g.sigma_u * math.sqrt(2 / 3)) - 1), 3)}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))

    planned = json.loads(plan(work, "--json").stdout)["cells"]
    dry = snakemake(work, "-n", "--cores", "2", configfile=work / "config.yaml")
    d = design(work)  # written again by snakemake (the design keys changed), from the same pilot
    assert d.repeats == 3 and d.detect_pct == cfg["design"]["detect_pct"]
    listed = sorted(set(re.findall(r"output: (\S*runs/\S+\.parquet)", dry.stdout + dry.stderr)))
    assert listed == sorted(planned) and len(planned) == 3  # fp32 bs256 infer x the designed repeats

    snakemake(work, "--cores", "2", configfile=work / "config.yaml")
    assert len(list((work / "results/runs").rglob("r*.parquet"))) == 3
    # the runs are new noise, yet the design stays: a second snakemake has nothing to do
    again = snakemake(work, "-n", "--cores", "2", configfile=work / "config.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:]
    assert design(work) == d

    # asked, the plan sizes again from every run measured so far (the grid's 3 and the pilot's 3)
    re_ = plan(work, "--redesign")
    assert re_.returncode == 0 and "replanned into" in re_.stdout, re_.stdout + re_.stderr
    assert {x.source for x in design(work).groups} <= {"earlier runs", "pilot runs"}
