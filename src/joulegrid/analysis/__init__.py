"""Analysis: aggregate run files, derive metrics, chart them, write the report, plan/forecast grids.

CHART_NAMES and REPORT_TABLES are here (not in charts.py and report.py) so that the Snakemake rules can list
the report's PNG and CSV outputs without importing altair or polars at parse time.
"""

CHART_NAMES = (
    "energy_per_sample",
    "quality_vs_energy",
    "time_to_target",
    "scheduler_overhead",
    "fleet_whatif",
    "sites",
    "when_to_run",
)

# The tables written next to the report as <name>.csv (every one, empty when there is nothing to list): the
# full rows behind the page's tables, linked from them.
REPORT_TABLES = (
    "cells",
    "fleet",
    "best",
    "precisions",
    "sites",
    "time_to_target",
)
