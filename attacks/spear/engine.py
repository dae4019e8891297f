"""SPEAR's engine: factorise, find directions, filter, select, scale, check, finish.

Dimitrov, Baader, Müller, Vechev, "SPEAR: Exact Gradient Inversion of Batches in Federated
Learning", NeurIPS 2024 (arXiv 2403.03945). For ``Z = W X + b`` with ``X`` holding one column per
sample and ``Y = ReLU(Z)``:

* ``dL/dW = dL/dZ · Xᵀ`` has rank ``B`` (the batch size) and factors as ``L · R`` with
  ``L = U_B √Σ_B`` and ``R = √Σ_B V_Bᵀ`` (:mod:`.factorisation`); there is a ``Q`` with
  ``dL/dZ = L Q`` and ``Xᵀ = Q⁻¹ R``.
* ``dL/dZ`` is zero wherever the ReLU is inactive, so each column ``q_i`` of ``Q`` is orthogonal to
  every row of ``L`` on which sample ``i`` is inactive. A finder (:mod:`.finders`) proposes such
  directions; a true one makes ``L q`` sparse, a wrong one does not (:mod:`.filtering`).
* A greedy selection picks ``B`` well-conditioned directions, the bias gradient fixes their scale
  and sign (``dL/db = L Q' c``) (:mod:`.selection`), and ``Xᵀ = Q⁻¹ R`` gives the inputs.
* An a-posteriori check (:mod:`.check`) recomputes ``Z`` from the reconstruction and demands the
  ReLU pattern agree with the zeros of ``dL/dZ``, and that the reconstruction reproduces the
  observed gradients.

Everything runs in float64; randomness comes only from the caller's ``torch.Generator``. The
search may run on a GPU (``device``); results come back on the CPU.

:func:`spear_core` runs the steps in order: :func:`check_observation` (shapes, finite entries,
width), :func:`factorise` (the factors, the batch size, the tolerances),
:class:`~attacks.spear.search.DirectionSearch` (find directions, filter, select, check) and
:func:`_finish` (the inputs and the status).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from attacks.base import AttackNotApplicable
from attacks.labels import batch_size_of_rank
from attacks.layers import numerical_rank
from attacks.spear.check import relative_residual
from attacks.spear.config import SpearConfig
from attacks.spear.factorisation import low_rank_factors
from attacks.spear.noise import estimate_noise, noise_tolerances
from attacks.spear.precision import DTYPE, dtype_tolerances
from attacks.spear.search import DirectionSearch, float64_rows, proposals_per_step  # noqa: F401
from attacks.spear.selection import Trial


@dataclass
class SpearResult:
    """Output of :func:`spear_core`: the layer's inputs (rows = samples) and what happened."""

    status: str
    inputs: Tensor | None  # (B, n) float64, rows are samples
    grad_out: Tensor | None  # recovered dL/dZ, (m, B)
    diagnostics: dict = field(default_factory=dict)
    sample_ok: Tensor | None = None  # (B,) bool: per-sample a-posteriori check


def search_device(cfg: SpearConfig, like: Tensor) -> torch.device:
    if cfg.device == "auto":
        return like.device
    return torch.device(cfg.device)


def spear_core(
    W: Tensor,
    b: Tensor,
    dW: Tensor,
    db: Tensor,
    *,
    batch_size: int | None,
    generator: torch.Generator,
    config: SpearConfig | None = None,
    deadline: float | None = None,
    client_dtype: torch.dtype | None = None,
    noise_std: float | None = None,
    prior: Tensor | None = None,
) -> SpearResult:
    """Recover the inputs of ``Z = W X + b`` (followed by ReLU) from ``dW``, ``db``.

    ``W`` (m×n), ``b`` (m) are the layer's weights, ``dW``, ``db`` their gradients. Returns the
    inputs as rows (B×n) in float64 on the CPU. Raises AttackNotApplicable when the
    precondition fails. ``dW`` and ``W`` are never copied whole (float32 ones are cast in
    column chunks), so huge layers cost little beyond the gradient itself. ``noise_std``: the
    per-entry noise std of ``dW`` when the threat model reveals it (used with ``noise_aware``).
    ``prior``: predicted pre-activations (m × B') for the guided finder (finders/guided.py).
    """
    cfg = config or SpearConfig()
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _spear(W, b, dW, db, batch_size, generator, cfg, deadline, client_dtype, t0, noise_std, prior)
    finally:
        if cfg.threads:
            torch.set_num_threads(old_threads)


def _spear(W, b, dW, db, batch_size, generator, cfg, deadline, client_dtype, t0,
           noise_std=None, prior=None) -> SpearResult:
    client_dtype = client_dtype or dW.dtype
    dev = search_device(cfg, dW)
    dW, W = dW.detach(), W.detach()
    b, db = float64_rows(b, dev), float64_rows(db, dev)
    diag: dict = {}
    if not check_observation(W, b, dW, db, batch_size, cfg, dev, diag):
        return SpearResult("failed", None, None, diag)
    fac = factorise(dW, db, batch_size, cfg, client_dtype, noise_std, dev, diag)
    if fac is None:
        return SpearResult("failed", None, None, diag)
    search = DirectionSearch(W, b, db, fac.L, fac.R, fac.row_norm, fac.live, fac.B, fac.zero_tol, cfg,
                             generator, prior, dev, diag)
    best = search.run(deadline)
    diag["time_sampling_s"] = time.perf_counter() - t0
    if hasattr(search.finder, "diagnostics"):
        diag.update(search.finder.diagnostics())
    if best is None:
        stop = "the deadline" if diag["timed_out"] else f"the proposal cap ({cfg.max_proposals})"
        B, found = fac.B, len(search.cands)
        missing = "" if found >= B else f" ({B - found} samples' directions never found)"
        diag["reason"] = (
            f"no consistent choice of {B} directions: {found} distinct candidate directions "
            f"found{missing}, none of the choices tried passed the a-posteriori check; stopped by "
            f"{stop} after {search.proposals} proposals"
        )
        return SpearResult("failed", None, None, diag)
    return _finish(best, search.Lc, fac.R.to("cpu"), dW, search.dbc, fac.res_tol, diag, fac.residual)


def check_observation(W, b, dW, db, batch_size, cfg, dev, diag) -> bool:
    """Shapes and finite entries of the layer's gradients, and a batch narrower than the layer
    (raises AttackNotApplicable). False when the weight gradient is all zero (nothing to find)."""
    if dW.dim() != 2 or W.shape != dW.shape or db.shape != (dW.shape[0],) or b.shape != db.shape:
        raise AttackNotApplicable(
            f"the attacked layer's gradients do not match its parameters: weight {tuple(W.shape)} "
            f"vs gradient {tuple(dW.shape)}, bias {tuple(b.shape)} vs gradient {tuple(db.shape)}; "
            "the observation must hold each parameter's gradient in the parameter's shape"
        )
    lo, hi = torch.aminmax(dW)  # one pass, no copy (NaN propagates); |dW| would copy a huge layer
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi)) and torch.isfinite(db).all()):
        raise AttackNotApplicable(
            "the observed gradient has non-finite entries (NaN/Inf): the client update is "
            "unusable; check the client's loss and learning rate"
        )
    m, n = dW.shape
    diag.update(layer_m=m, layer_n=n, second_stage=int(cfg.second_stage), search=cfg.search, device=str(dev))
    if batch_size is not None and batch_size >= min(m, n):
        raise AttackNotApplicable(
            f"batch size {batch_size} is not smaller than the layer's width min(m, n) = {min(m, n)}: "
            "the weight gradient is not low-rank, so SPEAR cannot disaggregate it"
        )
    if float(lo) == 0.0 == float(hi):
        diag["reason"] = "all-zero weight gradient: no sample activated the attacked layer"
        return False
    return True


@dataclass
class Factorised:
    """What the factorisation leaves for the search: ``dL/dW ≈ L R`` with ``L = U_B √Σ_B`` (m × B)
    and ``R = √Σ_B V_Bᵀ`` (B × n), ``L``'s row norms and live rows, and the tolerances."""

    B: int
    L: Tensor
    R: Tensor
    row_norm: Tensor
    live: Tensor  # (m,) bool
    zero_tol: float
    res_tol: float
    residual: float | None  # the factorisation's explicit residual (randomized path), else None


def factorise(dW, db, batch_size, cfg, client_dtype, noise_std, dev, diag) -> Factorised | None:
    """Low-rank factors of ``dW``, the batch size (stated, or the rank), the zero and residual
    tolerances (from the client's dtype, raised to the noise floor when ``noise_aware``) and the
    live rows of ``L``. None when the rank is below the stated batch size (status failed)."""
    m, n = dW.shape
    zero_tol_d, res_tol_d = dtype_tolerances(client_dtype)
    zero_tol = cfg.zero_tol if cfg.zero_tol is not None else zero_tol_d
    res_tol = cfg.residual_tol if cfg.residual_tol is not None else res_tol_d
    tf = time.perf_counter()
    fac = low_rank_factors(dW.to(dev) if dW.device != dev else dW, path=cfg.factorization,
                           client_dtype=client_dtype, rank_tol=cfg.rank_tol)
    diag["factorization"] = fac.path
    diag["time_factorization_s"] = time.perf_counter() - tf
    fac_residual = fac.residual
    if fac_residual is not None:
        diag["factorization_residual"] = fac_residual
    rank = numerical_rank(fac.S, client_dtype, cfg.rank_tol)
    nf = None
    if cfg.noise_aware:  # noisy update: the rank is what stands above the noise edge (noise.py)
        fro2 = float(fac.S.square().sum()) if fac.path == "svd" else float(dW.double().norm()) ** 2
        nf = estimate_noise(fac.S, fro2, m, n, known_std=noise_std)
        # a stated batch size wins (the smallest samples' singular values may sit near the edge)
        rank = batch_size if batch_size is not None else min(rank, max(nf.rank, 1))
        diag["rank_above_noise"] = nf.rank
        diag.update(noise_std=nf.std, noise_source=nf.source, noise_edge=nf.edge)
    diag["rank"] = rank
    if batch_size is None:
        B = batch_size_of_rank(rank, (m, n), what="the weight gradient")
    else:
        B = batch_size
        if rank > B:
            raise AttackNotApplicable(
                f"the weight gradient has rank {rank} > stated batch size {B}: the threat model's "
                "batch size is wrong (or the update is noisy); state the true batch size or leave "
                "it unknown (threat.batch_size_known=false) to read it off the rank"
            )
        if rank < B:
            diag["reason"] = f"numerical rank {rank} < batch size {B} (duplicate or degenerate samples)"
            return None
    diag["batch_size_est"] = B
    sqrtS = fac.S[:B].sqrt()
    L = fac.U[:, :B] * sqrtS  # m × B
    R = fac.Vh[:B] * sqrtS[:, None]  # B × n

    row_norm = L.norm(dim=1)
    live = row_norm > row_norm.max() * torch.finfo(DTYPE).eps * 10
    if nf is not None:
        tol = noise_tolerances(nf, fac.S, L, db, fro2, B, kappa=cfg.noise_kappa)
        live &= row_norm > tol["row_floor"]
        zero_tol, res_tol = max(zero_tol, tol["zero_tol"]), max(res_tol, tol["residual_tol"])
        diag.update(noise_zero_tol=zero_tol, noise_residual_tol=res_tol)
    return Factorised(B, L, R, row_norm, live, zero_tol, res_tol, fac_residual)


def _finish(trial: Trial, L, R, dW, db, res_tol, diag, fac_residual=None) -> SpearResult:
    """Inputs ``Xᵀ = Q⁻¹ R`` for the best trial; status from the a-posteriori check (how the
    search ended, ``timed_out`` / ``stalled``, is read from ``diag``)."""
    X = torch.linalg.solve(trial.Q, R)  # B × n, rows = samples
    dZ = L @ trial.Q
    if fac_residual is not None:
        # dZ X = L Q Q⁻¹ R = L R: the residual is the factorisation's (measured explicitly over dW)
        # plus the rounding of Q⁻¹, which the bias residual and the sign check already bound
        res_w = fac_residual
    else:
        res_w = relative_residual(dZ, X, dW.to("cpu") if dW.device.type != "cpu" else dW)
    res_b = float((dZ.sum(1) - db).norm() / db.norm().clamp_min(1e-300))
    sample_ok = trial.violations == 0
    diag.update(
        check_violations=trial.total,
        check_violations_hard=trial.hard_total,
        samples_confirmed=int(sample_ok.sum()),
        layer_residual_w=res_w,
        layer_residual_b=res_b,
    )
    B = len(sample_ok)
    if bool(sample_ok.all()) and res_w <= res_tol and res_b <= res_tol:
        status = "ok"
    elif bool(sample_ok.any()):
        status = "partial"
        diag["reason"] = (f"a-posteriori check: only {diag['samples_confirmed']} of {B} samples "
                          f"consistent; {B - diag['samples_confirmed']} wrong or missing"
                          + (" (deadline)" if diag["timed_out"] else "")
                          + (f"; stalled: the {trial.total} doubts are all live neurons with a gradient "
                             "below the zero tolerance (a true answer on a float32 client can show "
                             "them) and the search found nothing better for attack.stall_s seconds"
                             if diag["stalled"] else ""))
    else:
        status = "failed"
        diag["reason"] = "a-posteriori check failed for every sample"
    return SpearResult(status, X, dZ, diag, sample_ok)
