"""`joulegrid meters`: which energy meters work on THIS host, and why the others do not.

Run it on an execution node (e.g. inside an interactive Slurm/HTCondor job) before a study that
lists ``measure.required_meters``: the submit host usually differs from the nodes, so joulegrid
cannot check required meters at config-validation time; a job whose node lacks one fails at
start with the same message this command prints.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ..sites import SiteFacts
from .base import MeterUnavailable
from .factory import KNOWN, build
from .meterset import MeterSet

if TYPE_CHECKING:
    from ..cell_settings import Measure


def survey(
    measure: Measure,
    site: SiteFacts | None = None,
    device: str = "cpu",
    window_s: float = 0.0,
    out: TextIO | None = None,
) -> int:
    """Print the meters of ``measure`` (at ``site``) on this host; 0 if every required meter works, else 1."""
    out = out or sys.stdout
    required = set(measure.required_meters)
    probe = dataclasses.replace(measure, meters=list(KNOWN) + list(measure.meters), required_meters=[])
    wanted = list(measure.meters)
    asked = set(KNOWN) if "auto" in wanted else set(wanted)
    ms: MeterSet = build(probe, site, device)
    t0 = time.perf_counter()
    ms.ready()
    prep = time.perf_counter() - t0
    print(f"energy meters on this host for a {device} cell (set-up {prep:.2f} s):", file=out)
    for m in ms.meters:
        comps = ", ".join(f"{c} ({'estimated' if m.estimated(c) else 'measured'})" for c in m.components())
        tag = "used" if m.name in asked or m.name in required else "works, not configured"
        print(f"  {m.name:<11} {tag:<22} {comps}", file=out)
    for a in ms.absent:
        tag = "absent" + (" REQUIRED" if a["meter"] in required and a["meter"] not in ms.not_applicable else "")
        print(f"  {a['meter']:<11} {tag:<22} {a['reason']}", file=out)
    model = ms.power_model
    if model is not None:
        from ..probes import cpu_model

        if model.calibration is not None:
            c = model.calibration
            err = (
                f", held-out error up to {100 * c.holdout_max_rel_err:.1f} %"
                if c.holdout_max_rel_err is not None
                else ""
            )
            what = f"model-calibrated: the calibration of {c.describe()}{err}"
        else:
            what = (
                f"estimate-tdp: {model.w_per_thread:g} W per busy logical CPU, no calibration of {cpu_model()!r} in "
                "the "
                "hardware table (joulegrid calibrate on a host of this CPU model with readable RAPL makes one)"
            )
        print(f"CPU power model here: {what}; idle power {model.source or 'not configured'}", file=out)
    rc = 0
    try:
        ms.check_required(required)
    except MeterUnavailable as e:
        print(f"joulegrid: {e}", file=out)
        rc = 1
    if window_s > 0 and ms.meters:
        used = MeterSet(
            [m for m in ms.meters if m.name in asked or m.name in required],
            [],
            usage=ms.usage,
            power_model=ms.power_model,
            shared_above=ms.shared_above,
            gpus=ms.gpus,
        )
        used.start_job()
        used.start("measured")
        t = time.perf_counter()
        time.sleep(window_s)
        readings = used.stop()
        wall = time.perf_counter() - t
        print(f"idle test window of {wall:.2f} s (what the meters measured: the node, or the job's devices):", file=out)
        for r in readings:
            print(
                f"  {r.meter:<11} {r.component:<10} {r.method:<24} {r.energy_j:10.3f} J  {r.energy_j / wall:8.2f} W"
                f"  {r.samples} samples @ {r.interval_s:g} s, {r.scope}{'  (estimate)' if r.estimated else ''}",
                file=out,
            )
        s, _ = used.finish(wall)
        if s.get("energy_j") is not None:
            print(
                f"  this process's share: {s['energy_j']:.3f} J of the node's {s.get('node_energy_j') or 0:.3f} J by "
                f"{s['energy_method']} ({s.get('energy_attribution')}); low confidence: {s['energy_low_confidence']}",
                file=out,
            )
            print(
                f"  node: {s.get('node_cpus')} CPUs, {s.get('job_cpus'):g} reserved here "
                f"({s.get('job_cpus_source')}); other processes used "
                f"{100 * (s.get('neighbour_cpu_fraction') or 0):.0f} % of its busy CPU time (shared: "
                f"{s.get('node_shared')}); CPU idle power {s.get('p0_cpu_w') or 0:.2f} W ({s.get('p0_cpu_source')})",
                file=out,
            )
        if s.get("meter_rel_diff") is not None:
            print(f"  largest disagreement {100 * s['meter_rel_diff']:.1f} % ({s['meter_rel_diff_between']})", file=out)
        used.close()
    ms.close()
    return rc
