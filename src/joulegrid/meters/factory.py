"""The factory table: which meters exist (``FACTORIES``, one entry per meter; ``KNOWN`` is the order
``auto`` tries them in), and ``build``, which makes the meters a cell asked for and its usage tracker.

A new meter is one entry in ``FACTORIES``, its ``choice.PRIORITY`` and its name in the config schema's
``measure.meters`` enums (tests/meters keep the three equal).

Pure Python: a meter's library is imported by its factory, only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..sites import SiteFacts
from .attribution import PowerModel
from .base import Meter, MeterUnavailable, NotApplicable
from .meterset import MeterSet
from .tracker import JobUsage

if TYPE_CHECKING:
    from ..cell_settings import Measure

# Roots of the files the meters read; the environment variables exist for tests (fake trees).
ROOT_ENV = {"powercap": "JOULEGRID_POWERCAP", "proc": "JOULEGRID_PROC", "cgroup": "JOULEGRID_CGROUP"}


@dataclass(frozen=True)
class BuildContext:
    """What a meter's factory may need: the cell's device, the measure settings, the site's facts, the
    node's power model, the counters' interval and roots, the job's GPUs (or why it has none)."""

    device: str
    measure: Measure
    site: SiteFacts
    model: PowerModel
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
        ctx.site.country_iso,
        ctx.site.carbon_intensity_g_per_kwh,
        float(ctx.measure.meter_interval_s),
        gpu_ids=ctx.nvml_ids,
        tracking_mode=ctx.measure.codecarbon_mode,
    )


def _estimate(ctx: BuildContext) -> Meter:
    from .estimate import EstimateMeter

    return EstimateMeter(ctx.model.w_per_thread, ctx.model.cpu_idle_w, ctx.proc, calibration=ctx.model.calibration)


#: meter name -> its factory (raises MeterUnavailable / NotApplicable where it cannot run): a new meter is
#: one entry here, with its choice.PRIORITY and its name in the config schema's measure.meters enums
FACTORIES: dict[str, Callable[[BuildContext], Meter]] = {
    "rapl": _rapl,
    "nvml": _nvml,
    "zeus": _zeus,
    "codecarbon": _codecarbon,
    "estimate": _estimate,
}
KNOWN = tuple(FACTORIES)  # the meters auto tries, in this order


def build(
    measure: Measure,
    site: SiteFacts | None = None,
    device: str = "cpu",
    rapl_root: str | None = None,
    require: bool = True,
    proc_root: str | None = None,
    cgroup_root: str | None = None,
    env: dict[str, str] | None = None,
) -> MeterSet:
    """Meters asked for in ``measure`` (measure.meters, measure.required_meters) that can run here (the
    others go to `absent`), and the job's usage tracker (measure.attribution_interval_s; never started
    here). ``site``: the site's facts (its power model, its carbon intensity for codecarbon).

    Cheap: no meter library is imported that the host cannot use; expensive set-up is left to
    MeterSet.prepare_async(). With require, raises RequiredMeterMissing when a required meter is
    absent (for reasons known now; MeterSet.ready() checks again after prepare); without, the
    caller decides when (MeterSet.check_required()). Roots default to the real files, or to
    $JOULEGRID_POWERCAP / $JOULEGRID_PROC / $JOULEGRID_CGROUP (tests).
    """
    from ..probes import cpu_model, cpu_sockets
    from . import rapl, usage
    from .attribution import power_model

    wanted = list(measure.meters)
    names: list[str] = []
    for n in (list(KNOWN) if "auto" in wanted else []) + [w for w in wanted if w != "auto"]:
        if n not in names:
            names.append(n)
    required = set(measure.required_meters)
    for n in required:
        if n not in names:
            names.append(n)
    site = site or SiteFacts()
    root = rapl_root or os.environ.get(ROOT_ENV["powercap"]) or rapl.POWERCAP
    proc = proc_root or os.environ.get(ROOT_ENV["proc"]) or usage.PROC
    cgroup = cgroup_root or os.environ.get(ROOT_ENV["cgroup"]) or usage.CGROUP
    counter_s = float(measure.counter_interval_s)
    model = power_model(site, measure.cpu_tdp_w_per_thread, cpu_model(), cpu_sockets(), usage.mem_total_bytes(proc))

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
        power_model=model,
        shared_above=measure.node_shared_above,
        gpus=nvml_ids,
        max_rel_err=measure.energy_max_rel_err,
    )
    if require:
        ms.check_required()
    return ms
