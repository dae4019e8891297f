"""DP-SGD on the client (Abadi et al., CCS 2016; Opacus' conventions).

Each sample's gradient is clipped to L2 norm ``C`` (over all parameters together), the clipped
gradients are summed, Gaussian noise of std ``σ·C`` (``σ`` = noise multiplier) is added to every
entry of the sum, and the sum is divided by the batch size ``B`` (Opacus divides by the expected
batch size). The server receives that noisy mean.

Per-sample gradients come from ``torch.func`` (``vmap`` of ``grad`` of the loss of one sample),
which gives the same numbers as Opacus' ``GradSampleModule`` for the harness's models without
wrapping them. The privacy accounting (ε at a stated δ for ``steps`` steps at sampling rate ``q``)
comes from Opacus' RDP accountant.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap


def per_sample_gradients(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn
                         ) -> dict[str, Tensor]:
    """Gradient of each sample's loss, keyed by parameter name, each of shape (B, *param.shape)."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def one(p, x, y):
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    return vmap(grad(one), in_dims=(None, 0, 0))(params, inputs, labels)


def per_sample_norms(per_sample: dict[str, Tensor]) -> Tensor:
    """L2 norm of each sample's whole gradient (all parameters together), shape (B,)."""
    sq = sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in per_sample.values())
    return sq.sqrt()


def clip_per_sample(per_sample: dict[str, Tensor], clip: float) -> tuple[dict[str, Tensor], Tensor]:
    """Scale each sample's gradient to norm <= ``clip`` (Opacus: factor min(1, C/(‖g‖+1e-6)))."""
    norms = per_sample_norms(per_sample)
    factor = (clip / (norms + 1e-6)).clamp(max=1.0)
    clipped = {n: g * factor.reshape(-1, *([1] * (g.dim() - 1))) for n, g in per_sample.items()}
    return clipped, norms


def dp_sgd_gradient(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, clip: float,
                    noise_multiplier: float, generator: torch.Generator
                    ) -> tuple[dict[str, Tensor], dict]:
    """The noisy clipped mean gradient DP-SGD sends, and facts about it for the row.

    Noise is drawn on the CPU from ``generator`` (float64) and moved to the gradient's device, so
    a seed gives the same update on every machine.
    """
    if not 0 < float(clip) < math.inf:
        raise ValueError(f"defense.clip={clip!r}: the clipping norm C must be a finite number > 0 "
                         "(C <= 0 would flip or zero every per-sample gradient)")
    if not 0 <= float(noise_multiplier) < math.inf:
        raise ValueError(f"defense.noise_multiplier={noise_multiplier!r}: sigma must be a finite number "
                         ">= 0 (0: no noise)")
    B = inputs.shape[0]
    clipped, norms = clip_per_sample(per_sample_gradients(model, inputs, labels, loss_fn), clip)
    std = float(noise_multiplier) * float(clip)
    out = {}
    for n, g in clipped.items():
        total = g.sum(0)
        if std > 0:
            noise = torch.randn(total.shape, generator=generator, dtype=torch.float64)
            total = total + (std * noise).to(total.device, total.dtype)
        out[n] = (total / B).detach()
    info = {
        "dp_clipped_share": float((norms > clip).double().mean()),
        "dp_per_sample_norm_max": float(norms.max()),
        "dp_noise_std_sum": std,          # std of the noise on the sum of clipped gradients
        "noise_std": std / B,             # std per entry of the gradient the server receives
    }
    return out, info


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of ``steps`` DP-SGD steps at noise multiplier σ and Poisson sampling rate q (Opacus RDP).

    ``inf`` without noise; ``nan`` when Opacus is missing or cannot evaluate it.
    """
    if noise_multiplier <= 0:
        return math.inf
    try:
        from opacus.accountants import RDPAccountant
    except ImportError:  # pragma: no cover - opacus is a declared dependency
        return math.nan
    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    try:
        import warnings

        with warnings.catch_warnings():  # "optimal order is the smallest alpha" for tiny sigma
            warnings.simplefilter("ignore", UserWarning)
            return float(acc.get_epsilon(delta=float(delta)))
    except (ValueError, OverflowError, ZeroDivisionError):
        return math.nan


__all__ = ["per_sample_gradients", "per_sample_norms", "clip_per_sample", "dp_sgd_gradient", "dp_epsilon"]
