"""Cheap update-compression defenses applied to the whole update before it leaves the client.

* ``prune(update, keep)``: per tensor, keep the ``keep`` share of entries largest in magnitude
  and zero the rest (top-k sparsification, as in breaching's and Zhu et al.'s gradient pruning).
* ``quantize(update, bits)``: per tensor, uniform symmetric quantisation to ``2^(bits−1) − 1``
  levels each side of zero with step ``max|g| / (2^(bits−1) − 1)``, round to nearest.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def prune(update: dict[str, Tensor], keep: float) -> dict[str, Tensor]:
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"defense.keep={keep}: the kept share must lie in (0, 1]")
    out = {}
    for n, g in update.items():
        k = max(1, math.ceil(keep * g.numel()))
        if k >= g.numel():
            out[n] = g.clone()
            continue
        flat = g.reshape(-1)
        idx = flat.abs().topk(k).indices
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[idx] = True
        out[n] = torch.where(mask, flat, torch.zeros_like(flat)).reshape(g.shape)
    return out


def quantize(update: dict[str, Tensor], bits: int) -> dict[str, Tensor]:
    if not 2 <= int(bits) <= 64:
        raise ValueError(f"defense.bits={bits}: need 2 to 64 bits (2: sign and one level)")
    levels = 2 ** (int(bits) - 1) - 1
    out = {}
    for n, g in update.items():
        top = g.abs().max()
        if float(top) == 0.0:
            out[n] = g.clone()
            continue
        step = top / levels
        out[n] = (g / step).round().clamp(-levels, levels) * step
    return out


def quantize_step(update: dict[str, Tensor], bits: int) -> dict[str, float]:
    """The quantisation step of each tensor (its rounding error is uniform in ±step/2)."""
    levels = 2 ** (int(bits) - 1) - 1
    return {n: float(g.abs().max()) / levels for n, g in update.items()}


__all__ = ["prune", "quantize", "quantize_step"]
