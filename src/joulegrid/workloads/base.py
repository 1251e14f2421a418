"""The workload interface: what joulegrid needs to know to train and run a model.

A workload is a class; the runner owns the loops, the timing and the meters, the workload owns
the data, the model and the maths. Import torch *inside* methods (not at module level) in the
built-in workloads, so that the grid can read ``DEFAULTS`` / ``dataset`` at config-validation
time without importing torch (user workloads may import it at module level; it then costs the
dry run one torch import).

Minimal workload of your own (see docs/workloads.md)::

    from joulegrid.workloads.base import Workload, Split

    class MyWorkload(Workload):
        quality_metric = "accuracy"
        higher_is_better = True
        DEFAULTS = {"epochs": 2, "lr": 1e-3, "params": {}}

        def load_data(self, path):          # -> Split of numpy arrays
            ...
        def build_model(self, split):       # -> torch.nn.Module (split gives shapes)
            ...
        def loss(self, model, xb, yb):      # -> scalar tensor (one training step's loss)
            ...
        def evaluate(self, outputs, x, y):  # -> {"accuracy": ..., ...}; outputs = infer_batch results
            ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REQUIRED_METHODS = ("load_data", "build_model", "loss", "evaluate")


@dataclass
class Split:
    """A dataset split into train and test parts (numpy arrays; y may be None)."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    name: str = ""  # dataset name and source, recorded in results
    n_features: int | None = None

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)


class Workload:
    """Base class. Subclasses set the class attributes and implement REQUIRED_METHODS."""

    #: key of joulegrid.data.DATASETS this workload reads (prepared by the data rule), or None
    dataset: str | None = None
    #: headline quality metric: a key of the dict evaluate() returns
    quality_metric: str = "loss"
    higher_is_better: bool = False
    #: settings defaults (merged with the config's workloads.<name> entry)
    DEFAULTS: dict[str, Any] = {"rows": 0, "epochs": 1, "lr": 1e-3, "test_fraction": 0.2, "target_quality": None, "params": {}}

    def __init__(self, settings: dict[str, Any], seed: int):
        self.settings = settings
        self.params = dict(settings.get("params") or {})
        self.seed = seed

    # ---- data ----------------------------------------------------------------------
    def load_data(self, path: str | None) -> Split:  # pragma: no cover - interface
        raise NotImplementedError

    # ---- model ---------------------------------------------------------------------
    def build_model(self, split: Split):  # pragma: no cover - interface
        raise NotImplementedError

    # ---- training ------------------------------------------------------------------
    def loss(self, model, xb, yb):  # pragma: no cover - interface
        raise NotImplementedError

    def make_optimizer(self, model):
        import torch

        return torch.optim.Adam(model.parameters(), lr=float(self.settings.get("lr", 1e-3)))

    # ---- inference / evaluation ----------------------------------------------------
    def infer_batch(self, model, xb):
        """The measured inference work on one batch (default: a forward pass)."""
        return model(xb)

    def evaluate(self, outputs, x, y) -> dict[str, float]:  # pragma: no cover - interface
        raise NotImplementedError

    def example_batch(self, split: Split, n: int):
        """A batch of n inputs for FLOP counting (default: the first n test samples)."""
        import torch

        return torch.as_tensor(split.x_test[:n])

    def extra_columns(self) -> dict[str, Any]:
        """Workload-specific result columns (must exist in joulegrid.schema)."""
        return {}
