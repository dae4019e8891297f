"""The client's update under each defense: one function per entry of ``conf/defense/``.

Each entry's ``_target_`` names one of these functions; ``bench.client.client_update``
instantiates it with the entry's knobs (hydra ``instantiate``, partially) and calls it as
``update(model, inputs, labels, loss_fn, seed=..., gradient_fn=...)``. ``gradient_fn`` computes one
batch's plain gradient (default :func:`~bench.client.fedsgd.fedsgd_gradient`; the runner passes
its own so that tests can stand in a faulty client). Each returns a :class:`ClientUpdate`: what the
server attacks (``gradients``, in gradient units where the threat model allows the conversion),
what it knows about the update (``client_steps``, ``update_meta``) and the row fields of the
defense (``update_norm`` of what was sent, and the defense's own).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor, nn

from bench.client import defenses
from bench.client.dp import dp_epsilon, dp_sgd_gradient
from bench.client.fedavg import fedavg_update, update_as_gradient
from bench.client.fedsgd import fedsgd_gradient


@dataclass
class ClientUpdate:
    gradients: dict[str, Tensor]          # what the attack gets (gradient units when known)
    client_steps: int = 1
    update_meta: dict[str, float] = field(default_factory=dict)
    row: dict = field(default_factory=dict)


def update_norm(update: Mapping[str, Tensor]) -> float:
    """L2 norm of the whole update, accumulated in float64 without update-sized temporaries."""
    return float(math.sqrt(sum(float(torch.linalg.vector_norm(g, dtype=torch.float64)) ** 2
                               for g in update.values())))


def _done(grads: Mapping[str, Tensor], sent: Mapping[str, Tensor], steps: int = 1,
          meta: dict | None = None, row: dict | None = None) -> ClientUpdate:
    row = dict(row or {})
    row["update_norm"] = update_norm(sent)
    return ClientUpdate({n: g.detach() for n, g in grads.items()}, steps, dict(meta or {}), row)


def fedsgd(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, seed: int = 0,
           gradient_fn=fedsgd_gradient) -> ClientUpdate:
    """FedSGD (``defense=none``): the plain gradient of one batch."""
    grads, _ = gradient_fn(model, inputs, labels, loss_fn)
    return _done(grads, grads)


def dp_sgd(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, seed: int = 0,
           gradient_fn=fedsgd_gradient, clip: float = 1.0, noise_multiplier: float = 0.0,
           delta: float = 1e-5, dataset_size: int = 50_000, sample_rate: float | None = None,
           rounds: int = 1, server_knows: bool = True) -> ClientUpdate:
    """DP-SGD (bench/client/dp.py): clipped per-sample gradients plus Gaussian noise, with Opacus'
    privacy accounting in the row."""
    B = int(inputs.shape[0])
    gen = torch.Generator().manual_seed(int(seed))
    sigma, clip = float(noise_multiplier), float(clip)
    grads, info = dp_sgd_gradient(model, inputs, labels, loss_fn, clip=clip, noise_multiplier=sigma,
                                  generator=gen)
    q = float(sample_rate) if sample_rate else B / float(dataset_size)
    delta = float(delta)
    row = dict(info)
    row.update(dp_epsilon=dp_epsilon(sigma, q, int(rounds), delta), dp_delta=delta, dp_sample_rate=q)
    meta = {}
    if server_knows:
        meta.update(noise_std=info["noise_std"], dp_clip=clip, dp_noise_multiplier=sigma)
    return _done(grads, grads, meta=meta, row=row)


def fedavg(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, seed: int = 0,
           gradient_fn=fedsgd_gradient, lr: float, epochs: int = 1, local_batch: int | None = None,
           shuffle: bool = False, client: str = "harness", server_knows: bool = True) -> ClientUpdate:
    """FedAvg (bench/client/fedavg.py, or a Flower client): local SGD epochs; the server sees the
    weight update, converted to gradient units when it knows the learning rate."""
    B = int(inputs.shape[0])
    lb = B if local_batch is None else int(local_batch)  # null: the whole batch
    kw = dict(epochs=int(epochs), local_batch=lb, lr=float(lr), shuffle=bool(shuffle), seed=int(seed))
    if client == "flower":
        from bench.client.flower import flower_update  # Flower (optional extra) loads in 0.5 s: only when asked

        delta_w, steps = flower_update(model, inputs, labels, loss_fn, **kw)
    elif client == "harness":
        delta_w, steps = fedavg_update(model, inputs, labels, loss_fn, **kw)
    else:
        raise ValueError(f"defense.client={client!r}: use harness or flower")
    grads = update_as_gradient(delta_w, lr=kw["lr"] if server_knows else None, steps=steps)
    meta = {"update_is_weight_delta": 1.0, "gradient_scaled": 1.0 if server_knows else 0.0}
    if server_knows:
        meta.update(lr=kw["lr"], local_epochs=float(kw["epochs"]), local_batch=float(lb),
                    local_steps=float(steps))
    return _done(grads, delta_w, steps, meta, {"defense_local_batch": lb})


def aggregate(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, seed: int = 0,
              gradient_fn=fedsgd_gradient, clients: int = 1) -> ClientUpdate:
    """Secure aggregation: the sum of ``clients`` clients' FedSGD gradients over equal shares of
    ``inputs`` (the runner draws ``clients × B`` samples, :func:`bench.client.batches.select_update_batch`)."""
    B, K = int(inputs.shape[0]), int(clients)
    if K < 1:
        raise ValueError(f"defense.clients={K}: secure aggregation needs at least one client")
    if B % K:
        raise ValueError(f"aggregate: {B} samples do not split over {K} clients")
    per = B // K
    parts = [gradient_fn(model, inputs[k * per:(k + 1) * per], labels[k * per:(k + 1) * per], loss_fn)[0]
             for k in range(K)]
    sent = {n: sum(p[n] for p in parts) for n in parts[0]}
    # the number of clients is public under secure aggregation: the mean of K equal-size means
    # is the gradient of one batch of K·B samples
    grads = {n: g / K for n, g in sent.items()}
    return _done(grads, sent, meta={"aggregated_clients": float(K)})


def prune(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, seed: int = 0,
          gradient_fn=fedsgd_gradient, keep: float = 0.1, server_knows: bool = True) -> ClientUpdate:
    """Top-``keep`` pruning of every tensor of the gradient (bench/client/defenses.py)."""
    plain, _ = gradient_fn(model, inputs, labels, loss_fn)
    sent = defenses.prune(plain, float(keep))
    return _done(sent, sent, meta={"prune_keep": float(keep)} if server_knows else {})


def quantize(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, seed: int = 0,
             gradient_fn=fedsgd_gradient, bits: int = 8, server_knows: bool = True) -> ClientUpdate:
    """``bits``-bit uniform quantisation of every tensor of the gradient (bench/client/defenses.py)."""
    plain, _ = gradient_fn(model, inputs, labels, loss_fn)
    sent = defenses.quantize(plain, int(bits))
    return _done(sent, sent, meta={"quantize_bits": float(bits)} if server_knows else {})


__all__ = ["ClientUpdate", "update_norm", "fedsgd", "dp_sgd", "fedavg", "aggregate", "prune", "quantize"]
