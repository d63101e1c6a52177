"""Training of one evaluation network under the CIFAR or ImageNet protocol (SPEC section 7): the
loop shared by `itnas train` and `itnas select`, its schedules, batching, checkpoints and metrics.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from itnas import config as config_mod
from itnas import distributed as dist_mod
from itnas import tracking
from itnas.device import (
    allocation,
    autocast,
    batch_to,
    compile_mode,
    compile_module,
    cuda_graph_step_begin,
    describe,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_flag,
    seed_everything,
    set_deterministic,
    uses_cuda_graphs,
)
from itnas.distributed import BatchPlan, DistContext
from itnas.errors import UserError
from itnas.formats import read_json, save_genotype
from itnas.genotypes import Genotype
from itnas.loop import RunDir, check_finite, json_safe
from itnas.networks import build_network, count_params

log = logging.getLogger(__name__)

# Settings that only say how to run, not what is trained: a run may be resumed with other values
# (at the price of bit-identity where they change the arithmetic, e.g. the micro-batch size).
RUNTIME_KEYS = frozenset({"data_root", "device", "workers", "compile", "max_batch_per_process", "eval_batch_size",
                          "deterministic", "eval_every", "selection"})


# ----------------------------------------------------------------------------- config


def make_check(protocol: str | None = None, dataset: str | None = None, world_size: int = 1,
               stage: str = "train") -> Callable[[dict, str], None]:
    """Cross-key rules of a train config, for `config.load_config(..., check=...)`; `stage`
    'select' adds the rules of short-training selection."""

    def check(cfg: dict, source: str) -> None:
        if protocol is not None and cfg["protocol"] != protocol:
            raise UserError(f"{source}: key 'protocol': is '{cfg['protocol']}' but dataset '{dataset}' "
                            f"follows the {protocol} protocol (use config/train_{protocol}.yaml)")
        if cfg["batch_size"] % world_size:
            raise UserError(f"{source}: key 'batch_size': {cfg['batch_size']} is not divisible by the "
                            f"{world_size} processes; the global batch must split evenly")
        if cfg["warmup_epochs"] >= cfg["epochs"]:
            raise UserError(f"{source}: key 'warmup_epochs': {cfg['warmup_epochs']} must be less than "
                            f"epochs ({cfg['epochs']})")
        if stage == "select" and cfg["warmup_epochs"] >= cfg["selection"]["epochs"]:
            raise UserError(f"{source}: key 'selection.epochs': {cfg['selection']['epochs']} must be more "
                            f"than warmup_epochs ({cfg['warmup_epochs']})")
        if cfg["lr_min"] > cfg["lr"]:
            raise UserError(f"{source}: key 'lr_min': {cfg['lr_min']} is above lr ({cfg['lr']})")
        if cfg["protocol"] == "imagenet" and cfg["pipeline"] == "device":
            raise UserError(f"{source}: key 'pipeline': 'device' implements the CIFAR protocol only "
                            "(32-px arrays); use auto or loader for ImageNet")
        if cfg["protocol"] == "imagenet" and cfg["init_channels"] % 2:
            raise UserError(f"{source}: key 'init_channels': the ImageNet stem needs an even value, "
                            f"got {cfg['init_channels']}")

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
    lr, lr_min, warm, total = cfg["lr"], cfg["lr_min"], cfg["warmup_epochs"], cfg["epochs"]
    t = epoch + step / steps_per_epoch
    if t < warm:
        return lr * min(1.0, (t + 1.0 / steps_per_epoch) / warm)
    frac = min(1.0, (t - warm) / (total - warm))
    if cfg["lr_schedule"] == "cosine":
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr_min + (lr - lr_min) * (1.0 - frac)


def drop_path_at(cfg: dict, epoch: int) -> float:
    """Drop-path grows linearly from 0 at the first epoch (as DARTS: prob * epoch / epochs)."""
    return cfg["drop_path_prob"] * epoch / cfg["epochs"]


# ----------------------------------------------------------------------------- batching


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed seed per (run seed, epoch, process)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_batches(n: int, plan: BatchPlan, seed: int, epoch: int, rank: int) -> list[list[list[int]]]:
    """This process's micro-batches for every step of one epoch: a shuffle of all `n` indices that
    depends only on (seed, epoch), cut into global batches (the last partial one dropped), each
    split into `world_size` contiguous shares and each share into `accumulation` micro-batches."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).tolist()
    steps = n // plan.global_batch
    out = []
    for s in range(steps):
        start = s * plan.global_batch + rank * plan.per_process
        share = order[start:start + plan.per_process]
        out.append([share[k * plan.micro_batch:(k + 1) * plan.micro_batch] for k in range(plan.accumulation)])
    return out


@dataclass
class TrainData:
    """What the loop trains on and evaluates against (the test set, or a held-out split).

    `keyed` datasets (those of `itnas.data`) take `(index, sample_seed)` keys and draw their
    augmentation from the sample seed; plain datasets (tests) take indices. `device_train`, when
    set, is a `DeviceDataset` holding the training images on the GPU, `device_indices` the part
    of it that `train` stands for.
    """

    train: Dataset
    evaluation: Dataset
    num_classes: int
    protocol: str
    in_channels: int
    image_size: int
    dataset: str
    standin: bool = False
    benchmark: str | None = None
    keyed: bool = False
    device_train: Any = None
    device_indices: list[int] | None = None
    cutout: int = 0


def make_data(spec: Any, cfg: dict, data_root: str, device: torch.device, train: Dataset,
              train_indices: list[int] | None, evaluation: Dataset) -> TrainData:
    """TrainData over `train_indices` of `train`, the augmented training set (None: all of it)."""
    from itnas.data.gpu_pipeline import use_device_pipeline
    from itnas.data.loaders import KeyedSubset

    if train_indices is not None:
        train = KeyedSubset(train, train_indices)
    data = TrainData(train, evaluation, spec.num_classes, spec.protocol, spec.channels, spec.image_size,
                     spec.name, bool(spec.standin), spec.benchmark, keyed=True, cutout=cfg["cutout"])
    if use_device_pipeline(cfg["pipeline"], spec, device):
        from itnas.data import DeviceDataset

        data.device_train = DeviceDataset.from_name(spec.name, data_root, "train", device)
        data.device_indices = train_indices
    return data


def load_data(dataset: str, cfg: dict, data_root: str, seed: int = 0,
              device: torch.device | None = None) -> TrainData:
    """The training set (at most `max_train_samples`, a seeded choice) and the test set (its first
    `max_test_samples`) of `dataset`, with the protocol's augmentation on the training set."""
    from itnas.data import build_dataset, get_spec
    from itnas.data.loaders import subset

    spec = get_spec(dataset)
    train = build_dataset(spec.name, data_root, "train", augment=True, cutout=cfg["cutout"])
    chosen = getattr(subset(train, cfg["max_train_samples"], seed), "indices", None)
    test = limit(build_dataset(spec.name, data_root, "test", augment=False), cfg["max_test_samples"])
    return make_data(spec, cfg, data_root, device or torch.device("cpu"), train, chosen, test)


def limit(dataset: Dataset, n: int | None) -> Dataset:
    """The first `n` items (smoke runs); the whole set when `n` is None or larger."""
    if n is None or n >= len(dataset):
        return dataset
    return Subset(dataset, range(n))


class _EpochBatchSampler:
    """This process's micro-batches of one epoch (`epoch_batches`), as sampler keys."""

    def __init__(self, n: int, plan: BatchPlan, seed: int, rank: int, keyed: bool):
        self.n, self.plan, self.seed, self.rank, self.keyed = n, plan, seed, rank, keyed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        from itnas.data.loaders import mix_seed

        for step in epoch_batches(self.n, self.plan, self.seed, self.epoch, self.rank):
            for micro in step:
                # The sample seed is the one `itnas.data`'s EpochSampler would give: augmentation
                # is a function of (seed, epoch, index) only, whichever process reads the image.
                yield [(i, mix_seed(self.seed, self.epoch, i)) for i in micro] if self.keyed else micro

    def __len__(self) -> int:
        return (self.n // self.plan.global_batch) * self.plan.accumulation


class LoaderBatches:
    """Training micro-batches through a DataLoader; workers persist across epochs."""

    def __init__(self, data: TrainData, plan: BatchPlan, seed: int, rank: int, workers: int,
                 device: torch.device):
        self.steps = len(data.train) // plan.global_batch
        self.sampler = _EpochBatchSampler(len(data.train), plan, seed, rank, data.keyed)
        self.loader = _loader(data.train, self.sampler, workers, device, seed)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        return iter(self.loader)


class DeviceBatches:
    """Training micro-batches from a GPU-resident dataset: every process draws the whole global
    batch (cheap on the device, and identical everywhere) and keeps its share."""

    def __init__(self, data: TrainData, plan: BatchPlan, seed: int, rank: int):
        from itnas.data import DeviceLoader

        self.plan, self.rank = plan, rank
        self.steps = len(data.train) // plan.global_batch
        self.loader = DeviceLoader(data.device_train, plan.global_batch, seed, shuffle=True, augment=True,
                                   cutout=data.cutout, drop_last=True, indices=data.device_indices)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.loader.set_epoch(epoch)
        plan = self.plan
        for x, y in self.loader:
            lo = self.rank * plan.per_process
            for k in range(plan.accumulation):
                a, b = lo + k * plan.micro_batch, lo + (k + 1) * plan.micro_batch
                yield x[a:b], y[a:b]


def _loader(dataset: Dataset, batch_sampler: Any, workers: int, device: torch.device, seed: int) -> DataLoader:
    extra: dict[str, Any] = {}
    if workers > 0:
        from itnas.data.loaders import seed_worker

        extra = {"persistent_workers": True, "worker_init_fn": seed_worker, "prefetch_factor": 4}
    return DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed), **extra)


# ----------------------------------------------------------------------------- the loop


class Trainer:
    """One network, its optimiser, its batches and the per-step work; `train()` drives it."""

    def __init__(self, cfg: dict, genotype: Genotype, data: TrainData, seed: int,
                 ctx: DistContext, device: torch.device):
        self.cfg, self.data, self.seed, self.ctx, self.device = cfg, data, seed, ctx, device
        self.plan = dist_mod.plan_batches(cfg["batch_size"], ctx.world_size, cfg["max_batch_per_process"])
        self.steps_per_epoch = len(data.train) // cfg["batch_size"]
        if self.steps_per_epoch == 0:
            raise UserError(f"the training set has {len(data.train)} images, fewer than one global batch "
                            f"of {cfg['batch_size']}; lower batch_size or raise max_train_samples")
        self.amp = resolve_flag(cfg["amp"], device, "amp")
        self.channels_last = resolve_flag(cfg["channels_last"], device, "channels_last")
        self.compile_mode = compile_mode(cfg["compile"], device=device, job="train", distributed=ctx.enabled)
        self.cuda_graphs = uses_cuda_graphs(self.compile_mode)
        set_deterministic(cfg["deterministic"])
        seed_everything(seed)  # identical initial weights in every process
        self.model = build_network(genotype, data.protocol, data.num_classes, cfg["layers"],
                                   cfg["init_channels"], cfg["auxiliary"], 0.0, data.in_channels).to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                         weight_decay=cfg["weight_decay"])
        # bf16 needs no loss scaling; the fp16 fallback (GPUs without bf16) does.
        fp16 = self.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        net: torch.nn.Module = compile_module(self.model, self.compile_mode)
        self.eval_net = net
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # DDP hands rank 0's BatchNorm running statistics to every process at each forward, and
            # `evaluate` does so again after the last one; training normalises with batch
            # statistics, so the gradients never depend on them.
            net = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
        self.net = net
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg["label_smoothing"])
        if data.device_train is not None:
            self.batches = DeviceBatches(data, self.plan, seed, ctx.rank)
        else:
            self.batches = LoaderBatches(data, self.plan, seed, ctx.rank, cfg["workers"], device)
        # Evaluation order is fixed: each process takes every world_size-th image.
        shard = list(range(ctx.rank, len(data.evaluation), ctx.world_size))
        # Eval-mode outputs are per image, so the test pass may take larger (fewer) batches.
        size = cfg["eval_batch_size"] or self.plan.micro_batch
        self.eval_loader = _loader(data.evaluation, [shard[i:i + size] for i in range(0, len(shard), size)],
                                   cfg["workers"], device, seed)

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

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return batch_to(x, y, self.device, self.channels_last)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        # Drop-path masks come from the global RNG: reseeded per (seed, epoch, process), they do
        # not depend on what ran before, so a resumed epoch draws the same masks.
        seed_everything(epoch_seed(self.seed, epoch, self.ctx.rank))
        self.model.drop_path_prob = drop_path_at(cfg, epoch)
        self.model.train()
        steps = self.batches.steps
        batches = self.batches.epoch(epoch)
        totals = [0.0, 0.0, 0.0]  # loss * n, correct, n over the epoch, all processes
        progress = _progress(steps, f"epoch {epoch + 1}/{cfg['epochs']}", self.ctx)
        lr0 = learning_rate(cfg, epoch, 0, steps)
        for step in range(steps):
            lr = learning_rate(cfg, epoch, step, steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            # One all-reduce and one device-to-host copy per step, whatever the accumulation.
            loss_sum, correct, n = dist_mod.all_reduce_tensor(self._step(batches), self.ctx).tolist()
            # Checked after the all-reduce, so every process sees the same NaN and stops together.
            check_finite(loss_sum, epoch, step)
            self._apply()
            totals = [totals[0] + loss_sum, totals[1] + correct, totals[2] + n]
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum / n:.3f}", lr=f"{lr:.3g}", refresh=False)
        progress.close()
        return {"loss": totals[0] / totals[2], "acc": 100.0 * totals[1] / totals[2], "lr": lr0,
                "drop_path_prob": self.model.drop_path_prob}

    def _step(self, batches: Iterator) -> torch.Tensor:
        """Forward and backward over this process's micro-batches of one step (no update yet);
        returns (sum of losses, correct predictions, images) as a float64 device tensor."""
        plan, cfg = self.plan, self.cfg
        if self.cuda_graphs:
            # One generation per step: the micro-batches' gradients accumulate within it.
            cuda_graph_step_begin()
        self.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for k in range(plan.accumulation):
            x, y = self._to_device(*next(batches))
            last = k == plan.accumulation - 1
            sync = contextlib.nullcontext() if last or not self.ctx.enabled else self.net.no_sync()
            with sync:
                with autocast(self.device, self.amp):
                    logits, logits_aux = self.net(x)
                    loss = self.criterion(logits, y)
                    if logits_aux is not None:
                        loss = loss + cfg["auxiliary_weight"] * self.criterion(logits_aux, y)
                # Each micro-batch loss is a mean over its samples; weighting by its share of the
                # process batch makes the accumulated gradient that of the process-batch mean, and
                # DDP's average over processes makes it that of the global-batch mean.
                self.scaler.scale(loss * (y.shape[0] / plan.per_process)).backward()
            sums[0] += loss.detach().double() * y.shape[0]
            sums[1] += (logits.detach().argmax(1) == y).sum()
            sums[2] += y.shape[0]
        return sums

    def _apply(self) -> None:
        if self.cfg["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss (no label smoothing), top-1 and top-5 error in % on the evaluation set; each process
        takes every world_size-th image and the counts are summed."""
        dist_mod.broadcast_buffers(self.model, self.ctx)
        self.model.eval()
        k = min(5, self.data.num_classes)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, top-1, top-k, n
        for x, y in self.eval_loader:
            x, y = self._to_device(x, y)
            if self.cuda_graphs:
                cuda_graph_step_begin()
            with autocast(self.device, self.amp):
                logits, _ = self.eval_net(x)
            logits = logits.float()
            hits = logits.topk(k, dim=1).indices == y[:, None]
            sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
            sums[1] += hits[:, 0].sum()
            sums[2] += hits.any(dim=1).sum()
            sums[3] += y.shape[0]
        self.model.train()
        loss, top1, topk, n = dist_mod.all_reduce_tensor(sums, self.ctx).tolist()
        if n == 0:
            raise UserError("the evaluation set is empty")
        return {"loss": loss / n, "top1_err": 100.0 * (1 - top1 / n), "top5_err": 100.0 * (1 - topk / n)}


def _progress(total: int, desc: str, ctx: DistContext):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, file=sys.stderr,
                disable=not ctx.is_main or not sys.stderr.isatty())


def run_identity(cfg: dict, genotype: Genotype, data: TrainData, seed: int, stage: str) -> dict:
    """What must match for a resume: the recipe, the cell, the data and the seed."""
    return {"stage": stage, "config": {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS},
            "genotype": genotype.to_json(), "dataset": data.dataset, "seed": seed,
            "train_size": len(data.train), "eval_size": len(data.evaluation)}


def train(cfg: dict, genotype: Genotype, label: str, data: TrainData, out: str | Path, seed: int,
          ctx: DistContext | None = None, device: torch.device | None = None, stage: str = "train",
          eval_name: str = "test") -> dict[str, Any]:
    """Train (or resume) one network in `out` and return its metrics (also `out/metrics.json`).

    `eval_name` prefixes the evaluation keys: `test` for `itnas train`, `valid` when the
    evaluation set is a held-out part of the training set (`itnas select`).
    """
    ctx = ctx or DistContext()
    device = device or torch.device("cpu")
    if data.protocol != cfg["protocol"]:
        raise UserError(f"dataset '{data.dataset}' follows the {data.protocol} protocol but the config "
                        f"says '{cfg['protocol']}'")
    trainer = Trainer(cfg, genotype, data, seed, ctx, device)
    run = RunDir(Path(out), run_identity(cfg, genotype, data, seed, stage))
    if ctx.is_main:
        run.claim()
        save_genotype(run.path / "genotype.json", genotype, name=label)
    dist_mod.barrier(ctx)
    start = run.resume(trainer.restore)
    epochs = cfg["epochs"]
    finished = start == epochs and run.metrics.exists() and (run.path / "model.pt").exists()
    if dist_mod.broadcast_flag(finished, ctx, device):
        if ctx.is_main:
            log.info("%s %s on %s (seed %d) already finished in %s", stage, label, data.dataset, seed, run.path)
        return read_json(run.metrics, "metrics") if ctx.is_main else {}
    reset_peak_memory(device)
    what = (f"{stage} {label} [{genotype.hash()}] on {data.dataset}{' (STAND-IN)' if data.standin else ''}, "
            f"seed {seed}, {ctx.world_size} process(es) x {trainer.plan.accumulation} micro-batch(es) "
            f"of {trainer.plan.micro_batch} = global batch {cfg['batch_size']}, device {device}"
            f"{', bf16' if trainer.amp else ''}{', channels-last' if trainer.channels_last else ''}")
    if ctx.is_main:
        log.info("%s; %s", what, f"resuming at epoch {start + 1}/{epochs}" if start else f"{epochs} epochs")
    tags = {"stage": stage, "dataset": data.dataset, "genotype": label, "genotype_hash": genotype.hash(),
            "seed": str(seed), "standin": str(data.standin).lower()}
    params = {**cfg, "genotype": label, "dataset": data.dataset, "seed": seed, "world_size": ctx.world_size}
    tracker = (tracking.start_run(stage, f"{stage}-{label}-{data.dataset}-s{seed}", params, tags,
                                  artifacts_dir=run.path)
               if ctx.is_main else contextlib.nullcontext(tracking.NullRun()))
    with tracker as track:
        for epoch in range(start, epochs):
            t0 = time.monotonic()
            record = trainer.train_epoch(epoch)
            if (epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == epochs:
                record.update({f"{eval_name}_{k}": v for k, v in trainer.evaluate().items()})
            else:
                dist_mod.broadcast_buffers(trainer.model, ctx)
            record["time_s"] = time.monotonic() - t0
            if ctx.is_main:
                run.end_epoch(epoch, json_safe(record), trainer.state())
                track.log_metrics({k: v for k, v in record.items() if isinstance(v, float)}, step=epoch + 1)
                log.info(_epoch_line(epoch, epochs, record, eval_name))
            dist_mod.barrier(ctx)
        dist_mod.broadcast_buffers(trainer.model, ctx)
        metrics = None
        if ctx.is_main:
            metrics = _final_metrics(cfg, genotype, label, data, seed, ctx, device, trainer, run, eval_name)
        # Peak memory is the largest of any process (a collective, so every process takes part).
        peak = dist_mod.all_reduce_max(float(peak_memory_bytes(device)), ctx, device)
        if ctx.is_main:
            from itnas.checkpoint import save_weights

            metrics["peak_memory_bytes"] = int(peak)
            save_weights(run.path / "model.pt", trainer.model.state_dict())
            run.finish(json_safe(metrics))
            track.log_metrics({k: float(v) for k, v in metrics.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool)})
            log.info("%s done: %s", stage, _final_line(metrics, eval_name))
        dist_mod.barrier(ctx)
    return metrics or {}


def _epoch_line(epoch: int, epochs: int, r: dict, eval_name: str) -> str:
    line = (f"epoch {epoch + 1}/{epochs}  loss {r['loss']:.4f}  train acc {r['acc']:.2f}%  "
            f"lr {r['lr']:.4g}  drop-path {r['drop_path_prob']:.3f}")
    if f"{eval_name}_top1_err" in r:
        line += (f"  {eval_name} err {r[f'{eval_name}_top1_err']:.2f}% "
                 f"(top-5 {r[f'{eval_name}_top5_err']:.2f}%)")
    return line + f"  {r['time_s']:.1f}s"


def _final_line(m: dict, eval_name: str) -> str:
    return (f"{eval_name} top-1 error {m[f'{eval_name}_top1_err']:.2f}%, top-5 {m[f'{eval_name}_top5_err']:.2f}%, "
            f"{m['params'] / 1e6:.3f}M params, {m['macs'] / 1e6:.1f}M MACs, {m['wall_clock_s']:.0f}s")


def _final_metrics(cfg: dict, genotype: Genotype, label: str, data: TrainData, seed: int, ctx: DistContext,
                   device: torch.device, trainer: Trainer, run: RunDir, eval_name: str) -> dict[str, Any]:
    from itnas.stats import count_macs

    last = run.history[-1]
    wall = run.wall_clock()
    model = trainer.model
    # MACs on a CPU float32 copy in eval mode, so the live model and its statistics are untouched.
    probe = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float()
    macs = count_macs(probe, data.image_size, data.in_channels)
    return {
        f"{eval_name}_top1_err": last[f"{eval_name}_top1_err"],
        f"{eval_name}_top5_err": last[f"{eval_name}_top5_err"],
        f"{eval_name}_loss": last[f"{eval_name}_loss"],
        "train_loss": last["loss"], "train_acc": last["acc"],
        "params": count_params(model), "params_with_aux": count_params(model, with_aux=True), "macs": macs,
        "epochs": cfg["epochs"], "wall_clock_s": wall,
        "gpu_hours": wall * ctx.world_size / 3600.0 if device.type == "cuda" else 0.0,
        "device": describe(device), "world_size": ctx.world_size,
        "allocation": allocation(),
        "global_batch": cfg["batch_size"], "micro_batch": trainer.plan.micro_batch,
        "accumulation": trainer.plan.accumulation, "amp": trainer.amp, "channels_last": trainer.channels_last,
        "dataset": data.dataset, "benchmark": data.benchmark, "standin": data.standin,
        "protocol": data.protocol, "layers": cfg["layers"], "init_channels": cfg["init_channels"],
        "genotype": label, "genotype_hash": genotype.hash(), "seed": seed,
        "train_size": len(data.train), f"{eval_name}_size": len(data.evaluation),
    }
