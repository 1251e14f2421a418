# joulegrid: measure what ML scientific software costs, across workload x device x precision x
# batch size x repeat, on the local machine, Slurm or HTCondor.
#
#   snakemake                           # the default grid (config/config.yaml) -> results/report/index.html
#   snakemake -n                        # dry run: what would be measured
#   snakemake --profile slurm           # the same grid on a Slurm cluster (see docs/sites.md)
#
# The rules are thin: all logic lives in the joulegrid package (src/joulegrid).
import os

from snakemake.utils import min_version

min_version("9.0")


# The default grid, found next to this Snakefile also when run with --directory elsewhere;
# --configfile / --config / a site profile's config: entries are merged over it.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/analyse.smk"


rule all:
    default_target: True
    input:
        # the cells themselves too: with rerun-triggers [mtime] (profiles/default) an existing
        # summary would otherwise hide cells added later (a bigger grid, another site's runs)
        CELL_PATHS,
        REPORT_INDEX,
        # and every file of the summary and the report: Snakemake remakes a missing file only for a job
        # that needs it, so a deleted summary (the report still there) would stay missing
        rules.aggregate.output,
        rules.report.output,


# Every cell of the grid and nothing else: `snakemake cells --batch cells=i/n` measures the i-th of
# n parts of a big grid with only that part's DAG computed (rule all's batches would not: its report
# input, sorted first, needs every cell); `snakemake` then aggregates and reports
# (docs/benchmarks.md, "At campaign scale").
rule cells:
    input:
        CELL_PATHS,
