# Datasets that ship offline, prepared once per size.


rule prepare_dataset:
    output:
        f"{RESOURCES}/datasets/{{dataset}}/n{{rows}}.npz",
    log:
        f"{RESULTS}/logs/prepare_dataset/{{dataset}}-n{{rows}}.log",
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: config["job"]["mem_mb"] * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
        energy_meter=1,
    shell:
        "{JG} prepare-data --dataset {wildcards.dataset} --rows {wildcards.rows} --out {output:q} > {log:q} 2>&1"
