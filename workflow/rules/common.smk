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
from snakemake.settings.types import DeploymentMethod

try:
    _config, SITES = JGC.prepare(config, base_dir=".")
except JGC.ConfigError as _e:
    raise WorkflowError(f"joulegrid config error: {_e}") from None

SPEC = JGC.SpecBuilder(config, SITES)
RESULTS = config["results"]
RESOURCES = config["resources_dir"]
# Each cell's run file ends in its workload's config hash (joulegrid.config.identity): changed
# settings are new files, the same settings find theirs (docs/architecture.md, "A cell's identity").
GRID = JGG.expand(config, SPEC.hashes())
CELL_PATHS = GRID.paths(RESULTS)
REPORT_INDEX = f"{RESULTS}/report/index.html"


def jg_stamp(name, text):
    """<results>/.stamps/<name>.json holding text, rewritten (by the main Snakemake process, also in
    a dry run) only when text changes (joulegrid.io.stamp): as the input of a rule it reruns that rule
    exactly when the content changed, which profiles/default's rerun-triggers [mtime] would otherwise
    hide (it ignores params). Cluster jobs (--mode remote) only read it."""
    path = f"{RESULTS}/.stamps/{name}.json"
    if workflow.is_main_process:
        from joulegrid.io import stamp

        stamp(path, text)
    return path


# The current configuration (config hash and identity per workload): aggregate's input, so that
# returning to an earlier configuration, whose cells all exist, still rebuilds the summary for it.
CURRENT_STAMP = jg_stamp("current", json.dumps(SPEC.current(), sort_keys=True, indent=1))

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


def job_resources(mem_mb, runtime_min, gpus=0, group_size=1, reads=None):
    """Resources of a job that mean the same on every executor (joulegrid/executors.py):
    mem_mb -> slurm --mem / htcondor request_memory, runtime -> slurm -t / lxplus +JobFlavour,
    gpu -> slurm --gpus / htcondor request_gpus; memory and runtime scale with the attempt.
    HTCondor jobs also run through joulegrid's job wrapper (and transfer files without a shared filesystem)."""
    try:
        return JGE.job_resources(config["site"], SITE_FACTS, mem_mb, runtime_min, gpus, group_size, SHARED_FS, RESULTS, reads)
    except JGE.SiteError as e:
        raise WorkflowError(str(e)) from None


# Grouping (docs/sites.md, "Many short cells"). Snakemake reads --group-components only after this
# file is parsed: the group is set once the DAG is being built (resolve_measure_rule), the group size
# is asked per job (an HTCondor job flavour covers the whole group). Local runs ignore groups
# (Snakemake: "Group jobs: inactive (local execution)"); dry runs and cluster runs honour them.
def cells_per_group():
    """Cells per cluster job: N of `group-components: [cells=N]`, 1 without it."""
    return JGE.cells_per_group(workflow.group_settings.group_components)


@functools.cache
def resolve_measure_rule():
    """Settle what rule measure can only know once Snakemake has read its settings, as plain values.

    - its group: 'cells' when the run groups cells, else none (one cell per job). Not a `group:`
      callable, which Snakemake would call for every job (three times when it returns None: 4 s of
      a 10,000-cell dry run);
    - its `attempt` resource (run-cell's --attempt): a function of the job's attempt, which
      Snakemake evaluates for every job (~430 Python calls per job in a dry run, of ~5,500); in
      the main process of a run without retries every attempt is the first, so it becomes the
      constant 1 (~110 calls; docs/benchmarks.md). Inside a cluster job it stays the function: Snakemake gives it the
      attempt the submitting Snakemake passed (--attempt). (The shell command itself cannot be
      changed here: Snakemake compiles it into the rule's code when it parses this file.)

    Called from phase_inputs (rule cell_inputs' input function): Snakemake reads --group-components,
    --retries and --attempt after this file is parsed but before it builds the DAG, every measure job
    brings a cell_inputs job into the DAG, and Snakemake asks a job's group and resources only later."""
    measure = workflow.get_rule("measure")
    measure.group = JGE.CELL_GROUP if cells_per_group() > 1 else None
    if workflow.is_main_process and not getattr(workflow.execution_settings, "retries", 0):
        measure.resources["attempt"] = 1


# The grid snapshot <results>/.grid/<hash of its content>.json: the settings of every workload of
# this configuration (and its data, reference model, site facts), written once by the main process
# when the run (or a dry run) starts; each job reads it with the cell's wildcards (joulegrid run-cell
# --grid: the cell and its config hash come from the run file's path). So no setting is serialised
# per job, and a job queued on a cluster reads the configuration it was planned with even if the
# config changes meanwhile (a new configuration is another snapshot).
JG_GRID = SPEC.snapshot_path(write=workflow.is_main_process)


def phase_inputs(wc):
    """What the cells of one configuration hash and phase read: the dataset, and for inference the
    reference model (rule cell_inputs: one call per workload configuration and phase, not per cell)."""
    resolve_measure_rule()
    try:
        workload = SPEC.workload_of(wc.chash)
    except JGC.ConfigError as e:
        raise WorkflowError(f"joulegrid: {e}") from None
    ins = {"data": SPEC.data_path(workload)} if SPEC.data_path(workload) else {}
    if wc.phase == "infer":
        ins["model"] = SPEC.model_path(workload)
    return ins


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
    from joulegrid.quiet import condor_config_problem

    if condor_config_problem(_executor):  # htcondor2's own warning about it is hidden (joulegrid/quiet.py)
        raise WorkflowError(condor_config_problem(_executor))
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
