# Genotypes: each search's by its variant's rule (TIEP for itnas, the DARTS rule otherwise), the
# best of a variant's seeds by short training (itnas select), random cells of the space, and random
# search: the best of as many random cells by the same selection.


rule derive:
    """Derive the genotype of one search with its variant's method (tiep or darts)."""
    input:
        arch_state=derive_input,
    output:
        genotype=derived_genotype(),
    log:
        log_file("derive", "{dataset}", "{variant}", "seed{seed}"),
    conda:
        "../envs/itnas.yaml"
    params:
        method=derive_method,
        tau=derive_tau_args,
        name=searched_cell_name,
    threads: rule_threads("derive")
    priority: 20
    resources:
        **rule_resources("derive"),
    shell:
        "ITNAS_RULE=derive OMP_NUM_THREADS={threads}"
        " itnas derive --arch-state {input.arch_state} --method {params.method} {params.tau}"
        " --name {params.name} --out {output.genotype} > {log} 2>&1"


rule select:
    """Choose the best of one variant's searched cells by short training on held-out data."""
    input:
        data=select_data,
        config=config["select"]["config"],
        genotypes=select_candidates,
    output:
        selection=f"{select_dir()}/selection.json",
        genotype=f"{select_dir()}/genotype.json",
    log:
        log_file("select", "{dataset}", "{variant}"),
    conda:
        "../envs/itnas.yaml"
    params:
        seed=config["select"]["seed"],
        data_root=input_data_root,
        out=run_folder,
        overrides=select_overrides,
    threads: rule_threads("select")
    priority: 10
    resources:
        **rule_resources("select"),
    shell:
        "ITNAS_RULE=select OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " itnas select --config {input.config} --genotypes {input.genotypes}"
        " --dataset {wildcards.dataset} --seed {params.seed} --data-root {params.data_root}"
        " --label {wildcards.variant} --out {params.out} {params.overrides} > {log} 2>&1"


rule select_random:
    """Random search under the same selection: the best of N random cells (N = the searches per variant)."""
    input:
        data=select_data,
        config=config["select"]["config"],
        genotypes=random_search_candidates,
    output:
        selection=f"{select_dir(variant=RANDOM_SEARCH)}/selection.json",
        genotype=f"{select_dir(variant=RANDOM_SEARCH)}/genotype.json",
    log:
        log_file("select", "{dataset}", RANDOM_SEARCH),
    conda:
        "../envs/itnas.yaml"
    params:
        seed=config["select"]["seed"],
        data_root=input_data_root,
        out=run_folder,
        overrides=select_overrides,
        label=RANDOM_SEARCH,
    threads: rule_threads("select")
    priority: 10
    resources:
        **rule_resources("select"),
    shell:
        "ITNAS_RULE=select OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " itnas select --config {input.config} --genotypes {input.genotypes}"
        " --dataset {wildcards.dataset} --seed {params.seed} --data-root {params.data_root}"
        " --label {params.label} --out {params.out} {params.overrides} > {log} 2>&1"


rule sample:
    """Draw random cell number CELL of the search space, the baseline of every searched cell."""
    output:
        genotype=random_genotype(),
    log:
        log_file("sample", "cell{cell}"),
    conda:
        "../envs/itnas.yaml"
    threads: rule_threads("derive")
    resources:
        **rule_resources("derive"),
    shell:
        "itnas sample --seed {wildcards.cell} --out {output.genotype} > {log} 2>&1"
