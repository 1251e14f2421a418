"""Analysis: aggregate run files, derive metrics, chart them, write the report, plan/forecast grids.

CHART_NAMES is here (not in charts.py) so that the Snakemake rules can list the report's PNG
outputs without importing altair at parse time.
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
