"""Atomic file writes: a result is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temp path in the target's folder; on success fsync + rename it onto target.

    On error the temp file is removed and the target is untouched. The temp name starts with
    '.' and ends in '.tmp' so globs over results never pick it up.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{suffix}.tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared on clusters
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_table(table, target: str | os.PathLike) -> None:
    """Write a pyarrow Table as Parquet atomically (zstd)."""
    import pyarrow.parquet as pq

    with atomic_path(target, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")


def stamp(target: str | os.PathLike, text: str) -> bool:
    """Write text to target (atomically) only when the file holds something else; True if written.

    A stamp's modification time says when its content last changed, so a Snakemake rule that
    takes it as an input reruns exactly then, also under ``rerun-triggers: [mtime]`` (which ignores
    changed params): the Snakefile stamps the report settings, the current configuration and the
    run files the grid does not make (joulegrid.snakefile, Workflow.stamp)."""
    p = Path(target)
    try:
        if p.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    with atomic_path(p, suffix=p.suffix) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return True
