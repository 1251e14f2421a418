"""Run one grid cell: set up, warm up, measure one phase, score it, write one result row.

The runner owns the loops, clocks and meters; the workload (joulegrid.workloads) owns data,
model and maths; the precision (joulegrid.precision) owns dtypes, autocast and quantization.
Whatever happens, the cell ends with one row in the result schema: ``ok``, or ``failed`` /
``oom`` / ``nan`` / ``skipped`` with the error and whatever was measured before it. The one
exception: a meter listed in ``measure.required_meters`` that this host cannot provide stops the
job before anything runs (RequiredMeterMissing; no row, non-zero exit), like ``strict_devices``.

Windows of a cell (docs/measurement.md):
  set-up (meters prepare in the background) -> warm-up (not measured) -> idle baseline
  (measure.idle_baseline_s, meters running, process asleep) -> MEASURED window (peak RSS and
  device-memory peaks reset just before it; inference repeats full passes over the test split
  until measure.min_window_s) -> quality -> hotspot profiling passes (measure.hotspots; after
  the measured window, never inside it). The job's usage and energy are followed from the start of
  run() to the row (MeterSet.start_job ... finish): the whole job (job_* columns, without the idle
  baseline and the profiling passes) and the job's share of every window (docs/measurement.md,
  "Whose energy").
"""

from __future__ import annotations

import copy
import gc
import math
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from . import schema
from .cell_settings import CellSettings
from .grid import Cell
from .precision import Unsupported as PrecisionUnsupported


class DeviceUnavailable(RuntimeError):
    pass


class NonFiniteLoss(FloatingPointError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _cpu_time() -> float:
    # CLOCK_PROCESS_CPUTIME_ID: all threads, nanosecond resolution (os.times() ticks at 10 ms,
    # which reads 0.0 for a short inference pass).
    return time.process_time()


def _percentile(sorted_vals: list[float], q: float) -> float | None:
    """q-quantile of ascending values, linear interpolation between order statistics (numpy's default)."""
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


class Measurement:
    """Accumulates what the measured phase produced."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.data_s = 0.0
        self.eval_s = 0.0
        self.n_samples = 0
        self.epoch_wall: list[float] = []
        self.epoch_energy: list[int | None] = []  # MeterSet.lap() indices
        self.epoch_quality: list[float] = []
        self.epoch_loss: list[float] = []
        self.time_to_target: float | None = None


def identity_columns(cell: Cell, spec: dict[str, Any], attempt: int) -> dict[str, Any]:
    """The identity part of a row: the cell's axes and id, its seed, attempt and config hash, the site's
    carbon intensity, PUE and country (spec: what run-cell measures with, config.cell_spec_from_snapshot).
    The same for a measured row (CellRunner) and the row of a job that died (failures.record_failure)."""
    site = spec["settings"].get("site_facts") or {}
    return {
        **cell.axes(),
        "schema_version": schema.SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "cell_id": cell.id,
        "seed": int(spec["settings"]["seed"]) + cell.repeat,
        "attempt": attempt,
        "config_hash": spec.get("config_hash"),
        "carbon_intensity_g_per_kwh": site.get("carbon_intensity_g_per_kwh"),
        "pue": site.get("pue"),
        "country_iso": site.get("country_iso"),
    }


class CellRunner:
    def __init__(
        self,
        spec: dict[str, Any],
        out: str,
        data_path: str | None,
        model_path: str | None,
        attempt: int = 1,
        threads: int | None = None,
        measure_energy: bool = True,
    ):
        self.spec = spec
        self.measure_energy = measure_energy
        self.model = None
        self.cell = Cell(**spec["cell"], config_hash=spec.get("config_hash"))
        self.settings = CellSettings.from_dict(spec["settings"])  # typed, built once: the schema's defaults filled in
        self.out = out
        self.data_path = data_path
        self.model_path = model_path
        self.attempt = attempt
        self.threads = threads
        self.row: dict[str, Any] = schema.empty_row()
        self.meters = None

    # ------------------------------------------------------------------ row helpers
    def run(self) -> dict[str, Any]:
        from . import meters, probes

        self.row.update(identity_columns(self.cell, self.spec, self.attempt))
        self.row["started_at"] = _now()
        self.memory = probes.MemoryPeaks(self.cell.device)
        self._idle_wall: float | None = None
        self._epoch_laps: list[int | None] = []  # MeterSet.lap() indices, turned into energies at the end
        self._target_lap: int | None = None
        self.hotspot_rows: list[dict[str, Any]] = []
        # Meters first: a required meter this host lacks stops the job before anything runs
        # (RequiredMeterMissing propagates: no row); the expensive meter set-up then overlaps
        # the job's own set-up (data, model) in a background thread. A cuda cell is checked after
        # the device check, so that on a host without CUDA it stays a skipped row.
        if self.measure_energy:
            self.meters = meters.build(self.spec["settings"], self.cell.device, require=False)
            if self.cell.device != "cuda":
                self.meters.check_required()
            self.meters.start_job()  # the whole job's usage and counters, from here to the row
            self.meters.prepare_async()
        else:
            self.meters = meters.MeterSet([], [])
        try:
            self._run()
            self.row["status"] = schema.STATUS_OK
        except meters.RequiredMeterMissing:
            self.meters.close()
            raise
        except (DeviceUnavailable, PrecisionUnsupported) as e:
            if self.settings.strict_devices:
                raise
            self.row.update(status=schema.STATUS_SKIPPED, skip_reason=str(e))
        except NonFiniteLoss as e:
            self.row.update(status=schema.STATUS_NAN, error_type=type(e).__name__, error_message=str(e)[:2000])
        except MemoryError as e:
            self.row.update(
                status=schema.STATUS_OOM, error_type=type(e).__name__, error_message=str(e)[:2000] or "MemoryError"
            )
        except Exception as e:  # noqa: BLE001 - every failure becomes a row
            status = schema.STATUS_FAILED
            if type(e).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
                status = schema.STATUS_OOM
            msg = f"{e}\n{traceback.format_exc(limit=8)}"
            self.row.update(status=status, error_type=type(e).__name__, error_message=msg[:2000])
        finally:
            if self.meters is not None:
                self._finish_energy()
                self.meters.close()
                self.row["meters_absent"] = self.meters.absent
        self.row["peak_rss_bytes"] = self.memory.job_peak()
        self.row["finished_at"] = _now()
        return self.row

    def _finish_energy(self) -> None:
        """The job's energy: every window attributed, the whole job, per-epoch energies, CO2 (MeterSet.finish)."""
        r = self.row
        try:  # writing the row is part of the job: pyarrow's one-off start (its first table conversion,
            # ~0.2 s of CPU; the Parquet writer's import) happens now, inside the job's tracked time,
            # so that what remains after the figures are known (write() itself) takes milliseconds
            import pyarrow.parquet  # noqa: F401

            schema.to_table([{"status": schema.STATUS_OK}])
        except Exception:  # noqa: BLE001
            pass
        try:
            cols, laps = self.meters.finish(r.get("wall_s"), self._idle_wall)
        except Exception as e:  # noqa: BLE001 - attribution failing must not lose the measured run
            print(f"joulegrid: {self.cell.id}: energy attribution failed: {type(e).__name__}: {e}", file=sys.stderr)
            return
        r.update(cols)
        if self._epoch_laps:
            e = [laps[i] if i is not None and i < len(laps) else None for i in self._epoch_laps]
            r["epoch_energy_j"] = (
                e if all(v is not None for v in e) and len(e) == len(r.get("epoch_wall_s") or []) else None
            )
        if self._target_lap is not None and self._target_lap < len(laps):
            r["energy_to_target_j"] = laps[self._target_lap]
        if r.get("energy_j") is not None and r.get("carbon_intensity_g_per_kwh") is not None:
            r["co2_kg"] = r["energy_j"] / 3.6e6 * (r.get("pue") or 1.0) * r["carbon_intensity_g_per_kwh"] / 1000.0

    def write(self) -> None:
        from .io import write_table

        write_table(schema.to_table([self.row]), self.out)
        if self.hotspot_rows:
            from . import hotspots

            try:  # a side file: failing to write it must not fail the measured run
                hotspots.write(self.hotspot_rows, hotspots.path_for(self.out, self.cell.file_id))
            except Exception as e:  # noqa: BLE001
                print(f"joulegrid: {self.cell.id}: hotspots not written: {type(e).__name__}: {e}", file=sys.stderr)

    # ------------------------------------------------------------------ the cell
    def _run(self) -> None:
        import torch

        from . import precision, probes, variants
        from .flops import count_flops, model_stats
        from .torch_startup import defer_dynamo_import
        from .workloads.registry import check_extra_columns, create

        c = self.cell
        if c.phase == "train":
            import torch._dynamo  # noqa: F401 - torch.optim's first step imports it (1-2 s): in the set-up, not the measured window
        else:
            defer_dynamo_import()  # FLOP counting would import torch._dynamo (1-2 s) for nothing
        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.row.update(probes.host())
        self.row.update(probes.scheduler(self.threads))
        wrong_cpu = self.settings.cpu_model_problem(self.row.get("cpu_model"), self.row.get("hostname"))
        if wrong_cpu:  # job.cpu_model: measured on the pinned CPU model only (a skipped row names both)
            raise DeviceUnavailable(wrong_cpu)
        self.meters.reserved(self.row)  # what the scheduler reserved: the attribution's idle shares
        if c.device == "cuda" and not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"no CUDA device on host {self.row['hostname']} (torch {torch.__version__}, "
                f"torch.cuda.is_available() is False)"
            )
        self.meters.check_required()
        self.row.update(probes.accelerator())
        t0 = time.perf_counter()
        seed = self.row["seed"]
        torch.manual_seed(seed)
        wl_settings = self.settings.workload
        prec = precision.get(c.precision, c.phase, self.settings.precision_options_of(c.precision))
        prec.ensure_supported(c.device)
        self.row["precision_native"] = precision.native(
            c.precision, c.device, probes.cpu_flags(), probes.cpu_arch(), self.row.get("gpu_compute_capability")
        )
        wl = create(c.workload, wl_settings, seed)
        wl.split_seed = self.settings.seed  # same split for every repeat and the reference model
        split = wl.load_data(self.data_path)
        prune_amount = float(wl_settings.get("prune_amount", variants.DEFAULT_PRUNE_AMOUNT))
        self.row.update(
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
        self.row.update(count_flops(wl, model, split, c.batch_size, c.phase))
        # int8 static: calibrated on training data, through the workload's own inference step
        model = prec.prepare_model(model, c.device, c.phase, calibration=split.x_train, forward=wl.infer_batch)
        self.row.update(prec.columns())  # int8: backend, scheme, which layers were quantized, and how
        self.row.update(check_extra_columns(wl))
        self.row.update(model_stats(model))
        if c.variant == "compiled" or prec.compiles:
            model = self._compile(torch, wl, model, split, prec)
        self.row["setup_s"] = time.perf_counter() - t0
        self.row.update(probes.software())  # after imports, with the real thread settings
        self.row.update(probes.threads_check(self.row))  # torch threads vs allocation vs OMP/MKL

        self.model = model
        tr = time.perf_counter()
        self.meters.ready()  # joins the background set-up; RequiredMeterMissing if one failed
        self.row["meters_ready_s"] = time.perf_counter() - tr
        self.row["meters_absent"] = self.meters.absent
        if c.phase == "train":
            m, readings, wall, cpu = self._train(torch, wl, model, split, prec)
        else:
            m, readings, wall, cpu = self._infer(torch, wl, model, split, prec)
        variants.finalize(model)  # pruning masks (train) folded into the weights
        self._fill_measurement(m, readings, wall, cpu)
        self._maybe_profile(torch, wl, model, split, prec)

    # ------------------------------------------------------------------ compilation
    def _compile(self, torch, wl, model, split, prec):
        """torch.compile (variant compiled; the pt2e_x86 int8 backend compiles in prepare_model) and every
        compilation the measured window will need, triggered here, outside it: each batch shape of the
        phase (and of the per-epoch evaluation) in its mode, under the precision's autocast. Records
        compile_s; a failure raises variants.CompileFailed with the reason (the row is failed)."""
        from . import precision, variants

        c = self.cell
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
                    n_eval = min(split.n_test, self.settings.measure.max_eval_samples)
                    for n in shapes(n_eval, max(bs, 1024)):  # _evaluate's batches
                        self._predict(torch, wl, model, split.x_test[:n], n, c.device, prec)
                    model.train()
                else:
                    model.eval()
                    for n in shapes(split.n_test, bs):
                        self._predict(torch, wl, model, split.x_test[:n], n, c.device, prec)
                _sync(c.device)
        except Exception as e:  # noqa: BLE001 - inductor/dynamo raise many kinds; the reason goes in the row
            raise variants.CompileFailed(f"torch.compile failed: {precision.compile_error_reason(e)}") from e
        self.row["compile_s"] = time.perf_counter() - t0
        return model

    @staticmethod
    def _graphs_compiled() -> int:
        """Graphs torch.compile compiled so far in this process (0 if torch._dynamo was never imported)."""
        dynamo = sys.modules.get("torch._dynamo.utils")
        return int(dynamo.counters["stats"]["unique_graphs"]) if dynamo is not None else 0

    # ------------------------------------------------------------------ windows
    def _open_window(self, torch) -> tuple[float, float]:
        """Idle baseline (if configured), reset the peaks, start the meters; returns (wall0, cpu0)."""
        ms = self.settings.measure
        gc.collect()
        idle_s = float(ms.idle_baseline_s)
        if idle_s > 0 and self.meters.meters:
            self.meters.start("idle")
            t = time.perf_counter()
            time.sleep(idle_s)
            self.meters.stop()
            self._idle_wall = time.perf_counter() - t
            self.row["idle_window_s"] = self._idle_wall
        self.memory.start_window(torch)
        self._graphs_before = self._graphs_compiled()
        self.meters.start("measured")
        return time.perf_counter(), _cpu_time()

    def _close_window(self, torch, w0: float, c0: float):
        """Stop the window: (readings, wall_s, cpu_s); records the window's memory peaks."""
        _sync(self.cell.device)
        wall, cpu = time.perf_counter() - w0, _cpu_time() - c0
        readings = self.meters.stop()
        self.window_compiles = self._graphs_compiled() - self._graphs_before
        if self.window_compiles:  # a shape _compile did not foresee: the window paid for a compilation
            print(f"joulegrid: {self.cell.id}: torch.compile compiled {self.window_compiles} graph(s) inside the measured window",
                  file=sys.stderr)  # fmt: skip
        self.row.update(self.memory.window_columns(torch))
        return readings, wall, cpu

    # ------------------------------------------------------------------ phases
    def _batches_x(self, torch, x, bs: int, device: str, dtype):
        """In-memory batching by slicing (no DataLoader, no per-sample sampler)."""
        t = torch.as_tensor(x)
        for i in range(0, len(t), bs):
            yield t[i : i + bs].to(device=device, dtype=dtype, non_blocking=True)

    def _predict(self, torch, wl, model, x, bs, device, prec, m: Measurement | None = None):
        """Inference over x in batches; with m, per-batch latency (data + forward) and data time."""
        outs = []
        with torch.inference_mode(), prec.autocast(device):
            batches = self._batches_x(torch, x, bs, device, prec.dtype)
            while True:
                t0 = time.perf_counter()
                xb = next(batches, None)
                if xb is None:
                    break
                t1 = time.perf_counter()
                outs.append(wl.infer_batch(model, xb))
                if m is not None:
                    _sync(device)
                    t2 = time.perf_counter()
                    m.data_s += t1 - t0
                    m.latencies.append(t2 - t0)
                    m.n_samples += len(xb)
        return torch.cat(outs) if outs else None

    def _evaluate(self, torch, wl, model, split, prec, limit: int | None = None) -> dict[str, float]:
        c = self.cell
        n = min(split.n_test, limit) if limit else split.n_test
        was_training = model.training
        model.eval()
        y = split.y_test[:n] if split.y_test is not None else None
        out = self._predict(torch, wl, model, split.x_test[:n], max(c.batch_size, 1024), c.device, prec)
        model.train(was_training)
        return wl.evaluate(out, split.x_test[:n], y)

    def _infer(self, torch, wl, model, split, prec):
        c = self.cell
        model.eval()
        warm = self.settings.measure.warmup_batches
        t0 = time.perf_counter()
        if warm:
            self._predict(torch, wl, model, split.x_test[: warm * c.batch_size], c.batch_size, c.device, prec)
        _sync(c.device)
        self.row["warmup_s"] = time.perf_counter() - t0
        m = Measurement()
        # Short inference passes (tens of ms) cannot be metered: repeat full passes over the
        # test split until the window lasts min_window_s (docs/measurement.md, "windows").
        min_window = float(self.settings.measure.min_window_s)
        w0, c0 = self._open_window(torch)
        out, passes = None, 0
        while True:
            o = self._predict(torch, wl, model, split.x_test, c.batch_size, c.device, prec, m)
            out = o if out is None else out
            passes += 1
            if time.perf_counter() - w0 >= min_window:
                break
        readings, wall, cpu = self._close_window(torch, w0, c0)
        self.row["infer_passes"] = passes
        metrics = wl.evaluate(out, split.x_test, split.y_test)
        self._set_quality(wl, metrics)
        self.row["epochs"] = 0
        return m, readings, wall, cpu

    def _train(self, torch, wl, model, split, prec):
        c = self.cell
        device = c.device
        model.train()
        opt = wl.make_optimizer(model)
        scaler = prec.make_scaler(device)
        x_all = torch.as_tensor(split.x_train)
        y_all = torch.as_tensor(split.y_train) if split.y_train is not None else None
        n = len(x_all)
        gen = torch.Generator().manual_seed(self.row["seed"])
        limit = self.settings.measure.max_eval_samples
        target = self.row.get("target_quality")
        epochs = int(self.settings.workload["epochs"])

        def step(mdl, optim, sc, xb, yb):
            return prec.train_step(device, lambda: wl.loss(mdl, xb, yb), optim, sc)

        # warm-up on a copy, so the measured training starts from the seeded initial weights
        warm = self.settings.measure.warmup_batches
        t0 = time.perf_counter()
        if warm:
            wm = copy.deepcopy(model)
            wo = wl.make_optimizer(wm)
            ws = prec.make_scaler(device)
            for i in range(warm):
                sl = slice((i * c.batch_size) % n, (i * c.batch_size) % n + c.batch_size)
                xb = x_all[sl].to(device=device, dtype=prec.dtype)
                yb = y_all[sl].to(device) if y_all is not None else None
                step(wm, wo, ws, xb, yb)
            del wm, wo, ws
        _sync(device)
        self.row["warmup_s"] = time.perf_counter() - t0

        self._train_pass_args = (step, x_all, y_all)
        m = Measurement()
        w0, c0 = self._open_window(torch)
        reached = False
        for _epoch in range(epochs):
            loss_sum, nb = self._train_epoch(torch, step, model, opt, scaler, x_all, y_all, gen, prec, m, _epoch)
            te0 = time.perf_counter()
            metrics = self._evaluate(torch, wl, model, split, prec, limit)
            m.eval_s += time.perf_counter() - te0
            q = metrics.get(wl.quality_metric)
            elapsed = time.perf_counter() - w0
            m.epoch_wall.append(elapsed)
            m.epoch_quality.append(q)
            m.epoch_loss.append(loss_sum / max(nb, 1))
            lap = self.meters.lap()  # index of the lap: the job's energy so far is known at the end
            m.epoch_energy.append(lap)
            if target is not None and not reached and q is not None:
                if (q >= target) if wl.higher_is_better else (q <= target):
                    reached = True
                    m.time_to_target = elapsed
                    self._target_lap = lap
                    break
        readings, wall, cpu = self._close_window(torch, w0, c0)
        self._set_quality(wl, metrics)
        self.row["loss"] = m.epoch_loss[-1] if m.epoch_loss else None
        self.row["epochs"] = len(m.epoch_wall)
        self.row["epoch_wall_s"] = m.epoch_wall
        self.row["epoch_quality"] = m.epoch_quality
        self.row["epoch_loss"] = m.epoch_loss
        self._epoch_laps = m.epoch_energy  # epoch_energy_j and energy_to_target_j: _finish_energy
        self.row["time_to_target_s"] = m.time_to_target
        return m, readings, wall, cpu

    def _train_epoch(
        self,
        torch,
        step,
        model,
        opt,
        scaler,
        x_all,
        y_all,
        gen,
        prec,
        m: Measurement,
        epoch: int = 0,
        max_batches: int | None = None,
    ):
        """One epoch: shuffle (randperm + gather: data time), then the batches. Returns (loss sum, batches)."""
        c = self.cell
        device = c.device
        n = len(x_all)
        td = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        xs = x_all[perm]
        ys = y_all[perm] if y_all is not None else None
        m.data_s += time.perf_counter() - td
        loss_sum, nb = 0.0, 0
        for i in range(0, n, c.batch_size):
            if max_batches is not None and nb >= max_batches:
                break
            tb = time.perf_counter()
            xb = xs[i : i + c.batch_size].to(device=device, dtype=prec.dtype, non_blocking=True)
            yb = ys[i : i + c.batch_size].to(device, non_blocking=True) if ys is not None else None
            td = time.perf_counter()
            loss = step(model, opt, scaler, xb, yb)
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise NonFiniteLoss(f"non-finite training loss {lv} at epoch {epoch}, batch {nb}")
            _sync(device)
            te = time.perf_counter()
            m.data_s += td - tb
            m.latencies.append(te - tb)
            m.n_samples += len(xb)
            loss_sum += lv
            nb += 1
        return loss_sum, nb

    # ------------------------------------------------------------------ hotspots
    def _maybe_profile(self, torch, wl, model, split, prec) -> None:
        """cProfile + torch.profiler over separate passes AFTER the measured window (measure.hotspots)."""
        ms = self.settings.measure
        mode = ms.hotspots
        if not self.measure_energy or mode == "never" or (mode == "first_repeat" and self.cell.repeat != 0):
            return
        from . import hotspots

        c = self.cell
        max_b = ms.hotspot_batches
        if c.phase == "train":
            step, x_all, y_all = self._train_pass_args
            pm = copy.deepcopy(model)  # the trained model stays as measured
            po = wl.make_optimizer(pm)
            ps = prec.make_scaler(c.device)
            gen = torch.Generator().manual_seed(self.row["seed"] + 1)

            def one_pass() -> int:
                return self._train_epoch(torch, step, pm, po, ps, x_all, y_all, gen, prec, Measurement(), 0, max_b)[1]
        else:
            x = split.x_test[: max_b * c.batch_size]

            def one_pass() -> int:
                m = Measurement()
                self._predict(torch, wl, model, x, c.batch_size, c.device, prec, m)
                return len(m.latencies)

        self.meters.mark("profile:start")  # joulegrid's own work: left out of job_energy_j / job_wall_s
        try:
            self.hotspot_rows, self.row["profile_s"] = hotspots.profile(one_pass, c.device, self.row, ms.hotspot_top)
        except Exception as e:  # noqa: BLE001 - profiling is optional: never lose the run for it
            self.hotspot_rows = []
            print(f"joulegrid: {c.id}: hotspot profiling failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            self.meters.mark("profile:end")

    # ------------------------------------------------------------------ results
    def _set_quality(self, wl, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if k in schema.BY_NAME and k not in ("quality",):
                self.row[k] = v
        self.row["quality"] = metrics.get(wl.quality_metric)

    def _fill_measurement(self, m: Measurement, readings, wall: float, cpu: float) -> None:
        lat = sorted(m.latencies)
        r = self.row
        r.update(
            wall_s=wall,
            cpu_s=cpu,
            data_s=m.data_s,
            eval_s=m.eval_s,
            compute_s=max(wall - m.data_s - m.eval_s, 0.0),
            n_batches=len(m.latencies),
            n_samples=m.n_samples,
            samples_per_s=m.n_samples / wall if wall > 0 else None,
            latency_p50_s=_percentile(lat, 0.5),
            latency_p90_s=_percentile(lat, 0.9),
            latency_p99_s=_percentile(lat, 0.99),
        )
        from .flops import throughput

        c = self.cell
        per_sample = r["flops_per_sample_train"] if c.phase == "train" else r["flops_per_sample_fwd"]
        r.update(throughput(per_sample, m.n_samples, wall, c.device, r.get("gpu_model"), c.precision))
        # energy columns: MeterSet.finish at the end of the job (_finish_energy), when every window is known


def train_reference(spec: dict[str, Any], out: str, data_path: str | None, threads: int | None = None) -> None:
    """Train the fp32 baseline model that inference cells load (not measured), save its state_dict."""
    import torch

    from .io import atomic_path

    spec = copy.deepcopy(spec)
    spec["cell"].update(phase="train", precision="fp32", variant="baseline", device="cpu", repeat=0)
    runner = CellRunner(spec, out, data_path, None, threads=threads, measure_energy=False)
    row = runner.run()
    if row["status"] != schema.STATUS_OK:
        raise RuntimeError(f"training the reference model failed: {row['error_type']}: {row['error_message']}")
    with atomic_path(out, suffix=".pt") as tmp:
        torch.save(runner.model.state_dict(), tmp)


def run_and_write(
    spec: dict[str, Any],
    out: str,
    data_path: str | None,
    model_path: str | None,
    attempt: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    runner = CellRunner(spec, out, data_path, model_path, attempt, threads)
    row = runner.run()
    if attempt > 1 and row["status"] not in (schema.STATUS_OK, schema.STATUS_SKIPPED):
        # earlier attempts died (killed, crashed): their errors, from <results>/attempts/, stay in the row
        from .failures import attempts_path, earlier_errors, read_attempts

        earlier = earlier_errors(read_attempts(attempts_path(out, runner.cell.file_id)), attempt)
        if earlier:
            block = f"\nearlier attempts:\n{earlier}"[:1000]
            row["error_message"] = (row["error_message"] or "")[: 2000 - len(block)] + block
    runner.write()
    return row
