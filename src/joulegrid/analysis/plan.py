"""`joulegrid plan` and the budget check: what a config would run, and what it would cost, before
any energy is spent.

The grid part (cells per axis, exclusions with reasons) is pure Python. The forecast reads earlier
results (``<results>/summary.parquet`` and ``summary.other-configs.parquet``) with polars, only when
they exist, and estimates every cell still to run (its run file absent) as the WHOLE job the runner
will run (runner.py's windows), part by part (``PARTS``):

- ``startup``: interpreter start and imports before the meters (``job_untracked_s``);
- ``setup``: data, model, quantization, compilation and the meters' set-up (``setup_s`` + ``meters_ready_s``);
- ``warmup``: the warm-up batches (``warmup_s``);
- ``idle``: the idle baseline (``idle_window_s``; measure.idle_baseline_s, 0 = none);
- ``window``: the measured window, stretched as the runner stretches it (``window_s``: inference
  repeats passes over the test split, training whole training runs, until measure.min_window_s);
- ``other``: torch's import, the probes, the quality evaluation and writing the row (the rest of ``job_wall_s``);
- ``profile``: the hotspot profiling passes (``profile_s``; measure.hotspots).

Each part is learnt from earlier ok rows, the closest first (``_tiers``): rows of the configured site
on this host, else of this host's CPU model, else of the site, else of this host / CPU model, else
any, per workload/phase/device. The per-cell parts (setup, warm-up, the window's time per sample and
power, profiling) come from the nearest measured cell of the same workload, phase and device (repeats averaged; distance
``_distance``), scaled to the planned samples; where that workload/phase was never measured on that
device, from its FLOPs per sample at the FLOP/s measured on that device (``flops``).

core-hours = job time × measure.threads; GPU-hours = job time × job.gpus (cuda cells); kWh = the
window at its measured power + the rest of the job at the job's measured power outside the window
+ the idle baseline at its idle power + profiling at the window's power; kgCO2e = kWh × PUE ×
carbon intensity of the configured site. ``job_core_hours`` / ``job_kwh`` are the part the rows'
``job_wall_s`` / ``job_energy_j`` cover (without the idle baseline and profiling). Definitions and
the measured error: docs/metrics.md, docs/benchmarks.md.
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

#: The parts of a job, in the order the runner runs them (runner.py); idle and profile are joulegrid's own
#: extras, left out of the rows' job_wall_s / job_energy_j (job_excluded_s).
PARTS = ("startup", "setup", "warmup", "idle", "window", "other", "profile")
EXTRAS = ("idle", "profile")

#: Phases whose measured window the runner stretches to measure.min_window_s by repeating a whole unit
#: (inference: a pass over the test split; training: a whole training run, phases.Phase._train).
STRETCHED_PHASES = frozenset({"infer", "train"})


def stretch(phase: str, unit_s: float, min_window_s: float) -> tuple[float, int]:
    """(window seconds, units) of a measured window whose unit (one pass, one training run) takes unit_s:
    the runner repeats units until the window lasts min_window_s, checking after each unit."""
    if phase not in STRETCHED_PHASES or unit_s <= 0 or min_window_s <= 0:
        return unit_s, 1
    n_units = max(1, math.ceil(min_window_s / unit_s - 1e-9))
    return n_units * unit_s, n_units


class BudgetError(RuntimeError):
    """The forecast of the cells still to run exceeds a budget cap."""


@dataclass
class CellForecast:
    cell: Cell
    method: str  # nearest, flops
    source: str  # what it was forecast from
    job_s: float  # the whole job: every part, the extras included
    core_hours: float
    gpu_hours: float
    kwh: float
    kg_co2: float
    parts: dict[str, float] = field(default_factory=dict)  # seconds per part (PARTS)
    job_kwh: float = 0.0  # without the extras: what the row's job_energy_j covers
    units: int = 1  # passes (infer) or training runs of the stretched window

    @property
    def job_wall_s(self) -> float:
        """The part the row's job_wall_s covers (the extras left out)."""
        return sum(v for k, v in self.parts.items() if k not in EXTRAS)


@dataclass
class Forecast:
    to_run: int = 0
    done: int = 0
    measured_cells: int = 0
    cells: list[CellForecast] = field(default_factory=list)
    unforecast: list[tuple[Cell, str]] = field(default_factory=list)
    pool: str = ""  # which earlier rows the parts were learnt from
    threads: int = 1

    def totals(self) -> dict[str, float]:
        t = {k: sum(getattr(c, k) for c in self.cells) for k in ("core_hours", "gpu_hours", "kwh", "kg_co2", "job_kwh")}
        t["job_core_hours"] = sum(c.job_wall_s for c in self.cells) * self.threads / 3600
        return t

    def parts(self) -> dict[str, float]:
        """Seconds per part over every forecast cell."""
        out = dict.fromkeys(PARTS, 0.0)
        for c in self.cells:
            for k, v in c.parts.items():
                out[k] += v
        return out

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

    def parts_line(self) -> str:
        p = self.parts()
        total = sum(p.values())
        if not total:
            return ""
        return "whole jobs, " + ", ".join(f"{k} {v / total:.0%}" for k, v in p.items() if v) + f" of {total:.4g} s"


# ------------------------------------------------------------------ planned work per cell
def planned_samples(config: dict[str, Any], cell: Cell, cache: dict) -> int | None:
    """Samples one unit of the cell's measured phase processes (infer: one pass over the test split;
    train: the training run, n_train x epochs), from the workload settings (None if unknown)."""
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


def _num(r: dict[str, Any], k: str) -> float | None:
    v = r.get(k)
    return float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else None


def row_parts(r: dict[str, Any]) -> dict[str, Any] | None:
    """What one earlier ok row says about each part of its job (None if it has no measured window).

    unit_s / unit_samples: one unit of the window (a pass over the test split, or the training run);
    window_w: the window's power (the job's share, energy_j / wall_s); rest_w: the job's power outside the
    window ((job_energy_j - energy_j) / (job_wall_s - wall_s)); idle_w: the idle baseline's power."""
    wall, n = _num(r, "wall_s"), _num(r, "n_samples")
    if not wall or not n:
        return None
    n_units = int(r.get("infer_passes" if r.get("phase") == "infer" else "train_runs") or 1)
    setup = (_num(r, "setup_s") or 0.0) + (_num(r, "meters_ready_s") or 0.0)
    warmup = _num(r, "warmup_s") or 0.0
    energy, job_wall, job_energy = _num(r, "energy_j"), _num(r, "job_wall_s"), _num(r, "job_energy_j")
    window_w = _num(r, "mean_power_w")  # = energy_j / wall_s
    if window_w is None and energy is not None:
        window_w = energy / wall
    p = {
        "unit_s": wall / n_units,
        "unit_samples": n / n_units,
        "setup": setup,
        "warmup": warmup,
        "window_w": window_w,
        "idle": _num(r, "idle_window_s"),
        "idle_w": _num(r, "idle_power_w"),
        "profile": _num(r, "profile_s"),
        "startup": None,
        "other": None,
        "rest_w": None,
        "flops_per_sample": _num(r, "flops_per_sample_train" if r.get("phase") == "train" else "flops_per_sample_fwd"),
        "flops_per_s": _num(r, "flops_per_s"),
    }
    if job_wall is not None:
        startup = _num(r, "job_untracked_s") or 0.0
        p["startup"] = startup
        p["other"] = max(job_wall - wall - setup - warmup - startup, 0.0)
        if job_energy is not None and energy is not None and job_wall > wall:
            p["rest_w"] = max(job_energy - energy, 0.0) / (job_wall - wall)
    return p


def _mean(values) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.fmean(v) if v else None


def _median(values) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def _this_host() -> tuple[str, str | None]:
    import socket

    from ..probes import cpu_model

    return socket.gethostname(), cpu_model()


def _tiers(rows: list[dict[str, Any]], site: str, host: tuple[str, str | None] | None = None) -> list[tuple[str, list]]:
    """The earlier rows to learn from, the closest first, as (label, rows) tiers: this site on this host, this
    site on this host's CPU model, this site, this host, this CPU model, any (each tier without the rows of
    the tiers before it; empty tiers left out)."""
    name, model = host or _this_host()
    tests = [
        (f"site {site} on this host ({name})", lambda r: r.get("site") == site and r.get("hostname") == name),
        (f"site {site} on this CPU model", lambda r: r.get("site") == site and model and r.get("cpu_model") == model),
        (f"site {site}", lambda r: r.get("site") == site),
        (f"this host ({name})", lambda r: r.get("hostname") == name),
        ("this CPU model", lambda r: model and r.get("cpu_model") == model),
        ("every site", lambda r: True),
    ]
    out, left = [], list(rows)
    for label, keep in tests:
        sel = [r for r in left if keep(r)]
        if sel:
            out.append((label, sel))
            left = [r for r in left if not keep(r)]
    return out


CELL_FIELDS = ("site", "workload", "phase", "device", "precision", "variant", "batch_size")


def _cells(pool: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pool's measured cells, repeats averaged part by part."""
    groups: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for r in pool:
        p = row_parts(r)
        if p is not None:
            groups[tuple(r.get(k) for k in CELL_FIELDS)].append((r, p))
    out = []
    for key, members in groups.items():
        m = dict(zip(CELL_FIELDS, key, strict=True))
        for k in members[0][1]:
            m[k] = _mean(p[k] for _, p in members)
        m["repeats"] = len(members)
        out.append(m)
    return out


def _distance(c: Cell, m: dict[str, Any]) -> float:
    d = 2.0 * (m["precision"] != c.precision) + 1.0 * (m["variant"] != c.variant) + 0.25 * (m["site"] != c.site)
    if m["batch_size"]:
        d += abs(math.log2(c.batch_size / m["batch_size"]))
    return d


def forecast(
    config: dict[str, Any],
    grid: Grid,
    sites: dict[str, Any],
    earlier=None,
    results: str | None = None,
    host: tuple[str, str | None] | None = None,
) -> Forecast:
    """Forecast of the grid's cells whose run file does not exist yet, from earlier results (a polars frame).
    host: (hostname, CPU model) the pool prefers (default: this host's)."""
    results = results or config["results"]
    todo = [c for c in grid.cells if not os.path.exists(c.path(results))]
    threads = int(config["measure"]["threads"])
    fc = Forecast(to_run=len(todo), done=len(grid.cells) - len(todo), threads=threads)
    if earlier is None or earlier.height == 0 or not todo:
        fc.unforecast = [(c, "no earlier results") for c in todo] if earlier is None or earlier.height == 0 else []
        return fc
    import polars as pl

    rows = earlier.filter(pl.col("status") == "ok").to_dicts() if "status" in earlier.columns else []
    # per tier of rows (this site and host first: _tiers), its measured cells; a cell is forecast from the
    # closest tier that measured its workload/phase/device
    tiers = [(label, _cells(tier)) for label, tier in _tiers(rows, config["site"], host)]
    tiers = [(label, cells) for label, cells in tiers if cells]
    fc.pool = tiers[0][0] if tiers else "none"
    measured = [m for _, cells in tiers for m in cells]
    fc.measured_cells = len(measured)
    by_wpd: dict[tuple, list[dict]] = {}
    for _, cells in tiers:
        found: dict[tuple, list[dict]] = defaultdict(list)
        for m in cells:
            found[(m["workload"], m["phase"], m["device"])].append(m)
        for k, v in found.items():
            by_wpd.setdefault(k, v)

    typical_cache: dict[tuple, float | None] = {}

    def typical(key: str, *, workload=None, phase=None, device=None) -> float | None:
        k = (key, workload, phase, device)  # once per part and workload/phase/device, not per cell
        if k not in typical_cache:
            typical_cache[k] = _typical(key, workload, phase, device)
        return typical_cache[k]

    def _typical(key: str, workload, phase, device) -> float | None:
        """The median of a part over the closest tier's cells of the same workload/phase/device, else of the
        same phase/device, else device, else any."""
        for _, cells in tiers:
            for sel in (
                lambda m: (m["workload"], m["phase"], m["device"]) == (workload, phase, device),
                lambda m: (m["phase"], m["device"]) == (phase, device),
                lambda m: m["device"] == device,
                lambda m: True,
            ):
                v = _median(m[key] for m in cells if sel(m))
                if v is not None:
                    return v
        return None

    from ..sites import site_facts

    facts = site_facts(sites, config["site"])
    pue = float(facts.get("pue") or 1.0)
    inten = float(facts.get("carbon_intensity_g_per_kwh") or 0.0)
    ms = config["measure"]
    idle_s, min_window = float(ms.get("idle_baseline_s") or 0.0), float(ms.get("min_window_s") or 0.0)
    hotspots = ms.get("hotspots", "first_repeat")
    gpus = int(config["job"]["gpus"])
    cache: dict = {}
    for c in todo:
        n_p = planned_samples(config, c, cache)
        wpd = dict(workload=c.workload, phase=c.phase, device=c.device)
        cands = by_wpd.get((c.workload, c.phase, c.device))
        if cands:
            m = min(cands, key=lambda m: _distance(c, m))
            unit = m["unit_s"] / m["unit_samples"] * (n_p or m["unit_samples"])
            setup, warmup, window_w, profile = m["setup"], m["warmup"], m["window_w"], m["profile"]
            method = "nearest"
            source = f"{m['site']}/{m['workload']}/{m['phase']}/{m['device']}/{m['precision']}"
            source += f"{'+' + m['variant'] if m['variant'] != 'baseline' else ''}/bs{m['batch_size']}"
        else:
            f = _median(m["flops_per_sample"] for m in measured if (m["workload"], m["phase"]) == (c.workload, c.phase))
            fps = _median(m["flops_per_s"] for m in measured if m["device"] == c.device)
            if not (f and fps and n_p):
                why = (
                    "no measured cell of this workload/phase/device"
                    + ("" if f else ", no FLOPs of this workload")
                    + ("" if fps else f", no FLOP/s measured on {c.device}")
                    + ("" if n_p else ", planned samples unknown")
                )
                fc.unforecast.append((c, why))
                continue
            unit = f * n_p / fps
            setup, warmup = typical("setup", device=c.device), typical("warmup", device=c.device)
            window_w, profile = typical("window_w", device=c.device), None
            method = "flops"
            source = f"FLOPs of {c.workload}/{c.phase} at the FLOP/s measured on {c.device}"
        if window_w is None:
            fc.unforecast.append((c, f"the nearest measured cell ({source}) has no energy"))
            continue
        window, stretch_units = stretch(c.phase, unit, min_window)
        profiled = hotspots == "always" or (hotspots == "first_repeat" and c.repeat == 0)
        if profiled and profile is None:
            profile = typical("profile", **wpd)
        startup = typical("startup", **wpd)
        other = typical("other", **wpd)
        rest_w = typical("rest_w", **wpd)
        idle_w = typical("idle_w", **wpd)
        parts = {
            "startup": startup or 0.0,
            "setup": setup or 0.0,
            "warmup": warmup or 0.0,
            "idle": idle_s,
            "window": window,
            "other": other or 0.0,
            "profile": (profile or 0.0) if profiled else 0.0,
        }
        rest_w = window_w if rest_w is None else rest_w
        job_j = window * window_w + rest_w * sum(v for k, v in parts.items() if k not in EXTRAS and k != "window")
        extra_j = parts["idle"] * (idle_w if idle_w is not None else rest_w) + parts["profile"] * window_w
        job_s = sum(parts.values())
        kwh = units.kwh(job_j + extra_j)
        fc.cells.append(
            CellForecast(
                cell=c,
                method=method,
                source=source,
                job_s=job_s,
                core_hours=job_s * threads / 3600,
                gpu_hours=job_s * gpus / 3600 if c.device == "cuda" else 0.0,
                kwh=kwh,
                kg_co2=units.co2_g(job_j + extra_j, inten, pue) / 1000,
                parts=parts,
                job_kwh=units.kwh(job_j),
                units=stretch_units,
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
    g = expand(config, sb.hashes(), sb.cell_hashes(), repeats=grid_repeats(config))
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
    else:  # a number of repeats: the design is advice, and one no repeats reach does not stop the plan
        try:
            d = design.compute(config)
        except design.DesignError as e:
            return [f"design: {e}", f"  grid.repeats is {config['grid']['repeats']}: the plan goes on with it"]
        note = f"grid.repeats is {config['grid']['repeats']}: set it to auto to use this"
    lines = [*d.lines(), f"  {note}"]
    cfg = copy.deepcopy(config)
    cfg["grid"]["repeats"] = d.repeats
    sb = SpecBuilder(cfg, sites)
    g = expand(cfg, sb.hashes(), sb.cell_hashes())
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
    except DesignError as e:  # grid.repeats: auto (or --redesign) with a design no repeats reach: key and fix
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
    g = expand(config, sb.hashes(), sb.cell_hashes(), repeats=grid_repeats(config))
    done = sum(os.path.exists(c.path(config["results"])) for c in g.cells)
    print(
        f"site {config['site']}: {len(g.cells)} cell(s) in the grid, {len(g.excluded)} excluded; "
        f"{done} already measured, {len(g.cells) - done} to measure",
        file=out,
    )
    for axis, counts in g.counts().items():
        vals = ", ".join(f"{k} ({v})" for k, v in counts.items())
        print(f"  {axis:<11} {vals}", file=out)
    own = sb.cell_hashes()  # precisions with their own hash (pinned precision_options): "baler_ae <h> (int8 <h8>)"
    hashes = ", ".join(
        f"{w} {h}" + "".join(f" ({p} {h2})" for (w2, p), h2 in own.items() if w2 == w) for w, h in sb.hashes().items()
    )
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
    if config.get("versions", {}).get("base"):  # code versions: the pairs compare needs (analysis.compare)
        from .compare import sizing_lines

        for line in sizing_lines(
            config, earlier, len({(c.workload, c.phase, c.precision, c.batch_size) for c in g.cells})
        ):
            print(line, file=out)
    if earlier is None:
        print(f"forecast: no earlier results in {config['results']}/summary.parquet (run a small grid first)", file=out)
        return 0
    fc = forecast(config, g, sites, earlier)
    print(f"forecast: {fc.line()}", file=out)
    if fc.cells:
        t = fc.totals()
        print(f"  learnt from the rows of {fc.pool}; {fc.parts_line()}; without the idle baseline and profiling "
              f"(the rows' job_wall_s, job_energy_j): {t['job_core_hours']:.3g} core-h, {t['job_kwh']:.3g} kWh",
              file=out)  # fmt: skip
    if getattr(args, "forecast_cells", False):
        for c in fc.cells:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in c.parts.items() if v)
            print(
                f"  {c.cell.id}: {c.job_s:.1f} s ({parts}; {c.units} unit(s) in the window), {c.kwh:.3g} kWh, "
                f"{c.kg_co2:.3g} kgCO2e ({c.method}: {c.source})",
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
