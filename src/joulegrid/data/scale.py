"""Deterministic scale-up of a real table: seeded bootstrap + small per-column noise.

Shared by the shipped jets and by tables users bring with ``workloads.<name>.data``.
The result is the real rows in a fixed shuffled order, followed by bootstrapped real rows with
Gaussian noise of 2 % of the column's robust sd (none for integer-valued columns; exact zeros stay
zero, so empty track slots stay empty), generated in seeded blocks: the first k rows are the
same for every requested size. Each row carries ``origin``, the position of the real row it was
made from, so that a split can keep all copies of one real row on the same side
(:func:`grouped_split`) and the test set never holds noisy copies of training rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK = 65536
NOISE_FRACTION = 0.02


def integer_columns(x: np.ndarray) -> list[int]:
    """Columns whose values are all integers (multiplicities, charges): they get no noise."""
    if len(x) == 0:
        return []
    return [j for j in range(x.shape[1]) if np.all(np.isfinite(x[:, j])) and np.all(x[:, j] == np.round(x[:, j]))]


def scale_table(
    x: np.ndarray,
    y: np.ndarray | None,
    rows: int,
    seed: int,
    integer_cols: Sequence[int] | None = None,
    block: int = BLOCK,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(x, y, origin) with ``rows`` rows made deterministically from the real table (x, y)."""
    n = len(x)
    if n == 0:
        raise ValueError("cannot scale up an empty table")
    perm = np.random.default_rng(seed).permutation(n)
    x = x[perm]
    y = y[perm] if y is not None else None
    if rows <= n:
        return x[:rows].copy(), (y[:rows].copy() if y is not None else None), np.arange(rows, dtype=np.int32)
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    robust_sd = (q75 - q25) / 1.349
    robust_sd = np.where(robust_sd > 0, robust_sd, x.std(axis=0))
    noise_sd = (NOISE_FRACTION * robust_sd).astype(np.float32)
    for c in integer_columns(x) if integer_cols is None else integer_cols:
        noise_sd[c] = 0.0
    out_x = np.empty((rows, x.shape[1]), dtype=np.float32)
    out_y = np.empty(rows, dtype=y.dtype) if y is not None else None
    origin = np.empty(rows, dtype=np.int32)
    out_x[:n] = x
    origin[:n] = np.arange(n, dtype=np.int32)
    if out_y is not None:
        out_y[:n] = y
    start, b = n, 0
    while start < rows:
        stop = min(start + block, rows)
        rng = np.random.default_rng([seed, b])
        idx = rng.integers(0, n, size=block)[: stop - start]
        base = x[idx]
        noisy = base + rng.standard_normal(base.shape, dtype=np.float32) * noise_sd
        out_x[start:stop] = np.where(base == 0, 0, noisy)
        origin[start:stop] = idx
        if out_y is not None:
            out_y[start:stop] = y[idx]
        start, b = stop, b + 1
    return out_x, out_y, origin


def grouped_split(
    n: int, test_fraction: float, seed: int, origin: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices).

    Without ``origin`` (or when every origin is distinct) this is a seeded random split with
    exactly ``round(n * test_fraction)`` test rows. With origins, whole groups of rows made from the
    same real row go to one side, so scaled-up data never leaks copies of a training row into the
    test set; the test share is then ``test_fraction`` of the groups (about that share of rows).
    """
    rng = np.random.default_rng(seed)
    if origin is None or len(np.unique(origin)) == n:
        perm = rng.permutation(n)
        n_test = max(1, int(round(n * test_fraction)))
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    groups = np.unique(origin)
    n_test = max(1, int(round(len(groups) * test_fraction)))
    test_groups = rng.choice(groups, size=n_test, replace=False)
    is_test = np.isin(origin, test_groups)
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
