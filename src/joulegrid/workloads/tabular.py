"""Shared data handling of the table workloads (baler_ae, jet_tagger): the shipped jets or a
table of the user's own (``workloads.<name>.data``: .npz / .parquet / .root, see
joulegrid.data.tables), scaled to ``rows`` if asked, split without leaks, robust-scaled."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.tables import FORMATS as TABLE_FORMATS  # noqa: F401  (re-exported for DATA_FORMATS)


def robust_scale(train: np.ndarray, *others: np.ndarray, clip: float = 20.0):
    """(x - median) / IQR fitted on train (std where IQR is 0), clipped to +-clip."""
    med = np.median(train, axis=0)
    q75, q25 = np.percentile(train, [75, 25], axis=0)
    scale = q75 - q25
    sd = train.std(axis=0)
    scale = np.where(scale > 0, scale, np.where(sd > 0, sd, 1.0)).astype(np.float32)
    return [np.clip((a - med) / scale, -clip, clip).astype(np.float32) for a in (train, *others)]


def load_arrays(wl, path: str | None, need_label: bool) -> dict[str, Any]:
    """{'x', 'y', 'origin', 'source'}: the prepared shipped dataset, or the user's own file."""
    from ..data import DATA_SEED, load

    settings = wl.settings
    if settings.get("data"):
        from ..data.scale import scale_table
        from ..data.tables import load_table

        p = wl.params
        d = load_table(
            path or settings["data"],
            label_column=p.get("label_column", "label"),
            features=p.get("features"),
            tree=p.get("tree"),
            need_label=need_label,
        )
        x, y, origin = d["x"], d["y"], None
        if wl.rows():
            x, y, origin = scale_table(x, y, wl.rows(), DATA_SEED)
        return {"x": x, "y": y, "origin": origin, "source": d["source"]}
    if path is None:
        raise FileNotFoundError(f"workload {type(wl).__name__} needs its prepared dataset (--data)")
    d = load(path)
    return {"x": d["x"], "y": d.get("y"), "origin": d.get("origin"), "source": str(d.get("source", ""))}
