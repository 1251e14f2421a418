"""Numeric precisions: how a model and its inputs are run at fp64 / fp32 / bf16 / fp16 / int8.

- fp64: ``model.double()`` and float64 inputs, no autocast (Baler's default dtype).
- fp32: float32 model and inputs.
- bf16: ``torch.autocast(device, dtype=torch.bfloat16)`` around the forward pass and the loss;
  fp32 master weights; no GradScaler (bf16 has fp32's exponent range).
- fp16: ``torch.autocast(device, dtype=torch.float16)``; training adds ``torch.amp.GradScaler``
  (dynamic loss scaling); inference is the same autocast without a scaler.
- fp16_noscaler: fp16 autocast training WITHOUT GradScaler (the reference study measured both;
  small gradients may underflow to zero). Training only: for inference it equals fp16.
- int8: post-training quantization for inference, with the fastest faithful int8 kernels of the
  cell's device (``choose_int8``) unless ``precision_options.int8.backend`` pins one
  (docs/workloads.md, "Which int8?"):

  ========== =========================================================================================
  backend    what runs
  ========== =========================================================================================
  onednn     torch.ao quantized engine ``onednn``: oneDNN's int8 kernels (VNNI / AMX on x86 CPUs)
  x86        torch.ao engine ``x86``: fbgemm for Linear, oneDNN for convolutions where torch's own
             heuristic prefers it (AVX-512 VNNI); on CPUs without VNNI these are fbgemm's kernels
  fbgemm     torch.ao engine ``fbgemm``: fbgemm's AVX2 / AVX-512 int8 kernels
  qnnpack    torch.ao engine ``qnnpack``: the int8 kernels for Arm CPUs
  torchao    torchao ``quantize_(Int8DynamicActivationInt8WeightConfig)``: ``torch._int_mm`` (int8
             Tensor Cores on CUDA; a slow decomposed path on CPUs without VNNI / AMX)
  pt2e_x86   torchao's PT2E flow with ``X86InductorQuantizer``, lowered by ``torch.compile``
             (inductor, freezing on) to oneDNN int8 kernels; needs a C++ compiler; compile_s records it
  ========== =========================================================================================

  Scheme ``static`` (the default for every backend but torchao) quantizes weights AND activations
  with scales calibrated on ``calibration_samples`` samples of the training split, so Linear
  layers and convolutions run int8 from layer to layer (FX graph mode ``prepare_fx``/``convert_fx``
  for the torch.ao engines: it runs eagerly, without a compiler). Scheme ``dynamic`` quantizes
  weights ahead and activations per batch (``quantize_dynamic``: Linear layers only, convolutions
  stay fp32; torchao's scheme). ``precision_impl`` names the backend, the scheme and the layers
  quantized (counted in the converted model); ``precision_backend`` / ``precision_scheme`` /
  ``precision_backend_pinned`` record the choice.

  The torch.ao.quantization API is deprecated in torch 2.13 in favour of torchao, but torchao has
  no eager int8 CPU kernels that match it (its CPU path is 5-35x slower than fp32 without
  VNNI / AMX, and it has no calibrated static int8 for convolutions that runs without a compiler):
  the torch.ao engines are still the fastest faithful int8 on CPUs. Their deprecation warnings
  (and the observers' ``reduce_range`` notice) are expected and filtered (``quiet_quantization``),
  only while quantizing.

``get(name, phase, options)`` returns a :class:`Precision`; ``impl`` is what ends up in the result
column ``precision_impl``. Combinations that cannot run raise :class:`Unsupported` (the runner
records the cell as skipped with that reason); the grid excludes the ones known before running,
by the same rule (joulegrid.axes.precision_exclusion). ``native`` says whether a device runs a
precision natively.

Importing this module imports no torch.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from .axes import BASELINE_VARIANT, CPU_ONLY, ENGINES, INT8_BACKENDS, PRECISION_MATH, PRECISIONS, precision_exclusion

# ---------------------------------------------------------------- int8 backends
INT8_SCHEMES = ("static", "dynamic")
INT8_DEFAULTS: dict[str, Any] = {"backend": "auto", "scheme": "auto", "calibration_samples": 512}
DYNAMIC_ONLY = ("torchao",)  # torchao's Int8DynamicActivationInt8WeightConfig: activations quantized per batch
X86 = ("x86_64", "amd64", "i386", "i686")
ARM = ("aarch64", "arm64")
INT8_DOT = ("amx_int8", "avx512_vnni")  # x86 flags for which oneDNN's int8 kernels win (docs/workloads.md)


class Unsupported(RuntimeError):
    """This precision cannot run on this device / phase / model here."""


def int8_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """precision_options.int8 with the defaults filled in."""
    return {**INT8_DEFAULTS, **(options or {})}


def choose_int8(device: str, flags: frozenset[str] | set[str] | None, arch: str) -> tuple[str, str]:
    """The int8 backend the rule picks for a device, and why (``backend: auto``).

    - cuda: ``torchao`` (int8 matrix products on the GPU's int8 Tensor Cores via torch._int_mm).
    - x86 CPU with AMX int8 or AVX-512 VNNI: ``onednn`` (oneDNN's VNNI / AMX int8 kernels).
    - other x86 CPUs: ``x86`` (torch's combined engine: fbgemm's AVX2 / AVX-512 kernels, oneDNN for
      convolutions where torch's own heuristic prefers it).
    - Arm CPUs: ``qnnpack``.
    Raises Unsupported for other architectures (pin a backend to measure one anyway).
    """
    if device == "cuda":
        return "torchao", "cuda device: torchao int8 (torch._int_mm, int8 Tensor Cores)"
    arch = (arch or "").lower()
    flags = frozenset(flags or ())
    if arch in X86:
        have = [f for f in INT8_DOT if f in flags]
        if have:
            return "onednn", f"x86 CPU with {'/'.join(have)}: oneDNN's VNNI/AMX int8 kernels"
        return "x86", "x86 CPU without AMX int8 / AVX-512 VNNI: torch's x86 engine (fbgemm kernels)"
    if arch in ARM:
        return "qnnpack", "Arm CPU: qnnpack int8 kernels"
    raise Unsupported(
        f"int8: no rule for a {arch or 'unknown'} CPU. Fix: pin one with precision_options.int8.backend "
        f"({', '.join(INT8_BACKENDS)})"
    )


# ---------------------------------------------------------------- native or emulated
def native(
    precision: str,
    device: str,
    flags: frozenset[str] | set[str] | None,
    arch: str,
    compute_capability: str | None = None,
) -> bool | None:
    """Does the device run this precision natively (hardware instructions for its arithmetic)?

    fp32 / fp64: always. CPU (from its flags; None when unknown): bf16 needs avx512_bf16 or
    amx_bf16 (Arm: bf16), fp16 avx512_fp16 or amx_fp16 (Arm: asimdhp), int8 an int8 dot-product
    instruction: avx512_vnni, avx_vnni or amx_int8 (Arm: asimddp or i8mm). GPU (from its compute
    capability; None when unknown): fp16 >= 7.0 and int8 >= 7.5 (Tensor Cores), bf16 >= 8.0.
    Otherwise the precision is emulated (converted to and computed in a wider type).
    """
    if precision in ("fp32", "fp64"):
        return True
    kind = PRECISION_MATH.get(precision)
    if kind is None:
        return None
    if device == "cuda":
        if not compute_capability:
            return None
        try:
            cc = tuple(int(p) for p in str(compute_capability).split(".")[:2])
        except ValueError:
            return None
        return cc >= {"fp16": (7, 0), "int8": (7, 5), "bf16": (8, 0)}[kind]
    if flags is None:
        return None
    arch = (arch or "").lower()
    need = {
        "bf16": ("avx512_bf16", "amx_bf16"),
        "fp16": ("avx512_fp16", "amx_fp16"),
        "int8": ("avx512_vnni", "avx_vnni", "amx_int8"),
    }[kind]
    if arch in ARM:
        need = {"bf16": ("bf16",), "fp16": ("asimdhp",), "int8": ("asimddp", "i8mm")}[kind]
    return any(f in flags for f in need)


# ---------------------------------------------------------------- warnings
# Expected warnings of the torch.ao quantization API, filtered while quantizing (see module docstring).
QUANTIZATION_WARNINGS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"Please use quant_min and quant_max to specify the range for observers"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation"),
)


# Expected while compiling quantized models: inductor's oneDNN int8 lowering (pt2e_x86) and torchao's
# int8 tensors (torchao + compiled) warn about internals of those libraries, not about the model.
COMPILE_WARNINGS = (
    (UserWarning, r"To copy construct from a tensor, it is recommended"),
    (UserWarning, r"does not implement _stable_hash_for_caching"),
    (DeprecationWarning, r"`torch\.jit\.script_method` is deprecated"),  # torch's own, on importing torch._inductor
)


@contextlib.contextmanager
def ignoring(expected=QUANTIZATION_WARNINGS):
    """Filter the expected warnings (category, message regex) -- and nothing else -- inside the block."""
    with warnings.catch_warnings():
        for category, pattern in expected:
            warnings.filterwarnings("ignore", message=pattern, category=category)
        yield


def quiet_quantization():
    """Filter the expected deprecation warnings of torch.ao quantization (QUANTIZATION_WARNINGS)."""
    return ignoring(QUANTIZATION_WARNINGS)


# ---------------------------------------------------------------- the precision
@dataclass
class Precision:
    name: str
    phase: str
    impl: str  # human-readable, stored as precision_impl (int8 refines it in prepare_model)
    dtype: Any  # input/model dtype (torch dtype)
    autocast_dtype: Any = None
    scaler: bool = False
    quantize: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # precision_options.<name> (int8: INT8_DEFAULTS filled in)
    backend: str | None = None  # int8: the backend that ran (set by prepare_model)
    scheme: str | None = None  # int8: static or dynamic (set by prepare_model)
    backend_pinned: bool | None = None  # int8: True = precision_options pinned it, False = choose_int8
    compiles: bool = False  # the prepared model is a torch.compile'd module (pt2e_x86)
    _forward: Any = None  # how calibration batches go through the model (prepare_model's forward)

    def columns(self) -> dict[str, Any]:
        """Result columns describing how this precision ran."""
        return {
            "precision_impl": self.impl,
            "precision_backend": self.backend,
            "precision_scheme": self.scheme,
            "precision_backend_pinned": self.backend_pinned,
        }

    def ensure_supported(self, device: str) -> None:
        """Raise Unsupported if this precision cannot run on ``device`` in this process."""
        import torch

        if self.quantize:  # the plan's rule (axes.precision_exclusion); the variant is the runner's to check
            reason = precision_exclusion(self.phase, device, self.name, BASELINE_VARIANT, {"int8": self.options})
            if reason:
                raise Unsupported(reason)
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

    @contextlib.contextmanager
    def compile_context(self):
        """Context for the calls that trigger torch.compile's compilations: the expected warnings of
        compiling quantized models filtered (COMPILE_WARNINGS) and, for a model this precision compiled
        (pt2e_x86), inductor's freezing, which folds the int8 weights into oneDNN's prepacked kernels."""
        with ignoring(COMPILE_WARNINGS):
            if not self.compiles:
                yield
                return
            import torch._inductor.config as inductor_config

            with inductor_config.patch(freezing=True):
                yield

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

    def prepare_model(
        self, model, device: str, phase: str, calibration=None, flags=None, arch: str | None = None, forward=None
    ):
        """Move/convert the model for this precision (quantizes for int8).

        int8: ``calibration`` = training samples (array or tensor) for the static scheme, run through
        ``forward(model, batch)`` (the workload's infer_batch; default ``model(batch)``); ``flags`` /
        ``arch`` = the host's CPU flags and architecture for choose_int8 (probed when None)."""
        import torch

        if self.quantize:
            self._forward = forward or (lambda m, xb: m(xb))
            return self._quantize(model.eval(), device, calibration, flags, arch)
        model = model.to(device)
        if self.dtype == torch.float64:
            model = model.double()
        return model

    # ------------------------------------------------------------ int8
    def resolve(self, device: str, flags=None, arch: str | None = None) -> tuple[str, str, str]:
        """(backend, scheme, why) this int8 precision will use on ``device``."""
        from . import probes

        opts = self.options
        if opts.get("backend", "auto") == "auto":
            if flags is None and arch is None:
                flags, arch = probes.cpu_flags(), probes.cpu_arch()
            backend, why = choose_int8(device, flags, arch or "")
            self.backend_pinned = False
        else:
            backend, why = opts["backend"], "pinned by precision_options.int8.backend"
            self.backend_pinned = True
        scheme = opts.get("scheme", "auto")
        if scheme == "auto":
            scheme = "dynamic" if backend in DYNAMIC_ONLY else "static"
        if scheme == "static" and backend in DYNAMIC_ONLY:
            raise Unsupported(
                f"int8 backend {backend} has no static scheme here. Fix: precision_options.int8.scheme: dynamic (or "
                "auto)"
            )
        return backend, scheme, why

    def _quantize(self, model, device: str, calibration, flags, arch):
        import torch

        backend, scheme, why = self.resolve(device, flags, arch)
        self.backend, self.scheme = backend, scheme
        if device == "cuda" and backend in CPU_ONLY:
            raise Unsupported(f"int8 backend {backend} runs on CPU only")
        n_cal = int(self.options.get("calibration_samples", INT8_DEFAULTS["calibration_samples"]))
        cal = None
        if scheme == "static":
            if calibration is None or len(calibration) == 0:
                raise Unsupported(
                    "int8 static quantization needs calibration samples (the training split), and none were given"
                )
            cal = torch.as_tensor(calibration[:n_cal]).to(torch.float32)
        if backend in ENGINES:
            q, how = self._torch_ao(model.to("cpu"), backend, scheme, cal)
        elif backend == "torchao":
            q, how = self._torchao(model.to(device))
        elif backend == "pt2e_x86":
            q, how = self._pt2e(model.to("cpu"), scheme, cal)
        else:  # validated by the config schema; a spec written by hand may still say anything
            raise Unsupported(f"unknown int8 backend {backend!r}; known: auto, {', '.join(INT8_BACKENDS)}")
        counts = quantized_layers(q)
        if counts["int8"] == 0:
            raise Unsupported(f"int8 ({backend}, {scheme}): no layer of this model was quantized ({how})")
        cal_txt = f", calibrated on {len(cal)} training samples" if cal is not None else ""
        self.impl = f"int8 {scheme} PTQ, {how} [{backend}: {why}]{cal_txt}: {describe_counts(counts)}"
        return q

    def _torch_ao(self, model, engine: str, scheme: str, cal):
        import torch
        from torch import nn

        if engine not in torch.backends.quantized.supported_engines:
            raise Unsupported(
                f"int8 backend {engine}: this torch build has no {engine} quantized engine "
                f"(supported: {', '.join(torch.backends.quantized.supported_engines)})"
            )
        torch.backends.quantized.engine = engine  # global: the quantized kernels dispatch on it at run time too
        with quiet_quantization():
            if scheme == "dynamic":
                if not any(isinstance(m, nn.Linear) for m in model.modules()):
                    raise Unsupported(
                        "int8 dynamic: the model has no Linear layers (dynamic quantization quantizes Linear layers "
                        "only)"
                    )
                q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
                return q, f"torch.ao.quantization.quantize_dynamic (engine {engine})"
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            try:
                prepared = prepare_fx(model, get_default_qconfig_mapping(engine), (cal[:2],))
            except Exception as e:  # noqa: BLE001 - torch.fx tracing fails on data-dependent control flow
                raise Unsupported(
                    f"int8 static: FX graph mode cannot trace this model ({type(e).__name__}: {str(e)[:300]}). "
                    "Fix: precision_options.int8.scheme: dynamic (Linear layers only), or make the forward traceable"
                ) from None
            _calibrate(prepared, cal, self._forward)
            return convert_fx(prepared), f"FX graph mode prepare_fx/convert_fx (engine {engine})"

    def _torchao(self, model):
        try:
            import torchao
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError as e:
            raise Unsupported(f"int8 backend torchao: torchao cannot be imported ({e})") from None
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return model, f"torchao {torchao.__version__} quantize_(Int8DynamicActivationInt8WeightConfig)"

    def _pt2e(self, model, scheme: str, cal):
        import torch

        try:
            with ignoring(COMPILE_WARNINGS):  # importing it imports torch._inductor
                import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
                from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        except ImportError as e:
            raise Unsupported(f"int8 backend pt2e_x86: torchao's PT2E quantization cannot be imported ({e})") from None
        if cal is None:
            raise Unsupported(
                "int8 backend pt2e_x86 needs calibration samples (static and dynamic alike: it exports with them)"
            )
        batch = torch.export.Dim("batch", min=1)
        exported = torch.export.export(model, (cal[:2],), dynamic_shapes=({0: batch},)).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(is_dynamic=scheme == "dynamic"))
        prepared = prepare_pt2e(exported, quantizer)
        _calibrate(prepared, cal, self._forward)
        converted = convert_pt2e(prepared)
        from torchao.quantization.pt2e import allow_exported_model_train_eval

        allow_exported_model_train_eval(converted)  # model.eval() (the runner's) on an exported graph
        self.compiles = True
        return torch.compile(converted), "torchao PT2E X86InductorQuantizer + torch.compile (inductor, freezing)"


def _calibrate(prepared, cal, forward, batch: int = 256) -> None:
    import torch

    with torch.no_grad():
        for i in range(0, len(cal), batch):
            forward(prepared, cal[i : i + batch])


# ---------------------------------------------------------------- what was quantized
_PT2E_LAYER_OPS = {"conv1d": "conv", "conv2d": "conv", "conv3d": "conv", "linear": "linear"}


def quantized_layers(model) -> dict[str, int]:
    """Layers of a prepared model: {'linear_int8', 'conv_int8', 'linear_fp', 'conv_fp', 'int8'}.

    Counted in the model itself: torch.ao quantized modules (static, dynamic), torchao's int8
    weight tensors, quantized functional ops in an FX graph (a model whose root is a bare Linear
    becomes ``torch.ops.quantized.linear``), and for a PT2E graph the conv/linear nodes whose
    weight comes out of a dequantize node (int8 weights)."""
    import torch
    from torch import nn

    inner = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    c = {"linear_int8": 0, "conv_int8": 0, "linear_fp": 0, "conv_fp": 0}
    nnq = torch.ao.nn.quantized
    float_conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    for m in inner.modules():
        if isinstance(m, nnq.Linear) or isinstance(m, nnq.dynamic.Linear):
            c["linear_int8"] += 1
        elif isinstance(m, (nnq.Conv1d, nnq.Conv2d, nnq.Conv3d)):
            c["conv_int8"] += 1
        elif isinstance(m, nn.Linear):
            w = m.weight
            c["linear_int8" if type(w) is not torch.Tensor and type(w) is not nn.Parameter else "linear_fp"] += 1
        elif isinstance(m, float_conv):
            c["conv_fp"] += 1
    graph = getattr(inner, "graph", None)
    for n in graph.nodes if graph is not None else ():
        if n.op != "call_function":
            continue
        target = str(n.target)
        if target.startswith(
            "quantized."
        ):  # FX-converted functional layers: torch.ops.quantized.linear, conv2d_relu, ...
            kind = "linear" if "linear" in target else "conv" if "conv" in target else None
            if kind:
                c[f"{kind}_int8"] += 1
            continue
        op = _PT2E_LAYER_OPS.get(getattr(n.target, "__name__", "").split(".")[0])
        if op is None or len(n.args) < 2:
            continue
        w = n.args[1]  # PT2E: an int8 weight reaches the layer through a dequantize node
        deq = getattr(w, "op", None) == "call_function" and "dequantize" in str(getattr(w, "target", ""))
        c[f"{op}_{'int8' if deq else 'fp'}"] += 1
    c["int8"] = c["linear_int8"] + c["conv_int8"]
    return c


def describe_counts(c: dict[str, int]) -> str:
    parts = []
    for kind, label in (("conv", "conv"), ("linear", "Linear")):
        if c[f"{kind}_int8"]:
            parts.append(f"{c[f'{kind}_int8']} {label} layer(s) int8")
    for kind, label in (("conv", "conv"), ("linear", "Linear")):
        if c[f"{kind}_fp"]:
            parts.append(f"{c[f'{kind}_fp']} {label} layer(s) fp32")
    return ", ".join(parts)


# ---------------------------------------------------------------- constructor
def get(name: str, phase: str = "train", options: dict[str, Any] | None = None) -> Precision:
    """The precision ``name`` for ``phase``; ``options`` = the config's precision_options.<name>."""
    import torch

    train = phase == "train"
    table = {
        "fp64": lambda: Precision("fp64", phase, "float64 (model.double())", torch.float64),
        "fp32": lambda: Precision("fp32", phase, "float32", torch.float32),
        "bf16": lambda: Precision("bf16", phase, "autocast(bfloat16)", torch.float32, torch.bfloat16),
        "fp16": lambda: Precision(
            "fp16",
            phase,
            "autocast(float16)+GradScaler" if train else "autocast(float16)",
            torch.float32,
            torch.float16,
            scaler=train,
        ),
        "fp16_noscaler": lambda: Precision(
            "fp16_noscaler", phase, "autocast(float16), no GradScaler", torch.float32, torch.float16
        ),
        "int8": lambda: Precision(
            "int8", phase, "int8 PTQ", torch.float32, quantize=True, options=int8_options(options)
        ),
    }
    if name not in table:
        raise ValueError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}")
    return table[name]()


def compile_error_reason(e: BaseException) -> str:
    """One line saying why torch.compile failed (the C++ compiler's absence named when that is it)."""
    text = f"{type(e).__name__}: {e}"
    first = type(e).__name__ + ": " + next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "(no message)")
    if re.search(r"(?i)(c\+\+ compiler|g\+\+|clang|\bcc\b|cxx|invalid_cxx|compiler.*not found|No such file)", text):
        return (
            f"no working C++ compiler for torch.compile's inductor backend ({first[:300]}). Fix: install gcc/g++ on "
            "the node or set CXX"
        )
    return first[:500]
