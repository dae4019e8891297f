"""FedSGD: the client sends the plain gradient of one batch (mean loss)."""
from __future__ import annotations

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
