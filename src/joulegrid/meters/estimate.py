"""The last-resort energy model: a linear model of the node's CPU power.

    P_node = P0 + W_per_thread x (busy logical CPUs)        E_node = P0 x dt + W_per_thread x B

B = the node's busy CPU time in the window (``<proc>/stat``, ``usage.read_node_cpu``). It is an
ESTIMATE and says so (method ``estimate-tdp``, ``estimated`` = True). Its reading is a NODE model,
split like a counter (``attribution.py``): the job gets ``W x J + (A / N) x P0 x dt`` -- its own CPU
time at W per thread plus the idle power of the CPUs it reserved, whatever the neighbours do.

W_per_thread defaults to 4 W, codecarbon's fallback for an unknown CPU (its TDP table gives e.g.
a 64-thread 250-W server part ~3.9 W/thread); set ``measure.cpu_tdp_w_per_thread`` (or the site's
``node_power.w_per_thread``) to your CPU's TDP / logical CPUs. P0 is the site's measured
``node_power.cpu_idle_w`` where given, else 10 % of the model's TDP (N x W), the idle level of
codecarbon's machine model. The start, laps and stop are its samples.
"""

from __future__ import annotations

import time
from typing import Callable

from .attribution import DEFAULT_W_PER_THREAD, model_idle_w
from .base import Meter, Reading
from .usage import PROC, NodeCpu, read_node_cpu


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
    ):
        self.w_per_thread = float(w_per_thread or DEFAULT_W_PER_THREAD)
        self._clock = clock
        self._node = node_cpu or (lambda: read_node_cpu(proc_root))
        self.idle_w = model_idle_w(cpu_idle_w, self.w_per_thread, self._node().n_cpus)
        self._t0 = 0.0
        self._b0 = 0.0
        self._reads = 0

    def components(self) -> tuple[str, ...]:
        return ("cpu",)

    def _energy(self) -> tuple[float, float]:
        t, b = self._clock(), self._node().busy_s
        self._reads += 1
        dt = t - self._t0
        return self.idle_w * dt + self.w_per_thread * max(b - self._b0, 0.0), dt

    def start(self) -> None:
        self._reads = 1
        self._t0 = self._clock()
        self._b0 = self._node().busy_s

    def lap(self) -> dict[str, float] | None:
        return {"cpu": self._energy()[0]}

    def stop(self) -> list[Reading]:
        e, dur = self._energy()
        return [Reading(self.name, "cpu", "estimate-tdp", e, dur, self._reads, True, duration_s=dur, scope="node")]
