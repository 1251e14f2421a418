#!/usr/bin/env python3
"""What listing results/runs/ costs every Snakemake start (the manifest of the run files the grid
does not make: joulegrid.grid.run_manifest, rule aggregate's `runs` stamp; docs/sites.md, "Merging sites").

Writes, in a temp dir, N empty files in the pipeline's layout for this site's grid (known: never
stat-ed) and N for another site (copied in: listed with size and time), then times run_manifest
(median of --rounds, wall and CPU time of this process).

    python bench/bench_manifest.py [--files 10000 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import host

from joulegrid.grid import run_manifest


def layout(site: str, n: int) -> list[str]:
    """n run file paths (relative to runs/) of one site: 10 batch sizes x 2 phases x n/20 repeats."""
    out = []
    for i in range(n):
        phase = ("train", "infer")[i % 2]
        bs = 2 ** (4 + (i // 2) % 10)
        out.append(f"{site}/baler_ae/{phase}/cpu/fp32/bs{bs}/r{i // 20}-0123456789abcdef.parquet")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, nargs="+", default=[10000, 20000], help="run files per site")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"host: {host()}")
    for n in args.files:
        with tempfile.TemporaryDirectory() as tmp:
            runs = Path(tmp) / "runs"
            mine, theirs = layout("local", n), layout("slurm", n)
            for rel in mine + theirs:
                p = runs / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
            walls, cpus = [], []
            for _ in range(args.rounds):
                w0, c0 = time.perf_counter(), time.process_time()
                text = run_manifest(runs, mine)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            assert text.count("\n") == n
            print(
                f"{n:>6} files of this grid + {n:>6} copied: run_manifest {statistics.median(walls):.3f} s wall, "
                f"{statistics.median(cpus):.3f} s CPU (median of {args.rounds})"
            )


if __name__ == "__main__":
    main()
