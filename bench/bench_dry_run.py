#!/usr/bin/env python3
"""Dry run of a big grid: `snakemake -n` of joulegrid's Snakefile vs plain Snakemake (goal <= 1.5x).

Writes, in a temp dir, (a) a joulegrid config whose grid has --cells cells (baler_ae, train +
infer, cpu, fp32, 10 batch sizes, cells/20 repeats) and (b) the floor joulegrid cannot beat: a
trivial workflow (one wildcard rule that would `touch` its output, and a rule all) with the SAME
total number of jobs as joulegrid's DAG (cells + prepare_dataset, train_reference, aggregate,
report, all). Both are dry-run with the same Snakemake, alternating which goes first, for
--rounds rounds, their output (the listing of every job, as a user sees it) into a file.

Prints per round the wall and CPU seconds (the snakemake process and its children) of both, then
the median ratios, the wall-clock ratio LAST. On a host shared with other jobs the CPU-time ratio
is the steadier figure. Note: with the Slurm client installed but no controller reachable,
snakemake-executor-plugin-slurm runs `scontrol show config` at import and waits ~9 s for it (both
sides pay it: it is printed below as the start-up cost of an empty `snakemake -n`).

    python bench/bench_dry_run.py [--cells 10000] [--rounds 3] [--quiet]   # --quiet: `snakemake -n --quiet rules`
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import BIN, REPO, alternate, host, report_medians, report_round, timed  # noqa: E402

FLOOR = """\
rule all:
    input: expand("out/c{{i}}.txt", i=range({n}))

rule cell:
    output: "out/c{{i}}.txt"
    shell: "touch {{output}}"
"""

EMPTY = """\
rule all:
    input: []
"""


def total_jobs(log: Path) -> int:
    m = re.search(r"^total\s+(\d+)\s*$", log.read_text(), re.M)
    if not m:
        raise SystemExit(f"no job count in {log}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=10_000, help="grid cells (a multiple of 20)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quiet", action="store_true", help="pass --quiet rules: the job stats table, no listing of every job")
    args = ap.parse_args()
    if args.cells % 20:
        raise SystemExit("--cells must be a multiple of 20 (2 phases x 10 batch sizes x repeats)")
    snakemake = str(BIN / "snakemake")
    extra = ["--quiet", "rules"] if args.quiet else []
    with tempfile.TemporaryDirectory(prefix="jg-bench-dry-") as tmp:
        tmp = Path(tmp)
        cfg = tmp / "grid.yaml"
        cfg.write_text(yaml.safe_dump({"grid": {
            "workloads": ["baler_ae"], "phases": ["train", "infer"], "devices": ["cpu"], "precisions": ["fp32"],
            "variants": ["baseline"], "batch_sizes": [16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096],
            "repeats": args.cells // 20}}))  # fmt: skip
        jg_cmd = [snakemake, "-s", str(REPO / "Snakefile"), "--directory", str(tmp / "jg"), "--configfile", str(cfg),
                  "-n", "--cores", "2", *extra]  # fmt: skip
        # the job count of joulegrid's DAG (the job stats table; --quiet rules: without the listing)
        timed(jg_cmd[: len(jg_cmd) - len(extra)] + ["--quiet", "rules"], tmp / "count.log")
        n_jobs = total_jobs(tmp / "count.log")
        (tmp / "floor").mkdir()
        (tmp / "floor" / "Snakefile").write_text(FLOOR.format(n=n_jobs - 1))
        floor_cmd = [snakemake, "-s", str(tmp / "floor" / "Snakefile"), "--directory", str(tmp / "floor"), "-n", "--cores", "2", *extra]
        (tmp / "empty").mkdir()
        (tmp / "empty" / "Snakefile").write_text(EMPTY)
        empty_wall, empty_cpu = timed([snakemake, "-s", str(tmp / "empty" / "Snakefile"), "--directory", str(tmp / "empty"), "-n", "--cores", "1"])

        print(f"host: {host()}")
        print(f"snakemake -n{' --quiet rules' if extra else ''}: joulegrid {args.cells} cells = {n_jobs} jobs vs a trivial workflow of {n_jobs} jobs")
        print(f"start-up of snakemake -n on an empty workflow (both sides pay it): {empty_wall:.1f} s wall, {empty_cpu:.1f} s CPU")
        ratios = []
        for r in range(args.rounds):
            res = alternate(r, [("floor", floor_cmd), ("joulegrid", jg_cmd)], tmp)
            assert total_jobs(tmp / "joulegrid.log") == total_jobs(tmp / "floor.log") == n_jobs
            ratios.append(report_round(r, "floor", "joulegrid", res, fmt="6.1f"))
        report_medians("joulegrid/floor", ratios, "goal <= 1.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
