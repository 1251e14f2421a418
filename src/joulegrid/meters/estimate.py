"""The last-resort energy model: process CPU time x TDP per hardware thread.

    E_cpu = (user + system CPU time of the job process in the window) x W_per_thread

It is an ESTIMATE and says so (method ``estimate-tdp``, ``estimated`` = True). It attributes to the
job only the CPU time it used (no idle power, no other processes): it answers "what would this
job's CPU work cost at a typical power per busy thread", not "what did the node draw".
W_per_thread defaults to 4 W, codecarbon's fallback for an unknown CPU (its TDP table gives e.g.
a 64-thread 250-W server part ~3.9 W/thread); set ``measure.cpu_tdp_w_per_thread`` to your CPU's
TDP / logical CPUs for a better figure. Both reads (start, stop) are counted as its samples.
"""

from __future__ import annotations

import os
import time

from .base import Meter, Reading

DEFAULT_W_PER_THREAD = 4.0


def _cpu() -> float:
    return time.process_time()  # all threads, ns resolution (os.times ticks at 10 ms)


class EstimateMeter(Meter):
    name = "estimate"
    kind = "model"

    def __init__(self, w_per_thread: float | None = None, cpu_time=_cpu):
        self.w_per_thread = float(w_per_thread or DEFAULT_W_PER_THREAD)
        self._cpu = cpu_time
        self._t0 = 0.0
        self._c0 = 0.0

    def components(self) -> tuple[str, ...]:
        return ("cpu",)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._c0 = self._cpu()

    def lap(self) -> dict[str, float] | None:
        return {"cpu": (self._cpu() - self._c0) * self.w_per_thread}

    def stop(self) -> list[Reading]:
        cpu_s = self._cpu() - self._c0
        dur = time.perf_counter() - self._t0
        return [Reading(self.name, "cpu", "estimate-tdp", cpu_s * self.w_per_thread, dur, 2, True, duration_s=dur)]
