"""Thumbnails of the truth and the matched reconstruction, kept beside the rows for the figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def save_thumbnails(path: Path, x01: torch.Tensor, rec01: torch.Tensor | None, rec_for_true, ids) -> None:
    """Truth and matched reconstruction (uint8, at most 128 px a side) for figures."""
    import torch.nn.functional as F

    def small(t):
        t = t.float()
        side = t.shape[-1]
        if side > 128:
            t = F.interpolate(t, size=(128, 128), mode="bilinear", antialias=True, align_corners=False)
        return (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    truth = small(x01)
    if rec01 is not None and rec01.shape[0]:
        order = [i if i >= 0 else 0 for i in rec_for_true]
        rec = small(rec01[order])
        rec[[j for j, i in enumerate(rec_for_true) if i < 0]] = 0
    else:
        rec = np.zeros_like(truth)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, truth=truth, recon=rec, ids=np.asarray(ids))
