"""``joulegrid calibrate``: a short load ladder on a host with readable RAPL, and its calibration entry.

The ladder (every step: ``settle_s`` to reach a steady state, not measured, then ``step_s`` measured
in intervals of ``interval_s``; RAPL read through ``RaplMeter``, whose poll thread sees every wrap,
back to back with ``<proc>/stat`` and ``<proc>/meminfo``):

1. ``idle``: nothing started;
2. ``busy-<n>``: n processes each spinning one logical CPU, for n in 1 and ``levels`` evenly spaced
   counts up to every logical CPU (with SMT the scheduler fills the cores first, then their siblings);
3. ``resident``: memory workers hold ``mem_gb`` of touched memory, CPUs idle (the per-GB term);
4. ``traffic``: the same workers stream through their memory (one logical CPU each, memory bandwidth);
5. ``idle-end``: nothing again (drift: the package warmed up over the ladder).

The fit (``calibration.fit_domain``) uses the MEASURED busy CPUs and used memory of each step, not
the nominal ones: other processes on the node are part of what was measured, so a quiet node is
better but not required. Worker processes are plain Python (``python -I -c``) that end on their own
after their deadline, so an interrupted calibration leaves nothing running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import calibration
from .base import MeterUnavailable
from .usage import PROC, mem_total_bytes, node_mem_used_bytes, read_node_cpu, threads_per_core

BURN = """
import sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(20000):
        pass
"""

# allocate, touch every page (resident), say so, then hold it -- or stream through it on "stream"
MEM = """
import sys, time
n, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
buf = bytearray(n)
buf[::4096] = b"\\1" * len(range(0, n, 4096))
print("ready", flush=True)
line = sys.stdin.readline()
if line.strip() == "stream":
    mv, half = memoryview(buf), n // 2
    while time.monotonic() < end:
        mv[:half] = mv[half:2 * half]
        mv[half:2 * half] = mv[:half]
else:
    time.sleep(max(end - time.monotonic(), 0))
"""


@dataclass
class LadderSettings:
    step_s: float = 15.0
    settle_s: float = 3.0
    interval_s: float = 0.5
    levels: int = 6
    mem_gb: float | None = None  # None: min(8, a quarter of MemAvailable); 0: no memory steps
    proc_root: str = PROC
    powercap_root: str | None = None
    counter_interval_s: float = 0.1

    def validate(self) -> None:
        for k in ("step_s", "interval_s"):
            if getattr(self, k) <= 0:
                raise calibration.CalibrationError(f"--{k.replace('_', '-')} must be > 0")
        if self.settle_s < 0 or self.levels < 1 or (self.mem_gb is not None and self.mem_gb < 0):
            raise calibration.CalibrationError("--settle-s >= 0, --levels >= 1 and --mem-gb >= 0 please")
        if self.step_s / self.interval_s < calibration.MIN_INTERVALS:
            raise calibration.CalibrationError(
                f"--step-s {self.step_s:g} holds fewer than {calibration.MIN_INTERVALS} intervals of --interval-s "
                f"{self.interval_s:g}. Fix: raise --step-s or lower --interval-s"
            )


def busy_levels(n_cpus: int, levels: int) -> list[int]:
    """1 and `levels` evenly spaced counts up to n_cpus."""
    k = max(1, min(levels, n_cpus))
    return sorted({1, *(max(1, round(n_cpus * i / k)) for i in range(1, k + 1))})


def default_mem_gb(proc_root: str) -> float:
    total = mem_total_bytes(proc_root) or 0
    used = node_mem_used_bytes(proc_root)
    avail = (total - used) if used is not None else total
    return round(max(min(8.0, 0.25 * avail / calibration.GB), 0.0), 2)


class _Procs:
    """The ladder's worker processes (killed on exit, whatever happens)."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def burn(self, n: int, seconds: float) -> None:
        for _ in range(n):
            self.procs.append(subprocess.Popen([sys.executable, "-I", "-c", BURN, f"{seconds:.1f}"]))

    def memory(self, n: int, total_bytes: int, seconds: float) -> list[subprocess.Popen]:
        ws = [
            subprocess.Popen(
                [sys.executable, "-I", "-c", MEM, str(total_bytes // n), f"{seconds:.1f}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        self.procs += ws
        for w in ws:
            if (w.stdout.readline() or "").strip() != "ready":
                raise calibration.CalibrationError(
                    f"a memory worker could not allocate {total_bytes / n / calibration.GB:.2f} GB. Fix: lower --mem-gb"
                )
        return ws

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout):
                if f is not None:
                    f.close()
        self.procs = []


def _sampler(meter, proc_root: str) -> Callable[[], tuple[float, dict[str, float], float, float | None]]:
    def read():
        e = meter.lap() or {}
        t = time.monotonic()
        node = read_node_cpu(proc_root)
        used = node_mem_used_bytes(proc_root)
        return (
            t,
            {("package" if k == "cpu" else k): v for k, v in e.items()},
            node.busy_s,
            (used / calibration.GB if used is not None else None),
        )

    return read


def _measure(name: str, st: LadderSettings, read) -> calibration.Step:
    """One step: a read every interval_s for step_s (a late read on a busy host makes a longer interval)."""
    step = calibration.Step(name)
    prev = read()
    t0 = prev[0]
    while prev[0] < t0 + st.step_s - 1e-3:
        k = int((time.monotonic() - t0) / st.interval_s) + 1  # the next tick not yet passed
        time.sleep(max(min(t0 + k * st.interval_s, t0 + st.step_s) - time.monotonic(), 0.0))
        cur = read()
        dt = cur[0] - prev[0]
        if dt > 0:
            gb = (prev[3] + cur[3]) / 2 if prev[3] is not None and cur[3] is not None else None
            step.intervals.append(
                calibration.Interval(
                    dt, max(cur[2] - prev[2], 0.0), gb, {d: cur[1][d] - prev[1].get(d, 0.0) for d in cur[1]}
                )
            )
        prev = cur
    return step


@dataclass
class LadderResult:
    steps: list[calibration.Step]
    domains: list[str]
    n_cpus: int
    levels: list[int]
    mem_gb: float
    mem_workers: int
    facts: dict[str, Any] = field(default_factory=dict)


def run(st: LadderSettings, say: Callable[[str], None] = print) -> LadderResult:
    """Run the ladder (raises CalibrationError where RAPL is not readable or a step fails)."""
    from .factory import ROOT_ENV
    from .rapl import POWERCAP, RaplMeter

    st.validate()
    root = st.powercap_root or os.environ.get(ROOT_ENV["powercap"]) or POWERCAP
    try:
        meter = RaplMeter(st.counter_interval_s, root)
    except MeterUnavailable as e:
        raise calibration.CalibrationError(
            f"joulegrid calibrate needs readable RAPL counters, and this host has none: {e}. "
            "Calibrate on a host of the same CPU model where they are readable (as root: sudo -E .venv/bin/joulegrid "
            "calibrate), then use the hardware table it writes on the hosts without counters"
        ) from None
    n = read_node_cpu(st.proc_root).n_cpus
    levels = busy_levels(n, st.levels)
    mem_gb = default_mem_gb(st.proc_root) if st.mem_gb is None else float(st.mem_gb)
    n_mem = max(1, n // 4)
    plan = ["idle"] + [f"busy-{k}" for k in levels] + (["resident", "traffic"] if mem_gb > 0 else []) + ["idle-end"]
    say(
        f"joulegrid calibrate: {len(plan)} steps of {st.settle_s:g} s settling + {st.step_s:g} s measured "
        f"(~{len(plan) * (st.settle_s + st.step_s) / 60:.1f} min): {', '.join(plan)}; "
        f"{n} logical CPUs, memory steps {mem_gb:g} GB in {n_mem} worker(s)"
    )
    procs = _Procs()
    steps: list[calibration.Step] = []
    life = st.settle_s + st.step_s + 30.0  # workers end on their own after this, whatever happens here
    meter.start()
    try:
        read = _sampler(meter, st.proc_root)
        workers: list[subprocess.Popen] = []
        for name in plan:
            if name.startswith("busy-"):
                procs.burn(int(name[5:]), life)
            elif name == "resident":
                workers = procs.memory(n_mem, int(mem_gb * calibration.GB), 2 * life + 60)
            elif name == "traffic":
                for w in workers:
                    w.stdin.write("stream\n")
                    w.stdin.flush()
            time.sleep(st.settle_s)
            step = _measure(name, st, read)
            steps.append(step)
            x = sum(i.busy_s for i in step.intervals) / sum(i.dt for i in step.intervals)
            p = {
                d: sum(i.energy[d] for i in step.intervals) / sum(i.dt for i in step.intervals)
                for d in step.intervals[0].energy
            }
            gbs = [i.used_gb for i in step.intervals]
            g = (
                sum(v * i.dt for v, i in zip(gbs, step.intervals, strict=True)) / sum(i.dt for i in step.intervals)
                if None not in gbs
                else None
            )
            say(
                f"  {name:<10} busy CPUs {x:6.2f}   used {g if g is not None else float('nan'):7.2f} GB   "
                + "   ".join(f"{d} {w:8.2f} W" for d, w in sorted(p.items()))
            )
            if name != "resident":  # the memory workers go on into the traffic step
                procs.stop()
    finally:
        procs.stop()
        meter.close()
    domains = [d for d in calibration.DOMAINS if all(d in i.energy for s in steps for i in s.intervals)]
    return LadderResult(steps, domains, n, levels, mem_gb, n_mem)


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)


def calibrate(st: LadderSettings, cpu_model: str, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the ladder and fit it: the calibration entry of `cpu_model` for the hardware table."""
    from .. import __version__
    from ..probes import cpu_sockets

    lad = run(st, say)
    idle = [i for i, s in enumerate(lad.steps) if s.name.startswith("idle")]
    fits = {d: calibration.fit_domain(lad.steps, d, idle) for d in lad.domains}
    rmse, worst = calibration.holdout_summary(fits)
    entry: dict[str, Any] = {
        "host": os.uname().nodename,
        "calibrated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "joulegrid_version": __version__,
        "logical_cpus": lad.n_cpus,
        "threads_per_core": threads_per_core(),
        "sockets": cpu_sockets(),
        "mem_total_gb": _r((mem_total_bytes(st.proc_root) or 0) / calibration.GB, 2) or None,
        "holdout_rmse_w": _r(rmse),
        "holdout_max_rel_err": _r(worst, 4),
    }
    for d, f in fits.items():
        m = f.model
        hr = [abs(e) / p for e, p in zip(f.holdout, f.power, strict=True) if p > 0]
        entry[d] = {
            "idle_w": _r(m.idle_w),
            "idle_w_se": _r(f.se["idle_w"]),
            "w_per_busy_cpu": _r(m.w_per_busy_cpu, 4),
            "w_per_busy_cpu_se": _r(f.se["w_per_busy_cpu"], 4),
            "w_per_gb": _r(m.w_per_gb, 4),
            "w_per_gb_fit": _r(f.w_per_gb_fit, 4),
            "w_per_gb_se": _r(f.se["w_per_gb"], 4),
            "idle_used_gb": _r(m.idle_used_gb, 2),
            "rmse_w": _r(f.rmse_w),
            "holdout_rmse_w": _r((sum(e * e for e in f.holdout) / len(f.holdout)) ** 0.5),
            "holdout_max_rel_err": _r(max(hr), 4) if hr else None,
        }
    entry["ladder"] = {
        "step_s": st.step_s,
        "settle_s": st.settle_s,
        "interval_s": st.interval_s,
        "busy_levels": lad.levels,
        "mem_gb": lad.mem_gb,
        "mem_workers": lad.mem_workers,
    }
    steps = []
    for k, s in enumerate(lad.steps):
        t = sum(i.dt for i in s.intervals)
        gbs = [i.used_gb for i in s.intervals]
        row: dict[str, Any] = {
            "step": s.name,
            "busy_cpus": _r(sum(i.busy_s for i in s.intervals) / t),
            "used_gb": _r(sum(g * i.dt for g, i in zip(gbs, s.intervals, strict=True)) / t, 2)
            if None not in gbs
            else None,
        }
        for d, f in fits.items():
            row[f"{d}_w"] = _r(f.power[k])
            row[f"{d}_holdout_err_w"] = _r(f.holdout[k])
        row["intervals"] = len(s.intervals)
        row["dropped"] = max(f.dropped[k] for f in fits.values())
        steps.append(row)
    entry["steps"] = steps
    return entry


def summary(entry: dict[str, Any]) -> list[str]:
    """What a user reads after a calibration: each parameter with its standard error, and the error."""
    out = []
    for d in calibration.DOMAINS:
        e = entry.get(d)
        if not e:
            continue

        def pm(k: str, unit: str, e: dict[str, Any] = e) -> str:
            v, se = e.get(k), e.get(f"{k}_se")
            return f"{v:g} {unit}" + (f" ± {se:g}" if se is not None else " (no error: too few steps)")

        gb = (
            f"{e['w_per_gb']:g} ± {e['w_per_gb_se']:g} W/GB"
            if e.get("w_per_gb") is not None
            else (
                f"not determined (fit {e['w_per_gb_fit']:g} ± {e['w_per_gb_se']:g} W/GB: within 2 standard errors of "
                "0; left out)"
            )
            if e.get("w_per_gb_fit") is not None
            else "not fitted (no memory steps or no MemAvailable)"
        )
        out.append(
            f"  {d:<8} idle {pm('idle_w', 'W')}, per busy logical CPU {pm('w_per_busy_cpu', 'W')}, per GB used: {gb}"
        )
        out.append(
            f"           held-out error per step: RMSE {e['holdout_rmse_w']:g} W, max "
            f"{100 * (e['holdout_max_rel_err'] or 0):.1f} %"
        )
    out.append(
        f"  model (all domains) held-out: RMSE {entry['holdout_rmse_w']:g} W, max relative error "
        f"{100 * entry['holdout_max_rel_err']:.1f} % (what it gets wrong on a load step it was not fitted on)"
    )
    return out
