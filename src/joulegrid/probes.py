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
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


# CPU features that decide whether a reduced precision runs natively (joulegrid.precision.native)
# and which int8 kernels are fastest (joulegrid.precision.choose_int8): x86 flags of /proc/cpuinfo
# "flags", Arm features of its "Features" line (asimddp: int8 dot product, i8mm: int8 matrix
# multiply, bf16, asimdhp: fp16 arithmetic). Recorded per row in cpu_flags (those present).
CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
    "asimddp",
    "i8mm",
    "bf16",
    "asimdhp",
)


def parse_cpu_flags(cpuinfo: str) -> frozenset[str] | None:
    """The CPU_FLAGS present in a /proc/cpuinfo text (first 'flags' / 'Features' line); None if it has neither line."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(f for f in value.split() if f in CPU_FLAGS)
    return None


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """CPU_FLAGS this host's CPU has (cached); None where /proc/cpuinfo lists no flags (unknown)."""
    return parse_cpu_flags(_read("/proc/cpuinfo") or "")


def flags_column(flags: frozenset[str] | None) -> str | None:
    """The cpu_flags column: the CPU_FLAGS present, comma-separated in CPU_FLAGS order ('' = none of them)."""
    return None if flags is None else ",".join(f for f in CPU_FLAGS if f in flags)


def cpu_arch() -> str:
    """Machine architecture: x86_64, aarch64, ... (platform.machine(), lower case)."""
    return (platform.machine() or "").lower()


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
        "cpu_flags": flags_column(cpu_flags()),
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
            capture_output=True,
            text=True,
            timeout=5,
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
        out["gpu_compute_capability"] = "{}.{}".format(*torch.cuda.get_device_capability(0))
    except Exception:  # noqa: BLE001 - an optional fact: unknown on a failing driver call
        pass
    try:
        out["gpu_memory_bytes"] = int(torch.cuda.get_device_properties(0).total_memory)
    except Exception:  # noqa: BLE001 - an optional fact: unknown on a failing driver call
        pass
    try:
        v = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        out["cudnn_version"] = str(v) if v else None
    except Exception:  # noqa: BLE001 - an optional fact: unknown on a failing driver call
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        drv = pynvml.nvmlSystemGetDriverVersion()
        out["gpu_driver_version"] = drv.decode() if isinstance(drv, bytes) else drv
        cv = int(pynvml.nvmlSystemGetCudaDriverVersion())  # e.g. 12080 -> "12.8"
        out["gpu_cuda_driver_version"] = f"{cv // 1000}.{(cv % 1000) // 10}"
        # GPU 0 of the job = the first GPU in CUDA_VISIBLE_DEVICES (NVML numbering)
        from .meters.nvml import job_gpus

        ids = job_gpus()
        h = pynvml.nvmlDeviceGetHandleByIndex(ids[0] if ids else 0)
        out["gpu_power_limit_w"] = pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
    except Exception:  # noqa: BLE001 - no NVML: leave the columns null
        pass
    return out


# ---------------------------------------------------------------- memory
def peak_rss_bytes() -> int | None:
    """The process's peak resident memory so far (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except Exception:  # noqa: BLE001 - no peak known: the column stays null
        return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryPeaks:
    """Peak memory of a cell: the whole job's RSS and the measured window's (RSS peak reset just before
    it; on cuda, torch's allocator peaks reset too)."""

    def __init__(self, device: str):
        self.device = device
        self._job = 0  # the job's peak RSS before the last reset
        self._reset = False

    def _cuda(self):
        """torch.cuda, in a cuda cell where it is available; else None."""
        if self.device != "cuda":
            return None
        import torch

        return torch.cuda if torch.cuda.is_available() else None

    def start_window(self) -> None:
        self._job = max(self._job, peak_rss_bytes() or 0)
        self._reset = reset_peak_rss()
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()

    def window_columns(self) -> dict[str, Any]:
        """peak_rss_window_bytes (null where the peak could not be reset) and, on cuda, the device's peaks."""
        hwm = peak_rss_bytes()
        self._job = max(self._job, hwm or 0)
        cols: dict[str, Any] = {"peak_rss_window_bytes": hwm if self._reset else None}
        cuda = self._cuda()
        if cuda is not None:
            cols["peak_device_mem_allocated_bytes"] = cuda.max_memory_allocated()
            cols["peak_device_mem_reserved_bytes"] = cuda.max_memory_reserved()
        return cols

    def job_peak(self) -> int | None:
        """The whole job's peak RSS (peak_rss_bytes), windows included."""
        return max(self._job, peak_rss_bytes() or 0) or None


# ---------------------------------------------------------------- scheduler
# Each scheduler probe reads what the scheduler itself says about the running job:
#   Slurm:    `scontrol show job -o $SLURM_JOB_ID` (SubmitTime, StartTime, TRES = what was
#             allocated), with the SLURM_* environment as fallback;
#   HTCondor: the job ClassAd in $_CONDOR_JOB_AD (QDate, JobCurrentStartDate, *Provisioned =
#             what the slot really got) and the slot's machine ad in $_CONDOR_MACHINE_AD;
#   local:    no queue; "allocated" CPUs are the threads Snakemake gave the job.


def _parse_slurm_time(s: str | None) -> datetime | None:
    """scontrol's SubmitTime/StartTime: ISO local time without zone, 1 s resolution."""
    if not s or s in ("Unknown", "None", "N/A", "(null)"):
        return None
    try:
        return datetime.fromisoformat(s).astimezone(UTC)
    except ValueError:
        return None


def _scontrol_job(job_id: str) -> dict[str, str]:
    """`scontrol show job -o ID` as a dict ({} if scontrol is missing or fails)."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=15
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields: dict[str, str] = {}
    for tok in out.split():
        k, sep, v = tok.partition("=")
        if sep and k not in fields:  # first occurrence (the job, not a later pack member)
            fields[k] = v
    return fields


_MB_PER_UNIT = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def _slurm_mem_mb(v: str | None) -> int | None:
    """Slurm memory strings ('500M', '4G', '1.50T', '2000') -> MB."""
    if not v:
        return None
    v = v.strip()
    mult = _MB_PER_UNIT.get(v[-1].upper())
    num = v[:-1] if mult is not None else v
    try:
        return int(round(float(num) * (mult or 1)))
    except ValueError:
        return None


def _slurm_tres(tres: str | None) -> dict[str, str]:
    """'cpu=2,mem=500M,node=1,billing=2,gres/gpu=1' -> {'cpu': '2', 'mem': '500M', ...}."""
    out: dict[str, str] = {}
    for part in (tres or "").split(","):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _condor_ad(path: str | None) -> dict[str, str]:
    """A ClassAd file ('Key = value' lines) as a dict of strings, string quotes removed.

    ClassAd attribute names are case-insensitive (GpusProvisioned = GPUsProvisioned): keys are lower-cased.
    """
    ad: dict[str, str] = {}
    if not path:
        return ad
    for line in (_read(path) or "").splitlines():
        k, sep, v = line.partition(" = ")
        if sep:
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] == '"':
                v = v[1:-1]
            ad[k.strip().lower()] = v
    return ad


def _int(v: Any) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def _first_int(*vals: Any) -> int | None:
    for v in vals:
        i = _int(v)
        if i is not None:
            return i
    return None


def _utc(ts: int | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None


def _slurm(env: dict[str, str]) -> dict[str, Any]:
    jid = env["SLURM_JOB_ID"]
    job = _scontrol_job(jid)
    tres = _slurm_tres(job.get("TRES") or job.get("AllocTRES"))
    submit = _parse_slurm_time(job.get("SubmitTime"))
    start = _parse_slurm_time(job.get("StartTime"))
    gpus = _first_int(tres.get("gres/gpu"), env.get("SLURM_GPUS_ON_NODE"))
    if gpus is None:
        gres = job.get("TresPerNode") or job.get("TresPerJob") or job.get("Gres") or ""
        gpus = (_int(gres.rsplit(":", 1)[-1]) or 1) if "gpu" in gres else 0
    return {
        "scheduler": "slurm",
        "job_id": jid,
        "node_name": env.get("SLURMD_NODENAME") or job.get("BatchHost") or job.get("NodeList") or socket.gethostname(),
        "partition": env.get("SLURM_JOB_PARTITION") or job.get("Partition"),
        "submit_time": submit,
        "job_start_time": start,
        "queue_wait_s": (start - submit).total_seconds() if submit and start else None,
        # what Slurm allocated (may exceed the request, e.g. whole cores with SMT)
        "alloc_cpus": _first_int(
            tres.get("cpu"), env.get("SLURM_CPUS_ON_NODE"), env.get("SLURM_CPUS_PER_TASK"), job.get("NumCPUs")
        ),
        "alloc_mem_mb": _slurm_mem_mb(tres.get("mem"))
        or _int(env.get("SLURM_MEM_PER_NODE"))
        or _slurm_mem_mb(job.get("MinMemoryNode")),
        "alloc_gpus": gpus,
    }


def _htcondor(env: dict[str, str]) -> dict[str, Any]:
    ad = _condor_ad(env.get("_CONDOR_JOB_AD"))
    slot = _condor_ad(env.get("_CONDOR_MACHINE_AD"))
    q = _int(ad.get("qdate"))
    s = _int(ad.get("jobcurrentstartdate") or ad.get("jobstartdate"))
    cluster, proc = ad.get("clusterid"), ad.get("procid")
    remote = ad.get("remotehost") or slot.get("name") or ""
    return {
        "scheduler": "htcondor",
        "job_id": f"{cluster}.{proc or 0}" if cluster else None,
        "node_name": slot.get("machine") or (remote.split("@")[-1] if remote else None) or socket.gethostname(),
        # HTCondor has no partitions: the accounting group, else CERN's job flavour, names the share
        "partition": ad.get("accountinggroup") or ad.get("acctgroup") or ad.get("jobflavour"),
        "submit_time": _utc(q),
        "job_start_time": _utc(s),
        "queue_wait_s": float(s - q) if q and s else None,
        # *Provisioned = what the (partitionable) slot really got; Request* = what was asked
        "alloc_cpus": _first_int(ad.get("cpusprovisioned"), slot.get("cpus"), ad.get("requestcpus")),
        "alloc_mem_mb": _first_int(ad.get("memoryprovisioned"), slot.get("memory"), ad.get("requestmemory")),
        "alloc_gpus": _first_int(ad.get("gpusprovisioned"), slot.get("gpus"), ad.get("requestgpus")) or 0,
    }


def _is_condor(env: dict[str, str]) -> bool:
    return bool(env.get("_CONDOR_JOB_AD")) and Path(env["_CONDOR_JOB_AD"]).is_file()


def reservation(env: dict[str, str] | None = None) -> tuple[int | None, int | None, str | None]:
    """(CPUs, memory MB, scheduler) the job reserved on THIS node; (None, None, None) outside a job.

    Cheap (no scontrol): Slurm's SLURM_CPUS_ON_NODE and SLURM_MEM_PER_NODE (else SLURM_MEM_PER_CPU x
    CPUs); HTCondor's job ad (*Provisioned = what the slot got, else Request*) and slot ad. Energy
    attribution (joulegrid.meters.usage) splits idle power by these.
    """
    env = dict(os.environ if env is None else env)
    if _is_condor(env):
        ad = _condor_ad(env.get("_CONDOR_JOB_AD"))
        slot = _condor_ad(env.get("_CONDOR_MACHINE_AD"))
        cpus = _first_int(ad.get("cpusprovisioned"), slot.get("cpus"), ad.get("requestcpus"))
        mem = _first_int(ad.get("memoryprovisioned"), slot.get("memory"), ad.get("requestmemory"))
        return cpus, mem, "htcondor"
    if env.get("SLURM_JOB_ID"):
        cpus = _first_int(env.get("SLURM_CPUS_ON_NODE"))
        mem = _int(env.get("SLURM_MEM_PER_NODE"))
        if mem is None and env.get("SLURM_MEM_PER_CPU") and cpus:
            mem = _int(env["SLURM_MEM_PER_CPU"]) * cpus if _int(env["SLURM_MEM_PER_CPU"]) else None
        return cpus, mem, "slurm"
    return None, None, None


def scheduler(threads: int | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Scheduler metadata of the current job: slurm, htcondor, or local when neither is detected.

    HTCondor is checked first: its starter always sets _CONDOR_JOB_AD, while a job submitted with
    getenv=True from inside a Slurm allocation would also inherit SLURM_JOB_ID.
    """
    env = dict(os.environ if env is None else env)
    if _is_condor(env):
        kind, probe = "htcondor", _htcondor
    elif env.get("SLURM_JOB_ID"):
        kind, probe = "slurm", _slurm
    else:
        kind, probe = "local", None
    if probe is not None:
        try:
            return probe(env)
        except Exception:  # noqa: BLE001 - a probe never fails the run; the scheduler is still known
            return {
                "scheduler": kind,
                "job_id": env.get("SLURM_JOB_ID") if kind == "slurm" else None,
                "node_name": socket.gethostname(),
            }
    return {
        "scheduler": "local",
        "job_id": None,
        "node_name": socket.gethostname(),
        "alloc_cpus": threads,
    }


def _as_int(v: Any) -> int | None:
    return _int(v) if v not in (None, "") else None


@dataclass
class HostFacts:
    """What the probes found, by probe (each a dict of result columns): the host, the scheduler (with what it
    reserved), the accelerator, and the software (probed after the set-up's imports, with the real thread
    settings). ``columns()``: their columns for the row, with the threads check of the software's threads
    against the reservation."""

    host: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    accelerator: dict[str, Any] = field(default_factory=dict)
    software: dict[str, Any] = field(default_factory=dict)

    @property
    def hostname(self) -> str | None:
        return self.host.get("hostname")

    def columns(self) -> dict[str, Any]:
        cols = {**self.host, **self.scheduler, **self.accelerator, **self.software}
        if self.software:
            cols.update(threads_check(cols))  # torch threads vs allocation vs OMP/MKL
        return cols


def threads_check(row: dict[str, Any]) -> dict[str, Any]:
    """Do torch's intra-op threads, OMP/MKL_NUM_THREADS and the allocated CPUs agree?

    Timings across sites are only comparable when the job used what it was given: a job that
    runs 1 torch thread on 4 allocated CPUs, or 8 threads on 2 CPUs, says so here.
    Unknown (null) when torch threads or the allocation are not known.
    """
    torch_t = _as_int(row.get("torch_num_threads"))
    alloc = _as_int(row.get("alloc_cpus"))
    if torch_t is None or alloc is None:
        return {"threads_consistent": None, "threads_mismatch": None}
    vals = {"torch_num_threads": torch_t, "alloc_cpus": alloc}
    for k in ("omp_num_threads", "mkl_num_threads"):
        v = _as_int(row.get(k))
        if v is not None:
            vals[k] = v
    if len(set(vals.values())) == 1:
        return {"threads_consistent": True, "threads_mismatch": None}
    return {
        "threads_consistent": False,
        "threads_mismatch": ", ".join(f"{k}={v}" for k, v in vals.items()),
    }
