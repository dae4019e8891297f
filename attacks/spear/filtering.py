"""From proposals to candidate directions: null vectors, the sparsity filter, the mixture screen,
the exact refit, and the de-duplicated candidate set.

A proposal ``q`` (unit vector in R^B) is a candidate column of ``Q`` when ``L q`` has many exact
zeros (SPEAR's filter, Dimitrov et al. 2024 §4). With correlated real pictures, mixtures
``a q_i + b q_j`` of two true directions also pass a low threshold; they are told apart by the
rank structure of their zero rows (:func:`refine`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from attacks.spear.precision import DTYPE, degenerate_ratio


def null_vectors(LA: Tensor) -> tuple[Tensor, Tensor]:
    """Unit null vectors of a batch of (B−1)×B matrices; second output marks the usable ones."""
    K, r, B = LA.shape
    M, rhs = LA[:, :, : B - 1], -LA[:, :, B - 1]
    head, info = torch.linalg.solve_ex(M, rhs)
    q = torch.cat([head, torch.ones(K, 1, dtype=LA.dtype, device=LA.device)], dim=1)
    ok = (info == 0) & torch.isfinite(q).all(dim=1)
    q = q / q.norm(dim=1, keepdim=True)
    return q, ok


def zero_mask(L: Tensor, rownorm: Tensor, q: Tensor, zero_tol: float) -> Tensor:
    """Zero mask of ``L q`` (rows × proposals) for unit-norm proposals ``q`` (K×B)."""
    P = L @ q.T
    return P.abs() <= zero_tol * rownorm[:, None]


def refine(L: Tensor, zero_rows: Tensor, zero_tol: float, fragile_leverage: float | None) -> Tensor | None:
    """Unit vector orthogonal to all rows ``L[zero_rows]`` (their least singular vector).

    Returns None when those rows do not pin down one direction robustly:

    * a second singular value near zero: the rows are orthogonal to a 2-D span of directions;
    * a row of leverage ~1 in the remaining (B-1)-dim row space: the direction hinges on that one
      row. This is the signature of a *mixture* ``a q_i + b q_j``: its zeros are the rows where
      both samples are inactive (rank B-2) plus the one sampled row that fixed the ratio a:b.
      A true direction's zero set (about half the live rows) spans B-1 dimensions many times
      over, so no single row carries a dimension alone.
    """
    rows = L[zero_rows]
    B = L.shape[1]
    if rows.shape[0] < B - 1:
        return None
    U, S, Vh = torch.linalg.svd(rows, full_matrices=False)
    if B > 1:
        if S.numel() < B - 1 or S[B - 2] <= degenerate_ratio(zero_tol) * S[0]:
            return None
        if fragile_leverage is not None and rows.shape[0] > B - 1:
            leverage = (U[:, : B - 1] ** 2).sum(1)
            if leverage.max() > fragile_leverage:
                return None
    q = Vh[B - 1] if Vh.shape[0] >= B else torch.linalg.svd(rows, full_matrices=True)[2][-1]
    return q * torch.sign(q[q.abs().argmax()])


def screen(L: Tensor, zmask: Tensor, zero_tol: float, fragile_leverage: float | None) -> Tensor:
    """Cheap batched version of :func:`refine`'s tests for many proposals at once (via B×B Gram
    matrices): True where the zero rows pin down a single direction robustly. Survivors are
    refined exactly by :func:`refine`."""
    P, B = zmask.shape[1], L.shape[1]
    if P == 0 or B == 1:
        return torch.ones(P, dtype=torch.bool, device=L.device)
    Lm = zmask.T.to(L.dtype)[:, :, None] * L[None]  # P × m × B (non-zero rows only)
    G = Lm.transpose(1, 2) @ Lm  # P × B × B
    evals, evecs = torch.linalg.eigh(G)  # ascending
    top = evals[:, -1].clamp_min(1e-300)
    keep = evals[:, 1] > degenerate_ratio(zero_tol) ** 2 * top
    if fragile_leverage is not None:
        V, lam = evecs[:, :, 1:], evals[:, 1:].clamp_min(1e-300)
        lev = ((Lm @ V) ** 2 / lam[:, None, :]).sum(2)  # P × m leverage within q's complement
        keep &= lev.amax(1) <= fragile_leverage
    return keep


class Candidates:
    """De-duplicated (up to sign) directions that passed the sparsity filter, on the CPU."""

    def __init__(self, B: int, dedup_cos: float):
        self.dirs = torch.empty(0, B, dtype=DTYPE)
        self.zeros: list[int] = []
        self.hits: list[int] = []
        self.first_seen: list[int] = []
        self.zero_sets: list[Tensor] = []  # live-row zero masks, for adaptive row choice
        self.dedup_cos = dedup_cos
        self._zero_matrix: Tensor | None = None  # zero_sets stacked, cached until the set changes

    def add(self, q: Tensor, zmask: Tensor, at: int) -> bool:
        q = q.to("cpu", DTYPE)
        zeros = int(zmask.sum())
        if len(self.dirs):
            cos = (self.dirs @ q).abs()
            j = int(cos.argmax())
            if cos[j] > self.dedup_cos:
                self.hits[j] += 1
                if zeros > self.zeros[j]:  # same direction, better pinned down: keep the sparser
                    self.dirs[j] = q
                    self.zeros[j] = zeros
                    self.zero_sets[j] = zmask
                    self._zero_matrix = None
                return False
        self.dirs = torch.cat([self.dirs, q[None]])
        self.zeros.append(zeros)
        self.hits.append(1)
        self.first_seen.append(at)
        self.zero_sets.append(zmask)
        self._zero_matrix = None
        return True

    def zero_matrix(self, device) -> Tensor:
        """The candidates' zero sets as one (n_candidates × m_live) bool matrix on ``device``."""
        if self._zero_matrix is None or self._zero_matrix.device != torch.device(device):
            self._zero_matrix = torch.stack(self.zero_sets).to(device)
        return self._zero_matrix

    def count_known(self, q: Tensor) -> Tensor:
        """Mask of proposals that re-find a known direction; counts them as hits."""
        if not len(self.dirs) or not len(q):
            return torch.zeros(len(q), dtype=torch.bool, device=q.device)
        cos = (q @ self.dirs.to(q.device).T).abs()
        best_cos, best_j = cos.max(dim=1)
        known = best_cos > self.dedup_cos
        for j in best_j[known].tolist():
            self.hits[j] += 1
        return known

    def __len__(self) -> int:
        return len(self.dirs)
