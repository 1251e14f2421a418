"""Fault injection for the reliability tests: a tiny bring-your-own workload (defined only under
tests/) that fails on purpose in its measured training window, chosen by ``params.fault``:

  none       trains normally
  raise      RuntimeError in the workload           -> status failed
  nan        a non-finite loss                      -> status nan
  memory     MemoryError                            -> status oom
  kill       SIGKILL of its own process (as the OOM killer does) -> no row from run-cell itself
  kill_once  SIGKILL on the first run only: creates ``params.marker`` and dies; later runs train
  abort      os.abort(): a crash of the Python process itself (SIGABRT)

Faults fire at ``params.at_batch`` (default 1, i.e. after one batch was measured).
"""

import os
import signal
from pathlib import Path

import numpy as np
import torch

from joulegrid.workloads.base import Split, Workload


class Faulty(Workload):
    quality_metric = "test_mse"
    higher_is_better = False
    DEFAULTS = {
        "rows": 256,
        "epochs": 1,
        "lr": 0.05,
        "test_fraction": 0.25,
        "params": {"n_features": 4, "fault": "none", "marker": "", "at_batch": 1},
    }

    def load_data(self, path):
        rng = np.random.default_rng(7)
        n, f = int(self.settings.get("rows") or 256), int(self.params["n_features"])
        x = rng.standard_normal((n, f)).astype(np.float32)
        y = (x @ np.linspace(-1, 1, f)).astype(np.float32)
        tr, te = self.split_indices(len(x))
        self._batches = 0
        return Split(x[tr], y[tr], x[te], y[te], name="fault injection table", n_features=f)

    def build_model(self, split):
        return torch.nn.Linear(split.n_features, 1)

    def _fault(self):
        fault = self.params["fault"]
        if fault == "raise":
            raise RuntimeError("injected failure in the workload")
        if fault == "nan":
            return float("nan")
        if fault == "memory":
            raise MemoryError("injected: cannot allocate 64 GiB")
        if fault == "kill" or (fault == "kill_once" and not Path(self.params["marker"]).exists()):
            if fault == "kill_once":
                Path(self.params["marker"]).write_text("killed once\n")
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "abort":
            os.abort()
        return 1.0

    def loss(self, model, xb, yb):
        out = model(xb).squeeze(-1)
        loss = torch.nn.functional.mse_loss(out, yb.to(out.dtype))
        self._batches = getattr(self, "_batches", 0) + 1
        if self._batches > int(self.params["at_batch"]):
            loss = loss * self._fault()
        return loss

    def evaluate(self, outputs, x, y):
        mse = float(np.mean((outputs.detach().cpu().double().numpy().ravel() - np.asarray(y)) ** 2))
        return {"test_mse": mse, "loss": mse}
