"""The meters of one job (``MeterSet``): their set-up in the background, the whole job followed from
``start_job`` to ``finish``, one metered window at a time (``start`` / ``stop``, the usage read back to
back at its edges), laps, and at the end the row's energy columns (``finish``: ``account.finish``).

Pure Python: no torch import here (meters import their libraries lazily).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from . import account
from .attribution import PowerModel
from .base import Meter, MeterUnavailable, Reading, RequiredMeterMissing
from .tracker import JobUsage, Snapshot


def _edge_order(m: Meter) -> int:
    """Start order (stop: reversed): libraries with slow edges (codecarbon's tracker, zeus' windows)
    outermost, then the counters, then the models, so that the usage read sits tightly inside them."""
    if m.kind == "sampling" or m.name == "zeus":
        return 0
    return 1 if m.kind == "counter" else 2


@dataclass
class Window:
    """One metered window: the meters' readings and the usage snapshots read back to back at its edges."""

    name: str
    readings: list[Reading]
    start: Snapshot | None
    end: Snapshot | None


class MeterSet:
    """The meters of one job, measuring one window at a time, and the job's usage tracker.

    ``power_model``: the node's idle powers and CPU model (attribution.power_model), for the split;
    ``shared_above``: measure.node_shared_above (None: attribution.SHARED_ABOVE); ``gpus``: the job's GPUs
    (NVML indices)."""

    def __init__(
        self,
        meters: list[Meter],
        absent: list[dict[str, str]],
        required: set[str] | None = None,
        not_applicable: set[str] | None = None,
        usage: JobUsage | None = None,
        power_model: PowerModel | None = None,
        shared_above: float | None = None,
        gpus: list[int] | None = None,
        max_rel_err: float | None = None,
    ):
        self.meters = list(meters)
        self.absent = list(absent)
        self.required = set(required or ())
        #: absent meters that have nothing to measure in this cell (nvml in a cpu cell): never required
        self.not_applicable = set(not_applicable or ())
        self.usage = usage
        self.power_model = power_model
        self.shared_above = shared_above
        self.gpus = list(gpus or ())
        self.max_rel_err = max_rel_err  # measure.energy_max_rel_err (None: the schema's default)
        #: the energy columns of every measured attempt the outlier rule excluded, by its window name (finish)
        self.others: dict[str, dict[str, Any]] = {}
        self._attempt: tuple[int, int, int] | None = None  # (windows, laps, marks) when the attempt began
        self.windows: list[Window] = []
        self.laps: list[account.Lap] = []
        self._thread: threading.Thread | None = None
        self._failed: dict[str, str] = {}
        self._prepared = False
        self._window = "measured"
        self._w0: Snapshot | None = None
        self._job = False

    # ---- set-up ---------------------------------------------------------------------------
    def _prepare_all(self) -> None:
        self._prepared = True
        for m in self.meters:
            try:
                m.prepare()
            except Exception as e:  # noqa: BLE001 - a meter that cannot start is absent, not fatal
                self._failed[m.name] = str(e) if isinstance(e, MeterUnavailable) else f"{type(e).__name__}: {e}"

    def prepare_async(self) -> None:
        """Start the meters' expensive set-up in a background thread (overlaps the job's set-up)."""
        if self._thread is None and self.meters:
            self._thread = threading.Thread(target=self._prepare_all, name="joulegrid-meter-prepare", daemon=True)
            self._thread.start()

    def ready(self) -> None:
        """Wait for prepare_async; drop the meters that failed; enforce measure.required_meters."""
        if self._thread is not None:
            self._thread.join()
        elif not self._prepared:
            self._prepare_all()
        self._prepared = True
        for name, why in self._failed.items():
            self._drop(name, why)
        self._failed = {}
        self.check_required()

    def check_required(self, required: set[str] | None = None) -> None:
        """Raise RequiredMeterMissing if a meter of measure.required_meters (or `required`) is absent."""
        check_required(
            [a for a in self.absent if a["meter"] not in self.not_applicable],
            self.required if required is None else required,
        )

    def _drop(self, name: str, why: str) -> None:
        keep = []
        for m in self.meters:
            if m.name == name:
                m.close()
            else:
                keep.append(m)
        self.meters = keep
        self.absent.append({"meter": name, "reason": why})

    # ---- the whole job ----------------------------------------------------------------------
    def start_job(self) -> None:
        """Start following the job (usage + job-level counters) until finish(); as early as possible."""
        if self.usage is not None and not self._job:
            try:
                self.usage.start()
                self._job = True
            except Exception as e:  # noqa: BLE001 - no usage: no attribution, the run goes on
                self.usage.close()
                self.usage = None
                self.absent.append(
                    {"meter": "usage", "reason": f"node/job CPU time unreadable: {type(e).__name__}: {e}"}
                )

    def reserve(self, cpus: float | None, mem_mb: float | None, scheduler: str | None) -> None:
        """Complete the job's reservation with what the scheduler reserved (probes.scheduler: alloc_cpus,
        alloc_mem_mb): the attribution's idle shares."""
        if self.usage is not None:
            self.usage.set_reservation(cpus, mem_mb, scheduler)

    def mark(self, name: str) -> None:
        """Mark a point of the job (e.g. profile:start / profile:end: stretches left out of job_energy_j)."""
        if self._job:
            self.usage.snapshot(name)

    # ---- windows ---------------------------------------------------------------------------
    def start(self, window: str = "measured") -> None:
        """Start every meter, then read the usage: meters stop in the reverse order (stop()), so the
        windows nest -- the usage window innermost, the cheap counters and models tightly around it,
        slow starters and stoppers (codecarbon's tracker) outermost."""
        self._window = window
        for m in sorted(self.meters, key=_edge_order):
            try:
                m.start()
            except Exception as e:  # noqa: BLE001 - a meter that cannot start is dropped, with why
                self._drop(m.name, f"failed at start: {type(e).__name__}: {e}")
        self._w0 = self.usage.snapshot(f"{window}:start") if self._job else None

    def lap(self) -> int | None:
        """Record the energy so far in the window (every meter that can say) and the usage now.

        Returns the lap's index; finish() turns laps into the job's cumulative energies."""
        if not self.meters:
            return None
        laps: dict[tuple[str, str], float] = {}
        for m in self.meters:
            try:
                v = m.lap()
            except Exception:  # noqa: BLE001 - a meter that cannot lap leaves the lap unknown
                v = None
            for comp, e in (v or {}).items():
                laps[(m.name, comp)] = e
        snap = self.usage.snapshot() if self._job else None
        self.laps.append((self._window, laps, snap))
        return len(self.laps) - 1

    def stop(self) -> list[Reading]:
        w1 = self.usage.snapshot(f"{self._window}:end") if self._job else None
        readings: list[Reading] = []
        for m in sorted(self.meters, key=_edge_order, reverse=True):
            try:
                for r in m.stop():
                    r.window = self._window
                    readings.append(r)
            except Exception as e:  # noqa: BLE001 - a meter failing must not lose the run
                self._drop(m.name, f"failed at stop ({self._window} window): {type(e).__name__}: {e}")
        order = {m.name: i for i, m in enumerate(self.meters)}
        readings.sort(key=lambda r: order.get(r.meter, len(order)))  # in the meters' order, as before
        self.windows.append(Window(self._window, readings, self._w0, w1))
        return readings

    # ---- attempts (the outlier rule) -------------------------------------------------------------
    def begin_attempt(self) -> None:
        """A measured attempt begins (its warm-up, idle baseline, window): remembered, so that exclude_attempt
        can set it apart if the outlier rule excludes it."""
        mark = len(self.usage.marks) if self._job else -1
        if self._job:
            self.usage.snapshot("attempt")
        self._attempt = (len(self.windows), len(self.laps), mark)

    def window_usage(self, name: str = "measured") -> tuple[Any, float | None] | None:
        """(usage between the edges of the last window ``name``, the CPUs reserved for the job), or None
        without a usage tracker: what the outlier rule reads (steal, the neighbours' CPU time)."""
        w = next((w for w in reversed(self.windows) if w.name == name and w.start and w.end), None)
        if w is None or self.usage is None:
            return None
        return self.usage.between(w.start, w.end), self.usage.reserved.cpus

    def exclude_attempt(self, label: str) -> None:
        """The attempt begun last was excluded by the outlier rule: its windows are renamed (measured ->
        ``label``, idle -> '<label>:idle', its laps too), so that the row's columns come from the next attempt's
        window and this one's are accounted apart (finish: ``others``); its stretch of the job is marked as
        joulegrid's own ('outlier', left out of job_wall_s / job_energy_j like the idle baseline)."""
        if self._attempt is None:
            return
        w0, l0, m0 = self._attempt
        names = {"measured": label, "idle": f"{label}:idle"}
        for w in self.windows[w0:]:
            w.name = names.get(w.name, w.name)
            for r in w.readings:
                r.window = w.name
        self.laps[l0:] = [(names.get(n, n), e, snap) for n, e, snap in self.laps[l0:]]
        if self._job and m0 >= 0:
            self.usage.marks[m0] = ("outlier:start", self.usage.marks[m0][1])
            self.usage.snapshot("outlier:end")
        self._attempt = None

    def finish(
        self,
        wall_s: float | None,
        idle_s: float | None = None,
        gpu_model: str | None = None,
        others: dict[str, tuple[float | None, float | None]] | None = None,
    ) -> tuple[dict[str, Any], list[float | None]]:
        """Stop following the job; the row's energy, attribution and whole-job columns, and the
        job's cumulative energy at each lap (account.finish_all); the excluded attempts' energy columns go to
        ``self.others`` (others: {window name: (wall_s, idle_s)} of those attempts)."""
        end = self.usage.stop() if self._job else None
        self._job = False
        a = account.finish_all(
            self.windows,
            self.laps,
            self.usage if end is not None else None,
            end,
            model=self.power_model,
            shared_above=self.shared_above,
            gpus=self.gpus,
            wall_s=wall_s,
            idle_s=idle_s,
            gpu_model=gpu_model,
            max_rel_err=self.max_rel_err,
            others=others,
        )
        self.others = a.others
        return a.cols, a.laps

    def close(self) -> None:
        for m in self.meters:
            try:
                m.close()
            except Exception:  # noqa: BLE001 - closing must not lose the run
                pass
        if self.usage is not None:
            self.usage.close()


def check_required(absent: list[dict[str, str]], required: set[str]) -> None:
    missing = [a for a in absent if a["meter"] in required]
    if missing:
        raise RequiredMeterMissing(
            "required meter(s) unavailable on this host: "
            + "; ".join(f"{a['meter']}: {a['reason']}" for a in missing)
            + ". Fix: run on a host that provides them, or remove them from measure.required_meters "
            "(`joulegrid meters` lists what this host provides)"
        )
