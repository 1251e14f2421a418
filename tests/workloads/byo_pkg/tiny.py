"""A user's own workload, outside joulegrid: linear regression on a seeded toy table or a .npz.

It imports torch at module level, as user code typically does.
"""

import numpy as np
import torch

from joulegrid.workloads.base import Split, Workload, widen


class TinyRegression(Workload):
    quality_metric = "test_mse"
    higher_is_better = False
    DEFAULTS = {"rows": 512, "epochs": 10, "lr": 0.1, "test_fraction": 0.25, "params": {"n_features": 8}}

    def load_data(self, path):
        if path:
            with np.load(path) as z:
                x, y = z["x"].astype(np.float32), z["y"].astype(np.float32)
        else:
            rng = np.random.default_rng(7)
            n, f = int(self.settings.get("rows") or 512), int(self.params["n_features"])
            x = rng.standard_normal((n, f)).astype(np.float32)
            y = (x @ np.linspace(-1, 1, f) + 0.01 * rng.standard_normal(n)).astype(np.float32)
        tr, te = self.split_indices(len(x))
        return Split(x[tr], y[tr], x[te], y[te], name="toy linear table", n_features=x.shape[1])

    def build_model(self, split):
        return torch.nn.Linear(split.n_features, 1)

    def loss(self, model, xb, yb):
        out = widen(model(xb)).squeeze(-1)
        return torch.nn.functional.mse_loss(out, yb.to(out.dtype))

    def evaluate(self, outputs, x, y):
        mse = float(np.mean((widen(outputs).detach().cpu().double().numpy().ravel() - np.asarray(y)) ** 2))
        return {"test_mse": mse, "loss": mse}


class NoEvaluate(Workload):
    """Forgets evaluate(): refused at config validation."""

    def load_data(self, path):
        raise AssertionError("never called")

    def build_model(self, split):
        raise AssertionError("never called")

    def loss(self, model, xb, yb):
        raise AssertionError("never called")


class NotAWorkload:
    pass


class BadDataset(TinyRegression):
    dataset = "cifar10"


class BadColumns(TinyRegression):
    def extra_columns(self):
        return {"my_private_column": 1.0}
