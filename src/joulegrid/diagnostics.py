"""What disturbed a measured window, and the fixed rule that excludes a disturbed one (docs/measurement.md,
"Outliers by rule").

Diagnostics of every measured window (each null where nothing can read it):

- the CPU frequency of the job's CPUs (``os.sched_getaffinity``) at the window's start and end edges, their
  mean: cpufreq's ``scaling_cur_freq`` (kHz) under ``/sys/devices/system/cpu/cpu<N>/cpufreq/`` (``$JOULEGRID_SYS_CPU``
  in tests), else ``/proc/cpuinfo``'s ``cpu MHz`` (``$JOULEGRID_PROC``); the base frequency from cpufreq's
  ``base_frequency`` (intel_pstate) -- many VMs expose neither cpufreq nor a base frequency;
- steal time: the node's steal CPU time over its CPU time in the window (``/proc/stat``, the usage tracker:
  ``node_steal_cpu_s / node_cpu_s``);
- the neighbours' contention (``neighbour_contention``): the share of the CPUs the job needs that other
  processes ran on, on average over the window: max(0, (B - J) - (N - A) dt) / (A dt) with B the node's busy CPU
  time, J the job's, N the node's CPUs, A the CPUs the job needs: its threads, at most its reservation (a local
  run may use every CPU, but its 2 threads need 2 of them: a neighbour on the other 6 of 8 does not compete);
- the GPU clock-event ("throttle") reasons of the job's GPUs at the window's edges (NVML
  ``nvmlDeviceGetCurrentClocksEventReasons``, older pynvml ``...ClocksThrottleReasons``), OR-ed.

The rule (thresholds ``measure.outlier_*``; a window is excluded when any holds):

- steal above ``outlier_max_steal`` (10 %): a hypervisor gave the node's CPUs to other guests;
- neighbour contention above ``outlier_max_contention`` (50 %): other processes held more than half the CPUs the
  job needs;
- the job's CPUs ended the window below ``outlier_min_cpu_freq`` (90 %) of their base frequency: throttled
  (only where the base frequency is readable);
- a GPU hardware slowdown: HW slowdown, HW thermal, SW thermal or HW power-brake slowdown (not the power cap,
  which a GPU at full load reaches by design).

Pure Python (NVML through joulegrid.meters.nvml, only for cuda cells).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SYS_CPU = "/sys/devices/system/cpu"
SYS_CPU_ENV = "JOULEGRID_SYS_CPU"  # a fake cpufreq tree (tests)
PROC_ENV = "JOULEGRID_PROC"  # the fake proc root of the meters (tests: its cpuinfo)

#: NVML clock-event (throttle) reason bits (nvml.h: nvmlClocksEventReason* / nvmlClocksThrottleReason*)
GPU_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
GPU_SLOWDOWN = 0x8 | 0x20 | 0x40 | 0x80  # the reasons the rule excludes a window for


# ------------------------------------------------------------------ readers
def _khz(p: Path) -> float | None:
    try:
        return int(p.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        return None


def job_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cpu_freq_mhz(
    cpus: list[int], sys_root: str | None = None, proc_root: str | None = None
) -> tuple[float | None, str | None]:
    """(mean current frequency of ``cpus`` in MHz, its source 'cpufreq' or 'cpuinfo'), or (None, None)."""
    root = Path(sys_root or os.environ.get(SYS_CPU_ENV) or SYS_CPU)
    vals = [_khz(root / f"cpu{c}" / "cpufreq" / "scaling_cur_freq") for c in cpus]
    if vals and all(v is not None for v in vals):
        return sum(vals) / len(vals), "cpufreq"
    info = Path(proc_root or os.environ.get(PROC_ENV) or "/proc") / "cpuinfo"
    try:
        text = info.read_text()
    except OSError:
        return None, None
    mhz: dict[int, float] = {}
    cpu = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            try:
                cpu = int(value)
            except ValueError:
                cpu = None
        elif key == "cpu MHz" and cpu is not None:
            try:
                mhz[cpu] = float(value)
            except ValueError:
                pass
    got = [mhz[c] for c in cpus if c in mhz]
    if not got or len(got) < len(cpus):
        return None, None
    return sum(got) / len(got), "cpuinfo"


def cpu_base_mhz(cpus: list[int], sys_root: str | None = None) -> float | None:
    """Mean base frequency of ``cpus`` (cpufreq's base_frequency, MHz), or None."""
    root = Path(sys_root or os.environ.get(SYS_CPU_ENV) or SYS_CPU)
    vals = [_khz(root / f"cpu{c}" / "cpufreq" / "base_frequency") for c in cpus]
    if not vals or any(v is None for v in vals):
        return None
    return sum(vals) / len(vals)


def gpu_clock_reasons(indices: list[int]) -> int | None:
    """The clock-event reasons of the NVML devices ``indices``, OR-ed; None without GPUs or NVML."""
    if not indices:
        return None
    try:
        from .meters.nvml import _nvml

        nv = _nvml()
        get = (
            getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        mask = 0
        for i in indices:
            mask |= int(get(nv.nvmlDeviceGetHandleByIndex(i)))
        return mask
    except Exception as e:  # noqa: BLE001 - a diagnostic: NVML errors come in many kinds
        log.debug("GPU clock-event reasons unreadable: %s: %s", type(e).__name__, e)
        return None


def reason_names(mask: int | None) -> str | None:
    """'hw_slowdown,sw_power_cap' for a mask ('' = none; None = not read)."""
    if mask is None:
        return None
    names = [n for bit, n in sorted(GPU_REASONS.items()) if mask & bit]
    rest = mask & ~sum(GPU_REASONS)
    return ",".join(names + ([f"0x{rest:x}"] if rest else []))


def contention(usage: Any, reserved_cpus: float | None, threads: int | None = None) -> float | None:
    """The share of the CPUs the job needs (its threads, at most its reservation) that other processes ran on
    over a window (usage: tracker.Usage)."""
    if usage is None or usage.dt <= 0 or not usage.n_cpus:
        return None
    n = float(usage.n_cpus)
    a = min(float(reserved_cpus or n), float(threads or n), n)
    if a <= 0:
        return None
    other = max(usage.node_busy_s - usage.job_cpu_s, 0.0)
    on_mine = max(other - (n - a) * usage.dt, 0.0)
    return min(on_mine / (a * usage.dt), 1.0)


def steal(usage: Any) -> float | None:
    """The node's steal time over its CPU time in a window, or None."""
    if usage is None or usage.node_total_s <= 0:
        return None
    return usage.node_steal_s / usage.node_total_s


# ------------------------------------------------------------------ one window
class EdgeProbe:
    """Read at a measured window's edges (phases.MeasuredWindow): the job's CPU frequency and its GPUs'
    clock-event reasons. Reads cost microseconds (a few sysfs files, one NVML call per GPU)."""

    def __init__(self, gpus: list[int] | None = None, cpus: list[int] | None = None):
        self.cpus = cpus if cpus is not None else job_cpus()
        self.gpus = list(gpus or ())
        self.base_mhz = cpu_base_mhz(self.cpus)
        self.reset()

    def reset(self) -> None:
        self.start_mhz: float | None = None
        self.end_mhz: float | None = None
        self.source: str | None = None
        self.gpu_mask: int | None = None

    def _gpu(self) -> None:
        m = gpu_clock_reasons(self.gpus)
        if m is not None:
            self.gpu_mask = (self.gpu_mask or 0) | m

    def start(self) -> None:
        self.reset()
        self.start_mhz, self.source = cpu_freq_mhz(self.cpus)
        self._gpu()

    def end(self) -> None:
        self.end_mhz, source = cpu_freq_mhz(self.cpus)
        self.source = self.source or source
        self._gpu()


@dataclass(frozen=True)
class Diagnostics:
    """What the outlier rule reads of one measured window."""

    cpu_freq_start_mhz: float | None = None
    cpu_freq_end_mhz: float | None = None
    cpu_freq_source: str | None = None
    cpu_base_freq_mhz: float | None = None
    steal_fraction: float | None = None
    neighbour_contention: float | None = None
    gpu_reasons: int | None = None

    @classmethod
    def of(
        cls, probe: EdgeProbe | None, usage: Any = None, reserved_cpus: float | None = None, threads: int | None = None
    ) -> Diagnostics:
        return cls(
            probe.start_mhz if probe else None,
            probe.end_mhz if probe else None,
            probe.source if probe else None,
            probe.base_mhz if probe else None,
            steal(usage),
            contention(usage, reserved_cpus, threads),
            probe.gpu_mask if probe else None,
        )

    def columns(self) -> dict[str, Any]:
        return {
            "cpu_freq_start_mhz": self.cpu_freq_start_mhz,
            "cpu_freq_end_mhz": self.cpu_freq_end_mhz,
            "cpu_freq_source": self.cpu_freq_source,
            "cpu_base_freq_mhz": self.cpu_base_freq_mhz,
            "neighbour_contention": self.neighbour_contention,
            "gpu_throttle_reasons": reason_names(self.gpu_reasons),
        }


@dataclass(frozen=True)
class OutlierRule:
    """The fixed rule (module doc); thresholds from measure.outlier_*."""

    max_steal: float = 0.1
    max_contention: float = 0.5
    min_cpu_freq: float = 0.9

    @classmethod
    def of(cls, measure: Any) -> OutlierRule:
        return cls(measure.outlier_max_steal, measure.outlier_max_contention, measure.outlier_min_cpu_freq)

    def judge(self, d: Diagnostics) -> str | None:
        """Why the window is excluded ('; '-joined), or None when the rule keeps it."""
        why = []
        if d.steal_fraction is not None and d.steal_fraction > self.max_steal:
            why.append(
                f"steal {d.steal_fraction:.1%} of the node's CPU time > {self.max_steal:.0%} "
                "(measure.outlier_max_steal)"
            )
        if d.neighbour_contention is not None and d.neighbour_contention > self.max_contention:
            why.append(
                f"other processes ran on {d.neighbour_contention:.0%} of the CPUs the job needs > "
                f"{self.max_contention:.0%} (measure.outlier_max_contention)"
            )
        if (
            self.min_cpu_freq > 0
            and d.cpu_freq_end_mhz is not None
            and d.cpu_base_freq_mhz
            and d.cpu_freq_end_mhz < self.min_cpu_freq * d.cpu_base_freq_mhz
        ):
            why.append(
                f"CPUs at {d.cpu_freq_end_mhz:.0f} MHz at the window's end < {self.min_cpu_freq:.0%} of their base "
                f"{d.cpu_base_freq_mhz:.0f} MHz (measure.outlier_min_cpu_freq)"
            )
        if d.gpu_reasons is not None and d.gpu_reasons & GPU_SLOWDOWN:
            why.append(f"GPU slowdown: {reason_names(d.gpu_reasons & GPU_SLOWDOWN)}")
        return "; ".join(why) or None
