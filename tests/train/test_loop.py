"""The training loop: outputs, bit-identical resume, schedules, batch splitting, NaN guard."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from itnas.checkpoint import load_checkpoint, load_weights
from itnas.errors import TrainingDivergedError, UserError
from itnas.genotypes import lookup
from itnas.run import TIMING_KEYS
from itnas.train.batches import epoch_batches
from itnas.train.distributed import plan_batches
from itnas.train.loop import drop_path_at, learning_rate, train
from tests.train.tiny import kill_at_epoch, tensor_data, tiny_config

DARTS_V2 = lookup("DARTS_V2")


def test_train_leaves_metrics_history_weights_and_checkpoint(tmp_path, tiny_cfg, data):
    metrics = train(tiny_cfg, DARTS_V2, "DARTS_V2", data, tmp_path, seed=1)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in ("test_top1_err", "test_top5_err", "params", "params_with_aux", "macs", "epochs",
                "wall_clock_s", "gpu_hours", "device", "peak_memory_bytes", "dataset", "standin",
                "genotype", "genotype_hash", "seed", "world_size"):
        assert key in on_disk, key
    assert 0 <= on_disk["test_top1_err"] <= 100 and on_disk["test_top5_err"] <= on_disk["test_top1_err"]
    assert on_disk["genotype_hash"] == DARTS_V2.hash() and on_disk["epochs"] == 2
    assert on_disk["world_size"] == 1 and on_disk["gpu_hours"] == 0.0 and on_disk["macs"] > 0
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"train_loss", "train_acc", "lr", "drop_path_prob", "test_top1_err", "test_top5_err"} <= set(history[-1])
    assert 1 <= history[0]["warmup_steps"] <= 3 and 0 < history[0]["warmup_s"] <= history[0]["epoch_s"]
    weights = load_weights(tmp_path / "model.pt")
    assert "classifier.weight" in weights and any(k.startswith("auxiliary_head.") for k in weights)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, tiny_cfg, monkeypatch):
    data = tensor_data(n_train=24)
    straight = train(tiny_cfg, DARTS_V2, "DARTS_V2", data, tmp_path / "a", seed=3)

    # Kill the second run at its second epoch, after epoch 1's checkpoint was committed.
    kill_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg, DARTS_V2, "DARTS_V2", data, tmp_path / "b", seed=3)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    monkeypatch.undo()

    resumed = train(tiny_cfg, DARTS_V2, "DARTS_V2", data, tmp_path / "b", seed=3)  # a fresh call
    a, b = load_weights(tmp_path / "a" / "model.pt"), load_weights(tmp_path / "b" / "model.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("test_top1_err", "test_top5_err", "test_loss", "train_loss", "train_acc", "params", "macs"):
        assert resumed[key] == straight[key]
    drop = TIMING_KEYS
    strip = [{k: v for k, v in h.items() if k not in drop}
             for h in json.loads((tmp_path / "b" / "history.json").read_text())]
    assert strip == [{k: v for k, v in h.items() if k not in drop}
                     for h in json.loads((tmp_path / "a" / "history.json").read_text())]


def test_different_seeds_train_different_weights(tmp_path, tiny_cfg, data):
    train(dict(tiny_cfg, epochs=1), DARTS_V2, "DARTS_V2", data, tmp_path / "a", seed=0)
    train(dict(tiny_cfg, epochs=1), DARTS_V2, "DARTS_V2", data, tmp_path / "b", seed=1)
    a, b = load_weights(tmp_path / "a" / "model.pt"), load_weights(tmp_path / "b" / "model.pt")
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])


def test_lr_cosine_runs_from_lr_to_lr_min():
    cfg = tiny_config("optim.lr=0.1", "optim.lr_min=0.001", "epochs=10")
    assert learning_rate(cfg, 0, 0, 5) == pytest.approx(0.1)
    assert learning_rate(cfg, 10, 0, 5) == pytest.approx(0.001)
    assert learning_rate(cfg, 5, 0, 5) == pytest.approx((0.1 + 0.001) / 2)
    lrs = [learning_rate(cfg, e, s, 5) for e in range(10) for s in range(5)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_lr_linear_with_warmup_rises_to_lr_then_falls_to_zero():
    cfg = tiny_config("optim.lr=0.5", "optim.lr_schedule=linear", "optim.warmup_epochs=5", "epochs=250")
    assert learning_rate(cfg, 0, 0, 100) == pytest.approx(0.5 / 500)
    assert learning_rate(cfg, 4, 99, 100) == pytest.approx(0.5)
    assert learning_rate(cfg, 5, 0, 100) == pytest.approx(0.5)
    assert learning_rate(cfg, 250, 0, 100) == pytest.approx(0.0)
    assert learning_rate(cfg, 127, 50, 100) == pytest.approx(0.25)
    warm = [learning_rate(cfg, e, s, 100) for e in range(5) for s in range(100)]
    assert all(a < b for a, b in zip(warm, warm[1:]))


def test_drop_path_grows_linearly_from_zero():
    cfg = tiny_config("model.drop_path_prob=0.2", "epochs=600")
    assert drop_path_at(cfg, 0) == 0.0
    assert drop_path_at(cfg, 300) == pytest.approx(0.1)
    assert drop_path_at(cfg, 599) < 0.2


@pytest.mark.parametrize("world,limit,per,accum,micro", [
    (1, None, 96, 1, 96), (2, None, 48, 1, 48), (4, None, 24, 1, 24),
    (1, 32, 96, 3, 32), (1, 40, 96, 3, 32), (2, 16, 48, 3, 16), (8, 256, 12, 1, 12),
])
def test_global_batch_is_split_per_process_with_accumulation(world, limit, per, accum, micro):
    plan = plan_batches(96, world, limit)
    assert (plan.per_process, plan.accumulation, plan.micro_batch) == (per, accum, micro)
    assert plan.per_process * world == 96 and plan.micro_batch * plan.accumulation == plan.per_process


def test_imagenet_batch_1024_keeps_its_size_on_1_to_8_processes():
    for world in (1, 2, 4, 8):
        plan = plan_batches(1024, world, 256)
        assert plan.micro_batch * plan.accumulation * world == 1024 and plan.micro_batch <= 256


def test_batch_not_divisible_by_processes_is_refused():
    with pytest.raises(UserError, match="not divisible"):
        plan_batches(96, 5, None)


def test_epoch_batches_partition_each_global_batch_across_processes():
    plan1, plan2 = plan_batches(8, 1, 4), plan_batches(8, 2, None)
    single = epoch_batches(20, plan1, seed=5, epoch=1, rank=0)
    ranks = [epoch_batches(20, plan2, seed=5, epoch=1, rank=r) for r in (0, 1)]
    assert len(single) == 2  # 20 // 8 steps, the partial batch dropped
    for step in range(2):
        assert single[step] == [ranks[0][step][0], ranks[1][step][0]]
    assert epoch_batches(20, plan1, 5, 1, 0) == single
    assert epoch_batches(20, plan1, 5, 2, 0) != single
    assert epoch_batches(20, plan1, 6, 1, 0) != single


class _NaNAfter(Dataset):
    """Finite images for the first `good` reads, NaN afterwards."""

    def __init__(self, base, good):
        self.base, self.good, self.reads = base, good, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        x, y = self.base[i]
        return (x if self.reads <= self.good else torch.full_like(x, math.nan)), y


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path, tiny_cfg):
    data = tensor_data(n_train=16)
    data.train = _NaNAfter(data.train, good=16 + 8)  # epoch 1 and the first step of epoch 2
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 2") as err:
        train(tiny_cfg, DARTS_V2, "DARTS_V2", data, tmp_path, seed=0)
    assert "\n" not in str(err.value)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert all(torch.isfinite(t).all() for t in state["payload"]["model"].values() if t.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()


def test_rerun_with_other_settings_in_the_same_folder_is_refused(tmp_path, tiny_cfg, data):
    train(dict(tiny_cfg, epochs=1), DARTS_V2, "DARTS_V2", data, tmp_path, seed=0)
    with pytest.raises(UserError, match="other settings"):
        train(dict(tiny_cfg, epochs=1, lr=0.5), DARTS_V2, "DARTS_V2", data, tmp_path, seed=0)


def test_training_set_smaller_than_one_global_batch_is_a_user_error(tmp_path, tiny_cfg):
    with pytest.raises(UserError, match="fewer than one global batch"):
        train(tiny_cfg, DARTS_V2, "DARTS_V2", tensor_data(n_train=4), tmp_path, seed=0)


def test_the_test_pass_takes_its_own_batch_and_gives_the_same_numbers(tmp_path, monkeypatch):
    import itnas.train.loop as train_module

    data = tensor_data(n_train=16, n_eval=8)
    batch_sizes = []
    make_loader = train_module.data_loader

    def recording(dataset, batch_sampler, *args):
        batch_sizes.append([len(b) for b in batch_sampler])
        return make_loader(dataset, batch_sampler, *args)

    monkeypatch.setattr(train_module, "data_loader", recording)
    runs = {size: train(tiny_config(f"runtime.eval_batch_size={size}" if size else "runtime.eval_batch_size=null"),
                        DARTS_V2, "DARTS_V2", data, tmp_path / str(size), seed=3)
            for size in (3, None)}
    assert [3, 3, 2] in batch_sizes and [8] in batch_sizes
    a, b = load_weights(tmp_path / "3" / "model.pt"), load_weights(tmp_path / "None" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the test pass never touches the training
    assert runs[3]["test_loss"] == pytest.approx(runs[None]["test_loss"], rel=1e-5)
    assert runs[3]["test_top1_err"] == runs[None]["test_top1_err"]


def test_the_training_loss_is_cross_entropy_plus_the_weighted_auxiliary_term_with_label_smoothing():
    """Every term of the loss the trainer descends: CE(logits) + auxiliary_weight * CE(auxiliary
    logits), both with the configured label smoothing (the ImageNet recipe's 0.1). A dropped or
    mis-weighted term, or smoothing left out, changes the value."""
    from itnas.train.loop import Trainer

    cfg = tiny_config("model.auxiliary_weight=0.4", "optim.label_smoothing=0.1")
    data = tensor_data(n_train=8, n_eval=4)
    trainer = Trainer(cfg, DARTS_V2, data, seed=0)
    x, y = data.train.tensors[0][:8], data.train.tensors[1][:8]
    logits, aux = trainer.net(trainer.rt.batch_to(x, y)[0])
    fixed = (logits.detach().requires_grad_(), aux.detach().requires_grad_())
    trainer.net = lambda batch: fixed  # the step's loss from these outputs
    sums = trainer._step(iter([(x, y)]))
    expected = (F.cross_entropy(fixed[0], y, label_smoothing=0.1)
                + 0.4 * F.cross_entropy(fixed[1], y, label_smoothing=0.1))
    assert float(sums[0] / sums[2]) == pytest.approx(float(expected), rel=1e-6)
    assert float(expected) != pytest.approx(float(F.cross_entropy(fixed[0], y, label_smoothing=0.1)), rel=1e-3)
