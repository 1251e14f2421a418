"""Precisions, variants and time-to-target through the real cell runner (tiny data, CPU)."""

import copy

import numpy as np
import pytest
import torch

from joulegrid import flops, precision, probes, variants
from joulegrid.grid import builtin_exclusion

from .wlkit import assert_ok, base_config, needs_fashion

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
    impl = {
        "fp64": "float64",
        "fp32": "float32",
        "bf16": "autocast(bfloat16)",
        "fp16": "autocast(float16)+GradScaler",
        "fp16_noscaler": "autocast(float16), no GradScaler",
    }[prec]
    assert row["precision_impl"].startswith(impl)


@pytest.mark.parametrize("prec", CPU_INFER)
def test_each_cpu_inference_precision_runs(cells, prec):
    row = cells.run("jet_tagger", "infer", prec)
    assert_ok(row)
    assert row["epochs"] == 0 and row["infer_passes"] == 1 and row["n_samples"] == row["n_test"]
    assert 0.5 < row["roc_auc"] <= 1
    if prec == "fp16":
        assert row["precision_impl"] == "autocast(float16)"  # no GradScaler at inference
    if prec == "int8":  # the rule's backend for this host, static, calibrated on training samples
        backend, _ = precision.choose_int8("cpu", probes.cpu_flags(), probes.cpu_arch())
        assert row["precision_backend"] == backend and row["precision_scheme"] == "static"
        assert row["precision_backend_pinned"] is False
        assert (
            f"[{backend}: " in row["precision_impl"] and "calibrated on 512 training samples" in row["precision_impl"]
        )
        assert row["precision_impl"].endswith(": 4 Linear layer(s) int8")
    else:
        assert row["precision_backend"] is None and row["precision_scheme"] is None
    assert row["precision_native"] is precision.native(prec, "cpu", probes.cpu_flags(), probes.cpu_arch())
    assert row["cpu_flags"] == probes.flags_column(probes.cpu_flags())


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
@pytest.mark.parametrize("scheme", ["static", "dynamic"])
def test_int8_model_is_smaller_for_every_workload(name, scheme):
    from joulegrid.workloads.baler_ae import make_autoencoder
    from joulegrid.workloads.image_cnn import make_cnn
    from joulegrid.workloads.jet_tagger import make_mlp

    build = {
        "baler_ae": lambda: make_autoencoder(24, 12),
        "jet_tagger": lambda: make_mlp(24),
        "image_cnn": lambda: make_cnn((3, 32, 32), 10, 0.0, 1.0),
    }[name]
    x = torch.randn(40, 3, 32, 32) if name == "image_cnn" else torch.randn(40, 24)
    p = precision.get("int8", "infer", {"scheme": scheme})
    size32 = flops.model_stats(build())["model_size_bytes"]
    q = p.prepare_model(build(), "cpu", "infer", calibration=x)
    size8 = flops.model_stats(q)["model_size_bytes"]
    assert size8 < size32
    if name == "image_cnn":
        want = (
            "3 conv layer(s) int8, 2 Linear layer(s) int8"
            if scheme == "static"
            else "2 Linear layer(s) int8, 3 conv layer(s) fp32"
        )
        assert p.impl.endswith(want)
    assert ("calibrated on 40 training samples" in p.impl) is (scheme == "static")
    assert torch.isfinite(q(x[:2])).all()


def test_static_int8_quantizes_the_cnn_convolutions_and_keeps_its_outputs():
    """Static int8 of the CNN: every Conv2d and Linear replaced by a quantized module (none left in float),
    and its logits stay close to the float model's on data like the calibration data."""
    from torch.ao.nn import quantized as nnq

    from joulegrid.workloads.image_cnn import make_cnn

    torch.manual_seed(0)
    model = make_cnn((3, 32, 32), 10, 100.0, 60.0).eval()
    cal = torch.randint(0, 256, (256, 3, 32, 32)).float()  # raw pixels: the model standardises them
    p = precision.get("int8", "infer", {"scheme": "static", "calibration_samples": 200})
    q = p.prepare_model(copy.deepcopy(model), "cpu", "infer", calibration=cal)
    mods = list(q.modules())
    assert sum(isinstance(m, nnq.Conv2d) for m in mods) == 3 and sum(isinstance(m, nnq.Linear) for m in mods) == 2
    assert not any(type(m) in (torch.nn.Conv2d, torch.nn.Linear) for m in mods)
    assert precision.quantized_layers(q) == {"linear_int8": 2, "conv_int8": 3, "linear_fp": 0, "conv_fp": 0, "int8": 5}
    assert "calibrated on 200 training samples" in p.impl
    with torch.no_grad():
        ref, out = model(cal[200:]), q(cal[200:])
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


def test_int8_refuses_what_it_cannot_quantize_and_training():
    with pytest.raises(precision.Unsupported, match="no Linear layers"):
        precision.get("int8", "infer", {"scheme": "dynamic"}).prepare_model(torch.nn.Conv2d(1, 1, 3), "cpu", "infer")
    with pytest.raises(precision.Unsupported, match="calibration samples"):
        precision.get("int8", "infer").prepare_model(torch.nn.Linear(3, 3), "cpu", "infer")
    with pytest.raises(precision.Unsupported, match="only exists for inference"):
        precision.get("int8", "train").ensure_supported("cpu")
    with pytest.raises(precision.Unsupported, match="CPU only"):
        precision.get("int8", "infer", {"backend": "fbgemm"}).ensure_supported("cuda")
    with pytest.raises(ValueError, match="unknown precision"):
        precision.get("fp8")


def test_unsupported_precision_is_a_skipped_row(cells):
    row = cells.run("jet_tagger", "train", "int8")  # the grid would exclude it; the runner says why too
    assert row["status"] == "skipped" and "only exists for inference" in row["skip_reason"]


def test_grid_exclusions_with_reasons():
    assert "inference" in builtin_exclusion("train", "cpu", "int8", "baseline")
    assert builtin_exclusion("infer", "cuda", "int8", "baseline") is None  # torchao on cuda
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
    assert infer["precision_impl"].endswith("3 conv layer(s) int8, 2 Linear layer(s) int8")
    assert infer["precision_scheme"] == "static"


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


# ---------------------------------------------------------------- int8 backends through the runner
PINNABLE = ["onednn", "x86", "fbgemm", "torchao", "pt2e_x86"]


@pytest.mark.parametrize("backend", PINNABLE)
def test_pinned_backends_produce_rows_that_say_so(cells, backend):
    cfg = base_config(precision_options={"int8": {"backend": backend}})
    row = cells.run("jet_tagger", "infer", "int8", cfg=cfg)
    assert_ok(row)
    assert row["precision_backend"] == backend and row["precision_backend_pinned"] is True
    assert f"[{backend}: pinned by precision_options.int8.backend]" in row["precision_impl"]
    assert row["precision_scheme"] == ("dynamic" if backend == "torchao" else "static")
    assert row["precision_impl"].endswith("4 Linear layer(s) int8")
    assert row["config_hash"] != cells.run("jet_tagger", "infer", "int8")["config_hash"]  # the pin is in the settings
    assert 0.5 < row["roc_auc"] <= 1
    if backend == "pt2e_x86":
        assert row["compile_s"] > 0 and "torch.compile" in row["precision_impl"]
    else:
        assert row["compile_s"] is None


def test_pinned_backend_that_cannot_be_imported_is_a_skipped_row(cells, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torchao", None)  # import torchao -> ImportError
    row = cells.run("jet_tagger", "infer", "int8", cfg=base_config(precision_options={"int8": {"backend": "torchao"}}))
    assert row["status"] == "skipped" and "torchao cannot be imported" in row["skip_reason"]


def test_quantization_warnings_are_filtered_and_only_those(recwarn):
    """The torch.ao deprecation notices are expected (docs/workloads.md) and filtered while quantizing;
    other warnings still come through."""
    import warnings

    from joulegrid.workloads.jet_tagger import make_mlp

    x = torch.randn(64, 24)
    for scheme in ("static", "dynamic"):
        precision.get("int8", "infer", {"scheme": scheme, "backend": "fbgemm"}).prepare_model(
            make_mlp(24), "cpu", "infer", calibration=x
        )
    assert not [w for w in recwarn if "quantiz" in str(w.message).lower()], [str(w.message)[:80] for w in recwarn]
    with precision.quiet_quantization():
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert any("something else" in str(w.message) for w in recwarn)


# ---------------------------------------------------------------- compiled variant
@pytest.mark.parametrize("phase", ["infer", "train"])
def test_compiled_variant_compiles_outside_the_measured_window(cells, phase):
    base = cells.run("jet_tagger", phase, "fp32")
    row, runner = cells.run("jet_tagger", phase, "fp32", "compiled", keep_runner=True)
    assert_ok(row)
    assert row["variant"] == "compiled" and row["variant_impl"].startswith("torch.compile (default mode")
    assert row["compile_s"] > 0 and row["setup_s"] >= row["compile_s"]
    assert runner.window_compiles == 0  # every shape the window used was compiled in the set-up
    assert type(runner.model).__name__ == "OptimizedModule"
    assert row["flops_per_sample_fwd"] == base["flops_per_sample_fwd"] and row["n_params"] == base["n_params"]
    if phase == "infer":  # same weights, same data: the compiled model scores like the eager one
        assert row["roc_auc"] == pytest.approx(base["roc_auc"], abs=1e-4)
    assert base["compile_s"] is None


def test_static_int8_of_an_untraceable_model_is_refused_with_the_fix():
    class Branchy(torch.nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.a(x) if x.sum() > 0 else self.b(x)

    with pytest.raises(precision.Unsupported, match="scheme: dynamic"):
        precision.get("int8", "infer").prepare_model(Branchy(), "cpu", "infer", calibration=torch.randn(8, 4))
    q = precision.get("int8", "infer", {"scheme": "dynamic"}).prepare_model(Branchy(), "cpu", "infer")
    assert q(torch.ones(2, 4)).shape == (2, 4)


def test_calibration_goes_through_the_workloads_forward():
    seen = []

    def forward(model, xb):
        seen.append(len(xb))
        return model(xb)

    from joulegrid.workloads.jet_tagger import make_mlp

    p = precision.get("int8", "infer", {"calibration_samples": 300})
    p.prepare_model(make_mlp(24), "cpu", "infer", calibration=torch.randn(1000, 24), forward=forward)
    assert sum(seen) == 300 and "calibrated on 300 training samples" in p.impl


def test_a_bare_linear_model_is_counted_as_quantized():
    """FX turns a model whose root is a Linear into torch.ops.quantized.linear (no module left to count)."""
    p = precision.get("int8", "infer")
    q = p.prepare_model(torch.nn.Linear(8, 1), "cpu", "infer", calibration=torch.randn(64, 8))
    assert p.impl.endswith(": 1 Linear layer(s) int8")
    assert any(str(n.target) == "quantized.linear" for n in q.graph.nodes)
