"""Short-training selection (the DARTS protocol): train each candidate genotype briefly on part of
the training set, score it on the held-out rest (never the test set), and keep the best.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from itnas.atomic import write_json
from itnas.distributed import DistContext
from itnas.errors import UserError
from itnas.formats import save_genotype
from itnas.genotypes import Genotype
from itnas.train import TrainData, limit, make_data, train

log = logging.getLogger(__name__)


def holdout_data(dataset: str, cfg: dict, data_root: str, seed: int,
                 device: torch.device | None = None) -> TrainData:
    """The training set split by a seeded shuffle: `selection.train_portion` to train on (with the
    protocol's augmentation), the rest, unaugmented, to score on. The test set is never read."""
    from itnas.data import build_dataset, get_spec, split_indices
    from itnas.data.loaders import KeyedSubset, subset

    spec = get_spec(dataset)
    augmented = build_dataset(spec.name, data_root, "train", augment=True, cutout=cfg["cutout"])
    plain = build_dataset(spec.name, data_root, "train", augment=False)
    pool = getattr(subset(augmented, cfg["max_train_samples"], seed), "indices", range(len(augmented)))
    fit, held = split_indices(len(pool), cfg["selection"]["train_portion"], seed)
    fit, held = [pool[i] for i in fit], [pool[i] for i in held]
    scoring = limit(KeyedSubset(plain, held), cfg["max_test_samples"])
    return make_data(spec, cfg, data_root, device or torch.device("cpu"), augmented, fit, scoring)


def candidate_config(cfg: dict) -> dict:
    """The training recipe with the selection's epoch budget."""
    out = copy.deepcopy(cfg)
    out["epochs"] = cfg["selection"]["epochs"]
    if out["warmup_epochs"] >= out["epochs"]:
        raise UserError(f"key 'warmup_epochs': {out['warmup_epochs']} must be less than "
                        f"selection.epochs ({out['epochs']})")
    return out


def score_candidate(cfg: dict, genotype: Genotype, label: str, data: TrainData, out: Path, seed: int,
                    ctx: DistContext, device: torch.device) -> dict[str, Any]:
    """Train one candidate (resumable, in its own run folder) and return its held-out scores."""
    metrics = train(cfg, genotype, label, data, out, seed, ctx, device, stage="select", eval_name="valid")
    return {"valid_top1_acc": 100.0 - metrics["valid_top1_err"] if metrics else None,
            "valid_top1_err": metrics.get("valid_top1_err"), "valid_loss": metrics.get("valid_loss"),
            "params": metrics.get("params")}


def select(cfg: dict, candidates: list[tuple[Genotype, str]], data: TrainData, out: str | Path, seed: int,
           ctx: DistContext | None = None, device: torch.device | None = None) -> dict[str, Any]:
    """Score every candidate and write `out/selection.json` and `out/genotype.json` (the winner)."""
    ctx = ctx or DistContext()
    device = device or torch.device("cpu")
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
            seen[key] = score_candidate(ccfg, genotype, label, data, out / "candidates" / key, seed, ctx, device)
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
