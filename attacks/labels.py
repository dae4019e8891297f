"""What the gradient reveals about a batch besides its inputs: the labels and the batch size.

Label counting from the last layer (for the client's softmax cross-entropy, mean reduction).
With logits ``z_i = W h_i + b`` and ``p_i = softmax(z_i)``:

    dL/db = (1/B) Σ_i (p_i − onehot(y_i)),  so  count_c = B · (p̄_c − (dL/db)_c),

where ``p̄`` is the batch's mean softmax. Every class with a negative bias-gradient entry is present
(``p̄_c ≥ 0``); how many times follows from the magnitude once ``p̄`` is estimated. The server
estimates ``p̄`` from the model it knows, on probe inputs drawn from the attack's seeded generator
(standard normal in model-input space, clamped to the valid image box) — accurate for the
untrained networks of the benchmark, whose softmax barely depends on the input. The counts are
rounded by largest remainder so that they sum to ``B``, every negative entry keeping at least one.
Without a bias, the row sums of the weight gradient play the same role, scaled by the mean
activation mass of the penultimate layer on the same probes (the LLG-style estimate).

The batch size, when the threat model hides it, is the numerical rank of a linear layer's weight
gradient (``dL/dW = dL/dZ · Aᵀ`` has rank ``B`` while ``B < min(m, n)``): the cheapest of the
widest layers, the second one for the FCNN (:func:`rank_layer`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attacks.base import AttackNotApplicable, Observation
from attacks.layers import numerical_rank


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` in registration order (the classifier producing the logits)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise AttackNotApplicable("label recovery needs an nn.Linear classifier layer; the model has none")
    return found[-1]


def first_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            return n, m
    raise AttackNotApplicable("batch-size estimation needs an nn.Linear layer; the model has none")


def rank_layer(obs: Observation) -> str:
    """The linear layer whose weight-gradient rank tells the batch size most cheaply.

    ``dL/dW = dL/dZ · Aᵀ`` has rank ``B`` for every linear layer with ``B < min(m, n)``; among the
    layers with the largest ``min(m, n)`` (the widest cap on what a rank can tell) take the one
    with the fewest entries. For the FCNN that is the second layer (200×200): the same rank as the
    first layer's (200×1.5 M at ImageNet 720) at a ten-thousandth of the SVD's cost.
    """
    cands = [(n, m) for n, m in obs.model.named_modules()
             if isinstance(m, nn.Linear) and f"{n}.weight" in obs.gradients]
    if not cands:
        raise AttackNotApplicable("batch-size estimation needs the weight gradient of an nn.Linear layer")
    cap = max(min(m.in_features, m.out_features) for _, m in cands)
    return min((m.weight.numel(), i, n) for i, (n, m) in enumerate(cands)
               if min(m.in_features, m.out_features) == cap)[2]


def batch_size_of_rank(rank: int, shape: tuple[int, ...], *, saturated_ok: bool = False,
                       what: str = "the weight gradient") -> int:
    """The batch size that a weight gradient of numerical rank ``rank`` and shape (m, n) reveals.

    ``dL/dW = dL/dZ · Aᵀ`` has rank ``B`` while ``B < min(m, n)``; at ``min(m, n)`` the rank is
    saturated and only a lower bound (raises unless ``saturated_ok``); rank 0 reveals nothing. The
    one place that reads a batch size off a rank (SPEAR's engine, CPA, Geiping via
    :func:`batch_size_from_rank`).
    """
    cap = min(shape)
    if rank <= 0:
        raise AttackNotApplicable(f"{what} is zero; the batch reveals nothing")
    if rank >= cap and not saturated_ok:
        raise AttackNotApplicable(
            f"{what} has full rank {rank} = min(m, n) = {cap}: the batch is not smaller than the "
            "layer width, so its size cannot be read off the rank; reveal it "
            "(threat.batch_size_known=true) or attack a wider layer")
    return rank


def batch_size_from_rank(obs: Observation, rel_tol: float | None = None,
                         layer: str | None = None, *, saturated_ok: bool = True) -> tuple[int, dict]:
    """Numerical rank of a linear layer's weight gradient (``layer``, default :func:`rank_layer`)
    as the batch size (:func:`batch_size_of_rank`), with where it came from."""
    name = layer or rank_layer(obs)
    key = f"{name}.weight"
    if key not in obs.gradients:
        raise AttackNotApplicable(f"observation lacks {key!r}; cannot estimate the batch size from its rank")
    g = obs.gradients[key].detach().to("cpu", torch.float64)
    g = g.reshape(g.shape[0], -1)
    if not torch.isfinite(g).all():
        raise AttackNotApplicable(f"gradient {key!r} is not finite; cannot estimate the batch size")
    rank = numerical_rank(torch.linalg.svdvals(g), obs.gradients[key].dtype, rel_tol)
    rank = batch_size_of_rank(rank, tuple(g.shape), saturated_ok=saturated_ok, what=f"gradient {key!r}")
    cap = min(g.shape)
    return rank, {"batch_size_source": "rank" if rank < cap else "rank_saturated",
                  "batch_size_rank_cap": cap, "batch_size_rank_layer": name}


def _probe_inputs(obs: Observation, n: int, generator: torch.Generator, like: Tensor) -> Tensor:
    spec = obs.data_spec
    x = torch.randn((n, *spec.shape), generator=generator, dtype=torch.float64)
    x = x.to(device=like.device, dtype=like.dtype)
    if spec.kind == "image":
        lo, hi = spec.box(x)
        x = torch.maximum(torch.minimum(x, hi), lo)
    return x


def _allocate(counts: Tensor, must: Tensor, total: int) -> Tensor:
    """Integers close to ``counts`` (≥ 0, ≥ 1 where ``must``) summing to ``total`` (largest remainder)."""
    c = counts.double().clamp_min(0)
    k = torch.floor(c).long()
    k[must] = k[must].clamp_min(1)
    while int(k.sum()) < total:           # give one more to the class furthest below its estimate
        k[int(torch.argmax(c - k))] += 1
    while int(k.sum()) > total:           # take one from the class furthest above its estimate
        excess = k.double() - c
        excess[k <= must.long()] = -math.inf  # keep ≥ 1 for present classes, ≥ 0 for the rest
        j = int(torch.argmax(excess))
        if not math.isfinite(float(excess[j])):
            break  # more present classes than the batch size allows: keep them all
        k[j] -= 1
    return k


@torch.no_grad()
def recover_labels(obs: Observation, batch_size: int, *, generator: torch.Generator,
                   n_probe: int = 64) -> tuple[Tensor, dict]:
    """Labels (sorted by class) of a batch of ``batch_size`` from the last layer's gradient."""
    name, mod = last_linear(obs.model)
    if mod.out_features != obs.data_spec.num_classes:
        raise AttackNotApplicable(
            f"last linear layer {name!r} has {mod.out_features} outputs but the data has "
            f"{obs.data_spec.num_classes} classes; label recovery needs the logits layer")
    wkey, bkey = f"{name}.weight", f"{name}.bias"
    param = next(obs.model.parameters())
    # the estimate needs few probes; keep their forward pass cheap for huge inputs (ImageNet 720)
    n_probe = max(8, min(int(n_probe), int(2e7 // max(1, obs.data_spec.numel))))
    probes = _probe_inputs(obs, n_probe, generator, param)
    feats: list[Tensor] = []
    hook = mod.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
    try:
        logits = obs.model(probes)
    finally:
        hook.remove()
    p_bar = torch.softmax(logits.double(), dim=-1).mean(0).cpu()
    if bkey in obs.gradients:
        g = obs.gradients[bkey].detach().double().cpu()
        method = "bias"
    elif wkey in obs.gradients:
        # row sums of dL/dW = (1/B) Σ_i (p_i − y_i) h_iᵀ, with Σ_j h_ij ≈ its mean on the probes
        mass = float(feats[0].double().reshape(n_probe, -1).sum(1).mean())
        if mass <= 0:
            raise AttackNotApplicable(f"penultimate activations of {name!r} vanish on probes; "
                                      "cannot count labels without a bias gradient")
        g = obs.gradients[wkey].detach().double().cpu().sum(1) / mass
        method = "weight_rowsum"
    else:
        raise AttackNotApplicable(f"observation lacks gradients of the classifier layer {name!r}")
    if not torch.isfinite(g).all():
        raise AttackNotApplicable(f"classifier gradient of {name!r} is not finite")
    counts = batch_size * (p_bar - g)
    must = g < 0
    k = _allocate(counts, must, batch_size)
    labels = torch.repeat_interleave(torch.arange(len(k)), k)
    diag = {"labels_method": method, "labels_present": int(must.sum()), "labels_probes": n_probe,
            "labels_count_residual": float((counts - k.double()).abs().max())}
    return labels, diag


@torch.no_grad()
def assign_labels(obs: Observation, labels: Tensor, x: Tensor) -> tuple[Tensor, dict]:
    """Order the recovered multiset ``labels`` to match the samples of ``x`` (model-input space).

    Needed when an attack starts from given images (a pipeline's ``init``): there, which sample
    carries which label matters. With ``h_i`` the classifier's inputs and ``p_i`` its softmax on
    ``x``, the observed ``G = dL/dW = (1/B) Σ_i (p_i − onehot(y_i)) h_iᵀ`` gives
    ``Σ_i onehot(y_i) h_iᵀ = Σ_i p_i h_iᵀ − B·G``; least squares over the one-hot matrix yields a
    score for every (sample, class), exact when ``x`` is the true batch, and a Hungarian assignment
    of the multiset to the samples maximises the total score.
    """
    from scipy.optimize import linear_sum_assignment

    name, mod = last_linear(obs.model)
    wkey = f"{name}.weight"
    B = x.shape[0]
    if wkey not in obs.gradients or B != labels.shape[0] or B < 2:
        return labels, {"labels_assigned": "as_recovered"}
    param = next(obs.model.parameters())
    feats: list[Tensor] = []
    hook = mod.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
    try:
        logits = obs.model(x.to(device=param.device, dtype=param.dtype))
    finally:
        hook.remove()
    H = feats[0].double().reshape(B, -1).cpu()
    P = torch.softmax(logits.double(), dim=-1).cpu()
    G = obs.gradients[wkey].detach().double().cpu()
    M = P.T @ H - B * G                                  # ≈ Σ_i onehot(y_i) h_iᵀ   (C×d)
    S = torch.linalg.lstsq(H.T, M.T).solution            # (B×C): score of class c for sample i
    cost = -S[:, labels.cpu()].numpy()                   # sample i takes the j-th recovered label
    rows, cols = linear_sum_assignment(cost)
    out = torch.empty_like(labels)
    out[torch.as_tensor(rows)] = labels[torch.as_tensor(cols)]
    return out, {"labels_assigned": "last_layer_lstsq"}


__all__ = ["recover_labels", "assign_labels", "batch_size_from_rank", "batch_size_of_rank", "last_linear", "first_linear"]
