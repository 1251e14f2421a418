"""Training-step time of each CPU precision relative to fp32, side by side in one run.

Backs the grid's exclusion of fp16 CNN training on CPU (joulegrid.workloads.image_cnn.EXCLUSIONS)
and the notes in docs/workloads.md. Uses the built-in models on random inputs of their shapes,
the same autocast / GradScaler code as the runner (joulegrid.precision), 2 threads.

    python bench/bench_cpu_precisions.py [steps]
"""

from __future__ import annotations

import sys
import time

import torch

from joulegrid import precision
from joulegrid.workloads.image_cnn import make_cnn
from joulegrid.workloads.jet_tagger import make_mlp


def step_time(build, x, y, loss_fn, prec_name: str, steps: int) -> float:
    torch.manual_seed(0)
    model = build()
    prec = precision.get(prec_name, "train")
    model = prec.prepare_model(model, "cpu", "train")
    x = x.to(prec.dtype)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    scaler = prec.make_scaler("cpu")

    def one():
        prec.train_step("cpu", lambda: loss_fn(model(x).float() if prec.dtype != torch.float64 else model(x), y), opt, scaler)

    for _ in range(2):  # warm-up (oneDNN primitive creation)
        one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    torch.set_num_threads(2)
    cases = {
        "image_cnn (bs 128)": (
            lambda: make_cnn((3, 32, 32), 10, 0.0, 1.0),
            torch.randn(128, 3, 32, 32),
            torch.randint(0, 10, (128,)),
            lambda out, y: torch.nn.functional.cross_entropy(out, y),
        ),
        "jet_tagger MLP (bs 256)": (
            lambda: make_mlp(24),
            torch.randn(256, 24),
            torch.rand(256, 1),
            lambda out, y: torch.nn.functional.binary_cross_entropy_with_logits(out, y.to(out.dtype)),
        ),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} steps per case")
    for name, (build, x, y, loss_fn) in cases.items():
        base = step_time(build, x, y, loss_fn, "fp32", steps)
        print(f"{name}: fp32 {base * 1e3:.1f} ms/step")
        for p in ("fp64", "bf16", "fp16", "fp16_noscaler"):
            t = step_time(build, x, y, loss_fn, p, steps)
            print(f"  {p:14s} {t * 1e3:9.1f} ms/step  = {t / base:5.1f} x fp32")


if __name__ == "__main__":
    main()
