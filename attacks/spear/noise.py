"""Noise-aware thresholds for SPEAR on noisy updates (DP-SGD, quantisation).

Model: the observed weight gradient is ``G = dL/dZ · Xᵀ + N`` with ``N`` (m×n) i.i.d. with std
``s`` per entry (DP-SGD: ``s = σ·C / B``, revealed in ``Observation.update_meta["noise_std"]``
when the threat model knows the protocol's σ and C). Three thresholds follow from ``s``:

* **Rank.** The singular values of an m×n Gaussian matrix lie below ``s (√m + √n)`` (the
  Marchenko–Pastur edge; Tracy–Widom fluctuations around it are O(s·n^(-1/6))). The batch size
  is the number of singular values above ``edge_margin · s (√m + √n)``, never below the exact
  (float rounding) rank test of the default path.
* **Zero test.** With ``L = G V_B Σ_B^{-1/2}``, row ``k`` of ``L`` carries noise
  ``N_k V_B Σ_B^{-1/2}`` (``N_k V_B`` ~ N(0, s² I_B)), so ``(L q)_k`` for a true direction ``q`` is
  zero up to noise of std at most ``s ‖q‖ / √S_B``. The engine's zero test is relative to
  ``‖L_k‖ ‖q‖``; the noise-aware ``zero_tol`` is ``κ s / (√S_B · median_k ‖L_k‖)`` over the live
  rows, never below the dtype's default. κ = ``kappa`` = 1 by default: the bound uses the
  smallest signal singular value, so it is already loose for most directions (measured on
  CIFAR-10, B = 10, σ = 1e-4: κ = 4 lets almost every proposal pass the filter and the batch
  fails; κ = 1 recovers it to about 45 dB).
* **Live rows.** A neuron dead for the whole batch has a pure-noise row of norm about
  ``s ‖Σ_B^{-1/2}‖_F``; rows below ``live_factor`` times that are not counted as live (otherwise
  every proposal gets their "zeros" for free and wrong directions pass the sparsity filter).
* **Residual.** Any disaggregation reproduces only the rank-B truncation of ``G``; the allowed
  relative residual is the truncation's own (``√(‖G‖² − Σ_{k≤B} S_k²) / ‖G‖``) plus
  ``2 s √m / ‖dL/db‖`` for the bias (whose entries carry the same noise), with 10 % slack.

When the threat model does not reveal ``s``, it is estimated from the update itself: the energy
beyond the rank, ``s² ≈ (‖G‖_F² − Σ_{k≤r} S_k²) / ((m − r)(n − r))``, iterated with ``r`` = the
number of singular values above the edge of the current estimate (starting from ``r = 0``, the
estimate decreases monotonically to a fixed point; a few iterations suffice).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class NoiseFloor:
    std: float            # per-entry noise std of the weight gradient
    source: str           # "known" (threat model) or "estimated" (from the singular values)
    rank: int             # singular values above the noise edge
    edge: float           # the edge itself (absolute)


def estimate_noise(S: Tensor, fro2: float, m: int, n: int, *, known_std: float | None = None,
                   edge_margin: float = 1.1, iterations: int = 20) -> NoiseFloor:
    """Noise std of an m×n update with singular values ``S`` (descending) and ‖G‖_F² = ``fro2``."""
    S = S.detach().double().cpu()
    scale = math.sqrt(m) + math.sqrt(n)
    cap = max(0, min(m, n) // 2, 0)
    if known_std is not None and known_std > 0:
        edge = edge_margin * known_std * scale
        return NoiseFloor(float(known_std), "known", min(int((S > edge).sum()), cap), edge)
    r, std = 0, math.sqrt(max(fro2, 0.0) / (m * n))
    for _ in range(iterations):
        edge = edge_margin * std * scale
        r_new = min(int((S > edge).sum()), cap)
        rest = max(fro2 - float(S[:r_new].square().sum()), 0.0)
        std = math.sqrt(rest / max((m - r_new) * (n - r_new), 1))
        if r_new == r:
            break
        r = r_new
    edge = edge_margin * std * scale
    return NoiseFloor(std, "estimated", min(int((S > edge).sum()), cap), edge)


def noise_tolerances(nf: NoiseFloor, S: Tensor, L: Tensor, db: Tensor, fro2: float, B: int, *,
                     kappa: float = 1.0, live_factor: float = 3.0) -> dict[str, float]:
    """zero_tol, residual_tol and the live-row norm floor for batch size ``B`` (see module doc)."""
    S = S.detach().double().cpu()
    SB = S[:B]
    m = L.shape[0]
    rownorm = L.norm(dim=1).cpu()
    row_floor = live_factor * nf.std * float(SB.reciprocal().sum().sqrt())
    live = rownorm > row_floor
    med = float(rownorm[live].median()) if bool(live.any()) else float(rownorm.max())
    zero_tol = kappa * nf.std / (math.sqrt(float(SB[-1])) * max(med, 1e-300))
    trunc = math.sqrt(max(fro2 - float(SB.square().sum()), 0.0) / max(fro2, 1e-300))
    bias = 2.0 * nf.std * math.sqrt(m) / max(float(db.norm()), 1e-300)  # twice the noise's norm
    return {"zero_tol": zero_tol, "residual_tol": 1.1 * max(trunc, bias) + 1e-12,
            "row_floor": row_floor, "live_rows": int(live.sum())}


__all__ = ["NoiseFloor", "estimate_noise", "noise_tolerances"]
