"""Per-run computational figures: FLOPs/MACs per sample, parameters and stored size, achieved
FLOP/s and model FLOPs utilisation (MFU).

FLOPs are counted with torch's own ``torch.utils.flop_counter.FlopCounterMode`` on a float32
copy of the model (a quantized model counts 0 FLOPs for its int8 layers, so the float model is
what is counted, for every precision). FlopCounterMode counts matrix products and convolutions
(mm/addmm/bmm/conv and their backward, attention): elementwise work (activations, losses, the
optimizer) is not counted, as usual for MFU. A pruned model is counted dense: its zeros are still
multiplied by dense kernels.

MFU = achieved FLOP/s / peak FLOP/s of the device for the precision's math. The peaks are
NVIDIA datasheet figures for dense math (the "with sparsity" figures halved), see PEAKS; CPUs
have no entry (their peak depends on clocks, SIMD width and core count) and get no MFU.
"""

from __future__ import annotations

import io
import re
from typing import Any

from .axes import PRECISION_MATH

TERA = 1e12

# (pattern on torch.cuda.get_device_name(), {math: peak FLOP/s}, source). First match wins, so the
# more specific patterns come first. Math: "fp64" (FP64 Tensor Core where the GPU has one: cuBLAS
# uses it for DGEMM), "fp32" (plain FP32 FMA, not TF32: PyTorch leaves TF32 off for matmuls by
# default), "fp16"/"bf16"/"int8" (dense Tensor Core figures). A missing key = not listed / not supported.
PEAKS: tuple[tuple[str, dict[str, float], str], ...] = (
    (
        r"H100.*PCIe",
        {"fp64": 51 * TERA, "fp32": 51 * TERA, "bf16": 756 * TERA, "fp16": 756 * TERA, "int8": 1513 * TERA},
        "NVIDIA H100 datasheet (PCIe: FP64 TC 51, FP32 51, BF16/FP16 TC 1,513, INT8 TC 3,026 with sparsity)",
    ),
    (
        r"H100(?!.*NVL)",
        {"fp64": 67 * TERA, "fp32": 67 * TERA, "bf16": 989.5 * TERA, "fp16": 989.5 * TERA, "int8": 1979 * TERA},
        "NVIDIA H100 datasheet (SXM: FP64 TC 67, FP32 67, BF16/FP16 TC 1,979, INT8 TC 3,958 with sparsity)",
    ),
    (
        r"H200(?!.*NVL)",
        {"fp64": 67 * TERA, "fp32": 67 * TERA, "bf16": 989.5 * TERA, "fp16": 989.5 * TERA, "int8": 1979 * TERA},
        "NVIDIA H200 datasheet (SXM: FP64 TC 67, FP32 67, BF16/FP16 TC 1,979, INT8 TC 3,958 with sparsity)",
    ),
    (
        r"A100",
        {"fp64": 19.5 * TERA, "fp32": 19.5 * TERA, "bf16": 312 * TERA, "fp16": 312 * TERA, "int8": 624 * TERA},
        "NVIDIA A100 datasheet (FP64 TC 19.5, FP32 19.5, BF16/FP16 TC 312, INT8 TC 624 dense)",
    ),
    (
        r"L40S",
        {"fp32": 91.6 * TERA, "bf16": 362.05 * TERA, "fp16": 362.05 * TERA, "int8": 733 * TERA},
        "NVIDIA L40S datasheet (FP32 91.6, BF16/FP16 TC 733, INT8 TC 1,466 with sparsity)",
    ),
    (
        r"\bL4\b",
        {"fp32": 30.3 * TERA, "bf16": 121 * TERA, "fp16": 121 * TERA, "int8": 242.5 * TERA},
        "NVIDIA L4 datasheet (FP32 30.3, BF16/FP16 TC 242, INT8 TC 485 with sparsity)",
    ),
    (
        r"\bA10\b",
        {"fp32": 31.2 * TERA, "bf16": 125 * TERA, "fp16": 125 * TERA, "int8": 250 * TERA},
        "NVIDIA A10 datasheet (FP32 31.2, BF16/FP16 TC 125, INT8 TC 250 dense)",
    ),
    (
        r"V100S",
        {"fp64": 8.2 * TERA, "fp32": 16.4 * TERA, "fp16": 130 * TERA},
        "NVIDIA V100S datasheet (PCIe: FP64 8.2, FP32 16.4, Tensor 130; no bf16)",
    ),
    (
        r"V100.*PCIE",
        {"fp64": 7 * TERA, "fp32": 14 * TERA, "fp16": 112 * TERA},
        "NVIDIA V100 datasheet (PCIe: FP64 7, FP32 14, Tensor 112; no bf16)",
    ),
    (
        r"V100",
        {"fp64": 7.8 * TERA, "fp32": 15.7 * TERA, "fp16": 125 * TERA},
        "NVIDIA V100 datasheet (SXM2: FP64 7.8, FP32 15.7, Tensor 125; no bf16)",
    ),
    (
        r"\bT4\b",
        {"fp32": 8.1 * TERA, "fp16": 65 * TERA, "int8": 130 * TERA},
        "NVIDIA T4 datasheet (FP32 8.1, mixed FP16/FP32 65, INT8 130; no bf16)",
    ),
)

# The peak that applies is the one of the precision's math (axes.PRECISION_MATH; int8: dense int8 Tensor
# Core ops/s, for torchao's int8 matrix products on cuda; the FLOPs are the float model's, see count_flops).


def device_peak_flops(gpu_model: str | None, precision: str) -> float | None:
    """Peak FLOP/s of a GPU (by torch's device name) for a precision; None if not in PEAKS."""
    if not gpu_model or precision not in PRECISION_MATH:
        return None
    for pattern, peaks, _source in PEAKS:
        if re.search(pattern, gpu_model, flags=re.IGNORECASE):
            return peaks.get(PRECISION_MATH[precision])
    return None


def throughput(
    flops_per_sample: float | None, n_samples: int, wall_s: float, device: str, gpu_model: str | None, precision: str
) -> dict[str, Any]:
    """flops_per_s, device_peak_flops and mfu of a measured phase."""
    out: dict[str, Any] = {"flops_per_s": None, "device_peak_flops": None, "mfu": None}
    if flops_per_sample and wall_s > 0:
        out["flops_per_s"] = flops_per_sample * n_samples / wall_s
    if device == "cuda":
        out["device_peak_flops"] = device_peak_flops(gpu_model, precision)
    if out["flops_per_s"] is not None and out["device_peak_flops"]:
        out["mfu"] = out["flops_per_s"] / out["device_peak_flops"]
    return out


def count_flops(wl, model, split, batch_size: int, phase: str) -> dict[str, Any]:
    """Forward FLOPs/sample (and forward+backward for training) on a float32 CPU copy of the model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    n = max(1, min(batch_size, split.n_test, 256))
    xb = wl.example_batch(split, n).float()
    yb = None
    if split.y_test is not None:
        yb = torch.as_tensor(split.y_test[:n])
    from .variants import copy_model

    m = copy_model(model).float().cpu()
    m.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        wl.infer_batch(m, xb)
    fwd = fc.get_total_flops() / n
    out: dict[str, Any] = {"flops_per_sample_fwd": float(fwd), "macs_per_sample_fwd": float(fwd) / 2}
    if phase == "train":
        m.train()
        with FlopCounterMode(display=False) as fc:
            loss = wl.loss(m, xb, yb)
            loss.backward()
        out["flops_per_sample_train"] = fc.get_total_flops() / n
    return out


def model_stats(model) -> dict[str, Any]:
    """Parameters and size of the model as stored: the bytes of ``torch.save(state_dict)``,
    parameter count (quantized weights count their logical elements) and non-zero parameters.
    Pruning masks still attached (training of the pruned variant) are folded in first, on a copy."""
    import torch

    from .variants import strip_masks

    model = strip_masks(model)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    n = nz = 0

    def add(t) -> None:
        nonlocal n, nz
        t = t.detach()
        if t.is_quantized or type(t) is not torch.Tensor:  # torch.ao qint8 / torchao Int8Tensor
            t = t.dequantize()
        n += t.numel()
        nz += int(torch.count_nonzero(t).item())

    for mod in model.modules():  # torch.ao dynamic quantized Linear keeps packed weights, not Parameters
        if hasattr(mod, "_packed_params") and callable(getattr(mod, "weight", None)):
            for t in (mod.weight(), mod.bias()):
                if t is not None:
                    add(t)
    for p in model.parameters():
        add(p)
    return {"model_size_bytes": len(buf.getvalue()), "n_params": n, "n_params_nonzero": nz}
