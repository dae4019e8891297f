"""Hungarian matching of reconstructions to ground truth (before any metric)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def pairwise_mse(rec: Tensor, true: Tensor) -> Tensor:
    """(B_rec, B_true) mean squared error between flattened samples."""
    a = rec.reshape(rec.shape[0], -1).double()
    b = true.reshape(true.shape[0], -1).double()
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    # (fine for choosing the assignment; metrics use exact_mse on the matched pairs)
    return d.clamp_min(0) / a.shape[1]


def match(rec: Tensor, true: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rec_idx, true_idx) of the assignment minimising the total MSE.

    Works for unequal counts (rectangular assignment): unmatched samples are left out.
    """
    if rec.shape[0] == 0 or true.shape[0] == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    cost = pairwise_mse(rec, true).cpu().numpy()
    r, t = linear_sum_assignment(cost)
    return r, t


def exact_mse(rec: Tensor, true: Tensor) -> Tensor:
    """Per-pair MSE computed directly (no expansion), for matched pairs."""
    diff = rec.reshape(rec.shape[0], -1).double() - true.reshape(true.shape[0], -1).double()
    return (diff * diff).mean(1)


__all__ = ["match", "pairwise_mse", "exact_mse"]
