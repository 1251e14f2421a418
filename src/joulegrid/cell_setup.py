"""A cell's set-up, outside every measured window: torch's start (threads, torch._dynamo), the device
check, then ``Setup.run``: the workload and its data, the model (the reference model's weights for an
inference cell), its variant and precision, its FLOPs, and every compilation the measured window will
need (``compile_for_window``).

``Setup.columns`` holds the row's set-up columns as they become known, so that a set-up that fails leaves
what it had found (the runner assembles the row from it at the end). torch is imported where it is used.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .spec import CellSpec


class DeviceUnavailable(RuntimeError):
    pass


def start_torch(phase: str, threads: int | None) -> None:
    """torch's start, in the set-up: torch._dynamo imported (train: torch.optim's first step imports it,
    1-2 s: in the set-up, not the measured window) or its import deferred (infer: FLOP counting would
    import it for nothing, joulegrid.torch_startup); the job's CPU threads."""
    import torch

    if phase == "train":
        import torch._dynamo  # imported for its start-up cost, here
    else:
        from .torch_startup import defer_dynamo_import

        defer_dynamo_import()
    if threads:
        torch.set_num_threads(int(threads))


def check_device(device: str, hostname: str | None) -> None:
    """DeviceUnavailable (a skipped row, or a refused job with strict_devices) where the cell's device is not here."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"no CUDA device on host {hostname} (torch {torch.__version__}, torch.cuda.is_available() is False)"
        )


class Setup:
    """What a cell's phase runs on: its workload, data split, model and precision (``run`` makes them), and
    the set-up's columns of the row (dataset, precision and variant, FLOPs, model size, compile and set-up
    time)."""

    def __init__(self, spec: CellSpec, data_path: str | None, model_path: str | None) -> None:
        self.spec = spec
        self.data_path = data_path
        self.model_path = model_path
        self.workload: Any = None  # workloads.base.Workload
        self.split: Any = None  # workloads.base.Split
        self.model: Any = None  # the model as the phase measures it (variant, precision, compiled)
        self.precision: Any = None  # precision.Precision
        self.columns: dict[str, Any] = {}

    @property
    def epochs(self) -> int:
        return int(self.spec.settings.workload["epochs"])

    @property
    def target_quality(self) -> float | None:
        return self.spec.settings.workload.get("target_quality")

    def run(self, gpu_compute_capability: str | None = None) -> None:
        """Build everything; ``gpu_compute_capability`` (probes.accelerator) decides whether the precision runs
        natively on a GPU."""
        import torch

        from . import precision, probes, variants
        from .flops import count_flops, model_stats
        from .workloads.registry import check_extra_columns, create

        c, st, cols = self.spec.cell, self.spec.settings, self.columns
        t0 = time.perf_counter()
        seed = self.spec.seed
        torch.manual_seed(seed)
        wl_settings = st.workload
        prec = precision.get(c.precision, c.phase, st.precision_options_of(c.precision))
        prec.ensure_supported(c.device)
        self.precision = prec
        cols["precision_native"] = precision.native(
            c.precision, c.device, probes.cpu_flags(), probes.cpu_arch(), gpu_compute_capability
        )
        wl = self.workload = create(c.workload, wl_settings, seed)
        wl.split_seed = st.seed  # same split for every repeat and the reference model
        split = self.split = wl.load_data(self.data_path)
        prune_amount = float(wl_settings.get("prune_amount", variants.DEFAULT_PRUNE_AMOUNT))
        cols.update(
            dataset=split.name,
            dataset_rows=split.n_train + split.n_test,
            n_train=split.n_train,
            n_test=split.n_test,
            n_features=split.n_features,
            quality_metric=wl.quality_metric,
            quality_higher_is_better=wl.higher_is_better,
            precision_impl=prec.impl,
            variant_impl=variants.describe(c.variant, c.phase, prune_amount),
            target_quality=wl_settings.get("target_quality"),
        )
        model = wl.build_model(split)
        if c.phase == "infer":
            if not self.model_path:
                raise FileNotFoundError("an inference cell needs the reference model (--model)")
            model.load_state_dict(torch.load(self.model_path, map_location="cpu", weights_only=True))
        model = variants.apply(model, c.variant, c.phase, prune_amount)
        cols.update(count_flops(wl, model, split, c.batch_size, c.phase))
        # int8 static: calibrated on training data, through the workload's own inference step
        model = prec.prepare_model(model, c.device, c.phase, calibration=split.x_train, forward=wl.infer_batch)
        cols.update(prec.columns())  # int8: backend, scheme, which layers were quantized, and how
        cols.update(check_extra_columns(wl))
        cols.update(model_stats(model))
        if c.variant == "compiled" or prec.compiles:
            model = self.compile_for_window(model)
        cols["setup_s"] = time.perf_counter() - t0
        self.model = model

    def compile_for_window(self, model):
        """torch.compile (variant compiled; the pt2e_x86 int8 backend compiles in prepare_model) and every
        compilation the measured window will need, triggered here, outside it: each batch shape of the
        phase (and of the per-epoch evaluation) in its mode, under the precision's autocast. Records
        compile_s; a failure raises variants.CompileFailed with the reason (the row is failed)."""
        import torch

        from . import precision, variants
        from .phases import predict, sync

        c, wl, split, prec = self.spec.cell, self.workload, self.split, self.precision
        bs = c.batch_size

        def shapes(n: int, b: int) -> list[int]:
            return sorted({s for s in (min(b, n), n % b) if s > 0}, reverse=True)

        t0 = time.perf_counter()
        try:
            if c.variant == "compiled":
                model = variants.compile(model)
            with prec.compile_context():
                if c.phase == "train":
                    model.train()
                    x_all = torch.as_tensor(split.x_train)
                    y_all = torch.as_tensor(split.y_train) if split.y_train is not None else None
                    for n in shapes(len(x_all), bs):
                        xb = x_all[:n].to(device=c.device, dtype=prec.dtype)
                        yb = y_all[:n].to(c.device) if y_all is not None else None
                        with prec.autocast(c.device):
                            loss = wl.loss(model, xb, yb)
                        loss.backward()
                    model.zero_grad(set_to_none=True)  # the weights are untouched: no optimizer step
                    model.eval()
                    n_eval = min(split.n_test, self.spec.settings.measure.max_eval_samples)
                    for n in shapes(n_eval, max(bs, 1024)):  # Phase._evaluate's batches
                        predict(wl, model, split.x_test[:n], n, c.device, prec)
                    model.train()
                else:
                    model.eval()
                    for n in shapes(split.n_test, bs):
                        predict(wl, model, split.x_test[:n], n, c.device, prec)
                sync(c.device)
        except Exception as e:  # inductor/dynamo raise many kinds; the reason goes in the row
            raise variants.CompileFailed(f"torch.compile failed: {precision.compile_error_reason(e)}") from e
        self.columns["compile_s"] = time.perf_counter() - t0
        return model
