# Aggregate every run file (all sites under results/runs/) and render charts + the HTML report.
from joulegrid.analysis import CHART_NAMES as JG_CHARTS
from joulegrid.analysis.settings import AnalysisSettings as _JGSettings

# report:, fleet:, the sites and the hardware table, as one JSON param: changing any re-renders the report.
JG_REPORT_SETTINGS = _JGSettings.from_config(config, SITES).to_json()


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
        cells=report(f"{RESULTS}/report/cells.csv", caption="../report/cells.rst", category="Report"),
        fleet=report(f"{RESULTS}/report/fleet.csv", caption="../report/fleet.rst", category="Report"),
        **{
            name: report(f"{RESULTS}/report/{name}.png", caption=f"../report/{name}.rst", category="Charts")
            for name in JG_CHARTS
        },
    params:
        settings=JG_REPORT_SETTINGS,
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        JG_CONDA_ENV
    shell:
        "{JG} report --summary {input.summary:q} --problems {input.problems:q} --out {RESULTS:q}/report "
        "--settings {params.settings:q} 2> {log:q} && echo 'joulegrid: report at {output.index}'"
