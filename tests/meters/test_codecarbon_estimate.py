"""codecarbon (the real offline tracker: on this host a TDP/load model) and the estimate model."""

from __future__ import annotations

import time

import pytest

from joulegrid.meters import codecarbon_meter as ccm
from joulegrid.meters.estimate import DEFAULT_W_PER_THREAD, EstimateMeter


@pytest.fixture(scope="module")
def cc():
    m = ccm.CodecarbonMeter("FRA", 56.0, interval_s=0.5)
    m.prepare()
    yield m
    m.close()


def test_tracker_settings_offline_site_and_no_pue_in_energy(cc):
    kw = cc._kwargs
    assert kw["country_iso_code"] == "FRA" and kw["force_carbon_intensity_g_co2e_kwh"] == 56.0
    assert kw["pue"] == 1.0  # PUE is applied once, in co2_kg
    assert kw["output_methods"] == [] and kw["tracking_mode"] == "machine"
    assert "gpu_ids" not in kw
    assert type(cc._fresh).__name__ == "OfflineEmissionsTracker"


def _rapl_readable() -> bool:
    """Whether this host's RAPL package counters are readable (then codecarbon reads them, else it models the CPU)."""
    import glob
    import os

    return any(os.access(p, os.R_OK) for p in glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj"))


def test_two_windows_in_a_row_and_methods(cc):
    """Each window's readings, from what the host has and codecarbon's own power models, not from joulegrid:
    the CPU method follows from whether RAPL is readable here; the RAM model is a constant power (codecarbon's
    RAM model of this host), so its energy is that power over at least the time slept in the window and at most
    the window joulegrid timed (a last interval counted twice, codecarbon 3.3's race, would exceed it); the
    modelled CPU power never exceeds the TDP."""
    for _ in range(2):  # a codecarbon tracker cannot restart: each window gets a fresh one
        cc.start()
        t = cc._tracker
        assert getattr(t._measure_power_and_energy, "joulegrid_serialised", False)
        assert t._scheduler.function is t._measure_power_and_energy
        time.sleep(0.6)
        rs = {r.component: r for r in cc.stop()}
        assert set(rs) == {"cpu", "ram-model"}  # a cpu cell reports no GPU energy
        hw = {type(h).__name__: h for h in t._hardware}
        if _rapl_readable():
            assert (rs["cpu"].method, rs["cpu"].estimated) == ("codecarbon-rapl", False)
        else:  # no counter: a TDP model, with or without the load
            assert rs["cpu"].method in ("codecarbon-tdp-load", "codecarbon-tdp-constant") and rs["cpu"].estimated
            assert 0 < rs["cpu"].energy_j <= hw["CPU"]._tdp * rs["cpu"].duration_s
        ram_w = hw["RAM"].total_power().W
        assert rs["ram-model"].method == "codecarbon-ram-model" and rs["ram-model"].estimated
        ram = rs["ram-model"]
        # codecarbon integrates from start() to stop(): the 0.6 s slept between them (less up to 10 ms: its
        # timestamps are taken inside start() and stop(), on its own clock; 0.5994 s seen), at most the
        # window joulegrid timed around both calls
        assert ram_w * 0.59 <= ram.energy_j <= ram_w * ram.duration_s, (ram_w, ram)
        # at least one periodic sample (every 0.5 s) and the final one at stop
        assert all(r.samples >= 2 and r.interval_s == 0.5 and r.duration_s >= 0.6 for r in rs.values()), rs


class _HW:
    def __init__(self, mode):
        self._mode = mode


def test_cpu_method_from_detected_hardware():
    def tracker(mode):
        cpu = type("CPU", (_HW,), {})(mode)
        return type("T", (), {"_hardware": [type("RAM", (), {})(), cpu]})()

    assert ccm.cpu_method(tracker("intel_rapl")) == ("codecarbon-rapl", False)
    assert ccm.cpu_method(tracker("cpu_load")) == ("codecarbon-tdp-load", True)
    assert ccm.cpu_method(tracker("constant")) == ("codecarbon-tdp-constant", True)
    assert ccm.cpu_method(tracker("weird")) == ("codecarbon-weird", True)
    assert ccm.cpu_method(type("T", (), {"_hardware": []})()) == ("codecarbon-unknown", True)


def test_gpu_reading_only_with_gpu_ids():
    m = ccm.CodecarbonMeter(None, None, gpu_ids=[1, 3])
    assert m._kwargs["gpu_ids"] == [1, 3]
    assert m.components() == ("cpu", "ram-model", "gpu") and not m.estimated("gpu")


def test_estimate_is_a_linear_node_model():
    """E_node = P0 x dt + W x (node busy CPU-seconds): a NODE model, split into the job's share later."""
    from joulegrid.meters.usage import NodeCpu

    busy = iter([0.0, 100.0, 103.0, 104.5])  # node busy CPU-seconds: construction (N), start, lap, stop
    clock = iter([50.0, 52.0, 53.0])
    m = EstimateMeter(
        6.0, cpu_idle_w=10.0, node_cpu=lambda: NodeCpu(0.0, next(busy), 0.0, 4), clock=lambda: next(clock)
    )
    m.start()
    assert m.lap() == {"cpu": pytest.approx(10.0 * 2.0 + 6.0 * 3.0)}
    (r,) = m.stop()
    assert (r.meter, r.component, r.method, r.estimated, r.scope) == ("estimate", "cpu", "estimate-tdp", True, "node")
    assert r.energy_j == pytest.approx(10.0 * 3.0 + 6.0 * 4.5)
    assert r.samples == 3
    # defaults: 4 W per thread (codecarbon's fallback), P0 = 10 % of the model's TDP (N x W)
    m = EstimateMeter(None, node_cpu=lambda: NodeCpu(0.0, 0.0, 0.0, 8))
    assert m.w_per_thread == DEFAULT_W_PER_THREAD == 4.0 and m.idle_w == pytest.approx(0.1 * 8 * 4.0)
