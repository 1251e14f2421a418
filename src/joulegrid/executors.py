"""What a job asks of the executor it runs on: the same request on local, Slurm and HTCondor.

The rules state a job's needs once (memory in MB, runtime in minutes, threads, GPUs);
``job_resources`` turns them into the resource names each executor plugin reads:

==================  =====================  ==========================  ===========================
need                local (Snakemake)      slurm plugin 2.8            htcondor plugin 0.3
==================  =====================  ==========================  ===========================
CPUs                ``threads``            ``--cpus-per-task=threads``  ``request_cpus = threads``
memory (MB)         (not declared)         ``--mem mem_mb``             ``request_memory`` (the
                                                                        plugin ignores ``mem_mb``)
runtime (min)       (not declared)         ``-t runtime``               ``+JobFlavour`` where the
                                                                        site lists job_flavours
GPUs                ``gpu``                ``--gpus=gpu``               ``request_gpus``
==================  =====================  ==========================  ===========================

A resource no executor reads is not declared: Snakemake evaluates each resource of each job, and
a big grid's dry run spends most of its time doing so. A local site's jobs declare no memory or
runtime (the local executor schedules by threads; ``--resources mem_mb=N`` would cap nothing
joulegrid declares), and jobs without GPU cells declare no ``gpu``.

Memory and runtime grow with the attempt number, so a job killed for memory or time is retried
with more (``retries`` in the site profiles). What a site allows (its scheduler, job flavours, longest
runtime, packed environment) is joulegrid.sites' to answer; this module only translates. Pure Python:
no torch, no Snakemake import.

Every HTCondor job runs through joulegrid's job wrapper (``job-wrapper.sh`` next to this file,
transferred with the job): it checks that the worker can run the submit host's environment and
fails at once saying what is missing where; without a shared filesystem (``shared-fs-usage: none``)
it also returns the job's side files (logs, hotspots, attempts). Slurm jobs run the same check
before Snakemake starts (``slurm_precommand``).
"""

from __future__ import annotations

import os
import platform
import shlex
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .sites import SiteError, check_runtime, env_tarball, job_flavours, runtime_limit, scheduler  # noqa: F401 - SiteError: what job_resources raises

# Executor names (Snakemake executor plugins) and the scheduler each one submits to.
EXECUTOR_SCHEDULER = {"slurm": "slurm", "htcondor": "htcondor", "local": "local"}


def pick_flavour(flavours: list[tuple[str, int]], runtime_min: float) -> str:
    """Shortest flavour whose limit covers runtime_min (the longest one if none does)."""
    for name, limit in flavours:
        if runtime_min <= limit:
            return name
    return flavours[-1][0]


def job_resources(
    site: str,
    facts: dict[str, Any],
    mem_mb: int,
    runtime_min: int,
    gpus: Callable[[Any], int] | int = 0,
    group_size: Callable[[], int] | int = 1,
    shared_fs: bool = True,
    results_dir: str = "results",
    reads: Callable[[Any], dict[str, str]] | None = None,
    constraint: str | None = None,
) -> dict[str, Any]:
    """Rule resources for one job kind; values are callables Snakemake evaluates per job and attempt.

    constraint: the node type (config job.constraint): Slurm's --constraint (the plugin's constraint
    resource), HTCondor's requirements expression; None = any node.

    gpus: GPUs per job, or a callable of the wildcards; with 0 the job declares no GPU resource.

    group_size: cells per group job (``group-components: [cells=N]``, see ``cells_per_group``), or a
    callable giving it once Snakemake knows its settings. Snakemake gives a group job the sum of its
    cells' runtimes (they run one after the other), so an HTCondor job flavour is picked for that sum;
    Slurm's -t gets the sum from Snakemake itself.

    shared_fs: False with Snakemake's ``shared-fs-usage: none`` (profiles/lxplus, profiles/blackett):
    HTCondor jobs then also take <results_dir>/attempts (earlier attempts of the cell) and the site's
    packed environment (``env_tarball``) as inputs, and return <results_dir> (what the job wrote).

    reads: what the job reads that is not a declared input (rule measure declares only its
    configuration's inputs.json; the dataset and reference model it names are ``reads(wildcards)``):
    transferred too without a shared filesystem.

    facts: the site's entry of the sites file, checked when it was loaded (joulegrid.sites)."""
    flavours = job_flavours(facts)
    check_runtime(site, facts, runtime_min)

    def mem(wc, attempt):
        return int(mem_mb) * attempt

    def runtime(wc, attempt):
        return int(runtime_min) * attempt

    def gpu(wc):
        return int(gpus(wc) if callable(gpus) else gpus)

    # Only the resources an executor reads: Snakemake evaluates every resource of every job, even a
    # constant (most of a 10,000-cell dry run). No GPU resource for jobs that never ask for one; no
    # memory or runtime on a local site (the local executor reads neither; a cluster site's run
    # asks for them, and retries with more).
    asks_gpu = callable(gpus) or int(gpus) > 0
    res: dict[str, Any] = {"gpu": gpu} if asks_gpu else {}
    if scheduler(facts) == "local":
        return res
    res.update(mem_mb=mem, runtime=runtime)
    if constraint:
        res["requirements" if scheduler(facts) == "htcondor" else "constraint"] = constraint
    if scheduler(facts) == "htcondor":
        # snakemake-executor-plugin-htcondor 0.3 maps neither mem_mb nor gpu
        res["request_memory"] = mem
        if asks_gpu:
            res["request_gpus"] = gpu
        res.update(htcondor_transfer(facts, shared_fs, results_dir, reads))
        if flavours:
            res["classad_JobFlavour"] = lambda wc, attempt: pick_flavour(
                flavours, runtime(wc, attempt) * (group_size() if callable(group_size) else group_size)
            )
    return res


# ------------------------------------------------------------------ the job's environment
JOB_WRAPPER = Path(__file__).resolve().with_name("job-wrapper.sh")
# What a job needs of the checkout besides the Snakefile (included rules, the package, config files).
WORKFLOW_SOURCES = ("workflow", "src", "config")
ENV_CHECK_EXIT = 78  # job-wrapper.sh exits with it when the worker cannot run the job (EX_CONFIG)


def htcondor_transfer(
    facts: dict[str, Any], shared_fs: bool, results_dir: str, reads: Callable[[Any], dict[str, str]] | None = None
) -> dict[str, Any]:
    """HTCondor submit settings of every joulegrid job (plugin resources, all constant strings).

    The job's executable is job-wrapper.sh, always transferred (ShouldTransferFiles "YES", set as a
    job attribute: the plugin quotes raw submit commands), so it runs even where the submit host's
    files are not visible. Without a shared filesystem the job also takes the workflow
    (WORKFLOW_SOURCES, from the working directory, which must be the checkout), the grid snapshots
    (<results_dir>/.grid), <results_dir>/attempts
    (a killed cell's earlier attempts, appended to, never lost) and the site's packed environment,
    and brings <results_dir> back: the wrapper leaves there only what the job created or changed
    (the declared outputs come back by the plugin anyway). With ``reads``, the files a job reads
    without declaring them (its dataset and reference model) are added per job: a callable of the
    wildcards, evaluated only on sites without a shared filesystem."""
    res = {"job_wrapper": str(JOB_WRAPPER), "classad_ShouldTransferFiles": "YES"}
    if not shared_fs:
        # the plugin transfers the Snakefile, the rule's inputs and the config files; the rest of
        # the workflow comes from the checkout snakemake runs in (transfer_problem checks that)
        # <results_dir>/.grid: the grid snapshot run-cell reads its settings from (named on the command
        # line, not a declared input; spec.SpecBuilder.snapshot_path)
        inputs = [*WORKFLOW_SOURCES, f"{results_dir}/.grid", f"{results_dir}/attempts"]
        if env_tarball(facts):
            inputs.append(env_tarball(facts))
        listed = ", ".join(inputs)
        res["htcondor_transfer_input_files"] = (
            (lambda wc: ", ".join([listed, *reads(wc).values()])) if reads else listed
        )
        res["htcondor_transfer_output_files"] = results_dir
    return res


def os_name() -> str:
    """PRETTY_NAME of /etc/os-release (e.g. 'AlmaLinux 9.4 (Seafoam Ocelot)'), else the platform."""
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME") or platform.platform()
    except OSError:
        return platform.platform()


def submit_environment(results_dir: str, env_tarball: str | None = None) -> dict[str, str]:
    """What job-wrapper.sh compares the worker against, exported by the main Snakemake process
    (Slurm passes its environment to jobs; HTCondor jobs get it with getenv: True)."""
    env = {
        "JOULEGRID_PYTHON": sys.executable,
        "JOULEGRID_PYTHON_VERSION": "{}.{}".format(*sys.version_info[:2]),
        "JOULEGRID_SUBMIT_HOST": socket.gethostname(),
        "JOULEGRID_SUBMIT_OS": os_name(),
        "JOULEGRID_RESULTS": results_dir,
    }
    if env_tarball:
        env["JOULEGRID_ENV_TARBALL"] = env_tarball
    return env


def slurm_precommand(home: str, existing: str | None = None) -> str:
    """Snakemake's --precommand for Slurm jobs: job-wrapper.sh --check before the job's Snakemake.

    Without a readable wrapper (the checkout is not on the node) it says so itself. No '$' and no
    double quotes: the plugin hands the job to sbatch inside --wrap="..." through a shell."""
    wrapper = shlex.quote(str(JOB_WRAPPER))
    missing = shlex.quote(
        f"joulegrid: this job cannot run on the node named on the next line: the joulegrid checkout {home} "
        "(its workflow and job wrapper) is not visible there. Fix: clone it on a filesystem every node mounts "
        "at the same path (docs/sites.md, section What a job needs on the worker)"
    )
    check = (
        f"{{ [ -r {wrapper} ] || {{ echo {missing} >&2; uname -n >&2; exit {ENV_CHECK_EXIT}; }}; }} && "
        f"sh {wrapper} --check {shlex.quote(sys.executable)}"
    )
    return f"{check} && {existing}" if existing else check


ENV_CHECK_MARK = "joulegrid: this job cannot run on worker"  # how job-wrapper.sh's message starts


def job_error_files(executor: str | None, settings: Any) -> list[Path]:
    """Where the executor plugins leave what a job printed to stderr: HTCondor <htcondor-jobdir>/<rule>/*.err,
    Slurm <slurm-logdir, default .snakemake/slurm_logs>/**/*.log."""
    if executor == "htcondor" and getattr(settings, "jobdir", None):
        return sorted(Path(settings.jobdir).glob("*/*.err"))
    if executor == "slurm":
        return sorted(Path(getattr(settings, "logdir", None) or ".snakemake/slurm_logs").glob("**/*.log"))
    return []


def env_check_failures(files: list[Path], since: float, most: int = 5) -> list[str]:
    """The messages job-wrapper.sh left in job error files written after `since`, each distinct one once.

    The plugins report only the exit code (HTCondor), or Snakemake does not show the Slurm log after
    the rule's missing log: the main process shows these when the run fails (joulegrid.snakefile, on_error)."""
    found: dict[str, Path] = {}
    for err in files:
        try:
            if err.stat().st_mtime < since:
                continue
            text = err.read_text(errors="replace")
        except OSError:
            continue
        at = text.find(ENV_CHECK_MARK)
        if at >= 0:
            found.setdefault(text[at:].strip(), err)
    msgs = [f"{block}\n  (from the job's error file {err})" for block, err in found.items()]
    if len(msgs) > most:
        msgs = msgs[:most] + [f"... and {len(msgs) - most} more such messages"]
    return msgs


def transfer_problem(
    site: str, facts: dict[str, Any], shared_fs: bool, results_dir: str, checkout: str, workdir: str = "."
) -> str | None:
    """Why a run without a shared filesystem cannot start (checked before any job), else None."""
    if shared_fs:
        return None
    if Path(workdir).resolve() != Path(checkout).resolve():
        return (
            f"joulegrid: without a shared filesystem (shared-fs-usage: none) every job takes the workflow "
            f"({', '.join(WORKFLOW_SOURCES)}) from the working directory, but this run works in "
            f"{os.path.abspath(workdir)}, not in the joulegrid checkout {checkout}. Fix: run snakemake in the "
            "checkout (cd there, without --directory)"
        )
    if os.path.isabs(results_dir):
        return (
            f"joulegrid config error: config key results: {results_dir!r} is an absolute path, but without a shared "
            "filesystem (shared-fs-usage: none) HTCondor transfers the results directory relative to the working "
            "directory. Fix: a relative results directory"
        )
    tarball = env_tarball(facts)
    if tarball and not Path(workdir, tarball).is_file():
        return (
            f"joulegrid: site {site!r} runs its jobs in a packed environment (config/sites.yaml {site}.env_tarball: "
            f"{tarball}), which is not in the working directory {os.path.abspath(workdir)}. Fix: joulegrid pack-env "
            f"--out {tarball} (docs/sites.md, Blackett)"
        )
    return None


# The Snakemake group of the measure rule: `group-components: [cells=N]` (a site profile or the
# command line) submits N cells per cluster job (docs/sites.md, "Many short cells").
CELL_GROUP = "cells"


def cells_per_group(group_components: Any) -> int:
    """Cells per group job from Snakemake's --group-components mapping (1: no grouping)."""
    n = (group_components or {}).get(CELL_GROUP, 1)
    return n if isinstance(n, int) and n > 1 else 1


def group_problem(
    site: str, facts: dict[str, Any], runtime_min: int, group_components: Any, groups: Any = None
) -> tuple[str, str] | None:
    """('error'|'warning', message) when --group-components cannot work as meant, else None.

    A group of N cells runs N x job.runtime_min: on a site with job flavours it must fit the longest
    one. A group name other than joulegrid's (and not one of --groups) groups nothing: a warning.
    """
    size = cells_per_group(group_components)
    limit = runtime_limit(facts)
    if size > 1 and limit and size * runtime_min > limit[1]:
        what, minutes = limit
        most = max(1, minutes // max(1, runtime_min))
        return (
            "error",
            f"joulegrid config error: group-components {CELL_GROUP}={size} with job.runtime_min {runtime_min} "
            f"makes group jobs of {size * runtime_min} min, longer than site {site!r} allows ({what}: "
            f"{minutes} min). Fix: at most {CELL_GROUP}={most}, or a lower job.runtime_min",
        )
    own = {CELL_GROUP, *((groups or {}).values())}
    other = sorted(k for k in (group_components or {}) if k not in own)
    if other:
        return (
            "warning",
            f"joulegrid: group-components names group(s) {', '.join(other)} that no rule belongs to: nothing is "
            f"grouped by them. joulegrid's cells are in group {CELL_GROUP!r}: use group-components: [{CELL_GROUP}=N]",
        )
    return None


def executor_problem(site: str, site_scheduler: str, executor: str | None) -> tuple[str, str] | None:
    """('error'|'warning', message) when the executor does not fit the site, else None.

    A cluster executor with a local site (or a site of the other scheduler) would file cluster
    runs under the wrong site: an error. Running a cluster site with the local executor is
    legitimate (e.g. on an interactive node of that site) but rows then say scheduler=local: a warning.
    """
    if not executor or executor not in EXECUTOR_SCHEDULER:
        return None  # dryrun, touch, other plugins: nothing to say
    want = EXECUTOR_SCHEDULER[executor]
    if want == site_scheduler:
        return None
    fix = (
        "Fix: use the site's profile (--profile profiles/<site>, it sets site), or put site: <a "
        f"{want} site of config/sites.yaml> in your --configfile (note: --config on the command line "
        "replaces the profile's config: entries, so --config site=... must then be given there too)"
    )
    if want != "local":
        return (
            "error",
            f"joulegrid config error: config key site: site {site!r} is a {site_scheduler} site "
            f"(config/sites.yaml) but this run uses the {executor} executor. {fix}",
        )
    return (
        "warning",
        f"joulegrid: site {site!r} is a {site_scheduler} site but this run executes locally: its rows will "
        "say scheduler=local. Use --profile profiles/<site> to submit to the site's scheduler.",
    )


def threads_problem(threads: int, cores: int | None, executor: str | None) -> tuple[str, str] | None:
    """('error'|'warning', message) when Snakemake would give cells fewer threads than measure.threads.

    Snakemake caps every job's threads at --cores, also for cluster jobs, and profiles/default sets
    cores: all = the CPUs of the host running snakemake (a login node). A cell would then ask the
    scheduler for, and run torch with, fewer threads than the config (and its config_hash) says.
    """
    if not cores or threads <= cores:
        return None
    if executor in ("slurm", "htcondor"):
        return (
            "error",
            f"joulegrid config error: config key measure.threads: {threads} threads per cell, but this run "
            f"allows only {cores} cores (--cores; profiles/default sets cores: all = the CPUs of this submit "
            f"host), so Snakemake would submit every cell with {cores} CPUs. Fix: pass --cores {threads} "
            "(or more) on the command line, or lower measure.threads",
        )
    if executor == "local":
        return (
            "warning",
            f"joulegrid: measure.threads is {threads} but this run has {cores} cores: cells run with {cores} "
            "threads (torch_num_threads in the results says so)",
        )
    return None
