"""`joulegrid plan` and the budget check: what a config would run, and what it would cost, before
any energy is spent.

The grid part (cells per axis, exclusions with reasons) is pure Python. The forecast reads earlier
results (``<results>/summary.parquet``) with polars, only when that file exists, and estimates for
every cell still to run (its run file absent):

- **nearest**: the measured cell of the same workload, phase and device closest in precision,
  variant, batch size and site (repeats averaged); time scales with the samples the planned cell
  will process (from the workload settings), the job overhead (setup + warm-up) is taken as is;
- **flops**: where that workload/phase was never measured on that device, FLOPs per sample of the
  workload (measured on any device) × planned samples / the FLOP/s achieved on that device by other
  workloads; power = median mean power on that device;
- otherwise the cell is listed as not forecastable.

core-hours = job time × measure.threads; GPU-hours = job time × job.gpus (cuda cells);
kWh = mean power × job time (setup and warm-up included, so the cap errs on the safe side);
kgCO2e = kWh × PUE × carbon intensity of the configured site. Definitions: docs/metrics.md.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import units
from ..config import load, workload_settings
from ..grid import Cell, Grid, expand
from ..spec import SpecBuilder
from .aggregate import load_earlier

log = logging.getLogger(__name__)

BUDGET_KEYS = {
    "max_core_hours": ("core_hours", "core-hours"),
    "max_gpu_hours": ("gpu_hours", "GPU-hours"),
    "max_kwh": ("kwh", "kWh"),
    "max_kg_co2": ("kg_co2", "kgCO2e"),
}


class BudgetError(RuntimeError):
    """The forecast of the cells still to run exceeds a budget cap."""


@dataclass
class CellForecast:
    cell: Cell
    method: str  # nearest, flops
    source: str  # what it was forecast from
    job_s: float
    core_hours: float
    gpu_hours: float
    kwh: float
    kg_co2: float


@dataclass
class Forecast:
    to_run: int = 0
    done: int = 0
    measured_cells: int = 0
    cells: list[CellForecast] = field(default_factory=list)
    unforecast: list[tuple[Cell, str]] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        return {k: sum(getattr(c, k) for c in self.cells) for k in ("core_hours", "gpu_hours", "kwh", "kg_co2")}

    def line(self) -> str:
        t = self.totals()
        methods = Counter(c.method for c in self.cells)
        how = ", ".join(f"{n} by {m}" for m, n in sorted(methods.items()))
        s = (
            f"{self.to_run} cell(s) to measure ({self.done} already measured): forecast {t['core_hours']:.3g} core-h, "
            f"{t['gpu_hours']:.3g} GPU-h, {t['kwh']:.3g} kWh, {t['kg_co2']:.3g} kgCO2e"
            f" from {self.measured_cells} measured cell(s) ({how or 'none forecast'})"
        )
        if self.unforecast:
            s += f"; {len(self.unforecast)} cell(s) not forecastable (not counted)"
        return s


# ------------------------------------------------------------------ planned work per cell
def planned_samples(config: dict[str, Any], cell: Cell, cache: dict) -> int | None:
    """Samples the cell's measured phase will process, from the workload settings (None if unknown)."""
    key = (cell.workload, cell.phase)
    if key not in cache:
        from ..workloads.registry import dataset_rows, workload_class

        st = workload_settings(config, cell.workload)
        rows = dataset_rows(workload_class(cell.workload, st), st)
        if not rows:
            cache[key] = None
        else:
            n_test = max(1, int(round(rows * st.get("test_fraction", 0.2))))
            if cell.phase == "train":
                cache[key] = (rows - n_test) * int(st.get("epochs", 1))
            else:
                cache[key] = n_test
    return cache[key]


def _measured(df) -> list[dict[str, Any]]:
    import polars as pl

    from .metrics import cell_stats

    return cell_stats(df).filter(pl.col("wall_s").is_not_null()).to_dicts()


def _distance(c: Cell, m: dict[str, Any]) -> float:
    d = 2.0 * (m["precision"] != c.precision) + 1.0 * (m["variant"] != c.variant) + 0.25 * (m["site"] != c.site)
    if m["batch_size"]:
        d += abs(math.log2(c.batch_size / m["batch_size"]))
    return d


def forecast(
    config: dict[str, Any], grid: Grid, sites: dict[str, Any], earlier=None, results: str | None = None
) -> Forecast:
    """Forecast of the grid's cells whose run file does not exist yet, from earlier results (a polars frame)."""
    results = results or config["results"]
    todo = [c for c in grid.cells if not os.path.exists(c.path(results))]
    fc = Forecast(to_run=len(todo), done=len(grid.cells) - len(todo))
    if earlier is None or earlier.height == 0 or not todo:
        fc.unforecast = [(c, "no earlier results") for c in todo] if earlier is None or earlier.height == 0 else []
        return fc
    measured = _measured(earlier)
    fc.measured_cells = len(measured)
    by_wpd: dict[tuple, list[dict]] = defaultdict(list)
    flops_by_wp: dict[tuple, list[float]] = defaultdict(list)
    fps_by_dev: dict[str, list[float]] = defaultdict(list)
    pow_by_dev: dict[str, list[float]] = defaultdict(list)
    ovh_by_dev: dict[str, list[float]] = defaultdict(list)
    for m in measured:
        if m["wall_s"] and m["n_samples"]:
            by_wpd[(m["workload"], m["phase"], m["device"])].append(m)
        f = m["flops_per_sample_train"] if m["phase"] == "train" else m["flops_per_sample_fwd"]
        if f:
            flops_by_wp[(m["workload"], m["phase"])].append(f)
        if m["flops_per_s"]:
            fps_by_dev[m["device"]].append(m["flops_per_s"])
        if m["mean_power_w"]:
            pow_by_dev[m["device"]].append(m["mean_power_w"])
        ovh_by_dev[m["device"]].append(m["job_overhead_s"] or 0.0)

    from ..sites import site_facts

    facts = site_facts(sites, config["site"])
    pue = float(facts.get("pue") or 1.0)
    inten = float(facts.get("carbon_intensity_g_per_kwh") or 0.0)
    threads = int(config["measure"]["threads"])
    gpus = int(config["job"]["gpus"])
    cache: dict = {}
    for c in todo:
        n_p = planned_samples(config, c, cache)
        cands = by_wpd.get((c.workload, c.phase, c.device))
        if cands:
            m = min(cands, key=lambda m: _distance(c, m))
            n = n_p or m["n_samples"]
            wall = m["wall_s"] / m["n_samples"] * n
            job_s = wall + (m["job_overhead_s"] or 0.0)
            power = m["mean_power_w"] or (m["energy_j"] / m["wall_s"] if m["energy_j"] and m["wall_s"] else None)
            method = "nearest"
            source = (
                f"{m['site']}/{m['workload']}/{m['phase']}/{m['device']}/{m['precision_variant']}/bs{m['batch_size']}"
            )
        else:
            f = flops_by_wp.get((c.workload, c.phase))
            fps = fps_by_dev.get(c.device)
            if not (f and fps and n_p):
                why = (
                    "no measured cell of this workload/phase/device"
                    + ("" if f else ", no FLOPs of this workload")
                    + ("" if fps else f", no FLOP/s measured on {c.device}")
                    + ("" if n_p else ", planned samples unknown")
                )
                fc.unforecast.append((c, why))
                continue
            wall = statistics.median(f) * n_p / statistics.median(fps)
            job_s = wall + statistics.median(ovh_by_dev[c.device])
            power = statistics.median(pow_by_dev[c.device]) if pow_by_dev.get(c.device) else None
            method = "flops"
            source = f"FLOPs of {c.workload}/{c.phase} at the FLOP/s measured on {c.device}"
        if power is None:
            fc.unforecast.append((c, f"the nearest measured cell ({source}) has no energy"))
            continue
        kwh = units.kwh(power * job_s)
        fc.cells.append(
            CellForecast(
                cell=c,
                method=method,
                source=source,
                job_s=job_s,
                core_hours=job_s * threads / 3600,
                gpu_hours=job_s * gpus / 3600 if c.device == "cuda" else 0.0,
                kwh=kwh,
                kg_co2=units.co2_g(power * job_s, inten, pue) / 1000,
            )
        )
    return fc


def budget_violations(config: dict[str, Any], fc: Forecast) -> list[str]:
    budget = config.get("budget") or {}
    tot = fc.totals()
    out = []
    for key, (attr, unit) in BUDGET_KEYS.items():
        cap = budget.get(key)
        if cap is not None and tot[attr] > cap:
            out.append(f"config key budget.{key}: forecast {tot[attr]:.3g} {unit} exceeds the cap of {cap:g} {unit}")
    return out


def check_budget(config: dict[str, Any], fc: Forecast) -> None:
    v = budget_violations(config, fc)
    if v:
        raise BudgetError(
            "; ".join(v) + f". Forecast: {fc.line()}. Nothing was started. Fix: shrink the grid (grid.* / exclude), "
            "raise the cap, or remove it from budget:; `joulegrid plan` shows the forecast per cell"
        )


def snakemake_check(config: dict[str, Any], grid: Grid, sites: dict[str, Any]) -> str | None:
    """Called by joulegrid.snakefile (setup) in the main Snakemake process: the forecast line to print (or
    None), raising BudgetError when over budget. Without earlier results: a note if a budget is set."""
    budget = config.get("budget") or {}
    capped = any(budget.get(k) is not None for k in BUDGET_KEYS)
    if not capped and not budget.get("forecast", True):
        return None
    earlier = load_earlier(config["results"])
    if earlier is None:
        if capped:
            return (
                "joulegrid budget: no earlier results (summary.parquet) to forecast from, so the budget cannot be "
                "checked; run a small grid first"
            )
        return None
    fc = forecast(config, grid, sites, earlier)
    if capped:
        check_budget(config, fc)
    return f"joulegrid forecast: {fc.line()}" if fc.to_run else None


# ------------------------------------------------------------------ CLI
def plan_json(config: dict[str, Any], sites: dict[str, Any]) -> dict[str, Any]:
    """What `joulegrid plan --json` prints: the run file of every cell (config hash included), the
    excluded cells with reasons, each workload's config hash and identity (the settings it stands for)."""
    from .design import grid_repeats

    sb = SpecBuilder(config, sites)
    g = expand(config, sb.hashes(), grid_repeats(config))
    results = config["results"]
    return {
        "site": config["site"],
        "cells": [c.path(results) for c in g.cells],
        "measured": [c.path(results) for c in g.cells if os.path.exists(c.path(results))],
        "excluded": [{"cell": e.cell.id, "reason": e.reason} for e in g.excluded],
        "workloads": sb.current(),
    }


def design_section(config: dict[str, Any], sites: dict[str, Any], earlier, redesign: bool = False) -> list[str]:
    """`joulegrid plan`'s answer to "how many repeats do I need?" (analysis/design.py): the design, and the
    forecast of the grid with that many repeats (core-hours, job-hours, kWh). With grid.repeats: auto the
    design is frozen in <results>/design.json (written here the first time, replanned with redesign)."""
    import copy

    from . import design

    auto = config["grid"]["repeats"] == "auto"
    if auto or redesign:
        d, what = design.freeze(config, redesign=redesign)
        note = {
            "frozen": f"frozen in {design.path(config)} (grid.repeats: auto uses it; --redesign replans)",
            "written": f"written to {design.path(config)}: grid.repeats: auto uses it from now on (--redesign replans)",
            "replanned": f"replanned into {design.path(config)}",
        }[what]
    else:
        d, note = design.compute(config), f"grid.repeats is {config['grid']['repeats']}: set it to auto to use this"
    lines = [*d.lines(), f"  {note}"]
    cfg = copy.deepcopy(config)
    cfg["grid"]["repeats"] = d.repeats
    g = expand(cfg, SpecBuilder(cfg, sites).hashes())
    if earlier is None:
        lines.append(f"  that design: {len(g.cells)} run(s); no earlier results to forecast its cost from")
    else:
        fc = forecast(cfg, g, sites, earlier)
        t = fc.totals()
        job_h = sum(c.job_s for c in fc.cells) / 3600
        lines.append(
            f"  that design: {len(g.cells)} run(s), {fc.to_run} still to measure: {job_h:.3g} job-hours (node-hours "
            f"where a job holds a node), {t['core_hours']:.3g} core-h, {t['gpu_hours']:.3g} GPU-h, {t['kwh']:.3g} kWh"
            + (f"; {len(fc.unforecast)} run(s) not forecastable" if fc.unforecast else "")
        )
    return lines


def run_pilot(config: dict[str, Any], repeats: int, cores: str | None = None) -> int:
    """`joulegrid plan --pilot`: measure the pilot grid (design.pilot_config) with Snakemake into <results>/pilot,
    as `snakemake --configfile <results>/pilot/config.yaml` from the current directory (the workflow
    profile applies). Returns Snakemake's exit status."""
    import subprocess

    import yaml

    from ..config import REPO_ROOT
    from . import design

    pc = design.pilot_config(config, repeats)
    cfg_file = Path(pc["results"]) / "config.yaml"
    cfg_file.parent.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(
        "# joulegrid plan --pilot: the pilot grid (analysis/design.py, pilot_config)\n" + yaml.safe_dump(pc)
    )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO_ROOT / "Snakefile"),
        "--configfile",
        str(cfg_file),
    ]
    if cores:
        cmd += ["--cores", str(cores)]
    print(f"pilot: {' '.join(cmd)}", flush=True)
    return subprocess.call(cmd)


def plan(args) -> int:
    from .design import DesignError

    try:
        return _plan(args)
    except DesignError as e:  # grid.repeats: auto with a design no repeats reach (names the key and the fix)
        print(f"joulegrid plan: {e}", file=sys.stderr)
        return 2


def _plan(args) -> int:
    config, sites = load(
        args.configfile, args.config, replace_workflow_config=getattr(args, "replace_workflow_config", False)
    )
    out = sys.stdout
    if getattr(args, "pilot", False):
        from . import design

        rc = run_pilot(
            config, getattr(args, "pilot_repeats", None) or design.PILOT_REPEATS, getattr(args, "cores", None)
        )
        if rc:
            print(
                f"joulegrid plan --pilot: the pilot's snakemake failed (exit {rc}); nothing replanned", file=sys.stderr
            )
            return rc
        args.redesign = True
    if getattr(args, "json", False):
        import json

        print(json.dumps(plan_json(config, sites), indent=1), file=out)
        return 0
    from .design import grid_repeats

    sb = SpecBuilder(config, sites)
    g = expand(config, sb.hashes(), grid_repeats(config))
    done = sum(os.path.exists(c.path(config["results"])) for c in g.cells)
    print(
        f"site {config['site']}: {len(g.cells)} cell(s) in the grid, {len(g.excluded)} excluded; "
        f"{done} already measured, {len(g.cells) - done} to measure",
        file=out,
    )
    for axis, counts in g.counts().items():
        vals = ", ".join(f"{k} ({v})" for k, v in counts.items())
        print(f"  {axis:<11} {vals}", file=out)
    hashes = ", ".join(f"{w} {h}" for w, h in sb.hashes().items())
    print(f"config hash per workload (run files end in -<hash>.parquet): {hashes}", file=out)
    if g.excluded:
        reasons = Counter(e.reason for e in g.excluded)
        print("exclusions:", file=out)
        for reason, n in reasons.most_common():
            print(f"  {n:>5} x {reason}", file=out)
        if args.exclusions:
            for e in g.excluded:
                print(f"  - {e.cell.id}: {e.reason}", file=out)
    earlier = load_earlier(config["results"])
    for line in design_section(config, sites, earlier, redesign=getattr(args, "redesign", False)):
        print(line, file=out)
    if earlier is None:
        print(f"forecast: no earlier results in {config['results']}/summary.parquet (run a small grid first)", file=out)
        return 0
    fc = forecast(config, g, sites, earlier)
    print(f"forecast: {fc.line()}", file=out)
    if getattr(args, "forecast_cells", False):
        for c in fc.cells:
            print(
                f"  {c.cell.id}: {c.job_s:.1f} s, {c.kwh:.3g} kWh, {c.kg_co2:.3g} kgCO2e ({c.method}: {c.source})",
                file=out,
            )
    for c, why in fc.unforecast[:20]:
        print(f"  not forecast: {c.id}: {why}", file=out)
    if len(fc.unforecast) > 20:
        print(f"  ... and {len(fc.unforecast) - 20} more", file=out)
    v = budget_violations(config, fc)
    for msg in v:
        print(f"OVER BUDGET: {msg}", file=out)
    return 3 if v else 0
