# Architecture search: one job per (dataset, search, seed). Variants that search alike share one
# search (itnas/variants.py search_of), named after the first of them; the derive rule reads each
# variant's cell from it.


rule search:
    """Search one cell with one search setting (a variant name) and seed (resumes from its checkpoint)."""
    input:
        data=search_data,
        config=SEARCH["config"],
    output:
        # genotype.json is written too, by the search variant's own rule; the workflow never reads it:
        # every variant sharing this search derives its cell in the `derive` rule.
        arch_state=f"{search_dir()}/arch_state.json",
        history=f"{search_dir()}/history.json",
        metrics=f"{search_dir()}/metrics.json",
    log:
        log_file("search", "{dataset}", "{search}", "seed{seed}"),
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
        " itnas search --config {input.config} --variant {wildcards.search} --seed {wildcards.seed}"
        " --dataset {wildcards.dataset} --data-root {params.data_root} --out {params.out}"
        " {params.overrides} > {log} 2>&1"
