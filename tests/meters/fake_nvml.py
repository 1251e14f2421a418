"""A fake pynvml module (NVML cannot exist in CI): GPUs with settable energy counters."""

from __future__ import annotations

import types


class NVMLError(Exception):
    pass


def make(gpus: list[dict], driver_ok: bool = True) -> types.ModuleType:
    """gpus: [{"uuid": "GPU-...", "name": "...", "energy_mj": int, "counter": bool, "minor": int}] (settable later).

    "minor" is the device number (/dev/nvidia<minor>, what Slurm's SLURM_JOB_GPUS lists); default: the index."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.gpus = gpus
    m.calls = {"energy": 0}

    def nvmlInit():
        if not driver_ok:
            raise NVMLError("Driver Not Loaded")

    def handle(i):
        if not 0 <= i < len(gpus):
            raise NVMLError("Invalid Argument")
        return gpus[i]

    def energy(h):
        if not h.get("counter", True):
            raise NVMLError("Not Supported")
        m.calls["energy"] += 1
        return h["energy_mj"]

    m.nvmlInit = nvmlInit
    m.nvmlDeviceGetCount = lambda: len(gpus)
    m.nvmlDeviceGetHandleByIndex = handle
    m.nvmlDeviceGetUUID = lambda h: h["uuid"]
    m.nvmlDeviceGetMinorNumber = lambda h: h.get("minor", next(i for i, g in enumerate(gpus) if g is h))
    m.nvmlDeviceGetName = lambda h: h.get("name", "Fake GPU")
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlSystemGetDriverVersion = lambda: "570.1"
    m.nvmlSystemGetCudaDriverVersion = lambda: 12080
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 300000
    return m
