"""Datasets that ship offline, prepared once per size into ``<resources>/datasets/<name>/n<rows>.npz``.

``rows = 0`` means the real dataset as shipped; ``rows = N`` scales it deterministically to N
samples (see each loader). Preparing is a Snakemake rule (workflow/rules/data.smk) so that every
measurement job reads the same prepared file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

DATA_SEED = 96  # fixed: the scaled-up dataset is the same for every cell and repeat


def _jets(rows: int):
    from . import jets

    x, y = jets.load_real()
    if rows:
        x, y = jets.scale_up(x, y, rows, DATA_SEED)
    return {"x": x, "y": y, "columns": np.array(jets.COLUMNS), "source": np.array(jets.SOURCE)}


DATASETS = {
    "jets": _jets,
}


def dataset_path(resources: str, dataset: str, rows: int) -> str:
    return f"{resources}/datasets/{dataset}/n{int(rows)}.npz"


def prepare(dataset: str, rows: int, out: str | os.PathLike) -> None:
    """Build a dataset and write it atomically as an uncompressed .npz."""
    from ..io import atomic_path

    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    arrays = DATASETS[dataset](int(rows))
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prepared dataset {p} is missing; run `joulegrid prepare-data` or the Snakemake rule prepare_dataset")
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
