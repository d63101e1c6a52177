# Architecture search: one job per (dataset, ablation variant, seed).


rule search:
    """Search one cell with one ablation variant and seed (resumes from its checkpoint)."""
    input:
        data=search_data,
        config=SEARCH["config"],
    output:
        # genotype.json is written too; the workflow derives its genotypes in the `derive` rule.
        arch_state=f"{search_dir()}/arch_state.json",
        history=f"{search_dir()}/history.json",
        metrics=f"{search_dir()}/metrics.json",
    log:
        log_file("search", "{dataset}", "{variant}", "seed{seed}"),
    conda:
        "../envs/itnas.yaml"
    params:
        data_root=input_data_root,
        out=run_folder,
        overrides=search_overrides,
    threads: rule_threads("search")
    priority: 30  # the critical path first: searches gate everything downstream
    resources:
        **rule_resources("search"),
    shell:
        "ITNAS_RULE=search OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " itnas search --config {input.config} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --dataset {wildcards.dataset} --data-root {params.data_root} --out {params.out}"
        " {params.overrides} > {log} 2>&1"
