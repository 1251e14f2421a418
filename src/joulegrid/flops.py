"""FLOPs per sample counted with torch's own FlopCounterMode (float model; quantized models count 0)."""

from __future__ import annotations

import copy
from typing import Any


def count_flops(wl, model, split, batch_size: int, phase: str) -> dict[str, Any]:
    """Forward FLOPs/sample (and forward+backward for training) on a float copy of the model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    n = max(1, min(batch_size, split.n_test, 256))
    xb = wl.example_batch(split, n).float()
    yb = None
    if split.y_test is not None:
        yb = torch.as_tensor(split.y_test[:n])
    m = copy.deepcopy(model).float().cpu()
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
