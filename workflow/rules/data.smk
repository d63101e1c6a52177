# Datasets: fetch (or generate, for synthetic-* stand-ins) and verify each dataset once.


rule data_fetch:
    """Fetch or generate one dataset into DATA_ROOT/NAME and verify it against its manifest."""
    output:
        manifest=data_manifest(),
    log:
        log_file("data", "{dataset}"),
    conda:
        "../envs/itnas.yaml"
    params:
        root=data_root,
    threads: rule_threads("data")
    resources:
        **rule_resources("data"),
    shell:
        "(itnas data fetch {wildcards.dataset} --root {params.root}"
        " && itnas data verify {wildcards.dataset} --root {params.root}) > {log} 2>&1"
