"""One ITNAS (or ablation) search: bi-level optimisation of the supernet and its policy.

Each step first updates the architecture (alpha, P, beta) on a batch of the architecture half,
then the network weights on a batch of the weight half (DARTS order). First order by default;
`arch_optim.order: second` uses DARTS's unrolled step with the finite-difference Hessian-vector
product. The Gumbel temperature anneals linearly per epoch. After every epoch the run folder
gets a checkpoint (resume = rerun the same command) and a history record with losses,
accuracies, temperature, edge-weight entropy and the genotype derived at that point.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from itnas import device as dev
from itnas import tracking
from itnas.derive import derive, method_for
from itnas.errors import UserError
from itnas.formats import save_arch_state, save_genotype, validate_arch_state
from itnas.graphs import StepGraph, graphs_backend, make_capturable
from itnas.loop import RunDir, check_finite, json_safe
from itnas.policies import (
    ArchPolicy,
    arch_param_count,
    build_policy,
    entropy,
    temperature,
    variant_name,
)
from itnas.streams import backward_kwargs
from itnas.supernet import SearchNetwork, set_branch_streams

log = logging.getLogger(__name__)


def check_search_config(cfg: dict, source: str) -> None:
    """Cross-key rules that the schema cannot express; refused before any work starts."""
    from itnas.data import get_spec

    try:
        spec = get_spec(cfg["dataset"])
    except UserError as exc:
        raise UserError(f"{source}: key 'dataset': {exc}") from None
    if cfg["data"]["pipeline"] == "device":
        from itnas.data.gpu_pipeline import use_device_pipeline

        try:  # 'device' for a dataset it cannot serve; the device does not matter for that
            use_device_pipeline("device", spec, torch.device("cpu"), key="data.pipeline")
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


@dataclass
class SearchResult:
    metrics: dict[str, Any]
    out: Path


def _identity(cfg: dict, seed: int) -> dict:
    """Settings a resume must match; runtime knobs (device, workers, progress) may change."""
    keep = {k: v for k, v in cfg.items() if k not in ("runtime",)}
    keep["data"] = {k: v for k, v in cfg["data"].items() if k not in ("workers", "pipeline", "eval_batch_size")}
    return {"stage": "search", "config": keep, "seed": seed}


def _correct(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """How many predictions are right, as a tensor (read on the host after the step)."""
    return (logits.argmax(1) == target).sum()


class Searcher:
    """Holds the supernet, the policy and their optimisers; runs epochs."""

    def __init__(self, cfg: dict, num_classes: int, in_channels: int, device: torch.device):
        self.cfg = cfg
        self.device = device
        m = cfg["model"]
        self.net = SearchNetwork(num_classes, m["layers"], m["init_channels"], m["stem_multiplier"],
                                 in_channels=in_channels).to(device)
        self.policy: ArchPolicy = build_policy(cfg["arch"]["gumbel"], cfg["arch"]["transition"]).to(device)
        self.amp = dev.resolve_flag(cfg["runtime"]["amp"], device, "amp")
        self.channels_last = dev.resolve_flag(cfg["runtime"]["channels_last"], device, "channels_last")
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.compile_mode = dev.compile_mode(cfg["runtime"]["compile"], "key 'runtime.compile'", device, "search")
        self.cuda_graphs = dev.uses_cuda_graphs(self.compile_mode)
        # The ops into each cell node on side-by-side CUDA streams (itnas/streams.py): the
        # backwards then keep their saved tensors to the end of the step.
        streams = cfg["runtime"]["streams"]
        self.streams = dev.resolve_streams(streams, device, self.compile_mode)
        # One stream for second-order architecture steps, whose autograd.grad calls free saved
        # tensors that side streams may still read, and under torch.compile, untested with streams.
        why = None
        if cfg["arch_optim"]["order"] == "second":
            why = "the second-order architecture step runs on one stream"
        elif self.compile_mode in dev.COMPILE_MODES:
            why = f"compile {self.compile_mode} is untested with streams"
        if self.streams > 1 and why:
            if streams != "auto":
                log.warning("runtime.streams: %s; streams set to 1", why)
            self.streams = 1
        set_branch_streams(self.net, self.streams)
        self._backward = backward_kwargs(self.streams, device)
        self.forward_net = dev.compile_module(self.net, self.compile_mode)
        self.weights = list(self.net.parameters())
        self.arch_params = list(self.policy.parameters())
        o, a = cfg["optim"], cfg["arch_optim"]
        self.w_opt = torch.optim.SGD(self.weights, lr=o["lr"], momentum=o["momentum"],
                                     weight_decay=o["weight_decay"])
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.w_opt, T_max=cfg["epochs"],
                                                                    eta_min=o["lr_min"])
        self.a_opt = torch.optim.Adam(self.arch_params, lr=a["lr"], betas=tuple(a["betas"]),
                                      weight_decay=a["weight_decay"])
        # The three steps a search runs; compile: step-graphs records each as a CUDA graph
        # (itnas/graphs.py).
        self.steps = {"arch": self._arch_body, "weight": self._weight_body, "eval": self._eval_body}
        self.graphs: dict[str, StepGraph] | None = None
        self.capturable = False  # Adam's update recorded in a graph: its step count on the device
        if self.compile_mode == dev.STEP_GRAPHS:
            backend = graphs_backend(device)
            if backend == "eager":
                log.warning("runtime.compile: step-graphs records CUDA graphs; on %s the steps run eagerly",
                            device.type)
            if a["order"] == "second":
                log.warning("runtime.compile: step-graphs records first-order architecture steps only; "
                            "the second-order ones run eagerly")
            self.graphs = {name: StepGraph(fn, f"{name} step", backend) for name, fn in self.steps.items()}
            self.capturable = backend != "eager"
            make_capturable(self.a_opt, self.capturable)

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
        # A checkpoint carries the flag of the run that wrote it; this run's mode decides.
        make_capturable(self.a_opt, self.capturable)

    # -- steps ---------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return dev.batch_to(x, y, self.device, self.channels_last)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with dev.autocast(self.device, self.amp):
            logits = self.forward_net(x, self.policy.all_weights())
            return F.cross_entropy(logits.float(), y), logits

    def _run(self, step: str, *inputs: torch.Tensor) -> Any:
        """Step `step` ('arch', 'weight' or 'eval') on `inputs`: under compile step-graphs its
        recording (`StepGraph`), else its body, after starting a CUDA-graph generation in
        torch.compile's CUDA-graph modes."""
        if self.graphs is not None:
            return self.graphs[step](self._graph_key(), *inputs)
        if self.cuda_graphs:
            dev.cuda_graph_step_begin()
        return self.steps[step](*inputs)

    def _graph_key(self) -> tuple[float, float]:
        """The Python numbers a recorded step freezes: the weights' learning rate and the
        temperature (both change once per epoch; a new key records the steps again)."""
        return self.w_opt.param_groups[0]["lr"], float(self.policy.tau)

    def arch_step(self, x_val: torch.Tensor, y_val: torch.Tensor, x_tr: torch.Tensor, y_tr: torch.Tensor) -> float:
        if self.cfg["arch_optim"]["order"] == "second":
            if self.cuda_graphs:
                dev.cuda_graph_step_begin()
            self.a_opt.zero_grad(set_to_none=True)
            loss = self._unrolled_grad(x_val, y_val, x_tr, y_tr)
            self.a_opt.step()
            return loss
        return float(self._run("arch", x_val, y_val))

    def _arch_body(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One first-order architecture step; returns the loss as a tensor (no host read, so
        that it can be recorded as a CUDA graph)."""
        self.a_opt.zero_grad(set_to_none=True)
        loss, _ = self.loss(x, y)
        # Only the architecture gradient: autograd then skips every weight-gradient kernel
        # (a third of the backward) and leaves the weights' .grad untouched.
        loss.backward(inputs=self.arch_params, **self._backward)
        self.a_opt.step()
        return loss.detach()

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        loss, correct = self._run("weight", x, y)
        return float(loss), float(correct)

    def _weight_body(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One weight step; returns the loss and the number of correct predictions as tensors."""
        self.w_opt.zero_grad(set_to_none=True)
        loss, logits = self.loss(x, y)
        # Only the weights' gradient: the architecture's would be set to None unread by the next
        # architecture step, so autograd skips the edge weights' share of the backward.
        loss.backward(inputs=self.weights, **self._backward)
        nn.utils.clip_grad_norm_(self.weights, self.cfg["optim"]["grad_clip"])
        self.w_opt.step()
        return loss.detach(), _correct(logits.detach(), y)

    def _eval_body(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            loss, logits = self.loss(x, y)
            return loss, _correct(logits, y)

    def _unrolled_grad(self, x_val, y_val, x_tr, y_tr) -> float:
        """DARTS second order: grad_a L_val(w', a) - xi * Hessian-vector term, w' = one SGD step."""
        params = [p for p in self.net.parameters()]
        xi = self.w_opt.param_groups[0]["lr"]
        momentum = self.cfg["optim"]["momentum"]
        wd = self.cfg["optim"]["weight_decay"]
        backup = [p.detach().clone() for p in params]
        loss_tr, _ = self.loss(x_tr, y_tr)
        grads = torch.autograd.grad(loss_tr, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                buf = self.w_opt.state.get(p, {}).get("momentum_buffer")
                step = g + wd * p + (momentum * buf if buf is not None else 0.0)
                p.sub_(xi * step)
        arch = list(self.policy.parameters())
        loss_val, _ = self.loss(x_val, y_val)
        grads_val = torch.autograd.grad(loss_val, arch + params, allow_unused=True)
        d_arch = [g if g is not None else torch.zeros_like(a) for g, a in zip(grads_val[:len(arch)], arch)]
        d_w = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads_val[len(arch):], params)]
        eps = 0.01 / (torch.sqrt(sum((g * g).sum() for g in d_w)) + 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, b, g in zip(params, backup, d_w):
                    p.copy_(b + sign * eps * g)
            loss_p, _ = self.loss(x_tr, y_tr)
            hessian.append(torch.autograd.grad(loss_p, arch, allow_unused=True))
        with torch.no_grad():
            for p, b in zip(params, backup):
                p.copy_(b)
            for a, d, hp, hn in zip(arch, d_arch, *hessian):
                hp = torch.zeros_like(a) if hp is None else hp
                hn = torch.zeros_like(a) if hn is None else hn
                a.grad = d - xi * (hp - hn) / (2 * eps)
        return float(loss_val.detach())

    @torch.no_grad()
    def evaluate(self, batches) -> tuple[float, float]:
        self.net.eval()
        self.policy.eval()
        total = loss_sum = correct = 0.0
        for x, y in batches:
            x, y = self._prepare(x, y)
            loss, right = self._run("eval", x, y)
            loss_sum += float(loss) * y.numel()
            correct += float(right)
            total += y.numel()
        self.net.train()
        self.policy.train()
        return loss_sum / max(total, 1), 100.0 * correct / max(total, 1)

    def arch_state(self) -> dict:
        flags = self.cfg["arch"]
        state = self.policy.arch_state()
        state["variant"] = variant_name(flags["gumbel"], flags["transition"], flags["tiep"])
        return state

    def genotype(self):
        flags = self.cfg["arch"]
        return derive(validate_arch_state(self.arch_state(), "<search>"), method_for(flags["transition"], flags["tiep"]))


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out[prefix] = obj
    return out


def run_search(cfg: dict, seed: int, out: str | Path) -> SearchResult:
    """Run (or resume) one search into `out`; returns its final metrics."""
    from itnas.search_data import search_batches

    flags = cfg["arch"]
    variant = variant_name(flags["gumbel"], flags["transition"], flags["tiep"])
    device = dev.resolve_device(cfg["runtime"]["device"])
    dev.set_deterministic(cfg["runtime"]["deterministic"])
    dev.seed_everything(seed)
    data = search_batches(cfg, seed, device)  # validates the dataset before any model is built
    searcher = Searcher(cfg, data.spec.num_classes, data.spec.channels, device)
    run = RunDir(Path(out), _identity(cfg, seed))
    run.claim()
    start = run.resume(searcher.load)
    epochs = cfg["epochs"]
    dev.reset_peak_memory(device)
    label = f"{variant} seed {seed} on {data.spec.name}{' (STAND-IN)' if data.spec.standin else ''}"
    log.info("search %s: %d epochs from epoch %d, device %s, %d weights, %d arch params",
             label, epochs, start, dev.describe(device), sum(p.numel() for p in searcher.net.parameters()),
             arch_param_count(searcher.policy))
    params = _flatten("", cfg, {})
    tags = {"stage": "search", "dataset": data.spec.name, "variant": variant, "seed": str(seed),
            "standin": str(data.spec.standin).lower()}
    show_progress = cfg["runtime"]["progress"] and sys.stderr.isatty()
    with tracking.start_run("search", f"search-{variant}-seed{seed}", params, tags) as tracker:
        for epoch in range(start, epochs):
            tau = temperature(epoch, epochs, cfg["tau"]["start"], cfg["tau"]["end"])
            searcher.policy.set_temperature(tau)
            lr = searcher.scheduler.get_last_lr()[0]
            t0 = time.monotonic()
            loss_sum = correct = seen = 0.0
            arch_loss_sum = 0.0
            steps = data.steps_per_epoch
            bar = _progress(steps, f"search {variant} epoch {epoch + 1}/{epochs}", show_progress)
            for step, ((x_tr, y_tr), (x_val, y_val)) in enumerate(data.epoch(epoch)):
                x_tr, y_tr = searcher._prepare(x_tr, y_tr)
                x_val, y_val = searcher._prepare(x_val, y_val)
                arch_loss = searcher.arch_step(x_val, y_val, x_tr, y_tr)
                check_finite(arch_loss, epoch, step, "architecture loss")
                loss, acc = searcher.weight_step(x_tr, y_tr)
                check_finite(loss, epoch, step)
                loss_sum += loss * y_tr.numel()
                arch_loss_sum += arch_loss * y_val.numel()
                correct += acc
                seen += y_tr.numel()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", acc=f"{100 * correct / seen:.1f}")
            bar.close()
            searcher.scheduler.step()
            record: dict[str, Any] = {
                "lr": lr, "tau": tau,
                "train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
                "arch_loss": arch_loss_sum / max(seen, 1),
            }
            if (epoch + 1) % cfg["runtime"]["eval_every"] == 0 or epoch + 1 == epochs:
                record["val_loss"], record["val_acc"] = searcher.evaluate(data.validation())
            searcher.policy.eval()
            weights = {c: w.detach() for c, w in searcher.policy.all_weights().items()}
            searcher.policy.train()
            record["entropy_normal"] = entropy(weights["normal"])
            record["entropy_reduce"] = entropy(weights["reduce"])
            genotype = searcher.genotype()
            record["genotype"] = genotype.to_json()
            record["epoch_s"] = time.monotonic() - t0
            run.end_epoch(epoch, json_safe(record), searcher.state())
            tracker.log_metrics({k: v for k, v in record.items() if isinstance(v, (int, float))}, step=epoch + 1)
            log.info("epoch %d/%d  tau %.3f  lr %.4g  train loss %.4f acc %.2f%%  val loss %s acc %s  "
                     "entropy n %.3f r %.3f  %.1fs", epoch + 1, epochs, tau, lr, record["train_loss"],
                     record["train_acc"], _fmt(record.get("val_loss")), _fmt(record.get("val_acc"), "%"),
                     record["entropy_normal"], record["entropy_reduce"], record["epoch_s"])
            log.info("epoch %d genotype: normal %s | reduce %s", epoch + 1,
                     _short(genotype.normal), _short(genotype.reduce))
        metrics = _final_metrics(cfg, seed, variant, run, searcher, data, device)
        out = Path(out)
        save_arch_state(out / "arch_state.json", searcher.arch_state())
        save_genotype(out / "genotype.json", searcher.genotype())
        run.finish(metrics)
        for name in ("genotype.json", "arch_state.json", "metrics.json", "history.json"):
            tracker.log_artifact(str(out / name))
    log.info("search %s done: val acc %s, genotype hash %s -> %s", label, _fmt(metrics["val_acc"], "%"),
             metrics["genotype_hash"], out)
    return SearchResult(metrics, out)


def _final_metrics(cfg, seed, variant, run, searcher, data, device) -> dict:
    last = run.history[-1] if run.history else {}
    genotype = searcher.genotype()
    wall = run.wall_clock()
    gpus = 1 if device.type == "cuda" else 0
    return json_safe({
        "stage": "search", "variant": variant, "flags": dict(cfg["arch"]),
        "method": method_for(cfg["arch"]["transition"], cfg["arch"]["tiep"]),
        "seed": seed, "dataset": data.spec.name, "benchmark": data.spec.benchmark,
        "standin": data.spec.standin, "epochs": cfg["epochs"],
        "train_loss": last.get("train_loss"), "train_acc": last.get("train_acc"),
        "val_loss": last.get("val_loss"), "val_acc": last.get("val_acc"),
        "tau_final": last.get("tau"),
        "wall_clock_s": wall, "device_hours": wall / 3600.0, "gpu_hours": gpus * wall / 3600.0,
        "device": dev.describe(device), "peak_memory_bytes": dev.peak_memory_bytes(device),
        "allocation": dev.allocation(),
        "weights": sum(p.numel() for p in searcher.net.parameters()),
        "arch_params": arch_param_count(searcher.policy),
        "genotype": genotype.to_json(), "genotype_hash": genotype.hash(),
    })


def _fmt(value, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{2 if suffix else 4}f}{suffix}"


def _short(pairs) -> str:
    return " ".join(f"{op}<-{i}" for op, i in pairs)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


class _NoBar(contextlib.AbstractContextManager):
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        return None
