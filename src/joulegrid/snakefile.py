"""What joulegrid's Snakefile needs, settled once when Snakemake parses it (workflow/rules/common.smk).

The rules hold no logic (docs/architecture.md): ``setup(workflow, config)`` validates the config,
expands the grid, writes the stamps and the grid snapshot, checks the budget, finds the joulegrid
command and the submit environment, and registers the wildcard constraints and resource scopes;
``Workflow`` then answers what the rules ask (paths, resources, input functions) and runs the checks
that can only be done once the run starts (``on_start``: the executor is known then) or fails
(``on_error``). Pure Python: no torch import (a dry run imports neither torch nor codecarbon).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snakemake.exceptions import WorkflowError

from . import config as jg_config
from . import executors
from . import grid as jg_grid
from . import spec as jg_spec
from .base import ConfigError

#: --sdm conda: rules run in workflow/envs/joulegrid.yaml (relative to the rule files), which installs the
#: checkout as ${JOULEGRID_HOME}; joulegrid is on the env's PATH there.
CONDA_ENV = "../envs/joulegrid.yaml"


def setup(workflow, config: dict[str, Any]) -> Workflow:
    """Called once, by common.smk while Snakemake parses the Snakefile (main process, cluster jobs, dry runs)."""
    from . import logs

    logs.configure()  # joulegrid's diagnostics as 'joulegrid: ...' on stderr, as from the joulegrid command
    try:
        return Workflow(workflow, config)
    except ConfigError as e:
        raise WorkflowError(f"joulegrid config error: {e}") from None


def _intended_executor_and_cores(*dirs: str | None) -> tuple[str | None, int | None]:
    """(executor, cores) the real run of this command line would use, in a dry run: Snakemake runs a dry
    run with its own 'dryrun' executor and keeps the intended one (--executor or a profile's) nowhere the
    workflow can read, so the command line is parsed again as Snakemake parsed it (profiles included).
    (None, None) outside the snakemake command (the API) or if it cannot be parsed. dirs: where a relative
    --profile may be (where snakemake was started, which --directory has changed since, is not known: the
    shell's $PWD, the checkout), tried in order."""
    import contextlib
    import io

    cli = sys.modules.get("snakemake.cli")
    if cli is None:
        return None, None
    here, args = os.getcwd(), None
    for d in jg_grid.unique([here, *(d for d in dirs if d)]):
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                os.chdir(d)
                _, args = cli.parse_args(sys.argv[1:])
            break
        except BaseException:  # noqa: BLE001 - argparse exits on what it cannot parse (a profile not found here)
            continue
        finally:
            os.chdir(here)
    if args is None:
        return None, None
    cores = args.cores
    if cores == "all":
        cores = os.cpu_count()
    try:
        cores = int(cores) if cores is not None else None
    except (TypeError, ValueError):
        cores = None
    return args.executor or "local", cores


def write_phase_inputs(inputs: dict[str, str], out: str, log: str) -> None:
    """The cell_inputs rule: <results>/.grid/<config hash>/<phase>.inputs.json names what the cells of one
    configuration and phase read (rewritten only when that changes), and its log says so."""
    from .io import stamp

    text = json.dumps(inputs, sort_keys=True)
    stamp(out, text + "\n")
    Path(log).write_text(f"joulegrid: {out}: {text}\n")


class Workflow:
    """joulegrid's side of one Snakemake workflow: the validated config, the grid and what the rules read."""

    def __init__(self, workflow, config: dict[str, Any]):
        self.workflow = workflow
        self.config = config
        _, self.sites = jg_config.prepare(config, base_dir=".")  # validates and fills config in place
        self.spec = jg_spec.SpecBuilder(config, self.sites)
        self.results: str = config["results"]
        self.resources_dir: str = config["resources_dir"]
        self.site: str = config["site"]
        # Each cell's run file ends in its workload's config hash (joulegrid.spec.identity): changed
        # settings are new files, the same settings find theirs (docs/architecture.md, "A cell's identity").
        repeats = None
        if config["grid"]["repeats"] == "auto":  # the frozen design (written by the main process the first time)
            repeats = self._design() if workflow.is_main_process else None
            if repeats is None:
                from .analysis import design

                repeats = design.grid_repeats(config)
        self.grid = jg_grid.expand(config, self.spec.hashes(), self.spec.cell_hashes(), repeats=repeats)
        self.cell_paths: list[str] = self.grid.paths(self.results)
        self.report_index = f"{self.results}/report/index.html"
        self.cell_pattern = jg_grid.cell_pattern(self.site)
        main = workflow.is_main_process
        # The current configuration (config hash and identity per workload): aggregate's input, so that
        # returning to an earlier configuration, whose cells all exist, still rebuilds the summary for it.
        self.current_stamp = self.stamp("current", lambda: json.dumps(self.spec.current(), sort_keys=True, indent=1))
        # report:, fleet:, the sites and the hardware table: rule report's input (re-renders on a change).
        from .analysis.settings import AnalysisSettings
        from .carbon import stamp as carbon_stamp

        settings = functools.cache(lambda: AnalysisSettings.from_config(config, self.sites))  # main process only
        self.report_stamp = self.stamp("report", lambda: settings().to_json())
        # the sites' intensity, PUE and intensity series (sha256 of each file): rule aggregate's input (the summary's
        # carbon columns, joulegrid.carbon), so that a new or corrected series re-aggregates and re-renders
        self.carbon_stamp = self.stamp("carbon", lambda: carbon_stamp(self.sites, settings().carbon_series))
        # Every run file under runs/ that this grid does not make (other sites' folders copied or rsync-ed
        # in, `joulegrid import`, other configurations), with its size and mtime: rule aggregate's input, so
        # that `snakemake` rebuilds the summary and the report when such files arrive (an mtime trigger
        # cannot see a copied file: rsync -a keeps its old time).
        runs = f"{self.results}/runs"
        self.runs_stamp = self.stamp(
            "runs", lambda: jg_grid.run_manifest(runs, (p[len(runs) + 1 :] for p in self.cell_paths))
        )
        if main:
            self._forecast()
        self.jg = self._command()
        # Without a shared filesystem (a profile's shared-fs-usage: none: lxplus, Blackett) HTCondor transfers
        # each job's inputs and outputs; the site's facts may name a packed environment the jobs run in.
        self.shared_fs = bool(workflow.storage_settings.shared_fs_usage)
        self.site_facts = {**self.sites[self.site], **self.spec.facts}
        if main:
            self._submit_environment()
        # The grid snapshot <results>/.grid/<hash of its content>.json: the settings of every workload of
        # this configuration (data, reference model, site facts), written once by the main process; each
        # job reads it with the cell's wildcards (run-cell --grid). docs/architecture.md, "The lean measure rule".
        self.grid_snapshot = self.spec.snapshot_path(write=main, cells=self.grid.cells)
        self.grid_snapshot_q = shlex.quote(self.grid_snapshot)  # as rule measure's shell command names it
        # Code versions (versions:, docs/compare.md): a measure job is a quadruple of both versions
        # (joulegrid.quadruple), five runs of the cell, so it gets five times a cell's runtime; the versions'
        # checkouts are read from the submit host's filesystem.
        from . import versions

        self.versions = versions.enabled(config)
        self.run_command = "run-quadruple" if self.versions else "run-cell"
        self.measure_runtime_min = config["job"]["runtime_min"] * (versions.RUNS_PER_JOB if self.versions else 1)
        if self.versions and not self.shared_fs:
            raise WorkflowError(
                "joulegrid config error: config key versions: code-version comparisons need a filesystem the jobs "
                "share with the submit host (the versions' checkouts under resources_dir/versions/), but this "
                "profile sets shared-fs-usage: none. Fix: run them on a site with a shared filesystem, or locally"
            )
        self.start_time: float | None = None  # on_start (main process): on_error shows this run's job errors only
        self.unchecked: str | None = None  # on_start: jobs Snakemake did not check (on_success says the next command)
        self._register()

    # ------------------------------------------------------------------ parse time
    def stamp(self, name: str, text: Callable[[], str]) -> str:
        """<results>/.stamps/<name>.json holding text(), rewritten (by the main Snakemake process, also in a
        dry run) only when it changes (joulegrid.io.stamp): as the input of a rule it reruns that rule
        exactly when the content changed, which profiles/default's rerun-triggers [mtime] would otherwise
        hide (it ignores params). Cluster jobs (--mode remote) only read it: text() runs in the main process only."""
        path = f"{self.results}/.stamps/{name}.json"
        if self.workflow.is_main_process:
            from .io import stamp

            stamp(path, text())
        return path

    def _design(self) -> int:
        """grid.repeats: auto: the frozen design of the results folder, written the first time (analysis/design.py);
        its repeats."""
        from .analysis import design

        try:
            d, what = design.freeze(self.config)
        except design.DesignError as e:
            raise WorkflowError(f"joulegrid design: {e}") from None
        if what != "frozen":
            print(f"joulegrid design ({what} {design.path(self.config)}): {d.lines()[0]}", file=sys.stderr)
        return d.repeats

    def _forecast(self) -> None:
        """Forecast of the cells still to run from earlier results, and the budget: caps refuse here, before any job."""
        from .analysis import plan

        try:
            forecast = plan.snakemake_check(self.config, self.grid, self.sites)
        except plan.BudgetError as e:
            raise WorkflowError(f"joulegrid budget: {e}") from None
        if forecast:
            print(forecast, file=sys.stderr)

    def _command(self) -> str:
        """The joulegrid command: the one on PATH (activated venv, conda env), else the interpreter running
        Snakemake; with --sdm conda the env's (sys.executable would be the interpreter running Snakemake).
        Also exports JOULEGRID_HOME (the checkout; conda env create runs in this process and installs it)."""
        from snakemake.settings.types import DeploymentMethod

        os.environ["JOULEGRID_HOME"] = str(Path(self.workflow.basedir).resolve())
        if DeploymentMethod.CONDA in self.workflow.deployment_settings.deployment_method:
            return "joulegrid"
        return "joulegrid" if shutil.which("joulegrid") else f"{shlex.quote(sys.executable)} -m joulegrid"

    def _submit_environment(self) -> None:
        """What a job needs of the submit host, checked on the worker by joulegrid's job wrapper
        (src/joulegrid/job-wrapper.sh): exported here, passed on by the executors (Slurm's environment,
        HTCondor's getenv). Inside a job this is the worker's own Snakemake: keep the submit host's."""
        os.environ.update(
            executors.submit_environment(self.results, None if self.shared_fs else self.site_facts.get("env_tarball"))
        )
        if not self.shared_fs:
            # snakemake-executor-plugin-htcondor 0.3 hands workflow.configfiles to a job as --configfiles in
            # that order, and the job applies them in order: the Snakefile's default config (listed after the
            # --configfile grids) would override them there. Defaults first, as in this process.
            default = os.path.abspath(os.path.join(self.workflow.basedir, "config", "config.yaml"))
            self.workflow.configfiles.sort(key=lambda f: os.path.abspath(f) != default)

    def _register(self) -> None:
        """Wildcard constraints, and the energy_meter resource's scope."""
        wf = self.workflow
        wf.global_wildcard_constraints(
            **jg_grid.WILDCARD_CONSTRAINTS, dataset=jg_grid.NAME_RE, rows=r"[0-9]{1,10}", mhash=r"[0-9a-f]{16}"
        )
        # Measurements share the machine's power meters: locally they run one at a time (the default
        # profile sets energy_meter=1); the scope is local, so cluster jobs are not limited by it.
        wf.resource_scopes.update({"energy_meter": "local"})
        # A cluster job runs `snakemake --mode remote`, which applies no profile (so not profiles/default's
        # energy_meter: 1) and gets --cores of the submit host. A group job of N cells (group-components)
        # would then measure several cells at once in an allocation sized for one (seen on HTCondor):
        # inside jobs, measurements also take the host's meters one at a time.
        if not wf.is_main_process and "energy_meter" not in wf.global_resources:
            wf.register_resource("energy_meter", 1)

    # ------------------------------------------------------------------ what the rules read
    def job_resources(
        self,
        mem_mb: int,
        runtime_min: int,
        gpus: Callable[[Any], int] | int = 0,
        group_size: Callable[[], int] | int = 1,
        reads: Callable[[Any], dict[str, str]] | None = None,
        constraint: str | None = None,
    ) -> dict[str, Any]:
        """Resources of a job that mean the same on every executor (joulegrid/executors.py): mem_mb ->
        slurm --mem / htcondor request_memory, runtime -> slurm -t / lxplus +JobFlavour, gpu -> slurm
        --gpus / htcondor request_gpus; memory and runtime scale with the attempt. HTCondor jobs also run
        through joulegrid's job wrapper (and transfer files without a shared filesystem: also what reads(wildcards)
        names, the files a measure job reads that are not its inputs)."""
        try:
            return executors.job_resources(
                self.site, self.site_facts, mem_mb, runtime_min, gpus, group_size, self.shared_fs, self.results, reads,
                constraint,
            )  # fmt: skip
        except executors.SiteError as e:
            raise WorkflowError(str(e)) from None

    def cell_gpus(self) -> Callable[[Any], int] | int:
        """GPUs of a measure job: job.gpus for cuda cells (slurm --gpus, htcondor request_gpus), none
        for the others; a plain 0 (no function per job) for a grid without cuda."""
        if "cuda" not in self.config["grid"]["devices"]:
            return 0
        n = self.config["job"]["gpus"]
        return lambda wc: n if wc.device == "cuda" else 0

    def cells_per_group(self) -> int:
        """Cells per cluster job: N of `group-components: [cells=N]`, 1 without it (docs/sites.md, "Many
        short cells"). Snakemake reads --group-components only after the Snakefile is parsed: asked per job."""
        return executors.cells_per_group(self.workflow.group_settings.group_components)

    @functools.cache  # noqa: B019 - once per Workflow, and one Workflow lives as long as its Snakemake process
    def resolve_measure_rule(self) -> None:
        """Settle what rule measure can only know once Snakemake has read its settings, as plain values.

        - its group: 'cells' when the run groups cells, else none (one cell per job). Not a `group:`
          callable, which Snakemake would call for every job (three times when it returns None: 4 s of
          a 10,000-cell dry run);
        - its `attempt` resource (run-cell's --attempt): a function of the job's attempt, which
          Snakemake evaluates for every job (~430 Python calls per job in a dry run, of ~5,500); in
          the main process of a run without retries every attempt is the first, so it becomes the
          constant 1 (~110 calls; docs/benchmarks.md). Inside a cluster job it stays the function:
          Snakemake gives it the attempt the submitting Snakemake passed (--attempt). (The shell
          command itself cannot be changed here: Snakemake compiles it when it parses the Snakefile.)

        Called from phase_inputs (the input function of the cell_inputs rule): Snakemake reads
        --group-components, --retries and --attempt after the Snakefile is parsed but before it builds
        the DAG, every measure job brings a cell_inputs job into the DAG, and Snakemake asks a job's
        group and resources only later."""
        wf = self.workflow
        measure = wf.get_rule("measure")
        measure.group = executors.CELL_GROUP if self.cells_per_group() > 1 else None
        if wf.is_main_process and not getattr(wf.execution_settings, "retries", 0):
            measure.resources["attempt"] = 1
        if wf.is_main_process and getattr(wf, "dryrun", False):
            self.dry_run_checks()
        elif wf.is_main_process:
            self.block_priorities(measure)

    def block_priorities(self, measure) -> None:
        """Blocked repeats (docs/measurement.md, "Blocked repeats"): every cell's repeat 0, then every cell's
        repeat 1, ..., each block in its seeded order (grid.block_order). Snakemake's schedulers (ILP and
        greedy, snakemake/scheduling) start the ready jobs of the highest priority first, so rule measure's
        priority falls along that order, and the jobs that make its inputs (data, reference models, the
        inputs.json) come before every cell: otherwise a block's inference cells would wait for every block's
        training cells. Set in a real run of the main process only: Snakemake evaluates a priority callable
        for every job, in a dry run too (docs/benchmarks.md, "Dry run of a big grid"), and a dry run orders
        nothing. Inside a cluster job (one cell, or a group) there is nothing to order."""
        order = jg_grid.block_order(self.grid.cells, self.config["seed"])
        top = len(order) + 1
        prio = {(jg_grid.block_cell(c), c.repeat): top - i for i, (c, _) in enumerate(order)}

        def priority(wc) -> int:
            return prio.get((f"{wc.workload}/{wc.phase}/{wc.device}/{wc.precision}/bs{wc.batch}", int(wc.repeat)), 1)

        measure.priority = priority
        for name in ("prepare_dataset", "train_reference", "cell_inputs"):
            self.workflow.get_rule(name).priority = top + 1

    def start_problems(self, executor: str | None, cores: int | None) -> list[tuple[str, str]]:
        """('error'|'warning', message) of the start-time checks: the site against the executor, measure.threads
        against --cores, the group size against the site's longest job (on_start, and a dry run's warnings)."""
        wf, config = self.workflow, self.config
        problems = (
            executors.executor_problem(self.site, self.spec.facts["scheduler"], executor),
            executors.threads_problem(config["measure"]["threads"], cores, executor),
            executors.group_problem(
                self.site, self.site_facts, config["job"]["runtime_min"],
                wf.group_settings.group_components, wf.group_settings.overwrite_groups,
            ),
        )  # fmt: skip
        return [p for p in problems if p]

    def dry_run_checks(self) -> None:
        """The checks on_start makes before a run, in a dry run (Snakemake calls no onstart there), as
        warnings: `snakemake -n` is how a new site is checked (docs/sites.md). The executor is the one the
        real run would use (--executor or the profile's), the cores what it would have, and finished run
        files that -F / -R / -f would force are the ones a real run refuses to overwrite."""
        from snakemake.logging import logger

        executor, cores = _intended_executor_and_cores(os.environ.get("PWD"), self.workflow.basedir)
        cores = cores or self.workflow.resource_settings.cores
        for level, msg in self.start_problems(executor, cores):
            stop = " A real run stops here." if level == "error" else ""
            msg = msg.removeprefix("joulegrid config error: ").removeprefix("joulegrid: ")
            logger.warning(f"joulegrid (dry run): {msg}{stop}")
        ds = self.workflow.dag_settings
        forced = set()
        if ds.forceall or "measure" in ds.forcerun:
            forced = set(self.cell_paths)
        elif ds.forcerun or ds.forcetargets:
            named = {os.path.normpath(str(t)) for t in (*ds.forcerun, *(ds.targets if ds.forcetargets else ()))}
            forced = {p for p in self.cell_paths if os.path.normpath(p) in named}
        done = sorted(p for p in forced if os.path.exists(p))
        if done:
            shown = ", ".join(done[:3]) + (f" and {len(done) - 3} more" if len(done) > 3 else "")
            logger.warning(
                f"joulegrid (dry run): -F / -R / -f forces {len(done)} finished measurement(s) ({shown}): a real run "
                "refuses to overwrite them. Fix: move them aside with `joulegrid remeasure '<cell id pattern>'` "
                f"(kept under {self.results}/archive/), then run snakemake without the force flag"
            )

    def phase_inputs(self, wc) -> dict[str, str]:
        """What the cells of one configuration hash and phase read: the dataset, and for inference the
        reference model (the cell_inputs rule: one call per workload configuration and phase, not per cell).

        ancient(), as every input of a job before rule measure: such a job runs only when a job after it
        needs its missing output, never on a file's time (re-prepared data, a copied tree). Snakemake (9.27,
        DAG.update_needrun) does not check the jobs after a job with a reason of its own to run, and its
        walk to them stops at rule measure's ancient() input: a newer dataset here left a copied site's runs
        out of the summary for one run (issue 28; docs/architecture.md, "One run is enough")."""
        from snakemake.io import ancient

        self.resolve_measure_rule()
        try:
            workload = self.spec.workload_of(wc.chash)
        except ConfigError as e:
            raise WorkflowError(f"joulegrid: {e}") from None
        data = self.spec.data_path(workload)
        ins = {"data": ancient(data)} if data else {}
        if wc.phase == "infer":
            ins["model"] = ancient(self.spec.model_path(workload))
        return ins

    def reference_inputs(self, wc) -> dict[str, Any]:
        """The dataset a workload's reference model trains on (one call per workload)."""
        from snakemake.io import ancient

        data = self.spec.data_path(wc.workload)
        return {"data": ancient(data)} if data else {}

    # ------------------------------------------------------------------ the run
    def on_start(self) -> None:
        """The checks that need the executor, known only once the run starts (onstart: not called for dry
        runs, nor inside cluster jobs). The site (recorded in every row, and the results/runs/<site>/
        folder) must fit the executor: a site profile sets both. Snakemake caps each job's threads at
        --cores (cluster jobs too): a cluster run that would silently measure cells with fewer threads
        than measure.threads is refused. A dry run makes the same checks as warnings (dry_run_checks)."""
        from snakemake.logging import logger

        wf = self.workflow
        # Retries of failed jobs (--retries, site profiles): jobs read it to know whether a killed run-cell
        # will be retried (joulegrid record-failure); executors pass the submit environment on (Slurm's
        # default --export=ALL, HTCondor getenv: True in the site profiles). Unset = no retries left.
        os.environ["JOULEGRID_RETRIES"] = str(wf.execution_settings.retries or 0)
        self.start_time = time.time()
        self._guard_rerun(logger)
        self.unchecked = unchecked_after_forced(wf)
        executor = getattr(wf.executor_plugin, "name", None)
        if executor == "htcondor":
            problem = executors.transfer_problem(self.site, self.site_facts, self.shared_fs, self.results, wf.basedir)
            if problem:
                raise WorkflowError(problem)
            if (
                not self.shared_fs
            ):  # an input of every job (earlier attempts): HTCondor holds a job whose input is missing
                os.makedirs(f"{self.results}/attempts", exist_ok=True)
        if executor == "slurm":  # the worker checks the environment before the job's Snakemake starts
            wf.remote_execution_settings.precommand = executors.slurm_precommand(
                os.environ["JOULEGRID_HOME"], wf.remote_execution_settings.precommand
            )
        from .quiet import condor_config_problem

        if condor_config_problem(executor):  # htcondor2's own warning about it is hidden (joulegrid/quiet.py)
            raise WorkflowError(condor_config_problem(executor))
        for level, msg in self.start_problems(executor, wf.resource_settings.cores):
            if level == "error":
                raise WorkflowError(msg)
            logger.warning(msg)

    def _guard_rerun(self, logger) -> None:
        """Never lose a measurement: Snakemake would delete a finished run file before re-running its job
        (forced, or marked incomplete); joulegrid refuses the first and archives the second (archive.py)."""
        from . import archive

        dag = self.workflow.dag
        # Snakemake also reports "Forced execution" for the output of a job killed after writing it
        # (--rerun-incomplete, profiles/default, forces incomplete files): forced by the user only with
        # -R / --forcerun, -F or -f
        ds = self.workflow.dag_settings
        user_forced = bool(ds.forceall or ds.forcetargets or ds.forcerun)
        jobs = [
            ([str(o) for o in j.output], user_forced and bool(dag.reason(j).forced))
            for j in dag.needrun_jobs()
            if j.rule.name == "measure"
        ]
        try:
            archived = archive.guard_rerun(jobs, self.results)
        except archive.ArchiveError as e:
            raise WorkflowError(f"joulegrid: {e}") from None
        for p in archived:
            logger.warning(
                f"joulegrid: {p.name} of an unfinished job (killed after writing it) archived as {p}; the cell is "
                "measured again"
            )

    def on_success(self) -> None:
        """One line naming the next command when this run could not do all there is to do: Snakemake
        left jobs unchecked after a job it forced (unchecked_after_forced)."""
        if self.unchecked:
            from snakemake.logging import logger

            logger.warning(self.unchecked)

    def on_error(self) -> None:
        """A job that could not run on its worker said why in its error file (job-wrapper.sh), which
        Snakemake does not show (HTCondor: only the exit code): shown here, each message once."""
        if self.start_time is None:
            return
        from snakemake.logging import logger

        wf = self.workflow
        files = executors.job_error_files(getattr(wf.executor_plugin, "name", None), wf.executor_settings)
        for msg in executors.env_check_failures(files, self.start_time):
            logger.error(msg)


#: Options that force jobs to run (Snakemake's -R/--forcerun take the targets that follow them).
_FORCE_FLAGS = ("-F", "--forceall", "-f", "--force")
_FORCE_LISTS = ("-R", "--forcerun")


def next_command(argv: list[str]) -> str:
    """The command line to run after this one: the same, without the options that force jobs to run."""
    out, skipping = [], False
    for a in argv[1:]:
        if skipping and not a.startswith("-"):
            continue
        skipping = a in _FORCE_LISTS
        if skipping or a in _FORCE_FLAGS or a.startswith("--forcerun="):
            continue
        out.append(a)
    return shlex.join(["snakemake", *out])


def unchecked_after_forced(wf, argv: list[str] | None = None) -> str | None:
    """A line naming the next command when Snakemake (9.27, DAG.update_needrun) left jobs unchecked, else None.

    Snakemake decides which jobs run in two passes: each job's own reasons (a missing output of a target,
    an input newer than the output, forced), skipping every job after one that already has a reason, then
    a walk from those jobs to the jobs after them, which stops at an ancient() input. So a job after an
    ancient() edge, behind a job with a reason of its own, is never checked: its own reasons (a changed
    stamp, a missing run file) wait for the next run (snakemake/snakemake#4166). joulegrid's jobs before
    rule measure's ancient() edge have no reason of their own (their inputs are ancient() too: they run only
    for a job after them that needs their missing output), except when Snakemake forces them: -R/--forcerun/-f
    naming them, or --rerun-incomplete after a kill -9 in the instant between such a job's output and its
    completion record. Then this run does that job and not necessarily the rest: the next command does."""
    dag = wf.dag
    ds = wf.dag_settings
    if ds.until or ds.omit_from or ds.allowed_rules:  # the user asked for a part of the DAG: nothing is amiss
        return None
    needrun = set(dag.needrun_jobs())
    unchecked: set = set()
    ran: set[str] = set()
    for j in needrun:
        if dag.reason(j).derived:  # False for a job whose reason the first pass found (Snakemake's Reason)
            continue
        after = {d for d in dag.bfs(dag.depending, j) if d not in needrun}
        if after:
            unchecked |= after
            ran.add(f"{j.rule.name} ({'forced' if dag.reason(j).forced else dag.reason(j)})")
    if not unchecked:
        return None
    return (
        f"joulegrid: Snakemake ran {', '.join(sorted(ran))} and did not check the {len(unchecked)} job(s) "
        f"after it (snakemake/snakemake#4166), so this run may have left work undone. "
        f"Next: {next_command(sys.argv if argv is None else argv)}"
    )
