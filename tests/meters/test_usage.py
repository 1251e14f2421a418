"""Who used the node: /proc/stat, the job's cgroup (fake Slurm and HTCondor trees, v1 and v2), its
process tree (real processes), its reservation and memory (joulegrid.meters.usage)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from joulegrid import probes
from joulegrid.meters import tracker as T
from joulegrid.meters import usage as U

HZ = U.USER_HZ


def fake_proc(root: Path, stat_line: str, n_cpus: int = 4, cgroup: str = "0::/\n", mem_kb: int = 16_000_000) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    cpus = "".join(f"cpu{i} 1 0 1 1 0 0 0 0 0 0\n" for i in range(n_cpus))
    (root / "stat").write_text(f"{stat_line}\n{cpus}intr 123\nctxt 456\n")
    (root / "meminfo").write_text(f"MemTotal:       {mem_kb} kB\nMemFree:        1000 kB\n")
    (root / "self").mkdir(exist_ok=True)
    (root / "self" / "cgroup").write_text(cgroup)
    return root


def test_node_cpu_steal_is_not_busy_and_guest_is_not_added_twice(tmp_path):
    #            user nice system idle iowait irq softirq steal guest guest_nice
    line = "cpu  100 20 30 400 50 5 5 40 60 10"
    node = U.read_node_cpu(fake_proc(tmp_path, line))
    assert node.n_cpus == 4
    assert node.total_s == pytest.approx((100 + 20 + 30 + 400 + 50 + 5 + 5 + 40) / HZ)  # guest inside user/nice
    assert node.busy_s == pytest.approx((100 + 20 + 30 + 5 + 5) / HZ)  # no iowait, no steal, no guest again
    assert node.steal_s == pytest.approx(40 / HZ)
    assert U.mem_total_bytes(tmp_path) == 16_000_000 * 1024


def _file(p: Path, text: str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_slurm_cgroup_v2_climbs_to_the_job(tmp_path):
    proc = fake_proc(
        tmp_path / "proc",
        "cpu  1 0 1 1 0 0 0 0 0 0",
        cgroup="0::/system.slice/slurmstepd.scope/job_123/step_batch/user/task_0\n",
    )
    job = tmp_path / "cg" / "system.slice/slurmstepd.scope/job_123"
    _file(job / "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    _file(job / "memory.current", "1234567\n")
    _file(job / "step_batch" / "cpu.stat", "usage_usec 100\n")  # a step: not the whole job
    cg = U.find_job_cgroup(proc, tmp_path / "cg")
    assert (cg.version, cg.scheduler, cg.path) == (2, "slurm", "/system.slice/slurmstepd.scope/job_123")
    assert U._cgroup_cpu_s(cg) == 2.5 and cg.mem_file.read_text().strip() == "1234567"


def test_slurm_cgroup_v1(tmp_path):
    proc = fake_proc(
        tmp_path / "proc",
        "cpu  1 0 1 1 0 0 0 0 0 0",
        cgroup=textwrap.dedent("""\
        9:memory:/slurm/uid_1000/job_77/step_0
        4:cpu,cpuacct:/slurm/uid_1000/job_77/step_0/task_0
        0::/
        """),
    )
    _file(tmp_path / "cg" / "cpu,cpuacct/slurm/uid_1000/job_77/cpuacct.usage", "3000000000\n")
    _file(tmp_path / "cg" / "memory/slurm/uid_1000/job_77/memory.usage_in_bytes", "777\n")
    cg = U.find_job_cgroup(proc, tmp_path / "cg")
    assert (cg.version, cg.scheduler) == (1, "slurm") and U._cgroup_cpu_s(cg) == 3.0
    assert cg.mem_file.name == "memory.usage_in_bytes"


def test_htcondor_slot_cgroup(tmp_path):
    slot = "/system.slice/htcondor/condor_var_lib_condor_execute_slot1_1@node01"
    proc = fake_proc(tmp_path / "proc", "cpu  1 0 1 1 0 0 0 0 0 0", cgroup=f"0::{slot}\n")
    _file(tmp_path / "cg" / slot.lstrip("/") / "cpu.stat", "usage_usec 4000000\n")
    cg = U.find_job_cgroup(proc, tmp_path / "cg")
    assert (cg.version, cg.scheduler, cg.path) == (2, "htcondor", slot) and U._cgroup_cpu_s(cg) == 4.0


def test_a_container_or_root_cgroup_is_not_the_job(tmp_path):
    """This build host: a container's memory cgroup and the root elsewhere. Counting those as the job
    would charge it everything else in them: the process tree is used instead."""
    proc = fake_proc(
        tmp_path / "proc",
        "cpu  1 0 1 1 0 0 0 0 0 0",
        cgroup="4:memory:/process_api/16a6ad\n2:cpuacct:/\n1:cpu:/\n0::/\n",
    )
    _file(tmp_path / "cg" / "cpuacct" / "cpuacct.usage", "99\n")
    _file(tmp_path / "cg" / "cpu.stat", "usage_usec 99\n")
    assert U.find_job_cgroup(proc, tmp_path / "cg") is None
    ju = T.JobUsage(proc, tmp_path / "cg")
    assert ju.cpu_source == "process-tree"


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_tree_cpu_counts_reaped_grandchildren_exactly_once():
    """The child spawns two CPU-burning grandchildren and reaps them: their time moves into its cutime.
    The tree's CPU time then equals the child's own os.times() totals (the kernel's accounting)."""
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        kids = [subprocess.Popen([sys.executable, "-c", {BURN.format(s=0.3)!r}]) for _ in range(2)]
        print("spawned", flush=True)
        sys.stdin.readline()
        for k in kids: k.wait()
        exec({BURN.format(s=0.2)!r})
        t = os.times()
        print(t.user + t.system + t.children_user + t.children_system, flush=True)
        sys.stdin.readline()
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "spawned"
        assert len(U.tree_pids(p.pid)) == 3  # the child and its two grandchildren, while they live
        p.stdin.write("\n")
        p.stdin.flush()
        reported = float(p.stdout.readline())
        assert U.tree_pids(p.pid) == [p.pid]  # reaped
        assert U.tree_cpu_s(p.pid) == pytest.approx(reported, abs=2.5 / HZ)
        assert reported >= 0.75  # 2 x 0.3 + 0.2 s burnt, children included
    finally:
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(timeout=30)


def test_job_usage_reads_back_to_back_and_clamps(tmp_path):
    proc = fake_proc(tmp_path, "cpu  100 0 100 800 0 0 0 0 0 0", n_cpus=2)
    ju = T.JobUsage(proc, tmp_path / "nocg", interval_s=60, env={})
    a = ju.snapshot("x:start")
    (tmp_path / "stat").write_text("cpu  300 0 100 1200 0 0 0 0 0 0\ncpu0 1\ncpu1 1\n")
    b = ju.snapshot("x:end")
    u = T.Usage.between(a, b)
    assert (u.node_total_s, u.node_busy_s, u.n_cpus) == (pytest.approx(6.0), pytest.approx(2.0), 2)
    assert u.job_cpu_s >= 0 and u.mem_bytes > 0 and ju.mem_source in ("pss", "rss")
    assert [m for m, _ in ju.marks] == ["x:start", "x:end"]
    ju._job_max = 1e9  # a read that goes backwards (a child reaped between two reads of the tree)
    assert ju.snapshot().job_cpu_s == 1e9 and ju.negative_deltas == 1


def test_reservation_from_slurm_htcondor_or_affinity(tmp_path):
    r = U.reservation({"SLURM_JOB_ID": "5", "SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_NODE": "8000"})
    assert (r.cpus, r.cpus_source, r.mem_bytes, r.mem_source) == (4, "slurm", 8000 * 2**20, "slurm-reservation")
    r = U.reservation({"SLURM_JOB_ID": "5", "SLURM_CPUS_ON_NODE": "2", "SLURM_MEM_PER_CPU": "1000"})
    assert r.mem_bytes == 2000 * 2**20
    ad = tmp_path / ".job.ad"
    ad.write_text('ClusterId = 7\nRequestCpus = 2\nRequestMemory = 2048\nOwner = "me"\n')
    r = U.reservation({"_CONDOR_JOB_AD": str(ad)})
    assert (r.cpus, r.cpus_source, r.mem_bytes) == (2, "htcondor", 2048 * 2**20)
    ad.write_text("RequestCpus = 1\nCpusProvisioned = 3\nMemoryProvisioned = 4096\nRequestMemory = 1000\n")
    assert probes.reservation({"_CONDOR_JOB_AD": str(ad)}) == (3, 4096, "htcondor")  # what the slot got
    r = U.reservation({})
    assert (r.cpus, r.cpus_source, r.mem_bytes) == (len(os.sched_getaffinity(0)), "affinity", None)


def test_reservation_completed_by_the_scheduler_probe(tmp_path):
    """srun job steps started by Snakemake's jobstep plugin lose SLURM_MEM_PER_NODE: scontrol's TRES
    (the row's alloc_mem_mb) completes the reservation; what the environment says wins."""
    proc = fake_proc(tmp_path, "cpu  100 0 100 800 0 0 0 0 0 0", n_cpus=2)
    ju = T.JobUsage(proc, tmp_path / "nocg", env={"SLURM_JOB_ID": "3", "SLURM_CPUS_ON_NODE": "1"})
    assert (ju.reserved.cpus, ju.reserved.mem_bytes) == (1, None)
    a = ju.snapshot()
    ju.set_reservation(4, 1000, "slurm")
    assert (ju.reserved.cpus, ju.reserved.cpus_source, ju.reserved.mem_bytes) == (1, "slurm", 1000 * 2**20)
    assert ju.mem_source == "slurm-reservation" and ju.between(a, ju.snapshot()).mem_bytes == 1000 * 2**20
    local = T.JobUsage(proc, tmp_path / "nocg", env={})
    local.set_reservation(2, None, "local")  # a local run's threads are no reservation
    assert local.reserved.cpus_source == "affinity" and local.mem_source is None


def test_threads_per_core(tmp_path):
    for text, n in (("0,4\n", 2), ("0-1\n", 2), ("0\n", 1), ("0-3\n", 4)):
        _file(tmp_path / "cpu0" / "topology" / "thread_siblings_list", text)
        assert U.threads_per_core(tmp_path) == n
    assert U.threads_per_core(tmp_path / "none") is None


def _own_pss() -> int:
    """This process's PSS from /proc/self/smaps_rollup, read here (not by joulegrid's reader)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no Pss in smaps_rollup")


def test_window_memory_is_read_at_its_edges_and_inside_it(tmp_path):
    """Issue 29: a job that allocates a known amount inside a window shorter than MEM_EVERY_S. Its
    time-averaged memory over the window (job_mem_bytes) must include the allocation for the time it
    was held, not the value of a sample taken seconds before the window (the edges and the samples
    inside a window read the memory). Expected: the process's own PSS before and after the allocation
    (read by the test), weighted by how long each lasted in the window; tolerance: one sampling
    interval's share of the allocation (the trapezoid between two reads), plus 8 MiB of other noise."""
    if not Path("/proc/self/smaps_rollup").exists():
        pytest.skip("no /proc/self/smaps_rollup here")
    interval = 0.25
    ju = T.JobUsage(tmp_path / "noproc-used", tmp_path / "nocg", interval_s=interval, env={})
    ju.proc_root = "/proc"  # the node files of this host (fake_proc is not needed: only memory is checked)
    assert interval * 4 < T.MEM_EVERY_S  # the window is shorter than the periodic memory read
    ju.start()
    try:
        m0 = _own_pss()
        w0 = ju.snapshot("measured:start")
        t_a0 = time.monotonic()
        block = b"\x01" * (256 << 20)  # 256 MiB, written (resident) as it is made
        t_a1 = time.monotonic()
        m1 = _own_pss()
        time.sleep(4 * interval)
        w1 = ju.snapshot("measured:end")
        held = block[-1]
        del block
    finally:
        ju.close()
    assert held == 1 and m1 - m0 > (200 << 20)  # the allocation was resident
    dt = w1.t - w0.t
    # the memory rose from m0 to m1 while the block was written (t_a0..t_a1): the true average lies between
    lo = (m0 * (t_a1 - w0.t) + m1 * (w1.t - t_a1)) / dt
    hi = (m0 * (t_a0 - w0.t) + m1 * (w1.t - t_a0)) / dt
    got = ju.between(w0, w1).mem_bytes
    tol = (m1 - m0) * interval / dt + (8 << 20)
    assert lo - tol <= got <= hi + tol, (got / 2**20, lo / 2**20, hi / 2**20, tol / 2**20)
    assert got > m0 + 0.5 * (m1 - m0)  # before issue 29: m0, the value of the job's first sample
