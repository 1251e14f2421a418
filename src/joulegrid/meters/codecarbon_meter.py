"""codecarbon's offline tracker, with the site's country and carbon intensity.

The online tracker silently assumes Canada/Quebec when offline, so only the offline one is used.
How codecarbon obtained the CPU power is read back from the tracker and recorded: on a host
without RAPL it models CPU power from TDP and load (method ``codecarbon-tdp``, estimated), and
RAM power is always a model (``ram-model``).
"""

from __future__ import annotations

import logging

from .base import Meter, MeterUnavailable, Reading

KWH = 3.6e6


def _cpu_method(tracker) -> tuple[str, bool]:
    for hw in getattr(tracker, "_hardware", []):
        if type(hw).__name__ == "CPU":
            mode = getattr(hw, "_mode", None)
            if mode == "intel_rapl":
                return "codecarbon-rapl", False
            if mode == "intel_power_gadget":
                return "codecarbon-powergadget", False
            if mode == "cpu_load":
                return "codecarbon-tdp-load", True
            return f"codecarbon-tdp-{mode or 'constant'}", True
    return "codecarbon-unknown", True


class CodecarbonMeter(Meter):
    name = "codecarbon"
    priority = 10

    def __init__(self, country_iso: str | None, carbon_intensity: float | None, pue: float = 1.0, interval_s: float = 1.0):
        try:
            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            from codecarbon import OfflineEmissionsTracker
        except Exception as e:  # pragma: no cover - import failure on exotic hosts
            raise MeterUnavailable(f"codecarbon cannot be imported: {e}") from e
        kwargs = dict(
            save_to_file=False,
            measure_power_secs=interval_s,
            log_level="error",
            tracking_mode="process",
            pue=pue,
            allow_multiple_runs=True,
        )
        if country_iso:
            kwargs["country_iso_code"] = country_iso
        if carbon_intensity is not None:
            kwargs["force_carbon_intensity_g_co2e_kwh"] = float(carbon_intensity)
        self.interval_s = interval_s
        self._tracker = OfflineEmissionsTracker(**kwargs)

    def start(self) -> None:
        self._tracker.start()

    def lap(self) -> float | None:
        try:
            self._tracker.flush()
            return float(self._tracker._total_energy.kWh) * KWH
        except Exception:
            return None

    def stop(self) -> list[Reading]:
        self._tracker.stop()
        d = self._tracker.final_emissions_data
        if d is None:
            raise MeterUnavailable("codecarbon returned no data")
        samples = int(getattr(self._tracker, "_measure_occurrence", 0) or max(1, round(d.duration / self.interval_s)))
        cpu_method, cpu_est = _cpu_method(self._tracker)
        out = [
            Reading(self.name, "cpu", cpu_method, d.cpu_energy * KWH, self.interval_s, samples, cpu_est),
            Reading(self.name, "ram-model", "codecarbon-ram-model", d.ram_energy * KWH, self.interval_s, samples, True),
        ]
        if d.gpu_count and d.gpu_energy:
            out.append(Reading(self.name, "gpu", "codecarbon-nvml", d.gpu_energy * KWH, self.interval_s, samples, False))
        return out

    def close(self) -> None:
        try:
            self._tracker.stop()
        except Exception:
            pass
