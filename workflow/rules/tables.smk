# The paper's Tables 1-4 from the runs' metrics.json files, beside the published numbers, and the
# claims table (a verdict per claim of config/paper/claims.yaml), first in the report.


rule tables:
    """Write the claims' verdicts and Tables 1-4 (Markdown, CSV, LaTeX, HTML) from every run."""
    input:
        published="config/paper/published.yaml",
        claims="config/paper/claims.yaml",
        search=search_metrics(),
        select=selections(),
        train=train_metrics(),
    output:
        md=table_files("md"),
        csv=table_files("csv"),
        tex=table_files("tex"),
        html=[
            report(
                table_file(name, "html"),
                caption=f"../report/{name}.rst",
                category=REPORT_CATEGORIES.get(name, REPORT_CATEGORIES["tables"]),
                labels={"table": name},
            )
            for name in TABLE_NAMES
        ],
    log:
        log_file("tables"),
    conda:
        "../envs/itnas.yaml"
    params:
        out=tables_folder,
        benchmarks=table_benchmarks,
    threads: rule_threads("tables")
    resources:
        **rule_resources("tables"),
    shell:
        "itnas tables --published {input.published} --claims {input.claims} --out-dir {params.out} {params.benchmarks}"
        " --search {input.search} --select {input.select} --train {input.train} > {log} 2>&1"
