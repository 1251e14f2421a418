"""The split of node energy into the job's share (joulegrid.meters.attribution): pure arithmetic,
expected values derived from the linear power model P = P0 + k * busy CPUs by hand."""

from __future__ import annotations

import random

import pytest

from joulegrid import config as CFG
from joulegrid.meters import attribution as A
from joulegrid.meters.base import Reading
from joulegrid.meters.tracker import Usage
from joulegrid.sites import SiteFacts, site_facts

P0, K, N = 40.0, 8.0, 16  # W idle, W per busy CPU, logical CPUs


def usage(dt: float, job: float, others: float, mem: float = 2e9, n: int = N) -> Usage:
    """A window of dt s on a node of n CPUs where the job used `job` CPU-s and other processes `others`."""
    return Usage(dt, n * dt, job + others, 0.0, job, mem, n)


def node_energy(u: Usage) -> float:
    return P0 * u.dt + K * u.node_busy_s


def ctx(cpus=4.0, shared=True, **idle) -> A.Context:
    return A.Context(
        cpus=cpus,
        mem_total=64e9,
        model=A.PowerModel(None, None, 4.0, None),
        idle={"cpu": A.IdlePower(P0, "site"), **idle},
        shared=shared,
    )


def cpu_reading(e: float, meter="rapl", method="rapl", est=False) -> Reading:
    return Reading(meter, "cpu", method, e, 0.1, 100, est, duration_s=1.0, scope="node")


@pytest.mark.parametrize("others", [0.0, 5.0, 12.0])
def test_reserved_idle_plus_used_active_is_neighbour_invariant(others):
    """E_job = k*J + (A/N)*P0*dt whatever the neighbours do; the two other conventions move."""
    u = usage(10.0, job=30.0, others=others)
    ((job, sp),) = A.attribute([cpu_reading(node_energy(u))], u, ctx())
    assert job.scope == "job" and job.attribution == "cpu-share" and job.method == "rapl"
    assert sp.job_active_j == pytest.approx(K * 30.0)
    assert sp.job_idle_j == pytest.approx(4 / N * P0 * 10.0)
    assert job.energy_j == pytest.approx(K * 30.0 + 4 / N * P0 * 10.0)
    # every joule in one bucket
    assert sp.job_j + sp.other_active_j + sp.unreserved_idle_j == pytest.approx(node_energy(u))
    assert sp.other_active_j == pytest.approx(K * others)


def test_share_of_busy_and_share_of_capacity_move_with_the_neighbours():
    alone, busy = usage(10.0, 30.0, 0.0), usage(10.0, 30.0, 100.0)
    by_busy = [u.job_cpu_s / u.node_busy_s * node_energy(u) for u in (alone, busy)]
    by_capacity = [u.job_cpu_s / u.node_total_s * node_energy(u) for u in (alone, busy)]
    ours = [A.attribute([cpu_reading(node_energy(u))], u, ctx())[0][0].energy_j for u in (alone, busy)]
    assert by_busy[1] < 0.8 * by_busy[0]  # the job's idle charge falls as neighbours get busier
    assert by_capacity[1] > 1.5 * by_capacity[0]  # ... or rises with their load
    assert ours[1] == pytest.approx(ours[0])


def test_conservation_with_clamps_and_random_windows():
    rnd = random.Random(7)
    for _ in range(200):
        dt = rnd.uniform(0.5, 5)
        u = usage(dt, job=rnd.uniform(0, 3 * dt), others=rnd.uniform(0, 8 * dt))
        e = rnd.uniform(0, 2) * node_energy(u)  # also below P0*dt (a counter that read low)
        for c in (ctx(cpus=rnd.choice([1, 4, 16, 32])), ctx(shared=False)):
            ((job, sp),) = A.attribute([cpu_reading(e)], u, c)
            assert sp.job_j + sp.other_active_j + sp.unreserved_idle_j == pytest.approx(e)
            assert min(sp.job_j, sp.other_active_j, sp.unreserved_idle_j) >= 0


def test_node_not_shared_gives_the_job_all_active_energy():
    u = usage(10.0, job=30.0, others=0.5)  # 0.5 CPU-s of daemons on a 16-CPU node: 0.3 % of its capacity
    assert not A.node_shared(u) and A.node_shared(u, threshold=0.001)
    alone = usage(10.0, job=30.0, others=0.0)  # nothing else ran: shared only when every node is declared shared (0)
    assert not A.node_shared(alone, threshold=0.001) and A.node_shared(alone, threshold=0.0)
    ((job, sp),) = A.attribute([cpu_reading(node_energy(u))], u, ctx(cpus=N, shared=False))
    assert job.attribution == "node-cpu"
    assert job.energy_j == pytest.approx(node_energy(u))  # a local run or --exclusive: the job's energy is the node's


def test_busy_ratio_when_idle_power_is_unknown():
    u = usage(10.0, job=30.0, others=10.0)
    e = node_energy(u)
    ((job, sp),) = A.attribute([cpu_reading(e)], u, ctx(cpu=A.BUSY_RATIO))
    static = e * (1 - 40.0 / 160.0)
    assert sp.p0_w == pytest.approx(static / 10.0)
    assert sp.job_idle_j == pytest.approx(4 / N * static) and sp.job_active_j == pytest.approx(30 / 40 * (e - static))


def test_ram_dram_and_gpu_and_what_is_not_attributed():
    u = usage(10.0, job=30.0, others=10.0, mem=16e9)
    c = ctx(dram=A.IdlePower(6.0, "site"))
    rs = [
        Reading("codecarbon", "ram-model", "codecarbon-ram-model", 200.0, 1, 10, True, duration_s=10.0, scope="node"),
        Reading("rapl", "dram", "rapl", 100.0, 0.1, 100, False, duration_s=10.0, scope="node"),
        Reading("nvml", "gpu", "nvml", 900.0, 0.1, 100, False, duration_s=10.0, scope="device"),
        # non-linear model
        Reading("codecarbon", "cpu", "codecarbon-tdp-load", 300.0, 1, 10, True, duration_s=10.0, scope="node"),
        Reading("codecarbon", "cpu", "codecarbon-tdp-load", 30.0, 1, 10, True, duration_s=10.0, scope="process"),
    ]
    got = {j.component: (j, sp) for j, sp in A.attribute(rs, u, c)}
    assert set(got) == {"ram-model", "dram", "gpu"}
    share = 16e9 / 64e9
    assert got["ram-model"][0].energy_j == pytest.approx(share * 200.0)  # never the whole host's RAM model
    assert got["ram-model"][0].attribution == "mem-share"
    dyn = 100.0 - 6.0 * 10.0
    assert got["dram"][0].energy_j == pytest.approx(30 / 40 * dyn + share * 60.0)
    assert got["gpu"][0].energy_j == 900.0 and got["gpu"][0].attribution == "job-gpus"
    assert A.attributable(rs[3]) is None and A.attributable(rs[4]) is None
    # without MemTotal there is no RAM figure at all rather than the host's
    c.mem_total = None
    assert {j.component for j, _ in A.attribute(rs, u, c)} == {"gpu"}


def test_estimate_model_uses_its_own_idle_power():
    c = A.Context(
        cpus=2, mem_total=None, model=A.PowerModel(None, None, 5.0, None), idle={"cpu": A.IdlePower(40.0, "fit")}
    )
    u = usage(10.0, job=6.0, others=2.0, n=4)
    p0 = A.model_idle_w(None, 5.0, 4)
    assert p0 == pytest.approx(0.1 * 4 * 5.0)
    e = p0 * 10.0 + 5.0 * 8.0
    ((job, sp),) = A.attribute([cpu_reading(e, "estimate", "estimate-tdp", True)], u, c)
    assert job.energy_j == pytest.approx(5.0 * 6.0 + 2 / 4 * p0 * 10.0)  # W x J + (A/N) x P0 x dt
    assert c.p0(cpu_reading(e, "estimate", "estimate-tdp", True), 4).source == "model"
    c.model = A.PowerModel(3.0, None, 5.0, "site x")
    assert c.p0(cpu_reading(e, "estimate", "estimate-tdp", True), 4) == A.IdlePower(3.0, "site")


def test_fit_recovers_idle_power_and_slope():
    rnd = random.Random(3)
    pts = []
    for _ in range(60):
        dt = rnd.uniform(0.8, 1.2)
        b = rnd.uniform(0, 12) * dt
        pts.append((dt, b, (P0 + K * b / dt) * dt * rnd.uniform(0.97, 1.03)))
    pts[5] = (1.0, 2.0, 500.0)  # an outlier (a counter glitch): Theil-Sen does not care
    fit = A.fit_idle_power(pts, N)
    assert fit.source == "fit"
    assert fit.watts == pytest.approx(P0, rel=0.1) and fit.k_w_per_cpu == pytest.approx(K, rel=0.1)


def test_fit_is_refused_without_enough_intervals_or_spread():
    flat = [(1.0, 8.0 + 0.01 * i, P0 + K * 8.0) for i in range(60)]  # a node always equally busy
    assert A.fit_idle_power(flat, N) is None
    few = [(1.0, float(i), P0 + K * i) for i in range(A.FIT_MIN_INTERVALS - 1)]
    assert A.fit_idle_power(few, N) is None
    ok = [(1.0, float(i % 16), P0 + K * (i % 16)) for i in range(A.FIT_MIN_INTERVALS)]
    assert A.fit_idle_power(ok, N).watts == pytest.approx(P0)
    # clamped to the lowest power seen: a line that extrapolates above it is not believed
    bent = [(1.0, float(b), 50.0 + 2.0 * b if b > 2 else 30.0) for b in range(16) for _ in range(2)]
    assert A.fit_idle_power(bent, N).watts <= 30.0


def test_power_model_lookup_and_errors():
    site = {
        "name": "blackett",
        "node_power": [
            {
                "cpu_model": "EPYC 7742",
                "cpu_idle_w": 120,
                "dram_idle_w": 20,
                "w_per_thread": 1.7,
                "source": "idle node 2026-10",
            },
            {"cpu_idle_w": 60},
        ],
    }
    m = A.power_model(SiteFacts.from_dict(site), None, "AMD EPYC 7742 64-Core Processor")
    assert (m.cpu_idle_w, m.dram_idle_w, m.w_per_thread) == (120.0, 20.0, 1.7)
    assert m.source == "site blackett (EPYC 7742): idle node 2026-10"
    m = A.power_model(SiteFacts.from_dict(site), 3.0, "Intel Xeon Gold")
    assert (m.cpu_idle_w, m.dram_idle_w, m.w_per_thread) == (60.0, None, 3.0)
    assert A.power_model(SiteFacts(), None, None) == A.PowerModel(None, None, A.DEFAULT_W_PER_THREAD, None)
    for bad, match in (
        ({"cpu_idle_w": -1}, r"x\.node_power\.cpu_idle_w: -1 is too small"),
        ({"idle": 5}, r"x\.node_power: unknown key\(s\) 'idle'"),
        ({"w_per_thread": 0}, r"x\.node_power\.w_per_thread: 0"),
        ("5 W", "one mapping of cpu_idle_w"),
    ):
        with pytest.raises(CFG.ConfigError, match=match):
            site_facts({"x": {"node_power": bad}}, "x")
    assert site_facts({"x": {"node_power": {"cpu_idle_w": 5}}}, "x")["node_power"] == [{"cpu_idle_w": 5}]


def test_extrapolate_at_the_tracked_rates():
    sp = A.Split(100.0, 60.0, 40.0, 20.0, 30.0, 10.0, None)
    u = usage(10.0, job=4.0, others=0.0)
    assert A.extrapolate(sp, u, dt=2.0, cpu_s=1.0) == pytest.approx(20.0 / 10.0 * 2.0 + 40.0 / 4.0 * 1.0)
