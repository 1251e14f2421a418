"""zeus: the real ZeusMonitor on this host (time only: no RAPL, no GPU) and window conversion with a
fake monitor standing in for the GPU/RAPL counters CI cannot have."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from joulegrid.meters import rapl
from joulegrid.meters.base import MeterUnavailable
from joulegrid.meters.zeus_meter import ZeusMeter

from .test_rapl_meter import zone


def test_unavailable_without_gpu_or_rapl(tmp_path):
    with pytest.raises(MeterUnavailable, match="time only"):
        ZeusMeter([], rapl_root=str(tmp_path))


def test_real_zeus_on_a_host_without_counters_measures_time_only(tmp_path, monkeypatch):
    # make the cheap probe believe RAPL is readable, so that the real zeus is imported and asked
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1)
    m = ZeusMeter([], rapl_root=str(root))
    if rapl.discover(rapl.POWERCAP):
        pytest.skip("this host has RAPL: zeus may measure it")
    with pytest.raises(MeterUnavailable, match="time only"):
        m.prepare()


@dataclass
class FakeMeasurement:
    time: float
    gpu_energy: dict
    cpu_energy: dict | None = None
    dram_energy: dict | None = None


class FakeMonitor:
    """ZeusMonitor's window API over settable cumulative counters."""

    def __init__(self, gpu_indices, cpu_indices=None):
        self.gpu_indices = list(gpu_indices)
        self.cpu_indices = [0, 1] if cpu_indices is None else list(cpu_indices)
        self.power_monitor = None
        self.gpu = {i: 0.0 for i in self.gpu_indices}
        self.cpu = {i: 0.0 for i in self.cpu_indices}
        self.dram = {i: 0.0 for i in self.cpu_indices}
        self.windows = {}

    def begin_window(self, key, sync_execution=True):
        self.windows[key] = (dict(self.gpu), dict(self.cpu), dict(self.dram))

    def end_window(self, key, sync_execution=True, cancel=False):
        g0, c0, d0 = self.windows.pop(key)
        return FakeMeasurement(
            1.0,
            {i: self.gpu[i] - g0[i] for i in self.gpu},
            {i: self.cpu[i] - c0[i] for i in self.cpu} or None,
            {i: self.dram[i] - d0[i] for i in self.dram} or None,
        )


def test_window_readings_sum_devices_per_component(tmp_path):
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1)
    mons = []

    def factory(**kw):
        mons.append(FakeMonitor(**kw))
        return mons[-1]

    m = ZeusMeter([0, 1], rapl_root=str(root), monitor_factory=factory)
    m.prepare()
    assert set(m.components()) == {"cpu", "dram", "gpu"}
    for _window in range(2):  # windows one after the other, as idle + measured
        m.start()
        mon = mons[0]
        mon.gpu[0] += 100.0
        mon.gpu[1] += 50.0
        mon.cpu[0] += 30.0
        mon.cpu[1] += 10.0
        mon.dram[0] += 4.0
        got = {r.component: r for r in m.stop()}
        assert got["gpu"].energy_j == pytest.approx(150.0)
        assert got["cpu"].energy_j == pytest.approx(40.0)
        assert got["dram"].energy_j == pytest.approx(4.0)
        assert {r.method for r in got.values()} == {"zeus-nvml", "zeus-rapl"}
        assert all(not r.estimated and r.samples == 2 for r in got.values())
    assert mons[0].windows == {}


def test_gpu_only_when_rapl_unreadable(tmp_path):
    m = ZeusMeter([0], rapl_root=str(tmp_path), monitor_factory=lambda **kw: FakeMonitor(**kw))
    m.prepare()
    assert m.components() == ("gpu",)
    m.start()
    m._mon.gpu[0] += 7.0
    (r,) = m.stop()
    assert (r.component, r.energy_j) == ("gpu", 7.0)


def test_monitor_errors_become_unavailable(tmp_path):
    def boom(**kw):
        raise ValueError("GPU index 0 out of range")

    m = ZeusMeter([0], rapl_root=str(tmp_path), monitor_factory=boom)
    with pytest.raises(MeterUnavailable, match="ZeusMonitor could not start: ValueError"):
        m.prepare()
