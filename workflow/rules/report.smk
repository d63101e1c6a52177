# Figures for the report: each variant's selected cell and the curves of each search.


rule plot_cell:
    """Draw the normal and reduction cells a variant's selection chose."""
    input:
        genotype=selected_genotype,
    output:
        report(
            figure("cell"),
            caption="../report/cell.rst",
            category=REPORT_CATEGORIES["cells"],
            labels={"variant": "{variant}", "figure": "cells"},
        ),
    log:
        log_file("plot", "{dataset}", "cell_{variant}"),
    conda:
        "../envs/itnas.yaml"
    params:
        title=cell_title,
    threads: rule_threads("plot")
    resources:
        **rule_resources("plot"),
    shell:
        "itnas plot cell --genotype {input.genotype} --out {output} --title {params.title:q} > {log} 2>&1"


rule plot_search:
    """Plot temperature (Gumbel variants), edge-weight entropy and accuracy per epoch of one search setting's seeds."""
    input:
        histories=search_histories,
    output:
        report(
            figure("search", name="{search}"),
            caption="../report/search_curves.rst",
            category=REPORT_CATEGORIES["curves"],
            labels={"variant": "{search}", "figure": "search curves"},
        ),
    log:
        log_file("plot", "{dataset}", "search_{search}"),
    conda:
        "../envs/itnas.yaml"
    params:
        title=curves_title,
    threads: rule_threads("plot")
    resources:
        **rule_resources("plot"),
    shell:
        "itnas plot curves --history {input.histories} --out {output} --title {params.title:q} > {log} 2>&1"
