"""`joulegrid plan` reads the configuration `snakemake` reads (one loader, Snakemake's merge rules):
on several combinations of --configfile and --config, both list the same cells (run files, config
hash included), the same settings per workload and the same forecast."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import synth
import yaml
from conftest import REPO, snakemake, subprocess_env

from joulegrid.grid import Cell

EXPERIMENT = str(REPO / "config/experiments/time_to_target.yaml")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("agree")
    (w / "extra.yaml").write_text(
        yaml.safe_dump({"grid": {"repeats": 1, "batch_sizes": [256]}, "workloads": {"baler_ae": {"epochs": 4}}})
    )
    (w / "more.yaml").write_text(yaml.safe_dump({"seed": 5, "grid": {"precisions": ["fp32"]}}))
    # earlier results, so that both print a forecast (it depends on the planned epochs and rows)
    rows = [
        synth.row(Cell("local", wl, ph, "cpu", "fp32", "baseline", 256, 0), n_samples=20000)
        for wl in ("baler_ae", "jet_tagger")
        for ph in ("train", "infer")
    ]
    synth.summary(w / "results/summary.parquet", rows)
    return w


COMBINATIONS = [
    [],
    ["--configfile", EXPERIMENT],
    ["--configfile", EXPERIMENT, "{w}/extra.yaml"],  # two configfiles, in order
    ["--configfile", "{w}/extra.yaml", EXPERIMENT],  # the other order
    ["--config", "grid={repeats: 2}"],  # merged into grid, not replacing it
    ["--configfile", "{w}/extra.yaml", "{w}/more.yaml", "--config", "seed=7", "workloads={jet_tagger: {epochs: 3}}"],
    ["--config", "site=lxplus", "measure={threads: 1}"],
]


@pytest.mark.slow
@pytest.mark.parametrize("args", COMBINATIONS, ids=lambda a: " ".join(x.rsplit("/", 1)[-1] for x in a) or "default")
def test_plan_and_snakemake_dry_run_agree(work, args):
    args = [a.replace("{w}", str(work)) for a in args]
    plan = subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", "--json", *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    text = subprocess.run(
        [sys.executable, "-m", "joulegrid", "plan", *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=subprocess_env(),
    ).stdout

    dry = snakemake(work, "-n", "--cores", "2", *args)
    out = dry.stdout + dry.stderr
    listed = sorted(set(re.findall(r"output: (\S*runs/\S+\.parquet)", out)))
    assert listed == sorted(planned["cells"]) and listed, out[-3000:]
    # the settings Snakemake's run stands for (its stamp of the current configuration) = plan's
    assert json.loads((work / "results/.stamps/current.json").read_text()) == planned["workloads"]
    # and the same forecast
    sm_forecast = re.search(r"joulegrid forecast: (.*)", out).group(1)
    assert f"forecast: {sm_forecast}" in text, (sm_forecast, text)


def test_plan_reads_config_yaml_underneath_a_configfile(tmp_path):
    """The issue's case: jet_tagger's epochs come from config/config.yaml (2), not the built-in default (5)."""
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"grid": {"repeats": 2}}))
    planned = json.loads(
        subprocess.run(
            [sys.executable, "-m", "joulegrid", "plan", "--json", "--configfile", str(tmp_path / "extra.yaml")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=subprocess_env(),
            check=True,
        ).stdout
    )
    default = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert (
        planned["workloads"]["jet_tagger"]["identity"]["settings"]["epochs"]
        == default["workloads"]["jet_tagger"]["epochs"]
    )
    assert len(planned["cells"]) == 40
