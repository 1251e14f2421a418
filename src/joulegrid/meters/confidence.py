"""How far a window's energy can be off because of HOW its meters read it: the relative error of each
chosen reading from its meter's update interval and resolution against the window, their sum
(``energy_rel_err``), and the low-confidence flag above ``measure.energy_max_rel_err``
(docs/measurement.md, "Sampling and low confidence").

Per method (the way a reading was obtained; ``Reading.method``), for a window of T seconds and energy E:

- a hardware energy COUNTER read at the window's edges (rapl, zeus-rapl, codecarbon-rapl; nvml, zeus-nvml,
  codecarbon-nvml): the counter advances in steps of its update interval u, so each edge can be off by up to
  one update's energy, P x u; with P = E / T the bound is 2 u / T, plus one resolution step r at each edge,
  2 r / E. RAPL updates about every millisecond (Intel SDM Vol. 3B, 15.10.3: "approximately 1 ms"; energy unit
  2^-16 J = 15.3 uJ on most parts), NVML's energy counter about every 100 ms (mJ resolution). On A100 and H100
  the power sensor behind NVML samples only 25 ms of every 100 ms (Yang, Adamek, Armour, "Accurate and
  Convenient Energy Measurements for GPUs", SC24 / arXiv:2312.02741): the other 75 % are extrapolated. For a
  load whose power varies inside one update period by a relative amount c, the error of one period's energy
  is about c sqrt((1 - f) / f) (f = the sampled fraction), and over N = T / u independent periods it averages
  down as 1 / sqrt(N). joulegrid ASSUMES c = 0.1 (a steady training or inference loop; a stated assumption
  until docs/gpu-validation.md measures it);
- power SAMPLES integrated by a library (zeus on pre-Volta GPUs: its power poller): one sample interval of power
  at each edge, 2 u / T;
- a MODEL integrating the node's busy CPU time (the estimate meter: estimate-tdp, model-calibrated): the CPU
  time is exact up to /proc/stat's tick (USER_HZ: 10 ms per logical CPU), so each edge can be off by one tick
  per CPU: the dynamic part W x B of the energy by 2 N tick / B. The model's OWN error (is W right for this
  CPU?) is not a reading error: it is said by ``energy_estimated`` and the calibration columns;
- a constant-power model integrated over the window (codecarbon's RAM model): exact up to the clocks, 0. Its
  own error is the model's (``energy_estimated``);
- anything else (codecarbon's CPU load models, an unknown method): one sampling interval of the meter over the
  window, u / T.

The relative error of a job reading is its node reading's (the split is linear in the node energy);
``energy_rel_err`` = sum of |relative error| x energy of each chosen job reading / energy_j (errors of the
parts added linearly: a bound, not a standard deviation).

Pure Python.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Reading

RAPL_UPDATE_S = 1e-3  # RAPL's energy status counters update about every millisecond
RAPL_UNIT_J = 2.0**-16  # 15.3 uJ: the energy unit of most Intel and AMD parts
NVML_UPDATE_S = 0.1  # NVML's power / energy readings update about every 100 ms
NVML_UNIT_J = 1e-3  # nvmlDeviceGetTotalEnergyConsumption counts millijoules
#: GPU models whose power sensor samples only part of each update period (the fraction sampled)
NVML_PARTIAL_SAMPLING = {"A100": 0.25, "H100": 0.25}
NVML_ASSUMED_CV = 0.1  # assumed relative power variation inside one update period (c above)
ZEUS_SAMPLE_S = 0.1  # zeus' power poller on pre-Volta GPUs (NVML power updates)
PROC_TICK_S = 0.01  # /proc/stat counts CPU time in ticks of 1/USER_HZ = 10 ms

COUNTERS = {
    "rapl": ("RAPL counter", RAPL_UPDATE_S, RAPL_UNIT_J),
    "zeus-rapl": ("RAPL counter", RAPL_UPDATE_S, RAPL_UNIT_J),
    "codecarbon-rapl": ("RAPL counter", RAPL_UPDATE_S, RAPL_UNIT_J),
    "nvml": ("NVML counter", NVML_UPDATE_S, NVML_UNIT_J),
    "zeus-nvml": ("NVML counter", NVML_UPDATE_S, NVML_UNIT_J),
    "codecarbon-nvml": ("NVML counter", NVML_UPDATE_S, NVML_UNIT_J),
}
CPU_TIME_MODELS = ("estimate-tdp", "model-calibrated")
CONSTANT_MODELS = ("codecarbon-ram-model",)


def partial_sampling(gpu_model: str | None) -> float | None:
    """The fraction of each update period the GPU's power sensor samples (NVML_PARTIAL_SAMPLING), else None."""
    for name, f in NVML_PARTIAL_SAMPLING.items():
        if gpu_model and name in gpu_model.upper():
            return f
    return None


def reading_error(
    r: Reading,
    window_s: float,
    *,
    n_cpus: int | None = None,
    busy_cpu_s: float | None = None,
    gpu_model: str | None = None,
) -> tuple[float, str]:
    """(relative error, how it was obtained) of a node/device reading ``r`` over a window of ``window_s`` s.

    n_cpus, busy_cpu_s: the node's logical CPUs and busy CPU time in the window (CPU-time models);
    gpu_model: the job's GPU model (partial sampling of A100/H100)."""
    t = float(window_s or 0.0)
    e = abs(float(r.energy_j))
    if t <= 0:
        return math.inf, f"{r.meter}: no window"
    if r.method in COUNTERS:
        what, u, unit = COUNTERS[r.method]
        rel = 2 * u / t + (2 * unit / e if e > 0 else math.inf)
        why = f"{r.meter}: one {u:g}-s {what} update at each edge of a {t:.3g}-s window"
        f = partial_sampling(gpu_model) if r.component == "gpu" else None
        if f is not None:
            rel += NVML_ASSUMED_CV * math.sqrt((1 - f) / f) / math.sqrt(max(t / u, 1.0))
            why += f", and {gpu_model} sampling {f:.0%} of each update (assumed {NVML_ASSUMED_CV:.0%} variation)"
        return rel, why
    if r.method == "zeus-nvml-power-samples":
        return (
            2 * ZEUS_SAMPLE_S / t,
            f"{r.meter}: one {ZEUS_SAMPLE_S:g}-s power sample at each edge of a {t:.3g}-s window",
        )
    if r.method in CPU_TIME_MODELS:
        if not n_cpus or not busy_cpu_s or busy_cpu_s <= 0 or e <= 0:
            return 0.0, f"{r.meter}: CPU time of an idle window (the model's static part only)"
        static = min((r.p0_w or 0.0) * t, e)
        dynamic_share = (e - static) / e
        rel = 2 * n_cpus * PROC_TICK_S / busy_cpu_s * dynamic_share
        return rel, f"{r.meter}: one {PROC_TICK_S:g}-s /proc/stat tick per CPU at each edge ({n_cpus} CPUs)"
    if r.method in CONSTANT_MODELS:
        return 0.0, f"{r.meter}: a constant-power model integrated over the window"
    u = float(r.interval_s or 0.0)
    return u / t, f"{r.meter}: one {u:g}-s sample of a {t:.3g}-s window"


def columns(
    chosen: list[tuple[Reading, Reading | None]],
    window_s: float | None,
    bound: float,
    *,
    n_cpus: int | None = None,
    busy_cpu_s: float | None = None,
    gpu_model: str | None = None,
) -> dict[str, Any]:
    """energy_rel_err, energy_low_confidence and energy_low_confidence_reason of a window from its chosen
    (job reading, the node/device reading it was split from) pairs; the bound is measure.energy_max_rel_err."""
    if not chosen or not window_s:
        return {}
    total = sum(abs(j.energy_j) for j, _ in chosen)
    parts = []
    for job, node in chosen:
        rel, why = reading_error(node or job, window_s, n_cpus=n_cpus, busy_cpu_s=busy_cpu_s, gpu_model=gpu_model)
        parts.append((rel * abs(job.energy_j), rel, why))
    if total > 0:
        err = sum(p[0] for p in parts if math.isfinite(p[0])) / total
        if any(not math.isfinite(p[0]) for p in parts):
            err = math.inf
    else:
        err = math.inf
    low = err > bound
    reason = None
    if low:
        worst = sorted(parts, key=lambda p: -p[0] if math.isfinite(p[0]) else -math.inf)
        shown = "; ".join(f"{why}: {rel:.2%}" for _, rel, why in worst if rel > 0)
        reason = f"{err:.2%} > bound {bound:.2%} (measure.energy_max_rel_err): {shown}"
    return {
        "energy_rel_err": err if math.isfinite(err) else None,
        "energy_low_confidence": low,
        "energy_low_confidence_reason": reason if math.isfinite(err) else "no energy in the window: no error known",
    }
