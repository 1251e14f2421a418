"""Baler-style dense autoencoder on real jets (data compression for HEP).

Architecture (Baler's ``AE`` model): n_features -> 200 -> 100 -> 50 -> latent -> 50 -> 100 ->
200 -> n_features, LeakyReLU between layers, no activation on the latent and the output.
Training minimises the mean squared reconstruction error of robust-scaled features; inference
is compress + decompress of the test split, and the quality metric is the reconstruction MSE
(lower is better). The compression ratio is n_features / latent (recorded as
``compression_ratio``). Baler itself trains in float64: that is the precision fp64.

Data: the 27,214 real jets x 24 features (joulegrid.data.jets), or your own table with
``data:`` (.npz with ``x`` or Baler's ``data`` array, .parquet, or a flat ROOT tree; every numeric
column except ``params.label_column`` is a feature, or list them in ``params.features``).
"""

from __future__ import annotations

from typing import Any

from .base import Split, Workload, widen
from .tabular import TABLE_FORMATS, load_arrays, robust_scale


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
    DATA_FORMATS = TABLE_FORMATS
    # merged over Workload.DEFAULTS (rows, lr, test_fraction, ...)
    DEFAULTS = {
        "epochs": 3,
        "params": {"latent": 12, "widths": [200, 100, 50]},
    }

    @classmethod
    def validate_settings(cls, settings: dict[str, Any]) -> None:
        p = settings.get("params") or {}
        latent = p.get("latent", 12)
        if not isinstance(latent, int) or isinstance(latent, bool) or latent < 1:
            raise ValueError(f"params.latent: {latent!r} is not a positive integer. Fix: e.g. latent: 12")
        widths = p.get("widths", [200, 100, 50])
        if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(
                f"params.widths: {widths!r} is not a list of positive integers. Fix: e.g. widths: [200, 100, 50]"
            )

    def load_data(self, path: str | None) -> Split:
        d = load_arrays(self, path, need_label=False)
        x = d["x"]
        tr, te = self.split_indices(len(x), d["origin"])
        x_train, x_test = robust_scale(x[tr], x[te])
        return Split(x_train, None, x_test, None, name=d["source"], n_features=x.shape[1])

    def build_model(self, split: Split):
        self.n_features = split.n_features or split.x_train.shape[1]
        return make_autoencoder(self.n_features, int(self.params["latent"]), tuple(self.params["widths"]))

    def loss(self, model, xb, yb):
        import torch.nn.functional as F

        out = widen(model(xb))
        return F.mse_loss(out, xb.to(out.dtype))

    def evaluate(self, outputs, x, y) -> dict[str, float]:
        import torch

        out = widen(outputs).cpu()
        mse = torch.mean((out - torch.as_tensor(x).to(out.dtype)) ** 2).item()
        return {"recon_mse": mse, "loss": mse}

    def extra_columns(self) -> dict[str, Any]:
        return {"compression_ratio": self.n_features / int(self.params["latent"])}
