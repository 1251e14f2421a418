"""Ship the Python environment with the jobs, for sites whose workers see nothing of the submit host.

Blackett's direct HTCondor access (a project's submit node) has no shared filesystem: a venv on
the submit node is invisible to the workers. ``joulegrid pack-env`` writes the venv that runs it
into one tarball (default ``joulegrid-env.tar.gz`` in the checkout); a site whose entry in
config/sites.yaml names it as ``env_tarball`` sends it with every job, and joulegrid's job wrapper
unpacks it in the job's scratch directory and runs its Python (src/joulegrid/job-wrapper.sh).

A venv is not fully relocatable: its ``bin/python`` links to the base Python it was made from
(``home`` in pyvenv.cfg), which the workers need at the same path. Build it on a Python every
worker has -- on a grid site one from CVMFS, e.g. an LCG view -- and the rest (site-packages,
torch included) travels in the tarball. The workflow (Snakefile, rules, the joulegrid package)
is not packed: every job without a shared filesystem takes it from the checkout (executors.py).
"""

from __future__ import annotations

import fnmatch
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .io import atomic_path

DEFAULT_OUT = "joulegrid-env.tar.gz"
# never needed to run a job: bytecode is rebuilt from the sources on the worker
SKIP = ("__pycache__", "*.pyc")


class PackError(ValueError):
    """The environment cannot be packed; the message says why and what to do."""


@dataclass
class Packed:
    path: Path
    files: int
    bytes_in: int
    base_python: str


def venv_base(prefix: str | os.PathLike) -> str:
    """The base Python's directory of a venv (``home`` in its pyvenv.cfg)."""
    cfg = Path(prefix) / "pyvenv.cfg"
    if not cfg.is_file():
        raise PackError(
            f"{prefix} is not a venv (no pyvenv.cfg): joulegrid pack-env packs the venv that runs it. "
            "Fix: run it with your venv's python (e.g. .venv/bin/joulegrid pack-env)"
        )
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return value.strip()
    raise PackError(f"{cfg} names no base Python (home = ...). Fix: recreate the venv with python -m venv")


def pack(
    out: str | os.PathLike = DEFAULT_OUT, prefix: str | os.PathLike = sys.prefix, exclude: tuple[str, ...] = ()
) -> Packed:
    """Write the venv at `prefix` to the tarball `out` (atomically); members are relative to the venv.

    exclude: glob patterns of paths inside the venv to leave out (e.g. 'lib/python3.11/site-packages/playwright*')."""
    prefix = Path(prefix)
    base = venv_base(prefix)
    out = Path(out)
    if out.resolve().is_relative_to(prefix.resolve()):
        raise PackError(
            f"{out} is inside the venv {prefix}. Fix: write it elsewhere (the checkout: --out {DEFAULT_OUT})"
        )
    counts = {"files": 0, "bytes": 0}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = info.name
        parts = name.split("/")
        if any(fnmatch.fnmatch(p, pat) for p in parts for pat in SKIP):
            return None
        if any(fnmatch.fnmatch(name, pat) for pat in exclude):
            return None
        if info.isfile():
            counts["files"] += 1
            counts["bytes"] += info.size
        return info

    with atomic_path(out, suffix=".tar.gz") as tmp:
        # gzip level 1: a torch venv is >1 GB; the best level takes minutes for a few percent
        with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
            for child in sorted(prefix.iterdir()):
                tar.add(child, arcname=child.name, filter=keep)  # symlinks stay links (bin/python -> base)
    return Packed(out, counts["files"], counts["bytes"], base)
