#!/usr/bin/env python3
"""What two start-up savings are worth, side by side in one run: each pair of commands is the same work with
and without the saving, in alternating order (benchlib.alternate), each a fresh interpreter.

1. A job's row (run-cell, run-quadruple, record-failure; also aggregate, report and compare): one result row
   into an Arrow table and a Parquet file, as a cell writes it, with pyarrow's first conversion importing pandas
   (what pyarrow does by itself) against `joulegrid.io.pyarrow_without_pandas()` first (cli._TABLE_COMMANDS).
2. A report of single runs: the analysis modules a report imports, plus the 95 % t factors of single runs, with
   `import scipy.stats` (what the module-level import cost before) against scipy.stats imported at first use
   (joulegrid.analysis.stats.sps: single runs never use it).

Prints each round's wall and CPU seconds and the median ratios (saving / without it); the figures are in
docs/benchmarks.md, "Start-up of jobs and reports".

    python bench/bench_process_start.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import alternate, host, report_medians, report_round

ROW = (
    "from joulegrid import schema\n"
    "from joulegrid.io import write_table, pyarrow_without_pandas\n"
    "{prelude}"
    "write_table(schema.to_table([{{'run_id': 'x', 'status': 'ok', 'energy_j': 1.0}}]), {out!r})\n"
)
REPORT = "{prelude}from joulegrid.analysis import report, stats\nassert str(stats.t95_of_n([1, 1])) == '[nan nan]'\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    a = ap.parse_args()
    py = sys.executable
    print(f"host: {host()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "r0.parquet")
        pairs = {
            "row": [
                ("row_with_pandas", [py, "-c", ROW.format(prelude="", out=out)]),
                ("row", [py, "-c", ROW.format(prelude="pyarrow_without_pandas()\n", out=out)]),
            ],
            "report-imports": [
                ("report_scipy_stats", [py, "-c", REPORT.format(prelude="import scipy.stats\n")]),
                ("report_imports", [py, "-c", REPORT.format(prelude="")]),
            ],
        }
        for label, sides in pairs.items():
            base, other = sides[0][0], sides[1][0]
            print(f"\n{label}: {other} / {base}")
            alternate(0, sides, tmp)  # warm the file cache; not counted
            ratios = [report_round(i, base, other, alternate(i, sides, tmp)) for i in range(a.rounds)]
            report_medians(f"{other} / {base}", ratios, "lower is better")


if __name__ == "__main__":
    main()
