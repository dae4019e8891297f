"""FedSGD: the client sends the plain gradient of one batch (mean loss)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """The client's loss (mean over the batch), shared with the attacks through the Observation."""
    return F.cross_entropy(logits, labels, reduction="mean")


LOSSES = {"cross_entropy": cross_entropy}


def fedsgd_gradient(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn=cross_entropy
                    ) -> tuple[dict[str, Tensor], float]:
    """Gradient of the mean loss of one batch w.r.t. every parameter, keyed by parameter name."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    loss = loss_fn(model(inputs), labels)
    grads = torch.autograd.grad(loss, [p for _, p in params])
    return {n: g.detach() for (n, _), g in zip(params, grads)}, float(loss.detach())


class LinearFactor(NamedTuple):
    """A linear layer's weight gradient kept as its two factors: ``grad_out.T @ inputs``.

    ``grad_out`` is dL/dZ (rows, m) and ``inputs`` the layer's input (rows, n); the (m, n) product
    is never formed. For ImageNet 720's first layer (200 x 1.55 M) that product is a second
    2.5 GB float64 gradient beside the observed one.
    """
    grad_out: Tensor
    inputs: Tensor

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.grad_out.shape[-1], self.inputs.shape[-1]))

    def rows(self, start: int, stop: int) -> Tensor:
        """Rows ``start:stop`` of the gradient, formed on demand."""
        return self.grad_out[:, start:stop].T @ self.inputs


def fedsgd_gradient_factored(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn=cross_entropy,
                             min_entries: int = 1 << 22) -> tuple[dict[str, Tensor | LinearFactor], float]:
    """:func:`fedsgd_gradient`, but every ``nn.Linear`` weight with at least ``min_entries`` entries
    comes back as a :class:`LinearFactor` instead of a dense tensor (same values, no (m, n) copy).

    Autograd is asked for those layers' output gradients instead of their weights', so their
    weight gradients are never computed.
    """
    big = {name: mod for name, mod in model.named_modules()
           if isinstance(mod, nn.Linear) and mod.weight.requires_grad and mod.weight.numel() >= min_entries}
    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def hook(name):
        def save(_mod, args, out):
            seen[name] = (args[0], out)
        return save

    handles = [mod.register_forward_hook(hook(name)) for name, mod in big.items()]
    try:
        loss = loss_fn(model(inputs), labels)
    finally:
        for h in handles:
            h.remove()
    skip = {f"{name}.weight" for name in big}
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and n not in skip]
    outs = [seen[name][1] for name in big]
    grads = torch.autograd.grad(loss, [p for _, p in params] + outs)
    result: dict[str, Tensor | LinearFactor] = {n: g.detach() for (n, _), g in zip(params, grads)}
    for (name, mod), g_out in zip(big.items(), grads[len(params):]):
        x_in = seen[name][0].detach()
        result[f"{name}.weight"] = LinearFactor(g_out.detach().reshape(-1, mod.out_features),
                                                x_in.reshape(-1, mod.in_features))
    order = [n for n, p in model.named_parameters() if p.requires_grad]
    return {n: result[n] for n in order}, float(loss.detach())
