# The fan-out: one job per grid cell, each writing one result file.


rule train_reference:
    """fp32 model that inference cells load (trained once per workload settings; not measured)."""
    input:
        unpack(JOULEGRID.reference_inputs),
        grid=ancient(JOULEGRID.grid_snapshot),
    output:
        f"{RESULTS}/models/{{workload}}/{{mhash}}.pt",
    log:
        f"{RESULTS}/logs/train_reference/{{workload}}-{{mhash}}.log",
    params:
        jg=JG,
    threads: config["measure"]["threads"]
    resources:
        **JOULEGRID.job_resources(config["job"]["mem_mb"], config["job"]["runtime_min"]),
        energy_meter=1,
    conda:
        JG_CONDA_ENV
    shell:
        "{params.jg} train-reference --grid {input.grid:q} --workload {wildcards.workload} --out {output:q} --threads {threads} > {log:q} 2>&1"


rule cell_inputs:
    """What the cells of one configuration (config hash) and phase read: the prepared dataset and, for
    inference, the reference model. One small local job per workload configuration and phase, so
    that rule measure's inputs are plain patterns, with no function evaluated per cell."""
    input:
        unpack(JOULEGRID.phase_inputs),
    output:
        f"{RESULTS}/.grid/{{chash}}/{{phase}}.inputs.json",
    log:
        f"{RESULTS}/logs/cell_inputs/{{chash}}-{{phase}}.log",
    localrule: True
    run:
        joulegrid_snakefile.write_phase_inputs(dict(input.items()), output[0], log[0])


rule measure:
    """Measure one cell: results/runs/<site>/<workload>/<phase>/<device>/<precision>/bs<B>/r<k>-<config hash>.parquet

    Plain patterns only (docs/architecture.md, "The lean measure rule"): the grid snapshot (the
    settings) and its configuration's inputs for this phase; run-cell takes the cell from the run
    file's path. Both inputs are ancient(): a new snapshot or re-prepared data never re-measures."""
    input:
        ancient(f"{RESULTS}/.grid/{{chash}}/{{phase}}.inputs.json"),
    output:
        protected(f"{RESULTS}/runs/{JOULEGRID.cell_pattern}.parquet"),
    log:
        f"{RESULTS}/logs/runs/{JOULEGRID.cell_pattern}.log",
    threads: config["measure"]["threads"]
    # Cluster runs with `group-components: [cells=N]` (site profiles, docs/sites.md) submit N cells
    # as one job that measures them one after the other; no group otherwise (joulegrid.snakefile, resolve_measure_rule).
    resources:
        # mem/runtime/GPUs mean the same on every executor (joulegrid.snakefile, job_resources); cuda
        # cells request job.gpus GPUs (slurm --gpus, htcondor request_gpus), a grid without cuda none
        **JOULEGRID.job_resources(
            config["job"]["mem_mb"],
            JOULEGRID.measure_runtime_min,  # job.runtime_min; five times it for a code-version quadruple
            gpus=JOULEGRID.cell_gpus(),
            group_size=JOULEGRID.cells_per_group,
            reads=JOULEGRID.phase_inputs,  # without a shared filesystem: the dataset and model its inputs.json names
            constraint=config["job"]["constraint"],  # the node type (slurm --constraint, htcondor requirements)
        ),
        attempt=lambda wc, attempt: attempt,  # the constant 1 without retries (joulegrid.snakefile, resolve_measure_rule)
        energy_meter=1,
    conda:
        JG_CONDA_ENV
    # With code versions (versions:) the command is run-quadruple: the cell's quadruple of both versions,
    # four rows in one run file (docs/compare.md). A run-cell that dies without its row (OOM killer,
    # SIGKILL, a crash of Python itself) is recorded
    # by record-failure (src/joulegrid/failures.py): the attempt goes to <results>/attempts/, the job
    # fails while Snakemake retries remain (JOULEGRID_RETRIES, exported by joulegrid.snakefile), and the last
    # attempt writes a failed/oom row and succeeds, so the grid goes on and the report lists it.
    # "$@" holds the arguments both commands share: Snakemake formats this command for every job
    # it lists, and each placeholder costs (a 10,000-cell dry run formats it 30,000 times). For the same
    # reason the joulegrid command and the grid snapshot are written into it when the file is parsed (an
    # f-string), not given as params: a param is evaluated for each of the grid's jobs.
    shell:
        f"set -- --grid {JOULEGRID.grid_snapshot_q} --out {{output:q}} --attempt {{resources.attempt}}; L={{log:q}}; "
        f"{JG} {JOULEGRID.run_command} \"$@\" --threads {{threads}} > \"$L\" 2>&1 "
        f"|| {JG} record-failure \"$@\" --exit-code $? --log \"$L\" --retries ${{{{JOULEGRID_RETRIES:-0}}}} >> \"$L\" 2>&1"
