"""Re-measure finished cells without losing the old measurement: ``joulegrid remeasure PATTERN``.

Finished run files are write-protected (protected() in the rule measure), and Snakemake refuses
to overwrite them (``-R`` / ``--forcerun`` fail with ProtectedOutputException). To measure a cell
again on purpose, its files are MOVED (never deleted) to::

    <results>/archive/<UTC timestamp>/runs/<cell id>-<config hash>.parquet     (+ attempts/, hotspots/ side files)

after which the next ``snakemake`` measures the missing cells anew, with a new run_id. The pattern
matches cell ids (every configuration's file of a matching cell moves) or, with the hash,
``<cell id>-<config hash>`` (that configuration's file only). The archive
lies outside <results>/runs/, so the summary holds the new measurement only; the old one can still
be read (or aggregated with ``joulegrid aggregate --runs <results>/archive/<ts>/runs``).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from .grid import cell_from_path, run_files

SIDE_FILES = (("attempts", ".jsonl"), ("hotspots", ".parquet"))


class ArchiveError(ValueError):
    pass


def _stamp() -> str:
    """Name of a new archive folder: the UTC time, to the microsecond."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def matching(results: str | os.PathLike, pattern: str) -> list[tuple[str, Path]]:
    """(file id, run file) of the run files under <results>/runs/ whose cell id
    (site/workload/phase/device/precision/bsB/rK) or file id (cell id-config hash) matches the
    shell-style pattern (``*`` also crosses '/')."""
    runs = Path(results) / "runs"
    out = []
    for p in map(Path, run_files(runs)):
        cell = cell_from_path(p.as_posix())
        if fnmatch.fnmatchcase(cell.id, pattern) or fnmatch.fnmatchcase(cell.file_id, pattern):
            out.append((cell.file_id, p))
    return out


def remeasure(
    results: str | os.PathLike, pattern: str, dry_run: bool = False, stamp: str | None = None
) -> tuple[list[Path], Path]:
    """Move the matching run files (and their side files) into <results>/archive/<stamp>/; returns
    (moved run files' new paths, archive folder). Raises ArchiveError when nothing matches."""
    results = Path(results)
    files = matching(results, pattern)
    if not files:
        raise ArchiveError(
            f"no finished cell under {results}/runs matches {pattern!r}. Fix: give a cell id pattern such as "
            "'local/baler_ae/train/cpu/fp32/bs256/r0' or 'local/*/infer/*', optionally with a config hash "
            "('local/*/infer/*-<hash>', `joulegrid plan` prints the current ones; see `ls -R results/runs`)"
        )
    stamp = stamp or _stamp()
    dest_root = results / "archive" / stamp
    if dest_root.exists():
        raise ArchiveError(f"{dest_root} exists already. Fix: wait a moment and run again")
    moved = []
    for file_id, f in files:
        pairs = [(f, dest_root / "runs" / f"{file_id}.parquet")]
        pairs += [(results / d / f"{file_id}{ext}", dest_root / d / f"{file_id}{ext}") for d, ext in SIDE_FILES]
        pairs += [(t, dest_root / "hotspots" / t.relative_to(results / "hotspots")) for t in _traces(results, file_id)]
        for src, dst in pairs:
            if not src.exists():
                continue
            if not dry_run:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(src, dst)  # a rename on the same filesystem
        moved.append(dest_root / "runs" / f"{file_id}.parquet")
    return moved, dest_root


def _traces(results: Path, file_id: str) -> list[Path]:
    """A run's hotspot traces: <file id>.trace.json, and a quadruple's <file id>.<slot>-<version>.trace.json."""
    hs = results / "hotspots" / f"{file_id}.parquet"
    if not hs.parent.is_dir():
        return []
    return sorted(hs.parent.glob(glob.escape(hs.name.removesuffix(".parquet")) + ".*trace.json"))


def guard_rerun(jobs: list[tuple[list[str], bool]], results: str | os.PathLike, stamp: str | None = None) -> list[Path]:
    """Called by the Snakefile before any job starts, with (outputs, forced) of every measure job that
    will run. Snakemake would delete an existing output before re-running its job -- also a
    protected one when running as root, where write protection does not hold. So:

    * forced (``-R``, ``--forcerun``, ``-F``) over a finished measurement: ArchiveError naming the
      files and the fix (``joulegrid remeasure``);
    * any other reason (an output Snakemake marked incomplete: the job was killed after the row was
      written but before Snakemake recorded it): the file is moved to <results>/archive/<stamp>/ first.

    Returns the archived files' new paths."""
    forced = [o for outs, f in jobs if f for o in outs if Path(o).exists()]
    if forced:
        shown = "\n  ".join(forced[:5]) + (f"\n  ... and {len(forced) - 5} more" if len(forced) > 5 else "")
        raise ArchiveError(
            f"refusing to overwrite {len(forced)} finished measurement(s) (-R / --forcerun / -F):\n  {shown}\n"
            "Fix: move them aside with `joulegrid remeasure '<cell id pattern>'` (kept under "
            f"{results}/archive/), then run snakemake again without the force flag"
        )
    runs = Path(results) / "runs"
    stamp = stamp or _stamp() + "-incomplete"
    moved = []
    for outs, _ in jobs:
        for o in outs:
            p = Path(o)
            if not p.exists():
                continue
            try:
                rel = p.relative_to(runs)
            except ValueError:
                continue
            dst = Path(results) / "archive" / stamp / "runs" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(p, dst)
            moved.append(dst)
    return moved
