"""Baler-style dense autoencoder on real jets (data compression for HEP).

Architecture (Baler's ``AE`` model): n_features -> 200 -> 100 -> 50 -> latent -> 50 -> 100 ->
200 -> n_features, LeakyReLU between layers, no activation on the latent and the output.
Training minimises the mean squared reconstruction error of robust-scaled features; inference
is compress + decompress of the test split, and the quality metric is the reconstruction MSE
(lower is better). The compression ratio is n_features / latent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Split, Workload


def robust_scale(train: np.ndarray, *others: np.ndarray, clip: float = 20.0):
    """(x - median) / IQR fitted on train (std where IQR is 0), clipped to +-clip."""
    med = np.median(train, axis=0)
    q75, q25 = np.percentile(train, [75, 25], axis=0)
    scale = q75 - q25
    sd = train.std(axis=0)
    scale = np.where(scale > 0, scale, np.where(sd > 0, sd, 1.0)).astype(np.float32)
    return [np.clip((a - med) / scale, -clip, clip).astype(np.float32) for a in (train, *others)]


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return perm[n_test:], perm[:n_test]


def make_autoencoder(n_features: int, latent: int, widths=(200, 100, 50)):
    import torch
    from torch import nn

    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            dims = [n_features, *widths, latent]
            self.encoder = nn.Sequential()
            for i in range(len(dims) - 1):
                self.encoder.append(nn.Linear(dims[i], dims[i + 1]))
                if i < len(dims) - 2:
                    self.encoder.append(nn.LeakyReLU())
            rdims = dims[::-1]
            self.decoder = nn.Sequential()
            for i in range(len(rdims) - 1):
                self.decoder.append(nn.Linear(rdims[i], rdims[i + 1]))
                if i < len(rdims) - 2:
                    self.decoder.append(nn.LeakyReLU())

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.encoder(x)

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return self.decoder(z)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.decode(self.encode(x))

    return AE()


class BalerAE(Workload):
    dataset = "jets"
    quality_metric = "recon_mse"
    higher_is_better = False
    DEFAULTS = {
        "rows": 0,
        "epochs": 3,
        "lr": 1e-3,
        "test_fraction": 0.2,
        "target_quality": None,
        "params": {"latent": 12, "widths": [200, 100, 50]},
    }

    def load_data(self, path: str | None) -> Split:
        from ..data import load

        d = load(path)
        x = d["x"]
        tr, te = split_indices(len(x), float(self.settings.get("test_fraction", 0.2)), self.seed)
        x_train, x_test = robust_scale(x[tr], x[te])
        return Split(x_train, None, x_test, None, name=str(d.get("source", "jets")), n_features=x.shape[1])

    def build_model(self, split: Split):
        self.n_features = split.n_features or split.x_train.shape[1]
        return make_autoencoder(self.n_features, int(self.params["latent"]), tuple(self.params["widths"]))

    def loss(self, model, xb, yb):
        import torch.nn.functional as F

        return F.mse_loss(model(xb).float(), xb.float())

    def evaluate(self, outputs, x, y) -> dict[str, float]:
        import torch

        x = torch.as_tensor(x)
        mse = torch.mean((outputs.float().cpu() - x.float()) ** 2).item()
        return {"recon_mse": mse, "loss": mse}

    def extra_columns(self) -> dict[str, Any]:
        return {"compression_ratio": self.n_features / int(self.params["latent"])}
