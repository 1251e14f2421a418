# Aggregate every run file (all sites under results/runs/) and render charts + the HTML report.
import os

from joulegrid.analysis import CHART_NAMES, REPORT_TABLES


localrules:
    all,
    cells,
    aggregate,
    report,


rule aggregate:
    """Every run file under runs/ (all sites, all configurations; `runs` stamps the ones this grid does
    not make, so that copied ones re-aggregate): the current configuration's rows in summary.parquet, the others' in summary.other-configs.parquet (never averaged together)."""
    input:
        CELL_PATHS,
        current=JOULEGRID.current_stamp,
        runs=JOULEGRID.runs_stamp,
        # the sites' intensity, PUE and intensity series (with their sha256): the summary's carbon columns
        # (joulegrid.carbon), so that a new or corrected series re-aggregates (and re-renders), measuring nothing
        carbon=JOULEGRID.carbon_stamp,
    output:
        summary=f"{RESULTS}/summary.parquet",
        problems=f"{RESULTS}/summary.problems.json",
        other=f"{RESULTS}/summary.other-configs.parquet",
    params:
        jg=JG,
        runs=lambda wildcards, output: os.path.join(os.path.dirname(output.summary), "runs"),
        strict="--strict" if config["strict"] else "",
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        JG_CONDA_ENV
    shell:
        "{params.jg} aggregate --runs {params.runs:q} --out {output.summary:q} --current {input.current:q} "
        "--other {output.other:q} --carbon {input.carbon:q} {params.strict} 2> {log:q}"


rule report:
    input:
        summary=rules.aggregate.output.summary,
        problems=rules.aggregate.output.problems,
        other=rules.aggregate.output.other,
        # report:, fleet:, the sites and the hardware table, in a stamp file that changes only with them,
        # so that changing any of them re-renders the report (joulegrid.snakefile, stamp)
        settings=JOULEGRID.report_stamp,
    output:
        index=report(REPORT_INDEX, caption="../report/index.rst", category="Report"),
        # the full rows behind the page's tables (REPORT_TABLES: cells.csv, fleet.csv, best.csv, ...)
        **{
            f"table_{name}": report(
                f"{RESULTS}/report/{name}.csv", caption=f"../report/table_{name}.rst", category="Report"
            )
            for name in REPORT_TABLES
        },
        **{
            name: report(f"{RESULTS}/report/{name}.png", caption=f"../report/{name}.rst", category="Charts")
            for name in CHART_NAMES
        },
    log:
        f"{RESULTS}/logs/report.log",
    params:
        jg=JG,
        out=lambda wildcards, output: os.path.dirname(output.index),
    conda:
        JG_CONDA_ENV
    shell:
        "{params.jg} report --summary {input.summary:q} --problems {input.problems:q} --other {input.other:q} "
        "--out {params.out:q} --settings-file {input.settings:q} 2> {log:q} && echo 'joulegrid: report at {output.index}'"
