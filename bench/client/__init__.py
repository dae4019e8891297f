"""The client: computes the update it sends to the server, with its defense and protocol.

Steps, one module each:

* :mod:`.fedsgd` -- the plain gradient of one batch (FedSGD; ``defense=none``);
* :mod:`.dp` -- DP-SGD: per-sample clipping, Gaussian noise, Opacus' privacy accounting;
* :mod:`.fedavg` -- FedAvg: local SGD epochs over mini-batches, the server sees the weight update;
* :mod:`.flower` -- the same FedAvg update from a real Flower ``NumPyClient``;
* :mod:`.defenses` -- top-p pruning and k-bit quantisation of the update.

:func:`client_update` applies the configured defense (``conf/defense/*.yaml``) and returns what the
server attacks (``gradients``, in gradient units where the threat model allows the conversion),
what it knows about the update (``client_steps``, ``update_meta``, for the ``Observation``) and
the row fields that record the defense (``defense_*``, ``update_norm``, ``dp_epsilon``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor, nn

from bench.client.fedsgd import LOSSES, LinearFactor, cross_entropy, fedsgd_gradient, fedsgd_gradient_factored

_fedsgd_gradient = fedsgd_gradient

DEFENSES = ("none", "dp_sgd", "fedavg", "aggregate", "prune", "quantize")


@dataclass
class ClientUpdate:
    gradients: dict[str, Tensor]          # what the attack gets (gradient units when known)
    client_steps: int = 1
    update_meta: dict[str, float] = field(default_factory=dict)
    row: dict = field(default_factory=dict)


def _plain(cfg) -> dict:
    if cfg is None:
        return {"name": "none"}
    if isinstance(cfg, Mapping):
        return dict(cfg)
    from omegaconf import OmegaConf  # a DictConfig

    return OmegaConf.to_container(cfg, resolve=True)


def update_norm(update: Mapping[str, Tensor]) -> float:
    """L2 norm of the whole update, accumulated in float64 without update-sized temporaries."""
    return float(math.sqrt(sum(float(torch.linalg.vector_norm(g, dtype=torch.float64)) ** 2
                               for g in update.values())))


def samples_per_update(defense, batch_size: int) -> int:
    """Samples behind one observed update: ``clients × B`` under secure aggregation, else ``B``."""
    d = _plain(defense)
    return int(batch_size) * int(d.get("clients", 1)) if d.get("name") == "aggregate" else int(batch_size)


def client_update(defense, model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn=cross_entropy,
                  *, seed: int = 0, gradient_fn=None) -> ClientUpdate:
    """The update the server sees for ``inputs`` under ``defense`` (a dict or DictConfig).

    ``gradient_fn`` (default :func:`fedsgd_gradient`) computes one batch's gradient for the
    FedSGD-based defenses (none, aggregate, prune, quantize); the runner passes its own name for it
    so that tests can stand in a faulty client.
    """
    fedsgd_gradient = gradient_fn or _fedsgd_gradient
    d = _plain(defense)
    name = d.get("name", "none")
    knows = bool(d.get("server_knows", True))
    params = {k: v for k, v in d.items() if k not in ("name",) and not isinstance(v, (dict, list))}
    row = {f"defense_{k}": v for k, v in params.items()}
    meta: dict[str, float] = {}
    steps = 1
    B = int(inputs.shape[0])
    if name == "none":
        grads, _ = fedsgd_gradient(model, inputs, labels, loss_fn)
        sent = grads
    elif name == "dp_sgd":
        from bench.client.dp import dp_epsilon, dp_sgd_gradient

        gen = torch.Generator().manual_seed(int(seed))
        sigma, clip = float(d.get("noise_multiplier", 0.0)), float(d.get("clip", 1.0))
        grads, info = dp_sgd_gradient(model, inputs, labels, loss_fn, clip=clip, noise_multiplier=sigma,
                                      generator=gen)
        sent = grads
        q = float(d["sample_rate"]) if d.get("sample_rate") else B / float(d.get("dataset_size", 50_000))
        delta = float(d.get("delta", 1e-5))
        row.update(info)
        row.update(dp_epsilon=dp_epsilon(sigma, q, int(d.get("rounds", 1)), delta), dp_delta=delta,
                   dp_sample_rate=q)
        if knows:
            meta.update(noise_std=info["noise_std"], dp_clip=clip, dp_noise_multiplier=sigma)
    elif name == "fedavg":
        from bench.client.fedavg import fedavg_update, update_as_gradient

        lb = B if d.get("local_batch") is None else int(d["local_batch"])  # null: the whole batch
        kw = dict(epochs=int(d.get("epochs", 1)), local_batch=lb, lr=float(d["lr"]),
                  shuffle=bool(d.get("shuffle", False)), seed=int(seed))
        if d.get("client", "harness") == "flower":
            from bench.client.flower import flower_update

            delta_w, steps = flower_update(model, inputs, labels, loss_fn, **kw)
        elif d.get("client", "harness") == "harness":
            delta_w, steps = fedavg_update(model, inputs, labels, loss_fn, **kw)
        else:
            raise ValueError(f"defense.client={d.get('client')!r}: use harness or flower")
        sent = delta_w
        grads = update_as_gradient(delta_w, lr=kw["lr"] if knows else None, steps=steps)
        meta.update(update_is_weight_delta=1.0, gradient_scaled=1.0 if knows else 0.0)
        if knows:
            meta.update(lr=kw["lr"], local_epochs=float(kw["epochs"]), local_batch=float(lb),
                        local_steps=float(steps))
        row["defense_local_batch"] = lb
    elif name == "aggregate":
        K = int(d.get("clients", 1))
        if K < 1:
            raise ValueError(f"defense.clients={K}: secure aggregation needs at least one client")
        if B % K:
            raise ValueError(f"aggregate: {B} samples do not split over {K} clients")
        per = B // K
        parts = [fedsgd_gradient(model, inputs[k * per:(k + 1) * per], labels[k * per:(k + 1) * per],
                                 loss_fn)[0] for k in range(K)]
        sent = {n: sum(p[n] for p in parts) for n in parts[0]}
        # the number of clients is public under secure aggregation: the mean of K equal-size means
        # is the gradient of one batch of K·B samples
        grads = {n: g / K for n, g in sent.items()}
        meta.update(aggregated_clients=float(K))
    elif name in ("prune", "quantize"):
        from bench.client import defenses

        plain, _ = fedsgd_gradient(model, inputs, labels, loss_fn)
        if name == "prune":
            sent = defenses.prune(plain, float(d.get("keep", 0.1)))
            if knows:
                meta.update(prune_keep=float(d.get("keep", 0.1)))
        else:
            sent = defenses.quantize(plain, int(d.get("bits", 8)))
            if knows:
                meta.update(quantize_bits=float(d.get("bits", 8)))
        grads = sent
    else:
        raise ValueError(f"defense.name={name!r}: choose one of {', '.join(DEFENSES)}")
    row["update_norm"] = update_norm(sent)
    return ClientUpdate({n: g.detach() for n, g in grads.items()}, steps, meta, row)


__all__ = ["LOSSES", "cross_entropy", "fedsgd_gradient", "fedsgd_gradient_factored", "LinearFactor",
           "client_update", "ClientUpdate", "samples_per_update", "update_norm", "DEFENSES"]
