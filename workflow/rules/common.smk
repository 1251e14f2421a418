# Config validation, the grid and wildcard constraints. Pure Python: no torch import here.
import functools
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the checkout's package, even if not installed

from joulegrid import config as JGC
from joulegrid import executors as JGE
from joulegrid import grid as JGG
from joulegrid.data import dataset_path
from snakemake.settings.types import DeploymentMethod

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
# --sdm conda: rules run in workflow/envs/joulegrid.yaml, which installs this checkout as
# ${JOULEGRID_HOME} (conda env create runs in this process and inherits it); joulegrid is on the
# env's PATH there, while sys.executable would be the interpreter running Snakemake.
JG_CONDA_ENV = "../envs/joulegrid.yaml"
os.environ["JOULEGRID_HOME"] = str(Path(workflow.basedir).resolve())
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    JG = "joulegrid"


# Without a shared filesystem (a profile's shared-fs-usage: none: lxplus, Blackett) HTCondor transfers
# each job's inputs and outputs; the site's facts may name a packed environment the jobs run in.
SHARED_FS = bool(workflow.storage_settings.shared_fs_usage)
SITE_FACTS = {**SITES[config["site"]], **SPEC.facts}
# What a job needs of the submit host, checked on the worker by joulegrid's job wrapper
# (src/joulegrid/job-wrapper.sh): exported here, passed on by the executors (Slurm's environment,
# HTCondor's getenv). Inside a job this is the worker's own Snakemake: keep the submit host's.
if workflow.is_main_process:
    os.environ.update(JGE.submit_environment(RESULTS, None if SHARED_FS else SITE_FACTS.get("env_tarball")))
if workflow.is_main_process and not SHARED_FS:
    # snakemake-executor-plugin-htcondor 0.3 hands workflow.configfiles to a job as --configfiles in
    # that order, and the job applies them in order: the Snakefile's default config (listed after the
    # --configfile grids) would override them there. Defaults first, as in this process.
    _default_config = os.path.abspath(os.path.join(workflow.basedir, "config", "config.yaml"))
    workflow.configfiles.sort(key=lambda f: os.path.abspath(f) != _default_config)


def job_resources(mem_mb, runtime_min, gpus=0, group_size=1):
    """Resources of a job that mean the same on every executor (joulegrid/executors.py):
    mem_mb -> slurm --mem / htcondor request_memory, runtime -> slurm -t / lxplus +JobFlavour,
    gpu -> slurm --gpus / htcondor request_gpus; memory and runtime scale with the attempt.
    HTCondor jobs also run through joulegrid's job wrapper (and transfer files without a shared filesystem)."""
    try:
        return JGE.job_resources(config["site"], SITE_FACTS, mem_mb, runtime_min, gpus, group_size, SHARED_FS, RESULTS)
    except JGE.SiteError as e:
        raise WorkflowError(str(e)) from None


# Grouping (docs/sites.md, "Many short cells"). Snakemake reads --group-components only after this
# file is parsed: the group is set once the DAG is being built (resolve_cell_group), the group size
# is asked per job (an HTCondor job flavour covers the whole group). Local runs ignore groups
# (Snakemake: "Group jobs: inactive (local execution)"); dry runs and cluster runs honour them.
def cells_per_group():
    """Cells per cluster job: N of `group-components: [cells=N]`, 1 without it."""
    return JGE.cells_per_group(workflow.group_settings.group_components)


@functools.cache
def resolve_cell_group():
    """Give rule measure its group: 'cells' when the run groups cells, else none (one cell per job).

    Called from the measure rule's input function: Snakemake reads --group-components after this
    file is parsed but before it builds the DAG, and creating a job runs its input function before
    anything asks for the job's group. Set once as a plain value, not a `group:` callable, which
    Snakemake would call for every job (three times when it returns None: 4 s of a 10,000-cell dry run)."""
    workflow.get_rule("measure").group = JGE.CELL_GROUP if cells_per_group() > 1 else None


# The site (recorded in every row, and the results/runs/<site>/ folder) must fit the executor:
# a site profile sets both. The executor is only known once the run starts (not while this file
# is parsed), hence onstart (not called for dry runs, nor inside cluster jobs). Snakemake also
# caps each job's threads at --cores (cluster jobs too): a cluster run that would silently
# measure cells with fewer threads than measure.threads is refused.
THIS_RUN = {}  # this run (main process): when it started


onerror:
    # A job that could not run on its worker said why in its error file (job-wrapper.sh), which
    # Snakemake does not show (HTCondor: only the exit code): shown here, each message once.
    if "start" in THIS_RUN:
        from snakemake.logging import logger as _logger

        _files = JGE.job_error_files(getattr(workflow.executor_plugin, "name", None), workflow.executor_settings)
        for _msg in JGE.env_check_failures(_files, THIS_RUN["start"]):
            _logger.error(_msg)


onstart:
    # Retries of failed jobs (--retries, site profiles): jobs read it to know whether a killed run-cell
    # will be retried (joulegrid record-failure); executors pass the submit environment on (Slurm's
    # default --export=ALL, HTCondor getenv: True in the site profiles). Unset = no retries left.
    os.environ["JOULEGRID_RETRIES"] = str(workflow.execution_settings.retries or 0)
    THIS_RUN["start"] = time.time()  # onerror: the messages of this run's jobs only
    # Never lose a measurement: Snakemake would delete a finished run file before re-running its job
    # (forced, or marked incomplete); joulegrid refuses the first and archives the second (archive.py).
    from joulegrid import archive as JGA
    from snakemake.logging import logger as _logger

    try:
        _archived = JGA.guard_rerun(
            [([str(o) for o in j.output], bool(workflow.dag.reason(j).forced)) for j in workflow.dag.needrun_jobs() if j.rule.name == "measure"],
            RESULTS,
        )
    except JGA.ArchiveError as _e:
        raise WorkflowError(f"joulegrid: {_e}") from None
    for _p in _archived:
        _logger.warning(f"joulegrid: {_p.name} of an unfinished job (killed after writing it) archived as {_p}; the cell is measured again")
    _executor = getattr(workflow.executor_plugin, "name", None)
    if _executor == "htcondor":
        _transfer = JGE.transfer_problem(config["site"], SITE_FACTS, SHARED_FS, RESULTS, workflow.basedir)
        if _transfer:
            raise WorkflowError(_transfer)
        if not SHARED_FS:  # an input of every job (earlier attempts): HTCondor holds a job whose input is missing
            os.makedirs(f"{RESULTS}/attempts", exist_ok=True)
    if _executor == "slurm":  # the worker checks the environment before the job's Snakemake starts
        workflow.remote_execution_settings.precommand = JGE.slurm_precommand(
            os.environ["JOULEGRID_HOME"], workflow.remote_execution_settings.precommand
        )
    for _problem in (
        JGE.executor_problem(config["site"], SPEC.facts["scheduler"], _executor),
        JGE.threads_problem(config["measure"]["threads"], workflow.resource_settings.cores, _executor),
        JGE.group_problem(
            config["site"], SITE_FACTS, config["job"]["runtime_min"],
            workflow.group_settings.group_components, workflow.group_settings.overwrite_groups,
        ),
    ):
        if _problem and _problem[0] == "error":
            raise WorkflowError(_problem[1])
        if _problem:
            from snakemake.logging import logger as _logger

            _logger.warning(_problem[1])


workflow.global_wildcard_constraints(**JGG.WILDCARD_CONSTRAINTS, dataset=JGG.NAME_RE, rows=r"[0-9]{1,10}", mhash=r"[0-9a-f]{16}")

# Measurements share the machine's power meters: locally they run one at a time (the default
# profile sets energy_meter=1); the scope is local, so cluster jobs are not limited by it.
workflow.resource_scopes.update({"energy_meter": "local"})
# A cluster job runs `snakemake --mode remote`, which applies no profile (so not profiles/default's
# energy_meter: 1) and gets --cores of the submit host. A group job of N cells (group-components)
# would then measure several cells at once in an allocation sized for one (seen on HTCondor):
# inside jobs, measurements also take the host's meters one at a time.
if not workflow.is_main_process and "energy_meter" not in workflow.global_resources:
    workflow.register_resource("energy_meter", 1)


@functools.lru_cache(maxsize=None)
def _cell_input_paths(workload, phase):
    """Dataset (and reference model for inference) of a workload's cells: the same for every cell
    of a workload and phase, so computed once (Snakemake asks once per job, 10,000 times in a big grid)."""
    ins = {}
    ds = SPEC.dataset(workload)
    settings = SPEC.workload(workload)
    if ds is not None:
        ins["data"] = dataset_path(RESOURCES, *ds)
    elif settings.get("data"):
        ins["data"] = settings["data"]
    if phase == "infer":
        ins["model"] = f"{RESULTS}/models/{workload}/{SPEC.model_hash(workload)}.pt"
    return tuple(ins.items())


def cell_inputs(wc):
    """Dataset (and reference model for inference) a cell reads."""
    resolve_cell_group()
    return {k: ancient(v) for k, v in _cell_input_paths(wc["workload"], wc["phase"])}


def cli_inputs(wc, input):
    """--data/--model arguments, shell-quoted."""
    return " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in input.items())


def cell_args(wc, input):
    """A cell's --spec (its JSON spec) and --data/--model arguments, shell-quoted. One params
    callable, not two: Snakemake's cost per callable and job is most of a big grid's dry run."""
    return f"--spec {shlex.quote(SPEC.spec_json(JGG.cell_from_wildcards(wc)))} {cli_inputs(wc, input)}"
