"""SPEAR: exact gradient inversion of a batch from one linear layer followed by ReLU.

Dimitrov, Baader, Müller, Vechev, NeurIPS 2024 (arXiv 2403.03945). For ``Z = W X + b`` with
``X`` holding one column per sample and ``Y = ReLU(Z)``:

* ``dL/dW = dL/dZ · Xᵀ`` has rank ``B`` (the batch size) and factors as ``L · R`` with
  ``L = U_B √Σ_B`` and ``R = √Σ_B V_Bᵀ``; there is a ``Q`` with ``dL/dZ = L Q`` and ``Xᵀ = Q⁻¹ R``.
* ``dL/dZ`` is zero wherever the ReLU is inactive, so each column ``q_i`` of ``Q`` is orthogonal to
  every row of ``L`` on which sample ``i`` is inactive. The kernel of ``B−1`` such rows is ``q_i``.
* Random ``(B−1)``-row submatrices of ``L`` (live rows only) give proposals; a true direction makes
  ``L q`` sparse, a wrong one has only the ``B−1`` forced zeros: a sparsity filter keeps the true ones.
* A greedy selection picks ``B`` well-conditioned directions, the bias gradient fixes their scale
  and sign (``dL/db = L Q' c``), and ``Xᵀ = Q⁻¹ R`` gives the inputs.
* An a-posteriori check recomputes ``Z`` from the reconstruction and demands the ReLU pattern agree
  with the zeros of ``dL/dZ``, and that the reconstruction reproduces the observed gradients.

Everything runs in float64; randomness comes only from the caller's ``torch.Generator``.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction
from attacks.layers import layer_gradients, numerical_rank, relu_linear_layer

DTYPE = torch.float64


@dataclass
class SpearConfig:
    """Knobs of the algorithm; defaults documented in conf/attack/spear.yaml."""

    # proposals evaluated together (the paper's GPU code uses 10^4)
    proposals_per_step: int = 4096
    # give up after this many proposals (None: only the deadline stops the search)
    max_proposals: int | None = 20_000_000
    # sparsity filter: a proposal q is kept when ||L q||_0 over live rows >= max(tau*m_live, B-1+min_extra_zeros)
    tau: float = 0.05
    min_extra_zeros: int = 3
    # |(L q)_k| <= zero_tol * ||L_k|| * ||q|| counts as an exact zero; None: from the client's dtype
    zero_tol: float | None = None
    # singular values below rank_tol * s_max are noise when estimating the batch size; None: from dtype
    rank_tol: float | None = None
    # two unit directions with |cos| above this are the same direction (up to sign)
    dedup_cos: float = 1.0 - 1e-9
    # greedy selection keeps the chosen set's smallest singular value above this
    min_singular: float = 1e-4
    # a-posteriori check: relative gradient residual allowed; None: from dtype
    residual_tol: float | None = None
    # reject a proposal whose zero rows include one of leverage above this (a mixture of
    # directions, see _refine); None disables the test
    fragile_leverage: float | None = None  # None: 1 - max(1e-6, zero_tol)
    reject_mixtures: bool = True
    # row sampling: "uniform" (the paper) or "adaptive" (prefer rows inactive for found samples)
    sampling: str = "uniform"
    # second greedy stage (``repair``): swap directions while that lowers the sign-check violations;
    # False gives the single-stage selection of the paper's ablation
    second_stage: bool = True
    progress: bool = True


@dataclass
class SpearResult:
    """Output of :func:`spear_core`: the layer's inputs (rows = samples) and what happened."""

    status: str
    inputs: Tensor | None  # (B, n) float64, rows are samples
    grad_out: Tensor | None  # recovered dL/dZ, (m, B)
    diagnostics: dict = field(default_factory=dict)
    sample_ok: Tensor | None = None  # (B,) bool: per-sample a-posteriori check


def _dtype_tols(dtype: torch.dtype) -> tuple[float, float, float]:
    """(zero_tol, residual_tol) for gradients computed in ``dtype``."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(DTYPE).eps
    eps64 = torch.finfo(DTYPE).eps
    eps = max(eps, eps64)
    # zero_tol: 1.5e-7 for float64 clients, 100 eps (1.2e-5) for float32 ones
    return max(100 * eps, 10 * math.sqrt(eps64)), 100 * math.sqrt(eps)


def low_rank_factors(dW: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD ``dW = U diag(S) Vh`` (S descending), in the dtype of ``dW``.

    A Gram-matrix eigendecomposition would be cheaper for n >> m but squares the condition number
    and lifts the noise floor of the singular values to ~sqrt(eps), which breaks rank estimation.
    """
    return torch.linalg.svd(dW, full_matrices=False)


def _null_vectors(LA: Tensor) -> tuple[Tensor, Tensor]:
    """Unit null vectors of a batch of (B−1)×B matrices; second output marks the usable ones."""
    K, r, B = LA.shape
    M, rhs = LA[:, :, : B - 1], -LA[:, :, B - 1]
    head, info = torch.linalg.solve_ex(M, rhs)
    q = torch.cat([head, torch.ones(K, 1, dtype=LA.dtype)], dim=1)
    ok = (info == 0) & torch.isfinite(q).all(dim=1)
    q = q / q.norm(dim=1, keepdim=True)
    return q, ok


def _degenerate_ratio(zero_tol: float) -> float:
    """Zero rows whose second-smallest singular value is below this share of the largest leave a
    2-D null space (1.5e-4 for float64 clients; capped at 1e-2 for float32 ones, whose zero_tol
    is already 3.5e-3)."""
    return min(zero_tol * 1e3, 1e-2)


def _refine(L: Tensor, zero_rows: Tensor, zero_tol: float, fragile_leverage: float | None) -> Tensor | None:
    """Unit vector orthogonal to all rows ``L[zero_rows]`` (their least singular vector).

    Returns None when those rows do not pin down one direction robustly:

    * a second singular value near zero: the rows are orthogonal to a 2-D span of directions;
    * a row of leverage ~1 in the remaining (B-1)-dim row space: the direction hinges on that one
      row. This is the signature of a *mixture* ``a q_i + b q_j``: its zeros are the rows where
      both samples are inactive (rank B-2) plus the one sampled row that fixed the ratio a:b.
      A true direction's zero set (about half the live rows) spans B-1 dimensions many times
      over, so no single row carries a dimension alone.
    """
    rows = L[zero_rows]
    B = L.shape[1]
    if rows.shape[0] < B - 1:
        return None
    U, S, Vh = torch.linalg.svd(rows, full_matrices=False)
    if B > 1:
        if S.numel() < B - 1 or S[B - 2] <= _degenerate_ratio(zero_tol) * S[0]:
            return None
        if fragile_leverage is not None and rows.shape[0] > B - 1:
            leverage = (U[:, : B - 1] ** 2).sum(1)
            if leverage.max() > fragile_leverage:
                return None
    q = Vh[B - 1] if Vh.shape[0] >= B else torch.linalg.svd(rows, full_matrices=True)[2][-1]
    return q * torch.sign(q[q.abs().argmax()])


def _screen(L: Tensor, zmask: Tensor, zero_tol: float, fragile_leverage: float | None) -> Tensor:
    """Cheap batched version of _refine's tests for many proposals at once (via B×B Gram
    matrices): True where the zero rows pin down a single direction robustly. Survivors are
    refined exactly by :func:`_refine`."""
    P, B = zmask.shape[1], L.shape[1]
    if P == 0 or B == 1:
        return torch.ones(P, dtype=torch.bool)
    Lm = zmask.T.to(L.dtype)[:, :, None] * L[None]  # P × m × B (non-zero rows only)
    G = Lm.transpose(1, 2) @ Lm  # P × B × B
    evals, evecs = torch.linalg.eigh(G)  # ascending
    top = evals[:, -1].clamp_min(1e-300)
    keep = evals[:, 1] > _degenerate_ratio(zero_tol) ** 2 * top
    if fragile_leverage is not None:
        V, lam = evecs[:, :, 1:], evals[:, 1:].clamp_min(1e-300)
        lev = ((Lm @ V) ** 2 / lam[:, None, :]).sum(2)  # P × m leverage within q's complement
        keep &= lev.amax(1) <= fragile_leverage
    return keep


def _sparsity(L: Tensor, rownorm: Tensor, q: Tensor, zero_tol: float) -> Tensor:
    """Zero mask of ``L q`` (rows × proposals) for unit-norm proposals ``q`` (K×B)."""
    P = L @ q.T
    return P.abs() <= zero_tol * rownorm[:, None]


class _Candidates:
    """De-duplicated (up to sign) directions that passed the sparsity filter."""

    def __init__(self, B: int, dedup_cos: float):
        self.dirs = torch.empty(0, B, dtype=DTYPE)
        self.zeros: list[int] = []
        self.hits: list[int] = []
        self.first_seen: list[int] = []
        self.dedup_cos = dedup_cos

    def add(self, q: Tensor, zeros: int, at: int) -> bool:
        if len(self.dirs):
            cos = (self.dirs @ q).abs()
            j = int(cos.argmax())
            if cos[j] > self.dedup_cos:
                self.hits[j] += 1
                if zeros > self.zeros[j]:  # same direction, better pinned down: keep the sparser
                    self.dirs[j] = q
                    self.zeros[j] = zeros
                return False
        self.dirs = torch.cat([self.dirs, q[None]])
        self.zeros.append(zeros)
        self.hits.append(1)
        self.first_seen.append(at)
        return True

    def __len__(self) -> int:
        return len(self.dirs)


def greedy_select(cands: _Candidates, B: int, min_singular: float, exclude=()) -> list[int] | None:
    """Pick B candidates, sparsest first, each keeping the chosen set well conditioned."""
    order = sorted(range(len(cands)), key=lambda i: (-cands.zeros[i], -cands.hits[i]))
    chosen: list[int] = []
    for i in order:
        if i in exclude:
            continue
        trial = cands.dirs[chosen + [i]]
        if torch.linalg.svdvals(trial)[-1] >= min_singular:
            chosen.append(i)
            if len(chosen) == B:
                return chosen
    return None


@dataclass
class _Trial:
    """One choice of B directions, scaled and checked (cheaply, without forming X)."""

    sel: list[int]
    Q: Tensor  # B×B, columns are the scaled directions
    violations: Tensor  # (B,) per-sample sign-check violations

    @property
    def total(self) -> int:
        return int(self.violations.sum())


def sign_check(WR: Tensor, b: Tensor, L: Tensor, Q: Tensor, zero_tol: float) -> Tensor:
    """Per-sample violations of the ReLU pattern for disaggregation ``Q``.

    ``Z = W X + b`` with ``X = Rᵀ Q⁻ᵀ`` is ``(W Rᵀ) Q⁻ᵀ + b``, so the check costs O(m B²). A sample
    is consistent when gradient flows exactly through its active neurons: gradient through a
    clearly inactive neuron, or none through a clearly active (live) one, is a violation. Scales
    are per sample, since samples' gradients differ by orders of magnitude. The gradient residual
    cannot serve here: any invertible Q reproduces dL/dW = L R exactly.
    """
    Z = torch.linalg.solve(Q, WR.T).T + b[:, None]  # m × B
    dZ = L @ Q
    zscale = Z.abs().amax(0, keepdim=True).clamp_min(1e-300)
    gscale = dZ.abs().amax(0, keepdim=True).clamp_min(1e-300)
    margin = math.sqrt(zero_tol)  # relative; sign decisions closer to 0 than this are not judged
    grad_on = dZ.abs() > margin * gscale
    grad_off = dZ.abs() <= zero_tol * gscale
    active = Z > margin * zscale
    inactive = Z < -margin * zscale
    live = dZ.abs().sum(1, keepdim=True) > 0  # rows dead for the whole batch carry no information
    return ((grad_on & inactive) | (grad_off & active & live)).sum(0)


def scale_and_check(sel, dirs, L, db, WR, b, zero_tol) -> _Trial | None:
    """Scale chosen unit directions by the bias gradient (dL/db = L Q' c) and sign-check them."""
    Qp = dirs[sel].T
    c = torch.linalg.lstsq(L @ Qp, db[:, None]).solution[:, 0]
    if not torch.isfinite(c).all() or bool((c.abs() < 1e-300).any()):
        return None
    Q = Qp * c[None, :]
    try:
        viol = sign_check(WR, b, L, Q, zero_tol)
    except RuntimeError:  # singular Q
        return None
    return _Trial(list(sel), Q, viol)


def repair(trial: _Trial, cands: "_Candidates", L, db, WR, b, zero_tol, min_singular,
           max_alternatives: int = 32, max_evaluations: int = 512) -> tuple[_Trial, int]:
    """Second greedy stage: swap the direction of the worst sample for an unused candidate while
    that lowers the total number of sign-check violations. Returns the trial and swaps made."""
    order = sorted(range(len(cands)), key=lambda i: (-cands.zeros[i], -cands.hits[i]))
    swaps = evaluations = 0
    while trial.total > 0 and evaluations < max_evaluations:
        improved = None
        for j in torch.argsort(trial.violations, descending=True).tolist():
            if trial.violations[j] == 0:
                break
            tried = 0
            for i in order:
                if i in trial.sel:
                    continue
                tried += 1
                if tried > max_alternatives or evaluations >= max_evaluations:
                    break
                sel = trial.sel.copy()
                sel[j] = i
                if torch.linalg.svdvals(cands.dirs[sel])[-1] < min_singular:
                    continue
                evaluations += 1
                t = scale_and_check(sel, cands.dirs, L, db, WR, b, zero_tol)
                if t is not None and t.total < trial.total:
                    improved = t
                    break
            if improved is not None:
                break
        if improved is None:
            break
        trial, swaps = improved, swaps + 1
    return trial, swaps


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
) -> SpearResult:
    """Recover the inputs of ``Z = W X + b`` (followed by ReLU) from ``dW``, ``db``.

    ``W`` (m×n), ``b`` (m) are the layer's weights, ``dW``, ``db`` their gradients. Returns the
    inputs as rows (B×n) in float64. Raises AttackNotApplicable when the precondition fails.
    """
    cfg = config or SpearConfig()
    t0 = time.perf_counter()
    client_dtype = client_dtype or dW.dtype
    ztol_d, restol_d = _dtype_tols(client_dtype)
    zero_tol = cfg.zero_tol if cfg.zero_tol is not None else ztol_d
    res_tol = cfg.residual_tol if cfg.residual_tol is not None else restol_d
    fragile = None if not cfg.reject_mixtures else (
        cfg.fragile_leverage if cfg.fragile_leverage is not None else 1.0 - max(1e-6, zero_tol))

    W, b, dW, db = (t.detach().to("cpu", DTYPE) for t in (W, b, dW, db))
    if not (torch.isfinite(dW).all() and torch.isfinite(db).all()):
        raise AttackNotApplicable(
            "the observed gradient has non-finite entries (NaN/Inf): the client update is "
            "unusable; check the client's loss and learning rate"
        )
    m, n = dW.shape
    diag: dict = {"layer_m": m, "layer_n": n, "second_stage": int(cfg.second_stage)}
    if batch_size is not None and batch_size >= min(m, n):
        raise AttackNotApplicable(
            f"batch size {batch_size} is not smaller than the layer's width min(m, n) = {min(m, n)}: "
            "the weight gradient is not low-rank, so SPEAR cannot disaggregate it"
        )
    scale = float(dW.abs().max())
    if scale == 0.0:
        diag["reason"] = "all-zero weight gradient: no sample activated the attacked layer"
        return SpearResult("failed", None, None, diag)

    U, S, Vh = low_rank_factors(dW)
    rank = numerical_rank(S, client_dtype, cfg.rank_tol)
    diag["rank"] = rank
    if batch_size is None:
        if rank >= min(m, n):
            raise AttackNotApplicable(
                f"the weight gradient has full rank {rank} = min(m, n): the batch is not smaller "
                "than the layer width, so its size cannot be inferred and SPEAR does not apply"
            )
        B = rank
    else:
        B = batch_size
        if rank < B:
            diag["reason"] = f"numerical rank {rank} < batch size {B} (duplicate or degenerate samples)"
            return SpearResult("failed", None, None, diag)
    diag["batch_size_est"] = B
    sqrtS = S[:B].sqrt()
    L = U[:, :B] * sqrtS  # m × B
    R = Vh[:B] * sqrtS[:, None]  # B × n

    row_norm_dw = dW.norm(dim=1)
    live = row_norm_dw > row_norm_dw.max() * torch.finfo(DTYPE).eps * 10
    live_idx = live.nonzero().squeeze(1)
    m_live = int(live.sum())
    diag["live_neurons"] = m_live
    if m_live < B - 1 + cfg.min_extra_zeros:
        diag["reason"] = f"only {m_live} live neurons for batch size {B}"
        return SpearResult("failed", None, None, diag)
    Ll = L[live_idx]
    Ll_norm = Ll.norm(dim=1)
    threshold = max(math.ceil(cfg.tau * m_live), B - 1 + cfg.min_extra_zeros)
    diag["filter_threshold"] = threshold

    cands = _Candidates(B, cfg.dedup_cos)
    proposals = 0
    last_tried = -1
    K = max(1, cfg.proposals_per_step)
    inactive_votes = torch.zeros(m_live, dtype=DTYPE)  # for adaptive sampling
    degenerate = 0

    bar = None
    if cfg.progress and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=B, desc=f"SPEAR b={B}", unit="dir", leave=False)
        except ImportError:  # pragma: no cover
            bar = None

    WR = W @ R.T  # m × B: Z = WR Q^-T + b for any candidate disaggregation Q
    best: _Trial | None = None
    stage2_swaps = 0

    def attempt():
        nonlocal best, stage2_swaps
        sel = greedy_select(cands, B, cfg.min_singular)
        if sel is None:
            return False
        trial = scale_and_check(sel, cands.dirs, L, db, WR, b, zero_tol)
        if trial is None:
            return False
        if trial.total > 0 and cfg.second_stage:
            trial, swaps = repair(trial, cands, L, db, WR, b, zero_tol, cfg.min_singular)
            stage2_swaps += swaps
        if best is None or trial.total <= best.total:
            best = trial
        return trial.total == 0

    timed_out = False
    attempt_time = 0.0
    while True:
        if B == 1:
            cands.add(torch.ones(1, dtype=DTYPE), m_live, 0)
        else:
            if cfg.sampling == "adaptive" and len(cands):
                logits = (inactive_votes / len(cands)).mul(4.0)
            else:
                logits = torch.zeros(m_live, dtype=DTYPE)
            gumbel = -torch.log(-torch.log(torch.rand(K, m_live, generator=generator, dtype=DTYPE)))
            idx = (logits + gumbel).topk(B - 1, dim=1).indices  # K sets of B-1 distinct rows
            q, usable = _null_vectors(Ll[idx])
            q = q[usable]
            if len(q):
                zmask = _sparsity(Ll, Ll_norm, q, zero_tol)
                counts = zmask.sum(0)
                passed = (counts >= threshold).nonzero().squeeze(1)
                if len(passed) and len(cands):
                    # most proposals that pass re-find a known direction: count them, skip the refit
                    cos = (q[passed] @ cands.dirs.T).abs()
                    best_cos, best_j = cos.max(dim=1)
                    known = best_cos > cfg.dedup_cos
                    for j in best_j[known].tolist():
                        cands.hits[j] += 1
                    passed = passed[~known]
                if len(passed):
                    keep = _screen(Ll, zmask[:, passed], zero_tol, fragile)
                    degenerate += int((~keep).sum())
                    passed = passed[keep]
                for k in passed.tolist():
                    qr = _refine(Ll, zmask[:, k], zero_tol, fragile)
                    if qr is None:
                        degenerate += 1
                        continue
                    zr = _sparsity(Ll, Ll_norm, qr[None], zero_tol)[:, 0]
                    if int(zr.sum()) >= threshold and cands.add(qr, int(zr.sum()), proposals + k):
                        inactive_votes += zr.to(DTYPE)
                        if bar is not None:
                            bar.update(min(1, B - bar.n))
            proposals += K
        # Selection is retried when new candidates arrived, but never allowed to cost more time
        # than sampling itself (with correlated inputs, mixtures of directions keep arriving).
        sampling_time = time.perf_counter() - t0 - attempt_time
        if len(cands) >= B and len(cands) != last_tried and (attempt_time <= sampling_time or B == 1):
            last_tried = len(cands)
            ta = time.perf_counter()
            ok = attempt()
            attempt_time += time.perf_counter() - ta
            if ok:
                diag["proposals_to_success"] = proposals
                break
        if cfg.max_proposals is not None and proposals >= cfg.max_proposals:
            break
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
            break
        if B == 1:
            break
    if bar is not None:
        bar.close()
    if "proposals_to_success" not in diag and len(cands) >= B and len(cands) != last_tried:
        if attempt():  # the last candidates found before the cap/deadline get their chance
            diag["proposals_to_success"] = proposals

    diag.update(
        proposals=proposals,
        candidates=len(cands),
        degenerate_proposals=degenerate,
        stage2_swaps=stage2_swaps,
        timed_out=int(timed_out),
        time_sampling_s=time.perf_counter() - t0,
    )
    if best is None:
        diag["reason"] = (
            f"found {len(cands)} usable directions for batch size {B} after {proposals} proposals"
            + (" (deadline)" if timed_out else "")
        )
        return SpearResult("failed", None, None, diag)
    return _finish(best, L, R, dW, db, res_tol, diag, timed_out)


def _finish(trial: _Trial, L, R, dW, db, res_tol, diag, timed_out) -> SpearResult:
    """Inputs ``Xᵀ = Q⁻¹ R`` for the best trial; status from the a-posteriori check."""
    X = torch.linalg.solve(trial.Q, R)  # B × n, rows = samples
    dZ = L @ trial.Q
    res_w = float((dZ @ X - dW).norm() / dW.norm().clamp_min(1e-300))
    res_b = float((dZ.sum(1) - db).norm() / db.norm().clamp_min(1e-300))
    sample_ok = trial.violations == 0
    diag.update(
        check_violations=trial.total,
        samples_confirmed=int(sample_ok.sum()),
        layer_residual_w=res_w,
        layer_residual_b=res_b,
    )
    if bool(sample_ok.all()) and res_w <= res_tol and res_b <= res_tol:
        status = "ok"
    elif bool(sample_ok.any()):
        status = "partial"
        diag["reason"] = (f"a-posteriori check: {diag['samples_confirmed']} of {len(sample_ok)} samples "
                          "consistent" + (" (deadline)" if timed_out else ""))
    else:
        status = "failed"
        diag["reason"] = "a-posteriori check failed for every sample"
    return SpearResult(status, X, dZ, diag, sample_ok)


class SpearAttack:
    """SPEAR behind the attack interface. Attacks ``layer`` (default: the first nn.Linear)."""

    name: ClassVar[str] = "spear"
    requires: ClassVar[frozenset[str]] = frozenset({"relu_linear_layer"})

    def __init__(self, layer: str | None = None, **config):
        self.layer = layer
        self.config = SpearConfig(**config)

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        relu_linear_layer(model, self.layer)

    def recover_layer_inputs(
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None
    ) -> SpearResult:
        """Inputs of the attacked layer (pixels for the first layer, features deeper in)."""
        name, mod = relu_linear_layer(obs.model, self.layer)
        dW, db = layer_gradients(obs.gradients, name)
        return spear_core(
            mod.weight,
            mod.bias,
            dW,
            db,
            batch_size=obs.batch_size,
            generator=generator,
            config=self.config,
            deadline=deadline,
            client_dtype=dW.dtype,
        )

    def reconstruct(
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None
    ) -> Reconstruction:
        res = self.recover_layer_inputs(obs, generator=generator, deadline=deadline)
        spec = obs.data_spec
        if res.inputs is None:
            empty = torch.empty((0, *spec.shape), dtype=DTYPE)
            return Reconstruction(empty, None, "failed", res.diagnostics)
        if res.inputs.shape[1] != spec.numel:
            raise AttackNotApplicable(
                f"the attacked layer takes {res.inputs.shape[1]} features, not the {spec.numel} "
                "input values: it is not the first layer; use a pipeline (spear+fi+geiping) to map "
                "features back to inputs"
            )
        inputs = res.inputs.reshape(-1, *spec.shape)
        return Reconstruction(inputs, None, res.status, res.diagnostics)


__all__ = ["SpearAttack", "SpearConfig", "SpearResult", "spear_core", "low_rank_factors", "greedy_select"]
