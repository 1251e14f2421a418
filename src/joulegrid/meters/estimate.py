"""The model meter: a linear model of the node's CPU (and, calibrated, DRAM) power, where no counter reads it.

    P_node = P0 + W x (busy logical CPUs)        E_node = P0 x dt + W x B

B = the node's busy CPU time in the window (``<proc>/stat``, ``usage.read_node_cpu``). It is an
ESTIMATE and says so (``estimated`` = True). Its reading is a NODE model, split like a counter
(``attribution.py``): the job gets ``W x J + (A / N) x P0 x dt`` -- its own CPU time at W per thread
plus the idle power of the CPUs it reserved, whatever the neighbours do. Two models
(``attribution.power_model`` chooses):

- ``model-calibrated``: this CPU model's calibration (``joulegrid calibrate`` on a host with RAPL,
  saved in the hardware table; ``calibration.py``): P0, W per busy logical CPU and, where the ladder
  determined it, W per GB of the node's used memory (``<proc>/meminfo``, read at the meter's reads:
  that term is static power, in P0), for the package (component cpu) and the DRAM (component dram)
  where the calibration host had a DRAM domain;
- ``estimate-tdp`` (no calibration): W_per_thread defaults to 4 W, codecarbon's fallback for an
  unknown CPU (its TDP table gives e.g. a 64-thread 250-W server part ~3.9 W/thread); set
  ``measure.cpu_tdp_w_per_thread`` (or the site's ``node_power.w_per_thread``) to your CPU's TDP /
  logical CPUs. P0 is the site's measured ``node_power.cpu_idle_w`` where given, else 10 % of the
  model's TDP (N x W), the idle level of codecarbon's machine model.

Every reading carries the static power it used in ``p0_w`` (the split's P0). The start, laps and stop
are its samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .attribution import DEFAULT_W_PER_THREAD, TDP_MODEL, model_idle_w
from .base import Meter, Reading
from .calibration import CALIBRATED, GB, Calibration, DomainModel
from .usage import PROC, NodeCpu, node_mem_used_bytes, read_node_cpu


class EstimateMeter(Meter):
    name = "estimate"
    kind = "model"

    def __init__(
        self,
        w_per_thread: float | None = None,
        cpu_idle_w: float | None = None,
        proc_root: str = PROC,
        node_cpu: Callable[[], NodeCpu] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        calibration: Calibration | None = None,
        mem_used: Callable[[], float | None] | None = None,
    ):
        self.w_per_thread = float(w_per_thread or DEFAULT_W_PER_THREAD)
        self._clock = clock
        self._node = node_cpu or (lambda: read_node_cpu(proc_root))
        self.calibration = calibration
        if calibration is not None:
            self.method = CALIBRATED
            self.models: dict[str, DomainModel] = {c: calibration.domain(c) for c in calibration.components()}
        else:
            self.method = TDP_MODEL
            self.models = {
                "cpu": DomainModel(model_idle_w(cpu_idle_w, self.w_per_thread, self._node().n_cpus), self.w_per_thread)
            }
        self.idle_w = self.models["cpu"].idle_w
        uses_memory = any(m.w_per_gb is not None for m in self.models.values())
        self._mem = (mem_used or (lambda: node_mem_used_bytes(proc_root))) if uses_memory else None
        self._t0 = self._t = 0.0
        self._b0 = 0.0
        self._g = None  # last used memory (GB)
        self._gb_s = 0.0  # integral of used GB over the window (GB x s)
        self._reads = 0

    def components(self) -> tuple[str, ...]:
        return tuple(self.models)

    def _used_gb(self) -> float | None:
        v = self._mem() if self._mem is not None else None
        return v / GB if v is not None else None

    def _energy(self) -> tuple[dict[str, tuple[float, float]], float]:
        """{component: (energy J, static W)} so far in the window, and its duration."""
        t, b = self._clock(), self._node().busy_s
        g = self._used_gb()
        if g is not None and self._g is not None:
            self._gb_s += 0.5 * (g + self._g) * (t - self._t)
        self._t, self._g = t, (g if g is not None else self._g)
        self._reads += 1
        dt = t - self._t0
        mean_gb = self._gb_s / dt if dt > 0 and self._mem is not None and self._g is not None else self._g
        busy = max(b - self._b0, 0.0)
        return {c: (m.energy(dt, busy, mean_gb), m.static_w(mean_gb)) for c, m in self.models.items()}, dt

    def start(self) -> None:
        self._reads = 1
        self._t0 = self._t = self._clock()
        self._b0 = self._node().busy_s
        self._g = self._used_gb()
        self._gb_s = 0.0

    def lap(self) -> dict[str, float] | None:
        return {c: e for c, (e, _) in self._energy()[0].items()}

    def stop(self) -> list[Reading]:
        es, dur = self._energy()
        return [
            Reading(self.name, c, self.method, e, dur, self._reads, True, duration_s=dur, scope="node", p0_w=p0)
            for c, (e, p0) in es.items()
        ]
