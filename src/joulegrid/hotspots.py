"""Hotspots: where a cell spends its time, from a profiled pass run AFTER the measured window.

Two profilers, each over its own pass of the same loop the runner measured (so neither distorts
the measured figures nor the other one):
- cProfile: the top Python functions by cumulative time (shows e.g. a data sampler or a Python
  loop dominating a training step);
- torch.profiler: the top operators by self time (CPU, plus GPU kernel time on CUDA).

The rows (columns: ``joulegrid.schema.HOTSPOT_COLUMNS``) are keyed by the run's ``run_id`` and
written atomically to ``<results>/hotspots/<cell id>-<config hash>.parquet``, a side file of the run (not a
Snakemake output). ``collect(results_dir)`` reads them all back as one polars DataFrame for the
report.
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .schema import HOTSPOT_COLUMN_NAMES, HOTSPOT_IDENTITY, hotspot_arrow_schema, hotspots_to_table

IDENTITY = HOTSPOT_IDENTITY  # copied from the run's identity columns into every hotspot row
log = logging.getLogger(__name__)
DEFAULT_TOP = 20


def _label(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":  # built-ins: func is e.g. "<built-in method torch.addmm>"
        return func
    f = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/src/", "/lib/python"):
        if marker in f:
            f = f.split(marker, 1)[1]
            break
    else:
        f = f.rsplit("/", 1)[-1]
    return f"{f}:{line}({func})"


def cprofile_rows(fn: Callable[[], Any], top: int = DEFAULT_TOP) -> tuple[list[dict[str, Any]], float]:
    """Run fn under cProfile; the top functions by cumulative time, and the pass's wall time."""
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    try:
        fn()
    finally:
        pr.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(pr).stats  # {(file, line, func): (primitive calls, calls, tottime, cumtime, callers)}
    items = sorted(st.items(), key=lambda kv: kv[1][3], reverse=True)[:top]
    rows = []
    for i, (key, (_cc, nc, tt, ct, _callers)) in enumerate(items, 1):
        rows.append(
            dict(
                profiler="cprofile",
                rank=i,
                function=_label(key),
                calls=int(nc),
                self_s=float(tt),
                cumulative_s=float(ct),
                device_self_s=None,
                fraction=float(ct) / wall if wall > 0 else None,
                profiled_wall_s=wall,
            )
        )
    return rows, wall


def torch_rows(fn: Callable[[], Any], device: str, top: int = DEFAULT_TOP) -> tuple[list[dict[str, Any]], float]:
    """Run fn under torch.profiler; the top operators by self time (CPU + device), and the wall time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if device == "cuda" and torch.cuda.is_available():
        acts.append(ProfilerActivity.CUDA)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        if device == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    on_gpu = len(acts) > 1
    events = []
    for e in prof.key_averages():
        cpu_self = e.self_cpu_time_total / 1e6
        dev_self = (getattr(e, "self_device_time_total", 0.0) or 0.0) / 1e6 if on_gpu else None
        events.append((cpu_self + (dev_self or 0.0), e, cpu_self, dev_self))
    events.sort(key=lambda t: t[0], reverse=True)
    rows = []
    for i, (rank_s, e, cpu_self, dev_self) in enumerate(events[:top], 1):
        rows.append(
            dict(
                profiler="torch",
                rank=i,
                function=str(e.key),
                calls=int(e.count),
                self_s=cpu_self,
                cumulative_s=e.cpu_time_total / 1e6,
                device_self_s=dev_self,
                fraction=rank_s / wall if wall > 0 else None,
                profiled_wall_s=wall,
            )
        )
    return rows, wall


def profile(
    fn: Callable[[], int], device: str, identity: dict[str, Any], top: int = DEFAULT_TOP
) -> tuple[list[dict[str, Any]], float]:
    """Profile two passes of fn (cProfile, then torch.profiler); fn returns the batches it ran.

    Returns the hotspot rows (IDENTITY copied from the run's identity columns, spec.identity_columns) and
    the total wall time.
    """
    ident = {k: identity.get(k) for k in IDENTITY}
    out: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    n = {}

    def counted(tag):
        def run():
            n[tag] = fn()

        return run

    crows, _ = cprofile_rows(counted("cprofile"), top)
    trows, _ = torch_rows(counted("torch"), device, top)
    for r in crows:
        out.append({**ident, **r, "profiled_batches": n.get("cprofile")})
    for r in trows:
        out.append({**ident, **r, "profiled_batches": n.get("torch")})
    return out, time.perf_counter() - t0


def path_for(run_file: str | Path, cell_id: str) -> Path:
    """Where a run's hotspots go: <results>/hotspots/<file id>.parquet for <results>/runs/<file id>.parquet,
    else next to the run file as <name>.hotspots.parquet (run files written by hand elsewhere).
    cell_id: the cell's file id (grid.Cell.file_id: its id and config hash)."""
    p = Path(run_file)
    tail = Path("runs") / f"{cell_id}.parquet"
    parts = tail.parts
    if len(p.parts) >= len(parts) and p.parts[-len(parts) :] == parts:
        results = Path(*p.parts[: -len(parts)]) if len(p.parts) > len(parts) else Path(".")
        return results / "hotspots" / f"{cell_id}.parquet"
    return p.with_name(p.name.removesuffix(".parquet") + ".hotspots.parquet")


def write(rows: list[dict[str, Any]], path: str | Path) -> None:
    from .io import write_table

    write_table(hotspots_to_table(rows), path)


def collect(results_dir: str | Path = "results", run_ids: list[str] | None = None):
    """Every hotspots file under <results_dir>/hotspots as one polars DataFrame (HOTSPOT_COLUMNS).

    run_ids: keep only these runs (e.g. the run_ids of the summary). Unreadable files are skipped
    and named in the log. An empty, typed frame when there are none.
    """
    import polars as pl
    import pyarrow.parquet as pq

    schema = hotspot_arrow_schema()
    tables = []
    base = Path(results_dir) / "hotspots"
    for f in sorted(base.rglob("*.parquet")) if base.is_dir() else []:
        if f.name.startswith("."):
            continue  # an atomic write in progress
        try:
            t = pq.read_table(f)
            t = t.select(list(HOTSPOT_COLUMN_NAMES)).cast(schema)
        except Exception as e:  # noqa: BLE001 - a file that cannot be read is named and skipped
            log.warning("hotspots: skipped %s: %s: %s", f, type(e).__name__, e)
            continue
        tables.append(t)
    if not tables:
        return pl.from_arrow(schema.empty_table())
    import pyarrow as pa

    df = pl.from_arrow(pa.concat_tables(tables))
    if run_ids is not None:
        df = df.filter(pl.col("run_id").is_in(list(run_ids)))
    return df
