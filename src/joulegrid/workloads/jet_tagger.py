"""Jet tagger: a dense binary classifier on real jets (quark vs gluon).

Data: the 27,214 real jets of ``uproot-issue96.root`` (joulegrid.data.jets; 24 per-jet features:
kinematics, charged multiplicities, leading-track pt fractions and distances). Label 1 = quark
jet (signal, parton id 1-5), 0 = gluon jet (background, id 21); the 4 jets without a parton
label are dropped. No top-tagging data ships offline: on a cluster, point ``data:`` at your own
file, e.g. the ATLAS Top Tagging Open Data Set converted to .npz / .parquet / flat ROOT
(label 1 = top; docs/workloads.md shows the conversion).

Model: MLP n_features -> 128 -> 64 -> 32 -> 1 logit (ReLU; ``params.hidden``), loss
binary cross-entropy with logits on robust-scaled features. Quality (test split): ROC AUC
(headline), accuracy at logit > 0 (p > 0.5), and background rejection 1/eps_B at 50 % signal
efficiency (joulegrid.workloads.quality).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import quality
from .base import Split, Workload, widen
from .tabular import TABLE_FORMATS, load_arrays, robust_scale


def make_mlp(n_features: int, hidden=(128, 64, 32), n_out: int = 1):
    from torch import nn

    layers: list[nn.Module] = []
    d = n_features
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


class JetTagger(Workload):
    dataset = "jets"
    quality_metric = "roc_auc"
    higher_is_better = True
    DATA_FORMATS = TABLE_FORMATS
    # merged over Workload.DEFAULTS (rows, lr, test_fraction, ...)
    DEFAULTS = {
        "epochs": 5,
        "params": {"hidden": [128, 64, 32], "label_column": "label"},
    }

    @classmethod
    def validate_settings(cls, settings: dict[str, Any]) -> None:
        p = settings.get("params") or {}
        hidden = p.get("hidden", [128, 64, 32])
        if not isinstance(hidden, list) or not all(
            isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
        ):
            raise ValueError(
                f"params.hidden: {hidden!r} is not a list of positive integers. Fix: e.g. hidden: [128, 64, 32]"
            )
        if not isinstance(p.get("label_column", "label"), str):
            raise ValueError("params.label_column: must be a column name. Fix: e.g. label_column: label")

    def load_data(self, path: str | None) -> Split:
        d = load_arrays(self, path, need_label=True)
        x, y, origin = d["x"], np.asarray(d["y"]), d["origin"]
        keep = y >= 0  # unlabelled jets (parton id -1) are dropped
        if not keep.all():
            x, y = x[keep], y[keep]
            origin = origin[keep] if origin is not None else None
        values = set(np.unique(y).tolist())
        if not values <= {0, 1}:
            raise ValueError(f"jet_tagger needs labels 0 (background) / 1 (signal); found {sorted(values)[:10]}")
        tr, te = self.split_indices(len(x), origin)
        x_train, x_test = robust_scale(x[tr], x[te])
        y = y.astype(np.float32)
        return Split(x_train, y[tr], x_test, y[te], name=d["source"], n_features=x.shape[1])

    def build_model(self, split: Split):
        return make_mlp(split.n_features or split.x_train.shape[1], tuple(self.params.get("hidden", (128, 64, 32))))

    def loss(self, model, xb, yb):
        import torch.nn.functional as F

        logits = widen(model(xb)).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logits, yb.to(logits.dtype))

    def evaluate(self, outputs, x, y) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        logits = widen(outputs).detach().cpu().squeeze(-1)
        yt = torch.as_tensor(y).to(logits.dtype)
        scores = logits.double().numpy()
        labels = np.asarray(y).astype(int)
        return {
            "roc_auc": quality.roc_auc(scores, labels),
            "accuracy": quality.accuracy(scores > 0, labels),
            "bkg_rejection_at_50": quality.bkg_rejection_at(scores, labels, 0.5),
            "loss": F.binary_cross_entropy_with_logits(logits, yt).item(),
        }
