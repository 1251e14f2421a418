# Datasets that ship offline, prepared once per size.


rule prepare_dataset:
    output:
        f"{RESOURCES}/datasets/{{dataset}}/n{{rows}}.npz",
    log:
        f"{RESULTS}/logs/prepare_dataset/{{dataset}}-n{{rows}}.log",
    params:
        jg=JG,
    threads: 1
    resources:
        **JOULEGRID.job_resources(config["job"]["mem_mb"], 30),
        energy_meter=1,
    conda:
        JG_CONDA_ENV
    shell:
        "{params.jg} prepare-data --dataset {wildcards.dataset} --rows {wildcards.rows} --out {output:q} > {log:q} 2>&1"
