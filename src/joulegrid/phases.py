"""The measured phase of a cell: its training or inference loop, the window around it, what it produced.

``Phase.run`` (docs/measurement.md, "windows"): warm-up (not measured) -> ``MeasuredWindow``: the idle
baseline (measure.idle_baseline_s: meters running, process asleep), the peaks reset, the meters run around
the loop, repeated in whole units until the window lasts measure.min_window_s -- training: whole training
runs (the epochs, each evaluated, until the target quality), each from the same initial weights, RNG state
and data order; inference: full passes over the test split -> the quality. ``PhaseResult`` holds what the
phase produced, filled as it goes (a phase that fails leaves what it had measured); ``Phase.run`` may run
again (the outlier rule's next attempt: training starts again from the initial weights);
``Phase.profile_pass`` runs the same loop again for the hotspot profilers, after the window.

torch is imported where it is used: importing this module does not import it (the runner starts the job's
meters first, so that their set-up overlaps torch's).
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import schema

if TYPE_CHECKING:
    from .cell_settings import Measure
    from .cell_setup import Setup
    from .diagnostics import EdgeProbe
    from .grid import Cell
    from .meters import MeterSet
    from .probes import MemoryPeaks

log = logging.getLogger(__name__)


class NonFiniteLoss(FloatingPointError):
    pass


def cpu_time() -> float:
    # CLOCK_PROCESS_CPUTIME_ID: all threads, nanosecond resolution (os.times() ticks at 10 ms,
    # which reads 0.0 for a short inference pass).
    return time.process_time()


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def percentile(sorted_vals: list[float], q: float) -> float | None:
    """q-quantile of ascending values, linear interpolation between order statistics (numpy's default)."""
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def graphs_compiled() -> int:
    """Graphs torch.compile compiled so far in this process (0 if torch._dynamo was never imported)."""
    dynamo = sys.modules.get("torch._dynamo.utils")
    return int(dynamo.counters["stats"]["unique_graphs"]) if dynamo is not None else 0


class Measurement:
    """Accumulates what the batches of a loop produced."""

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


# ------------------------------------------------------------------ batches
def batches(x, bs: int, device: str, dtype) -> Iterator[Any]:
    """In-memory batching by slicing (no DataLoader, no per-sample sampler)."""
    import torch

    t = torch.as_tensor(x)
    for i in range(0, len(t), bs):
        yield t[i : i + bs].to(device=device, dtype=dtype, non_blocking=True)


def predict(wl, model, x, bs: int, device: str, prec, m: Measurement | None = None):
    """Inference over x in batches; with m, per-batch latency (data + forward) and data time."""
    import torch

    outs = []
    with torch.inference_mode(), prec.autocast(device):
        it = batches(x, bs, device, prec.dtype)
        while True:
            t0 = time.perf_counter()
            xb = next(it, None)
            if xb is None:
                break
            t1 = time.perf_counter()
            outs.append(wl.infer_batch(model, xb))
            if m is not None:
                sync(device)
                t2 = time.perf_counter()
                m.data_s += t1 - t0
                m.latencies.append(t2 - t0)
                m.n_samples += len(xb)
    return torch.cat(outs) if outs else None


@dataclass
class Trainee:
    """A model being trained, with its optimizer and GradScaler."""

    model: Any
    optimizer: Any
    scaler: Any


@dataclass
class TrainLoop:
    """What every training pass of a cell shares: the precision's step on the workload's loss, the training
    split on the host, the batch size, the device and the input dtype."""

    step: Callable[[Any, Any, Any, Any, Any], Any]  # (model, optimizer, scaler, xb, yb) -> loss
    x: Any
    y: Any | None
    batch_size: int
    device: str
    dtype: Any

    def train_epoch(
        self, t: Trainee, gen, m: Measurement, epoch: int = 0, max_batches: int | None = None
    ) -> tuple[float, int]:
        """One epoch: shuffle (randperm + gather: data time), then the batches. Returns (loss sum, batches)."""
        import torch

        n = len(self.x)
        td = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        xs = self.x[perm]
        ys = self.y[perm] if self.y is not None else None
        m.data_s += time.perf_counter() - td
        loss_sum, nb = 0.0, 0
        for i in range(0, n, self.batch_size):
            if max_batches is not None and nb >= max_batches:
                break
            tb = time.perf_counter()
            xb = xs[i : i + self.batch_size].to(device=self.device, dtype=self.dtype, non_blocking=True)
            yb = ys[i : i + self.batch_size].to(self.device, non_blocking=True) if ys is not None else None
            td = time.perf_counter()
            loss = self.step(t.model, t.optimizer, t.scaler, xb, yb)
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise NonFiniteLoss(f"non-finite training loss {lv} at epoch {epoch}, batch {nb}")
            sync(self.device)
            te = time.perf_counter()
            m.data_s += td - tb
            m.latencies.append(te - tb)
            m.n_samples += len(xb)
            loss_sum += lv
            nb += 1
        return loss_sum, nb


# ------------------------------------------------------------------ the window
class MeasuredWindow:
    """``with MeasuredWindow(...) as w:`` the measured window of a phase.

    Entering: the idle baseline (if configured: the same meters over ``idle_baseline_s`` of sleep), the
    memory peaks reset, the meters started, the clocks read. Leaving normally: the wall and CPU time
    (``wall_s``, ``cpu_s``), the meters' readings, the window's memory peaks (``memory``) and the graphs
    torch.compile compiled inside it (a shape the set-up did not foresee: said in the log). A window whose
    body raised is left as it is: the cell failed, its row has no window figures (MeterSet.close stops the
    meters)."""

    def __init__(
        self,
        meters: MeterSet,
        memory: MemoryPeaks,
        device: str,
        idle_baseline_s: float,
        cell_id: str,
        probe: EdgeProbe | None = None,
    ):
        self.meters = meters
        self.memory = memory
        self.device = device
        self.idle_baseline_s = float(idle_baseline_s)
        self.cell_id = cell_id
        self.probe = probe  # CPU frequency and GPU clock-event reasons at the edges (diagnostics.py)
        self.idle_s: float | None = None
        self.wall_s: float | None = None
        self.cpu_s: float | None = None
        self.readings: list[Any] = []
        self.memory_columns: dict[str, Any] = {}
        self.compiles = 0
        self.started_at: datetime | None = None  # UTC: the analysis integrates a site's intensity series over it
        self.finished_at: datetime | None = None
        self._graphs0 = 0
        self._t0 = 0.0
        self._c0 = 0.0

    def __enter__(self) -> MeasuredWindow:
        gc.collect()
        if self.idle_baseline_s > 0 and self.meters.meters:
            self.meters.start("idle")
            t = time.perf_counter()
            time.sleep(self.idle_baseline_s)
            self.meters.stop()
            self.idle_s = time.perf_counter() - t
        self.memory.start_window()
        self._graphs0 = graphs_compiled()
        if self.probe is not None:
            self.probe.start()
        self.meters.start("measured")
        self.started_at = datetime.now(UTC)
        self._t0, self._c0 = time.perf_counter(), cpu_time()
        return self

    def elapsed(self) -> float:
        """Wall time since the window opened."""
        return time.perf_counter() - self._t0

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            return False
        sync(self.device)
        self.wall_s, self.cpu_s = time.perf_counter() - self._t0, cpu_time() - self._c0
        self.finished_at = datetime.now(UTC)
        if self.probe is not None:
            self.probe.end()  # the CPUs still at the loop's clock (microseconds)
        self.readings = self.meters.stop()
        self.compiles = graphs_compiled() - self._graphs0
        if self.compiles:
            log.warning(
                "%s: torch.compile compiled %d graph(s) inside the measured window", self.cell_id, self.compiles
            )
        self.memory_columns = self.memory.window_columns()
        return False


# ------------------------------------------------------------------ what a phase produced
@dataclass
class PhaseResult:
    """What the measured phase produced, filled as it goes: the warm-up, the idle baseline, the window
    (wall and CPU time, memory peaks, its batches), the quality, the epochs (train) or passes (infer)."""

    warmup_s: float | None = None
    idle_window_s: float | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)  # the window's peaks
    batches: Measurement | None = None  # the window's batches (set when it closed)
    window_compiles: int | None = None  # graphs torch.compile compiled inside the window (0: the set-up foresaw all)
    window_started_at: datetime | None = None  # UTC edges of the window (carbon intensity series: joulegrid.carbon)
    window_finished_at: datetime | None = None
    quality: dict[str, Any] = field(default_factory=dict)  # quality columns (the metric's value in "quality")
    loss: float | None = None
    epochs: int | None = None
    infer_passes: int | None = None
    train_runs: int | None = None  # whole training runs in the window (train)
    epoch_laps: list[int | None] = field(default_factory=list)  # MeterSet.lap() indices: energies at the end
    target_lap: int | None = None

    def close(self, w: MeasuredWindow, m: Measurement) -> None:
        """Record the closed window."""
        self.wall_s, self.cpu_s, self.memory, self.batches = w.wall_s, w.cpu_s, w.memory_columns, m
        self.window_compiles = w.compiles
        self.window_started_at, self.window_finished_at = w.started_at, w.finished_at

    def set_quality(self, wl, metrics: dict[str, float]) -> None:
        self.quality = {k: v for k, v in metrics.items() if k in schema.BY_NAME and k != "quality"}
        self.quality["quality"] = metrics.get(wl.quality_metric)

    def columns(self) -> dict[str, Any]:
        """The row's columns of the phase (what was measured before a failure, or all of them)."""
        out: dict[str, Any] = {"warmup_s": self.warmup_s, "idle_window_s": self.idle_window_s, **self.memory}
        out.update(self.quality)
        if self.infer_passes is not None:
            out["infer_passes"] = self.infer_passes
        if self.train_runs is not None:
            out["train_runs"] = self.train_runs
            if self.wall_s is not None and self.train_runs:
                out["train_run_wall_s"] = self.wall_s / self.train_runs
        m = self.batches
        if self.epochs is not None:
            out["epochs"] = self.epochs
            if self.epochs and m is not None:  # training
                out.update(
                    loss=self.loss,
                    epoch_wall_s=m.epoch_wall,
                    epoch_quality=m.epoch_quality,
                    epoch_loss=m.epoch_loss,
                    time_to_target_s=m.time_to_target,
                )
        if m is None or self.wall_s is None:
            return out
        wall, lat = self.wall_s, sorted(m.latencies)
        out.update(
            window_started_at=self.window_started_at,
            window_finished_at=self.window_finished_at,
            wall_s=wall,
            cpu_s=self.cpu_s,
            data_s=m.data_s,
            eval_s=m.eval_s,
            compute_s=max(wall - m.data_s - m.eval_s, 0.0),
            n_batches=len(m.latencies),
            n_samples=m.n_samples,
            samples_per_s=m.n_samples / wall if wall > 0 else None,
            latency_p50_s=percentile(lat, 0.5),
            latency_p90_s=percentile(lat, 0.9),
            latency_p99_s=percentile(lat, 0.99),
        )
        return out

    def energy_columns(self, laps: list[float | None], energy_j: float | None = None) -> dict[str, Any]:
        """epoch_energy_j and energy_to_target_j from the job's cumulative energy at each lap (MeterSet.finish)
        (the first training run's laps); train_run_energy_j = energy_j / train_runs."""
        out: dict[str, Any] = {}
        if self.train_runs and energy_j is not None:
            out["train_run_energy_j"] = energy_j / self.train_runs
        if self.epoch_laps:
            e = [laps[i] if i is not None and i < len(laps) else None for i in self.epoch_laps]
            walls = self.batches.epoch_wall if self.batches is not None else []
            out["epoch_energy_j"] = e if all(v is not None for v in e) and len(e) == len(walls) else None
        if self.target_lap is not None and self.target_lap < len(laps):
            out["energy_to_target_j"] = laps[self.target_lap]
        return out


# ------------------------------------------------------------------ the phase
class Phase:
    """The measured phase of one cell, over its set-up (cell_setup.Setup: workload, data, model, precision)."""

    def __init__(
        self,
        cell: Cell,
        measure: Measure,
        setup: Setup,
        seed: int,
        meters: MeterSet,
        memory: MemoryPeaks,
        min_window_s: float | None = None,
        probe: EdgeProbe | None = None,
    ) -> None:
        self.cell = cell
        self.measure = measure
        self.setup = setup
        self.seed = seed
        self.meters = meters
        self.memory = memory
        #: the window lasts at least this long (measure.min_window_s; 0: one pass / one training run)
        self.min_window_s = float(measure.min_window_s if min_window_s is None else min_window_s)
        self.probe = probe
        self.result = PhaseResult()
        self.loop: TrainLoop | None = None  # training: what the hotspot pass reuses
        self._initial: tuple[dict[str, Any], Any] | None = None  # training: the initial weights and RNG state

    def run(self) -> PhaseResult:
        """The phase, measured; again on a second call (a new PhaseResult; training from the initial weights)."""
        self.result = PhaseResult()
        return self._train() if self.cell.phase == "train" else self._infer()

    def _window(self) -> MeasuredWindow:
        return MeasuredWindow(
            self.meters, self.memory, self.cell.device, self.measure.idle_baseline_s, self.cell.id, self.probe
        )

    def _infer(self) -> PhaseResult:
        c, s, r = self.cell, self.setup, self.result
        wl, model, split, prec = s.workload, s.model, s.split, s.precision
        model.eval()
        warm = self.measure.warmup_batches
        t0 = time.perf_counter()
        if warm:
            predict(wl, model, split.x_test[: warm * c.batch_size], c.batch_size, c.device, prec)
        sync(c.device)
        r.warmup_s = time.perf_counter() - t0
        m = Measurement()
        # Short inference passes (tens of ms) cannot be metered: repeat full passes over the
        # test split until the window lasts min_window_s (docs/measurement.md, "windows").
        min_window = self.min_window_s
        out, passes = None, 0
        with self._window() as w:
            r.idle_window_s = w.idle_s
            while True:
                o = predict(wl, model, split.x_test, c.batch_size, c.device, prec, m)
                out = o if out is None else out
                passes += 1
                if w.elapsed() >= min_window:
                    break
        r.close(w, m)
        r.infer_passes = passes
        r.set_quality(wl, wl.evaluate(out, split.x_test, split.y_test))
        r.epochs = 0
        return r

    def _evaluate(self, limit: int | None) -> dict[str, float]:
        """The quality on (at most ``limit`` samples of) the test split, in eval mode."""
        c, s = self.cell, self.setup
        n = min(s.split.n_test, limit) if limit else s.split.n_test
        was_training = s.model.training
        s.model.eval()
        y = s.split.y_test[:n] if s.split.y_test is not None else None
        out = predict(s.workload, s.model, s.split.x_test[:n], max(c.batch_size, 1024), c.device, s.precision)
        s.model.train(was_training)
        return s.workload.evaluate(out, s.split.x_test[:n], y)

    def _train(self) -> PhaseResult:
        import torch

        c, s, r = self.cell, self.setup, self.result
        wl, model, split, prec = s.workload, s.model, s.split, s.precision
        model.train()
        if self._initial is None:  # the seeded initial weights every training run (and attempt) starts from
            self._initial = (copy.deepcopy(model.state_dict()), torch.get_rng_state())
        else:  # a later attempt (the outlier rule): from the initial weights again
            model.load_state_dict(self._initial[0])

        def step(mdl, optim, sc, xb, yb):
            return prec.train_step(c.device, lambda: wl.loss(mdl, xb, yb), optim, sc)

        x_all = torch.as_tensor(split.x_train)
        y_all = torch.as_tensor(split.y_train) if split.y_train is not None else None
        self.loop = TrainLoop(step, x_all, y_all, c.batch_size, c.device, prec.dtype)
        n = len(x_all)

        # warm-up on a copy, so the measured training starts from the seeded initial weights
        warm = self.measure.warmup_batches
        t0 = time.perf_counter()
        if warm:
            wm = copy.deepcopy(model)
            wt = Trainee(wm, wl.make_optimizer(wm), prec.make_scaler(c.device))
            for i in range(warm):
                sl = slice((i * c.batch_size) % n, (i * c.batch_size) % n + c.batch_size)
                xb = x_all[sl].to(device=c.device, dtype=prec.dtype)
                yb = y_all[sl].to(c.device) if y_all is not None else None
                step(wt.model, wt.optimizer, wt.scaler, xb, yb)
            del wm, wt
        sync(c.device)
        r.warmup_s = time.perf_counter() - t0

        # Whole training runs, each from the same initial weights, RNG state and data order, until the window
        # lasts min_window_s (docs/measurement.md, "windows"): a run is the unit a user quotes (time and energy
        # per run = the window / train_runs). The first run's epochs give the curves, the quality, the time and
        # energy to target (its laps); every run is timed and metered alike.
        m = Measurement()
        rng = torch.get_rng_state()
        runs, metrics = 0, {}
        with self._window() as w:
            r.idle_window_s = w.idle_s
            while True:
                if runs:
                    model.load_state_dict(self._initial[0])
                    torch.set_rng_state(rng)
                got = self._train_run(m, w, first=runs == 0)
                metrics = metrics or got
                runs += 1
                if w.elapsed() >= self.min_window_s:
                    break
        r.close(w, m)
        r.set_quality(wl, metrics)
        r.loss = m.epoch_loss[-1] if m.epoch_loss else None
        r.epochs = len(m.epoch_wall)
        r.train_runs = runs
        r.epoch_laps = m.epoch_energy  # epoch_energy_j and energy_to_target_j: at the end (energy_columns)
        return r

    def _train_run(self, m: Measurement, w: MeasuredWindow, first: bool) -> dict[str, float]:
        """One training run inside the window: a fresh optimizer and scaler, the seeded data order, the epochs
        (each evaluated) until the target quality. The first run records the epoch curves and laps. Returns the
        last epoch's quality metrics."""
        import torch

        c, s, r = self.cell, self.setup, self.result
        wl = s.workload
        trainee = Trainee(s.model, wl.make_optimizer(s.model), s.precision.make_scaler(c.device))
        gen = torch.Generator().manual_seed(self.seed)
        target, limit = s.target_quality, self.measure.max_eval_samples
        metrics: dict[str, float] = {}
        for epoch in range(s.epochs):
            loss_sum, nb = self.loop.train_epoch(trainee, gen, m, epoch)
            te0 = time.perf_counter()
            metrics = self._evaluate(limit)
            m.eval_s += time.perf_counter() - te0
            q = metrics.get(wl.quality_metric)
            reached = target is not None and q is not None and ((q >= target) if wl.higher_is_better else (q <= target))
            if first:
                elapsed = w.elapsed()
                m.epoch_wall.append(elapsed)
                m.epoch_quality.append(q)
                m.epoch_loss.append(loss_sum / max(nb, 1))
                lap = self.meters.lap()  # index of the lap: the job's energy so far is known at the end
                m.epoch_energy.append(lap)
                if reached:
                    m.time_to_target = elapsed
                    r.target_lap = lap
            if reached:
                break
        return metrics

    def profile_pass(self, max_batches: int) -> ProfilePass:
        """One pass of the phase's loop for the hotspot profilers (after the window): train: an epoch of at most
        ``max_batches`` on a copy of the trained model (which stays as measured; pruning masks kept) with a new
        optimizer (``train_profile_pass``); infer: the first ``max_batches`` batches of the test split
        (``infer_profile_pass``)."""
        c, s = self.cell, self.setup
        if c.phase == "train":
            import torch

            from . import variants

            pm = variants.copy_model(s.model)
            t = Trainee(pm, s.workload.make_optimizer(pm), s.precision.make_scaler(c.device))
            gen = torch.Generator().manual_seed(self.seed + 1)
            return train_profile_pass(self.loop, t, gen, s.workload, s.precision, max_batches)
        return infer_profile_pass(s.workload, s.model, s.split.x_test, c.batch_size, c.device, s.precision, max_batches)


def train_profile_pass(loop: TrainLoop, t: Trainee, gen: Any, wl: Any, prec: Any, max_batches: int) -> ProfilePass:
    """A training pass for the profilers: an epoch of at most ``max_batches`` of ``loop`` (the measured loop,
    ``TrainLoop.train_epoch``) on ``t``. With ``mark`` (ProfilePass.run) its parts are marked for
    torch.profiler: each batch's work (``step``: the precision's train_step) and its forward (the workload's
    loss under autocast)."""
    import dataclasses

    bs = loop.batch_size
    n = min(len(loop.x), max_batches * bs)

    def train_pass(mark: Marker | None = None) -> tuple[int, int]:
        lp = loop
        if mark is not None:  # Phase._train's step (prec.train_step over wl.loss), its parts marked

            def step(mdl, optim, sc, xb, yb):
                with mark("step"):
                    return prec.train_step(loop.device, mark.wrap("forward", lambda: wl.loss(mdl, xb, yb)), optim, sc)

            lp = dataclasses.replace(loop, step=step)
        m = Measurement()
        return lp.train_epoch(t, gen, m, 0, max_batches)[1], m.n_samples

    what = (
        f"train: {-(-n // bs)} batch(es) of {bs} of a new epoch (shuffled) on a copy of the trained model "
        "with a new optimizer, after the measured window"
    )
    return ProfilePass(train_pass, t.model, what)


def infer_profile_pass(wl: Any, model: Any, x_test: Any, bs: int, device: str, prec: Any, max_batches: int):
    """An inference pass for the profilers: the first ``max_batches`` batches of ``x_test`` through ``predict``
    (the measured loop); with ``mark``, each batch's ``infer_batch`` marked as ``step`` and ``forward``."""
    x = x_test[: max_batches * bs]

    def infer_pass(mark: Marker | None = None) -> tuple[int, int]:
        w = wl if mark is None else _MarkedInference(wl, mark)
        m = Measurement()
        predict(w, model, x, bs, device, prec, m)
        return len(m.latencies), m.n_samples

    what = f"infer: the first {-(-len(x) // bs)} batch(es) of {bs} of the test split, after the measured window"
    return ProfilePass(infer_pass, model, what)


class Marker:
    """What a profiled pass marks its parts with: ``with mark(name):`` a named range (torch.profiler's
    record_function, in joulegrid.hotspots); ``mark.wrap(name, fn)`` the same around a call of fn."""

    def __call__(self, name: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def wrap(self, name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        def marked() -> Any:
            with self(name):
                return fn()

        return marked


class _MarkedInference:
    """A workload whose infer_batch (what ``predict`` calls) runs inside the marks ``step`` and ``forward``."""

    def __init__(self, wl: Any, mark: Marker) -> None:
        self.wl, self.mark = wl, mark

    def infer_batch(self, model, xb):
        with self.mark("step"), self.mark("forward"):
            return self.wl.infer_batch(model, xb)


@dataclass
class ProfilePass:
    """A pass for the hotspot profilers: ``run(mark=None)`` runs it and returns (batches, samples);
    ``model``: the module it runs (its nn.Module hierarchy is profiled by name); ``what``: the pass in words
    (which pass was profiled: not the measured one)."""

    run: Callable[[Marker | None], tuple[int, int]]
    model: Any
    what: str
