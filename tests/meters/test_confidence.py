"""The low-confidence flag (meters/confidence.py, docs/measurement.md "Sampling and low confidence"): the
relative error of energy_j from each chosen meter's update interval and resolution against the window, the
flag only above measure.energy_max_rel_err, with its reason. Expected values are recomputed here from the
documented formulas and the published constants (RAPL ~1 ms and 2^-16 J, NVML ~100 ms and 1 mJ, /proc/stat
10-ms ticks), not read from the module."""

from __future__ import annotations

import math

import pytest

from joulegrid.meters import confidence as C
from joulegrid.meters.base import Reading


def R(meter, comp, e, method=None, samples=2, scope="node", p0=None, est=False):
    return Reading(meter, comp, method or meter, e, 0.1, samples, est, scope=scope, p0_w=p0)


def pair(meter, comp, node_e, job_e, **kw):
    return R(meter, comp, job_e, scope="job", **kw), R(meter, comp, node_e, **kw)


def test_counters_error_is_one_update_at_each_edge_plus_resolution():
    # RAPL over 1 s: 2 x 1 ms / 1 s + 2 x 2^-16 J / 10 J
    rapl = pair("rapl", "cpu", 10.0, 5.0)
    got = C.columns([rapl], 1.0, 0.02)
    want = 2 * 1e-3 / 1.0 + 2 * 2**-16 / 10.0
    assert got["energy_rel_err"] == pytest.approx(want, rel=1e-12)
    assert got["energy_low_confidence"] is False and got["energy_low_confidence_reason"] is None
    # NVML over 6 s: 2 x 0.1 s / 6 s = 3.3 % > 2 %: flagged, with the reason naming the meter and the bound
    nvml = pair("nvml", "gpu", 600.0, 600.0)
    got = C.columns([nvml], 6.0, 0.02)
    want = 2 * 0.1 / 6.0 + 2 * 1e-3 / 600.0
    assert got["energy_rel_err"] == pytest.approx(want, rel=1e-12)
    assert got["energy_low_confidence"] is True
    assert "nvml" in got["energy_low_confidence_reason"] and "2.00%" in got["energy_low_confidence_reason"]
    # the same window is fine under a looser bound; a 60-s window is fine under 2 %
    assert C.columns([nvml], 6.0, 0.05)["energy_low_confidence"] is False
    assert C.columns([nvml], 60.0, 0.02)["energy_low_confidence"] is False


def test_partially_sampled_gpus_add_their_sampling_term():
    """A100/H100 sample 25 % of each 100-ms period: c sqrt((1-f)/f) / sqrt(T/u) with the assumed c = 10 %."""
    nvml = pair("nvml", "gpu", 3000.0, 3000.0)
    base = 2 * 0.1 / 10.0 + 2 * 1e-3 / 3000.0
    extra = 0.1 * math.sqrt(0.75 / 0.25) / math.sqrt(10.0 / 0.1)
    got = C.columns([nvml], 10.0, 0.02, gpu_model="NVIDIA H100 80GB HBM3")
    assert got["energy_rel_err"] == pytest.approx(base + extra, rel=1e-12)
    assert C.columns([nvml], 10.0, 0.02, gpu_model="Tesla V100")["energy_rel_err"] == pytest.approx(base, rel=1e-12)


def test_cpu_time_estimates_are_not_flagged_for_their_sample_count():
    """The estimate meter integrates the CPU time, exact up to one tick per CPU at each edge: two reads of a
    6-s window are enough. Only the dynamic part of the model (energy above p0 x T) carries that error."""
    n_cpus, busy, t, p0 = 2, 11.0, 6.0, 5.0
    node_e = 100.0  # static 30 J + dynamic 70 J
    est = pair("estimate", "cpu", node_e, 80.0, method="estimate-tdp", p0=p0, est=True, samples=2)
    got = C.columns([est], t, 0.02, n_cpus=n_cpus, busy_cpu_s=busy)
    want = 2 * n_cpus * 0.01 / busy * (node_e - p0 * t) / node_e
    assert got["energy_rel_err"] == pytest.approx(want, rel=1e-12)
    assert got["energy_low_confidence"] is False  # 0.25 %: an estimate is not low confidence for being one
    # a constant-power RAM model integrated over the window carries no reading error
    ram = pair("codecarbon", "ram-model", 3.0, 1.0, method="codecarbon-ram-model")
    both = C.columns([est, ram], t, 0.02, n_cpus=n_cpus, busy_cpu_s=busy)
    assert both["energy_rel_err"] == pytest.approx(want * 80.0 / 81.0, rel=1e-12)  # weighted by the job's energy


def test_parts_add_weighted_by_the_jobs_energy_and_a_window_of_nothing_has_no_error():
    rapl, nvml = pair("rapl", "cpu", 40.0, 20.0), pair("nvml", "gpu", 100.0, 100.0)
    t = 2.0
    e_rapl = 2 * 1e-3 / t + 2 * 2**-16 / 40.0
    e_nvml = 2 * 0.1 / t + 2 * 1e-3 / 100.0
    got = C.columns([rapl, nvml], t, 0.02)
    assert got["energy_rel_err"] == pytest.approx((20 * e_rapl + 100 * e_nvml) / 120, rel=1e-12)
    assert got["energy_low_confidence"] is True
    reason = got["energy_low_confidence_reason"]
    assert reason.index("nvml") < reason.index("rapl")  # the largest part first
    zero = C.columns([pair("rapl", "cpu", 0.0, 0.0)], t, 0.02)
    assert zero["energy_rel_err"] is None and zero["energy_low_confidence"] is True
    assert C.columns([], t, 0.02) == {}
