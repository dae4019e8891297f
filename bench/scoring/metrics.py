"""Per-batch quality metrics, computed after Hungarian matching (docs/troubleshooting.md: the row schema)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.scoring.matching import exact_mse, match


@dataclass(frozen=True)
class MetricConfig:
    psnr_cap_db: float = 300.0     # MSE is floored at 10^(-cap/10): an exact image scores `cap`
    exact_psnr_db: float = 80.0    # an image counts as reconstructed exactly at or above this
    lpips: bool = True             # LPIPS (AlexNet) of matched pairs: bench/scoring/lpips_metric.py


def psnr_from_mse(mse: Tensor, cap_db: float) -> Tensor:
    """PSNR in dB for images in [0, 1] (peak 1); MSE floored so the value never exceeds ``cap_db``."""
    floor = 10.0 ** (-cap_db / 10.0)
    return -10.0 * torch.log10(mse.double().clamp_min(floor))


def image_quality(rec01: Tensor, true01: Tensor, cfg: MetricConfig = MetricConfig()) -> dict:
    """Match ``rec01`` to ``true01`` (both in [0,1] pixel space) and score each true image.

    Unmatched true images (fewer reconstructions than samples) score 0 dB and are not exact.
    Returns psnr_mean, psnr_min, psnr_per_image (ordered as the true batch), exact_fraction and
    the matching (``rec_for_true``: reconstruction index per true image, -1 if none).
    """
    B = true01.shape[0]
    rec01 = rec01.clamp(0, 1) if rec01.numel() else rec01
    r, t = match(rec01, true01)
    per = torch.zeros(B, dtype=torch.float64)
    rec_for_true = [-1] * B
    if len(r):
        per[t] = psnr_from_mse(exact_mse(rec01[r], true01[t]), cfg.psnr_cap_db)
        for ri, ti in zip(r.tolist(), t.tolist()):
            rec_for_true[ti] = ri
    exact = per >= cfg.exact_psnr_db
    return {
        "psnr_mean": float(per.mean()),
        "psnr_min": float(per.min()),
        "psnr_per_image": [round(float(v), 4) for v in per],
        "exact_fraction": float(exact.double().mean()),
        "psnr_cap_db": cfg.psnr_cap_db,
        "exact_psnr_db": cfg.exact_psnr_db,
        "rec_for_true": rec_for_true,
    }


def label_accuracy(pred: Tensor | None, true: Tensor) -> float | None:
    """Share of the batch's labels recovered, as multisets (order-free)."""
    if pred is None:
        return None
    from collections import Counter

    p, t = Counter(pred.tolist()), Counter(true.tolist())
    return sum((p & t).values()) / max(1, len(true))


def _chunks(t, step: int = 1 << 22):
    flat = t.detach().reshape(-1)
    for i in range(0, flat.numel(), step):
        yield i, flat[i:i + step].double()


def grad_residual(observed: dict, recomputed: dict) -> float:
    """Relative distance ||g_obs - g_rec|| / ||g_obs|| over all parameters the server saw.

    Computed over chunks of 4 M entries: a 311 M-parameter layer (ImageNet 720) costs no
    gradient-sized temporaries (they lifted the run's peak memory from ~3× to ~7× its gradient).
    A recomputed entry may be a factored linear-layer gradient (anything with ``shape`` and
    ``rows(start, stop)``, e.g. ``bench.client.fedsgd.LinearFactor``): its rows are formed a
    chunk at a time, so the second full gradient never exists.
    """
    num = den = 0.0
    for k in observed:
        rec = recomputed[k]
        if hasattr(rec, "rows"):
            obs = observed[k]
            if tuple(obs.shape) != tuple(rec.shape):
                raise ValueError(f"gradient {k!r}: observed shape {tuple(obs.shape)} but recomputed "
                                 f"{tuple(rec.shape)}")
            step = max(1, (1 << 22) // max(1, obs.shape[1]))
            for i in range(0, obs.shape[0], step):
                a = obs[i:i + step].double()
                den += float(torch.linalg.vector_norm(a)) ** 2
                num += float(torch.linalg.vector_norm(a - rec.rows(i, i + step).double())) ** 2
            continue
        rec = rec.detach().reshape(-1)
        for i, a in _chunks(observed[k]):
            den += float(torch.linalg.vector_norm(a)) ** 2
            num += float(torch.linalg.vector_norm(a - rec[i:i + a.numel()].double())) ** 2
    return math.sqrt(num / den) if den > 0 else float("nan")


__all__ = ["MetricConfig", "psnr_from_mse", "image_quality", "label_accuracy", "grad_residual"]
