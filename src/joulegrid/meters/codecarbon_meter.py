"""codecarbon's offline tracker, with the site's country and carbon intensity.

- Only the OFFLINE tracker is used: the online one silently assumes Canada/Quebec when offline.
- The tracker gets ``pue=1.0``: codecarbon multiplies its *energies* by the PUE, which would make
  them incomparable with the counters (RAPL, NVML) and count the PUE twice, since joulegrid
  applies the site's PUE once, in ``co2_kg``. Every ``energy_*`` column is IT energy at the meter.
- How codecarbon obtained the CPU power is read back from the tracker and recorded: with RAPL
  it reads the package counters (``codecarbon-rapl``, measured); without, it models the power
  from TDP and load (``codecarbon-tdp-load``, estimated). RAM is always a model
  (``ram-model``: about 5 W per estimated DIMM).
- ``tracking_mode`` defaults to ``machine``: NODE figures, like the RAPL counters (the whole
  package; the RAM model of the whole host's DIMMs; GPU = the job's devices), which joulegrid splits
  into the job's share itself (``attribution.py``): the RAM model by the job's memory share, a
  ``codecarbon-rapl`` CPU figure like RAPL. Its CPU *model* (TDP x (0.1 + 0.9 load^3), not linear in
  the busy CPU time) is not split: it stays a node-scope cross-check. ``process`` mode is
  codecarbon's own attribution (TDP x process load; RSS fed into the DIMM model), recorded with
  scope ``process`` as a cross-check only; it also scans every process of the host at each sample
  (~12 ms per sample on the build host), so it is opt-in (``measure.codecarbon_mode: process``).
- codecarbon 3.3's ``stop()`` cancels its periodic sampler's next timer but does not wait for a
  sample already running; its final sample then reuses the same start time and counts the last
  interval twice (seen here: a 1-s window with the 20 W RAM model read 40 J instead of 20 J in one
  window of three). ``_serialise`` makes the periodic and the final samples take one lock, so the
  final one sees the updated time stamp.
- Hardware detection costs 1.4-2.7 s the first time in a process (codecarbon's CPU table, read
  with pandas); ``prepare()`` does it in a background thread while the job sets up, and later
  trackers reuse codecarbon's cached results (~25 ms). A codecarbon tracker cannot be restarted
  after ``stop()``, so each window gets a new tracker.
- Across cells: the detection's result (codecarbon's own in-process cache entry: RAM, CPU and GPU
  tracking modes, CPU model and TDP) is stored per host (joulegrid.hostcache, under
  <resources>/hosts/<host>/) by the first cell on a node and handed back to codecarbon's cache by
  the next ones, so they skip the detection and its pandas import; the trackers are then exactly
  those the detection builds. ``force_cpu_power`` / ``force_ram_power`` are not used: in codecarbon
  3.x a forced CPU power still runs the CPU table look-up, and it turns off codecarbon's RAPL
  reading on hosts that have RAPL.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .. import hostcache
from ..units import J_PER_KWH
from .base import Meter, MeterUnavailable, Reading

_CPU_MODES = {
    "intel_rapl": ("codecarbon-rapl", False),
    "intel_power_gadget": ("codecarbon-powergadget", False),
    "apple_powermetrics": ("codecarbon-powermetrics", False),
    "windows_emi": ("codecarbon-emi", False),
    "cpu_load": ("codecarbon-tdp-load", True),
    "constant": ("codecarbon-tdp-constant", True),
}


def cpu_method(tracker) -> tuple[str, bool]:
    """(method, estimated) of codecarbon's CPU figure, from the tracker's detected hardware."""
    for hw in getattr(tracker, "_hardware", []):
        if type(hw).__name__ == "CPU":
            mode = getattr(hw, "_mode", None)
            return _CPU_MODES.get(mode, (f"codecarbon-{mode or 'unknown'}", True))
    return "codecarbon-unknown", True


def _serialise(tracker):
    """Make codecarbon's periodic and final samples mutually exclusive (see module doc)."""
    orig = getattr(tracker, "_measure_power_and_energy", None)
    sched = getattr(tracker, "_scheduler", None)
    if orig is None or sched is None or not hasattr(sched, "function"):
        return tracker  # another codecarbon version: leave it as it is
    lock = threading.Lock()

    def measure(*args, **kwargs):
        with lock:
            return orig(*args, **kwargs)

    measure.joulegrid_serialised = True
    tracker._measure_power_and_energy = measure  # used by stop() / flush() (instance attribute wins)
    sched.function = measure  # used by the periodic sampler thread
    return tracker


def _detection_key(tracker) -> tuple[Any, dict[str, Any]]:
    """(codecarbon's in-process cache key of this tracker, the per-host cache key: that key and codecarbon's
    version)."""
    import codecarbon
    from codecarbon.core import hardware_cache

    key = hardware_cache.make_key(tracker)
    return key, {"codecarbon": codecarbon.__version__, "detection_key": repr(key)}


def _seed_detection(tracker) -> bool:
    """Hand this host's stored detection result to codecarbon's in-process cache; True if there was one."""
    try:
        from codecarbon.core import hardware_cache

        key, host_key = _detection_key(tracker)
        plan = hostcache.load("codecarbon-detection", host_key)
        if plan is None:
            return False
        with hardware_cache._cache_lock:
            hardware_cache._plans.setdefault(key, hardware_cache._HardwarePlan(**plan))
        return True
    except Exception:  # noqa: BLE001 - another codecarbon version: detect as usual
        return False


def _store_detection(tracker) -> None:
    """Store the detection codecarbon just cached for this tracker's settings, for the next cells on this host."""
    try:
        import dataclasses

        from codecarbon.core import hardware_cache

        key, host_key = _detection_key(tracker)
        plan = hardware_cache._plans.get(key)
        if plan is not None:
            hostcache.save("codecarbon-detection", host_key, dataclasses.asdict(plan))
    except Exception:  # noqa: BLE001 - a cache: never fail a measurement for it
        pass


class CodecarbonMeter(Meter):
    name = "codecarbon"
    kind = "sampling"

    def __init__(
        self,
        country_iso: str | None,
        carbon_intensity: float | None,
        interval_s: float = 1.0,
        gpu_ids: list[int] | None = None,
        tracking_mode: str = "machine",
    ):
        """gpu_ids: NVML indices of the GPUs in use; [] = report no GPU energy (CPU cells)."""
        try:
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            from codecarbon import OfflineEmissionsTracker
        except Exception as e:  # pragma: no cover - import failure on exotic hosts
            raise MeterUnavailable(f"codecarbon cannot be imported: {e}") from e
        self._cls = OfflineEmissionsTracker
        self.interval_s = float(interval_s)
        self.gpu_ids = list(gpu_ids or [])
        kwargs = dict(
            output_methods=[],  # write nothing (no emissions.csv): joulegrid stores the readings
            measure_power_secs=self.interval_s,
            log_level="error",
            tracking_mode=tracking_mode,
            pue=1.0,
            allow_multiple_runs=True,
        )
        if country_iso:
            kwargs["country_iso_code"] = country_iso
        if carbon_intensity is not None:
            kwargs["force_carbon_intensity_g_co2e_kwh"] = float(carbon_intensity)
        if self.gpu_ids:
            # NVML indices (codecarbon's own UUID matching strips a leading "G" of "GPU-...")
            kwargs["gpu_ids"] = self.gpu_ids
        self._kwargs = kwargs
        self._scope = "process" if tracking_mode == "process" else "node"
        self._tracker = None
        self._fresh = None  # a prepared tracker not started yet
        self._t0 = 0.0
        self._cpu = ("codecarbon-unknown", True)

    def _new(self):
        return _serialise(self._cls(**self._kwargs))

    def prepare(self) -> None:
        if self._fresh is not None:
            return
        t = self._new()
        known = _seed_detection(t)  # this host's detection, stored by an earlier cell
        t.get_detected_hardware()  # the expensive hardware detection (unless seeded), cached for later trackers
        if not known:
            _store_detection(t)
        self._cpu = cpu_method(t)
        self._fresh = t

    def components(self) -> tuple[str, ...]:
        return ("cpu", "ram-model") + (("gpu",) if self.gpu_ids else ())

    def estimated(self, component: str) -> bool:
        if component == "cpu":
            return self._cpu[1]
        return component != "gpu"

    def start(self) -> None:
        self.prepare()
        self._tracker, self._fresh = self._fresh, None
        self._t0 = time.perf_counter()
        self._tracker.start()

    def lap(self) -> dict[str, float] | None:
        t = self._tracker
        try:
            t.flush()
            out = {"cpu": t._total_cpu_energy.kWh * J_PER_KWH, "ram-model": t._total_ram_energy.kWh * J_PER_KWH}
            if self.gpu_ids:
                out["gpu"] = t._total_gpu_energy.kWh * J_PER_KWH
            return out
        except Exception:  # noqa: BLE001 - private attributes may change between versions
            return None

    def stop(self) -> list[Reading]:
        t, self._tracker = self._tracker, None
        if t is None:
            raise MeterUnavailable("codecarbon was not started")
        t.stop()
        dur = time.perf_counter() - self._t0
        # the next window needs a fresh tracker (codecarbon cannot restart one); made now,
        # outside any window, so that start() stays cheap
        self._fresh = self._new()
        self._fresh.get_detected_hardware()  # cached detection (~3 ms), so start() stays ~5 ms
        d = getattr(t, "final_emissions_data", None)
        if d is None:
            raise MeterUnavailable("codecarbon returned no data (its start() failed silently)")
        samples = int(getattr(t, "_measure_occurrence", 0) or 0) or max(1, round(d.duration / self.interval_s))
        method, est = cpu_method(t)
        sc = self._scope
        out = [
            Reading(
                self.name,
                "cpu",
                method,
                d.cpu_energy * J_PER_KWH,
                self.interval_s,
                samples,
                est,
                duration_s=dur,
                scope=sc,
            ),
            Reading(
                self.name,
                "ram-model",
                "codecarbon-ram-model",
                d.ram_energy * J_PER_KWH,
                self.interval_s,
                samples,
                True,
                duration_s=dur,
                scope=sc,
            ),
        ]
        if self.gpu_ids:
            out.append(
                Reading(
                    self.name,
                    "gpu",
                    "codecarbon-nvml",
                    (d.gpu_energy or 0.0) * J_PER_KWH,
                    self.interval_s,
                    samples,
                    False,
                    duration_s=dur,
                    scope="device",
                )
            )
        return out

    def close(self) -> None:
        t, self._tracker = self._tracker, None
        if t is not None:
            try:
                t.stop()
            except Exception:  # noqa: BLE001 - closing must not lose the run
                pass
