"""Numeric precisions: how a model and its inputs are run at fp64 / fp32 / bf16 / fp16 / int8.

- fp64, fp32: the model and inputs are converted (``model.double()``); no autocast.
- bf16: ``torch.autocast(device, dtype=torch.bfloat16)``; fp32 master weights.
- fp16: ``torch.autocast(device, dtype=torch.float16)`` + ``torch.amp.GradScaler`` in training.
- fp16_noscaler: the same autocast without GradScaler (the reference study measured both).
- int8: post-training dynamic quantization for inference with torchao's ``quantize_`` and
  ``Int8DynamicActivationInt8WeightConfig`` -- the maintained path: torch 2.13 deprecates the
  eager ``torch.ao.quantization.quantize_dynamic`` and points to torchao.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any


@dataclass
class Precision:
    name: str
    impl: str  # human-readable, stored as precision_impl
    dtype: Any  # input/model dtype (torch dtype)
    autocast_dtype: Any = None
    scaler: bool = False
    quantize: bool = False

    def autocast(self, device: str):
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device, dtype=self.autocast_dtype)

    def make_scaler(self, device: str):
        import torch

        if not self.scaler:
            return None
        return torch.amp.GradScaler(device)

    def prepare_model(self, model, device: str, phase: str):
        """Move/convert the model for this precision (quantizes for int8)."""
        import torch

        if self.quantize:
            model = model.to("cpu").eval()
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

            quantize_(model, Int8DynamicActivationInt8WeightConfig())
            return model
        model = model.to(device)
        if self.dtype == torch.float64:
            model = model.double()
        return model


def get(name: str) -> Precision:
    import torch

    table = {
        "fp64": Precision("fp64", "model.double()", torch.float64),
        "fp32": Precision("fp32", "float32", torch.float32),
        "bf16": Precision("bf16", "autocast(bfloat16)", torch.float32, torch.bfloat16),
        "fp16": Precision("fp16", "autocast(float16)+GradScaler", torch.float32, torch.float16, scaler=True),
        "fp16_noscaler": Precision("fp16_noscaler", "autocast(float16), no GradScaler", torch.float32, torch.float16),
        "int8": Precision(
            "int8",
            "torchao.quantize_(Int8DynamicActivationInt8WeightConfig), dynamic PTQ",
            torch.float32,
            quantize=True,
        ),
    }
    if name not in table:
        raise ValueError(f"unknown precision {name!r}; known: {', '.join(table)}")
    p = table[name]
    return p
