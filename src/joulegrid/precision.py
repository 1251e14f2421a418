"""Numeric precisions: how a model and its inputs are run at fp64 / fp32 / bf16 / fp16 / int8.

- fp64: ``model.double()`` and float64 inputs, no autocast (Baler's default dtype).
- fp32: float32 model and inputs.
- bf16: ``torch.autocast(device, dtype=torch.bfloat16)`` around the forward pass and the loss;
  fp32 master weights; no GradScaler (bf16 has fp32's exponent range).
- fp16: ``torch.autocast(device, dtype=torch.float16)``; training adds ``torch.amp.GradScaler``
  (dynamic loss scaling); inference is the same autocast without a scaler.
- fp16_noscaler: fp16 autocast training WITHOUT GradScaler (the reference study measured both;
  small gradients may underflow to zero). Training only: for inference it equals fp16.
- int8: post-training dynamic quantization for inference, with torchao's ``quantize_`` and
  ``Int8DynamicActivationInt8WeightConfig`` (int8 weights, activations quantized per batch).
  That is the maintained path: torch 2.13 deprecates the eager
  ``torch.ao.quantization.quantize_dynamic`` and points to torchao. Only if torchao cannot be
  imported is the deprecated API used, and ``precision_impl`` says so. Both quantize Linear layers
  only; convolutions stay fp32 (``precision_impl`` gives the counts). Its int8 kernels run on CPU.

``get(name, phase)`` returns a :class:`Precision`; ``impl`` is what ends up in the result column
``precision_impl``. Combinations that cannot run raise :class:`Unsupported` (the runner records
the cell as skipped with that reason); the grid excludes the ones known before running
(joulegrid.grid.builtin_exclusion).
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any

NAMES = ("fp64", "fp32", "bf16", "fp16", "fp16_noscaler", "int8")


class Unsupported(RuntimeError):
    """This precision cannot run on this device / phase / model here."""


@dataclass
class Precision:
    name: str
    phase: str
    impl: str  # human-readable, stored as precision_impl (int8 refines it in prepare_model)
    dtype: Any  # input/model dtype (torch dtype)
    autocast_dtype: Any = None
    scaler: bool = False
    quantize: bool = False

    def check(self, device: str) -> None:
        """Raise Unsupported if this precision cannot run on ``device`` in this process."""
        import torch

        if self.quantize and (self.phase != "infer" or device != "cpu"):
            raise Unsupported("int8 dynamic quantization is for inference on CPU only")
        if device == "cuda" and torch.cuda.is_available():
            if self.autocast_dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(including_emulation=False):
                cap = ".".join(map(str, torch.cuda.get_device_capability(0)))
                raise Unsupported(
                    f"bf16 needs a GPU with native bfloat16 (compute capability >= 8.0, Ampere or newer); "
                    f"{torch.cuda.get_device_name(0)} has {cap} and would only emulate it"
                )

    def autocast(self, device: str):
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device, dtype=self.autocast_dtype)

    def make_scaler(self, device: str):
        import torch

        if not self.scaler or self.phase != "train":
            return None
        return torch.amp.GradScaler(device)

    def train_step(self, device: str, compute_loss, optimizer, scaler=None):
        """One optimizer step under this precision: zero the gradients, compute_loss() under autocast,
        backward and step -- through the GradScaler (make_scaler) when there is one. Returns the loss."""
        optimizer.zero_grad(set_to_none=True)
        with self.autocast(device):
            loss = compute_loss()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss

    def prepare_model(self, model, device: str, phase: str):
        """Move/convert the model for this precision (quantizes for int8)."""
        import torch

        if self.quantize:
            return self._quantize(model.to("cpu").eval())
        model = model.to(device)
        if self.dtype == torch.float64:
            model = model.double()
        return model

    def _quantize(self, model):
        import torch
        from torch import nn

        n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
        n_conv = sum(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules())
        if n_linear == 0:
            raise Unsupported("int8: the model has no Linear layers (dynamic int8 quantization quantizes Linear layers only)")
        try:
            import torchao
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError as e:
            with warnings.catch_warnings():  # the deprecation is recorded in precision_impl instead
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
                model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
            how = (
                f"torch.ao.quantization.quantize_dynamic(qint8) -- DEPRECATED in torch {torch.__version__.split('+')[0]}, "
                f"used because torchao cannot be imported ({e})"
            )
        else:
            quantize_(model, Int8DynamicActivationInt8WeightConfig())
            how = f"torchao {torchao.__version__} quantize_(Int8DynamicActivationInt8WeightConfig), dynamic PTQ"
        self.impl = f"{how}: {n_linear} Linear layer(s) int8" + (f", {n_conv} conv layer(s) fp32" if n_conv else "")
        return model


def get(name: str, phase: str = "train") -> Precision:
    import torch

    train = phase == "train"
    table = {
        "fp64": lambda: Precision("fp64", phase, "float64 (model.double())", torch.float64),
        "fp32": lambda: Precision("fp32", phase, "float32", torch.float32),
        "bf16": lambda: Precision("bf16", phase, "autocast(bfloat16)", torch.float32, torch.bfloat16),
        "fp16": lambda: Precision(
            "fp16", phase, "autocast(float16)+GradScaler" if train else "autocast(float16)", torch.float32, torch.float16, scaler=train
        ),
        "fp16_noscaler": lambda: Precision("fp16_noscaler", phase, "autocast(float16), no GradScaler", torch.float32, torch.float16),
        "int8": lambda: Precision("int8", phase, "int8 dynamic PTQ", torch.float32, quantize=True),
    }
    if name not in table:
        raise ValueError(f"unknown precision {name!r}; known: {', '.join(NAMES)}")
    return table[name]()
