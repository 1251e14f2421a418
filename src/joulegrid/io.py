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


def pyarrow_without_pandas() -> None:
    """Keep pyarrow from importing pandas in a process that converts only plain Python values to Arrow: a job
    that writes its rows (run-cell, run-quadruple, record-failure), aggregate, report, compare (cli._TABLE_COMMANDS).

    pyarrow's first conversion of Python values (a row into a Table, even an empty table) asks whether they are
    pandas objects, and to ask it imports pandas: 0.6-0.8 s of CPU on a 2-core host, in every job (inside the
    job's tracked time) and every report, for values that are never pandas objects (docs/benchmarks.md).
    pyarrow's pandas shim tries that import once per process: with pandas made unimportable for that
    one try, the shim records "no pandas" and never tries again. Nothing else changes: ``import pandas``
    works as before (codecarbon), and a pyarrow call that needs pandas (``Table.to_pandas``) imports it
    then. Nothing to do where pandas is imported already."""
    import sys

    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    class _NoPandas:  # a finder that refuses pandas: `import pandas` raises ModuleNotFoundError
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "pandas":
                raise ModuleNotFoundError("pandas is not imported for pyarrow in a job", name=name)
            return None

    sys.meta_path.insert(0, _NoPandas)
    try:
        pa.array([0])  # the shim's one try
    finally:
        sys.meta_path.remove(_NoPandas)


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
