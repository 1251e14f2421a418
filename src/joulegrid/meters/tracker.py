"""The job's usage over the whole job: snapshots at every window edge, samples in between.

``JobUsage`` reads the node's CPU time, the job's CPU time and memory (``usage.py``) and the
job-level energy counters it is given (second readers of RAPL / NVML, running from the start of the
job to its row), back to back; ``Usage.between`` turns two snapshots into the inputs of the split
(``attribution.py``); ``intervals`` are the periodic samples the idle-power fit uses.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .base import Poller
from .usage import (
    CGROUP,
    PROC,
    NodeCpu,
    Reservation,
    _cgroup_cpu_s,
    find_job_cgroup,
    mem_total_bytes,
    own_cpu_s,
    read_node_cpu,
    reservation,
    threads_per_core,
    tree_cpu_s,
    tree_mem_bytes,
)

MEM_EVERY_S = 5.0  # outside windows (the job's memory changes slowly): its PSS walk is the tracker's costly read


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
    def between(cls, a: Snapshot, b: Snapshot) -> Usage:
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
        self._open: frozenset[str] = frozenset()  # windows open now (marks <name>:start without <name>:end)
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._job_max = 0.0
        self._poller = Poller("joulegrid-usage", self.interval_s, lambda: self.samples.append(self.snapshot()))

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

    def between(self, a: Snapshot, b: Snapshot) -> Usage:
        """Usage between two snapshots, with the job's memory = its reservation where it has one."""
        u = Usage.between(a, b)
        if self.reserved.mem_bytes:
            u = Usage(
                u.dt,
                u.node_total_s,
                u.node_busy_s,
                u.node_steal_s,
                u.job_cpu_s,
                float(self.reserved.mem_bytes),
                u.n_cpus,
            )
        return u

    def snapshot(self, mark: str | None = None, memory: bool | None = None) -> Snapshot:
        """Read everything now: the counters, then the node's and the job's CPU time back to back, and
        the job's memory.

        The job's memory (a PSS walk of its tree: ~2 ms of CPU for a torch process, tens of ms on a
        loaded host) is read at every window edge (a marked snapshot: its time-average over the window
        starts and ends at the job's memory then, not at a value carried over from seconds before), at
        every periodic sample while a window is open, and at most every MEM_EVERY_S outside windows
        (``memory`` forces or skips it). An opening edge (``<name>:start``) reads it after the CPU times
        and counters, a closing edge (``<name>:end``) before them: the walk stays inside the window at
        both edges, and the times sit back to back with the meters' own reads around the snapshot (the
        meters' windows and the usage window then last the same). Between two reads the memory is
        integrated as a straight line (trapezoid)."""
        with self._lock:
            last = self._last
            name, _, edge = (mark or "").rpartition(":")
            if memory is None:
                memory = mark is not None or bool(self._open) or time.monotonic() - self._mem_t >= MEM_EVERY_S
            read_mem = memory or last is None
            mem_first = read_mem and edge == "end"
            mem = self._mem() if mem_first else None
            energy: dict[str, float] = {}
            for c in self.counters:
                lap = c.lap() or {}
                for comp, e in lap.items():
                    energy[comp] = energy.get(comp, 0.0) + e
            t = time.monotonic()
            node = read_node_cpu(self.proc_root)
            job = self._job_cpu()
            if name and name != "job" and edge in ("start", "end"):  # window <name> opens / closes
                self._open = self._open | {name} if edge == "start" else self._open - {name}
            if read_mem:
                if not mem_first:
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
        self._poller.start()  # a failed sample is skipped; the edges are read again
        return s

    def stop(self) -> Snapshot:
        self._poller.stop()
        s = self.snapshot("job:end")
        self.samples.append(s)
        for c in self.counters:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing must not lose the run
                pass
        return s

    def close(self) -> None:
        self._poller.stop(timeout=5)
        for c in self.counters:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing must not lose the run
                pass

    def intervals(self) -> list[tuple[Usage, dict[str, float]]]:
        """(usage, energy per counter component) between consecutive periodic samples."""
        out = []
        for a, b in itertools.pairwise(self.samples):
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
