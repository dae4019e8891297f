"""Completing a nearly finished disaggregation from the input side, with the exact scale.

With ``B−k`` columns of ``Q`` found, the rows of ``Q⁻¹`` that belong to the missing samples are
orthogonal to every found column, so they lie in the ``k``-dimensional orthogonal complement
``P`` of the found directions, and each missing input is ``xᵢᵀ = pᵢᵀ R`` with ``pᵢ ∈ span(P)``
(``Xᵀ = Q⁻¹ R``, ``R`` the row factor of ``dW = L R``). The bias gradient fixes the scale: with the
true (scaled) ``Q``, ``dL/db = dZ·1 = L Q 1``, so ``s := L⁺ dL/db = Q 1`` and ``Q⁻¹ s = 1``, i.e.
``pᵢ · s = 1`` for every sample. The pre-activations of a candidate ``p`` are ``z = (W Rᵀ) p + b``
and the sample's inactive neurons are exactly ``{j : z_j ≤ 0}``; the kernel of those rows of ``L``
is its direction.

Every proposal is certified before it is returned: ``L q`` must be zero on exactly the predicted
inactive rows (no more, no fewer). A certified proposal is exempt from the engine's mixture screen
(its kernel may hinge on one row, as a mixture's does, when a look-alike sample shares all but
one of its zero rows); the sign check still decides.

* ``k = 1``: ``p = P / (Pᵀ s)`` is the missing input itself: its zero set, hence its direction,
  is exact.
* ``k = 2``: ``p`` lies on the line ``{P c : (Pᵀ s)·c = 1}``; every row's pre-activation is linear
  along it, so its sign changes at one point. Between consecutive change points the predicted
  zero set is constant: the ``m + 1`` intervals are all the zero sets the line can produce, and
  the two missing samples' are among them. Their Gram matrices are running sums of rank-one
  terms (rows sorted by change point); those with a one-dimensional (numerical) kernel are
  proposed, and the engine's filter, refit and sign check decide.

The found set is the candidates themselves, and — when mixtures of look-alike samples have
passed the filter, so there are as many candidates as samples or more — also the directions that
the engine's last selection confirmed by its sign check (``state.confirmed``): the one or two
samples it got wrong are then completed; and the likeliest true candidates (:func:`trusted_order`),
for when no selection of B well-conditioned candidates exists yet to be checked (measured at
b = 64, width 1000: 63 of 64 true directions among 88 candidates, the last one never completed
without this). Measured on the paper_spear table's hardest CIFAR-10
batch (b = 20, width 200, batch 48): one sample's 109 zero rows lie, all but one, inside a
look-alike's; the l1 finder, its neighbour search and the angle-grid completion this replaces
(a margin so that only rows inactive for *any* scale were used, which missed that one row) stayed
at 19 of 20 directions for 600 s.

This is the "input-side rounding" of docs/large-batch.md (predicted inactive sets from an
approximate input) with the input taken exact from the dual basis and the bias gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor

from attacks.spear.finders import SearchState


def completion_proposals(state: SearchState, max_missing: int = 2,
                         trusted: list[int] | None = None) -> Tensor:
    """Certified proposals for the last ``max_missing`` samples; ``trusted``: this step's
    :func:`trusted_order` when the caller has it (computed here otherwise)."""
    B, dirs = state.B, state.cands.dirs
    empty = torch.empty(0, B, dtype=state.L.dtype, device=state.L.device)
    if state.WR is None or state.bias is None or state.db is None or len(dirs) == 0:
        return empty
    found_sets = [dirs]
    if state.confirmed and len(state.confirmed) < len(dirs):
        found_sets.append(dirs[state.confirmed])
    if len(dirs) >= B:  # more candidates than samples: also the likeliest true ones
        if trusted is None:
            trusted = trusted_order(state, B - 1)
        found_sets += [dirs[trusted[:B - k]] for k in range(1, max_missing + 1) if len(trusted) >= B - k]
    return torch.cat([empty, *(_complete(state, F, max_missing) for F in found_sets)])


def trusted_order(state: SearchState, limit: int, min_singular: float = 1e-4) -> list[int]:
    """Candidates most likely to be true directions, well conditioned together: the ones the last
    sign check confirmed, then the rest sparsest first (at most ``limit``). A mixture of two
    samples is zero only where both are inactive, so it sorts after the true directions (measured
    at b = 64, width 1000: true 469–539 zeros, mixtures of look-alikes 326–430); cutting the order
    short keeps mixtures out of a found set, where one would shut its sample out of the complement."""
    dirs, zeros = state.cands.dirs, state.cands.zeros
    first = list(state.confirmed or [])
    seen = set(first)
    rest = sorted((i for i in range(len(dirs)) if i not in seen), key=lambda i: -zeros[i])
    chosen: list[int] = []
    for i in first + rest:
        if len(chosen) >= limit:
            break
        if torch.linalg.svdvals(dirs[chosen + [i]])[-1] >= min_singular:
            chosen.append(i)
    return chosen


def complement(F: Tensor, B: int) -> Tensor:
    """Orthonormal basis (B × k) of the complement of the span of the rows of ``F``."""
    _, S, Vh = torch.linalg.svd(F, full_matrices=True)
    r = int((S > 1e-8 * S[0]).sum()) if len(S) else 0
    return Vh[r:].T


def _complete(state: SearchState, F: Tensor, max_missing: int) -> Tensor:
    B, dev, dt = state.B, state.L.device, state.L.dtype
    empty = torch.empty(0, B, dtype=dt, device=dev)
    P = complement(F.to(dev, dt), B)
    s = state.ones_image
    k = P.shape[1]
    if not 1 <= k <= max_missing:
        return empty
    a = P.T @ s
    if float(a.norm()) <= 1e-12 * float(s.norm()):
        return empty
    Lt = state.L / state.L_norm[:, None]
    Z = state.WR @ P  # m × k: pre-activation directions of the complement
    if k == 1:
        S = (Z[:, 0] / a[0] + state.bias <= 0)[None]  # the missing sample's zero set
        G = (Lt.T @ (S[0].to(dt)[:, None] * Lt))[None]
    else:
        c0 = a / a.dot(a)
        e = torch.stack([-a[1], a[0]]) / a.norm()
        z0, g = Z @ c0 + state.bias, Z @ e  # along the line: z(t) = z0 + t g
        moving = g != 0
        base = (g > 0) | (~moving & (z0 <= 0))  # inactive as t -> -inf
        G0 = Lt.T @ (base.to(dt)[:, None] * Lt)
        t = torch.where(moving, -z0 / torch.where(moving, g, torch.ones_like(g)), torch.full_like(g, torch.inf))
        order = t.argsort()[: int(moving.sum())]
        sign = torch.where(g[order] > 0, -1.0, 1.0).to(dt)  # leaves (g > 0) or joins (g < 0)
        steps = sign[:, None, None] * Lt[order][:, :, None] * Lt[order][:, None, :]
        G = torch.cat([G0[None], G0[None] + steps.cumsum(0)])
        rank = torch.full((len(g),), len(g) + 1, dtype=torch.long, device=dev)
        rank[order] = torch.arange(len(order), device=dev)
        S = None  # zero sets per interval, formed below for the kernel intervals only
    evals, evecs = torch.linalg.eigh(G)
    top = evals[:, -1].clamp_min(torch.finfo(dt).tiny)
    kernel = ((evals[:, 0] <= (10 * state.zero_tol) ** 2 * top) & (evals[:, 1] > 1e-8 * top)).nonzero().squeeze(1)
    if not len(kernel):
        return empty
    q = evecs[kernel, :, 0]
    if S is None:  # interval i: rows not yet crossed keep their t -> -inf state, crossed ones flip
        S = base[None] ^ (rank[None] < kernel[:, None])
    else:
        S = S[kernel]
    # certificate: the direction is zero exactly on the predicted inactive rows, no more, no less
    zero = (q @ Lt.T).abs() <= state.zero_tol
    return q[(zero == S).all(1)]
