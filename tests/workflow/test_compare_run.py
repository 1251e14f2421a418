"""docs/compare.md, "A merge-request job": the GitLab CI script run as written, through real Snakemake, in a
temporary repository whose merge request runs the workload's counted step twice per sample (a planted
regression). The GitHub Actions snippet runs the same commands."""

from __future__ import annotations

import math
import os
import re
import subprocess

import polars as pl
import pytest
from conftest import REPO, subprocess_env
from versions_repo import WORKLOAD, commit_version, git, make_repo

# the planted factor (1.3-2.3) and the regression verdict come from energies measured here: alone
pytestmark = [pytest.mark.slow, pytest.mark.measure]

DOC = (REPO / "docs/compare.md").read_text()


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def gitlab_script() -> list[str]:
    (job,) = [b for b in blocks(DOC, "yaml") if "joulegrid-energy:\n  stage" in b]
    return re.findall(r"^    - (.*)$", job.split("  script:\n")[1].split("  allow_failure:")[0], re.M)


def test_the_gitlab_job_blocks_a_planted_regression(tmp_path):
    script = gitlab_script()
    assert len(script) == 4 and script[2].startswith("snakemake cells aggregate ")
    assert script[3].startswith("joulegrid compare ")
    # the GitHub Actions job runs the same snakemake and compare commands
    (gh,) = [b for b in blocks(DOC, "yaml") if "on: pull_request" in b]
    assert script[2] in gh and script[3] in gh and 'git merge-base HEAD "origin/$GITHUB_BASE_REF"' in gh
    (ci_config,) = [b for b in blocks(DOC, "yaml") if b.startswith("# joulegrid-ci.yaml")]

    _, repo = make_repo(tmp_path, {"joulegrid-ci.yaml": ci_config})
    commit_version(
        repo, "feature", WORKLOAD.replace("REPEAT = 1", "REPEAT = 2"), "B: the counted step twice per sample"
    )

    env = subprocess_env({"JOULEGRID": str(REPO), "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"})
    env["PYTHONPATH"] = ""  # the jobs import mypkg from each version's checkout, joulegrid from its install
    proc = subprocess.run(["bash", "-c", "set -e\n" + "\n".join(script[:3]) + f"\n{script[3]} || echo EXIT=$?"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "EXIT=1" in proc.stdout, out[-5000:]
    md = (repo / "joulegrid-compare.md").read_text()
    assert md.startswith("### joulegrid compare: REGRESSION")
    (line,) = [x for x in md.splitlines() if x.startswith("| local/mine/train/cpu/fp32/bs256")]
    assert "| regression |" in line and "| 3 |" in line

    # the rows: both versions by commit, the quadruples' orders, and the planted factor from the runs themselves
    rows = pl.read_parquet(repo / "results-ci" / "summary.parquet")
    # a window the outlier rule excluded stays a row beside its slot's kept one (docs/measurement.md): the
    # quadruples are the kept rows
    rows = rows.filter(~pl.col("excluded").fill_null(False))
    b_commit, a_commit = git(repo, "rev-parse", "HEAD", "main").split()
    assert dict(rows.group_by("code_version").agg(pl.col("code_commit").first()).iter_rows()) == {
        "base": a_commit,
        "head": b_commit,
    }
    assert sorted(rows["code_slot"].to_list()) == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    y = rows.with_columns(y=(pl.col("energy_j") / pl.col("n_samples")).log())
    per_q = y.group_by("repeat").agg(
        q=0.5
        * (
            pl.col("y").filter(pl.col("code_version") == "head").sum()
            - pl.col("y").filter(pl.col("code_version") == "base").sum()
        )  # fmt: skip
    )
    ratio = math.exp(per_q["q"].mean())
    assert 1.3 < ratio < 2.3, ratio  # two forward+backward passes per sample, one optimizer step
    assert os.path.isdir(repo / "resources" / "versions" / a_commit)

    # what got slower (docs/compare.md): quadruple 0's four measured runs profiled (not its warm-up), each
    # run's trace kept; the Markdown's top grown module is the one whose own time per batch grew most from base
    # to head in the hotspot files (computed here from their rows): the model's big Linear (512 -> 2048)
    hs = pl.read_parquet(sorted((repo / "results-ci" / "hotspots").rglob("*.parquet")))
    assert set(hs["run_id"]) == set(rows.filter(pl.col("repeat") == 0)["run_id"]) and hs["run_id"].n_unique() == 4
    assert len(list((repo / "results-ci" / "hotspots").rglob("*.trace.json"))) == 4
    own = (
        hs.filter(pl.col("kind") == "module")
        .join(rows.select("run_id", "code_version"), on="run_id")
        .group_by("code_version", "function")
        .agg(ms=(pl.col("self_s") / pl.col("profiled_batches")).mean())
    )
    grown = own.pivot("code_version", index="function", values="ms").with_columns(d=pl.col("head") - pl.col("base"))
    top = grown.sort("d", descending=True)["function"][0]
    assert top == "0", grown
    (where,) = [x for x in md.splitlines() if x.startswith("- local/mine/train/cpu/fp32/bs256: ")]
    assert where.split("; modules ", 1)[1].startswith("`0` (Linear) +"), md

    # C: A with a comment changed (an A/A comparison) at the planned pairs (docs/compare.md, "Choosing the
    # threshold"): a first campaign of the config's 3 quadruples into its own results folder, `joulegrid plan`
    # sizes the pairs for the 10 % margin from their pair noise, the campaign goes on to that many, and compare
    # must pass it (exit 0). (The pair noise of the A/B campaign above is no guide: B's doubled step is noisier.)
    c_commit = commit_version(repo, "comment", WORKLOAD.replace("# how many", "# the number of"), "C: a comment")
    config = ["--configfile", "joulegrid-ci.yaml", "--config", f"versions={{base: {a_commit}, head: {c_commit}}}",
              "results=results-ac"]  # fmt: skip

    def snakemake(pairs: int) -> None:
        run = subprocess.run(["snakemake", "cells", "aggregate", "-s", f"{REPO}/Snakefile", "--cores", "2", *config,
                              f"grid={{repeats: {pairs}}}"],
                             cwd=repo, env=env, capture_output=True, text=True, timeout=1800)  # fmt: skip
        assert run.returncode == 0, (run.stdout + run.stderr)[-5000:]

    snakemake(3)
    plan = subprocess.run(["joulegrid", "plan", *config, "compare={threshold_pct: 10}"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert plan.returncode == 0, plan.stdout + plan.stderr
    (sizing,) = re.findall(r"an unchanged head passes with power [\d.]+ at (\d+) pairs per cell", plan.stdout)
    pairs = max(int(sizing), 3)
    # a bound on the test's time: more pairs than this means the host's noise (the pair SD in the plan's line)
    # is too high for a 10 % margin with windows of 2 s
    assert pairs <= 12, plan.stdout
    if pairs > 3:
        snakemake(pairs)
    cmp = subprocess.run(["joulegrid", "compare", *config, f"grid={{repeats: {pairs}}}", "--threshold", "10%"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert cmp.stdout.startswith("### joulegrid compare: PASS"), cmp.stdout
    (line,) = [x for x in cmp.stdout.splitlines() if x.startswith("| local/mine/train/cpu/fp32/bs256")]
    assert f"| {pairs} |" in line, line
