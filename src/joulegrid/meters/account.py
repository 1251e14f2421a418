"""From a job's metered windows and usage to the row: energy, attribution and whole-job columns.

Called once, when the job ends (``MeterSet.finish`` hands it the windows, laps and stopped usage: its
inputs are its arguments), because the idle power P0 may be fitted over
the job's own intervals (attribution.fit_idle_power) and every window is split with the same P0:

1. P0 per counter domain (site value, else fit, else busy ratio);
2. ``node_shared`` from the measured window (attribution.node_shared);
3. every window's node/device readings split into job readings (attribution.attribute);
4. ``summarise`` picks one job reading per family; the measured window's split of the chosen
   readings gives the attribution columns (active/idle, other activity, unreserved idle, shares, P0);
5. laps (per-epoch energy) split like their window;
6. the WHOLE job (``job_*``): from interpreter start to the row, without joulegrid's own extras
   (the idle baseline, the hotspot profiling passes). The tracked part uses continuous sources for
   the chosen families: the job-level counter clones (rapl, nvml), the estimate model applied to the
   tracked node CPU time, codecarbon's RAM model at its measured power. What no source covers --
   the start-up before the tracker started, or a family without a continuous source -- is
   extrapolated at the rates of the tracked part (its idle share per second, its active energy
   per job CPU-second) and counted in ``job_energy_extrapolated_j``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import attribution, confidence
from .base import Reading
from .choice import FAMILY, choose, job_readings, node_of, summarise
from .tracker import JobUsage, Snapshot, Usage
from .usage import process_start_time

if TYPE_CHECKING:  # pragma: no cover
    from .meterset import Window

# stretches of the job that are joulegrid's, not the workload's: the idle baseline, the profiling passes, and a
# measured attempt the outlier rule excluded (MeterSet.exclude_attempt: the job measured again)
EXCLUDED = ("idle", "profile", "outlier")

#: one lap (MeterSet.lap): its window, the energy so far per (meter, component), the usage then
Lap = tuple[str, dict[tuple[str, str], float], Snapshot | None]


def _add(a: attribution.Split | None, b: attribution.Split) -> attribution.Split:
    if a is None:
        return b
    energies = ("node_j", "job_j", "job_active_j", "job_idle_j", "other_active_j", "unreserved_idle_j")
    return replace(a, **{k: getattr(a, k) + getattr(b, k) for k in energies})


def _sum_usage(us: list[Usage]) -> Usage | None:
    if not us:
        return None
    dt = sum(u.dt for u in us)
    mem = sum(u.mem_bytes * u.dt for u in us) / dt if dt > 0 else us[-1].mem_bytes
    return Usage(
        dt,
        sum(u.node_total_s for u in us),
        sum(u.node_busy_s for u in us),
        sum(u.node_steal_s for u in us),
        sum(u.job_cpu_s for u in us),
        mem,
        us[-1].n_cpus,
    )


def idle_powers(model: attribution.PowerModel, usage: JobUsage, n_cpus: int) -> dict[str, attribution.IdlePower]:
    """P0 per counter domain: the site's value or this CPU model's calibration (attribution.power_model),
    else a fit over the job's intervals, else the busy ratio."""
    intervals = usage.intervals()
    out = {}
    for comp, site_w in (("cpu", model.cpu_idle_w), ("dram", model.dram_idle_w)):
        if site_w is not None:
            out[comp] = attribution.IdlePower(site_w, model.kind or "site")
            continue
        pts = [(u.dt, u.node_busy_s, e[comp]) for u, e in intervals if comp in e]
        out[comp] = (attribution.fit_idle_power(pts, n_cpus) if pts else None) or attribution.BUSY_RATIO
    return out


@dataclass
class Accounts:
    """What account.finish_all found: the row's columns, the job's cumulative energy at each lap, and the
    energy columns of every other measured window (an attempt the outlier rule excluded), by its name."""

    cols: dict[str, Any]
    laps: list[float | None]
    others: dict[str, dict[str, Any]] = field(default_factory=dict)


def finish(windows: list[Window], laps: list[Lap], usage: JobUsage | None, end: Snapshot | None, **kw):
    """(the row's columns, the job's cumulative energy at each lap): finish_all without the other windows."""
    a = finish_all(windows, laps, usage, end, **kw)
    return a.cols, a.laps


def finish_all(
    windows: list[Window],
    laps: list[Lap],
    usage: JobUsage | None,
    end: Snapshot | None,
    *,
    model: attribution.PowerModel | None,
    shared_above: float | None,
    gpus: list[int],
    wall_s: float | None,
    idle_s: float | None,
    gpu_model: str | None = None,
    max_rel_err: float | None = None,
    others: dict[str, tuple[float | None, float | None]] | None = None,
) -> Accounts:
    """The row's energy, attribution and whole-job columns of a job, and its cumulative energy at each lap.

    windows, laps: what MeterSet measured; usage: the job's usage tracker, stopped at ``end`` (None: no
    usage, nothing is attributed); model: the node's power model (attribution.power_model; None: the
    defaults); shared_above: measure.node_shared_above; gpus: the job's GPUs; wall_s / idle_s: the wall
    times of the measured and the idle window; gpu_model, max_rel_err: the job's GPU model and
    measure.energy_max_rel_err (confidence.columns); others: {name: (wall_s, idle_s)} of the other measured
    windows to account for (an excluded attempt's; its idle window is '<name>:idle')."""
    cols: dict[str, Any] = {}
    if max_rel_err is None:  # the schema's default (its one home)
        from ..base import schema_defaults

        max_rel_err = schema_defaults()["measure"]["energy_max_rel_err"]
    bound = float(max_rel_err)
    measured = next((w for w in reversed(windows) if w.name == "measured" and w.start and w.end), None)
    if usage is None or end is None:
        # no usage: nothing can be attributed; the node readings are kept as they are
        all_r = [r for w in windows for r in w.readings]
        if all_r:
            cols.update(summarise(all_r, wall_s or 0.0, idle_s))
        return Accounts(cols, [None] * len(laps))

    model = model if model is not None else attribution.power_model(None)
    u_meas = usage.between(measured.start, measured.end) if measured else None
    n_cpus = (u_meas or usage.between(usage.marks[0][1], end)).n_cpus
    shared_above = attribution.SHARED_ABOVE if shared_above is None else float(shared_above)
    ctx = attribution.Context(
        cpus=usage.reserved.cpus,
        mem_total=usage.mem_total,
        model=model,
        idle=idle_powers(model, usage, n_cpus),
        shared=attribution.node_shared(u_meas, shared_above) if u_meas else True,
    )
    all_r: list[Reading] = []
    splits: dict[tuple[str, str, str], attribution.Split] = {}
    for w in windows:
        all_r.extend(w.readings)
        if w.start is None or w.end is None:
            continue
        for job, sp in attribution.attribute(w.readings, usage.between(w.start, w.end), ctx):
            all_r.append(job)
            splits[(w.name, job.meter, job.component)] = sp
    cols.update(summarise(all_r, wall_s or 0.0, idle_s))
    cols.update(usage.facts())
    cols["job_gpu_uuids"] = _gpu_uuids(gpus)
    best = choose(job_readings(all_r)) if measured else {}
    cols.update(model_columns(ctx.model, best, all_r))
    if u_meas is not None:
        cols.update(_window_columns(u_meas, ctx, best, splits, all_r))
        chosen = [(r, node_of(r, all_r)) for r in best.values()]
        cols.update(
            confidence.columns(
                chosen, wall_s, bound, n_cpus=u_meas.n_cpus, busy_cpu_s=u_meas.node_busy_s, gpu_model=gpu_model
            )
        )
    other_cols = {}
    for name, (o_wall, o_idle) in (others or {}).items():
        w = next((w for w in windows if w.name == name and w.start and w.end), None)
        if w is None:
            continue
        u = usage.between(w.start, w.end)
        mine = [r for r in all_r if r.window in (name, f"{name}:idle")]
        oc = summarise(mine, o_wall or 0.0, o_idle, window=name, idle_window=f"{name}:idle")
        ob = choose(job_readings(mine, name))
        oc.update(_window_columns(u, ctx, ob, splits, mine, window=name))
        oc.update(
            confidence.columns(
                [(r, node_of(r, mine)) for r in ob.values()],
                o_wall,
                bound,
                n_cpus=u.n_cpus,
                busy_cpu_s=u.node_busy_s,
                gpu_model=gpu_model,
            )
        )
        other_cols[name] = oc
    lap_energies = _laps(windows, laps, usage, ctx, best, all_r)
    start = process_start_time()
    wall, excluded, pieces = _job_wall(usage, end, start)
    cols.update(
        process_started_at=datetime.fromtimestamp(start, UTC) if start is not None else None,
        job_wall_s=wall,
        job_excluded_s=excluded,
        job_untracked_s=max(usage.marks[0][1].wall - start, 0.0) if start is not None else None,
    )
    if best:
        total, extra = _whole_job(usage, ctx, best, all_r, splits, u_meas, pieces, wall, cols["job_untracked_s"] or 0.0)
        cols.update(job_energy_j=total, job_energy_extrapolated_j=extra)
    if wall and wall_s is not None:
        cols["job_time_outside_phase_fraction"] = 1.0 - wall_s / wall
    if cols.get("job_energy_j") and cols.get("energy_j") is not None:
        cols["job_energy_outside_phase_fraction"] = 1.0 - cols["energy_j"] / cols["job_energy_j"]
    return Accounts(cols, lap_energies, other_cols)


def model_columns(model: attribution.PowerModel, best: dict[str, Reading], all_r: list[Reading]) -> dict[str, Any]:
    """The CPU power model of this host (model_*): which, its calibration's error, and -- where counters
    measured the node -- the model's prediction for the same window beside the measurement.

    The prediction covers the components both have: cpu (package), plus dram where the counters
    measured a DRAM domain and the model has one; model_rel_err = model / measured - 1 of their node
    energies, model_energy_j the job's share of the prediction (the same split as energy_j)."""
    out: dict[str, Any] = {}
    cal = model.calibration
    if cal is not None:
        out.update(
            model_calibration=cal.describe(),
            model_fit_rmse_w=cal.holdout_rmse_w,
            model_fit_max_rel_err=cal.holdout_max_rel_err,
        )
    est = {r.component: r for r in all_r if r.meter == "estimate" and r.window == "measured" and r.scope == "node"}
    est_job = {r.component: r for r in all_r if r.meter == "estimate" and r.window == "measured" and r.scope == "job"}
    if "cpu" not in est:
        return out
    out["model_method"] = est["cpu"].method
    comps = [
        c
        for c in ("cpu", "dram")
        if c in est and (b := best.get(FAMILY[c])) is not None and not b.estimated and b.component == c
    ]
    if "cpu" not in comps:
        return out  # nothing measured the node's CPU: the model is the figure itself (energy_method)
    measured = [node_of(best[FAMILY[c]], all_r) for c in comps]
    if any(m is None for m in measured):
        return out
    m_node, c_node = sum(est[c].energy_j for c in comps), sum(m.energy_j for m in measured)
    out.update(
        model_components="+".join(comps),
        model_node_energy_j=m_node,
        model_energy_j=sum(est_job[c].energy_j for c in comps) if all(c in est_job for c in comps) else None,
        model_rel_err=m_node / c_node - 1.0 if c_node > 0 else None,
    )
    return out


def _gpu_uuids(ids: list[int]) -> str | None:
    if not ids:
        return None
    try:
        from .nvml import gpu_uuids

        return ",".join(gpu_uuids(ids))
    except Exception:  # noqa: BLE001 - an optional fact: NVML errors come in many kinds
        return None


def _window_columns(
    u: Usage, ctx: attribution.Context, best: dict[str, Reading], splits, all_r, window: str = "measured"
) -> dict[str, Any]:
    s = attribution.share_of_busy(u)
    out: dict[str, Any] = dict(
        node_cpus=u.n_cpus,
        usage_window_s=u.dt,
        node_cpu_s=u.node_total_s,
        node_busy_cpu_s=u.node_busy_s,
        node_steal_cpu_s=u.node_steal_s,
        job_cpu_s=u.job_cpu_s,
        job_share_cpu=s,
        neighbour_cpu_fraction=max(u.node_busy_s - u.job_cpu_s, 0.0) / u.node_busy_s if u.node_busy_s > 0 else 0.0,
        node_shared=ctx.shared,
        job_mem_bytes=int(u.mem_bytes),
        job_share_ram=ctx.mem_share(u),
    )
    sp = {fam: splits.get((window, r.meter, r.component)) for fam, r in best.items()}
    if all(v is not None for v in sp.values()) and sp:
        out["node_other_active_j"] = sum(v.other_active_j for v in sp.values())
        out["node_unreserved_idle_j"] = sum(v.unreserved_idle_j for v in sp.values())
    if sp.get("cpu") is not None:
        out.update(
            energy_cpu_active_j=sp["cpu"].job_active_j, energy_cpu_idle_j=sp["cpu"].job_idle_j, p0_cpu_w=sp["cpu"].p0_w
        )
        p0 = ctx.p0(node_of(best["cpu"], all_r), u.n_cpus)
        out["p0_cpu_source"] = p0.source
        out["p0_fit_k_w_per_cpu"] = p0.k_w_per_cpu
    if sp.get("ram") is not None:
        out["p0_ram_w"] = sp["ram"].p0_w
        out["p0_ram_source"] = (
            ctx.p0(node_of(best["ram"], all_r), u.n_cpus).source if best["ram"].component == "dram" else "model"
        )
    return out


def _laps(
    windows: list[Window],
    laps: list[Lap],
    usage: JobUsage,
    ctx: attribution.Context,
    best: dict[str, Reading],
    all_r: list[Reading],
) -> list[float | None]:
    """The job's cumulative energy in its window at each lap (the chosen families; None if one cannot lap)."""
    starts = {w.name: w.start for w in windows}
    node_r = {(r.window, r.meter, r.component): r for r in all_r if r.scope in ("node", "device")}
    out: list[float | None] = []
    for window, energies, snap in laps:
        w0 = starts.get(window)
        total: float | None = 0.0
        if w0 is None or snap is None or not best:
            out.append(None)
            continue
        u = usage.between(w0, snap)
        for r in best.values():
            nr = node_r.get((window, r.meter, r.component))
            e = energies.get((r.meter, r.component))
            if nr is None or e is None:
                total = None
                break
            got = attribution.attribute([replace(nr, energy_j=e)], u, ctx)
            if not got:
                total = None
                break
            total += got[0][1].job_j
        out.append(total)
    return out


def _job_wall(
    usage: JobUsage, end: Snapshot, start: float | None
) -> tuple[float | None, float, list[tuple[Snapshot, Snapshot]]]:
    """(job wall time without the excluded stretches, excluded seconds, the included pieces)."""
    marks = sorted(usage.marks, key=lambda m: m[1].t)
    pieces, excluded, depth = [], 0.0, 0
    for (name, a), (_, b) in itertools.pairwise(marks):
        kind, _, edge = name.partition(":")
        if kind in EXCLUDED:
            depth += 1 if edge == "start" else -1
        if depth > 0:
            excluded += b.t - a.t
        else:
            pieces.append((a, b))
    wall = (end.wall - start - excluded) if start is not None else None
    return wall, excluded, pieces


def _node_energy_source(r: Reading, nr: Reading | None, ctx: attribution.Context, first: Snapshot):
    """A function (a, b) -> the node energy of a stretch for the family of job reading r, or None."""
    if not r.estimated and r.component in first.energy:
        return lambda a, b: max(b.energy.get(r.component, 0.0) - a.energy.get(r.component, 0.0), 0.0)
    if r.method in attribution.LINEAR_MODELS:
        # the model per stretch: its static power of the measured window (with a per-GB term: at that
        # window's used memory) and W per busy CPU-second
        dm = ctx.model.domain(r.component, first.node.n_cpus)
        if dm is None:
            return None
        p0 = ctx.p0(nr, first.node.n_cpus).watts if nr is not None else dm.idle_w
        return lambda a, b: dm.w_per_busy_cpu * max(b.node.busy_s - a.node.busy_s, 0.0) + p0 * (b.t - a.t)
    if r.method == "codecarbon-ram-model" and nr is not None and nr.duration_s:
        p = nr.energy_j / nr.duration_s
        return lambda a, b: p * (b.t - a.t)
    return None


def _whole_job(
    usage: JobUsage,
    ctx: attribution.Context,
    best,
    all_r,
    splits,
    u_meas: Usage | None,
    pieces,
    wall: float | None,
    t_pre: float,
) -> tuple[float, float]:
    """(job energy, its extrapolated part) over the included pieces of the job, start-up extrapolated."""
    first = usage.marks[0][1]
    j_pre = usage.own_cpu_at_start
    tracked = _sum_usage([usage.between(a, b) for a, b in pieces])
    total, extrapolated = 0.0, 0.0
    for r in best.values():
        nr = node_of(r, all_r)
        src = _node_energy_source(r, nr, ctx, first)
        if src is not None and tracked is not None and nr is not None:
            acc = None
            for a, b in pieces:
                got = attribution.attribute([replace(nr, energy_j=src(a, b), window="job")], usage.between(a, b), ctx)
                if got:
                    acc = _add(acc, got[0][1])
            if acc is None:
                continue
            pre = attribution.extrapolate(acc, tracked, t_pre, j_pre)
            total += acc.job_j + pre
            extrapolated += pre
        else:  # no continuous source: the measured window, and the rest at its rates
            sp = splits.get(("measured", r.meter, r.component))
            if sp is None or u_meas is None or wall is None:
                continue
            j_all = (tracked.job_cpu_s if tracked else 0.0) + j_pre
            rest = attribution.extrapolate(sp, u_meas, max(wall - u_meas.dt, 0.0), max(j_all - u_meas.job_cpu_s, 0.0))
            total += sp.job_j + rest
            extrapolated += rest
    return total, extrapolated
