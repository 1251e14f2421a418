"""What a run ran on: host, accelerator, software versions, scheduler.

Every function returns a dict of result-schema columns and never raises: a probe that cannot
read something leaves the column null.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


@lru_cache(maxsize=1)
def cpu_model() -> str | None:
    txt = _read("/proc/cpuinfo") or ""
    for line in txt.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


@lru_cache(maxsize=1)
def cpu_sockets() -> int | None:
    """Distinct 'physical id' values of /proc/cpuinfo (CPU packages); None if not listed."""
    ids = set()
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("physical id"):
            ids.add(line.split(":", 1)[1].strip())
    return len(ids) or None


def _cpu_max_mhz() -> float | None:
    import psutil

    try:
        f = psutil.cpu_freq()
    except Exception:  # noqa: BLE001 - not exposed in some VMs/containers
        return None
    return float(f.max) if f is not None and f.max else None


def host() -> dict[str, Any]:
    import psutil

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_sockets": cpu_sockets(),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_max_mhz": _cpu_max_mhz(),
        "cpu_affinity": affinity,
        "memory_total_bytes": psutil.virtual_memory().total,
    }


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def software() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def v(pkg: str) -> str | None:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return None

    import numpy
    import torch

    from . import __version__

    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "codecarbon_version": v("codecarbon") if "codecarbon" in sys.modules else None,
        "zeus_version": v("zeus") if "zeus" in sys.modules else None,
        "joulegrid_version": __version__,
        "joulegrid_git_commit": git_commit(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "mkl_num_threads": os.environ.get("MKL_NUM_THREADS"),
    }


def accelerator() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"gpu_count": 0, "cuda_version": torch.version.cuda}
    if not torch.cuda.is_available():
        return out
    out["gpu_count"] = torch.cuda.device_count()
    out["gpu_model"] = torch.cuda.get_device_name(0)
    try:
        out["gpu_memory_bytes"] = int(torch.cuda.get_device_properties(0).total_memory)
    except Exception:  # noqa: BLE001
        pass
    try:
        v = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        out["cudnn_version"] = str(v) if v else None
    except Exception:  # noqa: BLE001
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        drv = pynvml.nvmlSystemGetDriverVersion()
        out["gpu_driver_version"] = drv.decode() if isinstance(drv, bytes) else drv
        cv = int(pynvml.nvmlSystemGetCudaDriverVersion())  # e.g. 12080 -> "12.8"
        out["gpu_cuda_driver_version"] = f"{cv // 1000}.{(cv % 1000) // 10}"
        # GPU 0 of the job = the first GPU in CUDA_VISIBLE_DEVICES (NVML numbering)
        from .meters.nvml import visible_gpus

        ids = visible_gpus()
        h = pynvml.nvmlDeviceGetHandleByIndex(ids[0] if ids else 0)
        out["gpu_power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
    except Exception:  # noqa: BLE001 - no NVML: leave the columns null
        pass
    return out


def _parse_slurm_time(s: str | None) -> datetime | None:
    if not s or s in ("Unknown", "None", "N/A"):
        return None
    try:
        # scontrol prints local time without zone
        return datetime.fromisoformat(s).astimezone(timezone.utc)
    except ValueError:
        return None


def _scontrol_job(job_id: str) -> dict[str, str]:
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=15
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = {}
    for tok in out.split():
        k, sep, v = tok.partition("=")
        if sep:
            fields[k] = v
    return fields


def _condor_ad(path: str) -> dict[str, str]:
    ad = {}
    for line in (_read(path) or "").splitlines():
        k, sep, v = line.partition(" = ")
        if sep:
            ad[k.strip()] = v.strip().strip('"')
    return ad


def _int(v: Any) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def scheduler(threads: int | None = None) -> dict[str, Any]:
    """Scheduler metadata of the current job (local when no scheduler env is present)."""
    env = os.environ
    if env.get("SLURM_JOB_ID"):
        jid = env["SLURM_JOB_ID"]
        job = _scontrol_job(jid)
        submit = _parse_slurm_time(job.get("SubmitTime"))
        start = _parse_slurm_time(job.get("StartTime"))
        mem = job.get("MinMemoryNode") or job.get("mem")
        mem_mb = None
        if mem:
            num = _int(mem.rstrip("MGTK"))
            mult = {"G": 1024, "T": 1024 * 1024, "K": 1 / 1024}.get(mem[-1], 1)
            mem_mb = int(num * mult) if num is not None else None
        gres = job.get("TresPerNode") or job.get("Gres") or ""
        gpus = None
        if "gpu" in gres:
            gpus = _int(gres.rsplit(":", 1)[-1]) or 1
        return {
            "scheduler": "slurm",
            "job_id": jid,
            "node_name": env.get("SLURMD_NODENAME") or job.get("NodeList"),
            "partition": env.get("SLURM_JOB_PARTITION") or job.get("Partition"),
            "submit_time": submit,
            "job_start_time": start,
            "queue_wait_s": (start - submit).total_seconds() if submit and start else None,
            "alloc_cpus": _int(env.get("SLURM_CPUS_PER_TASK") or job.get("NumCPUs")),
            "alloc_mem_mb": mem_mb,
            "alloc_gpus": gpus or 0,
        }
    if env.get("_CONDOR_JOB_AD"):
        ad = _condor_ad(env["_CONDOR_JOB_AD"])
        q = _int(ad.get("QDate"))
        s = _int(ad.get("JobCurrentStartDate") or ad.get("JobStartDate"))
        submit = datetime.fromtimestamp(q, timezone.utc) if q else None
        start = datetime.fromtimestamp(s, timezone.utc) if s else None
        cluster, proc = ad.get("ClusterId"), ad.get("ProcId")
        return {
            "scheduler": "htcondor",
            "job_id": f"{cluster}.{proc}" if cluster else None,
            "node_name": (ad.get("RemoteHost") or ad.get("LastRemoteHost") or socket.gethostname()).split("@")[-1],
            "partition": ad.get("AccountingGroup") or ad.get("GlobalJobId", "").split("#")[0] or None,
            "submit_time": submit,
            "job_start_time": start,
            "queue_wait_s": float(s - q) if q and s else None,
            "alloc_cpus": _int(ad.get("RequestCpus")),
            "alloc_mem_mb": _int(ad.get("RequestMemory")),
            "alloc_gpus": _int(ad.get("RequestGPUs")) or 0,
        }
    return {
        "scheduler": "local",
        "job_id": None,
        "node_name": socket.gethostname(),
        "alloc_cpus": threads,
    }
