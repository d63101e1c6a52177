"""ITNAS reproduction: datasets -> searches -> selection -> trainings -> Tables 1-4 and figures.

    snakemake --cores all --resources gpu=4                           # the paper (config/config.yaml)
    snakemake --cores 2 --configfile config/smoke.yaml                # stand-ins, minutes on a laptop
    snakemake --configfile config/smoke.yaml --report results/smoke/report.html

See README.md and docs/workflow.md.
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# Checks each config file and the merged config (workflow/schemas/config.schema.yaml) before
# anything reads them, naming the file and key at fault; then the paths and input functions.
include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    dataset=r"[a-z0-9][a-z0-9_-]*",
    variant="|".join(VARIANTS),
    search="|".join(SEARCHES),
    label=r"[A-Za-z][A-Za-z0-9_]*",
    seed=r"\d+",
    cell=r"\d+",


include: "workflow/rules/data.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


onstart:
    # The tracking store (SQLite schema + experiment) is created once here, before any job
    # runs, so concurrent jobs never race to create it. A failure is a warning, not an error.
    if config["tracking"]["enabled"]:
        shell(
            "itnas -q tracking init --uri {uri} --experiment {experiment}".format(
                uri=shlex.quote(tracking_uri()), experiment=shlex.quote(config["tracking"]["experiment"])
            )
        )


rule all:
    """Tables 1-4 and the report's figures, for the variants, seeds and datasets of the config."""
    input:
        all_targets,
    default_target: True
