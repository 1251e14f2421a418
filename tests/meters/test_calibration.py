"""The calibrated CPU power model: the ladder's fit on generated steps of a known power law, the lookup
(which measurement of a CPU model wins), the estimate meter and the split with a calibration, and the
model's prediction beside a counter (account.model_columns)."""

from __future__ import annotations

import random

import pytest

from joulegrid.meters import attribution as A
from joulegrid.meters import calibration as C
from joulegrid.meters import choose
from joulegrid.meters.account import model_columns
from joulegrid.meters.base import Reading
from joulegrid.meters.estimate import EstimateMeter
from joulegrid.meters.tracker import Usage
from joulegrid.meters.usage import NodeCpu
from joulegrid.sites import SiteFacts, site_facts

IDLE, W_CPU, W_GB, GB0 = 40.0, 8.0, 0.5, 10.0  # the generating law: P = IDLE + W_CPU * b + W_GB * (g - GB0)


def ladder(w_gb: float, noise_w: float = 0.2, outlier: bool = False, seed: int = 1) -> list[C.Step]:
    """Steps of 12 intervals of 0.5 s from P = IDLE + W_CPU b + w_gb (g - GB0), with Gaussian noise on each
    interval's power and the busy CPUs / used memory wobbling around the step's level."""
    rnd = random.Random(seed)
    plan = [
        ("idle", 0.1, 10.0),
        ("busy-1", 1.0, 10.1),
        ("busy-4", 4.0, 10.2),
        ("busy-8", 8.0, 10.1),
        ("resident", 0.1, 18.0),
        ("traffic", 1.0, 18.0),
        ("idle-end", 0.2, 10.0),
    ]
    steps = []
    for name, b, g in plan:
        s = C.Step(name)
        for k in range(12):
            bb, gg, dt = b + rnd.uniform(-0.05, 0.05), g + rnd.uniform(-0.02, 0.02), 0.5
            p = IDLE + W_CPU * bb + w_gb * (gg - GB0) + rnd.gauss(0.0, noise_w)
            if outlier and name == "busy-4" and k == 5:
                p += 200.0  # a spike: one interval far off the line
            s.intervals.append(C.Interval(dt, bb * dt, gg, {"package": p * dt, "dram": (6.0 + 0.5 * bb) * dt}))
        steps.append(s)
    return steps


def idle_steps(steps):
    return [i for i, s in enumerate(steps) if s.name.startswith("idle")]


def test_fit_recovers_the_law_and_says_how_well():
    steps = ladder(w_gb=0.0)
    f = C.fit_domain(steps, "package", idle_steps(steps))
    assert f.model.idle_w == pytest.approx(IDLE, abs=3 * f.se["idle_w"] + 1e-9) and f.se["idle_w"] < 0.2
    assert (
        f.model.w_per_busy_cpu == pytest.approx(W_CPU, abs=3 * f.se["w_per_busy_cpu"] + 1e-9)
        and f.se["w_per_busy_cpu"] < 0.05
    )
    # no memory term in the law: the ladder does not determine one, and the model has none
    assert f.model.w_per_gb is None and f.w_per_gb_fit is not None and abs(f.w_per_gb_fit) < 2 * f.se["w_per_gb"]
    # held-out: each step predicted from the others, within the noise of a 6-s step
    assert max(abs(e) for e in f.holdout) < 0.5
    assert f.kept == [12] * len(steps) and f.dropped == [0] * len(steps)
    d = C.fit_domain(steps, "dram", idle_steps(steps))
    assert d.model.idle_w == pytest.approx(6.0, abs=1e-6) and d.model.w_per_busy_cpu == pytest.approx(0.5, abs=1e-6)


def test_a_memory_term_is_kept_when_the_ladder_determines_it():
    steps = ladder(w_gb=W_GB)
    f = C.fit_domain(steps, "package", idle_steps(steps))
    assert f.model.w_per_gb == pytest.approx(W_GB, abs=3 * f.se["w_per_gb"]) and f.se["w_per_gb"] < 0.1
    assert f.model.idle_used_gb == pytest.approx(10.0, abs=0.05)  # the idle steps' used memory
    assert f.model.idle_w == pytest.approx(IDLE, abs=0.5)  # the idle power as measured, at that memory
    assert f.model.power(2.0, 14.0) == pytest.approx(IDLE + 2 * W_CPU + W_GB * (14.0 - GB0), abs=0.6)


def test_an_outlier_interval_is_dropped_not_fitted():
    clean = C.fit_domain(ladder(0.0), "package", [0, 6])
    spiked_steps = ladder(0.0, outlier=True)
    spiked = C.fit_domain(spiked_steps, "package", [0, 6])
    assert spiked.dropped[2] == 1 and sum(spiked.dropped) == 1  # the spike in busy-4, nothing else
    assert spiked.model.w_per_busy_cpu == pytest.approx(clean.model.w_per_busy_cpu, abs=0.05)
    # without the trimming, the spike (200 W over 1 of 12 intervals) would move busy-4's power by ~17 W
    assert spiked.power[2] == pytest.approx(IDLE + W_CPU * 4.0, abs=0.5)


def test_too_few_intervals_is_an_error_naming_the_fix():
    steps = ladder(0.0)
    steps[1].intervals = steps[1].intervals[:2]
    with pytest.raises(C.CalibrationError, match="busy-1.*--step-s"):
        C.fit_domain(steps, "package", [0, 6])


def test_holdout_summary_sums_the_domains():
    fits = {d: C.fit_domain(ladder(0.0), d, [0, 6]) for d in ("package", "dram")}
    rmse, worst = C.holdout_summary(fits)
    err = [fits["package"].holdout[k] + fits["dram"].holdout[k] for k in range(7)]
    meas = [fits["package"].power[k] + fits["dram"].power[k] for k in range(7)]
    assert rmse == pytest.approx((sum(e * e for e in err) / 7) ** 0.5)
    assert worst == pytest.approx(max(abs(e) / m for e, m in zip(err, meas, strict=True)))


# ------------------------------------------------------------------ the entry, the lookup
ENTRY = {
    "host": "calhost",
    "calibrated_at": "2026-11-20T10:00:00Z",
    "sockets": 1,
    "mem_total_gb": 64.0,
    "logical_cpus": 16,
    "holdout_rmse_w": 0.8,
    "holdout_max_rel_err": 0.021,
    "package": {"idle_w": 30.0, "w_per_busy_cpu": 5.0, "w_per_gb": None, "idle_used_gb": None},
    "dram": {"idle_w": 4.0, "w_per_busy_cpu": 0.25},
}
MODEL = "Intel(R) Xeon(R) Test CPU @ 2.00GHz"


def test_match_is_by_cpu_model_and_scales_to_the_host():
    cals = {MODEL: ENTRY}
    assert C.match(cals, "Intel(R) Xeon(R) Other CPU") is None and C.match(cals, None) is None
    c = C.match(cals, "intel(r)  xeon(r) test cpu @ 2.00ghz", sockets=1, mem_total_bytes=64e9)
    assert (c.package.idle_w, c.package.w_per_busy_cpu, c.dram.idle_w, c.scaled) == (30.0, 5.0, 4.0, None)
    assert c.holdout_max_rel_err == 0.021 and "calhost" in c.describe() and "2026-11-20" in c.describe()
    two = C.match(cals, MODEL, sockets=2, mem_total_bytes=128e9)
    assert two.package.idle_w == 60.0 and two.package.w_per_busy_cpu == 5.0  # idle per package, W per CPU as is
    assert two.dram.idle_w == pytest.approx(8.0) and "2 sockets" in two.scaled and "dram idle" in two.scaled


def test_power_model_precedence():
    cals = {MODEL: ENTRY}
    site = {"name": "s", "cpu_calibrations": cals}
    m = A.power_model(SiteFacts.from_dict(site), 9.0, MODEL)
    assert (
        m.method == C.CALIBRATED
        and m.kind == "calibration"
        and (m.cpu_idle_w, m.dram_idle_w, m.w_per_thread) == (30.0, 4.0, 5.0)
    )
    # a site entry for every node is less specific than a calibration of the CPU model
    generic = {**site, "node_power": [{"cpu_idle_w": 99.0, "w_per_thread": 2.0}]}
    assert A.power_model(SiteFacts.from_dict(generic), None, MODEL).kind == "calibration"
    # ... which still applies to other CPUs
    assert A.power_model(SiteFacts.from_dict(generic), None, "Another CPU").cpu_idle_w == 99.0
    # a site entry naming the CPU model is more specific than the calibration: it wins, as it is
    specific = {**site, "node_power": [{"cpu_model": "Xeon(R) Test", "cpu_idle_w": 25.0, "source": "idle node"}]}
    m = A.power_model(SiteFacts.from_dict(specific), None, MODEL)
    assert m.calibration is None and m.method == "estimate-tdp" and (m.cpu_idle_w, m.kind) == (25.0, "site")
    # no calibration of this CPU: the TDP model, as before
    m = A.power_model(SiteFacts.from_dict(site), None, "Another CPU")
    assert m.calibration is None and m.cpu_idle_w is None and m.w_per_thread == A.DEFAULT_W_PER_THREAD


def test_site_facts_carry_the_calibrations():
    facts = site_facts({"x": {}}, "x", {MODEL: ENTRY})
    assert facts["cpu_calibrations"] == {MODEL: ENTRY}
    assert site_facts({"x": {}}, "x")["cpu_calibrations"] is None


# ------------------------------------------------------------------ the estimate meter with a calibration
def test_estimate_meter_applies_the_calibration():
    cal = C.match(
        {MODEL: {**ENTRY, "package": {"idle_w": 30.0, "w_per_busy_cpu": 5.0, "w_per_gb": 0.5, "idle_used_gb": 10.0}}},
        MODEL,
    )
    busy = iter([100.0, 106.0])  # node busy CPU-seconds at start and stop (with a calibration, construction reads none)
    clock = iter([10.0, 12.0])
    mem = iter([12e9, 16e9])  # used memory at start and stop: mean 14 GB over the window (trapezoid)
    m = EstimateMeter(
        calibration=cal,
        node_cpu=lambda: NodeCpu(0.0, next(busy), 0.0, 16),
        clock=lambda: next(clock),
        mem_used=lambda: next(mem),
    )
    assert m.components() == ("cpu", "dram")
    m.start()
    got = {r.component: r for r in m.stop()}
    pkg_static = 30.0 + 0.5 * (14.0 - 10.0)
    assert got["cpu"].energy_j == pytest.approx(pkg_static * 2.0 + 5.0 * 6.0) and got["cpu"].p0_w == pytest.approx(
        pkg_static
    )
    assert got["dram"].energy_j == pytest.approx(4.0 * 2.0 + 0.25 * 6.0) and got["dram"].p0_w == pytest.approx(4.0)
    for r in got.values():
        assert (r.method, r.estimated, r.scope, r.meter) == ("model-calibrated", True, "node", "estimate")


def test_the_split_of_a_calibrated_model_is_neighbour_invariant():
    """E_job = W x J + (A/N) x P0 x dt, with P0 and W the calibration's, whatever the neighbours do."""
    cal = C.match({MODEL: ENTRY}, MODEL)
    ctx = A.Context(cpus=4, mem_total=64e9, model=A.PowerModel(30.0, 4.0, 5.0, "cal", "calibration", cal), shared=True)
    for others in (0.0, 20.0):  # alone, and beside neighbours burning 20 CPU-seconds
        u = Usage(10.0, 160.0, 8.0 + others, 0.0, 8.0, 16e9, 16)
        e = 30.0 * 10.0 + 5.0 * u.node_busy_s
        node = Reading("estimate", "cpu", C.CALIBRATED, e, 10.0, 2, True, duration_s=10.0, p0_w=30.0)
        ((job, sp),) = A.attribute([node], u, ctx)
        assert sp.job_j == pytest.approx(5.0 * 8.0 + 4 / 16 * 30.0 * 10.0)
        assert ctx.p0(node, 16) == A.IdlePower(30.0, "calibration")


def test_a_calibrated_model_outranks_other_models_never_a_measurement():
    def r(meter, comp, method, est):
        return Reading(meter, comp, method, 1.0, 1.0, 10, est, scope="job")

    cal_dram = r("estimate", "dram", C.CALIBRATED, True)
    cc_ram = r("codecarbon", "ram-model", "codecarbon-ram-model", True)
    assert choose([cc_ram, cal_dram])["ram"] is cal_dram and choose([cal_dram, cc_ram])["ram"] is cal_dram
    rapl_dram = r("rapl", "dram", "rapl", False)
    assert choose([cal_dram, rapl_dram, cc_ram])["ram"] is rapl_dram


def test_model_prediction_beside_the_counter():
    cal = C.match({MODEL: ENTRY}, MODEL)
    model = A.PowerModel(30.0, 4.0, 5.0, "cal", "calibration", cal)

    def rd(meter, comp, method, e, est, scope):
        return Reading(meter, comp, method, e, 0.1, 100, est, scope=scope)

    all_r = [
        rd("rapl", "cpu", "rapl", 400.0, False, "node"),
        rd("rapl", "dram", "rapl", 50.0, False, "node"),
        rd("rapl", "cpu", "rapl", 100.0, False, "job"),
        rd("rapl", "dram", "rapl", 10.0, False, "job"),
        rd("estimate", "cpu", C.CALIBRATED, 380.0, True, "node"),
        rd("estimate", "dram", C.CALIBRATED, 54.0, True, "node"),
        rd("estimate", "cpu", C.CALIBRATED, 95.0, True, "job"),
        rd("estimate", "dram", C.CALIBRATED, 11.0, True, "job"),
    ]
    best = choose([r for r in all_r if r.scope == "job"])
    cols = model_columns(model, best, all_r)
    assert cols["model_method"] == C.CALIBRATED and cols["model_components"] == "cpu+dram"
    assert cols["model_node_energy_j"] == pytest.approx(434.0) and cols["model_energy_j"] == pytest.approx(106.0)
    assert cols["model_rel_err"] == pytest.approx(434.0 / 450.0 - 1)
    assert (
        cols["model_fit_max_rel_err"] == 0.021
        and cols["model_fit_rmse_w"] == 0.8
        and "calhost" in cols["model_calibration"]
    )
    # no counter: the model is the figure itself; no prediction columns, the calibration's error stays
    est_only = [r for r in all_r if r.meter == "estimate"]
    cols = model_columns(model, choose([r for r in est_only if r.scope == "job"]), est_only)
    assert (
        cols["model_method"] == C.CALIBRATED and "model_rel_err" not in cols and cols["model_fit_max_rel_err"] == 0.021
    )
