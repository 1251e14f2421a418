#!/usr/bin/env python3
"""Dry run of a big grid: `snakemake -n` of joulegrid's Snakefile vs plain Snakemake (goal: the
10,000-cell dry run within 1.5x of the trivial workflow by CPU time), at several grid sizes in one run.

For each size in --cells, writes in a temp dir (a) a joulegrid config whose grid has that many
cells (baler_ae, train + infer, cpu, fp32, 10 batch sizes, cells/20 repeats) and (b) the floor
joulegrid cannot beat: a trivial workflow (one wildcard rule that would `touch` its output, and a
rule all) with the SAME total number of jobs as joulegrid's DAG (cells + prepare_dataset,
cell_inputs, train_reference, aggregate, report, all). Both are dry-run with the same Snakemake,
alternating which goes first, for --rounds rounds, their output (the listing of every job, as a
user sees it) into a file.

Prints per round the wall and CPU seconds (the snakemake process and its children) of both, the
median ratios per size, and at the end one line per size with both ratios (CPU time first: on a
host shared with other jobs it is the steadier figure). Note: with the Slurm client installed but
no controller reachable, snakemake-executor-plugin-slurm runs `scontrol show config` at import and
waits ~9 s for it (both sides pay it: it is printed below as the start-up cost of an empty
`snakemake -n`).

    python bench/bench_dry_run.py [--cells 2000 10000 20000] [--rounds 3] [--quiet]

(--quiet: `snakemake -n --quiet rules`)

--baseline REF also dry-runs the Snakefile, rules and package of git revision REF (e.g. main) in the same
rounds, so that a change to the rules is measured side by side with what it replaces.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import BIN, REPO, alternate, host, report_medians, report_round, timed

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

# --feature-floor: a workflow without joulegrid's code whose cell rule declares what rule measure
# keeps (the same paths and wildcards with their constraints, one ancient() input made by a rule per
# configuration and phase, a log, protected output, threads, a resource), doing nothing.
FEATURE_FLOOR = """\
import json
wildcard_constraints: **json.loads(open("constraints.json").read())
CELLS = open("cells.txt").read().split()

rule all:
    input: CELLS

rule phase_inputs:
    output: "results/.grid/{{chash}}/{{phase}}.inputs.json"
    shell: "touch {{output}}"

rule cell:
    input: ancient("results/.grid/{{chash}}/{{phase}}.inputs.json")
    output: protected("results/runs/{pattern}.parquet")
    log: "results/logs/runs/{pattern}.log"
    threads: 2
    resources: energy_meter=1
    shell: "touch {{output}} {{log}}"
"""


def total_jobs(log: Path) -> int:
    m = re.search(r"^total\s+(\d+)\s*$", log.read_text(), re.M)
    if not m:
        raise SystemExit(f"no job count in {log}")
    return int(m.group(1))


def feature_floor(tmp: Path, cfg: Path) -> list[str]:
    """The --feature-floor workflow in tmp/features for the cells of joulegrid config cfg; its command."""
    sys.path.insert(0, str(REPO / "src"))
    import json

    from joulegrid import config as C
    from joulegrid import grid as G
    from joulegrid import spec as SP

    config, sites = C.load([cfg])
    sb = SP.SpecBuilder(config, sites)
    d = tmp / "features"
    d.mkdir()
    (d / "cells.txt").write_text("\n".join(G.expand(config, sb.hashes()).paths("results")))
    (d / "constraints.json").write_text(json.dumps(G.WILDCARD_CONSTRAINTS))
    (d / "Snakefile").write_text(FEATURE_FLOOR.format(pattern=G.cell_pattern(config["site"])))
    return [
        str(BIN / "snakemake"),
        "-s",
        str(d / "Snakefile"),
        "--directory",
        str(d),
        "-n",
        "--cores",
        "2",
        "--resources",
        "energy_meter=1",
    ]


def baseline_checkout(ref: str, dest: Path) -> Path:
    """The Snakefile, rules, config, profiles and package of git revision ref, in dest; its Snakefile."""
    dest.mkdir(parents=True)
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "Snakefile", "workflow", "src", "config", "profiles"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest / "Snakefile"


def bench_size(
    cells: int, rounds: int, extra: list[str], tmp: Path, features: bool = False, baseline: Path | None = None
) -> list[tuple[float, float]]:
    """Side-by-side dry runs of a joulegrid grid of `cells` cells and the floor; the (wall, CPU) ratios per round."""
    snakemake = str(BIN / "snakemake")
    cfg = tmp / "grid.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "grid": {
                    "workloads": ["baler_ae"],
                    "phases": ["train", "infer"],
                    "devices": ["cpu"],
                    "precisions": ["fp32"],
                    "variants": ["baseline"],
                    "batch_sizes": [16, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096],
                    "repeats": cells // 20,
                }
            }
        )
    )
    jg_cmd = [
        snakemake,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp / "jg"),
        "--configfile",
        str(cfg),
        "-n",
        "--cores",
        "2",
        *extra,
    ]
    # the job count of joulegrid's DAG (the job stats table; --quiet rules: without the listing)
    timed(jg_cmd[: len(jg_cmd) - len(extra)] + ["--quiet", "rules"], tmp / "count.log")
    n_jobs = total_jobs(tmp / "count.log")
    (tmp / "floor").mkdir()
    (tmp / "floor" / "Snakefile").write_text(FLOOR.format(n=n_jobs - 1))
    floor_cmd = [
        snakemake,
        "-s",
        str(tmp / "floor" / "Snakefile"),
        "--directory",
        str(tmp / "floor"),
        "-n",
        "--cores",
        "2",
        *extra,
    ]
    print(
        f"snakemake -n{' --quiet rules' if extra else ''}: joulegrid {cells} cells = {n_jobs} jobs vs a trivial "
        f"workflow of {n_jobs} jobs",
        flush=True,
    )
    sides = [("floor", floor_cmd), ("joulegrid", jg_cmd)]
    if features:
        sides.append(("features", feature_floor(tmp, cfg) + extra))
    if baseline:
        sides.append(
            (
                "baseline",
                [
                    snakemake,
                    "-s",
                    str(baseline),
                    "--directory",
                    str(tmp / "base"),
                    "--configfile",
                    str(cfg),
                    "-n",
                    "--cores",
                    "2",
                    *extra,
                ],
            )
        )
    ratios, feat, base, vs = [], [], [], []
    for r in range(rounds):
        res = alternate(r, sides, tmp)
        assert total_jobs(tmp / "joulegrid.log") == total_jobs(tmp / "floor.log") == n_jobs
        ratios.append(report_round(r, "floor", "joulegrid", res, fmt="6.1f"))
        if features:
            feat.append(report_round(r, "features", "joulegrid", res, fmt="6.1f"))
        if baseline:
            assert total_jobs(tmp / "baseline.log") == n_jobs
            base.append(report_round(r, "floor", "baseline", res, fmt="6.1f"))
            vs.append(report_round(r, "baseline", "joulegrid", res, fmt="6.1f"))
    if features:
        report_medians(
            f"joulegrid/feature floor at {cells} cells", feat, "context: Snakemake's cost of what rule measure keeps"
        )
    if baseline:
        report_medians(f"baseline/floor at {cells} cells", base, "the revision given with --baseline")
        report_medians(f"joulegrid/baseline at {cells} cells", vs, "this checkout against --baseline")
    report_medians(f"joulegrid/floor at {cells} cells", ratios, "goal <= 1.5 at 10000 cells, by CPU time")
    return ratios


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--cells", type=int, nargs="+", default=[2_000, 10_000, 20_000], help="grid sizes (multiples of 20)"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--quiet", action="store_true", help="pass --quiet rules: the job stats table, no listing of every job"
    )
    ap.add_argument(
        "--feature-floor",
        action="store_true",
        help=(
            "also time a workflow without joulegrid's code whose rule has what rule measure keeps (input, log, "
            "wildcards, ...)"
        ),
    )
    ap.add_argument(
        "--baseline", metavar="REF", help="also time the Snakefile, rules and package of git revision REF (e.g. main)"
    )
    args = ap.parse_args()
    if any(c % 20 for c in args.cells):
        raise SystemExit("--cells must be multiples of 20 (2 phases x 10 batch sizes x repeats)")
    extra = ["--quiet", "rules"] if args.quiet else []
    print(f"host: {host()}")
    with tempfile.TemporaryDirectory(prefix="jg-bench-dry-") as tmp:
        tmp = Path(tmp)
        (tmp / "empty").mkdir()
        (tmp / "empty" / "Snakefile").write_text(EMPTY)
        empty_wall, empty_cpu = timed(
            [
                str(BIN / "snakemake"),
                "-s",
                str(tmp / "empty" / "Snakefile"),
                "--directory",
                str(tmp / "empty"),
                "-n",
                "--cores",
                "1",
            ]
        )
        print(
            f"start-up of snakemake -n on an empty workflow (both sides pay it): {empty_wall:.1f} s wall, "
            f"{empty_cpu:.1f} s CPU"
        )
        baseline = baseline_checkout(args.baseline, tmp / "baseline-src") if args.baseline else None
        results = {}
        for cells in args.cells:
            (tmp / str(cells)).mkdir()
            results[cells] = bench_size(cells, args.rounds, extra, tmp / str(cells), args.feature_floor, baseline)
    print("joulegrid/floor, median over rounds:")
    for cells, ratios in results.items():
        print(
            f"  {cells:>6} cells: CPU time {statistics.median(c for _, c in ratios):.2f}, wall clock "
            f"{statistics.median(w for w, _ in ratios):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
