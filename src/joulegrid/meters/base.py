"""One interface for every energy meter; every reading says how it was obtained.

A meter measures one window (start -> stop) and returns Readings, one per component it covers
(cpu, dram, gpu, ram-model). ``lap()`` returns the cumulative energy so far where the meter can
read it cheaply (for per-epoch energy curves), else None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Reading:
    meter: str  # codecarbon, zeus, rapl, nvml, estimate
    component: str  # cpu, dram, gpu, ram-model
    method: str  # e.g. rapl, nvml, codecarbon-rapl, codecarbon-tdp, estimate-tdp
    energy_j: float
    interval_s: float  # sampling interval; 0 for counter differences
    samples: int  # samples taken in the window (counter reads for counter meters)
    estimated: bool  # True = a model, not a measurement

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MeterUnavailable(RuntimeError):
    """The meter cannot run on this host; the message says why."""


class Meter:
    name = "meter"
    #: higher = preferred as the primary source of a component (measured > modelled)
    priority = 0

    def start(self) -> None:
        raise NotImplementedError

    def lap(self) -> float | None:
        return None

    def stop(self) -> list[Reading]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources after a failure (stop() may not have been called)."""
