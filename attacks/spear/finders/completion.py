"""Completing a nearly finished disaggregation from the input side.

With ``B−k`` columns of ``Q`` found, the rows of ``Q⁻¹`` that belong to the missing samples are
orthogonal to every found column, so they lie in the ``k``-dimensional orthogonal complement
``P`` of the found directions, and each missing input is ``xᵢᵀ = pᵢᵀ R`` with ``pᵢ ∈ span(P)``
(``Xᵀ = Q⁻¹ R``). Its pre-activations are ``zᵢ = s · (W Rᵀ) pᵢ + b`` for an unknown scale ``s``.
Whatever ``s > 0`` is, a neuron with ``(W Rᵀ pᵢ)_j < 0`` and ``b_j < 0`` is inactive for that
sample, so the kernel of those rows of ``L`` is the sample's direction — exactly, with no
sampling luck. For ``k = 1`` the complement is one vector (two signs); for ``k = 2`` we sweep
the angle of ``pᵢ`` in the complement's plane on a grid and keep only rows whose sign cannot flip
within half a grid step (a margin of ``‖(W Rᵀ P)_j‖ · δθ``), so the true angle's grid neighbour
still yields only truly inactive rows.

This is SCALING.md §3.4's "input-side rounding" (predicted inactive sets from an approximate
input) with the input taken exact from the dual basis. It needs negative biases (PyTorch's
default initialisation draws half of them negative); without them it proposes nothing useful,
which costs a little time and never correctness (the engine filters every proposal).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from attacks.spear.finders import SearchState


def completion_proposals(state: SearchState, max_missing: int = 2, angles: int = 1024) -> Tensor:
    B, found = state.B, state.cands.dirs
    k = B - len(found)
    if state.WR is None or not 1 <= k <= max_missing or len(found) == 0:
        return torch.empty(0, B, dtype=state.L.dtype, device=state.L.device)
    dev, dt = state.L.device, state.L.dtype
    F = found.to(dev, dt)  # (B−k) × B
    # orthonormal complement of the found directions
    Qc = torch.linalg.qr(F.T, mode="complete")[0]
    P = Qc[:, B - k:]  # B × k
    WP = state.WR @ P  # m × k: pre-activation directions of the complement
    if k == 1:
        dirs = torch.cat([WP.T, -WP.T])  # 2 × m (both signs of p)
        margin = torch.zeros(1, WP.shape[0], dtype=dt, device=dev)
    else:
        theta = torch.arange(angles, dtype=dt, device=dev) * (2 * math.pi / angles)
        C = torch.stack([torch.cos(theta), torch.sin(theta)], 1)  # angles × 2
        dirs = C @ WP[:, :2].T  # angles × m
        margin = WP.norm(dim=1)[None] * (math.pi / angles)
    inactive = (dirs < -margin) & (state.bias[None] < 0)  # rows inactive for any positive scale
    enough = inactive.sum(1) >= B - 1
    if not bool(enough.any()):
        return torch.empty(0, B, dtype=dt, device=dev)
    mask = inactive[enough].to(dt)
    Lt = state.L / state.L_norm[:, None]
    G = Lt.T @ (mask[:, :, None] * Lt[None])  # p × B × B
    evals, evecs = torch.linalg.eigh(G)
    unique = evals[:, 1] > 1e-8 * evals[:, -1]  # the kernel must be one direction
    return evecs[:, :, 0][unique]
