"""NVIDIA GPU energy from NVML's total-energy counter (the lean path: no helper process).

``nvmlDeviceGetTotalEnergyConsumption`` returns millijoules since the driver was loaded (Volta
and newer); a window's energy is the counter difference, summed over the GPUs the job can see.
GPUs older than Volta have no such counter: the meter is then unavailable (zeus integrates
power samples for them). MIG instances share the counter of their physical GPU with other
tenants, so they are refused too.

Which GPUs: those in ``CUDA_VISIBLE_DEVICES`` (what Slurm and HTCondor give the job: indices or
``GPU-<uuid>`` prefixes), else every GPU. Indices are taken as NVML indices, which matches CUDA's
numbering when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (set by the schedulers we target; NVML always
enumerates by PCI bus id).
"""

from __future__ import annotations

import os

from .base import MeterUnavailable
from .counter import CounterMeter


def _nvml():
    try:
        import pynvml
    except Exception as e:  # noqa: BLE001
        raise MeterUnavailable(f"pynvml (nvidia-ml-py) cannot be imported: {e}") from e
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise MeterUnavailable(f"NVML is not available on this host (no NVIDIA driver?): {e}") from e
    return pynvml


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def visible_gpus(env: dict[str, str] | None = None) -> list[int]:
    """NVML indices of the GPUs this job can see (CUDA_VISIBLE_DEVICES), [] if none.

    Raises MeterUnavailable when NVML is absent or a visible device cannot be resolved.
    """
    env = os.environ if env is None else env
    nv = _nvml()
    n = nv.nvmlDeviceGetCount()
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return list(range(n))
    out: list[int] = []
    uuids = None
    for tok in (t.strip() for t in cvd.split(",")):
        if not tok:
            continue
        if tok.startswith("MIG-"):
            raise MeterUnavailable(
                f"CUDA_VISIBLE_DEVICES names a MIG instance ({tok}): NVML energy counters belong to the "
                "whole GPU, shared with other MIG tenants, so they cannot measure this job"
            )
        if tok.lstrip("-").isdigit():
            i = int(tok)
            if i < 0:
                break  # CUDA stops at the first invalid index
            if i >= n:
                raise MeterUnavailable(f"CUDA_VISIBLE_DEVICES={cvd}: GPU {i} does not exist (NVML sees {n})")
            out.append(i)
            continue
        if uuids is None:
            uuids = [_s(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in range(n)]
        hits = [i for i, u in enumerate(uuids) if u.startswith(tok)]
        if len(hits) != 1:
            raise MeterUnavailable(f"CUDA_VISIBLE_DEVICES={cvd}: {tok!r} matches {len(hits)} GPU UUID(s), expected 1")
        out.append(hits[0])
    return out


class NvmlMeter(CounterMeter):
    name = "nvml"
    methods = {"gpu": "nvml"}

    def __init__(self, gpu_indices: list[int], interval_s: float = 0.1):
        super().__init__(interval_s)
        if not gpu_indices:
            raise MeterUnavailable("no GPU visible to the job")
        nv = _nvml()
        self._nv = nv
        self.gpu_indices = list(gpu_indices)
        self._handles = {}
        for i in self.gpu_indices:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            try:
                nv.nvmlDeviceGetTotalEnergyConsumption(h)
            except Exception as e:  # noqa: BLE001 - NVMLError_NotSupported on pre-Volta GPUs
                raise MeterUnavailable(
                    f"GPU {i} ({_s(nv.nvmlDeviceGetName(h))}) has no NVML total-energy counter "
                    f"(pre-Volta?): {e}. Use meter zeus (integrates power samples) or codecarbon"
                ) from e
            self._handles[f"gpu:{i}"] = h

    def _read(self) -> dict[str, float]:
        get = self._nv.nvmlDeviceGetTotalEnergyConsumption
        return {k: get(h) / 1000.0 for k, h in self._handles.items()}

    def components(self) -> tuple[str, ...]:
        return ("gpu",)
