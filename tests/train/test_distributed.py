"""Multi-process training: two gloo processes on CPU, started by `itnas train --nproc 2` through
torchrun, update the weights as one process accumulating the same micro-batches does, because the
global batch, the learning rate, the batch order and each image's augmentation never depend on the
number of processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from itnas.checkpoint import load_weights
from itnas.cli import main
from itnas.train.distributed import DistContext, init_from_env, torchrun_argv

TINY = ["--set", "epochs=1", "--set", "data.batch_size=16", "--set", "model.layers=5", "--set", "model.init_channels=4",
        "--set", "data.max_train_samples=32", "--set", "data.max_test_samples=16", "--set", "runtime.workers=0",
        # Each process draws its own drop-path masks, so only drop-path-free runs can match.
        "--set", "model.drop_path_prob=0", "--set", "optim.lr=0.1"]


def _args(out, root, *extra):
    return ["train", "--config", "config/recipes/train_cifar.yaml", "--genotype", "DARTS_V2", "--dataset",
            "synthetic-cifar10", "--seed", "0", "--out", str(out), "--data-root", str(root), *TINY, *extra]


def test_two_gloo_processes_match_one_process_accumulating_the_same_micro_batches(tmp_path, standin_root):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-m", "itnas.cli", "-q", *_args(tmp_path / "ddp", standin_root),
                           "--nproc", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
    # One process, the same global batch of 16 as two micro-batches of 8 (one per process above).
    assert main(["-q", *_args(tmp_path / "one", standin_root, "--set", "runtime.max_batch_per_process=8")]) == 0
    # And one process with whole batches: BatchNorm sees other statistics, so it must differ.
    assert main(["-q", *_args(tmp_path / "whole", standin_root)]) == 0

    ddp, one, whole = (load_weights(tmp_path / d / "model.pt") for d in ("ddp", "one", "whole"))
    params = [k for k in one if "running" not in k and "num_batches" not in k]
    for k in params:
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    assert any(not torch.allclose(whole[k], one[k], rtol=1e-5, atol=1e-6) for k in params)
    m_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    m_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert (m_ddp["world_size"], m_ddp["global_batch"], m_ddp["micro_batch"], m_ddp["accumulation"]) == (2, 16, 8, 1)
    assert (m_one["world_size"], m_one["global_batch"], m_one["micro_batch"], m_one["accumulation"]) == (1, 16, 8, 2)
    # The training loss is summed over all processes: the same images, the same losses.
    assert abs(m_ddp["train_loss"] - m_one["train_loss"]) < 1e-5


def test_outside_torchrun_there_is_one_process_and_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx, device = init_from_env("cpu")
    assert ctx == DistContext(0, 1, 0) and not ctx.enabled and ctx.is_main and device.type == "cpu"
    assert not torch.distributed.is_initialized()


def test_nproc_reruns_the_same_command_under_torchrun():
    argv = torchrun_argv(4, ["train", "--seed", "1"])
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in argv and argv[-4:] == ["itnas.cli", "train", "--seed", "1"]


def test_nproc_forwards_every_other_argument_unchanged():
    from itnas.cli import build_parser
    from itnas.cli.common import forwarded_argv

    argv = ["-q", "train", "--config", "c.yaml", "--set", "epochs=2", "--set", "optim.lr=0.1", "--dataset", "cifar10",
            "--seed", "3", "--data-root", "d", "--device", "cuda", "--nproc", "4", "--genotype", "G",
            "--out", "o", "--json"]
    args = build_parser().parse_args(argv)
    again = forwarded_argv(args, "train", ["--genotype", "G", "--out", "o", "--json"])
    assert "--nproc" not in again
    reparsed = build_parser().parse_args(again)
    assert {k: v for k, v in vars(reparsed).items() if k != "nproc"} == \
        {k: v for k, v in vars(args).items() if k != "nproc"}
    assert reparsed.nproc == 1
