#!/usr/bin/env python3
"""Overhead of joulegrid's instrumentation on a CPU-bound workload: bare vs fully instrumented.

The same training loop (an MLP autoencoder step on random data, one torch thread by default)
runs in rounds of a fixed number of steps, alternating bare / instrumented so that both see the
same machine state. "Instrumented" is what the runner wraps around a measured window: the
default meters of config/config.yaml (measure.meters: auto -> every meter that works here) started
and stopped around the round, the job's usage tracker running all along (node and job CPU time and
memory every measure.attribution_interval_s, read back to back with the meters at each window edge),
and per-batch latency clocks (the device sync is a no-op on CPU); the attribution of the windows
(MeterSet.finish) runs once, at the end, as in the runner. The meters' one-off set-up (codecarbon's
hardware detection, zeus' import) is done once before the rounds, as the runner overlaps it with the
job's set-up; it is reported separately as a per-job fixed cost.

Prints per-pair throughput ratios and, LAST, the median ratio instrumented/bare (goal >= 0.99)
twice: by wall clock (what a user sees) and by process CPU time per step (the workload's and the
meters' threads; robust to neighbours' load on a shared host, which can make single rounds up to
100x slower).

    python bench/bench_overhead.py [--pairs 40] [--round-s 0.5] [--threads 1]

One torch thread by default: with as many torch threads as cores on a host shared with other
jobs, OpenMP's spin-waiting turns every neighbour's burst into a 10-100x slowdown of a round and
inflates the CPU time too, which hides a 1 % effect completely. With one thread, the CPU-time
ratio still charges the meters' own threads in full, wherever they run.

Also printed: the meters' own CPU use while measuring (their sampling/polling threads, over an
idle window) as a share of the workload's threads -- an upper bound of their throughput cost that
does not depend on the neighbours -- and the fixed costs (set-up per job, start+stop per window).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def cpu_time() -> float:
    return time.process_time()  # all threads of the process, ns resolution (os.times ticks at 10 ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40, help="bare/instrumented pairs (alternating)")
    ap.add_argument("--round-s", type=float, default=0.5, help="approximate length of one round")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see the module doc)")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--max-s", type=float, default=240.0, help="time budget of the pairs (at least 4 pairs run)")
    ap.add_argument("--idle-s", type=float, default=5.0, help="idle window for the meters' own CPU use")
    args = ap.parse_args()

    import logging

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    import torch

    from joulegrid import config as CFG
    from joulegrid import meters
    from joulegrid.cell_settings import Measure
    from joulegrid.sites import SiteFacts, site_facts

    cfg, sites = CFG.load()  # config/config.yaml with schema defaults: the default meters
    measure, site = Measure.from_dict(cfg["measure"]), SiteFacts.from_dict(site_facts(sites, cfg["site"]))
    threads = args.threads
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    model = torch.nn.Sequential(
        torch.nn.Linear(24, 256),
        torch.nn.LeakyReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.LeakyReLU(),
        torch.nn.Linear(256, 12),
        torch.nn.LeakyReLU(),
        torch.nn.Linear(12, 256),
        torch.nn.LeakyReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.LeakyReLU(),
        torch.nn.Linear(256, 24),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(64 * args.batch, 24)

    def step(i: int) -> None:
        xb = x[(i * args.batch) % len(x) : (i * args.batch) % len(x) + args.batch]
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(xb), xb)
        loss.backward()
        opt.step()

    def bare(n: int) -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            step(i)
        return time.perf_counter() - t0, time.process_time() - c0

    t0 = time.perf_counter()
    ms = meters.build(measure, site, "cpu")
    ms.prepare_async()
    ms.ready()
    setup = time.perf_counter() - t0
    used = [m.name for m in ms.meters]

    def instrumented(n: int) -> float:
        # timed like the runner's measured window: the meters run around it (their start and stop
        # are outside wall_s, reported below as a per-window fixed cost), the clocks inside it
        lat = []
        ms.start("measured")
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(n):
            tb = time.perf_counter()
            step(i)
            lat.append(time.perf_counter() - tb)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ms.stop()
        return wall, cpu

    # fixed costs: one start+stop of all meters (per window), and the meters' own CPU use while a
    # window runs (their sampler/poller threads and the usage tracker's), measured over an idle window
    c0, t0 = cpu_time(), time.perf_counter()
    time.sleep(args.idle_s)
    bare_cpu = (cpu_time() - c0) / (time.perf_counter() - t0)
    ms.start_job()  # the usage tracker, from here to finish(), as in the runner
    t0 = time.perf_counter()
    for _ in range(3):
        ms.start("measured")
        ms.stop()
    start_stop = (time.perf_counter() - t0) / 3
    ms.start("idle")
    c0, t0 = cpu_time(), time.perf_counter()
    time.sleep(args.idle_s)
    meter_cpu = (cpu_time() - c0) / (time.perf_counter() - t0) - bare_cpu
    ms.stop()

    for _ in range(3):
        bare(20)  # warm-up
    t = min(bare(20)[0] for _ in range(3))
    n = max(20, int(20 * args.round_s / t))
    print(f"meters: {', '.join(used) or 'none'} (absent: {', '.join(a['meter'] for a in ms.absent) or 'none'})")
    print(f"meter set-up (once per job, overlapped with the job's set-up in the runner): {setup:.2f} s")
    print(f"meters start+stop (once per window): {1e3 * start_stop:.1f} ms")
    print(
        f"meters' own CPU use while measuring: {1e3 * meter_cpu:.2f} ms per s = {100 * meter_cpu / threads:.2f} % of "
        f"{threads} thread(s)"
    )
    print(f"{threads} torch thread(s), batch {args.batch}, {n} steps per round, {args.pairs} pairs")
    pairs = []
    t_start = time.perf_counter()
    for p in range(args.pairs):
        if p >= 4 and time.perf_counter() - t_start > args.max_s:
            print(f"  time budget --max-s {args.max_s:g} s spent: stopping after {p} pairs")
            break
        # alternate which one goes first, so that a drift in machine load does not favour one side
        if p % 2 == 0:
            b, i = bare(n), instrumented(n)
        else:
            i, b = instrumented(n), bare(n)
        (tb, cb), (ti, ci) = b, i
        pairs.append((tb, ti, cb, ci))  # throughput ratio instrumented/bare = time bare / time instrumented
        print(
            f"  pair {p + 1:2d}: bare {n / tb:8.1f} steps/s, instrumented {n / ti:8.1f} steps/s, "
            f"wall ratio {tb / ti:.4f}, CPU-time ratio {cb / ci:.4f}"
        )
    t0 = time.perf_counter()
    ms.finish(None)
    print(
        f"attribution of {len(ms.windows)} windows and the whole job (once per job): "
        f"{1e3 * (time.perf_counter() - t0):.1f} ms"
    )
    ms.close()
    ratios = [tb / ti for tb, ti, _, _ in pairs]
    cratios = [cb / ci for _, _, cb, ci in pairs]

    # Neighbours' load on a shared host makes single rounds up to ~100x slower; the two rounds of a
    # pair run back to back in alternating order, so the median of the pair ratios is the robust
    # estimate (selecting "quiet" pairs on either side would bias it). Process CPU time per step
    # (all threads: the workload's and the meters' samplers) does not count the time the process
    # waits for a CPU, so it is far less sensitive to neighbours; with one torch thread it has no
    # OpenMP spin-waiting either and is the cleanest figure on a shared host.
    def stats(r: list[float]) -> str:
        q = statistics.quantiles(r, n=4)
        return (
            f"median {statistics.median(r):.4f} (interquartile {q[0]:.4f}-{q[2]:.4f}, min {min(r):.4f}, max "
            f"{max(r):.4f})"
        )

    print(f"wall-clock ratio over {len(ratios)} pairs: {stats(ratios)}")
    print(f"CPU-time ratio over {len(cratios)} pairs: {stats(cratios)}")
    med, cmed = statistics.median(ratios), statistics.median(cratios)
    print(
        f"throughput ratio instrumented/bare (median of {len(ratios)} pairs): wall {med:.4f} ({100 * (1 - med):+.2f} % "
        "loss), "
        f"CPU time {cmed:.4f} ({100 * (1 - cmed):+.2f} % loss)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
