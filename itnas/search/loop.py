"""One search (ITNAS or one of its ablations): the bi-level optimisation of the supernet and its
architecture policy.

Each step first updates the architecture (architect.py) on a batch of the architecture half,
then the network weights on a batch of the weight half (DARTS order). The Gumbel temperature
anneals linearly per epoch. After every epoch the run folder gets a checkpoint (resume = rerun
the same command) and a history record: losses, accuracies, the temperature (for the variants
with Gumbel-softmax; the others have none), edge-weight entropy and the genotype derived at
that point. How the steps run (device, precision, compilation) is
the `runtime` block's business (itnas/runtime.py); nothing here changes with it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from itnas.config import flatten
from itnas.data.gpu_pipeline import use_device_pipeline
from itnas.data.registry import get_spec
from itnas.errors import UserError
from itnas.formats import ARCH_STATE_FORMAT, save_arch_state, validate_arch_state
from itnas.layout import searched_name
from itnas.run import Run, StepClock, check_finite
from itnas.runtime import (
    Runtime,
    allocation,
    describe,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_runtime,
    seed_everything,
    set_deterministic,
)
from itnas.search.architect import Architect
from itnas.search.batches import SearchBatches, search_batches
from itnas.search.derive import derive, derive_tau, stability
from itnas.search.policies import ArchPolicy, arch_param_count, build_policy, entropy, temperature
from itnas.search.supernet import SearchNetwork
from itnas.space import Genotype, save_genotype, search_primitives
from itnas.variants import DERIVE_METHODS, method_for, variant_of

log = logging.getLogger(__name__)

# Config keys that do not change what a search trains: a run may resume with other values.
NOT_IDENTITY = ("runtime", "data_root", "derive")


def check_search_config(cfg: dict, source: str) -> None:
    """Cross-key rules that the schema cannot express; refused before any work starts."""
    try:
        spec = get_spec(cfg["dataset"])
    except UserError as exc:
        raise UserError(f"{source}: key 'dataset': {exc}") from None
    try:  # 'device' for a dataset it cannot serve; the device does not matter for that
        use_device_pipeline(cfg["runtime"]["pipeline"], spec, torch.device("cpu"), key="runtime.pipeline")
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    arch = cfg["arch"]
    if arch["tiep"] and not arch["transition"]:
        raise UserError(f"{source}: key 'arch.tiep': TIEP prunes with the transition matrices, "
                        "so it needs 'arch.transition: true'")
    if cfg["tau"]["end"] > cfg["tau"]["start"]:
        raise UserError(f"{source}: key 'tau.end': the temperature anneals down, so tau.end "
                        f"({cfg['tau']['end']}) must not exceed tau.start ({cfg['tau']['start']})")
    if cfg["optim"]["lr_min"] > cfg["optim"]["lr"]:
        raise UserError(f"{source}: key 'optim.lr_min': must not exceed optim.lr")


def search_runtime(cfg: dict) -> Runtime:
    """The search's `runtime` block resolved: second-order steps run on one CUDA stream."""
    second = cfg["arch_optim"]["order"] == "second"
    return resolve_runtime(cfg["runtime"], "search",
                           one_stream="the second-order architecture step runs on one stream" if second else None)


def identity(cfg: dict, seed: int) -> dict:
    """What a resume must match: the config less how it runs, and the seed."""
    return {"stage": "search", "config": {k: v for k, v in cfg.items() if k not in NOT_IDENTITY}, "seed": seed}


def _correct(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How many predictions are right, as a tensor (read on the host after the step)."""
    return (logits.argmax(1) == target).sum()


class Searcher:
    """The supernet, its policy, their optimisers and the three steps a search runs."""

    kind = "search"

    def __init__(self, cfg: dict, num_classes: int, in_channels: int, rt: Runtime | None = None):
        """`rt`: the config's runtime block resolved (`search_runtime`), if not given."""
        rt = rt or search_runtime(cfg)
        self.cfg, self.rt = cfg, rt
        m, o, a = cfg["model"], cfg["optim"], cfg["arch"]
        self.variant = variant_of(cfg)
        self.primitives = search_primitives(a["none_op"])
        self.net = SearchNetwork(num_classes, m["layers"], m["init_channels"], m["stem_multiplier"],
                                 in_channels=in_channels, primitives=self.primitives).to(rt.device)
        self.policy: ArchPolicy = build_policy(a["gumbel"], a["transition"], len(self.primitives)).to(rt.device)
        self.weights = list(self.net.parameters())
        self.w_opt = torch.optim.SGD(self.weights, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=cfg["epochs"],
                                                                    eta_min=o["lr_min"])
        self.architect = Architect(self.net, self.policy, self.loss, self.w_opt, cfg["arch_optim"], o)
        # The steps, by name. What follows is what itnas/accel may replace (`rt.accelerate`): the
        # network as the steps call it, the backward's options, and how a step runs.
        self.steps = {"arch": self._arch_body, "weight": self._weight_body, "eval": self._eval_body,
                      "arch_unrolled": self.architect.second_order}
        self.forward_net: nn.Module = self.net
        self.backward_options: dict[str, Any] = {}
        self.graphs: dict[str, Any] | None = None  # steps recorded as CUDA graphs, if any
        self.run_step = self._run_plainly
        rt.accelerate(self)

    @property
    def a_opt(self) -> torch.optim.Optimizer:
        return self.architect.optimizer

    def _run_plainly(self, name: str, *inputs: torch.Tensor) -> Any:
        return self.steps[name](*inputs)

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict:
        return {"net": self.net.state_dict(), "policy": self.policy.state_dict(),
                "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.policy.load_state_dict(state["policy"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        self.scheduler.load_state_dict(state["scheduler"])

    # -- steps ---------------------------------------------------------------------------
    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the run's device, in its memory layout."""
        return self.rt.batch_to(x, y)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the supernet under the policy's current edge weights, and the logits."""
        with self.rt.autocast():
            logits = self.forward_net(x, self.policy.all_weights())
            return F.cross_entropy(logits.float(), y), logits

    def arch_step(self, x_val: torch.Tensor, y_val: torch.Tensor, x_tr: torch.Tensor, y_tr: torch.Tensor) -> float:
        """One architecture step on an architecture batch (second order also reads a weight batch)."""
        if self.cfg["arch_optim"]["order"] == "second":
            return float(self.run_step("arch_unrolled", x_val, y_val, x_tr, y_tr))
        return float(self.run_step("arch", x_val, y_val))

    def _arch_body(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.architect.first_order(x, y, **self.backward_options)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """One weight step on a weight batch: (loss, correct predictions)."""
        loss, correct = self.run_step("weight", x, y)
        return float(loss), float(correct)

    def _weight_body(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the loss and the number of correct predictions as tensors (no host read)."""
        self.w_opt.zero_grad(set_to_none=True)
        loss, logits = self.loss(x, y)
        # Only the weights' gradient: the architecture's would be set to None unread by the next
        # architecture step, so autograd skips the edge weights' share of the backward.
        loss.backward(inputs=self.weights, **self.backward_options)
        nn.utils.clip_grad_norm_(self.weights, self.cfg["optim"]["grad_clip"])
        self.w_opt.step()
        return loss.detach(), _correct(logits.detach(), y)

    def _eval_body(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            loss, logits = self.loss(x, y)
            return loss, _correct(logits, y)

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[float, float]:
        """(loss, accuracy %) in eval mode: BN on running statistics, no Gumbel noise."""
        self.net.eval()
        self.policy.eval()
        total = loss_sum = correct = 0.0
        for x, y in batches:
            x, y = self.prepare(x, y)
            loss, right = self.run_step("eval", x, y)
            loss_sum += float(loss) * y.numel()
            correct += float(right)
            total += y.numel()
        self.net.train()
        self.policy.train()
        return loss_sum / max(total, 1), 100.0 * correct / max(total, 1)

    def edge_weights(self) -> dict[str, torch.Tensor]:
        """Each cell type's edge weights as the validation sees them (no noise)."""
        self.policy.eval()
        weights = {c: w.detach() for c, w in self.policy.all_weights().items()}
        self.policy.train()
        return weights

    def arch_state(self) -> dict:
        """The architecture as a file (formats.py), with the temperature to derive it at."""
        return {"format": ARCH_STATE_FORMAT, "primitives": list(self.primitives), "variant": self.variant,
                "derive_tau": derive_tau(self.cfg), **self.policy.arch_state()}

    @property
    def method(self) -> str:
        return method_for(self.cfg["arch"]["transition"], self.cfg["arch"]["tiep"])

    def genotype(self) -> Genotype:
        state = validate_arch_state(self.arch_state(), "<search>")
        return derive(state, self.method, state["derive_tau"])

    def genotype_stability(self, genotype: Genotype) -> dict:
        """How the genotype changes across `derive.stability_taus` (search/derive.py)."""
        state = validate_arch_state(self.arch_state(), "<search>")
        return stability(state, self.method, genotype, self.cfg["derive"]["stability_taus"])

    def genotype_stability_by_method(self) -> dict[str, dict]:
        """`genotype_stability` under every derivation rule the arch state supports (the DARTS rule
        always, TIEP where the search learned transitions), each against the cell that rule derives
        at the state's own temperature: a variant that shares this search but derives otherwise
        (itnas from gumbel_transition's) reads its own rule's (report/inputs.py)."""
        state = validate_arch_state(self.arch_state(), "<search>")
        taus = self.cfg["derive"]["stability_taus"]
        methods = [m for m in DERIVE_METHODS if m != "tiep" or self.cfg["arch"]["transition"]]
        return {m: stability(state, m, derive(state, m, state["derive_tau"]), taus) for m in methods}


# metrics.json keys tracked as MLflow metrics (results, at the last epoch) and as params (facts
# of the run); the rest of metrics.json is the configuration, already tracked as params.
RESULTS = ("train_loss", "train_acc", "val_loss", "val_acc", "wall_clock_s", "gpu_hours", "device_hours",
           "peak_memory_bytes", "weights", "arch_params")
SETTINGS = ("method", "device", "benchmark", "standin")


def run_search(cfg: dict, seed: int, out: str | Path) -> dict[str, Any]:
    """Run (or resume) one search into `out`; returns its final metrics."""
    rt = search_runtime(cfg)
    set_deterministic(rt.deterministic)
    seed_everything(seed)
    data = search_batches(cfg, seed, rt)  # validates the dataset before any model is built
    searcher = Searcher(cfg, data.spec.num_classes, data.spec.channels, rt)
    variant, epochs = searcher.variant, cfg["epochs"]
    label = f"{variant} seed {seed} on {data.spec.name}{' (STAND-IN)' if data.spec.standin else ''}"
    tags = {"stage": "search", "dataset": data.spec.name, "benchmark": data.spec.benchmark, "variant": variant,
            "seed": str(seed), "standin": str(data.spec.standin).lower()}
    params = {**flatten(cfg), "seed": seed, "variant": variant}
    with Run(out, identity(cfg, seed), "search", f"search {variant} seed{seed} {data.spec.name}", params, tags,
             rt.progress) as run:
        start = run.resume(searcher.load)
        run.track()
        reset_peak_memory(rt.device)
        log.info("search %s: %d epochs from epoch %d, %s, %d weights, %d arch params", label, epochs, start,
                 rt.describe(), sum(p.numel() for p in searcher.net.parameters()), arch_param_count(searcher.policy))
        for epoch in range(start, epochs):
            record = search_epoch(searcher, data, run, epoch)
            run.end_epoch(epoch, record, searcher.state())
            log.info("epoch %d/%d  %slr %.4g  train loss %.4f acc %.2f%%  val loss %s acc %s  "
                     "entropy n %.3f r %.3f  %.1fs", epoch + 1, epochs,
                     f"tau {record['tau']:.3f}  " if "tau" in record else "", record["lr"],
                     record["train_loss"], record["train_acc"], _fmt(record.get("val_loss")),
                     _fmt(record.get("val_acc"), "%"), record["entropy_normal"], record["entropy_reduce"],
                     record["epoch_s"])
            log.info("epoch %d genotype: normal %s | reduce %s", epoch + 1, _short(record["genotype"]["normal"]),
                     _short(record["genotype"]["reduce"]))
        genotype = searcher.genotype()
        metrics = final_metrics(cfg, seed, run, searcher, data, genotype)
        save_arch_state(run.path / "arch_state.json", searcher.arch_state())
        save_genotype(run.path / "genotype.json", genotype, name=searched_name(variant, seed),
                      derive_tau=derive_tau(cfg))
        run.finish(metrics, artifacts=("genotype.json", "arch_state.json"), results=RESULTS, settings=SETTINGS)
    log.info("search %s done: val acc %s, genotype hash %s -> %s", label, _fmt(metrics["val_acc"], "%"),
             metrics["genotype_hash"], out)
    return metrics


def search_epoch(searcher: Searcher, data: SearchBatches, run: Run, epoch: int) -> dict[str, Any]:
    """One epoch of alternating architecture and weight steps; its history record."""
    cfg, epochs = searcher.cfg, searcher.cfg["epochs"]
    tau = temperature(epoch, epochs, cfg["tau"]["start"], cfg["tau"]["end"])
    searcher.policy.set_temperature(tau)
    lr = searcher.scheduler.get_last_lr()[0]
    t0 = time.monotonic()
    loss_sum = arch_loss_sum = correct = seen = 0.0
    bar = run.progress(data.steps_per_epoch, f"search {searcher.variant} epoch {epoch + 1}/{epochs}")
    clock = StepClock()
    for step, ((x_tr, y_tr), (x_val, y_val)) in enumerate(data.epoch(epoch)):
        x_tr, y_tr = searcher.prepare(x_tr, y_tr)
        x_val, y_val = searcher.prepare(x_val, y_val)
        arch_loss = searcher.arch_step(x_val, y_val, x_tr, y_tr)
        check_finite(arch_loss, epoch, step, "architecture loss")
        loss, right = searcher.weight_step(x_tr, y_tr)
        check_finite(loss, epoch, step)
        loss_sum += loss * y_tr.numel()
        arch_loss_sum += arch_loss * y_val.numel()
        correct += right
        seen += y_tr.numel()
        clock.tick()
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{100 * correct / seen:.1f}", refresh=False)
    bar.close()
    searcher.scheduler.step()
    record: dict[str, Any] = {
        "lr": lr,
        **({"tau": tau} if has_temperature(cfg) else {}),  # softmax alone has no temperature
        "train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
        "arch_loss": arch_loss_sum / max(seen, 1), **clock.record(),
    }
    if (epoch + 1) % searcher.rt.eval_every == 0 or epoch + 1 == epochs:
        record["val_loss"], record["val_acc"] = searcher.evaluate(data.validation())
    weights = searcher.edge_weights()
    record["entropy_normal"] = entropy(weights["normal"])
    record["entropy_reduce"] = entropy(weights["reduce"])
    record["genotype"] = searcher.genotype().to_json()
    record["epoch_s"] = time.monotonic() - t0
    return record


def has_temperature(cfg: dict) -> bool:
    """Whether the schedule tau acts on the search: only through Gumbel-softmax."""
    return bool(cfg["arch"]["gumbel"])


def final_metrics(cfg: dict, seed: int, run: Run, searcher: Searcher, data: SearchBatches,
                  genotype: Genotype) -> dict[str, Any]:
    last = run.history[-1] if run.history else {}
    by_method = searcher.genotype_stability_by_method()  # its own rule's is the one `genotype` came from
    wall = run.wall_clock()
    device = searcher.rt.device
    gpus = 1 if device.type == "cuda" else 0
    return {
        "stage": "search", "variant": searcher.variant, "flags": dict(cfg["arch"]),
        "arch_order": cfg["arch_optim"]["order"], "ops": len(searcher.primitives),
        "method": searcher.method, "derive_tau": derive_tau(cfg),
        "genotype_stability": by_method[searcher.method], "genotype_stability_by_method": by_method,
        "seed": seed, "dataset": data.spec.name, "benchmark": data.spec.benchmark,
        "standin": data.spec.standin, "epochs": cfg["epochs"],
        "train_loss": last.get("train_loss"), "train_acc": last.get("train_acc"),
        "val_loss": last.get("val_loss"), "val_acc": last.get("val_acc"),
        "tau_final": last.get("tau"),
        "wall_clock_s": wall, "device_hours": wall / 3600.0, "gpu_hours": gpus * wall / 3600.0,
        "device": describe(device), "peak_memory_bytes": peak_memory_bytes(device),
        "allocation": allocation(),
        "weights": sum(p.numel() for p in searcher.net.parameters()),
        "arch_params": arch_param_count(searcher.policy),
        "genotype": genotype.to_json(), "genotype_hash": genotype.hash(),
    }


def _fmt(value, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{2 if suffix else 4}f}{suffix}"


def _short(pairs) -> str:
    return " ".join(f"{op}<-{i}" for op, i in pairs)
