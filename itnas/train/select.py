"""Short-training selection (the DARTS protocol): train each candidate genotype briefly on part of
the training set, score it on the held-out rest (never the test set), and keep the best.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from itnas.data.loaders import KeyedSubset, build_dataset, split_indices, subset
from itnas.data.registry import get_spec
from itnas.errors import UserError
from itnas.files import write_json
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
                    rt: Runtime, ctx: DistContext) -> dict[str, Any]:
    """Train one candidate (resumable, in its own run folder) and return its held-out scores."""
    metrics = train(cfg, genotype, label, data, out, seed, rt, ctx, stage="select", eval_name="valid")
    return {"valid_top1_acc": 100.0 - metrics["valid_top1_err"] if metrics else None,
            "valid_top1_err": metrics.get("valid_top1_err"), "valid_loss": metrics.get("valid_loss"),
            "params": metrics.get("params")}


def select(cfg: dict, candidates: list[tuple[Genotype, str]], data: TrainData, out: str | Path, seed: int,
           rt: Runtime | None = None, ctx: DistContext | None = None) -> dict[str, Any]:
    """Score every candidate and write `out/selection.json` and `out/genotype.json` (the winner)."""
    ctx = ctx or DistContext()
    rt = rt or resolve_runtime(cfg["runtime"], "train", distributed=ctx.enabled)
    out = Path(out)
    ccfg = candidate_config(cfg)
    seen: dict[str, dict[str, Any]] = {}
    rows = []
    for genotype, label in candidates:
        key = genotype.hash()
        if key not in seen:
            if ctx.is_main:
                log.info("candidate %d/%d: %s [%s], %d epochs", len(seen) + 1, len(candidates), label, key,
                         ccfg["epochs"])
            seen[key] = score_candidate(ccfg, genotype, label, data, out / "candidates" / key, seed, rt, ctx)
        rows.append({"genotype": label, "hash": key, "run": f"candidates/{key}", **seen[key]})
    if not ctx.is_main:
        return {}
    # max() keeps the first of equal scores, so ties go to the candidate listed first.
    best = max(range(len(rows)), key=lambda i: rows[i]["valid_top1_acc"])
    winner = rows[best]
    result = {
        "dataset": data.dataset, "standin": data.standin, "seed": seed, "epochs": ccfg["epochs"],
        "train_portion": cfg["selection"]["train_portion"], "train_size": len(data.train),
        "holdout_size": len(data.evaluation),
        "scored_on": "held-out part of the training set (top-1 accuracy, %)",
        "candidates": rows, "winner": winner,
    }
    write_json(out / "selection.json", result)
    save_genotype(out / "genotype.json", candidates[best][0], name=winner["genotype"],
                  source=f"itnas select: best of {len(rows)} after {ccfg['epochs']} epochs")
    log.info("selected %s [%s]: held-out accuracy %.2f%%", winner["genotype"], winner["hash"],
             winner["valid_top1_acc"])
    return result
