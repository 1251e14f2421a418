"""The direct NVML reader against a fake pynvml (no GPU in CI)."""

from __future__ import annotations

import sys

import pytest

from joulegrid.cell_settings import Measure
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


def test_job_gpus_from_cuda_visible_devices(gpus):
    assert nvml.job_gpus({}) == [0, 1, 2]  # unset: a workstation, every GPU
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == [0, 1]
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "2,0"}) == [2, 0]  # one GPU model: CUDA's order is PCI order
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}) == [1]  # UUID prefixes
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "10000"}) == []  # HTCondor: no GPU requested
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == [1]  # CUDA stops at an invalid index
    with pytest.raises(MeterUnavailable, match="does not exist"):
        nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "7"})
    with pytest.raises(MeterUnavailable, match="MIG"):
        nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "MIG-1234"})
    with pytest.raises(MeterUnavailable, match="matches 3"):
        nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "GPU-"})


def test_cuda_index_is_not_an_nvml_index_on_mixed_nodes(gpus):
    """CUDA numbers GPUs fastest first: on a node with two models an index cannot be matched."""
    gpus[0]["name"] = "Tesla T4"
    with pytest.raises(MeterUnavailable, match="CUDA_DEVICE_ORDER=PCI_BUS_ID"):
        nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "0"})
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}) == [0]
    assert nvml.job_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aaaa"}) == [0]


def test_job_gpus_from_the_scheduler(gpus):
    """Slurm renumbers CUDA_VISIBLE_DEVICES from 0; SLURM_JOB_GPUS has the real device numbers (minor)."""
    gpus[0]["minor"], gpus[1]["minor"], gpus[2]["minor"] = 4, 6, 5
    env = {"CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_GPUS": "5"}
    assert nvml.job_gpus(env) == [2]  # /dev/nvidia5 = NVML device 2, not CUDA index 0
    assert nvml.job_gpus({"SLURM_JOB_GPUS": "6,4", "SLURM_STEP_GPUS": "4"}) == [0]  # the step's, where set
    with pytest.raises(MeterUnavailable, match="device number 7"):
        nvml.job_gpus({"SLURM_JOB_GPUS": "7"})
    # HTCondor: UUID prefixes (or CUDA<n>), 10000 = none
    assert nvml.job_gpus({"_CONDOR_AssignedGPUs": "GPU-cccc", "CUDA_VISIBLE_DEVICES": "0"}) == [2]
    assert nvml.job_gpus({"_CONDOR_AssignedGPUs": "CUDA1"}) == [1]
    assert nvml.job_gpus({"_CONDOR_AssignedGPUs": "10000"}) == []
    assert nvml.gpu_uuids([2, 0]) == ["GPU-cccc3333-0000", "GPU-aaaa1111-0000"]


def test_energy_is_counter_difference_of_the_job_gpus(gpus):
    m = nvml.NvmlMeter([0, 2], interval_s=60)
    m.start()
    gpus[0]["energy_mj"] += 150_000  # 150 J
    gpus[1]["energy_mj"] += 999_000  # not ours
    gpus[2]["energy_mj"] += 50_500  # 50.5 J
    (r,) = m.stop()
    assert (r.meter, r.component, r.method, r.estimated) == ("nvml", "gpu", "nvml", False)
    assert r.energy_j == pytest.approx(200.5)
    assert r.samples == 2 and r.scope == "device"


def test_pre_volta_gpu_has_no_counter(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "pynvml", make([{"uuid": "GPU-x", "name": "Tesla K80", "energy_mj": 0, "counter": False}])
    )
    with pytest.raises(MeterUnavailable, match="Tesla K80.*no NVML total-energy counter"):
        nvml.NvmlMeter([0])


def test_no_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", make([], driver_ok=False))
    with pytest.raises(MeterUnavailable, match="NVML is not available"):
        nvml.job_gpus({})


def test_build_uses_nvml_for_cuda_cells_only(gpus, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    measure = Measure.from_dict({"meters": ["nvml", "estimate"], "counter_interval_s": 60})
    ms = build(measure, None, "cuda", rapl_root=str(tmp_path))
    (nv,) = [m for m in ms.meters if m.name == "nvml"]
    assert nv.gpu_indices == [1]
    ms = build(measure, None, "cpu", rapl_root=str(tmp_path))
    assert [m.name for m in ms.meters] == ["estimate"]
    assert ms.absent == [{"meter": "nvml", "reason": "not used in a cpu cell (GPU meters measure cuda cells)"}]


def test_the_jobs_gpu_energy_end_to_end(gpus, tmp_path):
    """A cuda cell under Slurm given /dev/nvidia2 (CUDA index 0 inside the job): its GPU energy is that
    device's, whole, its UUID is recorded, and the whole job's GPU energy is tracked by NVML too."""
    gpus[2]["minor"], gpus[0]["minor"] = 0, 2  # NVML device 0 is /dev/nvidia2
    env = {"SLURM_JOB_ID": "9", "SLURM_JOB_GPUS": "2", "CUDA_VISIBLE_DEVICES": "0", "SLURM_CPUS_ON_NODE": "1"}
    ms = build(
        Measure.from_dict({"meters": ["nvml"], "counter_interval_s": 60}),
        None,
        "cuda",
        rapl_root=str(tmp_path),
        env=env,
    )
    (nv,) = ms.meters
    assert nv.gpu_indices == [0]
    ms.start_job()
    ms.start("measured")
    gpus[0]["energy_mj"] += 250_000  # the job's GPU: 250 J
    gpus[1]["energy_mj"] += 900_000  # a neighbour's GPU of the same node: not the job's
    ms.stop()
    cols, _ = ms.finish(1.0)
    assert cols["energy_gpu_j"] == pytest.approx(250.0) and cols["node_energy_gpu_j"] == pytest.approx(250.0)
    assert cols["energy_attribution"] == "job-gpus" and cols["job_gpu_uuids"] == "GPU-aaaa1111-0000"
    assert cols["job_cpus"] == 1 and cols["job_cpus_source"] == "slurm"
    assert cols["job_energy_j"] >= 250.0  # the job-level NVML reader ran over the whole job
