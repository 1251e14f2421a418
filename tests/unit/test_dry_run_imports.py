"""The dry-run path imports no heavy library (torch, polars, pyarrow, codecarbon, zeus, altair).

`snakemake -n` of a 10,000-cell grid must stay fast (bench/bench_dry_run.py): the Snakefile and
what it imports (joulegrid.config, .grid, .executors, .data, .analysis, .analysis.settings,
.analysis.plan) are pure Python. Importing torch alone would add seconds to every dry run and to
every Snakemake process on a cluster. These tests look at sys.modules in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import SNAKEFILE, subprocess_env

HEAVY = ("torch", "polars", "pyarrow", "codecarbon", "zeus", "altair", "vl_convert", "pandas")

_REPORT = f"""
import json, sys
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
mine = sorted(m for m in sys.modules if m.startswith("joulegrid"))
print("JG-MODULES " + json.dumps({{"heavy": heavy, "joulegrid": mine}}))
"""


def _modules(code: str, cwd) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code + _REPORT],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=cwd,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("JG-MODULES ")]
    assert proc.returncode == 0 and lines, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1].split(" ", 1)[1])


def test_parse_time_modules_import_nothing_heavy(tmp_path):
    """What the Snakefile imports, and the calls it makes while it is parsed."""
    got = _modules(
        "from joulegrid import config as C, executors, grid as G, spec as SP\n"
        "from joulegrid.data import dataset_path\n"
        "from joulegrid.analysis import CHART_NAMES, plan\n"
        "from joulegrid.analysis.settings import AnalysisSettings\n"
        "cfg, sites = C.load()\n"
        "sb = SP.SpecBuilder(cfg, sites)\n"
        "g = G.expand(cfg, sb.hashes())\n"
        "g.paths(cfg['results']), sb.current(), sb.snapshot(), [sb.data_path(w) for w in sb.hashes()]\n"
        "AnalysisSettings.from_config(cfg, sites).to_json()\n"
        "plan.snakemake_check(cfg, g, sites)\n",
        tmp_path,
    )
    assert "joulegrid.config" in got["joulegrid"] and "joulegrid.workloads.registry" in got["joulegrid"]
    assert got["heavy"] == [], (
        f"the dry-run path imports {got['heavy']}: import them inside the function that needs them"
    )


def _dry_run_modules(tmp_path, snakefile, *extra) -> dict:
    tmp_path.mkdir(exist_ok=True)
    args = [
        "-s",
        str(snakefile),
        "--directory",
        str(tmp_path),
        "-n",
        "--cores",
        "1",
        "--quiet",
        "rules",
        *map(str, extra),
    ]
    return _modules(
        "from snakemake.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as e:\n"
        "    assert not e.code, f'snakemake -n failed: exit {e.code}'\n",
        tmp_path,
    )


def test_snakemake_dry_run_imports_nothing_heavy(tmp_path, write_config):
    """A real `snakemake -n` of the joulegrid Snakefile, in-process, then a look at sys.modules.

    Snakemake itself may import some of these (snakemake-executor-plugin-slurm imports pandas and
    with it pyarrow, for every workflow): joulegrid must add none beyond what an empty workflow
    imports."""
    cfg = write_config({"grid": {"precisions": ["fp32", "int8"], "repeats": 2}})
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "Snakefile").write_text("rule all:\n    input: []\n")
    floor = _dry_run_modules(tmp_path / "empty", tmp_path / "empty" / "Snakefile")
    got = _dry_run_modules(tmp_path / "w", SNAKEFILE, "--configfile", cfg)
    assert "joulegrid.grid" in got["joulegrid"], "the Snakefile was not parsed"
    added = sorted({m.split(".")[0] for m in got["heavy"]} - {m.split(".")[0] for m in floor["heavy"]})
    assert added == [], (
        f"`snakemake -n` of joulegrid imports {added} (an empty workflow does not): keep them out of the Snakefile's "
        "imports"
    )
