"""The a-posteriori check (Dimitrov et al. 2024 §4): a disaggregation is accepted only when the
ReLU pattern of the recomputed ``Z`` agrees with the zeros of the recovered ``dL/dZ`` for every
sample, and the reconstruction reproduces the observed ``dL/dW`` and ``dL/db``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# columns of dL/dW handled at once by the residual (bounds the temporary to m × CHUNK)
RESIDUAL_CHUNK = 1 << 16


def sign_check(WR: Tensor, b: Tensor, L: Tensor, Q: Tensor, zero_tol: float) -> Tensor:
    """Per-sample violations of the ReLU pattern for disaggregation ``Q`` (both kinds of
    :func:`sign_violations` together)."""
    hard, soft = sign_violations(WR, b, L, Q, zero_tol)
    return hard + soft


def sign_violations(WR: Tensor, b: Tensor, L: Tensor, Q: Tensor, zero_tol: float) -> tuple[Tensor, Tensor]:
    """Per-sample ``(hard, soft)`` violations of the ReLU pattern for disaggregation ``Q``.

    ``Z = W X + b`` with ``X = Rᵀ Q⁻ᵀ`` is ``(W Rᵀ) Q⁻ᵀ + b``, so the check costs O(m B²). A sample
    is consistent when gradient flows exactly through its active neurons. *Hard*: gradient through
    a clearly inactive neuron -- impossible for the true inputs. *Soft*: no gradient (below the
    zero tolerance) through a clearly active, live neuron -- what a wrong disaggregation shows, but
    also what a true one shows where a neuron's true gradient happens to sit below the client
    dtype's rounding (measured on float32 clients, below). Scales are per sample, since samples'
    gradients differ by orders of magnitude. The gradient residual cannot serve here: any
    invertible Q reproduces dL/dW = L R exactly.
    """
    Z = torch.linalg.solve(Q, WR.T).T + b[:, None]  # m × B
    dZ = L @ Q
    zscale = Z.abs().amax(0, keepdim=True).clamp_min(1e-300)
    gscale = dZ.abs().amax(0, keepdim=True).clamp_min(1e-300)
    margin = math.sqrt(zero_tol)  # relative; sign decisions closer to 0 than this are not judged
    grad_on = dZ.abs() > margin * gscale
    # "no gradient through an active neuron" uses the zero test's own tolerance. Measured on
    # paper_spear float32 batches: 1 % or 10 % of it let wrong disaggregations pass
    # (CIFAR-10 #26 at 64 dB, #84 at 31 dB, both `ok`), while the full tolerance costs some true
    # answers their certificate (MNIST #36: a live neuron's true gradient is 3.4e-6 of its
    # sample's largest, inside the same band as the wrong ones'): a threshold cannot separate
    # them, so the engine's stall rule (SpearConfig.stall_s) bounds the time spent on such doubts.
    grad_off = dZ.abs() <= zero_tol * gscale
    active = Z > margin * zscale
    inactive = Z < -margin * zscale
    live = dZ.abs().sum(1, keepdim=True) > 0  # rows dead for the whole batch carry no information
    return (grad_on & inactive).sum(0), (grad_off & active & live).sum(0)


def relative_residual(dZ: Tensor, X: Tensor, dW: Tensor) -> float:
    """``‖dZ X − dW‖ / ‖dW‖`` computed over column chunks (no m×n temporary for huge layers)."""
    num = 0.0
    for j in range(0, dW.shape[1], RESIDUAL_CHUNK):
        blk = dZ @ X[:, j:j + RESIDUAL_CHUNK]
        blk -= dW[:, j:j + RESIDUAL_CHUNK]
        num += float(blk.square().sum())
    return math.sqrt(num) / max(float(dW.norm()), 1e-300)
