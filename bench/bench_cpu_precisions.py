"""Every CPU precision against fp32, side by side in one run: inference time per batch of each int8
backend, bf16, fp16 and compiled fp32 (issue 13), then training-step time of fp64 / bf16 / fp16.

Prints the host's CPU flags first (what decides native or emulated, and the int8 rule's choice),
then, for a small MLP (the jet tagger's 24-128-64-32-1, batch 1024), a large MLP (1024-1024-1024-
1024-1, batch 256) and the image CNN (batch 256), the time per batch of fp32 and the ratio of
every other implementation to it: < 1 = faster than fp32. Models and precisions are the ones the
cells run (joulegrid.precision, joulegrid.variants): int8 backends with their default scheme
(static, calibrated on 512 samples; torchao dynamic) and, for the torch.ao engines, dynamic too;
compiled models are compiled before timing (compile time printed, not counted). Each round times
every implementation in turn (ROUNDS rounds, round-robin, so a drift of the host's load hits all);
ratios are medians over rounds of the per-round ratio. Inputs are random, of the workloads' shapes.

The goal (issue 13): the default int8 (backend: auto) at >= 0.8x fp32's throughput on the small
MLP and faster than fp32 on the large one, on an x86 CPU. Backs docs/workloads.md ("Which int8?")
and the exclusion of fp16 CNN training on CPU (joulegrid.workloads.image_cnn.EXCLUSIONS).

    python bench/bench_cpu_precisions.py                  # --rounds 5 --threads 2 --train-steps 5
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI python bench/bench_cpu_precisions.py   # oneDNN without AMX
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
from benchlib import host

from joulegrid import precision, probes, variants
from joulegrid.workloads.image_cnn import make_cnn
from joulegrid.workloads.jet_tagger import make_mlp

INT8 = [("auto", "auto")] + [(b, "auto") for b in precision.INT8_BACKENDS] + [(b, "dynamic") for b in precision.ENGINES]


def cases() -> dict[str, tuple]:
    """name -> (model builder, input batch, calibration samples)."""
    torch.manual_seed(0)

    # raw pixels, the CNN standardises
    def pixels(n):
        return torch.randint(0, 256, (n, 3, 32, 32)).float()

    return {
        "small MLP 24-128-64-32-1, batch 1024": (
            lambda: make_mlp(24, (128, 64, 32)),
            torch.randn(1024, 24),
            torch.randn(512, 24),
        ),
        "large MLP 1024-1024-1024-1024-1, batch 256": (
            lambda: make_mlp(1024, (1024, 1024, 1024)),
            torch.randn(256, 1024),
            torch.randn(512, 1024),
        ),
        "image_cnn, batch 256": (lambda: make_cnn((3, 32, 32), 10, 127.0, 70.0), pixels(256), pixels(512)),
    }


def implementations(build, x, cal) -> tuple[dict[str, object], dict[str, str]]:
    """label -> callable(x) for every implementation; label -> note (errors, compile times)."""
    impls: dict[str, object] = {}
    notes: dict[str, str] = {}
    base = build().eval()
    impls["fp32"] = base
    for name in ("bf16", "fp16"):
        p = precision.get(name, "infer")

        def run(xb, p=p, m=base):
            with p.autocast("cpu"):
                return m(xb)

        impls[name] = run
    t0 = time.perf_counter()
    try:
        c = variants.compile(copy.deepcopy(base))
        with torch.inference_mode(), precision.get("fp32", "infer").compile_context():
            c(x)
        impls["fp32 compiled"] = c
        notes["fp32 compiled"] = f"compile {time.perf_counter() - t0:.1f} s"
    except Exception as e:  # noqa: BLE001 - report and go on, like a cell
        notes["fp32 compiled"] = f"failed: {precision.compile_error_reason(e)}"
    for backend, scheme in INT8:
        p = precision.get("int8", "infer", {"backend": backend, "scheme": scheme})
        label = f"int8 {backend}" + (f" {scheme}" if scheme != "auto" else "")
        t0 = time.perf_counter()
        try:
            q = p.prepare_model(copy.deepcopy(base), "cpu", "infer", calibration=cal)
            if p.compiles:
                with torch.inference_mode(), p.compile_context():
                    q(x)
            if backend == "auto":
                label = f"int8 auto = {p.backend} {p.scheme}"
            impls[label] = (q, p.backend)
            notes[label] = f"{p.scheme}, {precision.describe_counts(precision.quantized_layers(q))}" + (
                f", prepare + compile {time.perf_counter() - t0:.1f} s" if p.compiles else ""
            )
        except Exception as e:  # noqa: BLE001 - report and go on, like a cell
            notes[label] = f"failed: {type(e).__name__}: {str(e)[:150]}"
    return impls, notes


def timed(fn, x, n: int) -> float:
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(n):
            fn(x)
        return (time.perf_counter() - t0) / n


def infer_table(rounds: int) -> dict[str, dict[str, float]]:
    """Per case, median ratio to fp32 of every implementation; prints the table as it goes."""
    out: dict[str, dict[str, float]] = {}
    for case, (build, x, cal) in cases().items():
        impls, notes = implementations(build, x, cal)
        # quantized engines dispatch on the global engine: set each model's own before it runs
        calls = {}
        for label, impl in impls.items():
            if isinstance(impl, tuple):
                q, eng = impl

                def call(xb, q=q, eng=eng):
                    if eng in precision.ENGINES:
                        torch.backends.quantized.engine = eng
                    return q(xb)

                calls[label] = call
            else:
                calls[label] = impl
        n = max(3, int(0.2 / max(timed(calls["fp32"], x, 2), 1e-4)))  # ~0.2 s of fp32 per round and implementation
        for fn in calls.values():
            timed(fn, x, 2)  # warm-up (oneDNN primitives, allocator)
        per: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(rounds):
            for label, fn in calls.items():
                per[label].append(timed(fn, x, n))
        base = per["fp32"]
        ratios = {k: statistics.median(v[i] / base[i] for i in range(rounds)) for k, v in per.items()}
        out[case] = ratios
        print(
            f"\n{case}: fp32 {statistics.median(base) * 1e3:.3f} ms/batch ({n} batches x {rounds} rounds)", flush=True
        )
        for label in list(calls) + [k for k in notes if k not in calls]:
            r = f"{ratios[label]:6.2f} x fp32 time" if label in ratios else "     -"
            extra = f"  ({notes[label]})" if label in notes else ""
            print(f"  {label:24s} {r}{extra}", flush=True)
    return out


def step_time(build, x, y, loss_fn, prec_name: str, steps: int) -> float:
    torch.manual_seed(0)
    model = build()
    prec = precision.get(prec_name, "train")
    model = prec.prepare_model(model, "cpu", "train")
    x = x.to(prec.dtype)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    scaler = prec.make_scaler("cpu")

    def one():
        prec.train_step(
            "cpu", lambda: loss_fn(model(x).float() if prec.dtype != torch.float64 else model(x), y), opt, scaler
        )

    for _ in range(2):  # warm-up (oneDNN primitive creation)
        one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t0) / steps


def train_table(steps: int) -> None:
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
    print(f"\ntraining step, {steps} steps per case:")
    for name, (build, x, y, loss_fn) in cases.items():
        base = step_time(build, x, y, loss_fn, "fp32", steps)
        print(f"{name}: fp32 {base * 1e3:.1f} ms/step", flush=True)
        for p in ("fp64", "bf16", "fp16", "fp16_noscaler"):
            t = step_time(build, x, y, loss_fn, p, steps)
            print(f"  {p:14s} {t * 1e3:9.1f} ms/step  = {t / base:5.1f} x fp32", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=5, help="0 = skip the training table")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    flags = probes.cpu_flags()
    backend, why = precision.choose_int8("cpu", flags, probes.cpu_arch())
    print(f"host: {host()}")
    print(
        f"CPU flags: {probes.flags_column(flags) or '(none of ' + ', '.join(probes.CPU_FLAGS) + ')'}; arch "
        f"{platform.machine()}"
    )
    print(
        "native: "
        + ", ".join(
            f"{p} {'yes' if precision.native(p, 'cpu', flags, probes.cpu_arch()) else 'NO (emulated)'}"
            for p in ("bf16", "fp16", "int8")
        )
    )
    print(f"int8 rule: {backend} ({why})")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, quantized engines "
        f"{torch.backends.quantized.supported_engines}"
    )
    ratios = infer_table(a.rounds)
    small, large = (next(v for k, v in ratios.items() if k.startswith(s)) for s in ("small", "large"))
    auto = next((k for k in small if k.startswith("int8 auto")), None)
    if auto:
        ts, tl = 1 / small[auto], 1 / large.get(auto, float("nan"))
        print(
            f"\ngoal: default int8 ({auto[len('int8 auto = ') :]}) throughput vs fp32: small MLP {ts:.2f}x (goal >= "
            "0.8: "
            f"{'met' if ts >= 0.8 else 'MISSED'}), large MLP {tl:.2f}x (goal > 1: {'met' if tl > 1 else 'MISSED'})"
        )
    if a.train_steps:
        train_table(a.train_steps)


if __name__ == "__main__":
    main()
