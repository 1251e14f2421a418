"""The last-resort energy model: process CPU time x TDP per hardware thread.

Used when nothing can measure (no RAPL, no GPU counters, codecarbon unavailable). It is an
ESTIMATE and says so: method ``estimate-tdp``, estimated = True. The TDP per thread defaults to
codecarbon's fallback of 4 W per thread; set ``measure.cpu_tdp_w_per_thread`` in the settings.
"""

from __future__ import annotations

import os
import time

from .base import Meter, Reading

DEFAULT_W_PER_THREAD = 4.0


class EstimateMeter(Meter):
    name = "estimate"
    priority = 0

    def __init__(self, w_per_thread: float | None = None):
        self.w_per_thread = float(w_per_thread or DEFAULT_W_PER_THREAD)
        self._t0 = 0.0
        self._c0 = 0.0

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = self._cpu()

    def lap(self) -> float | None:
        return (self._cpu() - self._c0) * self.w_per_thread

    def stop(self) -> list[Reading]:
        cpu_s = self._cpu() - self._c0
        return [Reading(self.name, "cpu", "estimate-tdp", cpu_s * self.w_per_thread, 0.0, 2, True)]
