# Aggregate every run file (all sites under results/runs/) and render charts + the HTML report.


localrules:
    all,
    aggregate,
    report,


rule aggregate:
    input:
        CELL_PATHS,
    output:
        summary=f"{RESULTS}/summary.parquet",
        problems=f"{RESULTS}/summary.problems.json",
    params:
        strict="--strict" if config["strict"] else "",
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        JG_CONDA_ENV
    shell:
        "{JG} aggregate --runs {RESULTS:q}/runs --out {output.summary:q} {params.strict} 2> {log:q}"


rule report:
    input:
        summary=rules.aggregate.output.summary,
        problems=rules.aggregate.output.problems,
    output:
        index=report(REPORT_INDEX, caption="../report/index.rst", category="Report"),
        charts=report(
            expand(f"{RESULTS}/report/{{chart}}.png", chart=["energy_per_sample", "quality_vs_energy"]),
            caption="../report/charts.rst",
            category="Charts",
        ),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        JG_CONDA_ENV
    shell:
        "{JG} report --summary {input.summary:q} --problems {input.problems:q} --out {RESULTS:q}/report 2> {log:q} "
        "&& echo 'joulegrid: report at {output.index}'"
