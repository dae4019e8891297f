"""The plane split: the two sample directions inside a 2-D kernel of ``L̃`` (shared by the l1
finder, the pair splitter and the template completion)."""
from __future__ import annotations

import torch
from torch import Tensor


def _modal_runs(angle: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """For each row of ``angle`` (P × m, values in [0, π)), the two largest groups of equal
    angles (consecutive sorted values closer than ``tol``): (P × 2) representative angles and
    (P × 2) group sizes."""
    P, m = angle.shape
    a, _ = angle.sort(dim=1)
    new_run = torch.ones_like(a, dtype=torch.long)
    new_run[:, 1:] = (a[:, 1:] - a[:, :-1] > tol).long()
    run = new_run.cumsum(1) - 1 + torch.arange(P, device=a.device)[:, None] * m  # global run ids
    size = torch.zeros(P * m, dtype=torch.long, device=a.device).scatter_add_(
        0, run.flatten(), torch.ones(P * m, dtype=torch.long, device=a.device)).view(P, m)
    top_size, top_run = size.topk(2, dim=1)
    first = torch.full((P * m,), m, dtype=torch.long, device=a.device).scatter_reduce_(
        0, run.flatten(), torch.arange(m, device=a.device).repeat(P), reduce="amin").view(P, m)
    pos = first.gather(1, top_run).clamp_max(m - 1)
    return a.gather(1, pos), top_size


def split_plane(Lt: Tensor, N2: Tensor, zero_tol: float) -> tuple[Tensor, Tensor]:
    """The two sample directions inside 2-D kernels ``N2`` (p × B × 2), when there are two.

    A row of ``L̃`` inactive for a sample whose direction lies in the plane is orthogonal to that
    direction within the plane, so rows inactive for the same sample all project to the same
    angle: the two most frequent angles give the two directions exactly. Returns (p × 2 × B)
    directions and (p × 2) supporting row counts.
    """
    M = Lt @ N2  # p × m × 2
    ang = torch.remainder(torch.atan2(M[:, :, 1], M[:, :, 0]), torch.pi)
    # rows orthogonal to the whole plane (inactive for both samples) carry no angle: give each
    # its own value past π so that they never form a group
    flat = M.norm(dim=2) <= 1e3 * zero_tol
    ang = torch.where(flat, 4.0 + torch.arange(M.shape[1], dtype=ang.dtype, device=ang.device), ang)
    rep, size = _modal_runs(ang, 1e3 * zero_tol)
    v = torch.stack([-torch.sin(rep), torch.cos(rep)], dim=2)  # orthogonal to the rows' angle
    return (N2[:, None] @ v[:, :, :, None])[:, :, :, 0], size
