"""One interface for every energy meter; every reading says how it was obtained.

A meter measures windows (``start`` -> ``stop``) and returns one ``Reading`` per component it
covers (cpu, dram, gpu, ram-model). Life cycle, driven by ``joulegrid.meters.MeterSet``:

``__init__``   cheap checks only (a file exists, a library imports); raises MeterUnavailable
               with the reason when the host cannot provide the meter.
``prepare()``  expensive one-off set-up (codecarbon's hardware detection, importing zeus); run in
               a background thread while the job loads data and builds the model. May raise
               MeterUnavailable too.
``start()`` / ``stop()``  one window; a meter can measure several windows one after the other
               (the idle baseline, then the measured phase).
``lap()``      energy so far in the current window, per component, where the meter can read it
               cheaply (per-epoch energy curves), else None.
``close()``    release threads/handles after a failure; safe to call at any time.

Scope (``Reading.scope``: whose energy a reading is): ``node`` (RAPL packages and DRAM, codecarbon's
machine models, the estimate meter's node model: everything that ran on the node), ``device`` (one
GPU's counter: the job's own GPUs only), ``process`` (codecarbon's own process-mode attribution,
kept as a cross-check), and ``job``: the job's share, computed from node and device readings by
``joulegrid.meters.attribution`` (never by a meter).

Kinds (how ``samples`` and ``interval_s`` of a reading are to be read):
- ``counter``: an energy counter read at the window's edges and polled every ``interval_s`` in
  between (wrap-around detection, laps); ``samples`` = counter reads in the window.
- ``sampling``: power sampled every ``interval_s`` and integrated; ``samples`` = power samples.
- ``model``: an estimate computed from other quantities (CPU time x TDP); ``samples`` = reads of
  those quantities.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

COMPONENTS = ("cpu", "dram", "gpu", "ram-model")


@dataclass
class Reading:
    meter: str  # codecarbon, zeus, rapl, nvml, estimate
    component: str  # cpu, dram, gpu, ram-model
    method: str  # e.g. rapl, nvml, zeus-rapl, codecarbon-rapl, codecarbon-tdp-load, estimate-tdp, model-calibrated
    energy_j: float
    interval_s: float  # sampling / polling interval of the meter in this window
    samples: int  # samples or counter reads taken in the window
    estimated: bool  # True = a model, not a measurement
    window: str = "measured"  # measured, or idle (the idle baseline before the phase)
    duration_s: float | None = None  # length of the window as this meter saw it
    scope: str = "node"  # node, device, process (a meter's own attribution) or job (attributed)
    attribution: str | None = None  # job readings: how the node/device reading was split (attribution.py)
    p0_w: float | None = None  # model readings: the static (idle) power the model used in this window

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Poller:
    """A daemon thread that calls ``tick`` every ``interval_s`` seconds until stopped (a counter's polls
    for wrap-arounds and laps, the usage tracker's samples). A failed tick is skipped: the caller reads
    the window's edges itself."""

    def __init__(self, name: str, interval_s: float, tick: Callable[[], Any]):
        self.name = name
        self.interval_s = float(interval_s)
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.stop(timeout=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a failed tick is skipped; the edges are read again
                pass

    def stop(self, timeout: float | None = None) -> None:
        """Stop and join the thread (``timeout``: give up waiting after it, e.g. when closing after a failure)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class MeterUnavailable(RuntimeError):
    """The meter cannot run on this host; the message says why (and how to fix it, if one can)."""


class RequiredMeterMissing(MeterUnavailable):
    """A meter listed in measure.required_meters cannot run here: the job must not start."""


class NotApplicable(MeterUnavailable):
    """The meter works here but has nothing to measure in this cell (e.g. nvml in a cpu cell)."""


class Meter:
    name = "meter"
    kind = "model"  # counter, sampling or model (preference among meters: meters.PRIORITY)

    def prepare(self) -> None:
        """Expensive one-off set-up; runs in a background thread (see module doc)."""

    def start(self) -> None:
        raise NotImplementedError

    def lap(self) -> dict[str, float] | None:
        return None

    def stop(self) -> list[Reading]:
        raise NotImplementedError

    def estimated(self, component: str) -> bool:
        """Whether this meter's reading of `component` is a model (known after prepare())."""
        return self.kind == "model"

    def components(self) -> tuple[str, ...]:
        """Components this meter reports (known after prepare())."""
        return ()

    def close(self) -> None:
        """Release resources after a failure (stop() may not have been called)."""
