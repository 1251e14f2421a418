"""A per-host cache of what does not change between the cells measured on one node.

Every cell is a new process, and some set-up is the same for every cell on a host: codecarbon's
hardware detection (CPU model and TDP from its CPU table, which imports pandas: 1-3 s in every
cell, meters/codecarbon_meter.py). The first cell on a host stores the result under

    <resources>/hosts/<hostname>/<name>-<hash of the key>.json

and the next cells on that host read it. An entry is used only on the host that wrote it, in the
same boot (``/proc/sys/kernel/random/boot_id``; a node rebooted with other hardware detects
again), for the same CPU model and memory size, and for the same key (the library version and the
settings the result depends on). Anything unreadable is ignored and detected again: a cache never
changes a measurement, it only skips work whose result it already knows.

run-cell turns the cache on (``configure``) with the resources folder of the grid snapshot; without
it (a cell run by hand with --spec) nothing is cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

_root: Path | None = None


def configure(resources_dir: str | os.PathLike | None) -> None:
    """Cache under <resources_dir>/hosts/<this host>/ (None: no cache)."""
    global _root
    _root = Path(resources_dir) / "hosts" / socket.gethostname() if resources_dir else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def fingerprint() -> dict[str, Any]:
    """What must not have changed since an entry was written: this boot, the CPU model, the memory."""
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines() if ln.startswith("model name")), ""
    )
    mem = next((ln.split()[1] for ln in _read("/proc/meminfo").splitlines() if ln.startswith("MemTotal:")), "")
    return {"boot_id": _read("/proc/sys/kernel/random/boot_id").strip(), "cpu_model": cpu, "mem_total_kb": mem}


def _path(name: str, key: dict[str, Any]) -> Path | None:
    if _root is None:
        return None
    h = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return _root / f"{name}-{h}.json"


def load(name: str, key: dict[str, Any]) -> Any | None:
    """The value stored for (name, key) on this host in this boot, or None."""
    p = _path(name, key)
    if p is None or not p.is_file():
        return None
    try:
        entry = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if entry.get("key") != json.loads(json.dumps(key, default=str)) or entry.get("fingerprint") != fingerprint():
        return None
    return entry.get("value")


def save(name: str, key: dict[str, Any], value: Any) -> None:
    """Store value for (name, key); failures are ignored (the next cell detects again)."""
    p = _path(name, key)
    if p is None:
        return
    try:
        from .io import atomic_path

        text = json.dumps({"key": key, "fingerprint": fingerprint(), "value": value}, default=str, indent=1)
        with atomic_path(p, suffix=".json") as tmp:
            Path(tmp).write_text(text)
    except (OSError, TypeError, ValueError):
        pass
