"""Workload registry: built-in names and user classes given by import path.

A config names workloads in ``grid.workloads``; each is a built-in (BUILTIN) or a name of your
own whose ``workloads.<name>.class`` is an import path ``my_pkg.module:MyWorkload`` (importable
from the jobs: install the package or put its folder on PYTHONPATH). Everything here is checked
when the config is validated, before any job starts (joulegrid.config.validate_semantics).

Resolving a built-in workload imports its module but not torch (the built-in modules import
torch inside their methods), so config validation stays cheap.
"""

from __future__ import annotations

import copy
import importlib
from typing import Any

from ..axes import RULE_AXES
from .base import REQUIRED_METHODS, Workload

BUILTIN: dict[str, str] = {
    "baler_ae": "joulegrid.workloads.baler_ae:BalerAE",
    "jet_tagger": "joulegrid.workloads.jet_tagger:JetTagger",
    "image_cnn": "joulegrid.workloads.image_cnn:ImageCNN",
}

# Rows of the datasets that ship offline (train + test), for batch-size checks before any job runs.
DATASET_ROWS: dict[str, int] = {
    "jets": 27214,
    "fashion_mnist": 70000,
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
            "Fix: install the package or put its folder on PYTHONPATH (also for the jobs: export it before snakemake)"
        ) from None
    except Exception as e:  # noqa: BLE001 - a user module that fails at import time
        raise WorkloadError(
            f"importing module {mod_name!r} for workload class {path!r} failed: {type(e).__name__}: {e}. "
            "Fix: the error is in that module"
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
    problems = _attribute_problems(cls)
    if problems:
        raise WorkloadError(f"workload class {path!r}: {'; '.join(problems)}")
    return cls


def _attribute_problems(cls: type) -> list[str]:
    from ..data import DATASETS

    out = []
    if not isinstance(cls.quality_metric, str) or not cls.quality_metric:
        out.append("quality_metric must be the name of a key evaluate() returns. Fix: e.g. quality_metric = 'accuracy'")
    if not isinstance(cls.higher_is_better, bool):
        out.append("higher_is_better must be True or False. Fix: set it for the quality metric")
    if cls.dataset is not None and cls.dataset not in DATASETS:
        out.append(
            f"dataset {cls.dataset!r} is not a dataset joulegrid ships ({', '.join(DATASETS)}). "
            "Fix: set dataset = None and read your file from load_data(path) (config key workloads.<name>.data)"
        )
    if not isinstance(cls.DEFAULTS, dict):
        out.append("DEFAULTS must be a dict. Fix: e.g. DEFAULTS = {'epochs': 2, 'params': {}}")
    if not isinstance(cls.EXCLUSIONS, list) or not all(isinstance(r, dict) and r.get("reason") for r in cls.EXCLUSIONS):
        out.append("EXCLUSIONS must be a list of {axis: value(s), 'reason': text}. Fix: add a reason to each")
    else:
        bad = sorted({k for r in cls.EXCLUSIONS for k in r if k not in (*RULE_AXES, "reason", "allow")})
        if bad:
            out.append(
                f"EXCLUSIONS use unknown key(s) {', '.join(bad)}. Fix: use {', '.join(RULE_AXES)}, reason, allow"
            )
    return out


def class_path(name: str, user_class: str | None = None) -> str:
    if user_class:
        return user_class
    if name in BUILTIN:
        return BUILTIN[name]
    raise WorkloadError(
        f"unknown workload {name!r}. Fix: use one of {', '.join(BUILTIN)} or set class: my_pkg.module:MyWorkload"
    )


def workload_class(name: str, settings: dict[str, Any]) -> type:
    """The workload class for a name and its effective settings."""
    return load_class(class_path(name, settings.get("class")))


def defaults_for(name: str, user_class: str | None = None) -> dict[str, Any]:
    cls = load_class(class_path(name, user_class))
    merged = copy.deepcopy(Workload.DEFAULTS)
    merged.update(copy.deepcopy(cls.DEFAULTS))
    return merged


def exclusions(name: str, user_class: str | None = None) -> list[dict[str, Any]]:
    """The workload's own exclusion rules (class attribute EXCLUSIONS); [] if it cannot be resolved
    (config.validate_semantics reports unknown workloads with a clear error before the grid is expanded)."""
    try:
        return list(load_class(class_path(name, user_class)).EXCLUSIONS)
    except WorkloadError:
        return []


def dataset_rows(cls: type, settings: dict[str, Any]) -> int | None:
    """Rows the workload will see (train + test) if known without loading data."""
    if settings.get("rows"):
        return int(settings["rows"])
    if settings.get("data"):
        return None
    return DATASET_ROWS.get(cls.dataset) if cls.dataset else None


def check_extra_columns(wl: Workload) -> dict[str, Any]:
    """wl.extra_columns(), refused with a clear error if it names a column the schema lacks."""
    from .. import schema

    cols = wl.extra_columns() or {}
    unknown = sorted(set(cols) - set(schema.COLUMN_NAMES))
    if unknown:
        raise WorkloadError(
            f"{type(wl).__name__}.extra_columns() returns unknown result column(s) {', '.join(unknown)}. "
            "Fix: return only columns of joulegrid.schema (docs/results-schema.md)"
        )
    return cols


def create(name: str, settings: dict[str, Any], seed: int) -> Workload:
    return workload_class(name, settings)(settings, seed)
