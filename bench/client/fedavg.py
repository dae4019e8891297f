"""FedAvg on the client (McMahan et al., AISTATS 2017): local SGD, the server sees the weight update.

The client runs ``epochs`` passes over its ``B`` samples in mini-batches of ``local_batch`` (the
last one smaller when ``local_batch`` does not divide ``B``), plain SGD (no momentum, no weight
decay) at learning rate ``lr`` on the mean loss of each mini-batch, and sends
``ΔW = W_after − W_before = −lr · Σ_t g_t``. The order of the samples is ``0..B−1`` in every
epoch, or a fresh ``torch.randperm(B, generator)`` per epoch when ``shuffle`` (the permutation a
``DataLoader(shuffle=True, generator=...)`` draws), so the Flower client (``bench.client.flower``)
reproduces it exactly.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from bench.client.fedsgd import fedsgd_gradient


def minibatch_order(B: int, *, epochs: int, local_batch: int, shuffle: bool = False,
                    seed: int = 0) -> list[Tensor]:
    """The index tensor of every local step, in order."""
    if epochs < 1 or local_batch < 1:
        raise ValueError(f"fedavg needs epochs >= 1 and local_batch >= 1, got {epochs}, {local_batch}")
    gen = torch.Generator().manual_seed(int(seed))
    steps = []
    for _ in range(int(epochs)):
        order = torch.randperm(B, generator=gen) if shuffle else torch.arange(B)
        steps += list(order.split(int(local_batch)))
    return steps


def fedavg_update(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, epochs: int,
                  local_batch: int, lr: float, shuffle: bool = False, seed: int = 0
                  ) -> tuple[dict[str, Tensor], int]:
    """(ΔW keyed by parameter name, number of local steps). ``model`` itself is left unchanged."""
    if not 0 < float(lr) < math.inf:
        raise ValueError(f"defense.lr={lr!r}: the local learning rate must be a finite number > 0 "
                         "(lr <= 0 is no training or gradient ascent)")
    local = copy.deepcopy(model)
    params = dict(local.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
    steps = minibatch_order(inputs.shape[0], epochs=epochs, local_batch=local_batch, shuffle=shuffle,
                            seed=seed)
    for idx in steps:
        idx = idx.to(inputs.device)
        g, _ = fedsgd_gradient(local, inputs[idx], labels[idx], loss_fn)
        with torch.no_grad():
            for n, gn in g.items():
                params[n].sub_(lr * gn)
    delta = {n: (params[n].detach() - w0) for n, w0 in before.items()}
    return delta, len(steps)


def update_as_gradient(delta: dict[str, Tensor], *, lr: float | None, steps: int) -> dict[str, Tensor]:
    """What the server attacks: ``−ΔW / (lr · steps)`` (the mean local gradient; equal to the
    FedSGD gradient for one full-batch step) when it knows ``lr``, else ``−ΔW`` (the same
    direction; SPEAR and cosine-matching attacks are invariant to the scale)."""
    if lr is not None and not 0 < float(lr) < math.inf:
        raise ValueError(f"defense.lr={lr!r}: must be a finite number > 0, or None when the server does "
                         "not know it")
    scale = -1.0 / (float(lr) * steps) if lr is not None else -1.0
    return {n: d * scale for n, d in delta.items()}


__all__ = ["minibatch_order", "fedavg_update", "update_as_gradient"]
