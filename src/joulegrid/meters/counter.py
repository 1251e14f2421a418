"""Energy-counter meters (RAPL, NVML): read at the window's edges, polled in between.

The energy of a window is the difference of a monotonic hardware counter, which is exact up to
the counter's own resolution whatever the polling. The poll thread (every ``interval_s``) exists
to (1) see every wrap-around of counters that wrap (RAPL's ``energy_uj`` wraps at
``max_energy_range_uj``, after minutes to hours depending on power), (2) give cheap laps for
per-epoch energy curves and (3) count the reads, which the low-confidence rule uses. A read costs
a few microseconds (a sysfs file or one NVML call), so polling at 10 Hz costs nothing measurable.
"""

from __future__ import annotations

import threading
import time

from .base import Meter, Poller, Reading


class CounterMeter(Meter):
    kind = "counter"
    #: method string per component (set by subclasses)
    methods: dict[str, str] = {}
    #: scope per component (node unless a subclass says device)
    scopes: dict[str, str] = {}

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = float(interval_s)
        self._lock = threading.Lock()
        self._poller = Poller(f"joulegrid-{self.name}-poll", self.interval_s, self._sample)
        self._last: dict[str, float] = {}
        self._acc: dict[str, float] = {}
        self._reads = 0
        self._wraps = 0
        self.first_read = self.last_read = 0.0  # monotonic time of the window's first and last counter read

    # ---- subclass interface -------------------------------------------------------------
    def _read(self) -> dict[str, float]:
        """Raw counter values in joules, keyed by domain (e.g. 'cpu:0', 'dram:0', 'gpu:1')."""
        raise NotImplementedError

    def _range_j(self, key: str) -> float | None:
        """Value at which the counter of `key` wraps to 0 (joules), or None if it never wraps."""
        return None

    # ---- the window ---------------------------------------------------------------------
    def _sample(self) -> None:
        # read under the lock: two readers (the poll thread, a lap) must apply their reads in the order
        # they were taken, or the later read applied first makes the earlier one look like a wrap
        with self._lock:
            now = self._read()
            t = time.monotonic()
            if self._reads == 0:
                self.first_read = t
            self.last_read = t
            for key, v in now.items():
                last = self._last.get(key)
                if last is not None:
                    d = v - last
                    if d < 0:  # the counter wrapped (at most once per poll: polls are frequent)
                        rng = self._range_j(key)
                        d = v + (rng - last) if rng else 0.0
                        self._wraps += 1
                    self._acc[key] = self._acc.get(key, 0.0) + d
                self._last[key] = v
            self._reads += 1

    def start(self) -> None:
        self.close()
        self._last, self._acc, self._reads, self._wraps = {}, {}, 0, 0
        self._sample()
        self._poller.start()  # a failed poll is retried; stop() reads again

    def _by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._lock:
            for key in self._last:
                comp = key.split(":", 1)[0]
                out[comp] = out.get(comp, 0.0) + self._acc.get(key, 0.0)
        return out

    def lap(self) -> dict[str, float] | None:
        self._sample()
        return self._by_component()

    def stop(self) -> list[Reading]:
        self._poller.stop()
        self._sample()
        duration = self.last_read - self.first_read
        return [
            Reading(
                self.name,
                comp,
                self.methods.get(comp, self.name),
                e,
                self.interval_s,
                self._reads,
                False,
                duration_s=duration,
                scope=self.scopes.get(comp, "node"),
            )
            for comp, e in sorted(self._by_component().items())
        ]

    def estimated(self, component: str) -> bool:
        return False

    def clone(self) -> CounterMeter | None:
        """A second, independent reader of the same counters (the whole-job window), or None."""
        return None

    def close(self) -> None:
        self._poller.stop(timeout=5)
