"""Feature similarity of recovered layer inputs (CNN pipelines): mean |cos|, Hungarian-matched."""
from __future__ import annotations

import torch


def feature_cosine(recovered: torch.Tensor, true: torch.Tensor) -> float | None:
    """Mean |cos| between recovered and true layer inputs (rows = samples), Hungarian-matched."""
    from scipy.optimize import linear_sum_assignment

    a = recovered.detach().to("cpu", torch.float64).reshape(recovered.shape[0], -1)
    b = true.detach().to("cpu", torch.float64).reshape(true.shape[0], -1)
    if a.shape[0] == 0 or a.shape[1] != b.shape[1]:
        return None
    cos = (a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)) @ (b / b.norm(dim=1, keepdim=True).clamp_min(1e-300)).T
    r, t = linear_sum_assignment(-cos.abs().numpy())
    return float(cos.abs()[r, t].mean())
