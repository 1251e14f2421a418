"""A user's workload with a deliberately slow Python function in its data preparation: a per-sample
normalisation loop in the training step, the kind of code the hotspots' cProfile ranking must point at."""

import torch

from .tiny import TinyRegression


def normalise(xb):
    """Each sample standardised (mean 0, standard deviation 1) one value at a time in Python: slow on purpose
    (plain loops, no comprehensions, so that cProfile books the time to this function itself)."""
    out = []
    for s in xb.tolist():
        total = 0.0
        for v in s:
            total += v
        mean = total / len(s)
        var = 0.0
        for v in s:
            var += (v - mean) * (v - mean)
        sd = (var / len(s)) ** 0.5 + 1e-6
        row = []
        for v in s:
            row.append((v - mean) / sd)
        out.append(row)
    return torch.tensor(out, dtype=xb.dtype)


class SlowPrep(TinyRegression):
    def loss(self, model, xb, yb):
        return super().loss(model, normalise(xb), yb)

    def infer_batch(self, model, xb):
        return model(normalise(xb))
