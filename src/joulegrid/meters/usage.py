"""Who used the node: node CPU time, the job's CPU time and memory, what the job reserved.

The energy meters measure a NODE (RAPL packages and DRAM, codecarbon's machine models) or a
DEVICE (one GPU). To say which part of that energy is the job's, ``joulegrid.meters.attribution``
needs, for the same window, read back to back with the meters (``JobUsage.snapshot``):

- the node's CPU time from ``<proc>/stat`` (first line, USER_HZ ticks): total
  ``T = user+nice+system+idle+iowait+irq+softirq+steal`` and busy ``B = user+nice+system+irq+softirq``.
  guest/guest_nice are already inside user/nice (not added twice); steal (time a VM's vCPU waited
  for its host) is never busy; iowait is idle time;
- the job's CPU time ``J``: its scheduler cgroup where the scheduler puts it in one (Slurm
  ``job_<id>``, an HTCondor slot; found from ``<proc>/self/cgroup``, v2 ``cpu.stat usage_usec`` or v1
  ``cpuacct.usage``: every process of the job, exited ones included), else its process tree
  (the job's top process and every descendant: user + system + the children_user/system of reaped
  children, so a child's time moves into its parent's exactly once when it exits);
- what the job reserved: CPUs ``A`` and memory, from the scheduler (``probes.reservation``), else
  the CPUs it may run on (``sched_getaffinity``) and no memory reservation;
- the job's memory ``M`` over the window: the reservation where there is one (the environment's, or
  the scheduler probe's: ``set_reservation``), else the job cgroup's ``memory.current`` /
  ``memory.usage_in_bytes``, else the tree's proportional set size (PSS, ``smaps_rollup``; RSS where
  PSS is not readable), read at window edges and inside windows (tracker.py) and time-averaged;
  ``MemTotal`` of ``<proc>/meminfo``.

``tracker.JobUsage`` reads all of it at every window edge and samples it in between. Pure Python
(psutil); every root (proc, cgroup) is configurable so that tests can use fake trees.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

PROC = "/proc"
CGROUP = "/sys/fs/cgroup"
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

# cgroup path components of a job: Slurm job_<id> (any step below it), HTCondor's slot cgroup
# (<execute dir with / -> _>_slot<N>[_<M>@host], under its BASE_CGROUP, 'htcondor' by default)
_SLURM_JOB = re.compile(r"^job_\d+$")
_CONDOR_SLOT = re.compile(r"^condor_.*slot\d+(_\d+)?(@.*)?$")


# ------------------------------------------------------------------ the node
@dataclass(frozen=True)
class NodeCpu:
    total_s: float  # T: all CPU time of the node's logical CPUs (CPU-seconds)
    busy_s: float  # B: user + nice + system + irq + softirq
    steal_s: float  # stolen by the hypervisor (VMs): not busy, part of T
    n_cpus: int  # logical CPUs (cpuN lines)


def read_node_cpu(proc_root: str | os.PathLike = PROC) -> NodeCpu:
    """The node's cumulative CPU time from <proc_root>/stat (CPU-seconds)."""
    lines = Path(proc_root, "stat").read_text().splitlines()
    head = lines[0].split()
    if head[0] != "cpu":
        raise ValueError(f"{Path(proc_root, 'stat')}: first line is not the 'cpu' total")
    v = [int(x) for x in head[1:]] + [0] * 10
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    n = sum(1 for ln in lines[1:] if ln.startswith("cpu") and ln[3:4].isdigit())
    total = user + nice + system + idle + iowait + irq + softirq + steal
    busy = user + nice + system + irq + softirq
    return NodeCpu(total / USER_HZ, busy / USER_HZ, steal / USER_HZ, n or (os.cpu_count() or 1))


def mem_total_bytes(proc_root: str | os.PathLike = PROC) -> int | None:
    try:
        for line in Path(proc_root, "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def node_mem_used_bytes(proc_root: str | os.PathLike = PROC) -> int | None:
    """The node's used memory, MemTotal - MemAvailable of <proc_root>/meminfo; None where either is missing."""
    total = avail = None
    try:
        for line in Path(proc_root, "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
            elif line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return total - avail if total is not None and avail is not None else None


def threads_per_core(sys_root: str | os.PathLike = "/sys/devices/system/cpu") -> int | None:
    """Hardware threads per core (2 with SMT/hyper-threading), from cpu0's thread_siblings_list."""
    try:
        txt = Path(sys_root, "cpu0", "topology", "thread_siblings_list").read_text().strip()
    except OSError:
        return None
    n = 0
    for part in txt.split(","):
        a, _, b = part.partition("-")
        n += (int(b) - int(a) + 1) if b else 1
    return n or None


# ------------------------------------------------------------------ the job's cgroup
@dataclass(frozen=True)
class JobCgroup:
    version: int  # 1 or 2
    cpu_file: Path  # v2 cpu.stat, v1 cpuacct.usage
    mem_file: Path | None  # v2 memory.current, v1 memory.usage_in_bytes
    path: str  # the job's cgroup path (as in /proc/self/cgroup, cut at the job)
    scheduler: str  # slurm or htcondor


def _job_part(path: str) -> tuple[str, str] | None:
    """(path cut at the job's own cgroup, scheduler) if `path` lies inside a job cgroup."""
    parts = [p for p in path.split("/") if p]
    for i, p in enumerate(parts):
        if _SLURM_JOB.match(p):
            return "/" + "/".join(parts[: i + 1]), "slurm"
        if _CONDOR_SLOT.match(p):
            return "/" + "/".join(parts[: i + 1]), "htcondor"
    return None


def find_job_cgroup(proc_root: str | os.PathLike = PROC, cgroup_root: str | os.PathLike = CGROUP) -> JobCgroup | None:
    """The scheduler cgroup of this process (from <proc_root>/self/cgroup), or None.

    Only a cgroup recognisably the JOB's is used (a Slurm job_<id> or an HTCondor slot): a
    container's or a login session's cgroup, or the root, would count other processes as the job's.
    cgroup v1 cpuacct is preferred where both hierarchies list the job (hybrid mounts).
    """
    try:
        lines = Path(proc_root, "self", "cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path(cgroup_root)
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in lines:
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        if hid == "0" and ctrls == "":
            v2 = path
        else:
            for c in ctrls.split(","):
                v1[c] = path
    if "cpuacct" in v1:
        job = _job_part(v1["cpuacct"])
        if job:
            for mount in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
                f = root / mount / job[0].lstrip("/") / "cpuacct.usage"
                if f.is_file():
                    mem = None
                    if "memory" in v1 and _job_part(v1["memory"]):
                        m = root / "memory" / _job_part(v1["memory"])[0].lstrip("/") / "memory.usage_in_bytes"
                        mem = m if m.is_file() else None
                    return JobCgroup(1, f, mem, job[0], job[1])
    if v2 is not None:
        job = _job_part(v2)
        if job:
            d = root / job[0].lstrip("/")
            if not (d / "cpu.stat").is_file() and (root / "unified" / job[0].lstrip("/") / "cpu.stat").is_file():
                d = root / "unified" / job[0].lstrip("/")  # hybrid: v2 mounted at <root>/unified
            if (d / "cpu.stat").is_file():
                mem = d / "memory.current"
                return JobCgroup(2, d / "cpu.stat", mem if mem.is_file() else None, job[0], job[1])
    return None


def _cgroup_cpu_s(cg: JobCgroup) -> float:
    if cg.version == 2:
        for line in cg.cpu_file.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == "usage_usec":
                return int(v) / 1e6
        raise ValueError(f"{cg.cpu_file}: no usage_usec")
    return int(cg.cpu_file.read_text().strip()) / 1e9


# ------------------------------------------------------------------ the job's process tree
def _stat_times(proc_root: str, pid: int) -> int:
    """utime + stime + cutime + cstime of one process, in ticks (0 if it is gone)."""
    try:
        raw = Path(proc_root, str(pid), "stat").read_bytes()
    except OSError:
        return 0
    f = raw[raw.rindex(b")") + 2 :].split()
    return int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # fields 14-17 of proc(5)


def _children(proc_root: str, pid: int) -> list[int] | None:
    """Children of pid from /proc/<pid>/task/*/children (None where the kernel lacks the file)."""
    try:
        tids = os.listdir(Path(proc_root, str(pid), "task"))
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            txt = Path(proc_root, str(pid), "task", tid, "children").read_text()
        except FileNotFoundError:
            return None if tid == str(pid) else out
        except OSError:
            continue
        out.extend(int(c) for c in txt.split())
    return out


def tree_pids(root_pid: int, proc_root: str | os.PathLike = PROC) -> list[int]:
    """root_pid and every live descendant."""
    proc_root = str(proc_root)
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        kids = _children(proc_root, pid)
        if kids is None:  # no task/<tid>/children (CONFIG_PROC_CHILDREN off): ask psutil
            import psutil

            try:
                return [root_pid] + [c.pid for c in psutil.Process(root_pid).children(recursive=True)]
            except psutil.Error:
                return out
        todo.extend(kids)
    return out


def tree_cpu_s(root_pid: int, proc_root: str | os.PathLike = PROC) -> float:
    """CPU seconds of a process tree: every live member's user + system + reaped children's."""
    proc_root = str(proc_root)
    return sum(_stat_times(proc_root, p) for p in tree_pids(root_pid, proc_root)) / USER_HZ


def _pss_bytes(proc_root: str, pid: int) -> tuple[int, str] | None:
    try:
        for line in Path(proc_root, str(pid), "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024, "pss"
    except (OSError, ValueError):
        pass
    try:
        return int(Path(proc_root, str(pid), "statm").read_text().split()[1]) * PAGE, "rss"
    except (OSError, ValueError, IndexError):
        return None


def tree_mem_bytes(root_pid: int, proc_root: str | os.PathLike = PROC) -> tuple[int, str]:
    """(memory of the tree, 'pss' or 'rss'): summed PSS (RSS of members whose PSS is unreadable)."""
    total, kinds = 0, set()
    for p in tree_pids(root_pid, proc_root):
        r = _pss_bytes(str(proc_root), p)
        if r:
            total += r[0]
            kinds.add(r[1])
    return total, ("rss" if "rss" in kinds else "pss")


# ------------------------------------------------------------------ allocation
def own_cpu_s() -> float:
    """CPU seconds of this process since it started (self + reaped children)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def process_start_time(pid: int | None = None) -> float | None:
    """Wall-clock (epoch seconds) start of a process: interpreter start for this one.

    From /proc/<pid>/stat starttime (ticks since boot) against CLOCK_BOOTTIME now: 10-ms resolution
    (psutil's create_time adds the boot time, which /proc/stat gives in whole seconds)."""
    try:
        raw = Path(PROC, str(pid or os.getpid()), "stat").read_bytes()
        start = int(raw[raw.rindex(b")") + 2 :].split()[19]) / USER_HZ  # field 22 of proc(5)
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - start)
    except (OSError, ValueError, IndexError, AttributeError):
        import psutil

        try:
            return psutil.Process(pid or os.getpid()).create_time()
        except psutil.Error:
            return None


@dataclass(frozen=True)
class Reservation:
    cpus: float  # A: CPUs reserved for the job on this node
    cpus_source: str  # slurm, htcondor, affinity
    mem_bytes: float | None  # memory reserved (None: no reservation)
    mem_source: str | None  # slurm-reservation, htcondor-reservation


def reservation(env: dict[str, str] | None = None) -> Reservation:
    """What the job reserved on this node (scheduler facts of probes.reservation), else its affinity."""
    from ..probes import reservation as sched

    env = dict(os.environ if env is None else env)
    cpus, mem_mb, kind = sched(env)
    src = kind or "affinity"
    if cpus is None:
        try:
            cpus, src = len(os.sched_getaffinity(0)), "affinity"
        except (AttributeError, OSError):
            cpus, src = os.cpu_count() or 1, "affinity"
    mem = mem_mb * 2**20 if mem_mb else None
    return Reservation(float(cpus), src, mem, f"{kind}-reservation" if mem else None)
