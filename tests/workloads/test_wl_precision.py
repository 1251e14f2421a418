"""Precisions, variants and time-to-target through the real cell runner (tiny data, CPU)."""

import copy

import numpy as np
import pytest
import torch
from .wlkit import assert_ok, base_config, needs_fashion

from joulegrid import flops, precision, variants
from joulegrid.grid import builtin_exclusion

CPU_TRAIN = ["fp64", "fp32", "bf16", "fp16", "fp16_noscaler"]
CPU_INFER = ["fp64", "fp32", "bf16", "fp16", "int8"]


@pytest.mark.parametrize("prec", CPU_TRAIN)
def test_each_cpu_training_precision_runs(cells, prec):
    row = cells.run("jet_tagger", "train", prec)
    assert_ok(row)
    assert row["precision"] == prec and row["epochs"] == 2 and len(row["epoch_loss"]) == 2
    assert 0.5 < row["roc_auc"] <= 1 and row["quality"] == row["roc_auc"]
    assert row["flops_per_sample_train"] > 2 * row["flops_per_sample_fwd"] > 0
    assert row["flops_per_s"] > 0 and row["mfu"] is None  # no peak known for a CPU
    impl = {"fp64": "float64", "fp32": "float32", "bf16": "autocast(bfloat16)",
            "fp16": "autocast(float16)+GradScaler", "fp16_noscaler": "autocast(float16), no GradScaler"}[prec]
    assert row["precision_impl"].startswith(impl)


@pytest.mark.parametrize("prec", CPU_INFER)
def test_each_cpu_inference_precision_runs(cells, prec):
    row = cells.run("jet_tagger", "infer", prec)
    assert_ok(row)
    assert row["epochs"] == 0 and row["infer_passes"] == 1 and row["n_samples"] == row["n_test"]
    assert 0.5 < row["roc_auc"] <= 1
    if prec == "fp16":
        assert row["precision_impl"] == "autocast(float16)"  # no GradScaler at inference
    if prec == "int8":
        assert "quantize_(Int8DynamicActivationInt8WeightConfig)" in row["precision_impl"]
        assert "4 Linear layer(s) int8" in row["precision_impl"]


def test_baler_fp64_training_stays_fp64(cells):
    row, runner = cells.run("baler_ae", "train", "fp64", keep_runner=True)
    assert_ok(row)
    assert all(p.dtype == torch.float64 for p in runner.model.parameters())
    assert row["compression_ratio"] == 2.0
    fp32 = cells.run("baler_ae", "train", "fp32")
    assert abs(row["model_size_bytes"] - 2 * fp32["model_size_bytes"]) < 0.05 * fp32["model_size_bytes"]
    assert row["n_params"] == fp32["n_params"]


def test_int8_is_smaller_than_fp32_in_the_runner(cells):
    fp32 = cells.run("jet_tagger", "infer", "fp32")
    int8 = cells.run("jet_tagger", "infer", "int8")
    assert_ok(int8)
    assert int8["model_size_bytes"] < 0.5 * fp32["model_size_bytes"]
    assert int8["n_params"] == fp32["n_params"]
    assert int8["flops_per_sample_fwd"] == fp32["flops_per_sample_fwd"]  # counted on the float model


@pytest.mark.parametrize("name", ["baler_ae", "jet_tagger", pytest.param("image_cnn", marks=needs_fashion)])
def test_int8_model_is_smaller_for_every_workload(name):
    from joulegrid.workloads.baler_ae import make_autoencoder
    from joulegrid.workloads.image_cnn import make_cnn
    from joulegrid.workloads.jet_tagger import make_mlp

    build = {"baler_ae": lambda: make_autoencoder(24, 12), "jet_tagger": lambda: make_mlp(24),
             "image_cnn": lambda: make_cnn((3, 32, 32), 10, 0.0, 1.0)}[name]
    p = precision.get("int8", "infer")
    size32 = flops.model_stats(build())["model_size_bytes"]
    q = p.prepare_model(build(), "cpu", "infer")
    size8 = flops.model_stats(q)["model_size_bytes"]
    assert size8 < size32
    if name == "image_cnn":
        assert "2 Linear layer(s) int8, 3 conv layer(s) fp32" in p.impl
    x = torch.zeros(2, 3, 32, 32) if name == "image_cnn" else torch.zeros(2, 24)
    assert torch.isfinite(q(x)).all()


def test_int8_refuses_models_without_linear_layers_and_training():
    with pytest.raises(precision.Unsupported, match="no Linear layers"):
        precision.get("int8", "infer").prepare_model(torch.nn.Conv2d(1, 1, 3), "cpu", "infer")
    with pytest.raises(precision.Unsupported, match="inference on CPU"):
        precision.get("int8", "train").check("cpu")
    with pytest.raises(ValueError, match="unknown precision"):
        precision.get("fp8")


def test_unsupported_precision_is_a_skipped_row(cells):
    row = cells.run("jet_tagger", "train", "int8")  # the grid would exclude it; the runner says why too
    assert row["status"] == "skipped" and "inference on CPU" in row["skip_reason"]


def test_grid_exclusions_with_reasons():
    assert "inference" in builtin_exclusion("train", "cpu", "int8", "baseline")
    assert "CPU only" in builtin_exclusion("infer", "cuda", "int8", "baseline")
    assert "fp16_noscaler" in builtin_exclusion("infer", "cpu", "fp16_noscaler", "baseline")
    assert builtin_exclusion("train", "cpu", "fp16", "baseline") is None  # MLPs: measurable
    from joulegrid.workloads.image_cnn import ImageCNN

    rules = ImageCNN.EXCLUSIONS
    assert "slower" in builtin_exclusion("train", "cpu", "fp16", "baseline", {}, rules)
    assert "slower" in builtin_exclusion("train", "cpu", "fp16_noscaler", "pruned", {}, rules)
    assert builtin_exclusion("train", "cpu", "fp16", "baseline", {"cpu_fp16": True}, rules) is None
    assert builtin_exclusion("infer", "cpu", "fp16", "baseline", {}, rules) is None
    assert builtin_exclusion("train", "cuda", "fp16", "baseline", {}, rules) is None


def test_pruned_inference_zeroes_30_percent_of_weights(cells):
    base = cells.run("jet_tagger", "infer", "fp32")
    row = cells.run("jet_tagger", "infer", "fp32", "pruned")
    assert_ok(row)
    from joulegrid.workloads.jet_tagger import make_mlp

    n_weights = sum(m.weight.numel() for m in make_mlp(24).modules() if isinstance(m, torch.nn.Linear))
    assert base["n_params"] - row["n_params_nonzero"] == round(0.3 * n_weights)
    assert row["flops_per_sample_fwd"] == base["flops_per_sample_fwd"]  # dense kernels: same FLOPs
    assert "trained fp32 reference model" in row["variant_impl"] and base["variant_impl"] == "baseline"


def test_pruned_training_keeps_the_mask(cells):
    cfg = base_config({"jet_tagger": {"prune_amount": 0.5}})
    row, runner = cells.run("jet_tagger", "train", "bf16", "pruned", cfg=cfg, keep_runner=True)
    assert_ok(row)
    assert "at initialisation, mask kept during training" in row["variant_impl"] and "50%" in row["variant_impl"]
    weights = [m.weight for m in runner.model.modules() if isinstance(m, torch.nn.Linear)]
    n = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(0.5 * n)  # still exactly the pruned share after training
    assert not any(k.endswith(("_orig", "_mask")) for k in runner.model.state_dict())  # masks folded in


def test_variants_helpers():
    m = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 2))
    variants.apply(m, "pruned", "train", 0.3)
    c = variants.copy_model(m)  # deepcopy works with masks attached
    assert variants.strip_masks(c) is not c
    variants.finalize(m)
    assert variants.strip_masks(m) is m
    with pytest.raises(ValueError, match="unknown variant"):
        variants.apply(m, "distilled", "train")


def test_time_to_target(cells):
    reach = base_config({"jet_tagger": {"epochs": 4, "target_quality": 0.6}})
    row = cells.run("jet_tagger", "train", "fp32", cfg=reach)
    assert_ok(row)
    assert row["epochs"] == 1 and row["target_quality"] == 0.6
    assert row["epoch_quality"][0] >= 0.6
    assert row["time_to_target_s"] == pytest.approx(row["epoch_wall_s"][0])
    never = base_config({"jet_tagger": {"epochs": 2, "target_quality": 0.9999}})
    row = cells.run("jet_tagger", "train", "fp32", cfg=never)
    assert row["epochs"] == 2 and row["time_to_target_s"] is None


def test_inference_repeats_score_the_reference_on_the_same_split(cells):
    r0 = cells.run("jet_tagger", "infer", "fp32", repeat=0)
    r1 = cells.run("jet_tagger", "infer", "fp32", repeat=1)
    assert r0["seed"] != r1["seed"]
    assert r0["roc_auc"] == r1["roc_auc"] and r0["n_test"] == r1["n_test"]


@needs_fashion
def test_image_cnn_cells(cells):
    train = cells.run("image_cnn", "train", "fp32")
    assert_ok(train)
    assert train["flops_per_sample_fwd"] == 9_097_216 and train["n_params"] == 122_570
    assert 0.1 <= train["accuracy"] <= 1
    infer = cells.run("image_cnn", "infer", "int8")
    assert_ok(infer)
    assert "conv layer(s) fp32" in infer["precision_impl"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("prec", ["fp32", "bf16", "fp16", "fp16_noscaler"])
def test_cuda_training_precisions(cells, prec):
    import joulegrid.grid as G
    from joulegrid.runner import CellRunner

    sb = cells.builder(base_config())
    spec = sb.spec(G.Cell("local", "jet_tagger", "train", "cuda", prec, "baseline", 64, 0))
    spec = copy.deepcopy(spec)
    row = CellRunner(spec, "unused", cells.data_path("jets", 1500), None, measure_energy=False).run()
    if prec == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        assert row["status"] == "skipped"
        return
    assert_ok(row)
    assert row["gpu_model"] and row["peak_device_mem_allocated_bytes"] > 0
    if row["device_peak_flops"]:
        assert 0 < row["mfu"] < 1
    assert np.isfinite(row["quality"])


def test_int8_falls_back_to_the_deprecated_api_without_torchao_and_says_so(monkeypatch):
    from joulegrid.workloads.jet_tagger import make_mlp

    monkeypatch.setitem(__import__("sys").modules, "torchao", None)  # import torchao -> ImportError
    p = precision.get("int8", "infer")
    q = p.prepare_model(make_mlp(24), "cpu", "infer")
    assert "torch.ao.quantization.quantize_dynamic" in p.impl and "DEPRECATED" in p.impl
    stats = flops.model_stats(q)
    assert stats["n_params"] == flops.model_stats(make_mlp(24))["n_params"]  # packed int8 weights counted
    assert stats["model_size_bytes"] < flops.model_stats(make_mlp(24))["model_size_bytes"]
    assert q(torch.zeros(3, 24)).shape == (3, 1)
