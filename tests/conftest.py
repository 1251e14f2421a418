"""Shared fixtures: paths, a tiny grid config, and a helper that runs the real Snakemake."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"
BIN = Path(sys.executable).parent


def subprocess_env(extra: dict | None = None) -> dict:
    """Environment for subprocesses: this venv first on PATH, no HTCondor config noise."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("CONDOR_CONFIG", "/dev/null")
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


# The outlier rule's thresholds off (docs/measurement.md, "Outliers by rule"): its criteria read the host's load
# (steal, other processes on the job's CPUs, CPU frequency), which on a shared CI machine would exclude and
# re-measure windows at random. Tests of other things must not depend on that; the rule has its own tests
# (tests/runner/test_outliers.py), with fake /proc and /sys trees.
NO_OUTLIER_RULE = {"outlier_max_steal": 1, "outlier_max_contention": 1, "outlier_min_cpu_freq": 0}

TINY = {
    "grid": {
        "workloads": ["baler_ae"],
        "phases": ["train", "infer"],
        "devices": ["cpu"],
        "precisions": ["fp32"],
        "batch_sizes": [256],
        "repeats": 1,
    },
    "workloads": {"baler_ae": {"rows": 3000, "epochs": 1}},
    # fast: no idle baseline, one inference pass, no profiling (tests/runner/ covers those windows)
    "measure": {
        "threads": 1,
        "warmup_batches": 1,
        "idle_baseline_s": 0,
        "min_window_s": 0,
        "hotspots": "never",
        **NO_OUTLIER_RULE,
    },
}


def html_tables(page: str, start: str, end: str | None = None) -> list[list[dict[str, str]]]:
    """The tables of a report page between the texts start and end (default: the page's end), each as
    a list of {column: cell text}."""
    i = page.index(start)
    part = page[i : page.index(end, i)] if end is not None else page[i:]
    out = []
    for t in re.findall(r"<table>(.*?)</table>", part, re.S):
        head = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", t)]
        rows = [
            [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", t.split("</thead>")[1])
        ]
        out.append([dict(zip(head, r, strict=False)) for r in rows])
    return out


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def write_config(tmp_path):
    """write_config(overrides) -> path of a config file for a tiny grid (merged over TINY)."""

    def _write(overrides: dict | None = None, name: str = "config.yaml") -> Path:
        cfg = deep_merge(TINY, overrides or {})
        p = tmp_path / name
        p.write_text(yaml.safe_dump(cfg))
        return p

    return _write


def snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    timeout: int = 900,
    env: dict | None = None,
    check: bool = True,
    cwd: Path | None = None,
):
    """Run the real Snakemake on joulegrid's Snakefile in workdir (started in cwd); returns CompletedProcess."""
    cmd = [str(BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir)]
    if configfile:
        cmd += ["--configfile", str(configfile)]
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=subprocess_env(env), cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture
def run_snakemake():
    return snakemake


def cell_file(
    workdir: Path,
    cell_id: str,
    configfile: Path | None = None,
    config_args: list[str] | None = None,
    kind: str = "runs",
    ext: str = ".parquet",
) -> Path:
    """A cell's file as the pipeline names it (<results>/<kind>/<cell id>-<config hash><ext>) for the
    config that `snakemake [--configfile F] [--config ...]` gives (joulegrid.config.load)."""
    from joulegrid import config as C
    from joulegrid import spec as SP

    cfg, sites = C.load([configfile] if configfile else None, config_args, base_dir=REPO)
    h = SP.SpecBuilder(cfg, sites).config_hash(cell_id.split("/")[1])
    return Path(workdir) / cfg["results"] / kind / f"{cell_id}-{h}{ext}"
