"""Workload registry: built-in names and user classes given by import path.

Resolving a built-in workload imports its module but not torch (the built-in modules import
torch inside their methods), so config validation stays cheap.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

from .base import REQUIRED_METHODS, Workload

BUILTIN: dict[str, str] = {
    "baler_ae": "joulegrid.workloads.baler_ae:BalerAE",
}

# Rows of the datasets that ship offline (train + test), for batch-size checks before any job runs.
DATASET_ROWS: dict[str, int] = {
    "jets": 27214,
}


class WorkloadError(ValueError):
    """A workload that cannot be loaded or does not implement the interface."""


def load_class(path: str) -> type:
    mod_name, _, cls_name = path.partition(":")
    if not mod_name or not cls_name:
        raise WorkloadError(f"class {path!r} is not an import path. Fix: write it as my_pkg.module:MyWorkload")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise WorkloadError(
            f"cannot import module {mod_name!r} for workload class {path!r} ({e}). "
            "Fix: install the package or put its folder on PYTHONPATH"
        ) from None
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise WorkloadError(f"module {mod_name!r} has no class {cls_name!r}. Fix: check the class name in {path!r}")
    if not isinstance(cls, type) or not issubclass(cls, Workload):
        raise WorkloadError(
            f"{path!r} is not a subclass of joulegrid.workloads.base.Workload. Fix: derive it from Workload"
        )
    missing = [m for m in REQUIRED_METHODS if getattr(cls, m) is getattr(Workload, m)]
    if missing:
        raise WorkloadError(
            f"workload class {path!r} does not implement {', '.join(missing)}. "
            "Fix: implement these methods (see docs/workloads.md)"
        )
    return cls


def class_path(name: str, user_class: str | None = None) -> str:
    if user_class:
        return user_class
    if name in BUILTIN:
        return BUILTIN[name]
    raise WorkloadError(f"unknown workload {name!r}. Fix: use one of {', '.join(BUILTIN)} or set class: my_pkg.module:MyWorkload")


def resolve_spec(name: str, settings: dict[str, Any]) -> type:
    """The workload class for a name and its effective settings."""
    return load_class(class_path(name, settings.get("class")))


def defaults_for(name: str, user_class: str | None = None) -> dict[str, Any]:
    cls = load_class(class_path(name, user_class))
    merged = copy.deepcopy(Workload.DEFAULTS)
    merged.update(copy.deepcopy(cls.DEFAULTS))
    return merged


def dataset_rows(cls: type, settings: dict[str, Any]) -> int | None:
    """Rows the workload will see (train + test) if known without loading data."""
    if settings.get("rows"):
        return int(settings["rows"])
    if settings.get("data"):
        return None
    return DATASET_ROWS.get(cls.dataset) if cls.dataset else None


def create(name: str, settings: dict[str, Any], seed: int) -> Workload:
    return resolve_spec(name, settings)(settings, seed)
