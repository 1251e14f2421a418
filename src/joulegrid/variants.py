"""The model-variant axis: ``baseline`` (the model as is), ``pruned`` and ``compiled``.

``pruned`` is global unstructured L1-magnitude pruning (``torch.nn.utils.prune``) of the weights
of every Linear / Conv layer: the ``prune_amount`` share (default 30 %, as in the Green AI
tracker) of those weights with the smallest magnitude, ranked across all layers, is set to zero.
Biases are not pruned. What it means per phase:

- infer: the fp32 reference model (trained as baseline) is pruned and the zeros made permanent
  (``prune.remove``); then the precision is applied (e.g. int8 quantizes the pruned weights).
  There is no fine-tuning: quality shows what pruning alone costs.
- train: the freshly initialised model is pruned and the mask is KEPT during the whole training
  (``prune``'s forward pre-hook recomputes weight = weight_orig * mask every forward), so the pruned
  weights stay zero and the run measures training a 30 %-sparse network, mask overhead included.
  The mask is folded in when the model is stored or its size counted.

Dense kernels do not skip zeros: expect the same FLOPs and about the same time and energy; the
column ``n_params_nonzero`` shows the sparsity. The variant is recorded in ``variant_impl``.

``compiled`` is ``torch.compile(model)`` in its default mode (inductor), applied after the
precision (``compile``). torch.compile compiles lazily, on the first call of each new input shape
and mode, so the runner triggers every compilation the measured window would need (each batch
shape of the phase, training and evaluation modes, under the precision's autocast) in the set-up,
times it as ``compile_s`` and keeps it out of the measured window. A compilation that fails (e.g.
no C++ compiler on the node for inductor's CPU code) raises :class:`CompileFailed`: the cell's row
is ``failed`` with the reason, and the grid goes on.
"""

from __future__ import annotations

import copy

from .axes import VARIANTS

DEFAULT_PRUNE_AMOUNT = 0.3


class CompileFailed(RuntimeError):
    """torch.compile could not compile the model (the message says why)."""


def compile(model):  # the variant's name
    """torch.compile in its default mode (compilation happens on the first calls: see the module docstring)."""
    import torch

    return torch.compile(model)


def _targets(model):
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [(m, "weight") for m in model.modules() if isinstance(m, kinds)]


def apply(model, variant: str, phase: str, amount: float = DEFAULT_PRUNE_AMOUNT):
    """The model for a variant and phase (see the module docstring); modifies it in place."""
    if variant in ("baseline", "compiled"):  # compiled: after the precision, see compile()
        return model
    if variant != "pruned":
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    if not 0 < amount < 1:
        raise ValueError(f"prune_amount must be between 0 and 1 (exclusive), got {amount}")
    from torch.nn.utils import prune

    targets = _targets(model)
    if not targets:
        raise ValueError("variant pruned: the model has no Linear or Conv layers to prune")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    if phase != "train":
        finalize(model)
    else:
        _detach_masked(model)
    return model


def _detach_masked(model) -> None:
    """The masked weights prune computes (weight = weight_orig * mask) are non-leaf tensors that
    copy.deepcopy refuses; replace them by detached values. Harmless: the forward pre-hook
    recomputes them (with autograd) at the start of every forward."""
    from torch.nn.utils import prune

    for m in model.modules():
        for hook in list(m._forward_pre_hooks.values()):
            hooks = hook._pruning_methods if isinstance(hook, prune.PruningContainer) else (hook,)
            for h in hooks:
                if isinstance(h, prune.BasePruningMethod):
                    t = getattr(m, h._tensor_name, None)
                    if t is not None and not t.is_leaf:
                        setattr(m, h._tensor_name, t.detach())


def copy_model(model):
    """copy.deepcopy that also works on a model with pruning masks attached."""
    _detach_masked(model)
    return copy.deepcopy(model)


def finalize(model):
    """Fold pruning masks into the weights (permanent zeros, plain parameters again); in place."""
    from torch.nn.utils import prune

    for m in model.modules():
        if prune.is_pruned(m):
            for name in [k[: -len("_orig")] for k, _ in list(m.named_parameters(recurse=False)) if k.endswith("_orig")]:
                prune.remove(m, name)
    return model


def strip_masks(model):
    """The model without pruning masks: the model itself if it has none, else a finalized copy."""
    from torch.nn.utils import prune

    if not any(prune.is_pruned(m) for m in model.modules()):
        return model
    return finalize(copy_model(model))


def describe(variant: str, phase: str, amount: float = DEFAULT_PRUNE_AMOUNT) -> str:
    if variant == "baseline":
        return "baseline"
    if variant == "compiled":
        return (
            "torch.compile (default mode, inductor) after the precision; compile time in compile_s, outside the "
            "measured window"
        )
    how = f"global L1 unstructured pruning of {amount:.0%} of Linear/Conv weights"
    if phase == "train":
        return how + " at initialisation, mask kept during training"
    return how + " of the trained fp32 reference model, permanent, no fine-tuning"
