"""NVIDIA GPU energy from NVML's total-energy counter (the lean path: no helper process).

``nvmlDeviceGetTotalEnergyConsumption`` returns millijoules since the driver was loaded (Volta
and newer); a window's energy is the counter difference, summed over the GPUs the JOB holds.
GPUs older than Volta have no such counter: the meter is then unavailable (zeus integrates
power samples for them). MIG instances share the counter of their physical GPU with other
tenants, so they are refused too.

Which GPUs (``job_gpus``): a CUDA index is NOT an NVML index (CUDA numbers the devices it was
given, fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; schedulers renumber them), so the
job's devices are resolved to NVML devices by what identifies them physically, in this order:

1. Slurm ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``: the real device ids (``/dev/nvidia<N>``), matched
   with ``nvmlDeviceGetMinorNumber``;
2. HTCondor ``_CONDOR_AssignedGPUs``: ``GPU-<uuid prefix>`` matched by UUID (``CUDA<N>``: device N in
   NVML's PCI order); ``10000`` means no GPU was requested;
3. ``CUDA_VISIBLE_DEVICES``: ``GPU-<uuid prefix>`` entries by UUID; integer entries as NVML (PCI)
   indices, which is right when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or all GPUs are one model (CUDA then
   breaks its fastest-first ties by PCI bus id) and refused otherwise; ``""``, ``-1`` and ``10000``
   mean no GPU; unset = every GPU of the host (a workstation).
"""

from __future__ import annotations

import os

from .base import MeterUnavailable
from .counter import CounterMeter


def _nvml():
    try:
        import pynvml
    except Exception as e:
        raise MeterUnavailable(f"pynvml (nvidia-ml-py) cannot be imported: {e}") from e
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise MeterUnavailable(f"NVML is not available on this host (no NVIDIA driver?): {e}") from e
    return pynvml


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


NO_GPU = ("", "-1", "10000", "NoDevFiles")  # CUDA_VISIBLE_DEVICES / _CONDOR_AssignedGPUs values meaning "none"


def _by_uuid(nv, n: int, tok: str, where: str, cache: list) -> int:
    if not cache:
        cache.extend(_s(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in range(n))
    hits = [i for i, u in enumerate(cache) if u.startswith(tok)]
    if len(hits) != 1:
        raise MeterUnavailable(f"{where}: {tok!r} matches {len(hits)} GPU UUID(s), expected 1")
    return hits[0]


def _mig(tok: str, where: str) -> None:
    if tok.startswith("MIG-"):
        raise MeterUnavailable(
            f"{where} names a MIG instance ({tok}): NVML energy counters belong to the "
            "whole GPU, shared with other MIG tenants, so they cannot measure this job"
        )


def job_gpus(env: dict[str, str] | None = None) -> list[int]:
    """NVML indices of the GPUs this job holds (see the module doc for the order), [] if none.

    Raises MeterUnavailable when NVML is absent or a device of the job cannot be resolved.
    """
    env = os.environ if env is None else env
    nv = _nvml()
    n = nv.nvmlDeviceGetCount()
    uuids: list[str] = []
    slurm = env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS")
    if slurm and slurm.strip() not in NO_GPU:
        minors = {}
        for i in range(n):
            try:
                minors[int(nv.nvmlDeviceGetMinorNumber(nv.nvmlDeviceGetHandleByIndex(i)))] = i
            except Exception:  # noqa: BLE001 - NotSupported (e.g. Windows): fall through to the others
                minors = {}
                break
        if minors:
            out = []
            for tok in (t.strip() for t in slurm.split(",") if t.strip()):
                if not tok.isdigit() or int(tok) not in minors:
                    raise MeterUnavailable(
                        f"SLURM_JOB_GPUS={slurm}: no GPU with device number {tok} (/dev/nvidia{tok}) on this node"
                    )
                out.append(minors[int(tok)])
            return out
    condor = env.get("_CONDOR_AssignedGPUs")
    if condor is not None:
        out = []
        for tok in (t.strip() for t in condor.split(",")):
            if tok in NO_GPU:
                continue
            _mig(tok, f"_CONDOR_AssignedGPUs={condor}")
            if tok.startswith("CUDA") and tok[4:].isdigit() and int(tok[4:]) < n:
                out.append(int(tok[4:]))
            else:
                out.append(_by_uuid(nv, n, tok, f"_CONDOR_AssignedGPUs={condor}", uuids))
        return out
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return list(range(n))
    out: list[int] = []
    where = f"CUDA_VISIBLE_DEVICES={cvd}"
    for tok in (t.strip() for t in cvd.split(",")):
        if tok in NO_GPU:
            break  # CUDA stops at the first invalid entry
        _mig(tok, where)
        if tok.lstrip("-").isdigit():
            i = int(tok)
            if i < 0:
                break  # CUDA stops at the first invalid index
            if i >= n:
                raise MeterUnavailable(f"{where}: GPU {i} does not exist (NVML sees {n})")
            if env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
                names = {_s(nv.nvmlDeviceGetName(nv.nvmlDeviceGetHandleByIndex(k))) for k in range(n)}
                if len(names) > 1:
                    raise MeterUnavailable(
                        f"{where}: CUDA numbers this node's {len(names)} GPU models fastest first, NVML by PCI bus, "
                        f"so index {i} cannot be matched to a device. Fix: set CUDA_DEVICE_ORDER=PCI_BUS_ID, "
                        "or give GPU-<uuid> entries"
                    )
            out.append(i)
            continue
        out.append(_by_uuid(nv, n, tok, where, uuids))
    return out


def gpu_uuids(indices: list[int]) -> list[str]:
    """UUIDs of NVML devices (what the row records as the job's GPUs)."""
    nv = _nvml()
    return [_s(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in indices]


class NvmlMeter(CounterMeter):
    name = "nvml"
    methods = {"gpu": "nvml"}
    scopes = {"gpu": "device"}

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
            except Exception as e:  # NVMLError_NotSupported on pre-Volta GPUs
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

    def clone(self) -> NvmlMeter:
        return NvmlMeter(self.gpu_indices, self.interval_s)
