"""Command line: ``joulegrid run-cell | run-quadruple | record-failure | remeasure | train-reference | prepare-data |
plan | meters | calibrate | aggregate | import | report | compare | carbon-series | pack-env | schema``.

Snakemake rules call these; each also works by hand (see README). A command's own output (the schema,
the plan, a calibration) is printed; its diagnostics are logged (joulegrid.logs: "joulegrid: ..." on
stderr), configured once in ``main``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import CellSpec

log = logging.getLogger(__name__)


def _load_spec(args) -> CellSpec:
    """The cell spec of --spec (JSON) or --spec-file, read once, typed (spec.CellSpec)."""
    from .spec import CellSpec

    if args.spec:
        return CellSpec.from_dict(json.loads(args.spec))
    if args.spec_file:
        return CellSpec.from_dict(json.loads(Path(args.spec_file).read_text()))
    raise SystemExit("joulegrid: give --grid SNAPSHOT (what Snakemake passes), --spec JSON or --spec-file PATH")


def _cell(args) -> tuple[CellSpec, str | None, str | None]:
    """(spec, data, model) of run-cell / record-failure: from the grid snapshot and the run file's path
    (--grid, what rule measure passes), or from --spec/--spec-file with --data/--model."""
    if getattr(args, "grid", None):
        from . import hostcache
        from .spec import cell_spec_from_snapshot

        c = cell_spec_from_snapshot(args.grid, args.out, getattr(args, "code_version", None))
        # what the first cell on this host detected (codecarbon), the next ones reuse
        hostcache.configure(c.resources_dir)
        return c.spec, args.data or c.data, args.model or c.model
    return _load_spec(args), args.data, args.model


def cmd_run_cell(args) -> int:
    from .failures import EXIT_REFUSED
    from .meters import RequiredMeterMissing
    from .precision import Unsupported
    from .runner import DeviceUnavailable, run_and_write

    global _EXIT_NOW
    spec, data, model = _cell(args)
    try:
        row = run_and_write(spec, args.out, data, model, args.attempt, args.threads)
        _EXIT_NOW = True  # the row is on disk
    except (RequiredMeterMissing, DeviceUnavailable, Unsupported) as e:  # the last two only with strict_devices
        cell = spec.cell
        hint = (
            " (strict_devices: true; set it false to record a skipped row instead)"
            if not isinstance(e, RequiredMeterMissing)
            else ""
        )
        log.error("cell %s/%s/%s not started: %s%s", cell.workload, cell.phase, cell.device, e, hint)
        return EXIT_REFUSED
    extra = row.get("skip_reason") or row.get("error_type") or ""
    log.info(f"{row['cell_id']}: {row['status']} {extra}".rstrip())
    return 0


def cmd_run_quadruple(args) -> int:
    from . import quadruple

    return quadruple.run(args.grid, args.out, args.attempt, args.threads, args.data, args.model)


def cmd_compare(args) -> int:
    from .analysis import compare

    return compare.run(args)


def cmd_record_failure(args) -> int:
    from .failures import record_failure

    return record_failure(_cell(args)[0], args.out, args.exit_code, args.attempt, args.retries, args.log)


def cmd_remeasure(args) -> int:
    from .archive import ArchiveError, remeasure

    try:
        moved, dest = remeasure(args.results, args.pattern, dry_run=args.dry_run)
    except ArchiveError as e:
        log.error("%s", e)
        return 2
    verb = "would move" if args.dry_run else "moved"
    for p in moved:
        log.info("%s %s", verb, p.relative_to(dest / "runs").as_posix())
    log.info("%s %d finished cell(s) to %s; run snakemake (same command) to measure them again", verb, len(moved), dest)
    return 0


def cmd_train_reference(args) -> int:
    from .runner import train_reference

    if args.grid:
        from .base import ConfigError
        from .spec import reference_spec_from_snapshot

        if not args.workload:
            raise ConfigError("train-reference --grid needs --workload NAME")
        spec, data, model = reference_spec_from_snapshot(args.grid, args.workload)
        from .spec import read_snapshot
        from .versions import BASE, from_snapshot

        vs = from_snapshot(read_snapshot(args.grid))
        if vs:  # code versions: the reference model is trained by the base version's code (one version here)
            sys.path.insert(0, vs[BASE].import_root)
        if Path(args.out) != Path(model):
            raise ConfigError(
                f"--out {args.out}: the grid snapshot {args.grid} has {args.workload}'s reference model at {model}"
            )
        train_reference(spec, args.out, args.data or data, args.threads)
        return 0
    train_reference(_load_spec(args), args.out, args.data, args.threads)
    return 0


def cmd_prepare_data(args) -> int:
    from .data import prepare

    prepare(args.dataset, args.rows, args.out)
    return 0


def cmd_plan(args) -> int:
    from .analysis.plan import plan

    return plan(args)


def cmd_meters(args) -> int:
    from .cell_settings import Measure
    from .config import load
    from .hardware import config_calibrations
    from .meters.survey import survey
    from .sites import SiteFacts, site_facts

    config, sites = load(args.configfile, args.config, replace_workflow_config=args.replace_workflow_config)
    site = SiteFacts.from_dict(site_facts(sites, config["site"], config_calibrations(config)))
    return survey(Measure.from_dict(config["measure"]), site, args.device, args.window)


def cmd_calibrate(args) -> int:
    from . import hardware
    from .meters.calibration import CalibrationError
    from .meters.ladder import LadderSettings, calibrate, summary
    from .meters.usage import PROC
    from .probes import cpu_model

    def say(text):
        return print(text, file=sys.stderr)

    model = cpu_model()
    if not model:
        log.error(
            "this host's CPU model is unknown (no 'model name' in /proc/cpuinfo): a calibration is saved under it, "
            "so there is nothing to save it under"
        )
        return 2
    target = hardware.resolve(args.hardware_file)
    try:
        existing = hardware.read(target).calibrations
        if model in existing and not (args.replace or args.dry_run):  # fail before minutes of ladder, not after
            raise hardware.HardwareError(
                f"{target} already has a calibration of {model!r} (from "
                f"{existing[model].get('calibrated_at', '?')}). Fix: pass --replace to make a new one "
                "current (the old one is kept under 'previous')"
            )
        st = LadderSettings(
            args.step_s,
            args.settle_s,
            args.interval_s,
            args.levels,
            args.mem_gb,
            args.proc or os.environ.get("JOULEGRID_PROC") or PROC,
            args.powercap,
        )
        entry = calibrate(st, model, say)
    except (CalibrationError, hardware.HardwareError) as e:
        log.error("%s", e)
        return 2
    say(f"calibration of {model!r}:")
    for line in summary(entry):
        say(line)
    if args.dry_run:
        import yaml

        print(
            yaml.safe_dump(
                {hardware.CALIBRATIONS: {model: entry}}, sort_keys=False, default_flow_style=None, width=110
            ),
            end="",
        )
        say("joulegrid: --dry-run: nothing written")
        return 0
    try:
        hardware.write_calibration(target, model, entry, replace=args.replace)
    except hardware.HardwareError as e:
        log.error("%s", e)
        return 2
    say(
        f"joulegrid: saved under {hardware.CALIBRATIONS}[{model!r}] in {target}; cells on hosts of this CPU model "
        "without readable counters now use it (energy_method model-calibrated); hosts with counters record its error"
    )
    for note in _node_power_notes(model):
        say(note)
    return 0


def _node_power_notes(model: str, sites_file: str | os.PathLike | None = None) -> list[str]:
    """config/sites.yaml node_power entries that name this CPU model: they take precedence over a calibration."""
    from .config import REPO_ROOT
    from .sites import DEFAULT_FILE, SiteError, load_sites, node_power

    p = Path(sites_file) if sites_file else REPO_ROOT / DEFAULT_FILE
    try:
        sites = load_sites(p)
    except SiteError:
        return []  # a note after a calibration: the run of snakemake names what is wrong with the file
    out = []
    for site, facts in sites.items():
        for e in node_power(facts):
            want = e.get("cpu_model")
            if want and str(want).lower() in model.lower():
                out.append(
                    f"joulegrid: note: {p} {site}.node_power names {want!r}, which takes precedence over a calibration "
                    'at that site; remove it there to use the calibration (docs/measurement.md, "Calibrating a CPU '
                    'model")'
                )
    return out


def cmd_aggregate(args) -> int:
    from .analysis.aggregate import AggregateError, aggregate, other_path, read_current
    from .config import ConfigError

    try:
        current = read_current(args.current) if args.current else None
        res = aggregate(
            args.runs,
            args.out,
            strict=args.strict,
            current=current,
            other_out=args.other,
            carbon=_carbon_facts(args.carbon),
        )
    except (AggregateError, ConfigError) as e:
        log.error("%s", e)
        return 2
    log.info("%d run(s) from %d file(s) -> %s", res.n_rows, res.n_files, args.out)
    if res.n_other:
        log.info(
            "%d run(s) of other configurations (another config hash) -> %s, not in the summary",
            res.n_other,
            args.other or other_path(args.out),
        )
    if res.n_files == 0:
        where = "does not exist" if not Path(args.runs).is_dir() else "holds no run files"
        log.warning(
            "%s %s: the summary is empty. Fix: run the grid first (snakemake), or pass --runs <results>/runs",
            args.runs,
            where,
        )
    for p, why in res.problems:
        log.warning("skipped %s: %s", p, why)
    return 0


def cmd_import(args) -> int:
    from .importer import ImportRefused, describe, import_trees, parse_renames

    try:
        res = import_trees(args.paths, args.results, parse_renames(args.as_site), dry_run=args.dry_run)
    except ImportRefused as e:
        log.error("import refused: %s", e)
        return 2
    for line in describe(res, args.results, dry_run=args.dry_run):
        log.info("%s", line)
    return 0


def _carbon_facts(path: str | None):
    """(sites, series) the summary's carbon columns are computed with: the carbon stamp the Snakemake rule
    passes (--carbon), else the checkout's config/sites.yaml and its series."""
    from . import carbon

    if path:
        return carbon.read_stamp(Path(path).read_text())
    from .analysis.settings import AnalysisSettings

    st = AnalysisSettings.defaults()
    return st.sites, st.carbon_series


def _analysis_settings(args):
    """The analysis settings of `joulegrid report` / `aggregate`: --settings, --settings-file (what the
    Snakemake rules pass: the report stamp), --configfile, else the defaults and the checkout's sites file."""
    from .analysis.settings import AnalysisSettings

    if args.settings:
        return AnalysisSettings.from_json(args.settings)
    if args.settings_file:
        return AnalysisSettings.from_json(Path(args.settings_file).read_text())
    if args.configfile:
        from .config import load

        config, sites = load(args.configfile)
        return AnalysisSettings.from_config(config, sites)
    return AnalysisSettings.defaults()


def cmd_report(args) -> int:
    from .analysis.report import build_report

    settings = _analysis_settings(args)
    index = build_report(args.summary, args.out, problems_file=args.problems, settings=settings, other_file=args.other)
    log.info("report written to %s", index)
    return 0


def cmd_carbon_series(args) -> int:
    """`joulegrid carbon-series check FILE` / `convert --from FORMAT IN... -o OUT` (docs/sites.md, "Carbon
    intensity over time"): what a series holds, or downloads turned into a series file."""
    from . import carbon

    if args.action == "check":
        s = carbon.read_series(args.file, args.region)
        for line in carbon.describe(s, args.k):
            print(f"joulegrid: {line}")
        return 0
    from .carbon_convert import convert, write_series

    conv = convert(
        args.fmt,
        args.inputs,
        value=args.value,
        basis=args.basis,
        time=args.time,
        end=args.end,
        region=args.region,
        tz=args.tz,
        sep=args.sep,
        encoding=args.encoding,
    )
    names = ", ".join(Path(i).name for i in args.inputs)
    header = [
        f"converted by `joulegrid carbon-series convert --from {args.fmt}` from {names}",
        "each value is the mean intensity (gCO2e/kWh) of the period STARTING at its timestamp (docs/sites.md)",
    ]
    out = write_series(conv, args.output, header)
    regions = conv.df["region"].unique().sort().to_list() if "region" in conv.df.columns else [None]
    for r in regions:  # the file as joulegrid will read it, region by region
        for line in carbon.describe(carbon.read_series(out, r), args.k):
            print(f"joulegrid: {line}")
    for n in conv.notes:
        print(f"joulegrid: note: {n}")
    if len(regions) > 1:
        print(f"joulegrid: {len(regions)} regions: choose one with carbon_intensity.region in the sites file")
    return 0


def cmd_pack_env(args) -> int:
    from .packenv import PackError, pack

    try:
        packed = pack(args.out, exclude=tuple(args.exclude))
    except PackError as e:
        log.error("%s", e)
        return 2
    log.info(
        "packed the venv %s (%d files, %.0f MB) into %s (%.0f MB). The workers need its base Python %s at that path.",
        sys.prefix,
        packed.files,
        packed.bytes_in / 1e6,
        packed.path,
        packed.path.stat().st_size / 1e6,
        packed.base_python,
    )
    return 0


def cmd_schema(args) -> int:
    from . import schema

    if args.markdown:
        print(schema.markdown(), end="")
    else:
        for c in schema.COLUMNS:
            print(f"{c.name}\t{c.type}\t{c.unit}")
    return 0


def _config_args(p: argparse.ArgumentParser) -> None:
    """--configfile / --config / --replace-workflow-config with Snakemake's meaning (joulegrid.config.merge)."""
    p.add_argument(
        "--configfile",
        "--configfiles",
        nargs="+",
        default=None,
        metavar="FILE",
        help="config files merged in order over config/config.yaml, as snakemake --configfile does",
    )
    p.add_argument(
        "--config",
        "-C",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides merged last, as snakemake --config reads them (e.g. seed=7 'grid={repeats: 2}')",
    )
    p.add_argument(
        "--replace-workflow-config",
        action="store_true",
        help="do not start from config/config.yaml (snakemake --replace-workflow-config)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="joulegrid", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run-cell", help="measure one grid cell and write its result file")
    r.add_argument(
        "--grid",
        help="the grid snapshot (<results>/.grid/<hash>.json, what Snakemake passes): the settings; "
        "the cell and its config hash come from --out, its run file",
    )
    r.add_argument("--spec", help="cell spec as JSON")
    r.add_argument("--spec-file", help="cell spec as a JSON file")
    r.add_argument("--out", required=True, help="result Parquet file to write (atomically)")
    r.add_argument("--data", help="prepared dataset file")
    r.add_argument("--model", help="reference model (inference cells)")
    r.add_argument("--attempt", type=int, default=1, help="Snakemake attempt number")
    r.add_argument("--threads", type=int, default=None, help="CPU threads allocated to the job")
    r.add_argument(
        "--code-version",
        default=None,
        metavar="LABEL",
        help="one run of a code-version quadruple (base or head; with --grid): the row says which version it measured",
    )
    r.set_defaults(func=cmd_run_cell)

    rq = sub.add_parser(
        "run-quadruple",
        help="measure one quadruple of a code-version comparison (config versions:): a warm-up run, then the cell's "
        "base and head versions in ABBA or BAAB order, each in its own run-cell process; its four rows in --out",
    )
    rq.add_argument("--grid", required=True, help="the grid snapshot (what Snakemake passes)")
    rq.add_argument("--out", required=True, help="the quadruple's run file (.../r<quadruple>-<hash>.parquet)")
    rq.add_argument("--data", help="prepared dataset file")
    rq.add_argument("--model", help="reference model (inference cells)")
    rq.add_argument("--attempt", type=int, default=1, help="Snakemake attempt number")
    rq.add_argument("--threads", type=int, default=None, help="CPU threads allocated to the job")
    rq.set_defaults(func=cmd_run_quadruple)

    cp = sub.add_parser(
        "compare",
        help="decide from a versions: campaign's results whether head is an energy regression of base, per cell "
        "and for the grid (docs/compare.md); prints a Markdown table; exit 0 pass, 1 regression, 2 inconclusive, "
        "3 bad input",
    )
    _config_args(cp)
    cp.add_argument(
        "trees",
        nargs="*",
        metavar="TREE",
        help="two result folders (base, then head; two sites or two campaigns): compared unpaired, cell by cell",
    )
    cp.add_argument("--results", default=None, help="the results folder (default: the config's results)")
    cp.add_argument(
        "--threshold", default=None, metavar="PCT", help="the margin, e.g. 5%% (default: compare.threshold_pct)"
    )
    cp.add_argument("--alpha", type=float, default=None, help="error rates (default: compare.alpha)")
    cp.add_argument(
        "--looks",
        default=None,
        metavar="N1,N2[,N3]",
        help="fix a group-sequential plan for this campaign: the pairs per cell at each of up to 3 looks (stored "
        "under <results>/compare-plans/; later compares follow it; docs/compare.md, Reruns)",
    )
    cp.add_argument("--markdown", default=None, metavar="FILE", help="also write the table to FILE")
    cp.set_defaults(func=cmd_compare)

    rf = sub.add_parser(
        "record-failure",
        help="after run-cell died (killed, crashed): log the attempt in <results>/attempts/, and on the last "
        "attempt write the cell's failed/oom row (the rule measure runs it as run-cell ... || record-failure)",
    )
    rf.add_argument("--grid", help="the grid snapshot, as for run-cell (what Snakemake passes)")
    rf.add_argument("--spec", help="cell spec as JSON")
    rf.add_argument("--spec-file", help="cell spec as a JSON file")
    rf.add_argument("--out", required=True, help="the cell's result file (never overwritten if it exists)")
    rf.add_argument("--exit-code", type=int, required=True, help="run-cell's exit status ($?; 128+N = signal N)")
    rf.add_argument("--attempt", type=int, default=1, help="Snakemake attempt number")
    rf.add_argument("--retries", type=int, default=0, help="Snakemake --retries (attempts beyond the first)")
    rf.add_argument("--log", default=None, help="run-cell's log: its tail goes into the error message")
    for name in ("--data", "--model"):  # rule measure passes both commands the same arguments
        rf.add_argument(name, default=None, help=f"run-cell's {name} (accepted, not used)")
    rf.set_defaults(func=cmd_record_failure)

    rm = sub.add_parser(
        "remeasure",
        help="measure finished cells again: move their run files (never delete) to <results>/archive/<timestamp>/",
    )
    rm.add_argument(
        "pattern", help="cell id pattern, e.g. 'local/baler_ae/train/cpu/fp32/bs256/r0' or 'local/*/infer/*'"
    )
    rm.add_argument("--results", default="results", help="results folder (config key results)")
    rm.add_argument("--dry-run", "-n", action="store_true", help="list the cells, move nothing")
    rm.set_defaults(func=cmd_remeasure)

    t = sub.add_parser("train-reference", help="train the fp32 reference model that inference cells load")
    t.add_argument("--grid", help="the grid snapshot (what Snakemake passes), with --workload")
    t.add_argument("--workload", help="the workload whose reference model to train (with --grid)")
    t.add_argument("--spec")
    t.add_argument("--spec-file")
    t.add_argument("--out", required=True)
    t.add_argument("--data")
    t.add_argument("--threads", type=int, default=None)
    t.set_defaults(func=cmd_train_reference)

    d = sub.add_parser("prepare-data", help="prepare a shipped dataset at a given size")
    d.add_argument("--dataset", required=True)
    d.add_argument("--rows", type=int, default=0, help="0 = the real dataset as shipped")
    d.add_argument("--out", required=True)
    d.set_defaults(func=cmd_prepare_data)

    pl_ = sub.add_parser(
        "plan",
        help="print the grid (cells per axis, exclusions with reasons) and, from earlier results, a forecast "
        "of core-hours, GPU-hours, kWh and kgCO2e; exit 3 when over the config's budget:",
    )
    _config_args(pl_)
    pl_.add_argument("--exclusions", action="store_true", help="list every excluded cell")
    pl_.add_argument("--forecast-cells", action="store_true", help="list the forecast of every cell still to run")
    pl_.add_argument(
        "--json",
        action="store_true",
        help="print the run file of every cell, the exclusions and each workload's config hash and settings as JSON",
    )
    pl_.add_argument(
        "--redesign",
        action="store_true",
        help="size the repeats again from the noise of the runs measured so far and rewrite <results>/design.json "
        "(grid.repeats: auto uses it; docs/metrics.md, 'Design of experiments')",
    )
    pl_.add_argument(
        "--pilot",
        action="store_true",
        help="first measure a pilot with snakemake (one cell per workload, phase and device, --pilot-repeats "
        "repeats, into <results>/pilot), then size the repeats from its noise (implies --redesign)",
    )
    pl_.add_argument("--pilot-repeats", type=int, default=None, metavar="N", help="repeats of the pilot's cells (5)")
    pl_.add_argument("--cores", default=None, help="--cores of the pilot's snakemake (default: the profile's)")
    pl_.set_defaults(func=cmd_plan)

    mt = sub.add_parser("meters", help="which energy meters work on this host (run it on an execution node)")
    _config_args(mt)
    mt.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="the cell device to check for")
    mt.add_argument(
        "--window", type=float, default=0.0, metavar="S", help="also measure an idle test window of S seconds"
    )
    mt.set_defaults(func=cmd_meters)

    ca = sub.add_parser(
        "calibrate",
        help="on a host with readable RAPL: run a short load ladder, fit this CPU model's power model (idle W, W per "
        "busy logical CPU, W per GB used) with its error, and save it in the hardware table (docs/measurement.md)",
    )
    ca.add_argument(
        "--hardware-file", default=None, help="the hardware table to save it in (default config/hardware.yaml)"
    )
    ca.add_argument(
        "--replace", action="store_true", help="make a new calibration of this CPU model current (the old one is kept)"
    )
    ca.add_argument("--dry-run", action="store_true", help="run and fit, print the entry, write nothing")
    ca.add_argument("--step-s", type=float, default=15.0, help="measured seconds per step (default %(default)s)")
    ca.add_argument(
        "--settle-s", type=float, default=3.0, help="seconds before each step is measured (default %(default)s)"
    )
    ca.add_argument(
        "--interval-s",
        type=float,
        default=0.5,
        help="reads within a step every this many seconds (default %(default)s)",
    )
    ca.add_argument(
        "--levels",
        type=int,
        default=6,
        help="busy steps besides 1 CPU, evenly up to all logical CPUs (default %(default)s)",
    )
    ca.add_argument(
        "--mem-gb",
        type=float,
        default=None,
        help="GB of memory for the resident and traffic steps (default: the "
        "smaller of 8 and a quarter of the available memory; 0 = no memory steps)",
    )
    ca.add_argument(
        "--powercap", default=None, help="powercap root (default /sys/class/powercap or $JOULEGRID_POWERCAP)"
    )
    ca.add_argument("--proc", default=None, help="proc root for stat and meminfo (default /proc or $JOULEGRID_PROC)")
    ca.set_defaults(func=cmd_calibrate)

    a = sub.add_parser("aggregate", help="merge run files into one summary Parquet")
    a.add_argument("--runs", default="results/runs")
    a.add_argument("--out", default="results/summary.parquet")
    a.add_argument("--strict", action="store_true", help="fail on the first corrupt or foreign run file")
    a.add_argument(
        "--current",
        default=None,
        metavar="JSON",
        help="the current configuration (<results>/.stamps/current.json, written by snakemake): the summary "
        "holds its runs only, other configurations' runs go to --other; without it every run is in the summary",
    )
    a.add_argument("--other", default=None, help="runs of other configurations (default <out>.other-configs.parquet)")
    a.add_argument(
        "--carbon",
        default=None,
        metavar="JSON",
        help="the sites' carbon facts and intensity series the summary's carbon columns are computed with "
        "(<results>/.stamps/carbon.json, written by snakemake); default: the checkout's config/sites.yaml",
    )
    a.set_defaults(func=cmd_aggregate)

    im = sub.add_parser(
        "import",
        help="bring another site's results tree (runs, attempts, hotspots, logs) into this one: checks schema "
        "versions, run ids and site names, never overwrites; then `snakemake` rebuilds the summary and report "
        "(docs/sites.md)",
    )
    im.add_argument("paths", nargs="+", metavar="PATH", help="another results folder (or its runs/, or runs/<site>/)")
    im.add_argument("--results", default="results", help="the results folder to import into (config key results)")
    im.add_argument(
        "--as-site",
        action="append",
        default=None,
        metavar="NAME|OLD=NEW",
        help="file the incoming runs under another site name (when the name is taken here by another "
        "machine or scheduler); NAME when the source holds one site, else OLD=NEW (repeatable)",
    )
    im.add_argument("--dry-run", "-n", action="store_true", help="check and say what would be taken, copy nothing")
    im.set_defaults(func=cmd_import)

    rp = sub.add_parser("report", help="charts and the self-contained HTML report")
    rp.add_argument("--summary", default="results/summary.parquet")
    rp.add_argument("--out", default="results/report")
    rp.add_argument("--problems", default=None, help="aggregate problems JSON to list in the report")
    rp.add_argument(
        "--other", default=None, help="runs of other configurations to name (default <summary>.other-configs.parquet)"
    )
    rp.add_argument(
        "--configfile",
        nargs="+",
        default=None,
        help=(
            "take report:, fleet:, sites and hardware from this config (merged over config/config.yaml as snakemake "
            "does)"
        ),
    )
    rp.add_argument("--settings", default=None, help="analysis settings as JSON")
    rp.add_argument(
        "--settings-file", default=None, help="analysis settings as a JSON file (what the Snakemake rule passes)"
    )
    rp.set_defaults(func=cmd_report)

    cs = sub.add_parser(
        "carbon-series",
        help="a carbon intensity series for a site (docs/sites.md, 'Carbon intensity over time'): check one, or "
        "convert downloads (NESO, Electricity Maps, any CSV such as RTE eCO2mix) into one",
    )
    csa = cs.add_subparsers(dest="action", required=True)
    ck = csa.add_parser(
        "check", help="read a series as the analysis does and say what it holds (coverage, gaps, typical day)"
    )
    ck.add_argument("file")
    ck.add_argument("--region", default=None, help="the rows of this region (files with a region column)")
    ck.add_argument("-k", type=int, default=8, help="how many cleanest hours of the day to name (fleet.cleanest_hours)")
    ck.set_defaults(func=cmd_carbon_series)
    cv = csa.add_parser("convert", help="downloaded files -> one series CSV (timestamp, [end,] g_per_kwh[, region])")
    cv.add_argument("--from", dest="fmt", required=True, choices=["neso", "electricitymaps", "csv"])
    cv.add_argument("inputs", nargs="+", metavar="FILE", help="downloaded file(s): JSON (neso) or CSV")
    cv.add_argument("-o", "--output", required=True, help="the series CSV to write")
    cv.add_argument(
        "--value", default=None, help="neso: auto (actual, else forecast), actual or forecast; csv: the value column"
    )
    cv.add_argument(
        "--basis", default=None, choices=["direct", "lifecycle"], help="electricitymaps: which intensity column"
    )
    cv.add_argument(
        "--time",
        action="append",
        default=None,
        help="csv: the time column (repeat to join several, e.g. Date and Heures)",
    )
    cv.add_argument("--end", default=None, help="csv: the column of each period's end (optional)")
    cv.add_argument("--region", default=None, help="csv: the region column (optional)")
    cv.add_argument(
        "--tz", default=None, help="csv: the IANA time zone of times without an offset (e.g. Europe/Paris, UTC)"
    )
    cv.add_argument(
        "--sep", default=",", help="csv: the separator (RTE's files: a tab, --sep $'\\t'; ODRE exports: ';')"
    )
    cv.add_argument("--encoding", default="utf-8", help="csv: the text encoding (RTE's files: latin-1)")
    cv.add_argument("-k", type=int, default=8, help="how many cleanest hours of the day to name")
    cv.set_defaults(func=cmd_carbon_series)

    pe = sub.add_parser(
        "pack-env",
        help="pack the venv that runs it into a tarball the jobs of a site without a shared filesystem unpack "
        "(config/sites.yaml env_tarball; profiles/blackett)",
    )
    pe.add_argument(
        "--out", default="joulegrid-env.tar.gz", help="tarball to write, in the checkout (default %(default)s)"
    )
    pe.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out paths inside the venv, e.g. 'lib/python3.11/site-packages/playwright*' (repeatable)",
    )
    pe.set_defaults(func=cmd_pack_env)

    s = sub.add_parser("schema", help="print the result schema")
    s.add_argument("--markdown", action="store_true")
    s.set_defaults(func=cmd_schema)
    return p


# Set by run-cell once its row is written; entry() then ends the process without the interpreter's teardown.
_EXIT_NOW = False


def entry() -> None:
    """The `joulegrid` command and `python -m joulegrid`: main(), then exit with its status.

    Once run-cell has written its row, the process ends with os._exit after flushing stdout and
    stderr: tearing down an interpreter with torch, codecarbon and pandas loaded takes 0.5-1 s on
    2 cores (docs/benchmarks.md), in every cell, and does nothing a cell needs (its row and side
    files are written and synced, its meters closed; codecarbon runs without its lock file)."""
    rc = main()
    if _EXIT_NOW:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


# The commands that convert Python values to Arrow tables (rows, summaries, reports): pyarrow would import pandas
# for nothing in each (joulegrid.io.pyarrow_without_pandas).
_TABLE_COMMANDS = (cmd_run_cell, cmd_run_quadruple, cmd_record_failure, cmd_aggregate, cmd_report, cmd_compare)


def main(argv: list[str] | None = None) -> int:
    from . import logs
    from .quiet import install

    install()  # third-party noise (amdsmi, codecarbon, torchao, torch) silenced before anything imports them
    logs.configure()
    args = build_parser().parse_args(argv)
    if args.func in _TABLE_COMMANDS:
        from .io import pyarrow_without_pandas

        pyarrow_without_pandas()  # they convert rows and summaries with pyarrow, never a pandas object
    try:
        return args.func(args)
    except Exception as e:
        base = sys.modules.get(f"{__package__}.base")  # only a command that read the config raises ConfigError
        if base is None or not isinstance(e, base.ConfigError):
            raise
        log.error("config error: %s", e)
        return 2


if __name__ == "__main__":
    entry()
