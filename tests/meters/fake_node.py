"""TEST FIXTURE: a fake node for real processes -- RAPL counters (powercap) and /proc/stat files in
memory (below), advanced by a writer thread from the busy CPU time of real processes.

    P_pkg = p0 + k * b        P_dram = p0_dram + k_dram * b        (b = busy CPUs, from the busy source)

Busy source:
- ``"proc"``: the real /proc/stat (the whole host's load; the meters then read the real /proc/stat too);
- ``"trees"``: a VIRTUAL node whose only load is the process trees given to ``track()``; the writer
  also writes the node's ``stat`` (N CPUs, busy = those trees' CPU time) and ``meminfo``. The build
  host is shared with other processes whose load would hide a neighbour's; on the virtual node the
  test's processes are the whole node, as on a quiet batch node.

The counters lag the clock of a process reading them by the time since the writer's last step (the
kernel's are current when read), and an interval read from them is off by the idle power times the
change of that lag. Two things keep that change small and random, as a real counter's is:
- the files live in memory (a tmpfs dir under /dev/shm where there is one, linked from ``root``), as
  sysfs and procfs do: on a disk file system a loaded host's fsyncs stalled the writer's renames by up
  to ~90 ms (10-20 ms at most on tmpfs under that load);
- the writer's period is jittered (0.5-1.5 x ``step_s``): with a fixed 10-ms period against a reader's
  fixed 0.25-s one, the lag changed in lockstep, the intervals' robust spread collapsed and a few
  one-step jumps (40 W x 10 ms / 0.25 s = 1.6 W) were trimmed as outliers, failing a 1-s calibration
  step in 4-6 of 20 runs on a quiet host (0 of 20 jittered).

Each counter is written as ``E mod max_range`` (tmp file + os.replace), so a small max range forces
wraps; an ``intel-rapl-mmio:0`` duplicate of the package moves too and must be ignored. The unwrapped
truth is kept with monotonic time stamps: ``energy_between(t0, t1)`` is what the node really drew.
Nothing here is a measurement of real hardware.
"""

from __future__ import annotations

import atexit
import bisect
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from joulegrid.meters import usage as U


def _in_memory_dir(root: Path) -> Path:
    """Where the fake's files go: a fresh dir on /dev/shm (removed at exit), linked from root under its
    own name, or root itself where there is no writable /dev/shm."""
    root.mkdir(parents=True, exist_ok=True)
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return root
    d = Path(tempfile.mkdtemp(prefix="joulegrid-fake-node-", dir=shm))
    atexit.register(shutil.rmtree, d, True)
    (root / d.name).symlink_to(d, target_is_directory=True)  # for a person looking at the test's tmp dir
    return d


class FakeNode:
    def __init__(
        self,
        root: Path,
        p0: float = 4.0,
        k: float = 12.0,
        p0_dram: float = 2.0,
        k_dram: float = 1.0,
        max_uj: int = 20_000_000,
        n_cpus: int = 2,
        mem_kb: int = 8_000_000,
        busy: str = "trees",
        step_s: float = 0.01,
    ):
        self.root = Path(root)
        self.p0, self.k, self.p0_dram, self.k_dram = p0, k, p0_dram, k_dram
        self.max_uj, self.n_cpus, self.mem_kb, self.busy, self.step_s = max_uj, n_cpus, mem_kb, busy, step_s
        files = _in_memory_dir(self.root)
        self.powercap = files / "powercap"
        self.proc = files / "proc" if busy == "trees" else Path("/proc")
        self._zones = {"intel-rapl:0": "package-0", "intel-rapl:0:0": "dram", "intel-rapl-mmio:0": "package-0"}
        for z, name in self._zones.items():
            d = self.powercap / z
            d.mkdir(parents=True)
            (d / "name").write_text(name + "\n")
            (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
            (d / "energy_uj").write_text("0\n")
        if busy == "trees":
            (self.proc / "self").mkdir(parents=True)
            (self.proc / "self" / "cgroup").write_text("0::/\n")
            (self.proc / "meminfo").write_text(f"MemTotal:       {mem_kb} kB\n")
        # tracked tree root -> [its CPU seconds when tracked, its last CPU seconds] (kept after it exits):
        # only what a tree burns after track() loads the node, so that a job's start-up (before its
        # window opens) never lands in a writer step that a loaded host delays past the window's start
        self._roots: dict[int, list[float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.truth: list[tuple[float, float, float]] = []  # (monotonic t, E_pkg J, E_dram J) unwrapped
        self._t0 = time.monotonic()
        self._e = [0.0, 0.0]
        self._busy0 = None
        self._last = None

    # ---- the busy source
    def track(self, pid: int) -> None:
        with self._lock:
            v = U.tree_cpu_s(pid)
            self._roots[pid] = [v, v]

    def _busy_s(self) -> float:
        if self.busy == "proc":
            return U.read_node_cpu("/proc").busy_s
        with self._lock:
            for pid, v in self._roots.items():
                if Path(f"/proc/{pid}").exists():
                    v[1] = max(v[1], U.tree_cpu_s(pid))
            return sum(last - base for base, last in self._roots.values())

    # ---- files
    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def _write_all(self, t: float, busy: float) -> None:
        pkg, dram = (round(e * 1e6) % self.max_uj for e in self._e)
        self._write(self.powercap / "intel-rapl:0" / "energy_uj", f"{pkg}\n")
        self._write(self.powercap / "intel-rapl-mmio:0" / "energy_uj", f"{pkg}\n")
        self._write(self.powercap / "intel-rapl:0:0" / "energy_uj", f"{dram}\n")
        if self.busy == "trees":
            hz = U.USER_HZ
            elapsed = t - self._t0
            b = round((busy - self._busy0) * hz)
            idle = max(round(self.n_cpus * elapsed * hz) - b, 0)
            cpus = "".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0\n" for i in range(self.n_cpus))
            self._write(self.proc / "stat", f"cpu  {b} 0 0 {idle} 0 0 0 0 0 0\n{cpus}")

    def _step(self) -> None:
        t, busy = time.monotonic(), self._busy_s()
        if self._last is not None:
            t_last, b_last = self._last
            dt, db = t - t_last, max(busy - b_last, 0.0)
            self._e[0] += self.p0 * dt + self.k * db  # (p0 + k * db/dt) * dt
            self._e[1] += self.p0_dram * dt + self.k_dram * db
        self._last = (t, busy)
        self.truth.append((t, self._e[0], self._e[1]))
        self._write_all(t, busy)

    def _run(self) -> None:
        while not self._stop.wait(self.step_s * random.uniform(0.5, 1.5)):  # jittered: module doc
            self._step()

    def start(self) -> FakeNode:
        self._busy0 = self._busy_s()
        self._t0 = time.monotonic()
        self._step()
        self._thread = threading.Thread(target=self._run, name="fake-node", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # ---- truth
    def energy_at(self, t: float) -> tuple[float, float]:
        """Unwrapped (pkg, dram) energy at monotonic time t, linear between writer steps."""
        ts = [x[0] for x in self.truth]
        i = bisect.bisect_left(ts, t)
        if i <= 0:
            return self.truth[0][1:]
        if i >= len(ts):
            return self.truth[-1][1:]
        (ta, pa, da), (tb, pb, db) = self.truth[i - 1], self.truth[i]
        f = (t - ta) / (tb - ta) if tb > ta else 0.0
        return pa + f * (pb - pa), da + f * (db - da)

    def stale(self, t: float) -> tuple[float, float]:
        """How far a counter read at t can be behind the truth at t: the writer appends the truth of a
        step before it writes the files, so a read shows at best the last written step, at worst the one
        before it (a loaded host delays the writer thread by tens of ms). Returns (pkg, dram) J."""
        ts = [x[0] for x in self.truth]
        i = bisect.bisect_right(ts, t)
        old = self.truth[max(i - 2, 0)]
        now = self.energy_at(t)
        return now[0] - old[1], now[1] - old[2]

    def energy_between(self, t0: float, t1: float) -> tuple[float, float]:
        a, b = self.energy_at(t0), self.energy_at(t1)
        return b[0] - a[0], b[1] - a[1]
