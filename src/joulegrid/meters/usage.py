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
  PSS is not readable), read every MEM_EVERY_S and time-averaged; ``MemTotal`` of ``<proc>/meminfo``.

A background thread samples all of it every ``interval_s`` (and the job-level energy counters it
is given), for the time average of ``M`` and for the idle-power fit over intervals. Pure Python
(psutil); every root (proc, cgroup) is configurable so that tests can use fake trees.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC = "/proc"
CGROUP = "/sys/fs/cgroup"
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MEM_EVERY_S = 5.0  # the job's memory changes slowly; its PSS walk is the tracker's only costly read

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


# ------------------------------------------------------------------ snapshots and the tracker
@dataclass(frozen=True)
class Snapshot:
    """Cumulative usage at one instant (all read back to back)."""

    t: float  # time.monotonic()
    wall: float  # time.time()
    node: NodeCpu
    job_cpu_s: float
    mem_bytes: float  # the job's memory now
    mem_integral: float  # integral of the job's memory since the tracker started (byte-seconds)
    energy: dict[str, float] = field(default_factory=dict)  # job-level counters: component -> J so far


@dataclass(frozen=True)
class Usage:
    """What happened between two snapshots: the inputs of the split (attribution.py)."""

    dt: float  # s (monotonic)
    node_total_s: float  # T
    node_busy_s: float  # B
    node_steal_s: float
    job_cpu_s: float  # J
    mem_bytes: float  # time-averaged M
    n_cpus: int  # N

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> "Usage":
        dt = max(b.t - a.t, 0.0)
        mem = (b.mem_integral - a.mem_integral) / dt if dt > 0 else b.mem_bytes
        return cls(
            dt,
            max(b.node.total_s - a.node.total_s, 0.0),
            max(b.node.busy_s - a.node.busy_s, 0.0),
            max(b.node.steal_s - a.node.steal_s, 0.0),
            max(b.job_cpu_s - a.job_cpu_s, 0.0),
            mem,
            b.node.n_cpus,
        )


class JobUsage:
    """The job's and the node's usage over the whole job: snapshots on demand, samples in between.

    proc_root: where the NODE files are read (stat, meminfo, self/cgroup); processes are always
    read from the real /proc. root_pid: the job's top process (default: this one). counters: energy
    meters read at every sample (cheap counters: rapl, nvml), running for the whole job from start()
    to stop(); their cumulative energies go into every snapshot (whole-job energy, idle-power fit).
    """

    def __init__(
        self,
        proc_root: str | os.PathLike = PROC,
        cgroup_root: str | os.PathLike = CGROUP,
        root_pid: int | None = None,
        interval_s: float = 1.0,
        env: dict[str, str] | None = None,
        counters: list | None = None,
    ):
        self.proc_root = str(proc_root)
        self.root_pid = root_pid or os.getpid()
        self.interval_s = float(interval_s)
        self.reserved = reservation(env)
        # the cgroup of THIS process: only when the job is this process's tree
        own = root_pid is None or root_pid == os.getpid()
        self.cgroup = find_job_cgroup(proc_root, cgroup_root) if own else None
        self.cpu_source = f"cgroup-v{self.cgroup.version}" if self.cgroup else "process-tree"
        self.mem_total = mem_total_bytes(proc_root)
        self.counters = list(counters or [])
        self.samples: list[Snapshot] = []
        self.marks: list[tuple[str, Snapshot]] = []
        self.negative_deltas = 0  # job CPU reads that went backwards (clamped; see tree_cpu_s)
        self.own_cpu_at_start = 0.0
        self._mem_t = -1e9  # when the job's memory was last read (monotonic)
        self._mem_kind: str | None = None
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._job_max = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- reads
    def _job_cpu(self) -> float:
        v = _cgroup_cpu_s(self.cgroup) if self.cgroup else tree_cpu_s(self.root_pid)
        if v < self._job_max:  # a child reaped between two reads of the tree: clamp, never go back
            self.negative_deltas += 1
            return self._job_max
        self._job_max = v
        return v

    def _mem(self) -> float:
        """The job's memory now (its cgroup's, else its tree's PSS); the split uses the reservation
        instead where there is one (``between``)."""
        if self.cgroup and self.cgroup.mem_file is not None:
            try:
                self._mem_kind = "cgroup"
                return float(int(self.cgroup.mem_file.read_text().strip()))
            except (OSError, ValueError):
                pass
        m, kind = tree_mem_bytes(self.root_pid)
        self._mem_kind = kind
        return float(m)

    @property
    def mem_source(self) -> str | None:
        return self.reserved.mem_source if self.reserved.mem_bytes else self._mem_kind

    def set_reservation(self, cpus: float | None, mem_mb: float | None, scheduler: str | None) -> None:
        """Complete the reservation with what the scheduler probe found (e.g. scontrol's TRES): Slurm's
        job steps started by srun do not always see SLURM_MEM_PER_NODE. The environment wins."""
        if scheduler not in ("slurm", "htcondor"):
            return
        r = self.reserved
        cpus_ok = r.cpus_source != "affinity"
        self.reserved = Reservation(
            r.cpus if cpus_ok or not cpus else float(cpus),
            r.cpus_source if cpus_ok or not cpus else scheduler,
            r.mem_bytes if r.mem_bytes or not mem_mb else float(mem_mb) * 2**20,
            r.mem_source if r.mem_bytes or not mem_mb else f"{scheduler}-reservation",
        )

    def between(self, a: Snapshot, b: Snapshot) -> "Usage":
        """Usage between two snapshots, with the job's memory = its reservation where it has one."""
        u = Usage.between(a, b)
        if self.reserved.mem_bytes:
            u = Usage(u.dt, u.node_total_s, u.node_busy_s, u.node_steal_s, u.job_cpu_s, float(self.reserved.mem_bytes), u.n_cpus)
        return u

    def snapshot(self, mark: str | None = None, memory: bool | None = None) -> Snapshot:
        """Read everything now: the counters, then the node's and the job's CPU time back to back.

        The job's memory (a PSS walk of its tree: ~2 ms of CPU for a torch process) is read by the
        periodic samples only, at most every MEM_EVERY_S (``memory``; default: an unmarked snapshot
        that is due), so that a window's edges stay tight around the meters' own reads and the
        tracker's cost stays ~0.05 % of a core; the other snapshots carry the last value forward."""
        with self._lock:
            energy: dict[str, float] = {}
            for c in self.counters:
                lap = c.lap() or {}
                for comp, e in lap.items():
                    energy[comp] = energy.get(comp, 0.0) + e
            t = time.monotonic()
            node = read_node_cpu(self.proc_root)
            job = self._job_cpu()
            last = self._last
            if memory is None:
                memory = mark is None and t - self._mem_t >= MEM_EVERY_S
            if memory or last is None:
                mem = self._mem()
                self._mem_t = t
            else:
                mem = last.mem_bytes
            integral = last.mem_integral + 0.5 * (last.mem_bytes + mem) * (t - last.t) if last else 0.0
            s = Snapshot(t, time.time(), node, job, mem, integral, energy)
            self._last = s
            if mark is not None:
                self.marks.append((mark, s))
            return s

    # ---- life cycle
    def start(self) -> Snapshot:
        for c in self.counters:
            c.start()
        self.own_cpu_at_start = own_cpu_s()  # this process's CPU time before the tracker (start-up)
        s = self.snapshot("job:start")
        self.samples.append(s)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="joulegrid-usage", daemon=True)
        self._thread.start()
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(self.snapshot())
            except Exception:  # noqa: BLE001 - a failed sample is skipped; the edges are read again
                pass

    def stop(self) -> Snapshot:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        s = self.snapshot("job:end")
        self.samples.append(s)
        for c in self.counters:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass
        return s

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for c in self.counters:
            try:
                c.close()
            except Exception:  # noqa: BLE001
                pass

    def intervals(self) -> list[tuple[Usage, dict[str, float]]]:
        """(usage, energy per counter component) between consecutive periodic samples."""
        out = []
        for a, b in zip(self.samples, self.samples[1:]):
            u = self.between(a, b)
            if u.dt <= 0:
                continue
            out.append((u, {k: max(b.energy.get(k, 0.0) - a.energy.get(k, 0.0), 0.0) for k in b.energy}))
        return out

    def facts(self) -> dict[str, Any]:
        return {
            "job_cpus": self.reserved.cpus,
            "job_cpus_source": self.reserved.cpus_source,
            "job_cpu_source": self.cpu_source,
            "job_mem_source": self.mem_source,
            "node_mem_bytes": self.mem_total,
            "threads_per_core": threads_per_core(),
        }

