#!/usr/bin/env python3
"""Training data path: joulegrid's in-memory permuted slicing vs DataLoader(TensorDataset, shuffle=True).

The autoencoder (baler_ae's model) at batch 512 on --rows rows (default 500,000) of 24 float32
features (random values: the data path does not depend on them). joulegrid's side is the runner's
own epoch loop, `phases.TrainLoop.train_epoch` (one randperm + gather per epoch, then slices, the
`.to(device, dtype)` of each batch, the loss check and the per-batch clocks); the other side is the
textbook loop `for (xb,) in DataLoader(TensorDataset(x), batch_size=512, shuffle=True)` with the
same `.to()` and the same training step.

Two comparisons, alternating which goes first, one epoch per side and round:
  data path  - the step does nothing (returns a zero loss): only producing the batches is timed;
  end to end - the step is the real one (forward, MSE loss, backward, Adam step).
Prints per round and the median ratios DataLoader/joulegrid (how many times slower the DataLoader
loop is), the end-to-end one LAST.

    python bench/bench_data_path.py [--rows 500000] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, host

sys.path.insert(0, str(REPO / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from joulegrid import config as C
    from joulegrid import precision
    from joulegrid import spec as SP
    from joulegrid.grid import Cell
    from joulegrid.phases import Measurement, Trainee, TrainLoop
    from joulegrid.workloads.base import Split
    from joulegrid.workloads.registry import create

    torch.set_num_threads(args.threads)
    cfg, sites = C.load()
    cell = Cell(cfg["site"], "baler_ae", "train", "cpu", "fp32", "baseline", args.batch, 0)
    spec = SP.SpecBuilder(cfg, sites).cell_spec(cell)
    wl = create("baler_ae", spec.settings.workload, 0)
    prec = precision.get("fp32", "train")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.rows, 24, generator=g)
    model = wl.build_model(Split(x.numpy(), None, x[:1].numpy(), None, n_features=24))
    opt = wl.make_optimizer(model)
    zero = torch.zeros(())

    def real_step(mdl, optim, sc, xb, yb):
        optim.zero_grad(set_to_none=True)
        loss = wl.loss(mdl, xb, yb)
        loss.backward()
        optim.step()
        return loss

    def no_step(mdl, optim, sc, xb, yb):
        return zero

    def joulegrid_epoch(step) -> float:
        t0 = time.perf_counter()
        loop = TrainLoop(step, x, None, cell.batch_size, cell.device, prec.dtype)
        loop.train_epoch(Trainee(model, opt, None), g, Measurement())
        return time.perf_counter() - t0

    def dataloader_epoch(step) -> float:
        t0 = time.perf_counter()
        for (xb,) in DataLoader(TensorDataset(x), batch_size=args.batch, shuffle=True, generator=g):
            xb = xb.to(device="cpu", dtype=prec.dtype, non_blocking=True)
            loss = step(model, opt, None, xb, None)
            float(loss.detach())
        return time.perf_counter() - t0

    print(f"host: {host()}")
    print(
        f"baler_ae autoencoder, {args.rows} rows x 24 features, batch {args.batch}, {args.threads} torch thread(s), "
        "fp32, CPU"
    )
    joulegrid_epoch(no_step), dataloader_epoch(no_step)  # warm-up
    out = {}
    for label, step in (("data path", no_step), ("end to end", real_step)):
        ratios = []
        for r in range(args.rounds):
            sides = [("joulegrid", joulegrid_epoch), ("DataLoader", dataloader_epoch)]
            t = {}
            for name, fn in sides if r % 2 == 0 else sides[::-1]:
                t[name] = fn(step)
            ratios.append(t["DataLoader"] / t["joulegrid"])
            print(
                f"  {label:<10} round {r + 1}: joulegrid slicing {t['joulegrid']:7.3f} s/epoch | "
                f"DataLoader {t['DataLoader']:7.3f} s/epoch | ratio {ratios[-1]:.2f}",
                flush=True,
            )
        out[label] = statistics.median(ratios)
    print(f"median ratio DataLoader/joulegrid, data path alone: {out['data path']:.2f}")
    print(f"median ratio DataLoader/joulegrid, end to end: {out['end to end']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
