"""zeus (ml.energy) ``ZeusMonitor`` windows: GPU energy from NVML, CPU/DRAM from RAPL.

zeus reads the same hardware counters as the direct ``nvml`` and ``rapl`` meters (it adds a
power-sampling process for pre-Volta GPUs and a wrap-around tracker process per RAPL file, and
can read RAPL without root through its ``zeusd`` daemon). It is kept as an independent
implementation to cross-check the direct readers (``meter_rel_diff``).

On a host with neither an NVIDIA GPU in use nor readable RAPL, ZeusMonitor still "works" but
measures time only; importing zeus also costs seconds. So the meter checks cheaply first and is
unavailable there, saying why. The import and ZeusMonitor construction happen in ``prepare()``
(a background thread, overlapped with the job's set-up).
"""

from __future__ import annotations

import os
import time

from . import rapl
from .base import Meter, MeterUnavailable, Reading


class ZeusMeter(Meter):
    name = "zeus"
    kind = "counter"

    def __init__(self, gpu_indices: list[int], rapl_root: str = rapl.POWERCAP, monitor_factory=None):
        """gpu_indices: CUDA device indices (after CUDA_VISIBLE_DEVICES) of the GPUs in use."""
        self.gpu_indices = list(gpu_indices)
        self._factory = monitor_factory
        self._cpu_possible = False
        if rapl.discover(rapl_root):
            _, why = rapl.readable(rapl_root)
            self._cpu_possible = why is None or bool(os.environ.get("ZEUSD_SOCK_PATH"))
        if not self.gpu_indices and not self._cpu_possible:
            raise MeterUnavailable(
                "zeus would measure time only here: no NVIDIA GPU in use and no readable RAPL "
                "(and no zeusd daemon, ZEUSD_SOCK_PATH)"
            )
        self._mon = None
        self._key = None
        self._n = 0
        self._t0 = 0.0
        self._gpu_method = "zeus-nvml"

    def prepare(self) -> None:
        if self._mon is not None:
            return
        try:
            if self._factory is None:
                from zeus.monitor import ZeusMonitor

                self._factory = ZeusMonitor
            mon = self._factory(gpu_indices=self.gpu_indices, cpu_indices=None if self._cpu_possible else [])
        except MeterUnavailable:
            raise
        except Exception as e:  # zeus raises ValueError/RuntimeError/init errors
            raise MeterUnavailable(f"ZeusMonitor could not start: {type(e).__name__}: {e}") from e
        if not getattr(mon, "gpu_indices", None) and not getattr(mon, "cpu_indices", None):
            raise MeterUnavailable("ZeusMonitor found neither GPUs nor RAPL CPUs: it would measure time only")
        if getattr(mon, "power_monitor", None) is not None:
            self._gpu_method = "zeus-nvml-power-samples"  # pre-Volta: integrated power samples
        self._mon = mon

    def components(self) -> tuple[str, ...]:
        comps = []
        if self._cpu_possible:
            comps += ["cpu", "dram"]
        if self.gpu_indices:
            comps.append("gpu")
        return tuple(comps)

    def estimated(self, component: str) -> bool:
        return False

    def start(self) -> None:
        self.prepare()
        self._n += 1
        self._key = f"joulegrid-{os.getpid()}-{self._n}"
        self._t0 = time.perf_counter()
        self._mon.begin_window(self._key, sync_execution=bool(self.gpu_indices))

    def stop(self) -> list[Reading]:
        key, self._key = self._key, None
        m = self._mon.end_window(key, sync_execution=bool(self.gpu_indices))
        dur = time.perf_counter() - self._t0
        out = []
        for comp, vals, method, scope in (
            ("cpu", m.cpu_energy, "zeus-rapl", "node"),
            ("dram", m.dram_energy, "zeus-rapl", "node"),
            ("gpu", m.gpu_energy, self._gpu_method, "device"),
        ):
            if vals:
                out.append(
                    Reading(
                        self.name, comp, method, float(sum(vals.values())), dur, 2, False, duration_s=dur, scope=scope
                    )
                )
        return out

    def close(self) -> None:
        if self._mon is not None and self._key is not None:
            try:
                self._mon.end_window(self._key, sync_execution=False, cancel=True)
            except Exception:  # noqa: BLE001 - closing must not lose the run
                pass
            self._key = None
