# The fan-out: one job per grid cell, each writing one result file.


def _ref_inputs(wc):
    """The dataset the workload's reference model trains on (one call per workload)."""
    data = SPEC.data_path(wc.workload)
    return {"data": ancient(data)} if data else {}


rule train_reference:
    """fp32 model that inference cells load (trained once per workload settings; not measured)."""
    input:
        unpack(_ref_inputs),
        grid=ancient(JG_GRID),
    output:
        f"{RESULTS}/models/{{workload}}/{{mhash}}.pt",
    log:
        f"{RESULTS}/logs/train_reference/{{workload}}-{{mhash}}.log",
    threads: config["measure"]["threads"]
    resources:
        **job_resources(config["job"]["mem_mb"], config["job"]["runtime_min"]),
        energy_meter=1,
    conda:
        JG_CONDA_ENV
    shell:
        "{JG} train-reference --grid {input.grid:q} --workload {wildcards.workload} --out {output:q} --threads {threads} > {log:q} 2>&1"


rule cell_inputs:
    """What the cells of one configuration (config hash) and phase read: the prepared dataset and, for
    inference, the reference model. One small local job per workload configuration and phase, so
    that rule measure's inputs are plain patterns, with no function evaluated per cell."""
    input:
        unpack(phase_inputs),
    output:
        f"{RESULTS}/.grid/{{chash}}/{{phase}}.inputs.json",
    localrule: True
    run:
        from joulegrid.io import stamp

        stamp(output[0], json.dumps(dict(input.items()), sort_keys=True) + "\n")


rule measure:
    """Measure one cell: results/runs/<site>/<workload>/<phase>/<device>/<precision>/bs<B>/r<k>-<config hash>.parquet

    Plain patterns only (docs/architecture.md, "The lean measure rule"): the grid snapshot (the
    settings) and its configuration's inputs for this phase; run-cell takes the cell from the run
    file's path. Both inputs are ancient(): a new snapshot or re-prepared data never re-measures."""
    input:
        ancient(f"{RESULTS}/.grid/{{chash}}/{{phase}}.inputs.json"),
    output:
        protected(f"{RESULTS}/runs/{JGG.cell_pattern(config['site'])}.parquet"),
    log:
        f"{RESULTS}/logs/runs/{JGG.cell_pattern(config['site'])}.log",
    threads: config["measure"]["threads"]
    # Cluster runs with `group-components: [cells=N]` (site profiles, docs/sites.md) submit N cells
    # as one job that measures them one after the other; no group otherwise (resolve_measure_rule, common.smk).
    resources:
        # mem/runtime/GPUs mean the same on every executor (job_resources in common.smk); cuda
        # cells request job.gpus GPUs (slurm --gpus, htcondor request_gpus), a grid without cuda none
        **job_resources(
            config["job"]["mem_mb"],
            config["job"]["runtime_min"],
            gpus=(lambda wc: config["job"]["gpus"] if wc.device == "cuda" else 0) if "cuda" in config["grid"]["devices"] else 0,
            group_size=cells_per_group,
            reads=phase_inputs,  # without a shared filesystem: the dataset and model its inputs.json names
        ),
        attempt=lambda wc, attempt: attempt,  # the constant 1 without retries (resolve_measure_rule, common.smk)
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
        f"set -- --grid {shlex.quote(JG_GRID)} --out {{output:q}} --attempt {{resources.attempt}}; L={{log:q}}; "
        f"{JG} run-cell \"$@\" --threads {{threads}} > \"$L\" 2>&1 "
        f"|| {JG} record-failure \"$@\" --exit-code $? --log \"$L\" --retries ${{{{JOULEGRID_RETRIES:-0}}}} >> \"$L\" 2>&1"
