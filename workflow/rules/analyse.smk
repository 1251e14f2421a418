# Aggregate every run file (all sites under results/runs/) and render charts + the HTML report.
from joulegrid.analysis import CHART_NAMES as JG_CHARTS
from joulegrid.analysis.settings import AnalysisSettings as _JGSettings

# report:, fleet:, the sites and the hardware table, in a stamp file that changes only with them: an
# input of rule report, so that changing any of them re-renders the report (jg_stamp, common.smk).
REPORT_STAMP = jg_stamp("report", _JGSettings.from_config(config, SITES).to_json())
# Every run file under runs/ that this grid does not make (other sites' folders copied or rsync-ed in,
# `joulegrid import`, other configurations), with its size and mtime, in a stamp that changes only
# with them: an input of rule aggregate, so that `snakemake` rebuilds the summary and the report
# when such files arrive (an mtime trigger cannot see a copied file: rsync -a keeps its old time).
# Listed by the main process only (a cluster job reads the stamp, never lists runs/).
_JG_RUNS = f"{RESULTS}/runs"
RUNS_STAMP = jg_stamp(
    "runs",
    JGG.run_manifest(_JG_RUNS, (p[len(_JG_RUNS) + 1 :] for p in CELL_PATHS)) if workflow.is_main_process else "",
)


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
        current=CURRENT_STAMP,
        runs=RUNS_STAMP,
    output:
        summary=f"{RESULTS}/summary.parquet",
        problems=f"{RESULTS}/summary.problems.json",
        other=f"{RESULTS}/summary.other-configs.parquet",
    params:
        strict="--strict" if config["strict"] else "",
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        JG_CONDA_ENV
    shell:
        "{JG} aggregate --runs {RESULTS:q}/runs --out {output.summary:q} --current {input.current:q} "
        "--other {output.other:q} {params.strict} 2> {log:q}"


rule report:
    input:
        summary=rules.aggregate.output.summary,
        problems=rules.aggregate.output.problems,
        other=rules.aggregate.output.other,
        settings=REPORT_STAMP,
    output:
        index=report(REPORT_INDEX, caption="../report/index.rst", category="Report"),
        cells=report(f"{RESULTS}/report/cells.csv", caption="../report/cells.rst", category="Report"),
        fleet=report(f"{RESULTS}/report/fleet.csv", caption="../report/fleet.rst", category="Report"),
        **{
            name: report(f"{RESULTS}/report/{name}.png", caption=f"../report/{name}.rst", category="Charts")
            for name in JG_CHARTS
        },
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        JG_CONDA_ENV
    shell:
        "{JG} report --summary {input.summary:q} --problems {input.problems:q} --other {input.other:q} "
        "--out {RESULTS:q}/report --settings-file {input.settings:q} 2> {log:q} && echo 'joulegrid: report at {output.index}'"
