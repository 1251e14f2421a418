# The fan-out: one job per grid cell, each writing one result file.


def _ref_spec(wc):
    cell = JGG.Cell(config["site"], wc.workload, "train", "cpu", "fp32", "baseline", min(config["grid"]["batch_sizes"]), 0)
    return SPEC.spec_json(cell)


def _ref_inputs(wc):
    return {k: v for k, v in cell_inputs(dict(wc, phase="train", device="cpu", precision="fp32", batch="1", repeat="0", site=config["site"])).items() if k == "data"}


rule train_reference:
    """fp32 model that inference cells load (trained once per workload settings; not measured)."""
    input:
        unpack(_ref_inputs),
    output:
        f"{RESULTS}/models/{{workload}}/{{mhash}}.pt",
    log:
        f"{RESULTS}/logs/train_reference/{{workload}}-{{mhash}}.log",
    params:
        spec=_ref_spec,
        io=cli_inputs,
    threads: config["measure"]["threads"]
    resources:
        **job_resources(config["job"]["mem_mb"], config["job"]["runtime_min"]),
        energy_meter=1,
    conda:
        JG_CONDA_ENV
    shell:
        "{JG} train-reference --spec {params.spec:q} {params.io} --out {output:q} --threads {threads} > {log:q} 2>&1"


rule measure:
    """Measure one cell: results/runs/<site>/<workload>/<phase>/<device>/<precision>/bs<B>/r<k>-<config hash>.parquet"""
    input:
        unpack(cell_inputs),
    output:
        protected(f"{RESULTS}/{JGG.RUN_PATTERN}"),
    log:
        f"{RESULTS}/logs/runs/{JGG.CELL_PATTERN}.log",
    params:
        cell=cell_args,
    threads: config["measure"]["threads"]
    # Cluster runs with `group-components: [cells=N]` (site profiles, docs/sites.md) submit N cells
    # as one job that measures them one after the other; no group otherwise (resolve_cell_group, common.smk).
    resources:
        # mem/runtime/GPUs mean the same on every executor (job_resources in common.smk); cuda
        # cells request job.gpus GPUs (slurm --gpus, htcondor request_gpus), a grid without cuda none
        **job_resources(
            config["job"]["mem_mb"],
            config["job"]["runtime_min"],
            gpus=(lambda wc: config["job"]["gpus"] if wc.device == "cuda" else 0) if "cuda" in config["grid"]["devices"] else 0,
            group_size=cells_per_group,
        ),
        attempt=lambda wc, attempt: attempt,
        energy_meter=1,
    conda:
        JG_CONDA_ENV
    # A run-cell that dies without its row (OOM killer, SIGKILL, a crash of Python itself) is recorded
    # by record-failure (src/joulegrid/failures.py): the attempt goes to <results>/attempts/, the job
    # fails while Snakemake retries remain (JOULEGRID_RETRIES, exported in common.smk), and the last
    # attempt writes a failed/oom row and succeeds, so the grid goes on and the report lists it.
    # "$@" holds the arguments both commands share: Snakemake formats this command for every job
    # it lists, and each placeholder costs (a 10,000-cell dry run formats it 30,000 times).
    shell:
        "set -- {params.cell} --out {output:q} --attempt {resources.attempt}; L={log:q}; "
        "{JG} run-cell \"$@\" --threads {threads} > \"$L\" 2>&1 "
        "|| {JG} record-failure \"$@\" --exit-code $? --log \"$L\" --retries ${{JOULEGRID_RETRIES:-0}} >> \"$L\" 2>&1"
