"""Paths, config checks and input functions shared by the rule files.

Every output path carries what distinguishes a run: the dataset, the ablation variant (the
Gumbel/Transition/TIEP flag set) or published genotype, and the seed. Toggling a variant, a
seed or a dataset therefore only adds or removes paths; it never overwrites another run.
The path functions below are the only place those paths are written: called without
arguments they give a rule's output pattern (with its wildcards), with arguments a target.
The variants and what each derives with come from the package's registry (itnas/variants.py).
"""

import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from itnas.config import check_workflow_config
from itnas.data.registry import names as dataset_names
from itnas.errors import UserError
from itnas.genotypes import PUBLISHED, RANDOM_LABEL, random_name, searched_name
from itnas.variants import VARIANTS as VARIANT_REGISTRY

BENCHMARKS = ["cifar10", "cifar100", "cinic10", "svhn", "imagenet"]
VARIANTS = list(VARIANT_REGISTRY)
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


# ----------------------------------------------------------------------------- paths


def search_dir(dataset="{dataset}", variant="{variant}", seed="{seed}"):
    return f"{RESULTS}/search/{dataset}/{variant}/seed{seed}"


def derived_genotype(dataset="{dataset}", variant="{variant}", seed="{seed}"):
    return f"{RESULTS}/derive/{dataset}/{variant}/seed{seed}/genotype.json"


def select_dir(dataset="{dataset}", variant="{variant}"):
    return f"{RESULTS}/select/{dataset}/{variant}"


def train_dir(dataset="{dataset}", label="{label}", seed="{seed}"):
    return f"{RESULTS}/train/{dataset}/{label}/seed{seed}"


def random_genotype(cell="{cell}"):
    """Random cell number `cell` of the search space (`itnas sample --seed CELL`)."""
    return f"{RESULTS}/random/cell{cell}/genotype.json"


def data_manifest(dataset="{dataset}"):
    return f"{DATA_ROOT}/{dataset}/.itnas-manifest.json"


def figure(kind, dataset="{dataset}", variant="{variant}"):
    """A report figure: kind 'cell' or 'search'."""
    return f"{RESULTS}/figures/{dataset}/{kind}_{variant}.png"


def gpu_check_file(dataset="{dataset}"):
    """The canary's record before the ImageNet trainings on `dataset` (a temporary file)."""
    return f"{RESULTS}/gpu_check/{dataset}.json"


def log_file(rule, *parts):
    """The log of one job of `rule`, e.g. log_file('search', '{dataset}', '{variant}', 'seed{seed}')."""
    return os.path.join(LOGS, rule, *parts) + ".log"


def evaluated_labels(bench):
    """What is trained on `bench`: its searched cells, published baselines and random cells."""
    target = EVALUATE.get(bench)
    if not target:
        return []
    return list(target["cells"]) + list(target["baselines"]) + [random_name(k) for k in range(target["random"])]


def wildcard_alternatives(names):
    return "|".join(re.escape(n) for n in sorted(set(names))) or "(?!x)x"


CIFAR_LIKE = [DATASETS[b] for b in BENCHMARKS if b != "imagenet"]


# ----------------------------------------------------------------------------- targets


def search_metrics():
    return [f"{search_dir(SEARCH_DATASET, v, s)}/metrics.json"
            for v in SEARCH["variants"] for s in SEARCH["seeds"]]


def selections():
    return [f"{select_dir(SEARCH_DATASET, v)}/selection.json" for v in SEARCH["variants"]]


def train_metrics():
    out = []
    for bench in BENCHMARKS:
        for label in evaluated_labels(bench):
            for seed in EVALUATE[bench]["seeds"]:
                out.append(f"{train_dir(DATASETS[bench], label, seed)}/metrics.json")
    return out


def table_file(name, ext):
    return f"{RESULTS}/tables/{name}.{ext}"


def table_files(ext):
    return [table_file(name, ext) for name in TABLE_NAMES]


def figure_files():
    return [figure(kind, SEARCH_DATASET, v) for v in SEARCH["variants"] for kind in ("cell", "search")]


def all_targets(wildcards):
    """Everything `rule all` asks for, from the config switches alone."""
    return (table_files("md") + table_files("csv") + table_files("tex") + table_files("html")
            + figure_files())


# ----------------------------------------------------------------------------- input functions


def search_data(wildcards):
    return data_manifest(wildcards.dataset)


def derive_input(wildcards):
    return f"{search_dir(wildcards.dataset, wildcards.variant, wildcards.seed)}/arch_state.json"


def select_candidates(wildcards):
    return [derived_genotype(wildcards.dataset, wildcards.variant, s) for s in SEARCH["seeds"]]


def select_data(wildcards):
    return data_manifest(wildcards.dataset)


def search_histories(wildcards):
    return [f"{search_dir(wildcards.dataset, wildcards.variant, s)}/history.json" for s in SEARCH["seeds"]]


def selected_genotype(wildcards):
    return f"{select_dir(wildcards.dataset, wildcards.variant)}/genotype.json"


def train_inputs(wildcards):
    """The dataset, and the genotype file of a searched variant (the cell its selection chose)
    or of a random cell."""
    inputs = {"data": data_manifest(wildcards.dataset)}
    random_cell = RANDOM_LABEL.match(wildcards.label)
    if wildcards.label in VARIANTS:
        inputs["genotype"] = f"{select_dir(SEARCH_DATASET, wildcards.label)}/genotype.json"
    elif random_cell:
        inputs["genotype"] = random_genotype(random_cell.group(1))
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
    return f"{wildcards.variant}: search curves on {wildcards.dataset}{_standin(wildcards.dataset)}"
