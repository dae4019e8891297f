"""Image priors shared by the optimisation attacks (Geiping, CPA, feature inversion)."""
from __future__ import annotations

from torch import Tensor


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic TV with means over pixels, as in inversefed and the official CPA code:
    mean |horizontal difference| + mean |vertical difference|."""
    dx = (x[..., :, :-1] - x[..., :, 1:]).abs().mean()
    dy = (x[..., :-1, :] - x[..., 1:, :]).abs().mean()
    return dx + dy


__all__ = ["total_variation"]
