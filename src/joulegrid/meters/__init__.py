"""Energy meters behind one interface, and how their readings become result columns.

``build(settings, device)`` makes the meters a cell asked for (``measure.meters``; ``auto`` = every
meter that works on this host) and records why the others are absent. ``MeterSet`` prepares
them in the background, runs them over windows (the idle baseline, the measured phase) and
``summarise`` turns the readings into the energy columns of the result schema:

- per component family (cpu, gpu, ram = dram or ram-model) ONE reading is chosen: measured
  before modelled, then by ``PRIORITY`` (the direct counter readers first); ``energy_j`` is their
  sum, so no energy is counted twice;
- where two meters MEASURED the same component (e.g. rapl and codecarbon-rapl on cpu; nvml and
  zeus on gpu), their relative difference |a - b| / max(a, b) is stored (largest pair:
  ``meter_rel_diff``, ``meter_rel_diff_between``) and > 5 % sets ``meters_disagree``;
- a figure is low-confidence when a chosen reading took fewer than 60 samples (MLPerf Power);
- with an idle window, idle power and energy net of idle are derived from the same meters.

Pure Python: no torch import here (meters import their libraries lazily).
"""

from __future__ import annotations

import threading
from typing import Any

from .base import Meter, MeterUnavailable, Reading, RequiredMeterMissing

KNOWN = ("rapl", "nvml", "zeus", "codecarbon", "estimate")
#: preference when several meters report the same component family (higher wins, among
#: readings of the same kind: a measurement always beats an estimate)
PRIORITY = {"rapl": 40, "nvml": 40, "zeus": 30, "codecarbon": 20, "estimate": 0}
LOW_CONFIDENCE_SAMPLES = 60  # MLPerf Power: fewer samples than this in a window = low confidence
DISAGREE_ABOVE = 0.05  # meters_disagree when two measurements differ by more than this fraction

# Component families: a total sums one reading per family.
FAMILY = {"cpu": "cpu", "gpu": "gpu", "dram": "ram", "ram-model": "ram"}

__all__ = [
    "KNOWN", "PRIORITY", "LOW_CONFIDENCE_SAMPLES", "DISAGREE_ABOVE", "FAMILY",
    "Meter", "MeterUnavailable", "RequiredMeterMissing", "Reading", "MeterSet", "NotApplicable",
    "build", "summarise", "compare", "choose",
]


class NotApplicable(MeterUnavailable):
    """The meter works here but has nothing to measure in this cell (e.g. nvml in a cpu cell)."""


def _rank(meter: str, estimated: bool) -> tuple[bool, int]:
    return (not estimated, PRIORITY.get(meter, 0))


def choose(readings: list[Reading]) -> dict[str, Reading]:
    """Family -> the reading that represents it (measured first, then PRIORITY)."""
    best: dict[str, Reading] = {}
    for r in readings:
        fam = FAMILY.get(r.component, r.component)
        cur = best.get(fam)
        if cur is None or _rank(r.meter, r.estimated) > _rank(cur.meter, cur.estimated):
            best[fam] = r
    return best


class MeterSet:
    """The meters of one job, measuring one window at a time."""

    def __init__(
        self,
        meters: list[Meter],
        absent: list[dict[str, str]],
        required: set[str] | None = None,
        not_applicable: set[str] | None = None,
    ):
        self.meters = list(meters)
        self.absent = list(absent)
        self.required = set(required or ())
        #: absent meters that have nothing to measure in this cell (nvml in a cpu cell): never required
        self.not_applicable = set(not_applicable or ())
        self._thread: threading.Thread | None = None
        self._failed: dict[str, str] = {}
        self._prepared = False
        self._window = "measured"

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
        check_required([a for a in self.absent if a["meter"] not in self.not_applicable], self.required if required is None else required)

    def _drop(self, name: str, why: str) -> None:
        keep = []
        for m in self.meters:
            if m.name == name:
                m.close()
            else:
                keep.append(m)
        self.meters = keep
        self.absent.append({"meter": name, "reason": why})

    # ---- windows ---------------------------------------------------------------------------
    def start(self, window: str = "measured") -> None:
        self._window = window
        for m in list(self.meters):
            try:
                m.start()
            except Exception as e:  # noqa: BLE001
                self._drop(m.name, f"failed at start: {type(e).__name__}: {e}")

    def lap(self) -> float | None:
        """Energy so far in the window: the same family choice as summarise(), if all can say."""
        cands: dict[str, tuple[tuple[bool, int], Meter, str]] = {}
        for m in self.meters:
            for comp in m.components():
                fam = FAMILY.get(comp, comp)
                rank = _rank(m.name, m.estimated(comp))
                if fam not in cands or rank > cands[fam][0]:
                    cands[fam] = (rank, m, comp)
        if not cands:
            return None
        laps: dict[str, dict[str, float] | None] = {}
        total = 0.0
        for _, m, comp in cands.values():
            if m.name not in laps:
                try:
                    laps[m.name] = m.lap()
                except Exception:  # noqa: BLE001
                    laps[m.name] = None
            lap = laps[m.name]
            if lap is None or comp not in lap:
                return None
            total += lap[comp]
        return total

    def stop(self) -> list[Reading]:
        readings: list[Reading] = []
        for m in list(self.meters):
            try:
                for r in m.stop():
                    r.window = self._window
                    readings.append(r)
            except Exception as e:  # noqa: BLE001 - a meter failing must not lose the run
                self._drop(m.name, f"failed at stop ({self._window} window): {type(e).__name__}: {e}")
        return readings

    def close(self) -> None:
        for m in self.meters:
            try:
                m.close()
            except Exception:  # noqa: BLE001
                pass


def check_required(absent: list[dict[str, str]], required: set[str]) -> None:
    missing = [a for a in absent if a["meter"] in required]
    if missing:
        raise RequiredMeterMissing(
            "required meter(s) unavailable on this host: "
            + "; ".join(f"{a['meter']}: {a['reason']}" for a in missing)
            + ". Fix: run on a host that provides them, or remove them from measure.required_meters "
            "(`joulegrid meters` lists what this host provides)"
        )


def build(settings: dict[str, Any], device: str = "cpu", rapl_root: str | None = None, check: bool = True) -> MeterSet:
    """Meters asked for in settings['measure'] that can run here; the others go to `absent`.

    Cheap: no meter library is imported that the host cannot use; expensive set-up is left to
    MeterSet.prepare_async(). With check, raises RequiredMeterMissing when a required meter is
    absent (for reasons known now; MeterSet.ready() checks again after prepare); without, the
    caller decides when (MeterSet.check_required()).
    """
    from . import rapl

    measure = settings.get("measure", {}) or {}
    wanted = list(measure.get("meters", ["auto"]))
    names: list[str] = []
    for n in (list(KNOWN) if "auto" in wanted else []) + [w for w in wanted if w != "auto"]:
        if n not in names:
            names.append(n)
    required = set(measure.get("required_meters", []) or [])
    for n in required:
        if n not in names:
            names.append(n)
    site = settings.get("site_facts", {}) or {}
    root = rapl_root or rapl.POWERCAP
    counter_s = float(measure.get("counter_interval_s", 0.1))

    nvml_ids: list[int] = []
    gpu_why = None
    if device == "cuda":
        from .nvml import visible_gpus

        try:
            nvml_ids = visible_gpus()
            if not nvml_ids:
                gpu_why = "no GPU visible to the job (CUDA_VISIBLE_DEVICES is empty)"
        except MeterUnavailable as e:
            gpu_why = str(e)

    meters: list[Meter] = []
    absent: list[dict[str, Any]] = []
    for name in names:
        try:
            if name == "rapl":
                from .rapl import RaplMeter

                meters.append(RaplMeter(counter_s, root))
            elif name == "nvml":
                if device != "cuda":
                    raise NotApplicable(f"not used in a {device} cell (GPU meters measure cuda cells)")
                if gpu_why:
                    raise MeterUnavailable(gpu_why)
                from .nvml import NvmlMeter

                meters.append(NvmlMeter(nvml_ids, counter_s))
            elif name == "zeus":
                from .zeus_meter import ZeusMeter

                meters.append(ZeusMeter(list(range(len(nvml_ids))), rapl_root=root))
            elif name == "codecarbon":
                from .codecarbon_meter import CodecarbonMeter

                meters.append(
                    CodecarbonMeter(
                        site.get("country_iso"),
                        site.get("carbon_intensity_g_per_kwh"),
                        float(measure.get("meter_interval_s", 1.0)),
                        gpu_ids=nvml_ids,
                        tracking_mode=measure.get("codecarbon_mode", "machine"),
                    )
                )
            elif name == "estimate":
                from .estimate import EstimateMeter

                meters.append(EstimateMeter(measure.get("cpu_tdp_w_per_thread")))
            else:
                raise MeterUnavailable(f"unknown meter {name!r}; known: {', '.join(KNOWN)}")
        except MeterUnavailable as e:
            entry: dict[str, Any] = {"meter": name, "reason": str(e)}
            if isinstance(e, NotApplicable):
                entry["not_applicable"] = True
            absent.append(entry)
    ms = MeterSet(
        meters,
        [{"meter": a["meter"], "reason": a["reason"]} for a in absent],
        required,
        {a["meter"] for a in absent if a.get("not_applicable")},
    )
    if check:
        ms.check_required()
    return ms


def compare(readings: list[Reading]) -> tuple[float | None, str | None]:
    """Largest relative difference |a-b|/max(a,b) between two meters MEASURING the same component."""
    by_comp: dict[str, list[Reading]] = {}
    for r in readings:
        if not r.estimated:
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


def summarise(readings: list[Reading], wall_s: float, idle_s: float | None = None) -> dict[str, Any]:
    """Energy columns of the result schema from the readings of a cell's windows.

    readings: every reading (window 'measured' and, with an idle baseline, 'idle');
    wall_s: wall time of the measured window; idle_s: wall time of the idle window.
    """
    out: dict[str, Any] = {"energy_readings": [r.as_dict() for r in readings]}
    measured = [r for r in readings if r.window == "measured"]
    best = choose(measured)
    if not best:
        return out
    chosen = list(best.values())
    total = sum(r.energy_j for r in chosen)
    primary = max(chosen, key=lambda r: (not r.estimated, r.energy_j))
    methods: list[str] = []
    for r in chosen:
        if r.method not in methods:
            methods.append(r.method)
    rel, between = compare(measured)
    out.update(
        energy_j=total,
        energy_cpu_j=best["cpu"].energy_j if "cpu" in best else None,
        energy_gpu_j=best["gpu"].energy_j if "gpu" in best else None,
        energy_ram_j=best["ram"].energy_j if "ram" in best else None,
        energy_method="+".join(methods),
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
    idle = {(r.meter, r.component): r for r in readings if r.window == "idle"}
    if idle_s and idle_s > 0 and idle:
        matched = [idle.get((r.meter, r.component)) for r in chosen]
        if all(m is not None for m in matched):
            p = sum(m.energy_j for m in matched) / idle_s
            out.update(idle_power_w=p, energy_net_j=total - p * wall_s)
    return out
