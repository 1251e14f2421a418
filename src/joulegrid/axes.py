"""The grid's axes: phases, devices, precisions, variants, and which precision applies where.

The one home of these names (workflow/schemas/config.schema.yaml's enums repeat them; a test keeps
the two equal). ``grid`` builds paths and wildcard constraints from them, ``precision`` and
``variants`` implement them, ``flops`` looks up the peak of a precision's math, and the rule of
what int8 can run (``precision_exclusion``) is read by both the plan (grid.builtin_exclusion) and
the cell (precision.Precision.ensure_supported).

Pure Python: Snakemake imports this at parse time (no torch).
"""

from __future__ import annotations

from typing import Any

# The axes of a cell, in the order of its id and path: grid.Cell's fields (besides its config hash), the
# identity columns of a row (schema), what the analysis groups repeats by (analysis.metrics.CELL_KEYS).
CELL_AXES = ("site", "workload", "phase", "device", "precision", "variant", "batch_size", "repeat")
# Code versions (config versions:, docs/compare.md) are an axis of the analysis, not of a cell's path: both
# versions of a cell run in one job and share its run file; each row says which it measured (null: no versions).
CODE_VERSION = "code_version"

PHASES = ("train", "infer")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp64", "fp32", "bf16", "fp16", "fp16_noscaler", "int8")
VARIANTS = ("baseline", "pruned", "compiled")
BASELINE_PRECISION = "fp32"
BASELINE_VARIANT = "baseline"

# The axes a workload's EXCLUSIONS and the config's exclude: rules may name.
RULE_AXES = ("phase", "device", "precision", "variant")

# precision axis value -> the arithmetic it runs (fp16_noscaler is fp16 without a GradScaler):
# what decides whether a device runs it natively (precision.native) and its peak (flops.PEAKS)
PRECISION_MATH = {
    "fp64": "fp64",
    "fp32": "fp32",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp16_noscaler": "fp16",
    "int8": "int8",
}

# ---------------------------------------------------------------- int8 backends
ENGINES = ("onednn", "x86", "fbgemm", "qnnpack")  # torch.ao quantized engines: CPU kernels, run eagerly
INT8_BACKENDS = ENGINES + ("torchao", "pt2e_x86")
CPU_ONLY = ENGINES + ("pt2e_x86",)
COMPILES = ("pt2e_x86",)  # backends that lower through torch.compile themselves
AUTO_CPU_FAMILY = "torch.ao engine"  # backend auto on a CPU: which engine is decided on the execution host


def int8_backend_family(device: str, precision_options: dict[str, Any] | None = None) -> str:
    """The int8 backend a cell of ``device`` will use as far as the plan can know: the pinned one
    (precision_options.int8.backend), else 'torchao' on cuda and 'torch.ao engine' on CPU (which
    engine, onednn / x86 / qnnpack, is decided on the execution host from its CPU flags)."""
    pinned = ((precision_options or {}).get("int8") or {}).get("backend", "auto")
    if pinned != "auto":
        return pinned
    return "torchao" if device == "cuda" else AUTO_CPU_FAMILY


def precision_exclusion(
    phase: str,
    device: str,
    precision: str,
    variant: str = BASELINE_VARIANT,
    precision_options: dict[str, Any] | None = None,
) -> str | None:
    """Why ``precision`` cannot (or should not) run in this phase, on this device, with this
    variant; None if it can. ``precision_options`` is the config's precision_options (the int8
    backend decides what int8 can run)."""
    if precision == "int8":
        if phase != "infer":
            return "int8 post-training quantization only exists for inference (phase infer)"
        family = int8_backend_family(device, precision_options)
        if device == "cuda" and family in CPU_ONLY:
            return (
                f"int8 backend {family} runs on CPU only; on cuda int8 uses torchao "
                "(precision_options.int8.backend: auto or torchao)"
            )
        if variant == "compiled" and (family in ENGINES or family == AUTO_CPU_FAMILY):
            return (
                "int8 with a torch.ao engine (onednn / x86 / fbgemm / qnnpack) cannot be compiled: dynamo cannot "
                "trace quantized tensors, so the model would run eagerly between graph breaks. Compiled int8: "
                "precision_options.int8.backend: pt2e_x86 (compiled by design) or torchao"
            )
        if variant == "compiled" and family in COMPILES:
            return (
                f"int8 backend {family} already compiles the model (torch.compile): its baseline variant is the "
                "compiled one"
            )
    if precision == "fp16_noscaler" and phase != "train":
        return "GradScaler only exists in training; for inference fp16 and fp16_noscaler are the same (use fp16)"
    return None
