"""A user's workload with a deliberately slow Python function in its data preparation: a per-sample
normalisation loop in the training step, the kind of code the hotspots' cProfile ranking must point at."""

import torch

from .tiny import TinyRegression


def normalise(xb):
    """Each sample scaled to unit norm, one sample at a time in Python (slow on purpose)."""
    rows = []
    for i in range(len(xb)):
        s = xb[i]
        total = 0.0
        for v in s.tolist():
            total += v * v
        rows.append(s / (total**0.5 + 1e-6))
    return torch.stack(rows)


class SlowPrep(TinyRegression):
    def loss(self, model, xb, yb):
        return super().loss(model, normalise(xb), yb)

    def infer_batch(self, model, xb):
        return model(normalise(xb))
