"""From readings to the energy columns of a row: which reading represents each component family, the
meters' agreement, and the columns themselves (``summarise``).

- per component family (cpu, gpu, ram = dram or ram-model) ONE job reading is chosen (``choose``):
  measured before modelled (among models, a calibration of this CPU model before the others), then by
  ``PRIORITY`` (the direct counter readers first); ``energy_j`` is their sum, so no energy is counted
  twice; ``node_energy_*`` are the node readings they came from (``node_of``). Only job readings
  compete: a machine-scope figure can never outrank a job-scoped one;
- where two meters MEASURED the same node/device component (e.g. rapl and codecarbon-rapl on cpu;
  nvml and zeus on gpu), their relative difference |a - b| / max(a, b) is stored (largest pair:
  ``meter_rel_diff``, ``meter_rel_diff_between``) and > 5 % sets ``meters_disagree`` (``compare``);
- how far the chosen readings can be off from their meters' update intervals and resolution against the
  window, and the low-confidence flag, are ``confidence.py``'s (account.finish calls it);
- with an idle window, the job's idle power and energy net of idle are derived from the same meters.

Pure Python.
"""

from __future__ import annotations

from typing import Any

from .base import Reading
from .calibration import CALIBRATED

#: preference when several meters report the same component family (higher wins, among
#: readings of the same kind: a measurement always beats an estimate)
PRIORITY = {"rapl": 40, "nvml": 40, "zeus": 30, "codecarbon": 20, "estimate": 0}
DISAGREE_ABOVE = 0.05  # meters_disagree when two measurements differ by more than this fraction

# Component families: a total sums one reading per family.
FAMILY = {"cpu": "cpu", "gpu": "gpu", "dram": "ram", "ram-model": "ram"}


def _rank(r: Reading) -> tuple[bool, bool, int]:
    """Measured first; among models a calibrated one (a measurement of this CPU model) first; then PRIORITY."""
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


def summarise(
    readings: list[Reading],
    wall_s: float,
    idle_s: float | None = None,
    window: str = "measured",
    idle_window: str = "idle",
) -> dict[str, Any]:
    """Energy columns of the result schema from the readings of a cell's windows.

    readings: every reading (node/device readings as measured and the job readings attributed from
    them; window 'measured' and, with an idle baseline, 'idle'); wall_s: wall time of the measured
    window; idle_s: wall time of the idle window. window / idle_window: the names of the windows the
    columns describe (another attempt's: MeterSet.exclude_attempt).
    """
    out: dict[str, Any] = {"energy_readings": [r.as_dict() for r in readings]}
    measured = [r for r in readings if r.window == window]
    best = choose(job_readings(readings, window))
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
    idle = {(r.meter, r.component): r for r in job_readings(readings, idle_window)}
    if idle_s and idle_s > 0 and idle:
        matched = [idle.get((r.meter, r.component)) for r in chosen]
        if all(m is not None for m in matched):
            p = sum(m.energy_j for m in matched) / idle_s
            out.update(idle_power_w=p, energy_net_j=total - p * wall_s)
    return out
