"""A planted cost for the verdict tests (tests/workflow/test_verdicts_real.py): the Baler-style autoencoder
whose measured inference step runs the model ``params.factor`` times per batch (the counted step repeated;
the rest of the window -- batching, the pass's bookkeeping -- is not), defined only under tests/."""

from joulegrid.workloads.baler_ae import BalerAE


class Planted(BalerAE):
    DEFAULTS = {**BalerAE.DEFAULTS, "params": {**BalerAE.DEFAULTS["params"], "factor": 1}}

    def infer_batch(self, model, xb):
        out = None
        for _ in range(int(self.params.get("factor", 1))):
            out = model(xb)
        return out
