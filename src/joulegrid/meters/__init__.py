"""Energy meters behind one interface, and how their readings become result columns.

``MeterSet`` runs the configured meters over one window and ``summarise`` turns their readings
into the energy columns of the result schema: per component the reading of the most
trustworthy meter (measured counters before models), the total, the method(s), and whether the
figure is an estimate.
"""

from __future__ import annotations

from typing import Any

from .base import Meter, MeterUnavailable, Reading

KNOWN = ("codecarbon", "estimate")
LOW_CONFIDENCE_SAMPLES = 60  # MLPerf Power: fewer samples than this in a window = low confidence

# Component families: a total sums one reading per family.
FAMILY = {"cpu": "cpu", "gpu": "gpu", "dram": "ram", "ram-model": "ram"}


class MeterSet:
    def __init__(self, meters: list[Meter], absent: list[dict[str, str]]):
        self.meters = meters
        self.absent = absent

    def start(self) -> None:
        for m in self.meters:
            m.start()

    def lap(self) -> float | None:
        """Cumulative energy of the primary meter so far, if it can say."""
        if not self.meters:
            return None
        primary = max(self.meters, key=lambda m: m.priority)
        return primary.lap()

    def stop(self) -> list[Reading]:
        readings: list[Reading] = []
        for m in self.meters:
            try:
                readings.extend(m.stop())
            except Exception as e:  # a meter failing must not lose the run
                self.absent.append({"meter": m.name, "reason": f"failed at stop: {type(e).__name__}: {e}"})
        return readings

    def close(self) -> None:
        for m in self.meters:
            m.close()


def build(settings: dict[str, Any]) -> MeterSet:
    """Meters asked for in settings['measure'] that work here; the others go to `absent`."""
    measure = settings.get("measure", {})
    wanted = list(measure.get("meters", ["auto"]))
    site = settings.get("site_facts", {})
    names = list(KNOWN) if "auto" in wanted else wanted
    meters: list[Meter] = []
    absent: list[dict[str, str]] = []
    for name in names:
        try:
            if name == "codecarbon":
                from .codecarbon_meter import CodecarbonMeter

                meters.append(
                    CodecarbonMeter(
                        site.get("country_iso"),
                        site.get("carbon_intensity_g_per_kwh"),
                        float(site.get("pue", 1.0)),
                        float(measure.get("meter_interval_s", 1.0)),
                    )
                )
            elif name == "estimate":
                from .estimate import EstimateMeter

                meters.append(EstimateMeter(measure.get("cpu_tdp_w_per_thread")))
            else:
                raise MeterUnavailable(f"meter {name!r} is not implemented in this version")
        except MeterUnavailable as e:
            absent.append({"meter": name, "reason": str(e)})
    required = set(measure.get("required_meters", []))
    missing = [a for a in absent if a["meter"] in required]
    if missing:
        raise MeterUnavailable(
            "required meter(s) unavailable: " + "; ".join(f"{a['meter']}: {a['reason']}" for a in missing)
        )
    return MeterSet(meters, absent)


def summarise(readings: list[Reading], wall_s: float, priorities: dict[str, int] | None = None) -> dict[str, Any]:
    """Energy columns of the result schema from a window's readings."""
    priorities = priorities or {}
    best: dict[str, Reading] = {}
    for r in readings:
        fam = FAMILY.get(r.component, r.component)
        cur = best.get(fam)
        key = (not r.estimated, priorities.get(r.meter, 0))
        if cur is None or key > (not cur.estimated, priorities.get(cur.meter, 0)):
            best[fam] = r
    out: dict[str, Any] = {"energy_readings": [r.as_dict() for r in readings]}
    if not best:
        return out
    total = sum(r.energy_j for r in best.values())
    chosen = list(best.values())
    primary = max(chosen, key=lambda r: (not r.estimated, r.energy_j))
    methods = []
    for r in chosen:
        if r.method not in methods:
            methods.append(r.method)
    estimated = any(r.estimated for r in chosen)
    out.update(
        energy_j=total,
        energy_cpu_j=best["cpu"].energy_j if "cpu" in best else None,
        energy_gpu_j=best["gpu"].energy_j if "gpu" in best else None,
        energy_ram_j=best["ram"].energy_j if "ram" in best else None,
        energy_method="+".join(methods),
        energy_estimated=estimated,
        energy_components="+".join(r.component for r in chosen),
        energy_interval_s=primary.interval_s,
        energy_samples=primary.samples,
        energy_low_confidence=estimated or (primary.interval_s > 0 and primary.samples < LOW_CONFIDENCE_SAMPLES),
        mean_power_w=total / wall_s if wall_s > 0 else None,
    )
    return out
