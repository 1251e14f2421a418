"""TEST FIXTURES: synthetic result rows in the real result schema (joulegrid.schema.to_table).

Nothing here is a measurement: every row says so (hostname ``synthetic-fixture``, energy_method
``synthetic-test-fixture``). The numbers follow simple deterministic formulas so that tests can
compute the expected derived metrics by hand. Used by tests/analysis, tests/report, the notebook
test and bench/bench_aggregate.py.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from joulegrid import schema as S
from joulegrid.grid import Cell
from joulegrid.io import write_table

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
PRECISION_FACTOR = {"fp64": 2.0, "fp32": 1.0, "bf16": 0.6, "fp16": 0.55, "int8": 0.8}
QUALITY_DELTA = {"fp64": -0.0005, "fp32": 0.0, "bf16": 0.002, "fp16": 0.003, "int8": 0.004}


def row(
    cell: Cell,
    *,
    energy_per_sample_j: float | None = None,
    n_samples: int = 10_000,
    estimated: bool = True,
    status: str = "ok",
    scheduler: str = "local",
    queue_wait_s: float | None = None,
    epochs: int = 3,
    jitter: float = 0.0,
    **extra: Any,
) -> dict[str, Any]:
    """One synthetic row for a cell. Energy per sample defaults to 1e-3 J × precision factor × (256/bs)^0.3."""
    f = PRECISION_FACTOR.get(cell.precision, 1.0) * (1.2 if cell.variant == "pruned" else 1.0)
    eps = energy_per_sample_j if energy_per_sample_j is not None else 1e-3 * f * (256 / cell.batch_size) ** 0.3
    eps *= 1 + jitter
    energy = eps * n_samples
    power = 20.0
    wall = energy / power
    quality = 0.05 + QUALITY_DELTA.get(cell.precision, 0.0)  # recon_mse: lower is better
    started = T0 + timedelta(minutes=cell.repeat * 10 + cell.batch_size % 7)
    submit = started - timedelta(seconds=(queue_wait_s or 0) + 2) if scheduler != "local" else None
    job_start = submit + timedelta(seconds=queue_wait_s or 0) if submit else None
    r: dict[str, Any] = dict(
        schema_version=S.SCHEMA_VERSION,
        run_id=uuid.uuid4().hex,
        cell_id=cell.id,
        **cell.axes(),
        precision_impl="synthetic",
        seed=1,
        attempt=1,
        config_hash="0" * 16,
        started_at=started,
        finished_at=started + timedelta(seconds=wall + 3),
        hostname="synthetic-fixture",
        os="Linux (synthetic)",
        cpu_model="Synthetic CPU",
        cpu_cores_logical=4,
        cpu_cores_physical=2,
        alloc_cpus=2,
        gpu_count=0,
        memory_total_bytes=8 << 30,
        python_version="3.11",
        torch_version="2.13.0",
        joulegrid_version="0.1.0",
        scheduler=scheduler,
        submit_time=submit,
        job_start_time=job_start,
        queue_wait_s=queue_wait_s,
        n_samples=n_samples,
        n_test=n_samples,  # one pass over the test split (inference), unless given
        wall_s=wall,
        setup_s=1.0,
        warmup_s=0.5,
        samples_per_s=n_samples / wall if wall else None,
        flops_per_sample_fwd=1e6,
        flops_per_sample_train=3e6,
        flops_per_s=3e6 * n_samples / wall if wall else None,
        energy_j=energy,
        energy_method="synthetic-test-fixture",
        energy_estimated=estimated,
        mean_power_w=power,
        co2_kg=energy / 3.6e6 * 480 / 1000,
        carbon_intensity_g_per_kwh=480.0,
        pue=1.0,
        quality_metric="recon_mse",
        quality=quality,
        quality_higher_is_better=False,
        status=status,
    )
    if cell.phase == "train":
        # quality improves per epoch towards the final value; time/energy grow linearly
        r["epochs"] = epochs
        r["epoch_quality"] = [quality * (1 + 0.5 * (epochs - 1 - k)) for k in range(epochs)]
        r["epoch_wall_s"] = [wall * (k + 1) / epochs for k in range(epochs)]
        r["epoch_energy_j"] = [energy * (k + 1) / epochs for k in range(epochs)]
    if status != "ok":
        r.update(energy_j=None, wall_s=None, quality=None, error_type="RuntimeError", error_message="synthetic failure")
    r.update(extra)
    return r


def grid_cells(
    site: str = "local",
    workloads: Iterable[str] = ("baler_ae",),
    phases: Iterable[str] = ("train", "infer"),
    devices: Iterable[str] = ("cpu",),
    precisions: Iterable[str] = ("fp32", "bf16"),
    variants: Iterable[str] = ("baseline",),
    batch_sizes: Iterable[int] = (256, 1024),
    repeats: int = 1,
) -> list[Cell]:
    return [
        Cell(site, w, ph, dv, pr, v, bs, k)
        for w, ph, dv, pr, v, bs, k in itertools.product(
            workloads, phases, devices, precisions, variants, batch_sizes, range(repeats)
        )
    ]


def rows(cells: Iterable[Cell], **kw: Any) -> list[dict[str, Any]]:
    return [row(c, **kw) for c in cells]


def write_runs(results: Path, rws: list[dict[str, Any]]) -> list[Path]:
    """Write each row as its own run file at the cell path under results/runs (like the pipeline:
    <cell id>-<config_hash>.parquet)."""
    out = []
    for r in rws:
        p = Path(results) / "runs" / f"{r['cell_id']}-{r['config_hash']}.parquet"
        write_table(S.to_table([r]), p)
        out.append(p)
    return out


def summary(path: Path, rws: list[dict[str, Any]]) -> Path:
    write_table(S.to_table(rws), path)
    return path


def typical_day(path) -> dict[int, float]:
    """{UTC hour: mean g/kWh} of a half-hourly intensity series CSV without gaps, read by hand (csv module): each
    clock hour is the mean of its two half hours (each value the mean of the half hour starting at its
    timestamp), then the mean over the days. An independent reading for tests of joulegrid.carbon."""
    import collections
    import csv

    per_hour: dict[tuple, list[float]] = collections.defaultdict(list)
    with open(path) as f:
        for rec in csv.DictReader(ln for ln in f if not ln.startswith("#")):
            t = datetime.fromisoformat(rec["timestamp"])
            per_hour[(t.date(), t.hour)].append(float(rec["g_per_kwh"]))
    by_hod: dict[int, list[float]] = collections.defaultdict(list)
    for (_, h), v in per_hour.items():
        assert len(v) == 2, "half-hourly, no gaps"
        by_hod[h].append(sum(v) / 2)
    return {h: sum(v) / len(v) for h, v in sorted(by_hod.items())}


def series_values(path) -> dict[datetime, float]:
    """{period start (UTC): g/kWh} of an intensity series CSV, read by hand."""
    import csv

    with open(path) as f:
        return {
            datetime.fromisoformat(r["timestamp"]): float(r["g_per_kwh"])
            for r in csv.DictReader(ln for ln in f if not ln.startswith("#"))
        }
