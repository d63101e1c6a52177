"""Short-training selection (the DARTS protocol): train each candidate genotype briefly on part of
the training set, score it on the held-out rest (never the test set), and keep the best.

In MLflow a selection is one parent run (`select VARIANT DATASET`) with a nested run per
candidate (`select VARIANT candidate-seedS`, tagged with the search seed it came from); the
winner's run is tagged `winner=true`, and the parent names it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path
from typing import Any

from itnas import tracking
from itnas.config import flatten
from itnas.data.loaders import KeyedSubset, build_dataset, split_indices, subset
from itnas.data.registry import get_spec
from itnas.errors import UserError
from itnas.files import write_json
from itnas.layout import parse_searched_name, selected_name
from itnas.runtime import Runtime, resolve_runtime
from itnas.space import Genotype, save_genotype
from itnas.train.batches import TrainData, limit, make_data
from itnas.train.distributed import DistContext
from itnas.train.loop import train

log = logging.getLogger(__name__)


def holdout_data(dataset: str, cfg: dict, rt: Runtime, seed: int) -> TrainData:
    """The training set split by a seeded shuffle: `selection.train_portion` to train on (with the
    protocol's augmentation), the rest, unaugmented, to score on. The test set is never read."""
    spec, d = get_spec(dataset), cfg["data"]
    augmented = build_dataset(spec.name, cfg["data_root"], "train", augment=True, cutout=d["cutout"])
    plain = build_dataset(spec.name, cfg["data_root"], "train", augment=False)
    pool = getattr(subset(augmented, d["max_train_samples"], seed), "indices", range(len(augmented)))
    fit, held = split_indices(len(pool), cfg["selection"]["train_portion"], seed)
    fit, held = [pool[i] for i in fit], [pool[i] for i in held]
    scoring = limit(KeyedSubset(plain, held), d["max_test_samples"])
    return make_data(spec, cfg, rt, augmented, fit, scoring)


def candidate_config(cfg: dict) -> dict:
    """The training recipe with the selection's epoch budget."""
    out = copy.deepcopy(cfg)
    out["epochs"] = cfg["selection"]["epochs"]
    if out["optim"]["warmup_epochs"] >= out["epochs"]:
        raise UserError(f"key 'optim.warmup_epochs': {out['optim']['warmup_epochs']} must be less than "
                        f"selection.epochs ({out['epochs']})")
    return out


def score_candidate(cfg: dict, genotype: Genotype, label: str, data: TrainData, out: Path, seed: int,
                    rt: Runtime, ctx: DistContext, run_name: str | None = None,
                    tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train one candidate (resumable, in its own run folder) and return its held-out scores."""
    metrics = train(cfg, genotype, label, data, out, seed, rt, ctx, stage="select", eval_name="valid",
                    run_name=run_name, tags=tags)
    return {"valid_top1_acc": 100.0 - metrics["valid_top1_err"] if metrics else None,
            "valid_top1_err": metrics.get("valid_top1_err"), "valid_loss": metrics.get("valid_loss"),
            "params": metrics.get("params")}


def search_seed(label: str) -> int | None:
    """The search seed a candidate came from, by its name (VARIANT-seedS); None for other cells."""
    origin = parse_searched_name(label)
    return origin[1] if origin else None


def select(cfg: dict, candidates: list[tuple[Genotype, str]], data: TrainData, out: str | Path, seed: int,
           rt: Runtime | None = None, ctx: DistContext | None = None, label: str | None = None) -> dict[str, Any]:
    """Score every candidate and write `out/selection.json` and `out/genotype.json` (the winner).
    `label` is what is being selected (a variant, or random_search): it names the MLflow runs and
    the kept cell; by default the variant all candidates' names share."""
    ctx = ctx or DistContext()
    rt = rt or resolve_runtime(cfg["runtime"], "train", distributed=ctx.enabled)
    out = Path(out)
    ccfg = candidate_config(cfg)
    found = {(parse_searched_name(name) or (None,))[0] for _, name in candidates}
    variant = label or (found.pop() if len(found) == 1 else None)
    # Equal genotypes (two seeds that found the same cell) are trained once, under the first label.
    seeds_of: dict[str, list[str]] = {}
    for genotype, name in candidates:
        seeds_of.setdefault(genotype.hash(), [])
        if search_seed(name) is not None:
            seeds_of[genotype.hash()].append(str(search_seed(name)))
    tags = {"stage": "select", "dataset": data.dataset, "benchmark": data.benchmark, "seed": str(seed),
            "standin": str(data.standin).lower(), **({"variant": variant, "label": variant} if variant else {})}
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        parent = tracking.start_run(
            "select", f"select {variant or 'cells'} {data.dataset}",
            {**flatten(ccfg), "seed": seed, "candidates": [name for _, name in candidates]}, tags, folder=out)
    else:
        parent = contextlib.nullcontext(tracking.NullRun())
    with parent as run:
        rows, seen = [], {}
        for genotype, cell in candidates:
            key = genotype.hash()
            if key not in seen:
                if ctx.is_main:
                    log.info("candidate %d/%d: %s [%s], %d epochs", len(seen) + 1, len(candidates), cell, key,
                             ccfg["epochs"])
                search_seeds = seeds_of[key]
                name = f"candidate-seed{search_seeds[0]}" if search_seeds else f"candidate {cell}"
                child_tags = {**tags, "candidate": cell,
                              **({"search_seed": ",".join(search_seeds)} if search_seeds else {}),
                              **({"mlflow.parentRunId": run.run_id} if run.run_id else {})}
                seen[key] = score_candidate(ccfg, genotype, cell, data, out / "candidates" / key, seed, rt, ctx,
                                            run_name=f"select {variant or 'cells'} {name}", tags=child_tags)
            rows.append({"genotype": cell, "hash": key, "run": f"candidates/{key}", **seen[key]})
        if not ctx.is_main:
            return {}
        # max() keeps the first of equal scores, so ties go to the candidate listed first.
        best = max(range(len(rows)), key=lambda i: rows[i]["valid_top1_acc"])
        winner = rows[best]
        result = {
            "label": variant, "dataset": data.dataset, "standin": data.standin, "seed": seed, "epochs": ccfg["epochs"],
            "train_portion": cfg["selection"]["train_portion"], "train_size": len(data.train),
            "holdout_size": len(data.evaluation),
            "scored_on": "held-out part of the training set (top-1 accuracy, %)",
            "candidates": rows, "winner": winner,
            # the search seed of the winning cell (VARIANT-seedS), what the tables show; null for other cells
            "winner_search_seed": search_seed(winner["genotype"]),
        }
        write_json(out / "selection.json", result)
        name = selected_name(variant) if variant else f"selected-{winner['genotype']}"
        save_genotype(out / "genotype.json", candidates[best][0], name=name,
                      source=f"itnas select: {winner['genotype']}, the best of {len(rows)} after "
                             f"{ccfg['epochs']} epochs")
        for key in seen:
            tracking.tag_run_in(out / "candidates" / key, {"winner": str(key == winner["hash"]).lower()})
        run.set_tags({"winner": winner["genotype"], "winner_hash": winner["hash"]})
        run.log_metrics({"winner_valid_top1_acc": winner["valid_top1_acc"]}, step=ccfg["epochs"])
        run.log_artifact(str(out / "selection.json"))
    log.info("selected %s [%s]: held-out accuracy %.2f%%", winner["genotype"], winner["hash"],
             winner["valid_top1_acc"])
    return result
