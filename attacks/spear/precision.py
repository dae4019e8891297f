"""SPEAR's working precision and the tolerances derived from the client's dtype."""
from __future__ import annotations

import math

import torch

DTYPE = torch.float64


def dtype_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """(zero_tol, residual_tol) for gradients computed in ``dtype``."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(DTYPE).eps
    eps64 = torch.finfo(DTYPE).eps
    eps = max(eps, eps64)
    # zero_tol: 1.5e-7 for float64 clients, 100 eps (1.2e-5) for float32 ones
    return max(100 * eps, 10 * math.sqrt(eps64)), 100 * math.sqrt(eps)


def degenerate_ratio(zero_tol: float) -> float:
    """Zero rows whose second-smallest singular value is below this share of the largest leave a
    2-D null space (1.5e-4 for float64 clients; capped at 1e-2 for float32 ones, whose zero_tol
    is already 3.5e-3)."""
    return min(zero_tol * 1e3, 1e-2)
