"""Energy meters behind one interface, and how their readings become the job's result columns.

``build(settings, device)`` makes the meters a cell asked for (``measure.meters``; ``auto`` = every
meter that works on this host), records why the others are absent, and a ``tracker.JobUsage``
tracker (node and job CPU time, the job's reservation and memory; docs/measurement.md, "Whose
energy"). ``MeterSet`` prepares the meters in the background, follows the whole job
(``start_job`` ... ``finish``), runs the meters over windows (the idle baseline, the measured phase)
with the usage read back to back at their edges, and ``finish`` turns everything into the energy
columns of the result schema (``account.py``):

- the meters measure NODE or DEVICE energy (``Reading.scope``); ``attribution.py`` splits each
  node/device reading into the job's share (scope ``job``);
- per component family (cpu, gpu, ram = dram or ram-model) ONE job reading is chosen: measured
  before modelled (among models, a calibration of this CPU model before the others), then by
  ``PRIORITY`` (the direct counter readers first); ``energy_j`` is their
  sum, so no energy is counted twice; ``node_energy_*`` are the node readings they came from. Only
  job readings compete: a machine-scope figure can never outrank a job-scoped one;
- where two meters MEASURED the same node/device component (e.g. rapl and codecarbon-rapl on cpu;
  nvml and zeus on gpu), their relative difference |a - b| / max(a, b) is stored (largest pair:
  ``meter_rel_diff``, ``meter_rel_diff_between``) and > 5 % sets ``meters_disagree``;
- a figure is low-confidence when a chosen reading took fewer than 60 samples (MLPerf Power);
- with an idle window, the job's idle power and energy net of idle are derived from the same meters.

Pure Python: no torch import here (meters import their libraries lazily).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import Meter, MeterUnavailable, Reading, RequiredMeterMissing
from .tracker import JobUsage, Snapshot

if TYPE_CHECKING:
    from ..cell_settings import Measure

#: preference when several meters report the same component family (higher wins, among
#: readings of the same kind: a measurement always beats an estimate)
PRIORITY = {"rapl": 40, "nvml": 40, "zeus": 30, "codecarbon": 20, "estimate": 0}
LOW_CONFIDENCE_SAMPLES = 60  # MLPerf Power: fewer samples than this in a window = low confidence
DISAGREE_ABOVE = 0.05  # meters_disagree when two measurements differ by more than this fraction

# Component families: a total sums one reading per family.
FAMILY = {"cpu": "cpu", "gpu": "gpu", "dram": "ram", "ram-model": "ram"}

__all__ = [
    "KNOWN",
    "PRIORITY",
    "LOW_CONFIDENCE_SAMPLES",
    "DISAGREE_ABOVE",
    "FAMILY",
    "Meter",
    "MeterUnavailable",
    "RequiredMeterMissing",
    "Reading",
    "MeterSet",
    "NotApplicable",
    "Window",
    "build",
    "summarise",
    "compare",
    "choose",
    "job_readings",
]
# Roots of the files the meters read; the environment variables exist for tests (fake trees).
ROOT_ENV = {"powercap": "JOULEGRID_POWERCAP", "proc": "JOULEGRID_PROC", "cgroup": "JOULEGRID_CGROUP"}


class NotApplicable(MeterUnavailable):
    """The meter works here but has nothing to measure in this cell (e.g. nvml in a cpu cell)."""


def _rank(r: Reading) -> tuple[bool, bool, int]:
    """Measured first; among models a calibrated one (a measurement of this CPU model) first; then PRIORITY."""
    from .calibration import CALIBRATED

    return (not r.estimated, r.method == CALIBRATED, PRIORITY.get(r.meter, 0))


def job_readings(readings: list[Reading], window: str = "measured") -> list[Reading]:
    return [r for r in readings if r.scope == "job" and r.window == window]


def choose(readings: list[Reading]) -> dict[str, Reading]:
    """Family -> the reading that represents it (measured first, calibrated models before other models, then PRIORITY).

    Give it readings of ONE scope (summarise gives it the job readings of a window)."""
    best: dict[str, Reading] = {}
    for r in readings:
        fam = FAMILY.get(r.component, r.component)
        cur = best.get(fam)
        if cur is None or _rank(r) > _rank(cur):
            best[fam] = r
    return best


def _edge_order(m: Meter) -> int:
    """Start order (stop: reversed): libraries with slow edges (codecarbon's tracker, zeus' windows)
    outermost, then the counters, then the models, so that the usage read sits tightly inside them."""
    if m.kind == "sampling" or m.name == "zeus":
        return 0
    return 1 if m.kind == "counter" else 2


@dataclass
class Window:
    """One metered window: the meters' readings and the usage snapshots read back to back at its edges."""

    name: str
    readings: list[Reading]
    start: Snapshot | None
    end: Snapshot | None


class MeterSet:
    """The meters of one job, measuring one window at a time, and the job's usage tracker."""

    def __init__(
        self,
        meters: list[Meter],
        absent: list[dict[str, str]],
        required: set[str] | None = None,
        not_applicable: set[str] | None = None,
        usage: JobUsage | None = None,
        settings: dict[str, Any] | None = None,
    ):
        self.meters = list(meters)
        self.absent = list(absent)
        self.required = set(required or ())
        #: absent meters that have nothing to measure in this cell (nvml in a cpu cell): never required
        self.not_applicable = set(not_applicable or ())
        self.usage = usage
        self.settings = settings or {}
        self.windows: list[Window] = []
        self.laps: list[tuple[str, dict[tuple[str, str], float], Snapshot | None]] = []
        self._thread: threading.Thread | None = None
        self._failed: dict[str, str] = {}
        self._prepared = False
        self._window = "measured"
        self._w0: Snapshot | None = None
        self._job = False

    # ---- set-up ---------------------------------------------------------------------------
    def _prepare_all(self) -> None:
        self._prepared = True
        for m in self.meters:
            try:
                m.prepare()
            except Exception as e:  # noqa: BLE001 - a meter that cannot start is absent, not fatal
                self._failed[m.name] = str(e) if isinstance(e, MeterUnavailable) else f"{type(e).__name__}: {e}"

    def prepare_async(self) -> None:
        """Start the meters' expensive set-up in a background thread (overlaps the job's set-up)."""
        if self._thread is None and self.meters:
            self._thread = threading.Thread(target=self._prepare_all, name="joulegrid-meter-prepare", daemon=True)
            self._thread.start()

    def ready(self) -> None:
        """Wait for prepare_async; drop the meters that failed; enforce measure.required_meters."""
        if self._thread is not None:
            self._thread.join()
        elif not self._prepared:
            self._prepare_all()
        self._prepared = True
        for name, why in self._failed.items():
            self._drop(name, why)
        self._failed = {}
        self.check_required()

    def check_required(self, required: set[str] | None = None) -> None:
        """Raise RequiredMeterMissing if a meter of measure.required_meters (or `required`) is absent."""
        check_required(
            [a for a in self.absent if a["meter"] not in self.not_applicable],
            self.required if required is None else required,
        )

    def _drop(self, name: str, why: str) -> None:
        keep = []
        for m in self.meters:
            if m.name == name:
                m.close()
            else:
                keep.append(m)
        self.meters = keep
        self.absent.append({"meter": name, "reason": why})

    # ---- the whole job ----------------------------------------------------------------------
    def start_job(self) -> None:
        """Start following the job (usage + job-level counters) until finish(); as early as possible."""
        if self.usage is not None and not self._job:
            try:
                self.usage.start()
                self._job = True
            except Exception as e:  # noqa: BLE001 - no usage: no attribution, the run goes on
                self.usage.close()
                self.usage = None
                self.absent.append(
                    {"meter": "usage", "reason": f"node/job CPU time unreadable: {type(e).__name__}: {e}"}
                )

    def reserved(self, scheduler_row: dict[str, Any]) -> None:
        """Complete the job's reservation with the scheduler probe's facts (alloc_cpus, alloc_mem_mb)."""
        if self.usage is not None:
            self.usage.set_reservation(
                scheduler_row.get("alloc_cpus"), scheduler_row.get("alloc_mem_mb"), scheduler_row.get("scheduler")
            )

    def mark(self, name: str) -> None:
        """Mark a point of the job (e.g. profile:start / profile:end: stretches left out of job_energy_j)."""
        if self._job:
            self.usage.snapshot(name)

    # ---- windows ---------------------------------------------------------------------------
    def start(self, window: str = "measured") -> None:
        """Start every meter, then read the usage: meters stop in the reverse order (stop()), so the
        windows nest -- the usage window innermost, the cheap counters and models tightly around it,
        slow starters and stoppers (codecarbon's tracker) outermost."""
        self._window = window
        for m in sorted(self.meters, key=_edge_order):
            try:
                m.start()
            except Exception as e:  # noqa: BLE001 - a meter that cannot start is dropped, with why
                self._drop(m.name, f"failed at start: {type(e).__name__}: {e}")
        self._w0 = self.usage.snapshot(f"{window}:start") if self._job else None

    def lap(self) -> int | None:
        """Record the energy so far in the window (every meter that can say) and the usage now.

        Returns the lap's index; finish() turns laps into the job's cumulative energies."""
        if not self.meters:
            return None
        laps: dict[tuple[str, str], float] = {}
        for m in self.meters:
            try:
                v = m.lap()
            except Exception:  # noqa: BLE001 - a meter that cannot lap leaves the lap unknown
                v = None
            for comp, e in (v or {}).items():
                laps[(m.name, comp)] = e
        snap = self.usage.snapshot() if self._job else None
        self.laps.append((self._window, laps, snap))
        return len(self.laps) - 1

    def stop(self) -> list[Reading]:
        w1 = self.usage.snapshot(f"{self._window}:end") if self._job else None
        readings: list[Reading] = []
        for m in sorted(self.meters, key=_edge_order, reverse=True):
            try:
                for r in m.stop():
                    r.window = self._window
                    readings.append(r)
            except Exception as e:  # noqa: BLE001 - a meter failing must not lose the run
                self._drop(m.name, f"failed at stop ({self._window} window): {type(e).__name__}: {e}")
        order = {m.name: i for i, m in enumerate(self.meters)}
        readings.sort(key=lambda r: order.get(r.meter, len(order)))  # in the meters' order, as before
        self.windows.append(Window(self._window, readings, self._w0, w1))
        return readings

    def finish(self, wall_s: float | None, idle_s: float | None = None) -> tuple[dict[str, Any], list[float | None]]:
        """Stop following the job; the row's energy, attribution and whole-job columns, and the
        job's cumulative energy at each lap (account.py)."""
        from .account import finish

        return finish(self, wall_s, idle_s)

    def close(self) -> None:
        for m in self.meters:
            try:
                m.close()
            except Exception:  # noqa: BLE001 - closing must not lose the run
                pass
        if self.usage is not None:
            self.usage.close()


def check_required(absent: list[dict[str, str]], required: set[str]) -> None:
    missing = [a for a in absent if a["meter"] in required]
    if missing:
        raise RequiredMeterMissing(
            "required meter(s) unavailable on this host: "
            + "; ".join(f"{a['meter']}: {a['reason']}" for a in missing)
            + ". Fix: run on a host that provides them, or remove them from measure.required_meters "
            "(`joulegrid meters` lists what this host provides)"
        )


@dataclass(frozen=True)
class BuildContext:
    """What a meter's factory may need: the cell's device, the measure settings, the site's facts, the
    node's power model, the counters' interval and roots, the job's GPUs (or why it has none)."""

    device: str
    measure: Measure
    site: dict[str, Any]
    model: Any  # attribution.PowerModel
    counter_s: float
    rapl_root: str
    proc: str
    nvml_ids: list[int]
    gpu_why: str | None


def _rapl(ctx: BuildContext) -> Meter:
    from .rapl import RaplMeter

    return RaplMeter(ctx.counter_s, ctx.rapl_root)


def _nvml(ctx: BuildContext) -> Meter:
    if ctx.device != "cuda":
        raise NotApplicable(f"not used in a {ctx.device} cell (GPU meters measure cuda cells)")
    if ctx.gpu_why:
        raise MeterUnavailable(ctx.gpu_why)
    from .nvml import NvmlMeter

    return NvmlMeter(ctx.nvml_ids, ctx.counter_s)


def _zeus(ctx: BuildContext) -> Meter:
    from .zeus_meter import ZeusMeter

    return ZeusMeter(list(range(len(ctx.nvml_ids))), rapl_root=ctx.rapl_root)


def _codecarbon(ctx: BuildContext) -> Meter:
    from .codecarbon_meter import CodecarbonMeter

    return CodecarbonMeter(
        ctx.site.get("country_iso"),
        ctx.site.get("carbon_intensity_g_per_kwh"),
        float(ctx.measure.meter_interval_s),
        gpu_ids=ctx.nvml_ids,
        tracking_mode=ctx.measure.codecarbon_mode,
    )


def _estimate(ctx: BuildContext) -> Meter:
    from .estimate import EstimateMeter

    return EstimateMeter(ctx.model.w_per_thread, ctx.model.cpu_idle_w, ctx.proc, calibration=ctx.model.calibration)


#: meter name -> its factory (raises MeterUnavailable / NotApplicable where it cannot run): a new meter is
#: one entry here, with its PRIORITY and its name in the config schema's measure.meters enums
FACTORIES: dict[str, Callable[[BuildContext], Meter]] = {
    "rapl": _rapl,
    "nvml": _nvml,
    "zeus": _zeus,
    "codecarbon": _codecarbon,
    "estimate": _estimate,
}
KNOWN = tuple(FACTORIES)  # the meters auto tries, in this order


def build(
    settings: dict[str, Any],
    device: str = "cpu",
    rapl_root: str | None = None,
    require: bool = True,
    proc_root: str | None = None,
    cgroup_root: str | None = None,
    env: dict[str, str] | None = None,
) -> MeterSet:
    """Meters asked for in settings['measure'] that can run here (the others go to `absent`), and
    the job's usage tracker (measure.attribution_interval_s; never started here).

    Cheap: no meter library is imported that the host cannot use; expensive set-up is left to
    MeterSet.prepare_async(). With require, raises RequiredMeterMissing when a required meter is
    absent (for reasons known now; MeterSet.ready() checks again after prepare); without, the
    caller decides when (MeterSet.check_required()). Roots default to the real files, or to
    $JOULEGRID_POWERCAP / $JOULEGRID_PROC / $JOULEGRID_CGROUP (tests).
    """
    from ..cell_settings import Measure
    from . import rapl, usage
    from .attribution import power_model

    measure = Measure.from_dict(settings.get("measure"))  # the schema's defaults for what a hand-made settings lacks
    wanted = list(measure.meters)
    names: list[str] = []
    for n in (list(KNOWN) if "auto" in wanted else []) + [w for w in wanted if w != "auto"]:
        if n not in names:
            names.append(n)
    required = set(measure.required_meters)
    for n in required:
        if n not in names:
            names.append(n)
    site = settings.get("site_facts", {}) or {}
    root = rapl_root or os.environ.get(ROOT_ENV["powercap"]) or rapl.POWERCAP
    proc = proc_root or os.environ.get(ROOT_ENV["proc"]) or usage.PROC
    cgroup = cgroup_root or os.environ.get(ROOT_ENV["cgroup"]) or usage.CGROUP
    counter_s = float(measure.counter_interval_s)
    from ..probes import cpu_model, cpu_sockets

    model = power_model(site, measure.to_dict(), cpu_model(), cpu_sockets(), usage.mem_total_bytes(proc))

    nvml_ids: list[int] = []
    gpu_why = None
    if device == "cuda":
        from .nvml import job_gpus

        try:
            nvml_ids = job_gpus(env)
            if not nvml_ids:
                gpu_why = "no GPU held by the job (CUDA_VISIBLE_DEVICES / the scheduler's GPUs are empty)"
        except MeterUnavailable as e:
            gpu_why = str(e)

    ctx = BuildContext(device, measure, site, model, counter_s, root, proc, nvml_ids, gpu_why)
    meters: list[Meter] = []
    absent: list[dict[str, Any]] = []
    for name in names:
        try:
            factory = FACTORIES.get(name)
            if factory is None:
                raise MeterUnavailable(f"unknown meter {name!r}; known: {', '.join(KNOWN)}")
            meters.append(factory(ctx))
        except MeterUnavailable as e:
            entry: dict[str, Any] = {"meter": name, "reason": str(e)}
            if isinstance(e, NotApplicable):
                entry["not_applicable"] = True
            absent.append(entry)
    tracker = None
    if meters:
        clones = []
        for m in meters:
            try:
                c = m.clone() if hasattr(m, "clone") else None
            except MeterUnavailable:
                c = None
            if c is not None:
                clones.append(c)
        try:
            tracker = JobUsage(proc, cgroup, interval_s=float(measure.attribution_interval_s), env=env, counters=clones)
        except (OSError, ValueError) as e:
            absent.append(
                {"meter": "usage", "reason": f"node/job CPU time unreadable ({type(e).__name__}: {e}): no attribution"}
            )
    ms = MeterSet(
        meters,
        [{"meter": a["meter"], "reason": a["reason"]} for a in absent],
        required,
        {a["meter"] for a in absent if a.get("not_applicable")},
        usage=tracker,
        settings={"model": model, "shared_above": measure.node_shared_above, "gpus": nvml_ids},
    )
    if require:
        ms.check_required()
    return ms


def compare(readings: list[Reading]) -> tuple[float | None, str | None]:
    """Largest relative difference |a-b|/max(a,b) between two meters MEASURING the same node/device component."""
    by_comp: dict[str, list[Reading]] = {}
    for r in readings:
        if not r.estimated and r.scope in ("node", "device"):
            by_comp.setdefault(r.component, []).append(r)
    worst: tuple[float, str] | None = None
    for comp, rs in sorted(by_comp.items()):
        for i, a in enumerate(rs):
            for b in rs[i + 1 :]:
                if a.meter == b.meter:
                    continue
                hi = max(abs(a.energy_j), abs(b.energy_j))
                rel = abs(a.energy_j - b.energy_j) / hi if hi > 0 else 0.0
                if worst is None or rel > worst[0]:
                    worst = (rel, f"{comp}: {a.meter} ({a.method}) vs {b.meter} ({b.method})")
    return (worst[0], worst[1]) if worst else (None, None)


def node_of(job: Reading, readings: list[Reading]) -> Reading | None:
    """The node/device reading a job reading was split from (same meter, component and window)."""
    for r in readings:
        if r.scope in ("node", "device") and (r.meter, r.component, r.window) == (job.meter, job.component, job.window):
            return r
    return None


def summarise(readings: list[Reading], wall_s: float, idle_s: float | None = None) -> dict[str, Any]:
    """Energy columns of the result schema from the readings of a cell's windows.

    readings: every reading (node/device readings as measured and the job readings attributed from
    them; window 'measured' and, with an idle baseline, 'idle'); wall_s: wall time of the measured
    window; idle_s: wall time of the idle window.
    """
    out: dict[str, Any] = {"energy_readings": [r.as_dict() for r in readings]}
    measured = [r for r in readings if r.window == "measured"]
    best = choose(job_readings(readings))
    if not best:
        return out
    order = {"cpu": 0, "ram": 1, "gpu": 2}  # the families in one order, whichever meter came first
    chosen = [best[f] for f in sorted(best, key=lambda f: order.get(f, len(order)))]
    total = sum(r.energy_j for r in chosen)
    primary = max(chosen, key=lambda r: (not r.estimated, r.energy_j))
    methods: list[str] = []
    labels: list[str] = []
    for r in chosen:
        if r.method not in methods:
            methods.append(r.method)
        if r.attribution and r.attribution not in labels:
            labels.append(r.attribution)
    rel, between = compare(measured)
    nodes = {fam: node_of(r, measured) for fam, r in best.items()}
    out.update(
        energy_j=total,
        energy_cpu_j=best["cpu"].energy_j if "cpu" in best else None,
        energy_gpu_j=best["gpu"].energy_j if "gpu" in best else None,
        energy_ram_j=best["ram"].energy_j if "ram" in best else None,
        energy_method="+".join(methods),
        energy_attribution="+".join(labels) or None,
        energy_estimated=any(r.estimated for r in chosen),
        energy_components="+".join(r.component for r in chosen),
        energy_interval_s=primary.interval_s,
        energy_samples=primary.samples,
        energy_low_confidence=any(r.samples < LOW_CONFIDENCE_SAMPLES for r in chosen),
        mean_power_w=total / wall_s if wall_s > 0 else None,
        meter_rel_diff=rel,
        meter_rel_diff_between=between,
        meters_disagree=(rel > DISAGREE_ABOVE) if rel is not None else None,
    )
    if all(n is not None for n in nodes.values()):
        out.update(
            node_energy_j=sum(n.energy_j for n in nodes.values()),
            node_energy_cpu_j=nodes["cpu"].energy_j if "cpu" in nodes else None,
            node_energy_gpu_j=nodes["gpu"].energy_j if "gpu" in nodes else None,
            node_energy_ram_j=nodes["ram"].energy_j if "ram" in nodes else None,
        )
    idle = {(r.meter, r.component): r for r in job_readings(readings, "idle")}
    if idle_s and idle_s > 0 and idle:
        matched = [idle.get((r.meter, r.component)) for r in chosen]
        if all(m is not None for m in matched):
            p = sum(m.energy_j for m in matched) / idle_s
            out.update(idle_power_w=p, energy_net_j=total - p * wall_s)
    return out
