"""The direct NVML reader against a fake pynvml (no GPU in CI)."""

from __future__ import annotations

import sys

import pytest

from joulegrid.meters import build, nvml
from joulegrid.meters.base import MeterUnavailable

from .fake_nvml import make


@pytest.fixture
def gpus(monkeypatch):
    g = [
        {"uuid": "GPU-aaaa1111-0000", "name": "A100", "energy_mj": 1_000_000},
        {"uuid": "GPU-bbbb2222-0000", "name": "A100", "energy_mj": 5_000_000},
        {"uuid": "GPU-cccc3333-0000", "name": "A100", "energy_mj": 9_000_000},
    ]
    monkeypatch.setitem(sys.modules, "pynvml", make(g))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return g


def test_visible_gpus_indices_uuids_and_default(gpus):
    assert nvml.visible_gpus({}) == [0, 1, 2]
    assert nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,0"}) == [2, 0]
    assert nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}) == [1]  # HTCondor gives UUID prefixes
    assert nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == [1]  # CUDA stops at an invalid index
    with pytest.raises(MeterUnavailable, match="does not exist"):
        nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": "7"})
    with pytest.raises(MeterUnavailable, match="MIG"):
        nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": "MIG-1234"})
    with pytest.raises(MeterUnavailable, match="matches 3"):
        nvml.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-"})


def test_energy_is_counter_difference_of_the_visible_gpus(gpus):
    m = nvml.NvmlMeter([0, 2], interval_s=60)
    m.start()
    gpus[0]["energy_mj"] += 150_000  # 150 J
    gpus[1]["energy_mj"] += 999_000  # not ours
    gpus[2]["energy_mj"] += 50_500  # 50.5 J
    (r,) = m.stop()
    assert (r.meter, r.component, r.method, r.estimated) == ("nvml", "gpu", "nvml", False)
    assert r.energy_j == pytest.approx(200.5)
    assert r.samples == 2


def test_pre_volta_gpu_has_no_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make([{"uuid": "GPU-x", "name": "Tesla K80", "energy_mj": 0, "counter": False}]))
    with pytest.raises(MeterUnavailable, match="Tesla K80.*no NVML total-energy counter"):
        nvml.NvmlMeter([0])


def test_no_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make([], driver_ok=False))
    with pytest.raises(MeterUnavailable, match="NVML is not available"):
        nvml.visible_gpus({})


def test_build_uses_nvml_for_cuda_cells_only(gpus, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    settings = {"measure": {"meters": ["nvml", "estimate"], "counter_interval_s": 60}}
    ms = build(settings, "cuda", rapl_root=str(tmp_path))
    (nv,) = [m for m in ms.meters if m.name == "nvml"]
    assert nv.gpu_indices == [1]
    ms = build(settings, "cpu", rapl_root=str(tmp_path))
    assert [m.name for m in ms.meters] == ["estimate"]
    assert ms.absent == [{"meter": "nvml", "reason": "not used in a cpu cell (GPU meters measure cuda cells)"}]
