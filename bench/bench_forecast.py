"""The forecast's measured error (docs/benchmarks.md, "The forecast's measured error"): the forecast of
a grid made from earlier results, against what the same cells then took.

    python bench/bench_forecast.py                                   # a small grid shaped like the default one, twice
    python bench/bench_forecast.py --earlier R1 --later R2 --config seed=7   # two existing results folders

Without arguments: in a temporary folder, runs a small grid shaped like the default one (train and
inference, fp32 and int8, an idle baseline, stretched inference windows, profiling of repeat 0), then
forecasts the same grid under seed 7 from its results and runs it. With --earlier/--later: the forecast
is made from R1 (its summary, as `joulegrid plan` after that run) for the configuration given by
--configfile/--config (its results folder taken as R1), and compared with the run files of the same
cells in R2 (e.g. a copy of results/ after `make run`, then `snakemake --config seed=7` into R2).

Prints, per part of the job (plan.PARTS), the forecast seconds beside the seconds the rows report, and
the totals: core-hours Σ job_wall_s × threads, kWh Σ job_energy_j (the parts the rows cover), and the
whole jobs' core-hours Σ (job_wall_s + job_excluded_s) × threads, each with the relative error.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B

SMALL = {
    "grid": {"workloads": ["baler_ae"], "phases": ["train", "infer"], "devices": ["cpu"],
             "precisions": ["fp32", "int8"], "batch_sizes": [256], "repeats": 1},
    "workloads": {"baler_ae": {"rows": 6000, "epochs": 2}},
    "measure": {"threads": 1, "warmup_batches": 3, "idle_baseline_s": 1, "min_window_s": 2, "hotspots": "first_repeat",
                "hotspot_batches": 5, "meters": ["estimate"]},
}  # fmt: skip


def compare(earlier: str, later: str, configfiles: list[str], config_args: list[str]) -> dict[str, float]:
    import polars as pl

    from joulegrid import config as C
    from joulegrid import grid as G
    from joulegrid.analysis import plan as P

    cfg, sites = C.load(configfiles, [*config_args, f"results={earlier}"])
    from joulegrid import spec as SP

    sb = SP.SpecBuilder(cfg, sites)
    grid = G.expand(cfg, sb.hashes(), sb.cell_hashes())
    fc = P.forecast(cfg, grid, sites, P.load_earlier(earlier))
    t = fc.totals()
    rows = pl.concat([pl.read_parquet(c.path(later)) for c in grid.cells], how="diagonal_relaxed")
    threads = int(cfg["measure"]["threads"])
    actual_parts = {
        "startup": rows["job_untracked_s"].sum(),
        "setup": (rows["setup_s"] + rows["meters_ready_s"].fill_null(0)).sum(),
        "warmup": rows["warmup_s"].sum(),
        "idle": rows["idle_window_s"].fill_null(0).sum(),
        "window": rows["wall_s"].sum(),
        "other": (
            rows["job_wall_s"]
            - rows["job_untracked_s"]
            - rows["setup_s"]
            - rows["meters_ready_s"].fill_null(0)
            - rows["warmup_s"]
            - rows["wall_s"]
        ).sum(),  # fmt: skip
        "profile": rows["profile_s"].fill_null(0).sum(),
    }
    fparts = fc.parts()
    print(f"{len(fc.cells)} cells forecast from {fc.measured_cells} measured cell(s) (rows of {fc.pool}); "
          f"{rows.height} measured after; host {B.host()}")  # fmt: skip
    print(f"{'part':<9}{'forecast s':>12}{'measured s':>12}{'ratio':>8}")
    for k in P.PARTS:
        ratio = fparts[k] / actual_parts[k] if actual_parts[k] else float("nan")
        print(f"{k:<9}{fparts[k]:>12.1f}{actual_parts[k]:>12.1f}{ratio:>8.2f}")
    actual = {
        "job_core_hours": rows["job_wall_s"].sum() * threads / 3600,
        "job_kwh": rows["job_energy_j"].sum() / 3.6e6,
        "core_hours": (rows["job_wall_s"] + rows["job_excluded_s"]).sum() * threads / 3600,
    }
    errors = {}
    for k, v in actual.items():
        errors[k] = t[k] / v - 1
        print(f"{k:<15} forecast {t[k]:.4g}  measured {v:.4g}  error {errors[k]:+.0%}")
    print(
        f"the measured jobs' mean neighbour_cpu_fraction: {rows['neighbour_cpu_fraction'].mean():.2f} (others' share "
        "of the node's busy CPU time: a busier host than during the earlier runs makes every part longer)"
    )
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--earlier", help="results folder the forecast is made from")
    ap.add_argument("--later", help="results folder holding the run files of the forecast cells")
    ap.add_argument("--configfile", nargs="*", default=[])
    ap.add_argument("--config", nargs="*", default=[])
    a = ap.parse_args()
    if a.earlier or a.later:
        if not (a.earlier and a.later):
            ap.error("give both --earlier and --later")
        compare(a.earlier, a.later, a.configfile, a.config)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-forecast-") as tmp:
        work = Path(tmp)
        (work / "config.yaml").write_text(yaml.safe_dump(SMALL))
        snake = [str(B.BIN / "snakemake"), "-s", str(B.REPO / "Snakefile"), "--directory", str(work), "--cores", "2",
                 "--configfile", str(work / "config.yaml")]  # fmt: skip
        subprocess.run(snake, check=True, capture_output=True, env=B.env())
        earlier = work / "earlier"
        subprocess.run(["cp", "-a", str(work / "results"), str(earlier)], check=True)
        subprocess.run([*snake, "--config", "seed=7"], check=True, capture_output=True, env=B.env())
        compare(str(earlier), str(work / "results"), [str(work / "config.yaml")], ["seed=7"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
