"""Paths, config checks and input functions shared by the rule files.

Every output path carries what distinguishes a run: the dataset, the ablation variant (the
Gumbel/Transition/TIEP flag set) or published genotype, and the seed. Toggling a variant, a
seed or a dataset therefore only adds or removes paths; it never overwrites another run.
The path functions below give them for this run's results folder; the layout itself (where each
stage's files live, how cells are named) is itnas/layout.py's, which also parses them back for
the tables. Called without arguments they give a rule's output pattern (with its wildcards),
with arguments a target.
The variants and what each derives with come from the package's registry (itnas/variants.py).
"""

import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from itnas.config import check_workflow_config, check_workflow_recipes
from itnas.data.registry import names as dataset_names
from itnas.errors import UserError
from itnas import layout
from itnas.genotypes import PUBLISHED
from itnas.layout import RANDOM_SEARCH, random_cell, random_name, searched_name
from itnas.variants import VARIANTS as VARIANT_REGISTRY
from itnas.variants import search_of, sharing

BENCHMARKS = ["cifar10", "cifar100", "cinic10", "svhn", "imagenet"]
VARIANTS = list(VARIANT_REGISTRY)
# The searches variants derive their cells from (itnas/variants.py search_of: itnas derives from
# gumbel_transition's search, since they search alike).
SEARCHES = list(dict.fromkeys(search_of(v) for v in VARIANTS))
SCHEMA = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")


def _check_config_files():
    """Each config file and the merged config against the schema, before anything reads them: a
    problem is one line naming the file and key (Snakemake's own is a dump of the schema)."""
    # --configfile, --configfiles, or a prefix argparse takes for them (--configf...), maybe with =FILE
    flags = [a for a in sys.argv[1:] if a.startswith("--configf") and "--configfiles".startswith(a.split("=")[0])]
    if len(flags) > 1:
        raise WorkflowError(f"--configfile is given {len(flags)} times, and Snakemake keeps only the last "
                            "one; give every file after one flag: --configfile config/smoke.yaml mine.yaml")
    overlays = [str(f) for f in workflow.overwrite_configfiles]
    files = [str(f) for f in workflow.configfiles if str(f) not in overlays] + overlays
    sources = [(f, f) for f in files]
    if workflow.config_settings.config:
        sources.append(("--config", dict(workflow.config_settings.config)))
    try:
        check_workflow_config(config, sources, SCHEMA)
    except UserError as exc:
        raise WorkflowError(str(exc)) from None


_check_config_files()
validate(config, SCHEMA)  # fills in the schema's defaults

RESULTS = config["results"].rstrip("/")
DATA_ROOT = config["data_root"].rstrip("/")
LOGS = f"{RESULTS}/logs"
DATASETS = config["datasets"]
SEARCH = config["search"]
SEARCH_DATASET = DATASETS[SEARCH["benchmark"]]
IMAGENET_DATASET = DATASETS["imagenet"]
EVALUATE = config["evaluate"]
TABLE_NAMES = ["claims", "table1", "table2", "table3", "table4"]  # claims: the verdicts, first


def _check_config():
    """Cross-key rules the schema cannot express; refused before any job starts."""
    for variant in SEARCH["variants"]:
        if variant not in VARIANT_REGISTRY:
            raise WorkflowError(f"config key 'search.variants': unknown variant '{variant}' "
                                f"(expected one of: {', '.join(VARIANTS)})")
    searched = set(SEARCH["variants"])
    for bench, target in EVALUATE.items():
        for cell in target["cells"]:
            if cell not in searched:
                raise WorkflowError(
                    f"config key 'evaluate.{bench}.cells': variant '{cell}' is not searched "
                    f"(add it to 'search.variants': {', '.join(SEARCH['variants'])})")
    names = list(DATASETS.values())
    for bench, name in DATASETS.items():
        if name not in dataset_names():
            raise WorkflowError(f"config key 'datasets.{bench}': unknown dataset '{name}' "
                                f"(expected one of: {', '.join(dataset_names())})")
        if names.count(name) > 1:
            raise WorkflowError(f"config key 'datasets': '{name}' plays two benchmarks")
    for bench, target in EVALUATE.items():
        for name in target["baselines"]:
            if name not in PUBLISHED:
                raise WorkflowError(f"config key 'evaluate.{bench}.baselines': '{name}' is not a registered "
                                    f"genotype (expected one of: {', '.join(sorted(PUBLISHED))})")
    if IMAGENET_DATASET == SEARCH_DATASET:
        raise WorkflowError("config key 'search.benchmark': the search dataset cannot be the ImageNet one")


_check_config()
try:  # every job recipe with its `set` lists, as the jobs will read them (one line naming the key)
    check_workflow_recipes(config)
except UserError as exc:
    raise WorkflowError(str(exc)) from None


# ----------------------------------------------------------------------------- paths


def search_dir(dataset="{dataset}", search="{search}", seed="{seed}"):
    """One search: `search` is a search name (variants.search_of), shared by the variants that
    search alike, each of which derives its own cell from it."""
    return layout.search_dir(RESULTS, dataset, search, seed)


def derived_genotype(dataset="{dataset}", variant="{variant}", seed="{seed}"):
    return layout.derived_genotype(RESULTS, dataset, variant, seed)


def select_dir(dataset="{dataset}", variant="{variant}"):
    return layout.select_dir(RESULTS, dataset, variant)


def train_dir(dataset="{dataset}", label="{label}", seed="{seed}"):
    return layout.train_dir(RESULTS, dataset, label, seed)


def random_genotype(cell="{cell}"):
    """Random cell number `cell` of the search space (`itnas sample --seed CELL`)."""
    return layout.random_genotype(RESULTS, cell)


def data_manifest(dataset="{dataset}"):
    return f"{DATA_ROOT}/{dataset}/.itnas-manifest.json"


def figure(kind, dataset="{dataset}", name="{variant}"):
    """A report figure: kind 'cell' (a variant's selected cell) or 'search' (the curves of a
    search, name a search name)."""
    return layout.figure(RESULTS, kind, dataset, name)


def gpu_check_file(dataset="{dataset}"):
    """The canary's record before the ImageNet trainings on `dataset` (a temporary file)."""
    return f"{RESULTS}/gpu_check/{dataset}.json"


def log_file(rule, *parts):
    """The log of one job of `rule`, e.g. log_file('search', '{dataset}', '{variant}', 'seed{seed}')."""
    return os.path.join(LOGS, rule, *parts) + ".log"


def random_search_on(bench):
    """Whether `bench` gets the random-search row (evaluate.BENCH.random_search)."""
    return bool((EVALUATE.get(bench) or {}).get("random_search"))


def random_search_size():
    """N of random search under the same selection: as many random cells as a variant has searches."""
    return len(SEARCH["seeds"])


def random_cells_trained(bench):
    """How many random cells are trained on `bench`: `random`, and with random search at least its
    N candidates, so that its winner's trainings always exist (the same runs, never trained twice)."""
    target = EVALUATE.get(bench) or {}
    count = target.get("random", 0)
    return max(count, random_search_size()) if random_search_on(bench) else count


def evaluated_labels(bench):
    """What is trained on `bench`: its searched cells, published baselines and random cells."""
    target = EVALUATE.get(bench)
    if not target:
        return []
    return (list(target["cells"]) + list(target["baselines"])
            + [random_name(k) for k in range(random_cells_trained(bench))])


def wildcard_alternatives(names):
    return "|".join(re.escape(n) for n in sorted(set(names))) or "(?!x)x"


CIFAR_LIKE = [DATASETS[b] for b in BENCHMARKS if b != "imagenet"]


# ----------------------------------------------------------------------------- targets


def planned_searches():
    """The searches of the configured variants, each once however many variants share it."""
    return list(dict.fromkeys(search_of(v) for v in SEARCH["variants"]))


def search_metrics():
    return [f"{search_dir(SEARCH_DATASET, name, s)}/metrics.json"
            for name in planned_searches() for s in SEARCH["seeds"]]


def selections():
    """Each variant's selection, and random search's when a benchmark asks for its row."""
    out = [f"{select_dir(SEARCH_DATASET, v)}/selection.json" for v in SEARCH["variants"]]
    if any(random_search_on(b) for b in BENCHMARKS):
        out.append(f"{select_dir(SEARCH_DATASET, RANDOM_SEARCH)}/selection.json")
    return out


def train_metrics():
    out = []
    for bench in BENCHMARKS:
        for label in evaluated_labels(bench):
            for seed in EVALUATE[bench]["seeds"]:
                out.append(f"{train_dir(DATASETS[bench], label, seed)}/metrics.json")
    return out


def table_file(name, ext):
    return layout.table_file(RESULTS, name, ext)


def table_files(ext):
    return [table_file(name, ext) for name in TABLE_NAMES]


def figure_files():
    return ([figure("cell", SEARCH_DATASET, v) for v in SEARCH["variants"]]
            + [figure("search", SEARCH_DATASET, name) for name in planned_searches()])


def all_targets(wildcards):
    """Everything `rule all` asks for, from the config switches alone."""
    return (table_files("md") + table_files("csv") + table_files("tex") + table_files("html")
            + figure_files())


# ----------------------------------------------------------------------------- input functions


def search_data(wildcards):
    return data_manifest(wildcards.dataset)


def derive_input(wildcards):
    """The arch state of the variant's search, maybe shared with another variant (variants.search_of)."""
    return f"{search_dir(wildcards.dataset, search_of(wildcards.variant), wildcards.seed)}/arch_state.json"


def select_candidates(wildcards):
    return [derived_genotype(wildcards.dataset, wildcards.variant, s) for s in SEARCH["seeds"]]


def random_search_candidates(wildcards):
    """Random search's candidates: random cells 0..N-1, as many as a variant's searched cells."""
    return [random_genotype(k) for k in range(random_search_size())]


def select_data(wildcards):
    return data_manifest(wildcards.dataset)


def search_histories(wildcards):
    return [f"{search_dir(wildcards.dataset, wildcards.search, s)}/history.json" for s in SEARCH["seeds"]]


def selected_genotype(wildcards):
    return f"{select_dir(wildcards.dataset, wildcards.variant)}/genotype.json"


def train_inputs(wildcards):
    """The dataset, and the genotype file of a searched variant (the cell its selection chose)
    or of a random cell."""
    inputs = {"data": data_manifest(wildcards.dataset)}
    cell = random_cell(wildcards.label)
    if wildcards.label in VARIANTS:
        inputs["genotype"] = f"{select_dir(SEARCH_DATASET, wildcards.label)}/genotype.json"
    elif cell is not None:
        inputs["genotype"] = random_genotype(cell)
    return inputs


# ----------------------------------------------------------------------------- params


def _sets(items):
    return " ".join(f"--set {shlex.quote(item)}" for item in items)


def search_overrides(wildcards):
    return _sets(SEARCH["set"])


def select_overrides(wildcards):
    return _sets(config["select"]["set"])


BENCHMARK_OF = {dataset: bench for bench, dataset in DATASETS.items()}


def _target_sets(dataset):
    target = EVALUATE.get(BENCHMARK_OF.get(dataset, ""), {}) or {}
    return list(target.get("set", []))


def train_overrides(wildcards):
    return _sets(config["train"]["cifar"]["set"] + _target_sets(wildcards.dataset))


def imagenet_overrides(wildcards):
    return _sets(config["train"]["imagenet"]["set"] + _target_sets(wildcards.dataset))


def derive_method(wildcards):
    return VARIANT_REGISTRY[wildcards.variant].derive_method


def searched_cell_name(wildcards):
    return searched_name(wildcards.variant, wildcards.seed)


def derive_tau_args(wildcards):
    tau = config["derive"]["tau"]
    return "" if tau is None else f"--tau {tau}"


def train_genotype(wildcards, input):
    """A variant or a random cell trains its genotype file; a baseline is a registered name."""
    return input.genotype if "genotype" in input.keys() else wildcards.label


def tracking_uri():
    return os.environ.get("MLFLOW_TRACKING_URI") or config["tracking"]["uri"] or f"sqlite:///{RESULTS}/mlflow.db"


def export_job_environment():
    """Tracking settings every job inherits from Snakemake's own environment. They are not
    params of the rules on purpose, since switching tracking or its store must never rerun a job."""
    if config["tracking"]["enabled"]:
        settings = {"MLFLOW_TRACKING_URI": tracking_uri(),
                    "MLFLOW_EXPERIMENT_NAME": config["tracking"]["experiment"]}
    else:
        settings = {"ITNAS_TRACKING": "off"}
    os.environ.update(settings)


export_job_environment()


def run_folder(wildcards, output):
    """The run folder of a job: the folder of its metrics (or selection) file."""
    first = output.metrics if hasattr(output, "metrics") else output.selection
    return os.path.dirname(first)


def data_root(wildcards, output):
    """DATA_ROOT, taken from the manifest path: DATA_ROOT/NAME/.itnas-manifest.json."""
    return os.path.dirname(os.path.dirname(output.manifest))


def input_data_root(wildcards, input):
    """DATA_ROOT of a job's dataset, from its manifest path."""
    return os.path.dirname(os.path.dirname(input.data))


def tables_folder(wildcards, output):
    return os.path.dirname(output.md[0])


def rule_threads(name):
    return config["threads"][name]


def rule_resources(name):
    """Memory (MB), wall-clock limit (minutes) and, for GPU rules, GPUs of one job: the config's
    `resources:` (config/config.yaml: the paper's; the smoke overlay: small)."""
    return config["resources"][name]


def imagenet_gpus(wildcards):
    return config["train"]["imagenet"]["gpus"]


def table_benchmarks(wildcards):
    return " ".join(f"--benchmark {b}={shlex.quote(DATASETS[b])}" for b in BENCHMARKS)


def _standin(dataset):
    return " (STAND-IN DATA)" if dataset.startswith("synthetic-") else ""


# The report's categories: its menu sorts them by name, hence the numbers (tables first).
REPORT_CATEGORIES = {"claims": "1. Claims: verdicts", "tables": "2. Tables 1-4", "cells": "3. Searched cells",
                     "curves": "4. Search curves"}


def cell_title(wildcards):
    return f"{wildcards.variant}: selected cell, searched on {wildcards.dataset}{_standin(wildcards.dataset)}"


def curves_title(wildcards):
    users = sharing(wildcards.search, SEARCH["variants"])
    shared = f" (the search of {', '.join(users)})" if users != [wildcards.search] else ""
    return f"{wildcards.search}: search curves on {wildcards.dataset}{_standin(wildcards.dataset)}{shared}"
