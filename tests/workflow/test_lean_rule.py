"""The lean measure rule (issue 17): no params callable and no input function; inputs are plain
wildcard patterns (the grid snapshot and its configuration's inputs for the phase), the settings are
read by run-cell from the snapshot, never put on a command line. What it keeps: the reference-model
edge of inference cells, the log, retries' attempt, one measurement at a time, and everything a
configuration change does (tests/workflow/test_config_identity.py runs through this rule)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEFILE, TINY, deep_merge, snakemake


def _rule(workdir: Path, configfile: Path, name: str):
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, ResourceSettings

    cwd = os.getcwd()
    try:
        with SnakemakeApi() as api:
            wf = api.workflow(
                snakefile=SNAKEFILE,
                workdir=workdir,
                config_settings=ConfigSettings(configfiles=[configfile]),
                resource_settings=ResourceSettings(cores=1),
            )
            return wf._workflow.get_rule(name)  # the parsed rule, as Snakemake holds it
    finally:
        os.chdir(cwd)


def test_measure_rule_has_no_function_per_cell(tmp_path, write_config):
    rule = _rule(tmp_path, write_config(), "measure")
    assert not list(rule.params), "no params: nothing is serialised per job"
    assert not any(callable(f) for f in rule.input)
    assert list(map(str, rule.input)) == ["results/.grid/{chash}/{phase}.inputs.json"]  # its configuration's inputs
    # the snapshot: one constant path for every job, written when the run starts
    assert re.search(r"--grid results/\.grid/[0-9a-f]{16}\.json --out \{output:q\}", rule.shellcmd), rule.shellcmd
    # the run's site is written out (it measures its own site's cells), the other axes are wildcards
    assert set(rule.wildcard_names) == {"workload", "phase", "device", "precision", "batch", "repeat", "chash"}
    assert str(rule.output[0]).startswith("results/runs/local/{workload")
    log = str(rule.log[0])  # Snakemake writes the wildcard constraints into the pattern
    assert (
        log.startswith("results/logs/runs/local/{workload")
        and "/r{repeat" in log
        and log.endswith("}.log")
        and "{chash" in log
    )
    assert "--attempt {resources.attempt}" in rule.shellcmd and callable(rule.resources["attempt"]._evaluator)
    assert {"attempt", "energy_meter"} <= set(rule.resources)  # retries' attempt, one measurement at a time
    assert "{params" not in rule.shellcmd and "{input" not in rule.shellcmd


@pytest.mark.slow
def test_dry_run_jobs_read_the_snapshot_and_keep_the_reference_model_edge(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(TINY, {"grid": {"precisions": ["fp32", "int8"]}})))
    proc = snakemake(tmp_path, "-n", "-p", "--cores", "2", configfile=cfg)
    out = proc.stdout + proc.stderr
    snaps = list((tmp_path / "results/.grid").glob("*.json"))
    assert len(snaps) == 1
    snap = json.loads(snaps[0].read_text())
    cmds = [ln for ln in out.splitlines() if "run-cell" in ln]
    assert len(cmds) == 3 and all(f"--grid results/.grid/{snaps[0].name}" in c and "--spec" not in c for c in cmds)
    assert "epochs" not in "\n".join(cmds), "no setting on the command line"
    # the edges: inference cells wait for the reference model (through their phase's inputs), all for the data
    inputs = dict(re.findall(r"rule cell_inputs:\n\s+input: ([^\n]+)\n\s+output: (\S+)", out))
    infer = next(i for i, o in inputs.items() if o.endswith("/infer.inputs.json"))
    train = next(i for i, o in inputs.items() if o.endswith("/train.inputs.json"))
    model = snap["workloads"]["baler_ae"]["model"]
    assert model in infer and model not in train and snap["workloads"]["baler_ae"]["data"] in train
    assert re.search(rf"rule train_reference:\n\s+input: [^\n]*\n\s+output: {re.escape(model)}", out)
    # another configuration: another snapshot next to the first
    snakemake(tmp_path, "-n", "--cores", "2", "--config", "seed=9", configfile=cfg)
    assert len(list((tmp_path / "results/.grid").glob("*.json"))) == 2 and snaps[0].exists()


def test_the_snapshot_lives_under_the_configured_results_folder(tmp_path):
    """The snapshot lives under the configured results folder (--config results=...), as everything a run writes."""
    snakemake(
        tmp_path,
        "-n",
        "--cores",
        "1",
        "--config",
        "results=out",
        configfile=REPO / "config/experiments/time_to_target.yaml",
    )
    assert list((tmp_path / "out/.grid").glob("*.json")) and not (tmp_path / "results").exists()


def test_batch_splits_a_campaigns_dag(tmp_path):
    """`snakemake cells --batch cells=i/n` (docs/benchmarks.md, "At campaign scale"): only that part of the cells."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(TINY, {"grid": {"phases": ["train"], "repeats": 8}})))

    def count(proc):
        return int(re.search(r"^measure\s+(\d+)$", proc.stdout + proc.stderr, re.M).group(1))

    assert count(snakemake(tmp_path, "-n", "--quiet", "rules", configfile=cfg)) == 8
    for part in (
        "1/4",
        "2/4",
    ):  # (the last part runs once the others are done) the target first: --configfile and --quiet take several values
        assert (
            count(
                snakemake(
                    tmp_path, "cells", "-n", "--batch", f"cells={part}", "--configfile", str(cfg), "--quiet", "rules"
                )
            )
            == 2
        )


@pytest.mark.slow
@pytest.mark.parallel
def test_attempt_reaches_run_cell_where_it_can_vary(tmp_path, write_config):
    """The row's attempt: 1 without retries (the resource is then a constant); inside a cluster job
    (`--mode remote`, what a cluster job runs) the attempt its submitter passed. The command run is
    the one Snakemake compiled from the rule, so this runs cells, not only a dry run.
    tests/reliability/test_faults.py runs retries in the main process."""
    import polars as pl

    cfg = write_config({"grid": {"phases": ["train"], "repeats": 2}, "measure": {"meters": ["estimate"]}})
    snakemake(tmp_path, "--cores", "2", configfile=cfg)
    runs = sorted((tmp_path / "results/runs").rglob("*.parquet"))
    assert [pl.read_parquet(p)["attempt"][0] for p in runs] == [1, 1]
    retried = snakemake(tmp_path, "-n", "--retries", "2", "-F", configfile=cfg, check=False)
    assert re.search(r"resources: [^\n]*attempt=1", retried.stdout + retried.stderr)  # a function of the attempt again
    cell = runs[0]
    cell.unlink()  # measured again, as a cluster job on its third attempt would
    snakemake(
        tmp_path, "--cores", "1", "--mode", "remote", "--attempt", "3", str(cell.relative_to(tmp_path)), configfile=cfg
    )
    assert pl.read_parquet(cell)["attempt"][0] == 3
