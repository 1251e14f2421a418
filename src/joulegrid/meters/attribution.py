"""Whose energy is it: the job's share of what the node and device meters measured.

Meters measure the NODE (RAPL packages and DRAM; codecarbon's machine models; the estimate
meter's linear model of the node) or a DEVICE (one GPU). For every window, with the usage of the
same window (``tracker.Usage``: node busy CPU time B of total T, the job's CPU time J, its reserved
CPUs A of N, its memory M of the node's M_tot), each node reading is split so that every joule
lands in exactly one bucket -- this job, other activity (neighbours and the system), or idle power
of what the job did not reserve (docs/measurement.md, "Whose energy"):

    static = min(E, P0 * dt)            dynamic = E - static          (P0: idle power of the domain)
    s      = J / max(B, J)              (the job's share of the busy CPU time)
    CPU:   E_job = s * dynamic + (A / N) * static
    DRAM:  E_job = s * dynamic + (M / M_tot) * static        (CPU time as the bandwidth proxy)
    RAM model (no DRAM counter): E_job = (M / M_tot) * E     (all static)
    GPU:   E_job = E of the job's own devices (whole devices, idle included: they are reserved)

Static power is split by what the job RESERVED, dynamic power by what it USED: under the usual
linear model P = P0 + k * b this gives E_cpu = k * J + (A/N) * P0 * dt, whatever the neighbours do.
The share of busy time alone (E * J / B: experiment-impact-tracker, CEEMS, Scaphandre 0.5) charges
the job less idle power as neighbours get busier; the share of capacity (E * J / (N * dt): Kepler,
Scaphandre 1.x) charges it more. Where the node is not shared (the other processes used at most
``measure.node_shared_above`` of its CPU capacity) s = 1: the job gets the node's whole CPU energy
but the idle power of CPUs it did not reserve.

P0 of a domain, with its source recorded: ``site`` (config/sites.yaml node_power, measured on an
idle node) or ``calibration`` (the hardware table's calibration of this CPU model, ``joulegrid
calibrate``), whichever is more specific (``power_model``); ``fit`` (a robust line E/dt = P0 + k * B/dt
over the job's own intervals, accepted only with >= 30 intervals whose busy CPUs spread over >= 0.25 N);
else ``busy-ratio`` (Kepler: P0 * dt := E * (1 - B/T) per window, not neighbour-invariant). The
estimate meter is a linear node model itself: P = P0 + W * b, from a calibration (``model-calibrated``,
its static power per window in the reading's p0_w) or from W per thread (``estimate-tdp``: ``model``).

Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from ..sites import SiteFacts
from .base import Reading
from .calibration import CALIBRATED, Calibration, DomainModel, match
from .tracker import Usage

SHARED_ABOVE = 0.05  # measure.node_shared_above: other processes' CPU / node capacity above this = shared
DEFAULT_W_PER_THREAD = 4.0  # codecarbon's fallback W per thread for an unknown CPU
MODEL_IDLE_FRACTION = 0.1  # codecarbon's machine model: idle = 10 % of TDP (here N x W per thread)
FIT_MIN_INTERVALS = 30
FIT_MIN_SPREAD = 0.25  # of the node's CPUs: the busy CPUs of the intervals must spread this much
TDP_MODEL = "estimate-tdp"  # the estimate meter's method without a calibration
LINEAR_MODELS = (TDP_MODEL, CALIBRATED)  # node models that are linear in busy CPU time (split like counters)

# attribution labels (energy_attribution, energy_readings.attribution)
CPU_SHARE = "cpu-share"  # active by the job's share of busy CPU time, idle by reserved CPUs
NODE_CPU = "node-cpu"  # node not shared: all active CPU energy, idle by reserved CPUs
DRAM_SHARE = "dram-share"  # DRAM: active by CPU-time share, idle by memory share
MEM_SHARE = "mem-share"  # RAM model: memory share
JOB_GPUS = "job-gpus"  # the job's own GPUs, whole devices


# ------------------------------------------------------------------ P0 and W per thread: one lookup
@dataclass(frozen=True)
class PowerModel:
    cpu_idle_w: float | None  # idle (static) power of the node's CPU packages, measured; None = unknown
    dram_idle_w: float | None  # idle power of the node's DRAM, measured; None = unknown
    w_per_thread: float  # estimate meter: W per busy logical CPU
    source: str | None  # where the idle powers came from (None: not configured)
    kind: str | None = None  # site or calibration: the p0 source of the idle powers (None: site, if any)
    calibration: Calibration | None = None  # this CPU model's calibration, where it is the model

    @property
    def method(self) -> str:
        """The estimate meter's method with this model."""
        return CALIBRATED if self.calibration is not None else TDP_MODEL

    def domain(self, component: str, n_cpus: int) -> DomainModel | None:
        """The linear model of a component the estimate meter reports (cpu; dram with a calibration that has it)."""
        if self.calibration is not None:
            return self.calibration.domain(component)
        if component == "cpu":
            return DomainModel(model_idle_w(self.cpu_idle_w, self.w_per_thread, n_cpus), self.w_per_thread)
        return None


def power_model(
    site: SiteFacts | None,
    w_per_thread: float | None = None,
    cpu_model: str | None = None,
    sockets: int | None = None,
    mem_total_bytes: float | None = None,
) -> PowerModel:
    """The node's idle powers and CPU power model: THE lookup, for the counters' split and the estimate meter.

    The most specific measurement of this node wins:
    1. the first ``node_power`` entry of the site, if it names a ``cpu_model`` contained in this host's
       CPU model (measured at this site, for this CPU model);
    2. else this CPU model's calibration in the hardware table (``site.cpu_calibrations``,
       ``joulegrid calibrate``; calibration.match, exact CPU model): the estimate meter becomes
       ``model-calibrated`` and the counters' idle power is the calibration's;
    3. else the first ``node_power`` entry without cpu_model (every node of the site);
    W per thread (the TDP model, without a calibration): ``w_per_thread`` (measure.cpu_tdp_w_per_thread),
    else the entry's w_per_thread, else 4 W.
    """
    site = site or SiteFacts()
    entry: dict[str, Any] = {}
    for e in site.node_power or []:  # checked with the sites file (joulegrid.sites)
        want = e.get("cpu_model")
        if want is None or (cpu_model and str(want).lower() in cpu_model.lower()):
            entry = e
            break
    if not entry.get("cpu_model"):
        cal = match(site.cpu_calibrations, cpu_model, sockets, mem_total_bytes)
        if cal is not None:
            return PowerModel(
                cal.package.idle_w,
                cal.dram.idle_w if cal.dram else None,
                cal.package.w_per_busy_cpu,
                f"calibration {cal.describe()}",
                "calibration",
                cal,
            )
    w = w_per_thread or entry.get("w_per_thread") or DEFAULT_W_PER_THREAD
    has_idle = entry.get("cpu_idle_w") is not None or entry.get("dram_idle_w") is not None
    src = None
    if has_idle:
        src = f"site {site.name or '?'}" + (f" ({entry['cpu_model']})" if entry.get("cpu_model") else "")
        if entry.get("source"):
            src += f": {entry['source']}"
    return PowerModel(
        float(entry["cpu_idle_w"]) if entry.get("cpu_idle_w") is not None else None,
        float(entry["dram_idle_w"]) if entry.get("dram_idle_w") is not None else None,
        float(w),
        src,
        "site" if has_idle else None,
    )


def model_idle_w(cpu_idle_w: float | None, w_per_thread: float, n_cpus: int) -> float:
    """P0 of the estimate meter's linear model: the measured site value, else MODEL_IDLE_FRACTION x N x W."""
    return float(cpu_idle_w) if cpu_idle_w is not None else MODEL_IDLE_FRACTION * n_cpus * w_per_thread


@dataclass(frozen=True)
class IdlePower:
    watts: float | None  # None: busy ratio, per window
    source: str  # site, fit, busy-ratio, model
    k_w_per_cpu: float | None = None  # slope of the fit (W per busy CPU)


BUSY_RATIO = IdlePower(None, "busy-ratio")


def fit_idle_power(points: list[tuple[float, float, float]], n_cpus: int) -> IdlePower | None:
    """Theil-Sen line power = P0 + k * busy_cpus over (dt, busy CPU-s, energy J) intervals.

    None unless the recipe's acceptance holds: >= FIT_MIN_INTERVALS intervals, busy CPUs spread
    (10th to 90th percentile) >= FIT_MIN_SPREAD x n_cpus, k >= 0. P0 is clamped to [0, the power of the
    idlest intervals] (their 10th percentile rather than the single lowest, which a short noisy
    interval can pull below the real idle power).
    """
    pts = [(b / dt, e / dt) for dt, b, e in points if dt > 0]
    if len(pts) < FIT_MIN_INTERVALS:
        return None
    xs = sorted(x for x, _ in pts)
    q = statistics.quantiles(xs, n=10)
    if q[-1] - q[0] < FIT_MIN_SPREAD * n_cpus:
        return None
    if len(pts) > 300:  # keep the pairwise slopes cheap: an even subsample
        step = len(pts) / 300
        pts = [pts[int(i * step)] for i in range(300)]
    slopes = [
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(pts)
        for x2, y2 in pts[i + 1 :]
        if abs(x2 - x1) > 1e-3 * max(n_cpus, 1)
    ]
    if not slopes:
        return None
    k = statistics.median(slopes)
    if k < 0:
        return None
    p0 = statistics.median(y - k * x for x, y in pts)
    low = statistics.quantiles(sorted(y for _, y in pts), n=10)[0]
    p0 = min(max(p0, 0.0), low)
    return IdlePower(p0, "fit", k)


# ------------------------------------------------------------------ the split
@dataclass(frozen=True)
class Split:
    node_j: float
    job_j: float
    job_active_j: float
    job_idle_j: float
    other_active_j: float
    unreserved_idle_j: float
    p0_w: float | None  # idle power used (busy ratio: the window's effective P0)


def share_of_busy(u: Usage) -> float:
    """s = J / max(B, J): the job's share of the node's busy CPU time (<= 1)."""
    d = max(u.node_busy_s, u.job_cpu_s)
    return u.job_cpu_s / d if d > 0 else 0.0


def split(energy_j: float, u: Usage, active_share: float, idle_share: float, p0_w: float | None) -> Split:
    """Split a node energy: static = min(E, P0*dt) by idle_share, the rest by active_share.

    p0_w None: the busy ratio (Kepler), static = E * (1 - B/T).
    """
    if p0_w is None:
        ratio = u.node_busy_s / u.node_total_s if u.node_total_s > 0 else 0.0
        static = energy_j * (1.0 - min(max(ratio, 0.0), 1.0))
        p0_eff = static / u.dt if u.dt > 0 else None
    else:
        static = min(max(energy_j, 0.0), p0_w * u.dt)
        p0_eff = p0_w
    dynamic = energy_j - static
    a, i = min(max(active_share, 0.0), 1.0), min(max(idle_share, 0.0), 1.0)
    return Split(
        energy_j, a * dynamic + i * static, a * dynamic, i * static, (1 - a) * dynamic, (1 - i) * static, p0_eff
    )


@dataclass
class Context:
    """What the split of one job needs besides a window's usage."""

    cpus: float  # A
    mem_total: float | None  # M_tot (bytes)
    model: PowerModel
    idle: dict[str, IdlePower] = field(default_factory=dict)  # counter domain (cpu, dram) -> P0
    shared: bool = True  # False: other processes used <= node_shared_above of the node's CPUs

    def reserved_cpu_share(self, n_cpus: int) -> float:
        return min(self.cpus / n_cpus, 1.0) if n_cpus > 0 else 1.0

    def mem_share(self, u: Usage) -> float | None:
        return min(u.mem_bytes / self.mem_total, 1.0) if self.mem_total else None

    def p0(self, r: Reading, n_cpus: int) -> IdlePower:
        if r.method in LINEAR_MODELS:  # the estimate meter's own P0: its static power in the window
            if r.method == CALIBRATED:
                d = self.model.domain(r.component, n_cpus)
                return IdlePower(r.p0_w if r.p0_w is not None else (d.idle_w if d else 0.0), "calibration")
            w = self.model.cpu_idle_w
            src = (self.model.kind or "site") if w is not None else "model"
            return IdlePower(r.p0_w if r.p0_w is not None else model_idle_w(w, self.model.w_per_thread, n_cpus), src)
        return self.idle.get(r.component, BUSY_RATIO)


def node_shared(u: Usage, threshold: float = SHARED_ABOVE) -> bool:
    """True when other processes used at least `threshold` of the node's CPU capacity (0: always shared)."""
    if u.node_total_s <= 0:
        return True
    return max(u.node_busy_s - u.job_cpu_s, 0.0) / u.node_total_s >= threshold


def attributable(r: Reading) -> str | None:
    """How a node/device reading is split: 'cpu', 'dram', 'ram-model', 'gpu' or None (kept as a cross-check)."""
    if r.scope == "device" and r.component == "gpu":
        return "gpu"
    if r.scope != "node":
        return None
    if r.component == "cpu":
        # a measured package counter, or a LINEAR node model; codecarbon's TDP x (0.1 + 0.9 load^3)
        # is not linear in the busy CPU time (a share of it moves with the neighbours): cross-check only
        return "cpu" if (not r.estimated or r.method in LINEAR_MODELS) else None
    if r.component in ("dram", "ram-model"):
        return r.component
    return None


def attribute(readings: list[Reading], u: Usage, ctx: Context) -> list[tuple[Reading, Split]]:
    """The job readings (scope 'job') split from the node/device readings of one window."""
    out = []
    s = share_of_busy(u) if ctx.shared else 1.0
    for r in readings:
        kind = attributable(r)
        if kind is None:
            continue
        if kind == "gpu":  # a device the job holds: all of it, for as long as it holds it (time-proportional)
            sp = Split(r.energy_j, r.energy_j, 0.0, r.energy_j, 0.0, 0.0, None)
            label = JOB_GPUS
        elif kind == "cpu":
            p0 = ctx.p0(r, u.n_cpus)
            sp = split(r.energy_j, u, s, ctx.reserved_cpu_share(u.n_cpus), p0.watts)
            label = CPU_SHARE if ctx.shared else NODE_CPU
        else:
            m = ctx.mem_share(u)
            if m is None:
                continue  # no MemTotal: no RAM figure rather than the host's
            if kind == "dram":
                sp = split(r.energy_j, u, s, m, ctx.p0(r, u.n_cpus).watts)
                label = DRAM_SHARE
            else:
                sp = split(r.energy_j, u, 0.0, m, r.energy_j / u.dt if u.dt > 0 else 0.0)
                label = MEM_SHARE
        job = Reading(
            r.meter,
            r.component,
            r.method,
            sp.job_j,
            r.interval_s,
            r.samples,
            r.estimated,
            window=r.window,
            duration_s=r.duration_s,
            scope="job",
            attribution=label,
        )
        out.append((job, sp))
    return out


def extrapolate(tracked: Split, u: Usage, dt: float, cpu_s: float) -> float:
    """Job energy of an unmetered stretch (dt seconds, cpu_s job CPU-seconds) at the rates of a metered
    one (tracked split over usage u): its idle share per second, its active energy per job CPU-second."""
    static_rate = tracked.job_idle_j / u.dt if u.dt > 0 else 0.0
    active_rate = tracked.job_active_j / u.job_cpu_s if u.job_cpu_s > 0 else 0.0
    return static_rate * dt + active_rate * cpu_s
