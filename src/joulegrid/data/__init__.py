"""Datasets that ship offline, prepared once per size into ``<resources>/datasets/<name>/n<rows>.npz``.

``rows = 0`` means the real dataset as shipped; ``rows = N`` scales it deterministically to N
samples (see each loader). Preparing is a Snakemake rule (workflow/rules/data.smk) so that every
measurement job reads the same prepared file. Each prepared file holds ``x``, ``y``, ``origin``
(position of the real sample each sample was made from: used for leak-free train/test splits)
and ``source``.

- ``jets``: 27,214 real jets x 24 features (scikit-hep-testdata 0.3.12), joulegrid.data.jets.
- ``fashion_mnist``: 70,000 images, uint8 [N, 1, 32, 32] (Debian dataset-fashion-mnist),
  joulegrid.data.images.
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
        x, y, origin = jets.scale_up(x, y, rows, DATA_SEED)
    else:
        origin = np.arange(len(x), dtype=np.int32)
    return {"x": x, "y": y, "origin": origin, "columns": np.array(jets.COLUMNS), "source": np.array(jets.SOURCE)}


def _fashion_mnist(rows: int):
    from . import images

    x, y = images.load_real(DATA_SEED)
    if rows:
        x, y, origin = images.scale_up(x, y, rows, DATA_SEED)
    else:
        origin = np.arange(len(x), dtype=np.int32)
    return {"x": x, "y": y, "origin": origin, "classes": np.array(images.CLASSES), "source": np.array(images.SOURCE)}


def _jets_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("skhep_testdata") is None:
        return "the jets need scikit-hep-testdata==0.3.12. Fix: pip install -c requirements/constraints.txt -e ."
    return None


def _fashion_missing() -> str | None:
    from . import images

    return images.missing()


DATASETS = {
    "jets": _jets,
    "fashion_mnist": _fashion_mnist,
}
# Why a dataset cannot be prepared on this machine (None: it can); cheap, for config checks.
MISSING = {
    "jets": _jets_missing,
    "fashion_mnist": _fashion_missing,
}


def missing(dataset: str) -> str | None:
    check = MISSING.get(dataset)
    return check() if check else None


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
        raise FileNotFoundError(
            f"prepared dataset {p} is missing; run `joulegrid prepare-data` or the Snakemake rule prepare_dataset"
        )
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
