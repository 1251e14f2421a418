#!/usr/bin/env python3
"""Overhead of joulegrid's instrumentation on a CPU-bound workload: bare vs fully instrumented.

The same training loop (an MLP autoencoder step on random data, torch threads = measure.threads)
runs in rounds of a fixed number of steps, alternating bare / instrumented so that both see the
same machine state. "Instrumented" is what the runner wraps around a measured window: the
default meters of config/config.yaml (measure.meters: auto -> every meter that works here) started
and stopped around the round, per-batch latency clocks and device sync, and the summary of the
readings. The meters' one-off set-up (codecarbon's hardware detection, zeus' import) is done
once before the rounds, as the runner overlaps it with the job's set-up; it is reported
separately as a per-job fixed cost.

Prints per-pair throughput ratios and, LAST, the median ratio instrumented/bare (goal >= 0.99).

    python bench/bench_overhead.py [--pairs 20] [--round-s 1] [--threads 2]

Also printed, because a shared host's load swings can hide a 1 % effect in the ratio: the meters'
own CPU use while measuring (their sampling/polling threads, over an idle window) as a share of
the workload's threads -- an upper bound of their throughput cost that does not depend on the
neighbours -- and the fixed costs (set-up per job, start+stop per window).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def cpu_time() -> float:
    import os

    t = os.times()
    return t.user + t.system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20, help="bare/instrumented pairs (alternating)")
    ap.add_argument("--round-s", type=float, default=1.0, help="approximate length of one round")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: measure.threads)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--idle-s", type=float, default=5.0, help="idle window for the meters' own CPU use")
    args = ap.parse_args()

    import logging

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    import torch

    from joulegrid import config as CFG
    from joulegrid import meters

    cfg, sites = CFG.load()  # config/config.yaml with schema defaults: the default meters
    settings = {"measure": cfg["measure"], "site_facts": CFG.site_facts(sites, cfg["site"])}
    threads = args.threads or int(cfg["measure"]["threads"])
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    model = torch.nn.Sequential(
        torch.nn.Linear(24, 256), torch.nn.LeakyReLU(), torch.nn.Linear(256, 256), torch.nn.LeakyReLU(),
        torch.nn.Linear(256, 12), torch.nn.LeakyReLU(), torch.nn.Linear(12, 256), torch.nn.LeakyReLU(),
        torch.nn.Linear(256, 256), torch.nn.LeakyReLU(), torch.nn.Linear(256, 24),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(64 * args.batch, 24)

    def step(i: int) -> None:
        xb = x[(i * args.batch) % len(x) : (i * args.batch) % len(x) + args.batch]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(xb), xb)
        loss.backward()
        opt.step()

    def bare(n: int) -> float:
        t0 = time.perf_counter()
        for i in range(n):
            step(i)
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    ms = meters.build(settings, "cpu")
    ms.prepare_async()
    ms.ready()
    setup = time.perf_counter() - t0
    used = [m.name for m in ms.meters]

    def instrumented(n: int) -> float:
        # timed like the runner's measured window: the meters run around it (their start and stop
        # are outside wall_s, reported below as a per-window fixed cost), the clocks inside it
        lat = []
        ms.start("measured")
        t0 = time.perf_counter()
        for i in range(n):
            tb = time.perf_counter()
            step(i)
            lat.append(time.perf_counter() - tb)
        wall = time.perf_counter() - t0
        meters.summarise(ms.stop(), wall)
        return wall

    # fixed costs: one start+stop of all meters (per window), and the meters' own CPU use while a
    # window runs (their sampler/poller threads), measured over an idle window
    t0 = time.perf_counter()
    for _ in range(3):
        ms.start("measured")
        ms.stop()
    start_stop = (time.perf_counter() - t0) / 3
    c0, t0 = cpu_time(), time.perf_counter()
    time.sleep(args.idle_s)
    bare_cpu = (cpu_time() - c0) / (time.perf_counter() - t0)
    ms.start("idle")
    c0, t0 = cpu_time(), time.perf_counter()
    time.sleep(args.idle_s)
    meter_cpu = (cpu_time() - c0) / (time.perf_counter() - t0) - bare_cpu
    ms.stop()

    for _ in range(3):
        bare(20)  # warm-up
    t = min(bare(20) for _ in range(3))
    n = max(20, int(20 * args.round_s / t))
    print(f"meters: {', '.join(used) or 'none'} (absent: {', '.join(a['meter'] for a in ms.absent) or 'none'})")
    print(f"meter set-up (once per job, overlapped with the job's set-up in the runner): {setup:.2f} s")
    print(f"meters start+stop (once per window): {1e3 * start_stop:.1f} ms")
    print(f"meters' own CPU use while measuring: {1e3 * meter_cpu:.2f} ms per s = {100 * meter_cpu / threads:.2f} % of {threads} thread(s)")
    print(f"{threads} torch thread(s), batch {args.batch}, {n} steps per round, {args.pairs} pairs")
    ratios = []
    for p in range(args.pairs):
        # alternate which one goes first, so that a drift in machine load does not favour one side
        if p % 2 == 0:
            tb, ti = bare(n), instrumented(n)
        else:
            ti, tb = instrumented(n), bare(n)
        ratios.append(tb / ti)  # throughput ratio instrumented/bare = time bare / time instrumented
        print(f"  pair {p + 1:2d}: bare {n / tb:8.1f} steps/s, instrumented {n / ti:8.1f} steps/s, ratio {tb / ti:.4f}")
    ms.close()
    med = statistics.median(ratios)
    print(f"spread of pair ratios: min {min(ratios):.4f}, max {max(ratios):.4f}")
    print(f"throughput ratio instrumented/bare (median of {len(ratios)} pairs): {med:.4f} ({100 * (1 - med):+.2f} % loss)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
