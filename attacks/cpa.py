"""Cocktail Party Attack (CPA): blind source separation of a linear layer's weight gradient.

Kariyappa, Guo, Maeng, Xiong, Suh, Qureshi, Lee, "Cocktail Party Attack: Breaking Aggregation-Based
Privacy in Federated Learning using Independent Component Analysis", ICML 2023 (arXiv 2209.05578).

For ``Z = W X + b`` the weight gradient ``dL/dW = G Xᵀ`` (``G = dL/dZ``, m×B) is a linear mixture of
the B inputs: each of its m rows mixes the B samples (rows of ``Xᵀ``). CPA unmixes it with
independent component analysis, following the official implementation
(facebookresearch, ``src/gradient_inversion.py::CocktailPartyAttack``):

1. centre the rows of ``dL/dW`` (mean over the input dimension) and whiten them onto the top-B
   eigenvectors of their m×m covariance: ``X_w = Λ^{-1/2} Eᵀ (dW - μ)`` (B×n);
2. optimise an unmixing matrix ``U`` (B×B, identity start, rows normalised each step) with Adam;
   the sources are ``S = U_n X_w`` plus the undone centring ``U_n Λ^{-1/2} Eᵀ μ``;
3. the objective is ``ne·L_NG + decor·mean(exp(T·|U_n U_nᵀ|) − 1) + prior``: negentropy
   ``L_NG = −mean_i(mean_k log cosh S_ik)²`` (the official code computes it and then overwrites it
   with 0, so ``ne`` defaults to 0 here), the decorrelation / mutual-independence term with
   temperature ``T``, and the source prior: total variation for images, and for embeddings the
   sign prior ``min(‖ReLU(S_i)‖, ‖ReLU(−S_i)‖)`` (weight ``nv``) plus an L1 sparsity prior (``l1``);
4. sources come out up to sign, scale and order. We resolve sign and scale with the bias gradient
   (``dL/db = G 1``; with ``X̂ = X C`` the mixing ``Ĝ = dW X̂ (X̂ᵀX̂)⁻¹ = G C⁻¹``, so
   ``Ĝ c = dL/db`` gives ``c``): exact when the unmixing is exact. ``sign_scale="minmax"`` keeps the
   official per-image min-max normalisation for images instead.

Randomness: none (identity start, as in the official code); the generator is accepted for the
interface. Runs on the device of the observed gradients, in ``dtype`` (default float32, as the
official code).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction, resolve_deadline
from attacks.feature_inversion import intra_op_threads
from attacks.layers import linear_layer, numerical_rank
from attacks.progress import LoopMonitor
from attacks.priors import total_variation

_EPS = 1e-20


@dataclass
class CpaConfig:
    """Knobs of CPA; defaults and their sources in conf/attack/cpa.yaml."""

    iterations: int = 25_000       # published: 25,000
    lr: float = 1e-3               # published: Adam, 1e-3
    ne: float = 0.0                # negentropy weight (official code: computed, then weighted 0)
    a: float = 1.0                 # log cosh(a·s)/a contrast function of the negentropy term
    decor: float = 1.47            # decorrelation weight (official README, FC / TinyImageNet)
    T: float = 12.4                # decorrelation temperature (official README, FC / TinyImageNet)
    tv: float = 3.1                # TV prior weight for image sources (official README, FC)
    nv: float = 0.13               # sign prior weight for embedding sources (official README, VGG-16)
    l1: float = 5.0                # L1 prior weight for embedding sources (official README, VGG-16)
    decor_emb: float = 5.3         # decorrelation weight for embeddings (official README, VGG-16)
    T_emb: float = 7.7             # temperature for embeddings (official README, VGG-16)
    source: str = "auto"           # auto | image | embedding
    sign_scale: str = "bias"       # bias (lstsq on dL/db) | minmax (official, images only)
    dtype: str = "float32"
    check_every: int = 250         # how often the deadline is looked at
    threads: int | None = None     # intra-op threads during the loop (None: PyTorch's setting)
    progress: bool = True


@dataclass
class CpaResult:
    status: str
    inputs: Tensor | None           # (B, n) rows = samples, sign/scale resolved when possible
    diagnostics: dict = field(default_factory=dict)


def centre_and_whiten(dW: Tensor, B: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(X_w, W_w, mu)``: whitened centred gradient (B×n), the whitening map (B×m), row means (m×1).

    Eigen-decomposes the m×m covariance of the centred rows (as the official code) when m <= n,
    else the n×n Gram matrix of the columns, which has the same non-zero spectrum.
    """
    m, n = dW.shape
    mu = dW.mean(dim=1, keepdim=True)
    Xc = dW - mu
    if m <= n:
        cov = Xc @ Xc.T / (n - 1)
        evals, evecs = torch.linalg.eigh(cov)
        top = torch.argsort(evals.abs(), descending=True)[:B]
        lam, E = evals[top].abs(), evecs[:, top]  # m×B
    else:  # eigenvectors of Xc Xcᵀ from those of Xcᵀ Xc: E = Xc V / sqrt(n-1 · lam)
        gram = Xc.T @ Xc / (n - 1)
        evals, V = torch.linalg.eigh(gram)
        top = torch.argsort(evals.abs(), descending=True)[:B]
        lam = evals[top].abs()
        E = Xc @ V[:, top] / (lam * (n - 1)).sqrt().clamp_min(_EPS)
    W_w = torch.diag(1.0 / (lam.sqrt() + _EPS)) @ E.T  # B×m
    return W_w @ Xc, W_w, mu


def resolve_sign_scale(S: Tensor, dW: Tensor, db: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """Per-source factors ``c`` with ``S_i = c_i x_i`` from the bias gradient; (X, c) or (None, None)."""
    if db is None:
        return None, None
    Xh = S.T  # n×B
    gram = Xh.T @ Xh
    try:
        G_hat = torch.linalg.solve(gram, (dW @ Xh).T).T  # m×B
        c = torch.linalg.lstsq(G_hat, db[:, None]).solution[:, 0]
    except RuntimeError:
        return None, None
    if not torch.isfinite(c).all() or bool((c.abs() < 1e-30).any()):
        return None, None
    return S / c[:, None], c


def estimate_batch_size(dW: Tensor) -> int:
    """Numerical rank of the weight gradient (the number of samples when B < min(m, n))."""
    rank = numerical_rank(torch.linalg.svdvals(dW.detach().double()), dW.dtype)
    if rank == 0 or rank >= min(dW.shape):
        raise AttackNotApplicable(
            f"cannot read the batch size off a weight gradient of rank {rank} (shape "
            f"{tuple(dW.shape)}): reveal it (threat.batch_size_known=true) or attack a wider layer")
    return rank


def cpa_core(dW: Tensor, db: Tensor | None, *, batch_size: int, source_shape: tuple[int, ...] | None,
             config: CpaConfig | None = None, deadline: float | None = None) -> CpaResult:
    """Unmix ``dW`` (m×n) into ``batch_size`` sources of length n (images when ``source_shape``)."""
    cfg = config or CpaConfig()
    with intra_op_threads(cfg.threads):
        return _cpa_core(dW, db, batch_size, source_shape, cfg, deadline)


def _cpa_core(dW, db, batch_size, source_shape, cfg: CpaConfig, deadline) -> CpaResult:
    t0 = time.perf_counter()
    dtype = getattr(torch, cfg.dtype)
    dW = dW.detach().to(dtype)
    db = db.detach().to(dtype) if db is not None else None
    if not (torch.isfinite(dW).all() and (db is None or torch.isfinite(db).all())):
        raise AttackNotApplicable(
            "the observed gradient has non-finite entries (NaN/Inf): the client update is unusable")
    m, n = dW.shape
    B = int(batch_size)
    if B > min(m, n):
        raise AttackNotApplicable(
            f"CPA separates at most min(m, n) = {min(m, n)} sources from a {m}×{n} layer; the batch "
            f"has {B}: attack a wider layer")
    image = source_shape is not None
    decor, T = (cfg.decor, cfg.T) if image else (cfg.decor_emb, cfg.T_emb)
    diag: dict = {"layer_m": m, "layer_n": n, "source": "image" if image else "embedding",
                  "iterations_planned": cfg.iterations, "cpa_dtype": cfg.dtype}
    if float(dW.abs().max()) == 0.0:
        diag["reason"] = "all-zero weight gradient"
        return CpaResult("failed", None, diag)

    X_w, W_w, mu = centre_and_whiten(dW, B)
    offset = W_w @ mu  # B×1: undoes the centring after unmixing
    U = torch.eye(B, dtype=dtype, device=dW.device, requires_grad=True)
    opt = torch.optim.Adam([U], lr=cfg.lr)

    def sources(Un: Tensor) -> Tensor:
        return Un @ X_w + Un @ offset

    def objective() -> tuple[Tensor, dict]:
        Un = U / (U.norm(dim=-1, keepdim=True) + _EPS)
        S_w = Un @ X_w
        terms = {}
        loss = S_w.new_zeros(())
        if cfg.ne > 0:
            ne = -(((1 / cfg.a) * torch.log(torch.cosh(cfg.a * S_w) + _EPS).mean(dim=-1)) ** 2).mean()
            loss = loss + cfg.ne * ne
            terms["ne"] = ne
        S = S_w + Un @ offset
        if decor > 0:
            cosm = (Un @ Un.T).abs()
            d = (torch.exp(cosm * T) - 1).mean()
            loss = loss + decor * d
            terms["decor"] = d
        if image and cfg.tv > 0:
            t = total_variation(S.reshape(B, *source_shape))
            loss = loss + cfg.tv * t
            terms["tv"] = t
        if not image and cfg.nv > 0:
            nvl = torch.minimum(F.relu(-S).norm(dim=-1), F.relu(S).norm(dim=-1)).mean()
            loss = loss + cfg.nv * nvl
            terms["nv"] = nvl
        if not image and cfg.l1 > 0:
            l1 = S.abs().mean()
            loss = loss + cfg.l1 * l1
            terms["l1"] = l1
        return loss, terms

    monitor = LoopMonitor(cfg.iterations, f"CPA b={B}", enabled=cfg.progress, deadline=deadline)
    it = 0
    loss = torch.zeros(())
    for it in range(1, cfg.iterations + 1):
        opt.zero_grad(set_to_none=True)
        loss, _ = objective()
        loss.backward()
        opt.step()
        if it % cfg.check_every == 0 and monitor.tick(cfg.check_every, loss=f"{float(loss):.4g}"):
            break
    monitor.close()
    timed_out = monitor.timed_out

    with torch.no_grad():
        Un = U / (U.norm(dim=-1, keepdim=True) + _EPS)
        S = sources(Un)
        final_loss, terms = objective()
        diag.update(iterations=it, timed_out=int(timed_out), final_loss=float(final_loss),
                    **{f"loss_{k}": float(v) for k, v in terms.items()},
                    max_offdiag_cos=float(((Un @ Un.T).abs() - torch.eye(B, dtype=dtype,
                                                                        device=Un.device)).max()))
        X, c = (None, None)
        if cfg.sign_scale == "bias":
            X, c = resolve_sign_scale(S.double(), dW.double(), None if db is None else db.double())
        elif cfg.sign_scale != "minmax":
            raise ValueError(f"sign_scale must be 'bias' or 'minmax', got {cfg.sign_scale!r}")
        if X is None:
            diag["sign_scale"] = "minmax" if image else "dominant_sign"
            S = S.double()
            if image:
                lo, hi = S.min(dim=1, keepdim=True).values, S.max(dim=1, keepdim=True).values
                X = (S - lo) / (hi - lo).clamp_min(_EPS)  # official "infer" normalisation: [0,1] pixels
                diag["sources_in_pixel_space"] = 1
            else:  # ReLU features are non-negative: flip each source to its dominant sign
                sgn = torch.where(F.relu(S).norm(dim=1) >= F.relu(-S).norm(dim=1), 1.0, -1.0)
                X = S * sgn[:, None].to(S.dtype)
        else:
            diag["sign_scale"] = "bias"
            diag["scale_min_abs"] = float(c.abs().min())
        diag["time_cpa_s"] = time.perf_counter() - t0
    status = "partial" if timed_out else "ok"
    if timed_out:
        diag["reason"] = f"deadline after {it} of {cfg.iterations} iterations"
    return CpaResult(status, X.detach(), diag)


class CpaAttack:
    """CPA behind the attack interface. Attacks ``layer`` (default: the first nn.Linear).

    On a first layer that sees the (flattened) input the sources are images (TV prior) and
    ``reconstruct`` returns them; deeper layers give embeddings, for a pipeline to invert.
    """

    name: ClassVar[str] = "cpa"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, layer: str | None = None, **config):
        self.layer = layer
        self.config = CpaConfig(**config)
        if self.config.source not in ("auto", "image", "embedding"):
            raise ValueError(f"source must be auto, image or embedding, got {self.config.source!r}")

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        linear_layer(model, self.layer)

    def _source_shape(self, mod: nn.Linear, spec: DataSpec):
        kind = self.config.source
        if kind == "auto":
            kind = "image" if (mod.in_features == spec.numel and spec.kind == "image"
                               and len(spec.shape) == 3) else "embedding"
        if kind == "image":
            if mod.in_features != spec.numel:
                raise AttackNotApplicable(
                    f"source=image needs the attacked layer to see the {spec.numel} input values, "
                    f"it takes {mod.in_features} features")
            return tuple(spec.shape)
        return None

    def recover_layer_inputs(self, obs: Observation, *, generator: torch.Generator | None = None,
                             deadline: float | None = None, time_budget_s: float | None = None) -> CpaResult:
        """Inputs of the attacked layer (rows = samples); its name in ``diagnostics["attacked_layer"]``."""
        deadline = resolve_deadline(deadline, time_budget_s)
        name, mod = linear_layer(obs.model, self.layer)
        wkey, bkey = f"{name}.weight", f"{name}.bias"
        if wkey not in obs.gradients:
            raise AttackNotApplicable(f"observation lacks the gradient {wkey!r} of the attacked layer")
        with intra_op_threads(self.config.threads):
            B = obs.batch_size if obs.batch_size is not None else estimate_batch_size(obs.gradients[wkey])
        res = cpa_core(obs.gradients[wkey], obs.gradients.get(bkey), batch_size=B,
                       source_shape=self._source_shape(mod, obs.data_spec), config=self.config,
                       deadline=deadline)
        res.diagnostics["attacked_layer"] = name
        res.diagnostics["batch_size_est"] = int(B)
        return res

    def reconstruct(self, obs: Observation, *, generator: torch.Generator,
                    deadline: float | None = None, time_budget_s: float | None = None) -> Reconstruction:
        deadline = resolve_deadline(deadline, time_budget_s)
        spec = obs.data_spec
        name, mod = linear_layer(obs.model, self.layer)
        if self._source_shape(mod, spec) is None:
            raise AttackNotApplicable(
                f"layer {name!r} takes {mod.in_features} features, not the {spec.numel} input values: "
                "CPA alone recovers embeddings there; use the cpa+fi+geiping pipeline to map them to images")
        res = self.recover_layer_inputs(obs, generator=generator, deadline=deadline)
        if res.inputs is None:
            return Reconstruction(torch.empty((0, *spec.shape), dtype=torch.float64), None, "failed",
                                  res.diagnostics)
        X = res.inputs.double()
        if res.diagnostics.get("sources_in_pixel_space"):
            X = spec.normalize(X.reshape(-1, *spec.shape))
        lo, hi = spec.box(X.reshape(-1, *spec.shape))
        inputs = torch.max(torch.min(X.reshape(-1, *spec.shape), hi), lo)
        return Reconstruction(inputs.cpu(), None, res.status, res.diagnostics, layer_inputs=res.inputs.cpu())


__all__ = ["CpaAttack", "CpaConfig", "CpaResult", "cpa_core", "centre_and_whiten", "total_variation",
           "resolve_sign_scale", "estimate_batch_size"]
