"""Many tiny cells with and without grouping (`--group-components cells=G`), side by side.

    python bench/bench_grouping.py                       # 10 cells, groups of 5, local executor, 2 rounds
    python bench/bench_grouping.py --cells 200           # the issue's 200 cells
    python bench/bench_grouping.py --executor slurm      # through the local Slurm test cluster
    python bench/bench_grouping.py --cells 200 --group 20 --rounds 1 --grouped-first   # grouped side first

Each round runs the same grid of N tiny training cells (baler_ae, 640 rows, 1 epoch, no warm-up,
no idle baseline, 1 thread) twice in fresh result folders, once plain and once with G cells per
group, alternating which side goes first; `--until measure`, so only the cells are timed (the data
set is prepared once beforehand and shared). Prints per-round wall and CPU times and, last, the
median ratio grouped/plain (< 1: grouping is faster). Each side also prints how much of its wall time
the cells' own runner.run() took (from the rows), which tells a slower host from Snakemake overhead.

On the local executor Snakemake ignores groups (snakemake/rules.py: Rule.group is None unless the
executor is not local or it is a dry run; its log then shows no "Group job" block): both sides run
the same jobs one at a time, and the ratio measures only run-to-run noise. With --executor slurm the
difference is real: N sbatch submissions (and N queue waits, N job start-ups) vs ceil(N/G).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B

SNAKEMAKE = str(B.BIN / "snakemake")
SLURM_FAST = ["--slurm-init-seconds-before-status-checks", "1", "--latency-wait", "5"]


def grid(cells: int) -> dict:
    return {
        "grid": {
            "workloads": ["baler_ae"],
            "phases": ["train"],
            "devices": ["cpu"],
            "precisions": ["fp32"],
            "batch_sizes": [512],
            "repeats": cells,
        },
        "workloads": {"baler_ae": {"rows": 640, "epochs": 1}},
        "measure": {"threads": 1, "warmup_batches": 0, "idle_baseline_s": 0, "min_window_s": 0, "hotspots": "never"},
        "job": {"mem_mb": 1000, "runtime_min": 10},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=10)
    ap.add_argument("--group", type=int, default=5, help="cells per group job (group-components cells=G)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--executor", choices=("local", "slurm"), default="local")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (its path is printed)")
    ap.add_argument(
        "--grouped-first", action="store_true", help="odd rounds run the grouped side first (default: plain first)"
    )
    a = ap.parse_args()

    if a.executor == "slurm":
        st = subprocess.run([str(B.REPO / "tests" / "clusters" / "status-slurm.sh")], capture_output=True, text=True)
        if st.returncode != 0:
            raise SystemExit(f"--executor slurm: {st.stdout.strip()} (start it with tests/clusters/start-slurm.sh)")
        how = ["--profile", str(B.REPO / "profiles" / "slurm"), *SLURM_FAST]
    else:
        how = ["--cores", a.cores]

    base = Path(tempfile.mkdtemp(prefix="jg-bench-grouping-"))
    cfg = base / "grid.yaml"
    cfg.write_text(yaml.safe_dump(grid(a.cells)))
    print(f"host: {B.host()}")
    print(
        f"{a.cells} cells, executor {a.executor}, grouped side: --group-components cells={a.group}, {a.rounds} rounds"
    )

    # the data set once, shared by every round (resources/ is outside results/)
    B.timed(
        [
            SNAKEMAKE,
            "-s",
            str(B.REPO / "Snakefile"),
            "--directory",
            str(base),
            "--configfile",
            str(cfg),
            "--cores",
            a.cores,
            "--until",
            "prepare_dataset",
        ],
        log=base / "prepare.log",
    )

    def side(grouped: bool, r: int) -> tuple[float, float]:
        shutil.rmtree(base / "results", ignore_errors=True)
        shutil.rmtree(base / ".snakemake", ignore_errors=True)
        extra = ["--group-components", f"cells={a.group}"] if grouped else []
        log = base / f"round{r}-{'grouped' if grouped else 'plain'}.log"
        t = B.timed(
            [
                SNAKEMAKE,
                "-s",
                str(B.REPO / "Snakefile"),
                "--directory",
                str(base),
                "--configfile",
                str(cfg),
                *how,
                "--until",
                "measure",
                *extra,
            ],
            log=log,
        )
        rows = list((base / "results" / "runs").rglob("*.parquet"))
        if len(rows) != a.cells:
            raise SystemExit(f"expected {a.cells} run files, found {len(rows)} (log: {log})")
        text = log.read_text()
        if grouped:  # Snakemake logs a "Group job cells" block for each group job it runs
            n = text.count("Group job cells")
            print(
                f"  round {r}: {n} group jobs"
                if n
                else f"  round {r}: no group job in Snakemake's log (groups inactive)"
            )
        # the cells' own time (runner.run(), from each row): tells a slower host from Snakemake overhead
        import pyarrow.parquet as pq

        own = sum(
            (x["finished_at"] - x["started_at"]).total_seconds()
            for f in rows
            for x in pq.read_table(f, columns=["started_at", "finished_at"]).to_pylist()
        )
        print(
            f"  round {r} {'grouped' if grouped else 'plain'}: {t[0]:.1f} s wall, of which the cells' runner.run() "
            f"{own:.1f} s",
            flush=True,
        )
        return t

    pairs = []
    print(
        f"{'round':>5} {'plain wall':>11} {'plain CPU':>10} {'grouped wall':>13} {'grouped CPU':>12} {'ratio wall':>11}"
    )
    for r in range(1, a.rounds + 1):
        if bool(r % 2) != a.grouped_first:
            p = side(False, r)
            g = side(True, r)
        else:
            g = side(True, r)
            p = side(False, r)
        pairs.append((p, g))
        print(f"{r:>5} {p[0]:>10.1f}s {p[1]:>9.1f}s {g[0]:>12.1f}s {g[1]:>11.1f}s {g[0] / p[0]:>11.3f}")
    if a.keep:
        print(f"working folder: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    print(f"median CPU ratio grouped/plain: {B.median_ratio([(p[1], g[1]) for p, g in pairs]):.3f}")
    print(
        f"median wall ratio grouped/plain ({a.cells} cells, {a.executor}): "
        f"{B.median_ratio([(p[0], g[0]) for p, g in pairs]):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
