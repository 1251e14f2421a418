"""Run one grid cell: set up, warm up, measure one phase, score it, write one result row.

``CellRunner`` is a page of named steps; each step's work has its own home: the meters
(joulegrid.meters), the host probes (joulegrid.probes), the set-up (joulegrid.cell_setup: workload, data,
model, precision, compilation), the measured phase and its window (joulegrid.phases), the hotspots
(joulegrid.hotspots). The row is assembled once, at the end, from their typed parts (``_assemble``).
Whatever happens, the cell ends with one row in the result schema: ``ok``, or ``failed`` / ``oom`` /
``nan`` / ``skipped`` with the error and whatever was measured before it. The one exception: a meter
listed in ``measure.required_meters`` that this host cannot provide stops the job before anything runs
(RequiredMeterMissing; no row, non-zero exit), like ``strict_devices``.

Windows of a cell (docs/measurement.md):
  set-up (meters prepare in the background) -> warm-up (not measured) -> idle baseline
  (measure.idle_baseline_s, meters running, process asleep) -> MEASURED window (peak RSS and
  device-memory peaks reset just before it; inference repeats full passes over the test split, training
  whole training runs, until measure.min_window_s) -> quality -> the outlier rule (diagnostics.py: a
  disturbed window is excluded and the phase measured again, at most measure.outlier_retries times; every
  excluded window stays a row of the run file) -> hotspot profiling passes (measure.hotspots; after
  the measured window, never inside it). The job's usage and energy are followed from the start of
  run() to the row (MeterSet.start_job ... finish): the whole job (job_* columns, without the idle
  baseline, the excluded attempts and the profiling passes) and the job's share of every window
  (docs/measurement.md, "Whose energy").
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from . import cell_setup, diagnostics, phases, probes, schema
from .cell_setup import DeviceUnavailable as DeviceUnavailable  # raised by the set-up; the CLI catches it here
from .meters import MeterSet, RequiredMeterMissing, build
from .precision import Unsupported as PrecisionUnsupported
from .spec import CellSpec, identity_columns
from .units import co2_g

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its status and, if not ok, why."""

    status: str
    error_type: str | None = None
    error_message: str | None = None
    skip_reason: str | None = None

    @classmethod
    def of(cls, e: BaseException) -> Outcome:
        """The outcome of a run that raised ``e`` (strict_devices and required meters aside)."""
        if isinstance(e, (DeviceUnavailable, PrecisionUnsupported)):
            return cls(schema.STATUS_SKIPPED, skip_reason=str(e))
        if isinstance(e, phases.NonFiniteLoss):
            return cls(schema.STATUS_NAN, type(e).__name__, str(e)[:2000])
        if isinstance(e, MemoryError):
            return cls(schema.STATUS_OOM, type(e).__name__, str(e)[:2000] or "MemoryError")
        oom = type(e).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError
        msg = f"{e}\n{traceback.format_exc(limit=8)}"
        return cls(schema.STATUS_OOM if oom else schema.STATUS_FAILED, type(e).__name__, msg[:2000])

    def with_earlier(self, earlier: str) -> Outcome:
        """The same, its error message ending with the errors of the attempts before it."""
        block = f"\nearlier attempts:\n{earlier}"[:1000]
        return replace(self, error_message=(self.error_message or "")[: 2000 - len(block)] + block)

    def columns(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "skip_reason": self.skip_reason,
        }


@dataclass
class Attempt:
    """A measured attempt the outlier rule excluded: its phase, what disturbed it and why, its window's name."""

    label: str  # its windows' name in the MeterSet (excluded-<k>)
    number: int  # window_attempt: 1 = the job's first measured window
    result: phases.PhaseResult
    diagnostics: diagnostics.Diagnostics
    reason: str


class CellRunner:
    """Measures one cell (``run``) and writes its row (``write``). ``spec``: what it measures the cell with
    (spec.CellSpec, or its JSON form, read once here)."""

    def __init__(
        self,
        spec: CellSpec | dict[str, Any],
        out: str,
        data_path: str | None,
        model_path: str | None,
        attempt: int = 1,
        threads: int | None = None,
        measure_energy: bool = True,
    ):
        self.spec = CellSpec.of(spec)
        self.cell, self.settings = self.spec.cell, self.spec.settings
        self.out, self.attempt, self.threads, self.measure_energy = out, attempt, threads, measure_energy
        self.identity = identity_columns(self.spec, attempt)
        self.meters = MeterSet([], [])  # measure_energy: the cell's meters, from run()
        self.memory = probes.MemoryPeaks(self.cell.device)
        self.facts = probes.HostFacts()
        self.setup = cell_setup.Setup(self.spec, data_path, model_path)
        self.phase: phases.Phase | None = None
        self.excluded: list[Attempt] = []  # measured attempts the outlier rule excluded (each a row)
        self.diagnostics: diagnostics.Diagnostics | None = None  # of the kept window
        self.exclusion_reason: str | None = None  # the rule's verdict on the kept window (retries used up)
        self.window_attempt: int | None = None
        self.meters_ready_s: float | None = None
        self.hotspot_rows: list[dict[str, Any]] = []
        self.hotspot_trace: dict[str, Any] | None = None  # the torch pass's Chrome trace (hotspots.write)
        self.profile_s: float | None = None
        self.energy: dict[str, Any] = {}
        self.outcome = Outcome(schema.STATUS_FAILED, "NotRun", "the cell was not run")
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.peak_rss_bytes: int | None = None
        self.model = None  # the model as measured (train_reference saves it)
        self.row: dict[str, Any] = {}

    # ------------------------------------------------------------------ the steps
    def run(self) -> dict[str, Any]:
        self.started_at = _now()
        self._start_meters()
        try:
            self._measure()
            self.outcome = Outcome(schema.STATUS_OK)
        except RequiredMeterMissing:
            self.meters.close()
            raise
        except Exception as e:  # every failure becomes a row (strict_devices aside)
            if isinstance(e, (DeviceUnavailable, PrecisionUnsupported)) and self.settings.strict_devices:
                raise
            self.outcome = Outcome.of(e)
        finally:
            self._finish_energy()
            self.meters.close()
        self.peak_rss_bytes, self.finished_at = self.memory.job_peak(), _now()
        self.row = self._assemble()
        return self.row

    def _start_meters(self) -> None:
        """Meters first: a required meter this host lacks stops the job before anything runs
        (RequiredMeterMissing propagates: no row); the expensive meter set-up then overlaps the job's own
        set-up (data, model) in a background thread. A cuda cell is checked after the device check, so that
        on a host without CUDA it stays a skipped row."""
        if not self.measure_energy:
            return
        self.meters = build(self.settings.measure, self.settings.site_facts, self.cell.device, require=False)
        if self.cell.device != "cuda":
            self.meters.check_required()
        self.meters.start_job()  # the whole job's usage and counters, from here to the row
        self.meters.prepare_async()

    def _measure(self) -> None:
        """Torch's start, the probes, the device and required meters checked, the set-up, the meters ready,
        the measured phase, the hotspots: each step keeps what it found in its part (nothing in a row)."""
        c = self.cell
        cell_setup.start_torch(c.phase, self.threads)
        self.facts.host, self.facts.scheduler = probes.host(), probes.scheduler(self.threads)
        wrong_cpu = self.settings.cpu_model_problem(self.facts.host.get("cpu_model"), self.facts.hostname)
        if wrong_cpu:  # job.cpu_model: measured on the pinned CPU model only (a skipped row names both)
            raise DeviceUnavailable(wrong_cpu)
        s = self.facts.scheduler  # what the scheduler reserved: the attribution's idle shares
        self.meters.reserve(s.get("alloc_cpus"), s.get("alloc_mem_mb"), s.get("scheduler"))
        cell_setup.check_device(c.device, self.facts.hostname)
        self.meters.check_required()
        self.facts.accelerator = probes.accelerator()
        self.setup.run(self.facts.accelerator.get("gpu_compute_capability"))
        self.facts.software = probes.software()  # after the set-up's imports, with the real thread settings
        self.model = self.setup.model
        t = time.perf_counter()
        self.meters.ready()  # joins the background set-up; RequiredMeterMissing if one failed
        self.meters_ready_s = time.perf_counter() - t
        self._phase()
        self._profile()  # before the masks are folded: the profiled pass trains the model as measured
        from . import variants

        variants.finalize(self.model)  # pruning masks (train) folded into the weights

    def _phase(self) -> None:
        """The measured phase, judged by the outlier rule (diagnostics.py): a window the rule excludes is set
        apart (its own row at the end) and the phase measured again, at most measure.outlier_retries times;
        the last attempt is kept whatever the verdict (a row still excluded when the rule excluded it too).
        Without energy measurement (train_reference) one pass / one training run, no rule."""
        c, ms = self.cell, self.settings.measure
        probe = diagnostics.EdgeProbe(self.meters.gpus) if self.measure_energy else None
        self.phase = phases.Phase(
            c,
            ms,
            self.setup,
            self.spec.seed,
            self.meters,
            self.memory,
            min_window_s=None if self.measure_energy else 0.0,
            probe=probe,
        )
        rule = diagnostics.OutlierRule.of(ms)
        attempts = 1 + (int(ms.outlier_retries) if self.measure_energy else 0)
        for k in range(1, attempts + 1):
            self.meters.begin_attempt()
            result = self.phase.run()
            self.window_attempt = k
            if not self.measure_energy:
                return
            usage, reserved = self.meters.window_usage() or (None, None)
            threads = self.facts.software.get("torch_num_threads") or self.threads or ms.threads
            self.diagnostics = diagnostics.Diagnostics.of(probe, usage, reserved, threads)
            self.exclusion_reason = rule.judge(self.diagnostics)
            if self.exclusion_reason is None or k == attempts:
                if self.exclusion_reason:
                    log.warning("%s: window %d excluded by the outlier rule: %s", c.id, k, self.exclusion_reason)
                return
            label = f"excluded-{k}"
            self.meters.exclude_attempt(label)
            self.excluded.append(Attempt(label, k, result, self.diagnostics, self.exclusion_reason))
            log.warning(
                "%s: window %d excluded by the outlier rule (%s); measuring again", c.id, k, self.exclusion_reason
            )

    def _profile(self) -> None:
        """cProfile + torch.profiler over separate passes AFTER the measured window (measure.hotspots)."""
        ms = self.settings.measure
        if not self.measure_energy or ms.hotspots == "never" or (ms.hotspots == "first_repeat" and self.cell.repeat):
            return
        from . import hotspots

        self.meters.mark("profile:start")  # joulegrid's own work: left out of job_energy_j / job_wall_s
        try:
            measured = self.phase.result.batches
            p = hotspots.profile(
                self.phase.profile_pass(
                    hotspots.pass_batches(ms.hotspot_batches, len(measured.latencies) if measured else 0)
                ),
                self.cell.device,
                self.identity,
                ms.hotspot_top,
                self.setup.workload,
            )
            self.hotspot_rows, self.hotspot_trace, self.profile_s = p.rows, p.trace, p.seconds
        except Exception as e:  # noqa: BLE001 - profiling is optional: never lose the run for it
            self.hotspot_rows, self.hotspot_trace = [], None
            log.warning("%s: hotspot profiling failed: %s: %s", self.cell.id, type(e).__name__, e)
        finally:
            self.meters.mark("profile:end")

    def _finish_energy(self) -> None:
        """The job's energy (MeterSet.finish): every window attributed, the whole job, per-epoch energies, CO2."""
        try:  # writing the row is part of the job: pyarrow's one-off start (its first table conversion,
            # ~0.2 s of CPU; the Parquet writer's import) happens now, inside the job's tracked time,
            # so that what remains after the figures are known (write() itself) takes milliseconds
            import pyarrow.parquet  # noqa: F401 - imported for its start-up cost, here

            schema.to_table([{"status": schema.STATUS_OK}])
        except Exception:  # noqa: BLE001 - a warm-up of pyarrow only: the write itself reports
            pass
        result = self.phase.result if self.phase is not None else phases.PhaseResult()
        others = {a.label: (a.result.wall_s, a.result.idle_window_s) for a in self.excluded}
        try:
            cols, laps = self.meters.finish(
                result.wall_s, result.idle_window_s, self.facts.accelerator.get("gpu_model"), others
            )
        except Exception as e:  # noqa: BLE001 - attribution failing must not lose the measured run
            log.warning("%s: energy attribution failed: %s: %s", self.cell.id, type(e).__name__, e)
            return
        self.energy = {**cols, **result.energy_columns(laps, cols.get("energy_j"))}
        site = self.settings.site_facts
        if cols.get("energy_j") is not None and site.carbon_intensity_g_per_kwh is not None:
            self.energy["co2_kg"] = co2_g(cols["energy_j"], site.carbon_intensity_g_per_kwh, site.pue or 1.0) / 1000.0

    @property
    def window_compiles(self) -> int | None:
        """Graphs torch.compile compiled inside the measured window (None before it closed)."""
        return self.phase.result.window_compiles if self.phase is not None else None

    # ------------------------------------------------------------------ the row
    def _judged(self, d: diagnostics.Diagnostics | None, reason: str | None, number: int | None) -> dict[str, Any]:
        """The outlier rule's columns of a window: its diagnostics, its verdict and which attempt it was."""
        if not self.measure_energy:
            return {}
        return {
            **(d.columns() if d is not None else {}),
            "excluded": reason is not None,
            "exclusion_reason": reason,
            "window_attempt": number,
        }

    def excluded_rows(self) -> list[dict[str, Any]]:
        """One row per attempt the outlier rule excluded (after the kept row in the run file): the same
        identity but its own run_id, the same set-up and host facts, its window's phase, energy and
        diagnostics; the whole job's columns belong to the kept row only."""
        rows = []
        for a in self.excluded:
            energy = dict(self.meters.others.get(a.label) or {})
            energy.update(a.result.energy_columns([], energy.get("energy_j")))
            rows.append(
                {
                    **schema.empty_row(),
                    **identity_columns(self.spec, self.attempt),
                    "started_at": self.started_at,
                    **self.facts.columns(),
                    **self.setup.columns,
                    "meters_ready_s": self.meters_ready_s,
                    **a.result.columns(),
                    **self._throughput(a.result),
                    **energy,
                    **self._judged(a.diagnostics, a.reason, a.number),
                    "meters_absent": self.meters.absent,
                    "status": schema.STATUS_OK,
                    "finished_at": self.finished_at,
                }
            )
        return rows

    def _assemble(self) -> dict[str, Any]:
        """The row, once, from its typed parts: identity, host facts, set-up, phase, hotspots, energy, outcome."""
        result = self.phase.result if self.phase is not None else phases.PhaseResult()
        judged = self._judged(self.diagnostics, self.exclusion_reason, self.window_attempt) if result.wall_s else {}
        return {
            **schema.empty_row(),
            **self.identity,
            "started_at": self.started_at,
            **self.facts.columns(),
            **self.setup.columns,
            "meters_ready_s": self.meters_ready_s,
            **result.columns(),
            **self._throughput(result),
            "profile_s": self.profile_s,
            **self.energy,
            **judged,
            "meters_absent": self.meters.absent,
            **self.outcome.columns(),
            "peak_rss_bytes": self.peak_rss_bytes,
            "finished_at": self.finished_at,
        }

    def _throughput(self, result: phases.PhaseResult) -> dict[str, Any]:
        """FLOP/s and MFU of the measured window (flops.throughput), once it closed."""
        if result.wall_s is None or result.batches is None:
            return {}
        from .flops import throughput

        c = self.cell
        per_sample = self.setup.columns.get("flops_per_sample_train" if c.phase == "train" else "flops_per_sample_fwd")
        gpu = self.facts.accelerator.get("gpu_model")
        return throughput(per_sample, result.batches.n_samples, result.wall_s, c.device, gpu, c.precision)

    def write(self) -> None:
        from .io import write_table

        self.row = self._assemble()  # with the outcome as it is now (run_and_write adds earlier attempts)
        # the kept window's row first (what a reader of "the cell's row" reads: row 0), then every window the
        # outlier rule excluded before it, each its own row (nothing measured is lost)
        write_table(schema.to_table([self.row, *self.excluded_rows()]), self.out)
        if self.hotspot_rows:
            from . import hotspots

            try:
                hotspots.write(self.hotspot_rows, hotspots.path_for(self.out, self.cell.file_id), self.hotspot_trace)
            except Exception as e:  # noqa: BLE001 - a side file: failing to write it must not fail the measured run
                log.warning("%s: hotspots not written: %s: %s", self.cell.id, type(e).__name__, e)


def train_reference(
    spec: CellSpec | dict[str, Any], out: str, data_path: str | None, threads: int | None = None
) -> None:
    """Train the fp32 baseline model that inference cells load (not measured), save its state_dict."""
    import torch

    from .io import atomic_path

    spec = CellSpec.of(spec).with_cell(phase="train", precision="fp32", variant="baseline", device="cpu", repeat=0)
    runner = CellRunner(spec, out, data_path, None, threads=threads, measure_energy=False)
    row = runner.run()
    if row["status"] != schema.STATUS_OK:
        raise RuntimeError(f"training the reference model failed: {row['error_type']}: {row['error_message']}")
    with atomic_path(out, suffix=".pt") as tmp:
        torch.save(runner.model.state_dict(), tmp)


def run_and_write(
    spec: CellSpec | dict[str, Any],
    out: str,
    data_path: str | None,
    model_path: str | None,
    attempt: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    runner = CellRunner(spec, out, data_path, model_path, attempt, threads)
    runner.run()
    if attempt > 1 and runner.outcome.status not in (schema.STATUS_OK, schema.STATUS_SKIPPED):
        # earlier attempts died (killed, crashed): their errors, from <results>/attempts/, stay in the row
        from .failures import attempts_path, earlier_errors, read_attempts

        earlier = earlier_errors(read_attempts(attempts_path(out, runner.cell.file_id)), attempt)
        if earlier:
            runner.outcome = runner.outcome.with_earlier(earlier)
    runner.write()
    return runner.row
