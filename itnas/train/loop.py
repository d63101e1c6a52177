"""Training of one evaluation network under the CIFAR or ImageNet protocol (docs/training.md): the
loop shared by `itnas train` and `itnas select`, its schedules, the step, evaluation and metrics.

A step's global batch (`data.batch_size`) never changes with the number of processes: each of
them takes its share, in micro-batches with gradient accumulation where a share does not fit
(distributed.py). The learning rate and drop-path probability are pure functions of the epoch
and step, so a resumed run needs no schedule state.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from itnas import config as config_mod
from itnas.checkpoint import save_weights
from itnas.errors import UserError
from itnas.files import read_json
from itnas.run import Run, StepClock, check_finite
from itnas.runtime import (
    Runtime,
    allocation,
    check_compile,
    describe,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_runtime,
    seed_everything,
    set_deterministic,
)
from itnas.space import Genotype, save_genotype
from itnas.train import distributed as dist_mod
from itnas.train.batches import DeviceBatches, LoaderBatches, TrainData, data_loader, epoch_seed
from itnas.train.distributed import DistContext
from itnas.train.networks import build_network, count_params
from itnas.train.stats import count_macs

log = logging.getLogger(__name__)

# Config keys that do not change what a training computes: a run may resume with other values.
NOT_IDENTITY = ("runtime", "data_root", "selection")
# metrics.json keys tracked as MLflow metrics (results, at the last epoch; the evaluation's are
# in the last epoch's record already) and as params (facts of the run); the rest is configuration.
RESULTS = ("train_loss", "train_acc", "params", "params_with_aux", "macs", "wall_clock_s", "gpu_hours",
           "peak_memory_bytes")
SETTINGS = ("device", "world_size", "micro_batch", "accumulation", "amp", "channels_last", "benchmark",
            "standin", "protocol", "train_size", "genotype_hash")


# ----------------------------------------------------------------------------- config


def make_check(protocol: str | None = None, dataset: str | None = None, world_size: int = 1,
               stage: str = "train") -> Callable[[dict, str], None]:
    """Cross-key rules of a train config, for `config.load_config(..., check=...)`; `stage`
    'select' adds the rules of short-training selection."""

    def check(cfg: dict, source: str) -> None:
        batch, o = cfg["data"]["batch_size"], cfg["optim"]
        if protocol is not None and cfg["protocol"] != protocol:
            raise UserError(f"{source}: key 'protocol': is '{cfg['protocol']}' but dataset '{dataset}' "
                            f"follows the {protocol} protocol (use config/recipes/train_{protocol}.yaml)")
        if batch % world_size:
            raise UserError(f"{source}: key 'data.batch_size': {batch} is not divisible by the "
                            f"{world_size} processes; the global batch must split evenly")
        micro = dist_mod.plan_batches(batch, world_size, cfg["runtime"]["max_batch_per_process"]).micro_batch
        if micro < 2 and cfg["protocol"] == "cifar" and cfg["model"]["auxiliary"]:
            # The CIFAR auxiliary head normalises a 1x1 map: one value per channel and image.
            key = "data.batch_size" if micro == batch // world_size else "runtime.max_batch_per_process"
            raise UserError(f"{source}: key '{key}': batch norm in the auxiliary head cannot train on "
                            f"micro-batches of {micro} image (global batch {batch} over {world_size} "
                            "processes); use at least 2 per process or model.auxiliary: false")
        if o["warmup_epochs"] >= cfg["epochs"]:
            raise UserError(f"{source}: key 'optim.warmup_epochs': {o['warmup_epochs']} must be less than "
                            f"epochs ({cfg['epochs']})")
        if stage == "select" and o["warmup_epochs"] >= cfg["selection"]["epochs"]:
            raise UserError(f"{source}: key 'selection.epochs': {cfg['selection']['epochs']} must be more "
                            f"than optim.warmup_epochs ({o['warmup_epochs']})")
        if o["lr_min"] > o["lr"]:
            raise UserError(f"{source}: key 'optim.lr_min': {o['lr_min']} is above optim.lr ({o['lr']})")
        check_compile(cfg["runtime"]["compile"], f"{source}: key 'runtime.compile'", job="train")
        if cfg["protocol"] == "imagenet" and cfg["runtime"]["pipeline"] == "device":
            raise UserError(f"{source}: key 'runtime.pipeline': 'device' implements the CIFAR protocol only "
                            "(32-px arrays); use auto or loader for ImageNet")
        if cfg["protocol"] == "imagenet" and cfg["model"]["init_channels"] % 2:
            raise UserError(f"{source}: key 'model.init_channels': the ImageNet stem needs an even value, "
                            f"got {cfg['model']['init_channels']}")

    return check


def load_train_config(path: str | Path | None, overrides: list[str] = (), protocol: str | None = None,
                      dataset: str | None = None, world_size: int = 1, stage: str = "train") -> dict:
    return config_mod.load_config(path, "train", overrides,
                                  check=make_check(protocol, dataset, world_size, stage))


# ----------------------------------------------------------------------------- schedules


def learning_rate(cfg: dict, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The lr of step `step` of epoch `epoch` (0-based), a pure function so resumes need no state.

    Warm-up rises linearly to `lr` over `warmup_epochs` (the first step already gets lr/n of the
    way); then `cosine` or `linear` decay reaches `lr_min` at the end of the last epoch.
    """
    o = cfg["optim"]
    lr, lr_min, warm, total = o["lr"], o["lr_min"], o["warmup_epochs"], cfg["epochs"]
    t = epoch + step / steps_per_epoch
    if t < warm:
        return lr * min(1.0, (t + 1.0 / steps_per_epoch) / warm)
    frac = min(1.0, (t - warm) / (total - warm))
    if o["lr_schedule"] == "cosine":
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr_min + (lr - lr_min) * (1.0 - frac)


def drop_path_at(cfg: dict, epoch: int) -> float:
    """Drop-path grows linearly from 0 at the first epoch (as DARTS: prob * epoch / epochs)."""
    return cfg["model"]["drop_path_prob"] * epoch / cfg["epochs"]


# ----------------------------------------------------------------------------- the trainer


def _nothing() -> None:
    pass


class Trainer:
    """One network, its optimiser, its batches and the per-step work; `train()` drives it."""

    kind = "train"

    def __init__(self, cfg: dict, genotype: Genotype, data: TrainData, seed: int, ctx: DistContext | None = None,
                 rt: Runtime | None = None):
        """`rt`: the config's runtime block resolved for one process, if not given."""
        ctx = ctx or DistContext()
        rt = rt or resolve_runtime(cfg["runtime"], "train", distributed=ctx.enabled)
        self.cfg, self.data, self.seed, self.ctx, self.rt = cfg, data, seed, ctx, rt
        m, o, batch = cfg["model"], cfg["optim"], cfg["data"]["batch_size"]
        self.plan = dist_mod.plan_batches(batch, ctx.world_size, rt.max_batch_per_process)
        if len(data.train) // batch == 0:
            raise UserError(f"the training set has {len(data.train)} images, fewer than one global batch "
                            f"of {batch}; lower data.batch_size or raise data.max_train_samples")
        set_deterministic(rt.deterministic)
        seed_everything(seed)  # identical initial weights in every process
        self.model = build_network(genotype, data.protocol, data.num_classes, m["layers"], m["init_channels"],
                                   m["auxiliary"], 0.0, data.in_channels).to(rt.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o["lr"], momentum=o["momentum"],
                                         weight_decay=o["weight_decay"])
        # bf16 needs no loss scaling; the fp16 fallback (GPUs without bf16) does.
        fp16 = rt.amp and rt.device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=fp16)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=o["label_smoothing"])
        # What itnas/accel may replace (`rt.accelerate`): the network as the steps call it, and
        # what happens at the start of every step.
        self.forward_net: torch.nn.Module = self.model
        self.begin_step: Callable[[], None] = _nothing
        rt.accelerate(self)
        self.eval_net = self.forward_net
        # DDP hands rank 0's BatchNorm running statistics to every process at each forward, and
        # `evaluate` does so again after the last one; training normalises with batch statistics,
        # so the gradients never depend on them.
        self.net = (DistributedDataParallel(self.forward_net, device_ids=[rt.device] if rt.device.type == "cuda"
                                            else None) if ctx.enabled else self.forward_net)
        if data.device_train is not None:
            self.batches = DeviceBatches(data, self.plan, seed, ctx.rank)
        else:
            self.batches = LoaderBatches(data, self.plan, seed, ctx.rank, rt.workers, rt.device)
        # Evaluation order is fixed: each process takes every world_size-th image; eval-mode
        # outputs are per image, so the test pass may take larger (fewer) batches.
        shard = list(range(ctx.rank, len(data.evaluation), ctx.world_size))
        size = rt.eval_batch_size or self.plan.micro_batch
        self.eval_loader = data_loader(data.evaluation, [shard[i:i + size] for i in range(0, len(shard), size)],
                                       rt.workers, rt.device, seed)

    # -- checkpoint payload

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict()}

    def restore(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])

    # -- one epoch

    def train_epoch(self, epoch: int, run: Run | None = None) -> dict[str, float]:
        cfg = self.cfg
        # Drop-path masks come from the global RNG: reseeded per (seed, epoch, process), they do
        # not depend on what ran before, so a resumed epoch draws the same masks.
        seed_everything(epoch_seed(self.seed, epoch, self.ctx.rank))
        self.model.drop_path_prob = drop_path_at(cfg, epoch)
        self.model.train()
        steps = self.batches.steps
        batches = self.batches.epoch(epoch)
        totals = [0.0, 0.0, 0.0]  # loss * n, correct, n over the epoch, all processes
        bar = run.progress(steps, f"epoch {epoch + 1}/{cfg['epochs']}") if run is not None else None
        lr0 = learning_rate(cfg, epoch, 0, steps)
        clock = StepClock()
        for step in range(steps):
            lr = learning_rate(cfg, epoch, step, steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            # One all-reduce and one device-to-host copy per step, whatever the accumulation.
            loss_sum, correct, n = dist_mod.all_reduce_tensor(self._step(batches), self.ctx).tolist()
            # Checked after the all-reduce, so every process sees the same NaN and stops together.
            check_finite(loss_sum, epoch, step)
            self._apply()
            clock.tick()
            totals = [totals[0] + loss_sum, totals[1] + correct, totals[2] + n]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / n:.3f}", lr=f"{lr:.3g}", refresh=False)
        if bar is not None:
            bar.close()
        return {"train_loss": totals[0] / totals[2], "train_acc": 100.0 * totals[1] / totals[2], "lr": lr0,
                "drop_path_prob": self.model.drop_path_prob, **clock.record()}

    def _step(self, batches: Iterator) -> torch.Tensor:
        """Forward and backward over this process's micro-batches of one step (no update yet);
        returns (sum of losses, correct predictions, images) as a float64 device tensor."""
        plan, cfg = self.plan, self.cfg
        self.begin_step()  # one CUDA-graph generation per step: the micro-batches accumulate in it
        self.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(3, dtype=torch.float64, device=self.rt.device)
        for k in range(plan.accumulation):
            x, y = self.rt.batch_to(*next(batches))
            last = k == plan.accumulation - 1
            sync = contextlib.nullcontext() if last or not self.ctx.enabled else self.net.no_sync()
            with sync:
                with self.rt.autocast():
                    logits, logits_aux = self.net(x)
                    loss = self.criterion(logits, y)
                    if logits_aux is not None:
                        loss = loss + cfg["model"]["auxiliary_weight"] * self.criterion(logits_aux, y)
                # Each micro-batch loss is a mean over its samples; weighting by its share of the
                # process batch makes the accumulated gradient that of the process-batch mean, and
                # DDP's average over processes makes it that of the global-batch mean.
                self.scaler.scale(loss * (y.shape[0] / plan.per_process)).backward()
            sums[0] += loss.detach().double() * y.shape[0]
            sums[1] += (logits.detach().argmax(1) == y).sum()
            sums[2] += y.shape[0]
        return sums

    def _apply(self) -> None:
        grad_clip = self.cfg["optim"]["grad_clip"]
        if grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss (no label smoothing), top-1 and top-5 error in % on the evaluation set; each process
        takes every world_size-th image and the counts are summed."""
        dist_mod.broadcast_buffers(self.model, self.ctx)
        self.model.eval()
        sums = torch.zeros(4, dtype=torch.float64, device=self.rt.device)  # loss, top-1, top-k, n
        for x, y in self.eval_loader:
            sums += self.eval_batch(*self.rt.batch_to(x, y))
        self.model.train()
        loss, top1, topk, n = dist_mod.all_reduce_tensor(sums, self.ctx).tolist()
        if n == 0:
            raise UserError("the evaluation set is empty")
        return {"loss": loss / n, "top1_err": 100.0 * (1 - top1 / n), "top5_err": 100.0 * (1 - topk / n)}

    @torch.no_grad()
    def eval_batch(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(summed loss, top-1 hits, top-5 hits, images) of one batch, as a float64 device tensor."""
        self.begin_step()
        with self.rt.autocast():
            logits, _ = self.eval_net(x)
        logits = logits.float()
        hits = logits.topk(min(5, self.data.num_classes), dim=1).indices == y[:, None]
        images = torch.full((), y.shape[0], dtype=torch.float64, device=y.device)
        return torch.stack([F.cross_entropy(logits, y, reduction="sum").double(), hits[:, 0].sum().double(),
                            hits.any(dim=1).sum().double(), images])


# ----------------------------------------------------------------------------- one run


def run_identity(cfg: dict, genotype: Genotype, data: TrainData, seed: int, stage: str) -> dict:
    """What must match for a resume: the recipe, the cell, the data and the seed."""
    return {"stage": stage, "config": {k: v for k, v in cfg.items() if k not in NOT_IDENTITY},
            "genotype": genotype.to_json(), "dataset": data.dataset, "seed": seed,
            "train_size": len(data.train), "eval_size": len(data.evaluation)}


def train(cfg: dict, genotype: Genotype, label: str, data: TrainData, out: str | Path, seed: int,
          rt: Runtime | None = None, ctx: DistContext | None = None, stage: str = "train",
          eval_name: str = "test", run_name: str | None = None, tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Train (or resume) one network in `out` and return its metrics (also `out/metrics.json`).

    `label` names the cell (a published name, or the `name` of its genotype file) in
    genotype.json, metrics.json and the MLflow run, which `run_name` and `tags` may name and tag
    otherwise; `tags["label"]` (default `label`) is what the run is filed under, recorded as
    metrics.json's `label`. `rt` is the config's runtime block resolved (done here when not given);
    `eval_name` prefixes the evaluation keys: `test` for `itnas train`, `valid` when the
    evaluation set is a held-out part of the training set (`itnas select`).
    """
    ctx = ctx or DistContext()
    rt = rt or resolve_runtime(cfg["runtime"], "train", distributed=ctx.enabled)
    if data.protocol != cfg["protocol"]:
        raise UserError(f"dataset '{data.dataset}' follows the {data.protocol} protocol but the config "
                        f"says '{cfg['protocol']}'")
    trainer = Trainer(cfg, genotype, data, seed, ctx, rt)
    tags = {"stage": stage, "dataset": data.dataset, "benchmark": data.benchmark, "label": label,
            "genotype_hash": genotype.hash(), "seed": str(seed), "standin": str(data.standin).lower(),
            **(tags or {})}
    params = {**config_mod.flatten(cfg), "genotype": label, "dataset": data.dataset, "seed": seed}
    run = Run(out, run_identity(cfg, genotype, data, seed, stage), stage,
              run_name or f"{stage} {label} {data.dataset} seed{seed}", params, tags, rt.progress,
              is_main=ctx.is_main)
    epochs = cfg["epochs"]
    with run:
        if ctx.is_main:
            save_genotype(run.path / "genotype.json", genotype, name=label)
        dist_mod.barrier(ctx)
        start = run.resume(trainer.restore)
        finished = start == epochs and run.dir.metrics.exists() and (run.path / "model.pt").exists()
        if dist_mod.broadcast_flag(finished, ctx, rt.device):
            if ctx.is_main:
                log.info("%s %s on %s (seed %d) already finished in %s", stage, label, data.dataset, seed, run.path)
            return read_json(run.dir.metrics, "metrics") if ctx.is_main else {}
        run.track()
        reset_peak_memory(rt.device)
        if ctx.is_main:
            log.info("%s %s [%s] on %s%s, seed %d, %d process(es) x %d micro-batch(es) of %d = global batch %d, "
                     "%s; %s", stage, label, genotype.hash(), data.dataset, " (STAND-IN)" if data.standin else "",
                     seed, ctx.world_size, trainer.plan.accumulation, trainer.plan.micro_batch,
                     cfg["data"]["batch_size"], rt.describe(),
                     f"resuming at epoch {start + 1}/{epochs}" if start else f"{epochs} epochs")
        for epoch in range(start, epochs):
            t0 = time.monotonic()
            record = trainer.train_epoch(epoch, run)
            if (epoch + 1) % rt.eval_every == 0 or epoch + 1 == epochs:
                record.update({f"{eval_name}_{k}": v for k, v in trainer.evaluate().items()})
            else:
                dist_mod.broadcast_buffers(trainer.model, ctx)
            record["epoch_s"] = time.monotonic() - t0
            run.end_epoch(epoch, record, trainer.state())
            if ctx.is_main:
                log.info(_epoch_line(epoch, epochs, record, eval_name))
            dist_mod.barrier(ctx)
        dist_mod.broadcast_buffers(trainer.model, ctx)
        metrics = _final_metrics(cfg, genotype, label, data, seed, ctx, trainer, run, eval_name) if ctx.is_main else {}
        # Peak memory is the largest of any process (a collective, so every process takes part).
        peak = dist_mod.all_reduce_max(float(peak_memory_bytes(rt.device)), ctx, rt.device)
        if ctx.is_main:
            metrics["peak_memory_bytes"] = int(peak)
            metrics["label"] = tags["label"]  # what the run is filed under (`itnas train --label`)
            save_weights(run.path / "model.pt", trainer.model.state_dict())
            run.finish(metrics, artifacts=("genotype.json",), results=RESULTS, settings=SETTINGS)
            log.info("%s done: %s", stage, _final_line(metrics, eval_name))
        dist_mod.barrier(ctx)
    return metrics


def _epoch_line(epoch: int, epochs: int, r: dict, eval_name: str) -> str:
    line = (f"epoch {epoch + 1}/{epochs}  loss {r['train_loss']:.4f}  train acc {r['train_acc']:.2f}%  "
            f"lr {r['lr']:.4g}  drop-path {r['drop_path_prob']:.3f}")
    if f"{eval_name}_top1_err" in r:
        line += (f"  {eval_name} err {r[f'{eval_name}_top1_err']:.2f}% "
                 f"(top-5 {r[f'{eval_name}_top5_err']:.2f}%)")
    return line + f"  {r['epoch_s']:.1f}s"


def _final_line(m: dict, eval_name: str) -> str:
    return (f"{eval_name} top-1 error {m[f'{eval_name}_top1_err']:.2f}%, top-5 {m[f'{eval_name}_top5_err']:.2f}%, "
            f"{m['params'] / 1e6:.3f}M params, {m['macs'] / 1e6:.1f}M MACs, {m['wall_clock_s']:.0f}s")


def _final_metrics(cfg: dict, genotype: Genotype, label: str, data: TrainData, seed: int, ctx: DistContext,
                   trainer: Trainer, run: Run, eval_name: str) -> dict[str, Any]:
    last = run.history[-1]
    wall = run.wall_clock()
    model, rt = trainer.model, trainer.rt
    # MACs on a CPU float32 copy in eval mode, so the live model and its statistics are untouched.
    probe = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float()
    macs = count_macs(probe, data.image_size, data.in_channels)
    return {
        f"{eval_name}_top1_err": last[f"{eval_name}_top1_err"],
        f"{eval_name}_top5_err": last[f"{eval_name}_top5_err"],
        f"{eval_name}_loss": last[f"{eval_name}_loss"],
        "train_loss": last["train_loss"], "train_acc": last["train_acc"],
        "params": count_params(model), "params_with_aux": count_params(model, with_aux=True), "macs": macs,
        "epochs": cfg["epochs"], "wall_clock_s": wall,
        "gpu_hours": wall * ctx.world_size / 3600.0 if rt.device.type == "cuda" else 0.0,
        "device": describe(rt.device), "world_size": ctx.world_size,
        "allocation": allocation(),
        "global_batch": cfg["data"]["batch_size"], "micro_batch": trainer.plan.micro_batch,
        "accumulation": trainer.plan.accumulation, "amp": rt.amp, "channels_last": rt.channels_last,
        "dataset": data.dataset, "benchmark": data.benchmark, "standin": data.standin,
        "protocol": data.protocol, "layers": cfg["model"]["layers"], "init_channels": cfg["model"]["init_channels"],
        "genotype": label, "genotype_hash": genotype.hash(), "seed": seed,
        "train_size": len(data.train), f"{eval_name}_size": len(data.evaluation),
    }
