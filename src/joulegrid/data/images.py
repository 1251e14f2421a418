"""Fashion-MNIST from Debian's ``dataset-fashion-mnist``, shaped like CIFAR-10 (3 x 32 x 32).

The package installs the original IDX files under ``/usr/share/datasets/fashion-mnist/``
(60,000 training + 10,000 test images, 28 x 28 grey, 10 classes); ``scripts/setup-system.sh``
installs it. The 70,000 images are pooled in a fixed shuffled order and zero-padded by 2 pixels
to 32 x 32; the three identical colour channels are made when a workload loads the data
(the prepared file keeps one channel: 72 MB instead of 215 MB for the real set).

``scale_up`` makes N samples deterministically: the real images, then a seeded augmentation
stream of random real images, each flipped left-right with probability 1/2 and shifted by
-2..+2 pixels in x and y (the 2-pixel zero border absorbs the shift: no content is cut or
wrapped). Blocks are seeded, so the first k samples are the same for every N. ``origin`` is the
position of the real image a sample came from (grouped train/test split, no leakage).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DIR = Path(os.environ.get("JOULEGRID_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
SOURCE = "Fashion-MNIST (Debian dataset-fashion-mnist), 28x28 grey padded to 32x32"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
N_REAL = 70000
PAD = 2
MAX_SHIFT = 2
BLOCK = 8192


def missing() -> str | None:
    """Why the images cannot be read here (None when they can)."""
    absent = [f for f in FILES.values() if not (DIR / f).is_file()]
    if absent:
        return (
            f"Fashion-MNIST files {', '.join(absent)} are missing in {DIR}. Fix: install the Debian package "
            "(scripts/setup-system.sh, or apt-get install dataset-fashion-mnist), set JOULEGRID_FASHION_MNIST_DIR "
            "to a folder holding the IDX files, or set workloads.image_cnn.data to an .npz of your own images"
        )
    return None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array (ubyte data only, as in (Fashion-)MNIST)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims} values, found {arr.size}")
    return arr.reshape(dims)


def load_real(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 [70000, 1, 32, 32], y uint8 [70000]) pooled and shuffled with ``seed``."""
    why = missing()
    if why:
        raise FileNotFoundError(why)
    x = np.concatenate([read_idx(DIR / FILES["train_x"]), read_idx(DIR / FILES["test_x"])])
    y = np.concatenate([read_idx(DIR / FILES["train_y"]), read_idx(DIR / FILES["test_y"])])
    x = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)))[:, None]
    perm = np.random.default_rng(seed).permutation(len(x))
    return np.ascontiguousarray(x[perm]), y[perm]


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random left-right flip (p=1/2) and a shift of -MAX_SHIFT..MAX_SHIFT pixels in x and y."""
    n = len(x)
    flip = rng.random(n) < 0.5
    dy = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=n)
    dx = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=n)
    out = np.where(flip[:, None, None, None], x[..., ::-1], x)
    for sy in range(-MAX_SHIFT, MAX_SHIFT + 1):
        for sx in range(-MAX_SHIFT, MAX_SHIFT + 1):
            sel = (dy == sy) & (dx == sx)
            if sel.any() and (sy or sx):
                out[sel] = np.roll(out[sel], (sy, sx), axis=(-2, -1))
    return out


def scale_up(x: np.ndarray, y: np.ndarray, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, origin) with ``rows`` samples: the real images, then the seeded augmentation stream."""
    n = len(x)
    if rows <= n:
        return x[:rows].copy(), y[:rows].copy(), np.arange(rows, dtype=np.int32)
    out_x = np.empty((rows, *x.shape[1:]), dtype=x.dtype)
    out_y = np.empty(rows, dtype=y.dtype)
    origin = np.empty(rows, dtype=np.int32)
    out_x[:n], out_y[:n], origin[:n] = x, y, np.arange(n)
    start, b = n, 0
    while start < rows:
        stop = min(start + BLOCK, rows)
        rng = np.random.default_rng([seed, b])
        idx = rng.integers(0, n, size=BLOCK)
        aug = augment(x[idx], rng)[: stop - start]
        out_x[start:stop], out_y[start:stop], origin[start:stop] = aug, y[idx[: stop - start]], idx[: stop - start]
        start, b = stop, b + 1
    return out_x, out_y, origin
