"""FLOPs of known small models equal the hand-computed counts; peaks, FLOP/s and MFU."""

import numpy as np
import pytest
import torch
from torch import nn

from joulegrid import flops
from joulegrid.workloads.base import Split, Workload


class _Probe(Workload):
    """A minimal workload around a given model, for count_flops."""

    def __init__(self, model, loss_fn):
        super().__init__({}, 0)
        self.model, self.loss_fn = model, loss_fn

    def load_data(self, path):  # pragma: no cover - unused
        raise NotImplementedError

    def build_model(self, split):  # pragma: no cover - unused
        return self.model

    def loss(self, model, xb, yb):
        return self.loss_fn(model(xb), yb)

    def evaluate(self, outputs, x, y):  # pragma: no cover - unused
        return {}


def _split(x, y=None):
    return Split(x, y, x, y, n_features=x.shape[1])


def test_linear_forward_and_training_flops():
    # Linear 4 -> 3: forward 2*4*3 = 24 FLOP/sample (addmm). Training: forward 24 + weight gradient
    # 2*4*3 = 24; no input gradient (the input needs none) -> 48.
    torch.manual_seed(0)
    wl = _Probe(nn.Linear(4, 3), lambda out, y: out.pow(2).mean())
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    res = flops.count_flops(wl, wl.model, _split(x), batch_size=5, phase="train")
    assert res["flops_per_sample_fwd"] == 24
    assert res["macs_per_sample_fwd"] == 12
    assert res["flops_per_sample_train"] == 48
    assert "flops_per_sample_train" not in flops.count_flops(wl, wl.model, _split(x), 5, "infer")


def test_two_layer_mlp_backward_counts_the_input_gradient_of_the_second_layer():
    # 4 -> 8 -> 2: forward 2*(4*8 + 8*2) = 96; backward: weight grads 2*(32 + 16) = 96, input grad
    # of the second layer 2*16 = 32 -> training 96 + 96 + 32 = 224 per sample
    wl = _Probe(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), lambda out, y: out.sum())
    x = np.ones((7, 4), dtype=np.float32)
    res = flops.count_flops(wl, wl.model, _split(x), batch_size=7, phase="train")
    assert res["flops_per_sample_fwd"] == 96
    assert res["flops_per_sample_train"] == 224


def test_conv_flops():
    # Conv2d 1 -> 2, 3x3 on 5x5 -> 2 x 3 x 3 outputs of 9 MACs each = 162 MACs = 324 FLOPs
    wl = _Probe(nn.Conv2d(1, 2, 3, bias=False), lambda out, y: out.sum())
    x = np.ones((4, 1, 5, 5), dtype=np.float32)
    x = Split(x, None, x, None)
    assert flops.count_flops(wl, wl.model, x, 4, "infer")["flops_per_sample_fwd"] == 324


def test_image_cnn_flops_and_parameters_match_the_hand_count():
    from joulegrid.workloads.image_cnn import make_cnn

    # conv1 30*30*32*27 + conv2 13*13*64*288 + conv3 4*4*64*576 + fc 1024*64 + 64*10 MACs, x2
    macs = 30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 4 * 4 * 64 * 576 + 1024 * 64 + 64 * 10
    model = make_cnn((3, 32, 32), 10, 0.0, 1.0)
    wl = _Probe(model, lambda out, y: nn.functional.cross_entropy(out, y))
    x = np.zeros((3, 3, 32, 32), dtype=np.uint8)
    y = np.zeros(3, dtype=np.int64)
    res = flops.count_flops(wl, model, Split(x, y, x, y), 3, "train")
    assert res["flops_per_sample_fwd"] == 2 * macs == 9_097_216
    assert res["flops_per_sample_train"] > 2 * res["flops_per_sample_fwd"]
    stats = flops.model_stats(model)
    assert stats["n_params"] == 122_570  # the TensorFlow tutorial network's count
    assert stats["n_params_nonzero"] <= stats["n_params"]


def test_jet_tagger_mlp_flops():
    from joulegrid.workloads.jet_tagger import make_mlp

    model = make_mlp(24)
    wl = _Probe(model, lambda out, y: out.sum())
    x = np.zeros((2, 24), dtype=np.float32)
    assert flops.count_flops(wl, model, _split(x), 2, "infer")["flops_per_sample_fwd"] == 2 * (
        24 * 128 + 128 * 64 + 64 * 32 + 32
    )


def test_model_stats_counts_stored_bytes_and_parameters():
    m = nn.Linear(100, 10)
    s32 = flops.model_stats(m)
    s64 = flops.model_stats(nn.Linear(100, 10).double())
    assert s32["n_params"] == 1010 and s32["n_params_nonzero"] == 1010
    assert 4040 < s32["model_size_bytes"] < 4040 + 2000  # 4 bytes per parameter + pickling overhead
    assert abs(s64["model_size_bytes"] - s32["model_size_bytes"] - 4040) < 128  # +4 bytes each (zip padding aside)


def test_peak_table_lookup():
    T = 1e12
    assert flops.device_peak_flops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.5 * T)
    assert flops.device_peak_flops("NVIDIA H100 PCIe", "fp16_noscaler") == pytest.approx(756 * T)
    assert flops.device_peak_flops("NVIDIA H200", "fp32") == pytest.approx(67 * T)
    assert flops.device_peak_flops("NVIDIA A100-SXM4-40GB", "fp64") == pytest.approx(19.5 * T)
    assert flops.device_peak_flops("Tesla V100-PCIE-32GB", "fp32") == pytest.approx(14 * T)
    assert flops.device_peak_flops("Tesla V100-SXM2-16GB", "fp16") == pytest.approx(125 * T)
    assert flops.device_peak_flops("Tesla T4", "fp16") == pytest.approx(65 * T)
    assert flops.device_peak_flops("NVIDIA L4", "bf16") == pytest.approx(121 * T)
    assert flops.device_peak_flops("Tesla T4", "bf16") is None  # Turing has no bf16
    assert flops.device_peak_flops("NVIDIA GeForce RTX 4090", "fp32") is None  # not in the table
    assert flops.device_peak_flops("NVIDIA A100", "int8") == pytest.approx(624 * T)  # dense int8 Tensor Core ops/s
    assert flops.device_peak_flops("NVIDIA H100 PCIe", "int8") == pytest.approx(3026 / 2 * T)  # datasheet's sparse / 2
    assert flops.device_peak_flops("Tesla V100-SXM2-16GB", "int8") is None  # no int8 Tensor Cores
    assert flops.device_peak_flops(None, "fp32") is None


def test_throughput_and_mfu():
    r = flops.throughput(1e9, 1000, 2.0, "cuda", "NVIDIA A100-SXM4-80GB", "fp32")
    assert r["flops_per_s"] == pytest.approx(5e11)
    assert r["device_peak_flops"] == pytest.approx(19.5e12)
    assert r["mfu"] == pytest.approx(5e11 / 19.5e12)
    cpu = flops.throughput(1e9, 1000, 2.0, "cpu", None, "fp32")
    assert cpu["flops_per_s"] == pytest.approx(5e11) and cpu["device_peak_flops"] is None and cpu["mfu"] is None
    assert flops.throughput(None, 1000, 2.0, "cpu", None, "fp32")["flops_per_s"] is None
