"""The architecture step: Adam on alpha, P and beta from a batch of the architecture half.

First order (the default, and the paper's cost): the gradient of the architecture loss
L_val(w, a) at the current weights. Second order (`arch_optim.order: second`): DARTS's unrolled
step, the gradient of L_val(w', a) at w' = w - xi * (one SGD step on a training batch, with
momentum and weight decay; xi = the weights' current learning rate), where the term through w'
is the finite-difference Hessian-vector product
    grad_a L_val(w', a) - xi * (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps),
    w+- = w +- eps * grad_w' L_val(w', a),  eps = 0.01 / ||grad_w' L_val(w', a)||.
The four loss evaluations of one unrolled step share one Gumbel draw per cell type: with fresh
noise each, the difference of the two Hessian gradients would be dominated by the noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Architect:
    """Owns the architecture optimiser; `loss(x, y)` is the search's loss, (loss, logits)."""

    def __init__(self, net: nn.Module, policy: nn.Module, loss: LossFn, weight_opt: torch.optim.SGD,
                 arch_cfg: dict, weight_cfg: dict):
        self.net, self.policy, self.loss, self.weight_opt = net, policy, loss, weight_opt
        self.order = arch_cfg["order"]
        self.momentum, self.weight_decay = weight_cfg["momentum"], weight_cfg["weight_decay"]
        self.params = list(policy.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=arch_cfg["lr"], betas=tuple(arch_cfg["betas"]),
                                          weight_decay=arch_cfg["weight_decay"])

    def first_order(self, x: torch.Tensor, y: torch.Tensor, **backward_options) -> torch.Tensor:
        """One first-order step; returns the loss as a tensor (no host read, so that the step
        can be recorded as a CUDA graph)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = self.loss(x, y)
        # Only the architecture gradient: autograd then skips every weight-gradient kernel
        # (a third of the backward) and leaves the weights' .grad untouched.
        loss.backward(inputs=self.params, **backward_options)
        self.optimizer.step()
        return loss.detach()

    def second_order(self, x_val: torch.Tensor, y_val: torch.Tensor, x_tr: torch.Tensor,
                     y_tr: torch.Tensor) -> torch.Tensor:
        """One unrolled step (module docstring); returns the validation loss at w'."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.policy.one_draw():
            loss = self._unrolled_gradient(x_val, y_val, x_tr, y_tr)
        self.optimizer.step()
        return loss

    def _unrolled_gradient(self, x_val, y_val, x_tr, y_tr) -> torch.Tensor:
        weights = list(self.net.parameters())
        arch = self.params
        xi = self.weight_opt.param_groups[0]["lr"]
        backup = [p.detach().clone() for p in weights]
        loss_tr, _ = self.loss(x_tr, y_tr)
        grads = torch.autograd.grad(loss_tr, weights)
        with torch.no_grad():  # w' = w - xi * (g + wd * w + momentum * buffer), the SGD step
            for p, g in zip(weights, grads):
                buf = self.weight_opt.state.get(p, {}).get("momentum_buffer")
                step = g + self.weight_decay * p + (self.momentum * buf if buf is not None else 0.0)
                p.sub_(xi * step)
        loss_val, _ = self.loss(x_val, y_val)
        grads_val = torch.autograd.grad(loss_val, arch + weights, allow_unused=True)
        d_arch = _zeros_for_none(grads_val[:len(arch)], arch)
        d_w = _zeros_for_none(grads_val[len(arch):], weights)
        eps = 0.01 / (torch.sqrt(sum((g * g).sum() for g in d_w)) + 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, b, g in zip(weights, backup, d_w):
                    p.copy_(b + sign * eps * g)
            loss_p, _ = self.loss(x_tr, y_tr)
            hessian.append(_zeros_for_none(torch.autograd.grad(loss_p, arch, allow_unused=True), arch))
        with torch.no_grad():
            for p, b in zip(weights, backup):
                p.copy_(b)
            for a, d, hp, hn in zip(arch, d_arch, *hessian):
                a.grad = d - xi * (hp - hn) / (2 * eps)
        return loss_val.detach()


def _zeros_for_none(grads, like) -> list[torch.Tensor]:
    return [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, like)]
