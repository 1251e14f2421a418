"""What a local run spends on Snakemake's `run:` jobs as processes (profiles/default's `force-use-threads`).

Snakemake's local executor runs a rule with a `run:` block (joulegrid's `cell_inputs`: one per workload
configuration and phase) in a new Snakemake process, which imports Snakemake and parses the whole workflow
again (joulegrid's config, grid and hashes) to write one small JSON file; with `--force-use-threads` it runs
the block in a thread of the running Snakemake, as it always does under a cluster executor (Slurm, HTCondor:
snakemake.api forces threads there). Side by side, ROUNDS rounds (order alternating): the same small grid
(the tests' tiny grid with WORKLOADS workload configurations, train and infer: 2 x WORKLOADS cell_inputs jobs)
end to end with `snakemake --cores 2` in a fresh folder, once with `run:` jobs as processes and once as
threads. Wall clock of the run and CPU time of the run and everything it started.

    python bench/bench_run_jobs.py [ROUNDS] [WORKLOADS]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml
from benchlib import BIN, REPO, alternate, host, report_medians, report_round

sys.path.insert(0, str(REPO / "tests"))
from conftest import TINY, deep_merge  # the tests' tiny grid

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
WORKLOADS = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def grid() -> dict:
    names = ["baler_ae"] + [f"baler_{i}" for i in range(1, WORKLOADS)]
    extra = {n: {"class": "joulegrid.workloads.baler_ae:BalerAE", "rows": 3000 - 100 * i, "epochs": 1}
             for i, n in enumerate(names[1:], 1)}  # fmt: skip
    return deep_merge(TINY, {"grid": {"workloads": names}, "workloads": extra, "measure": {"meters": ["estimate"]}})


def main() -> None:
    print(f"host: {host()}")
    print(
        f"grid: the tests' tiny grid, {WORKLOADS} workload configurations x train/infer "
        f"({2 * WORKLOADS} cell_inputs jobs)"
    )
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)

        # profiles/default as it is, with force-use-threads set either way (the workflow profile of both sides)
        default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
        profiles = {}
        for side, threads in (("processes", False), ("threads", True)):
            profiles[side] = logs / f"profile-{side}"
            profiles[side].mkdir()
            (profiles[side] / "config.yaml").write_text(yaml.safe_dump({**default, "force-use-threads": threads}))

        def run(side: str):
            def cmd() -> list[str]:
                work = Path(tempfile.mkdtemp(dir=tmp))
                (work / "c.yaml").write_text(yaml.safe_dump(grid()))
                return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(work),
                        "--configfile", str(work / "c.yaml"), "--cores", "2",
                        "--workflow-profile", str(profiles[side])]  # fmt: skip

            return cmd

        for i in range(ROUNDS):
            res = alternate(i, [("processes", run("processes")), ("threads", run("threads"))], logs)
            ratios.append(report_round(i, "processes", "threads", res, fmt="6.1f"))
    report_medians("threads / processes", ratios, "goal: below 1")


if __name__ == "__main__":
    main()
