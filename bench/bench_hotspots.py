#!/usr/bin/env python3
"""Cost of the hotspot profiling in `make run`: the default grid end to end (config/config.yaml, every cell,
the report) with measure.hotspots first_repeat (the default) against never, side by side. Goal: <= 1.10x
wall (issue 25: profiling stays outside the measured window and `make run` grows by at most 10 %).

Each round runs `snakemake --cores 2` twice into fresh work folders (alternating which goes first), with the
prepared datasets of this checkout's resources/ shared by both; it prints each side's wall and CPU time, the
sum of the cells' profile_s (the profiling passes, from the summary) and, LAST, the median ratio
first_repeat / never by wall clock. The measured figures themselves do not change: profiling runs after the
measured window and is left out of job_wall_s and job_energy_j.

    python bench/bench_hotspots.py [--rounds 2] [--cores 2] [--keep] [--override grid.yaml]

--override: a YAML file merged over both sides' config (e.g. a part of the default grid,
``grid: {workloads: [baler_ae], precisions: [fp32, int8], batch_sizes: [1024]}``, on a busy host).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import BIN, REPO, host, timed

SIDES = ("never", "first_repeat")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work folders (their paths are printed)")
    ap.add_argument("--override", type=Path, help="YAML merged over the default config on both sides")
    a = ap.parse_args()
    import polars as pl

    tmp = Path(tempfile.mkdtemp(prefix="bench-hotspots-"))
    what = f"config/config.yaml + {a.override}" if a.override else "the default grid (config/config.yaml)"
    print(f"host: {host()}; {what}, snakemake --cores {a.cores}", flush=True)
    ratios = []
    for i in range(a.rounds):
        res = {}
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            work = tmp / f"r{i}-{side}"
            work.mkdir()
            cfg = work / "bench.yaml"
            over = yaml.safe_load(a.override.read_text()) if a.override else {}
            side_cfg = {**over, "resources_dir": str(REPO / "resources")}
            side_cfg["measure"] = {**(over.get("measure") or {}), "hotspots": side}
            cfg.write_text(yaml.safe_dump(side_cfg))
            cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(work)]
            cmd += ["--configfile", str(cfg), "--cores", str(a.cores)]
            wall, cpu = timed(cmd, work / "snakemake.log")
            s = pl.read_parquet(work / "results" / "summary.parquet")
            prof = float(s["profile_s"].fill_null(0).sum())
            res[side] = (wall, cpu)
            print(
                f"  round {i + 1}: {side:12s} {wall:7.1f} s wall {cpu:7.1f} s CPU, {s.height} cells "
                f"({(s['status'] == 'ok').sum()} ok), profiling passes {prof:6.1f} s in "
                f"{s['profile_s'].is_not_null().sum()} cells",
                flush=True,
            )
        ratios.append((res["first_repeat"][0] / res["never"][0], res["first_repeat"][1] / res["never"][1]))
        print(f"  round {i + 1}: ratio first_repeat / never: wall {ratios[-1][0]:.3f} CPU {ratios[-1][1]:.3f}")
    if a.keep:
        print(f"work folders: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"median ratio first_repeat / never by CPU time: {statistics.median(c for _, c in ratios):.3f}")
    print(
        f"median ratio first_repeat / never by wall clock: {statistics.median(w for w, _ in ratios):.3f} (goal <= 1.10)"
    )


if __name__ == "__main__":
    main()
