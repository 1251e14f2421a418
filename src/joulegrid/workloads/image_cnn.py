"""Image CNN: the CIFAR-style network of the reference notebook on Fashion-MNIST.

Model (the TensorFlow CNN tutorial's network): Conv 3x3 32 -> ReLU -> MaxPool 2 -> Conv 3x3 64
-> ReLU -> MaxPool 2 -> Conv 3x3 64 -> ReLU -> Flatten -> Dense 64 -> ReLU -> Dense 10 logits;
122,570 parameters and 9,097,216 forward FLOPs per 3x32x32 image. The first layer standardises
the raw pixels with the training split's mean and sd (buffers, part of the stored model), so the
images stay uint8 in memory (3 GB instead of 12 GB at 1e6 images) and become float per batch.

Data: Fashion-MNIST from Debian's dataset-fashion-mnist (joulegrid.data.images): 70,000 grey
28x28 images zero-padded to 32x32 and repeated to 3 channels (CIFAR-10's shape; no CIFAR
images are available offline). ``rows`` (alias ``samples``) scales the set with a seeded
augmentation stream (flips, shifts); copies of one image stay on one side of the split.
Your own images: ``data:`` an .npz with ``x`` [N, C, H, W] or [N, H, W] (uint8 or float) and
``y`` integer class labels. Quality: accuracy on the test split; loss = cross-entropy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import quality
from .base import Split, Workload, widen


def make_cnn(
    in_shape: tuple[int, int, int], n_classes: int, mean: float, std: float, channels=(32, 64, 64), dense: int = 64
):
    import torch
    from torch import nn

    class Standardize(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.tensor(float(mean)))
            self.register_buffer("std", torch.tensor(float(std)))

        def forward(self, x):
            return (x - self.mean) / self.std

    c1, c2, c3 = channels
    features = nn.Sequential(
        Standardize(),
        nn.Conv2d(in_shape[0], c1, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3),
        nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        n_flat = features(torch.zeros(1, *in_shape)).shape[1]
    return nn.Sequential(*features, nn.Linear(n_flat, dense), nn.ReLU(), nn.Linear(dense, n_classes))


class ImageCNN(Workload):
    dataset = "fashion_mnist"
    quality_metric = "accuracy"
    higher_is_better = True
    DATA_FORMATS = (".npz",)
    # merged over Workload.DEFAULTS (rows, lr, test_fraction, ...)
    DEFAULTS = {
        "epochs": 3,
        "params": {"channels": [32, 64, 64], "dense": 64, "in_channels": 3},
    }
    EXCLUSIONS = [
        {
            "phase": "train",
            "device": "cpu",
            "precision": ["fp16", "fp16_noscaler"],
            "allow": "cpu_fp16",
            "reason": (
                "fp16 autocast CNN training on CPU runs half-precision convolution backward without "
                "hardware support: from several times to ~110x slower than fp32 depending on the CPU "
                "(bench/bench_cpu_precisions.py, docs/workloads.md); "
                "set allow.cpu_fp16: true to measure it anyway"
            ),
        }
    ]

    @classmethod
    def validate_settings(cls, settings: dict[str, Any]) -> None:
        p = settings.get("params") or {}
        ch = p.get("channels", [32, 64, 64])
        if not isinstance(ch, list) or len(ch) != 3 or not all(isinstance(c, int) and c > 0 for c in ch):
            raise ValueError(f"params.channels: {ch!r} must be 3 positive integers. Fix: e.g. channels: [32, 64, 64]")
        for key in ("dense", "in_channels"):
            v = p.get(key, cls.DEFAULTS["params"][key])
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(
                    f"params.{key}: {v!r} is not a positive integer. Fix: e.g. {key}: {cls.DEFAULTS['params'][key]}"
                )

    def load_data(self, path: str | None) -> Split:
        from ..data import DATA_SEED

        if self.settings.get("data"):
            from ..data.tables import load_table

            d = load_table(path or self.settings["data"], need_label=True)
            x, y, origin, source = d["x"], d["y"], None, d["source"]
            if x.ndim == 3:
                x = x[:, None]
            if x.ndim != 4:
                raise ValueError(f"image_cnn needs images x [N, C, H, W] or [N, H, W]; got shape {x.shape}")
            if self.rows():
                from ..data.images import scale_up

                perm = np.random.default_rng(DATA_SEED).permutation(len(x))
                x, y, origin = scale_up(x[perm], y[perm], self.rows(), DATA_SEED)
        else:
            from ..data import load

            if path is None:
                raise FileNotFoundError("image_cnn needs its prepared dataset (--data)")
            d = load(path)
            x, y, origin, source = d["x"], d["y"], d.get("origin"), str(d.get("source", ""))
        want = int(self.params.get("in_channels", 3))
        if x.shape[1] == 1 and want > 1:
            x = np.repeat(x, want, axis=1)  # grey -> 3 identical channels (CIFAR shape)
        y = np.asarray(y).astype(np.int64)
        tr, te = self.split_indices(len(x), origin)
        x_train, x_test = x[tr], x[te]
        self.n_classes = int(max(int(y.max()) + 1, 2))
        # mean/sd of the training pixels over a strided subsample of <= 5000 images (cheap at 1e6)
        sample = x_train[:: max(1, len(x_train) // 5000)]
        self.mean, self.std = float(sample.mean(dtype=np.float64)), float(sample.std(dtype=np.float64) or 1.0)
        return Split(x_train, y[tr], x_test, y[te], name=source, n_features=int(np.prod(x.shape[1:])))

    def build_model(self, split: Split):
        shape = tuple(split.x_train.shape[1:])
        n_classes = getattr(self, "n_classes", None) or int(split.y_train.max()) + 1
        mean, std = getattr(self, "mean", 0.0), getattr(self, "std", 1.0)
        return make_cnn(
            shape,
            n_classes,
            mean,
            std,
            tuple(self.params.get("channels", (32, 64, 64))),
            int(self.params.get("dense", 64)),
        )

    def loss(self, model, xb, yb):
        import torch.nn.functional as F

        return F.cross_entropy(widen(model(xb)), yb)

    def evaluate(self, outputs, x, y) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        logits = widen(outputs).detach().cpu()
        yt = torch.as_tensor(np.asarray(y).astype(np.int64))
        return {
            "accuracy": quality.accuracy(logits.argmax(dim=1).numpy(), yt.numpy()),
            "loss": F.cross_entropy(logits, yt).item(),
        }
