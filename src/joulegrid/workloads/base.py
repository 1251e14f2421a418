"""The workload interface: what joulegrid needs to know to train and run a model.

A workload is a class; the runner owns the loops, the timing, the precision (dtype, autocast,
GradScaler, quantization) and the meters; the workload owns the data, the model and the maths.
Import torch *inside* methods (not at module level) in the built-in workloads, so that the grid
can read ``DEFAULTS`` / ``dataset`` / ``EXCLUSIONS`` at config-validation time without importing
torch (user workloads may import it at module level; it then costs the dry run one torch import).

Minimal workload of your own (full guide: docs/workloads.md)::

    from joulegrid.workloads.base import Workload, Split

    class MyWorkload(Workload):
        quality_metric = "accuracy"         # a key of the dict evaluate() returns
        higher_is_better = True
        DEFAULTS = {"epochs": 2, "lr": 1e-3, "params": {"hidden": 64}}

        def load_data(self, path):          # -> Split of numpy arrays (path = workloads.<name>.data)
            ...
        def build_model(self, split):       # -> torch.nn.Module (split gives the shapes)
            ...
        def loss(self, model, xb, yb):      # -> scalar tensor: the maths of one training step
            ...
        def evaluate(self, outputs, x, y):  # -> {"accuracy": ..., ...}; outputs = infer_batch results
            ...

and in the config::

    grid: {workloads: [mine]}
    workloads:
      mine: {class: my_pkg.module:MyWorkload, data: /path/to/file.npz, params: {hidden: 128}}

The runner calls, in order: ``load_data`` -> ``build_model`` -> (train) ``make_optimizer`` and,
per batch, ``loss`` under the precision's autocast, then backward/step (with GradScaler for
fp16); after each epoch and for inference ``infer_batch`` over the test split and ``evaluate``.
``example_batch`` feeds the FLOP counter; ``extra_columns`` adds result columns.
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


def widen(t):
    """A half-precision tensor (autocast output) as float32; fp32/fp64 unchanged. Use in losses so
    that fp64 runs stay fp64 and autocast runs compute the loss in fp32."""
    import torch

    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class Workload:
    """Base class. Subclasses set the class attributes and implement REQUIRED_METHODS."""

    #: key of joulegrid.data.DATASETS this workload reads (prepared by the data rule), or None
    dataset: str | None = None
    #: headline quality metric: a key of the dict evaluate() returns
    quality_metric: str = "loss"
    higher_is_better: bool = False
    #: suffixes accepted by workloads.<name>.data (checked at config validation); () = not checked
    DATA_FORMATS: tuple[str, ...] = ()
    #: settings defaults (merged with the config's workloads.<name> entry)
    DEFAULTS: dict[str, Any] = {
        "rows": 0,
        "epochs": 1,
        "lr": 1e-3,
        "test_fraction": 0.2,
        "target_quality": None,
        "params": {},
    }
    #: grid cells this workload should not run, each {axis: value or [values], "reason": text} with
    #: optional "allow": <key of the config's allow: section> that re-enables them
    EXCLUSIONS: list[dict[str, Any]] = []

    def __init__(self, settings: dict[str, Any], seed: int):
        self.settings = settings
        self.params = dict(settings.get("params") or {})
        #: per-repeat seed (initialisation, shuffling)
        self.seed = seed
        #: seed of the train/test split: the runner sets the config's seed, the same for every
        #: repeat, so inference cells score the reference model on data it was not trained on
        self.split_seed = seed

    # ---- config-time checks --------------------------------------------------------
    @classmethod
    def validate_settings(cls, settings: dict[str, Any]) -> None:
        """Raise ValueError('<key>: <problem>. Fix: <fix>') for settings this workload cannot run
        (called when the config is validated, before any job starts; keys relative to
        workloads.<name>, e.g. 'params.latent'). Must not import torch or read big files."""

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

    # ---- helpers for built-in workloads --------------------------------------------
    def rows(self) -> int:
        return int(self.settings.get("rows") or 0)

    def split_indices(self, n: int, origin=None):
        """Seeded train/test indices; rows made from one real sample stay on one side."""
        from ..data.scale import grouped_split

        return grouped_split(n, float(self.settings.get("test_fraction", 0.2)), self.split_seed, origin)
