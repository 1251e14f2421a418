"""One quadruple of a code-version comparison: both versions of a cell measured in one job, on one node.

docs/compare.md, "Pairing". Rule measure runs ``joulegrid run-quadruple`` instead of ``run-cell`` when the
config names ``versions:`` (joulegrid.snakefile); the run file ``.../r<q>-<hash>.parquet`` is quadruple q.
The job runs five runs of the cell, one after the other:

    slot 0: a warm-up run of the first version (discarded: kept in <run file>.warmup.parquet, never read)
    slots 1-4: ABBA for an even q, BAAB for an odd q (A = base, B = head; joulegrid.versions.slots)

Each run is its own ``joulegrid run-cell --code-version <label>`` process whose import path starts with that
version's checkout (joulegrid.versions.Version.environment): two versions of one module cannot live in one
Python process (the second import would return the first module; reloading leaves the first version's
classes and functions referenced), and a process per run also gives each run the same start-up a cell has.
Before the runs, each version's workload module is located (without importing it) and must come from its
checkout (``versions.module_problem``).

The four measured rows go to the run file (``code_slot`` 1-4); the analysis takes one paired statistic per
quadruple, ½(log B₁ + log B₂ − log A₁ − log A₂) (joulegrid.analysis.compare). Their hotspot tables, where
profiled (measure.hotspots: each run profiles after its own window; the warm-up too, so that every measured run
follows a profiled one, its hotspots discarded with it), go to the quadruple's one hotspots file (keyed by
run_id: the runs' rows say which version), each run's trace beside it (``hotspots.merge_files``).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import hotspots, versions
from .base import ConfigError

log = logging.getLogger(__name__)


def warmup_path(out: str | Path) -> Path:
    """Where the discarded warm-up run's row is kept: beside the run file, a name no run-file glob matches."""
    p = Path(out)
    return p.with_name(p.name.removesuffix(".parquet") + ".warmup.parquet")


def run(
    grid: str,
    out: str,
    attempt: int = 1,
    threads: int | None = None,
    data: str | None = None,
    model: str | None = None,
) -> int:
    """Measure the quadruple whose run file is ``out``; returns the exit status (0: its rows are written)."""
    import pyarrow.parquet as pq

    from . import schema
    from .io import write_table
    from .spec import cell_spec_from_snapshot, read_snapshot

    snap = read_snapshot(grid)
    vs = versions.from_snapshot(snap)
    if not vs:
        raise ConfigError(
            f"the grid snapshot {grid} names no code versions: run-quadruple measures a versions: comparison. "
            "Fix: run the cell with joulegrid run-cell"
        )
    sc = cell_spec_from_snapshot(grid, out)
    cell = sc.spec.cell
    class_path = sc.spec.settings.workload.get("class") or ""
    for v in vs.values():
        why = versions.module_problem(v, class_path)
        if why:
            log.error("%s: %s", cell.id, why)
            return 1
    labels = versions.slots(cell.repeat)
    log.info(
        "%s: quadruple %d, %s after a warm-up of %s (base %s, head %s)",
        cell.id,
        cell.repeat,
        versions.order(cell.repeat),
        labels[0],
        vs["base"].id[:12],
        vs["head"].id[:12],
    )
    tmp = Path(tempfile.mkdtemp(prefix="joulegrid-quadruple-"))
    try:
        rows, hotspot_files = [], []
        for slot, label in enumerate(labels):
            run_out = tmp / f"slot{slot}" / "runs" / f"{cell.file_id}.parquet"  # a run path: run-cell --grid reads it
            cmd = [sys.executable, "-m", "joulegrid", "run-cell", "--grid", grid, "--out", str(run_out)]
            cmd += ["--attempt", str(attempt), "--code-version", label]
            cmd += ["--threads", str(threads)] if threads else []
            cmd += ["--data", data] if data else []
            cmd += ["--model", model] if model else []
            sys.stdout.flush()
            sys.stderr.flush()
            rc = subprocess.call(cmd, env=vs[label].environment())
            if not run_out.is_file():
                log.error("%s: run %d (%s) ended with exit status %d and no row", cell.id, slot, label, rc)
                return rc or 1
            # the run's row, then any window the outlier rule excluded (runner.CellRunner.write): every one kept
            rows.append([{**row, "code_slot": slot} for row in pq.read_table(run_out).to_pylist()])
            hs = hotspots.path_for(run_out, cell.file_id)  # where run-cell wrote its hotspots (file_id has folders)
            if slot and hs.is_file():
                hotspot_files.append((f"{slot}-{label}", hs))
        write_table(schema.to_table(rows[0]), warmup_path(out))  # discarded from the statistics, kept
        if hotspot_files:
            try:  # the runs' rows in one file, each run's trace beside it
                hotspots.merge_files(hotspot_files, hotspots.path_for(out, cell.file_id))
            except Exception as e:  # noqa: BLE001 - a side file: never lose the measured runs for it
                log.warning("%s: hotspots not written: %s: %s", cell.id, type(e).__name__, e)
        write_table(schema.to_table([r for slot_rows in rows[1:] for r in slot_rows]), out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0
