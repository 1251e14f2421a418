"""Data files users bring with ``workloads.<name>.data`` (their own jets, ATLAS/CMS open data).

Formats (chosen by the file suffix):

- ``.npz``: array ``x`` [N, F] (or ``data``, Baler's name), optional ``y`` [N] labels and
  ``columns`` (or ``names``) feature names. Images: ``x`` [N, C, H, W] or [N, H, W].
- ``.parquet``: one row per sample; the label column is ``params.label_column`` (default
  ``label``), the features are ``params.features`` or every other numeric column.
- ``.root``: a flat TTree or RNTuple (one number per entry and branch; jagged branches are
  ignored), read with uproot; tree ``params.tree`` (default: the only tree in the file), label
  branch and features as for Parquet.

Everything here is plain numpy/pyarrow/uproot: no torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = (".npz", ".parquet", ".root")


class DataFormatError(ValueError):
    """A data file that is not in a format the workload can read."""


def check_format(path: str | os.PathLike, formats: Sequence[str] = FORMATS) -> str | None:
    """Problem with the file name's format (None if the suffix is one of ``formats``)."""
    suffix = Path(path).suffix.lower()
    if suffix not in formats:
        return f"{str(path)!r} has suffix {suffix or '(none)'!r}; supported formats: {', '.join(formats)}"
    return None


def _pick_columns(names: Sequence[str], label: str | None, features: Sequence[str] | None, where: str) -> list[str]:
    if features:
        absent = [f for f in features if f not in names]
        if absent:
            raise DataFormatError(
                f"{where}: feature column(s) {', '.join(absent)} not found (has: {', '.join(names)}). Fix: correct "
                "params.features"
            )
        return list(features)
    return [n for n in names if n != label]


def load_table(
    path: str | os.PathLike,
    label_column: str | None = "label",
    features: Sequence[str] | None = None,
    tree: str | None = None,
    need_label: bool = False,
) -> dict[str, Any]:
    """{'x': float32 [N, F], 'y': labels or None, 'columns': names, 'source': text}."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file {p} does not exist. Fix: set workloads.<name>.data to an existing file")
    why = check_format(p)
    if why:
        raise DataFormatError(why + ". Fix: convert the file (see docs/workloads.md)")
    suffix = p.suffix.lower()
    y = None
    if suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            key = "x" if "x" in z.files else "data" if "data" in z.files else None
            if key is None:
                raise DataFormatError(
                    f"{p}: no array 'x' (or 'data') in the .npz (has: {', '.join(z.files)}). Fix: save the features "
                    "as x"
                )
            x = z[key]
            if "y" in z.files:
                y = z["y"]
            names_key = "columns" if "columns" in z.files else "names" if "names" in z.files else None
            columns = (
                [str(c) for c in z[names_key]]
                if names_key
                else [f"f{i}" for i in range(x.shape[1] if x.ndim > 1 else 1)]
            )
        if features and x.ndim == 2:
            idx = [columns.index(c) for c in _pick_columns(columns, None, features, str(p))]
            x, columns = x[:, idx], [columns[i] for i in idx]
    else:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(p)
            names = [f.name for f in table.schema if _numeric_arrow(f.type)]

            def get(c):
                return table.column(c).to_numpy(zero_copy_only=False)
        else:
            import uproot

            f = uproot.open(p)
            kinds = ("TTree", "ROOT::RNTuple")
            trees = [k.split(";")[0] for k, cls in f.classnames().items() if cls in kinds]
            name = tree or (trees[0] if len(trees) == 1 else None)
            if name is None or name not in trees:
                raise DataFormatError(
                    f"{p}: {'tree ' + repr(tree) + ' not found' if tree else 'no single tree'} (trees: "
                    f"{', '.join(trees) or 'none'}). "
                    "Fix: set params.tree to one of them"
                )
            t = f[name]
            if hasattr(t, "branches"):  # TTree
                flat = [b.name for b in t.branches if type(b.interpretation).__name__ == "AsDtype"]
                arrays = t.arrays(flat, library="np")
            else:  # RNTuple
                arrays = t.arrays(library="np")
            arrays = {k: v for k, v in arrays.items() if getattr(v, "ndim", 0) == 1 and v.dtype.kind in "biuf"}
            names = list(arrays)
            get = arrays.__getitem__
        label = label_column if label_column in names else None
        if need_label and label is None:
            raise DataFormatError(
                f"{p}: label column {label_column!r} not found (numeric columns: {', '.join(names)}). "
                "Fix: set params.label_column to the column holding the 0/1 labels"
            )
        columns = _pick_columns(names, label, features, str(p))
        if not columns:
            raise DataFormatError(f"{p}: no numeric feature columns. Fix: check the file or params.features")
        x = np.column_stack([np.asarray(get(c), dtype=np.float32) for c in columns])
        y = np.asarray(get(label)) if label else None
    if need_label and y is None:
        raise DataFormatError(f"{p}: no labels (array 'y' in .npz, or a label column). Fix: add them")
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = x.astype(np.float32, copy=False)
    if y is not None and len(y) != len(x):
        raise DataFormatError(f"{p}: {len(x)} samples but {len(y)} labels. Fix: write one label per sample")
    return {"x": x, "y": y, "columns": columns, "source": f"user data: {p.name}"}


def _numeric_arrow(t) -> bool:
    import pyarrow.types as pt

    return pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t)
