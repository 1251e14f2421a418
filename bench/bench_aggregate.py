"""Benchmark: aggregating N run files vs a raw polars read of the same files (target: ratio <= 2).

Generates N synthetic one-row run files (tests/synth.py: test fixtures, not measurements) in a temp
dir laid out like results/runs/, then times, alternating, `pl.read_parquet(files)` and
`joulegrid.analysis.aggregate.aggregate()` (file discovery, schema check, duplicate check, the
current configuration's runs apart from the others', writing summary.parquet, summary.other-configs.parquet
and the problems JSON). Prints the median of each and the ratio LAST.

    python bench/bench_aggregate.py [N=10000] [ROUNDS=5]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

import polars as pl  # noqa: E402 - after the sys.path set-up
import pyarrow.parquet as pq  # noqa: E402 - after the sys.path set-up
import synth  # noqa: E402 - after the sys.path set-up

from joulegrid import schema as S  # noqa: E402 - after the sys.path set-up
from joulegrid.analysis.aggregate import aggregate  # noqa: E402 - after the sys.path set-up
from joulegrid.grid import run_files  # noqa: E402 - after the sys.path set-up

HASH = "0123456789abcdef"  # one configuration: every run is current (aggregate --current, as the Snakefile passes it)
CURRENT = {f"w{i}": HASH for i in range(5)}


def generate(root: Path, n: int) -> list[str]:
    # 10 sites x 5 workloads x 2 phases x 2 precisions x 5 batch sizes = 1000 cells; repeats fill up to n
    cells = synth.grid_cells(
        workloads=[f"w{i}" for i in range(5)],
        precisions=("fp32", "bf16"),
        batch_sizes=(64, 128, 256, 512, 1024),
        repeats=max(1, -(-n // 100)),
    )
    cells = [c.__class__(f"site{k % 10}", *list(c.axes().values())[1:]) for k, c in enumerate(cells)][:n]
    template = synth.row(cells[0], config_hash=HASH)
    table = S.to_table([dict(template, **c.axes(), cell_id=c.id, run_id=f"{k:032x}") for k, c in enumerate(cells)])
    for k, c in enumerate(cells):
        # <root>/runs/<cell id>-<config hash>.parquet, as the pipeline names it
        p = Path(c.with_hash(HASH).path(str(root)))
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.slice(k, 1), p, compression="zstd")  # bench only: no fsync per file
    return run_files(root / "runs")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory(prefix="jg-bench-agg-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        files = generate(root, n)
        print(f"generated {len(files)} run files in {time.perf_counter() - t0:.1f} s")
        raw, agg = [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            df = pl.read_parquet(files)
            raw.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = aggregate(str(root / "runs"), str(root / f"summary{i}.parquet"), current=CURRENT)
            agg.append(time.perf_counter() - t0)
            assert res.n_rows == df.height == len(files) and not res.problems
        r, a = statistics.median(raw), statistics.median(agg)
        print(f"raw pl.read_parquet of {len(files)} files: median {r:.3f} s over {rounds} rounds")
        print(f"joulegrid aggregate of the same files:   median {a:.3f} s over {rounds} rounds")
        print(f"ratio aggregate/raw: {a / r:.2f}")


if __name__ == "__main__":
    main()
