# Config validation, the grid and wildcard constraints. Pure Python: no torch import here.
import json
import shlex
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the checkout's package, even if not installed

from joulegrid import config as JGC
from joulegrid import grid as JGG
from joulegrid.data import dataset_path

try:
    _config, SITES = JGC.prepare(config, base_dir=".")
except JGC.ConfigError as _e:
    raise WorkflowError(f"joulegrid config error: {_e}") from None

SPEC = JGC.SpecBuilder(config, SITES)
RESULTS = config["results"]
RESOURCES = config["resources_dir"]
GRID = JGG.expand(config)
CELL_PATHS = GRID.paths(RESULTS)
REPORT_INDEX = f"{RESULTS}/report/index.html"

# Forecast of the cells still to run from earlier results, and the budget: caps refuse here, before any job.
if workflow.is_main_process:
    from joulegrid.analysis import plan as JGP

    try:
        _forecast = JGP.snakemake_check(config, GRID, SITES)
    except JGP.BudgetError as _e:
        raise WorkflowError(f"joulegrid budget: {_e}") from None
    if _forecast:
        print(_forecast, file=sys.stderr)
# The joulegrid command: the one on PATH (activated venv, conda env), else the interpreter running Snakemake.
JG = "joulegrid" if shutil.which("joulegrid") else f"{shlex.quote(sys.executable)} -m joulegrid"

_executor = getattr(getattr(workflow, "executor_plugin", None), "name", "local")
if _executor in ("slurm", "htcondor") and SPEC.facts["scheduler"] == "local":
    raise WorkflowError(
        f"joulegrid config error: config key site: site {config['site']!r} is a local site but this run uses the "
        f"{_executor} executor. Fix: use a site profile (it sets site), or pass --config site=<your site> "
        "(note: --config on the command line replaces the profile's config: entries)"
    )

workflow.global_wildcard_constraints(**JGG.WILDCARD_CONSTRAINTS, dataset=JGG.NAME_RE, rows=r"[0-9]{1,10}", mhash=r"[0-9a-f]{16}")

# Measurements share the machine's power meters: locally they run one at a time (the default
# profile sets energy_meter=1); the scope is local, so cluster jobs are not limited by it.
workflow.resource_scopes.update({"energy_meter": "local"})


def cell_inputs(wc):
    """Dataset (and reference model for inference) a cell reads."""
    cell = JGG.cell_from_wildcards(wc)
    ins = {}
    ds = SPEC.dataset(cell.workload)
    settings = SPEC.workload(cell.workload)
    if ds is not None:
        ins["data"] = ancient(dataset_path(RESOURCES, *ds))
    elif settings.get("data"):
        ins["data"] = ancient(settings["data"])
    if cell.phase == "infer":
        ins["model"] = ancient(f"{RESULTS}/models/{cell.workload}/{SPEC.model_hash(cell.workload)}.pt")
    return ins


def cli_inputs(wc, input):
    """--data/--model arguments, shell-quoted."""
    return " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in input.items())
