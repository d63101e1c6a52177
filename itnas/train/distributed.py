"""Multi-process training under torchrun: process-group setup from the environment (NCCL on GPU,
gloo on CPU), the split of a global batch into per-process micro-batches, and small collectives.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from itnas.errors import UserError
from itnas.runtime import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands among the training processes (world_size 1: no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class BatchPlan:
    """How one optimiser step's global batch is shared out."""

    global_batch: int
    world_size: int
    per_process: int  # global_batch / world_size samples per process and step
    accumulation: int  # micro-batches per process and step
    micro_batch: int  # per_process / accumulation


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None


def plan_batches(global_batch: int, world_size: int, max_per_process: int | None) -> BatchPlan:
    """Split `global_batch` over `world_size` processes, each accumulating equal micro-batches of at
    most `max_per_process` samples; the global batch itself never changes."""
    if global_batch % world_size:
        raise UserError(f"batch_size {global_batch} is not divisible by the {world_size} processes; "
                        "the global batch must split evenly")
    per = global_batch // world_size
    limit = per if not max_per_process else min(per, int(max_per_process))
    # The smallest number of equal micro-batches that fit the limit: equal sizes keep every
    # BatchNorm statistic over the same number of samples whatever the process count.
    accumulation = next(k for k in range(-(-per // limit), per + 1) if per % k == 0)
    return BatchPlan(global_batch, world_size, per, accumulation, per // accumulation)


def init_from_env(device_spec: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    rank, world, local_rank = env_world()
    device = resolve_device(device_spec)
    if device.type == "cuda" and device.index is None and world > 1:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                device_id=device if device.type == "cuda" else None)
    return DistContext(rank, world, local_rank), device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_tensor(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over all processes in place (a no-op for one process)."""
    if ctx.enabled:
        dist.all_reduce(t)
    return t


def all_reduce_max(value: float, ctx: DistContext, device: torch.device) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Give every process rank 0's BatchNorm running statistics (each process updated its own
    from its own micro-batches); evaluation and checkpoints then agree across processes."""
    if not ctx.enabled:
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=0)


def broadcast_flag(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Rank 0's boolean, everywhere (e.g. 'a checkpoint exists')."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def torchrun_argv(nproc: int, argv: list[str]) -> list[str]:
    """The command that re-runs `itnas <argv>` under torchrun with `nproc` processes on this node."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "itnas.cli", *argv]
