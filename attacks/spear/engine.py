"""SPEAR's engine: factorise, find directions, filter, select, scale, check.

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
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from attacks.base import AttackNotApplicable
from attacks.layers import numerical_rank
from attacks.spear.check import relative_residual
from attacks.spear.config import DTYPE, SpearConfig, dtype_tolerances
from attacks.spear.factorisation import low_rank_factors
from attacks.spear.filtering import Candidates, refine, screen, zero_mask
from attacks.spear.noise import estimate_noise, noise_tolerances
from attacks.spear.finders import SearchState, make_finder
from attacks.spear.selection import Trial, greedy_select, repair, scale_and_check


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


def proposals_per_step(cfg: SpearConfig, device: torch.device, m: int, B: int) -> int:
    """Proposals evaluated together: the configured number, or sized to the device's memory
    (the step's largest temporaries are K × m × B for the screen and K × (B−1) × B for the
    null vectors; a quarter of the free memory is used, capped at 65 536)."""
    if cfg.proposals_per_step:
        return max(1, int(cfg.proposals_per_step))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        per = 8 * (m * B + B * B + 2 * m) * 4
        return int(max(1024, min(65536, free // 4 // per)))
    return 4096


def _float64_rows(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device`` in float64 without a copy when it already is."""
    return t.detach().to(device=device, dtype=DTYPE)


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
    ztol_d, restol_d = dtype_tolerances(client_dtype)
    zero_tol = cfg.zero_tol if cfg.zero_tol is not None else ztol_d
    res_tol = cfg.residual_tol if cfg.residual_tol is not None else restol_d

    dev = search_device(cfg, dW)
    dW, W = dW.detach(), W.detach()
    b, db = _float64_rows(b, dev), _float64_rows(db, dev)
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
    diag: dict = {"layer_m": m, "layer_n": n, "second_stage": int(cfg.second_stage),
                  "search": cfg.search, "device": str(dev)}
    if batch_size is not None and batch_size >= min(m, n):
        raise AttackNotApplicable(
            f"batch size {batch_size} is not smaller than the layer's width min(m, n) = {min(m, n)}: "
            "the weight gradient is not low-rank, so SPEAR cannot disaggregate it"
        )
    if float(lo) == 0.0 == float(hi):
        diag["reason"] = "all-zero weight gradient: no sample activated the attacked layer"
        return SpearResult("failed", None, None, diag)

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
        if rank >= min(m, n):
            raise AttackNotApplicable(
                f"the weight gradient has full rank {rank} = min(m, n): the batch is not smaller "
                "than the layer width, so its size cannot be inferred and SPEAR does not apply"
            )
        B = rank
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
            return SpearResult("failed", None, None, diag)
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
    # mixture screen: leverage above which a proposal hinges on one row (from the final zero_tol)
    fragile = None if not cfg.reject_mixtures else (
        cfg.fragile_leverage if cfg.fragile_leverage is not None else 1.0 - max(1e-6, zero_tol))
    del fac
    live_idx = live.nonzero().squeeze(1)
    m_live = int(live.sum())
    diag["live_neurons"] = m_live
    threshold = max(math.ceil(cfg.tau * m_live), B - 1 + cfg.min_extra_zeros)
    diag["filter_threshold"] = threshold
    diag.update(filter_tau=cfg.tau, filter_min_extra_zeros=cfg.min_extra_zeros)  # for the failure bound
    if B > 1 and m_live < threshold + 1:
        raise AttackNotApplicable(
            f"only {m_live} of {m} neurons are live (active for some sample) for batch size {B}: a "
            f"true direction needs at least {threshold} zero rows among them to pass the sparsity "
            "filter, and the kernel of B−1 rows needs more rows than that; SPEAR needs a layer "
            "markedly wider than the batch (attack a wider layer or a smaller batch)"
        )
    Ll = L[live_idx]
    Ll_norm = row_norm[live_idx]

    # Z = (W Rᵀ) Q⁻ᵀ + b for any candidate disaggregation Q; W Rᵀ over column chunks
    WR = torch.zeros(m, B, dtype=DTYPE, device=dev)
    step = 1 << 16
    for j in range(0, n, step):
        WR += _float64_rows(W[:, j:j + step], dev) @ R[:, j:j + step].T

    # one direction up to the final zero tolerance: refits of one direction from different zero
    # sets differ by an angle of about zero_tol, which matters on noisy updates (measured, CIFAR-10
    # B=10 DP σ=1e-4: 1−|cos| up to 2.4e-6 between copies, distinct samples' |cos| <= 0.48; at the
    # float dedup_cos each copy counted as a new candidate -- 1 817 of them -- and the selection
    # chose several copies of one sample). Without noise: float64 clients keep dedup_cos; float32
    # ones merge directions within 1.2e-4 rad (1−|cos| ≤ 7.2e-9), far below distinct samples'.
    dedup = min(cfg.dedup_cos, 1.0 - 0.5 * (10 * zero_tol) ** 2)
    diag["dedup_cos"] = dedup
    cands = Candidates(B, dedup)
    if generator.device != dev:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        gen = torch.Generator(device=dev).manual_seed(seed)
    else:
        gen = generator
    K = proposals_per_step(cfg, dev, m_live, B)
    diag["proposals_per_step"] = K
    if prior is not None:
        prior = prior.to(dev, DTYPE)[live_idx]
    state = SearchState(Ll, Ll_norm, B, zero_tol, threshold, cands, gen, K, WR[live_idx], b[live_idx],
                        live_idx, prior, db=db[live_idx])
    finder = make_finder(cfg)
    proposals = 0
    last_tried = -1
    degenerate = 0

    bar = None
    if cfg.progress and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=B, desc=f"SPEAR b={B}", unit="dir", leave=False)
        except ImportError:  # pragma: no cover
            bar = None

    # selection works on the CPU (B×B problems); L, WR, db, b there too
    Lc, WRc, dbc, bc = (t.to("cpu") for t in (L, WR, db, b))
    best: Trial | None = None
    t_best = 0.0  # when `best` last lowered its violations (the stall rule's clock)
    stage2_swaps = 0

    def attempt():
        nonlocal best, stage2_swaps, t_best
        sel = greedy_select(cands, B, cfg.min_singular)
        if sel is None:
            return False
        trial = scale_and_check(sel, cands.dirs, Lc, dbc, WRc, bc, zero_tol)
        if trial is None:
            return False
        if trial.total > 0 and cfg.second_stage:
            trial, swaps = repair(trial, cands, Lc, dbc, WRc, bc, zero_tol, cfg.min_singular)
            stage2_swaps += swaps
        if best is None or trial.total <= best.total:
            if best is None or trial.total < best.total:
                t_best = time.perf_counter()
            best = trial
            # the samples this choice got right: the completion finder builds on them when
            # spurious candidates (mixtures) outnumber the missing samples
            state.confirmed = [i for i, v in zip(trial.sel, trial.violations.tolist()) if v == 0]
        return trial.total == 0

    timed_out = stalled = False
    attempt_time = 0.0
    t_search = time.perf_counter()
    while True:
        if B == 1:
            ones = torch.ones(1, dtype=DTYPE)
            cands.add(ones, torch.ones(m_live, dtype=torch.bool), 0)
        else:
            q, cost = finder.propose(state)
            # the last `certified` proposals carry an input-side certificate (finders/completion.py):
            # exempt from the mixture screen, whose one-row test their kernels may fail
            first_cert = len(q) - min(len(q), int(getattr(finder, "certified", 0) or 0))
            if len(q):
                zmask = zero_mask(Ll, Ll_norm, q, zero_tol)
                passed = (zmask.sum(0) >= threshold).nonzero().squeeze(1)
                # most proposals that pass re-find a known direction: count them, skip the refit
                passed = passed[~cands.count_known(q[passed])]
                if len(passed):
                    keep = screen(Ll, zmask[:, passed], zero_tol, fragile)
                    cert = passed >= first_cert
                    if bool(cert.any()):
                        keep[cert] = screen(Ll, zmask[:, passed[cert]], zero_tol, None)
                    degenerate += int((~keep).sum())
                    passed = passed[keep]
                for k in passed.tolist():
                    qr = refine(Ll, zmask[:, k], zero_tol, None if k >= first_cert else fragile)
                    if qr is None:
                        degenerate += 1
                        continue
                    zr = zero_mask(Ll, Ll_norm, qr[None], zero_tol)[:, 0]
                    if int(zr.sum()) >= threshold and cands.add(qr, zr.cpu(), proposals + k):
                        if bar is not None:
                            bar.update(min(1, B - bar.n))
            proposals += cost
        # Selection is retried when new candidates arrived, but never allowed to cost more time
        # than the search itself (with correlated inputs, mixtures of directions keep arriving).
        search_time = time.perf_counter() - t_search - attempt_time
        if len(cands) >= B and len(cands) != last_tried and (attempt_time <= search_time or B == 1):
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
        # stall rule: the only doubts left are sub-tolerance gradients through active neurons
        # (a true float32 answer can look like that; check.py) and nothing better came for stall_s
        if (cfg.stall_s is not None and best is not None and best.hard_total == 0
                and time.perf_counter() - t_best >= cfg.stall_s):
            stalled = True
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
        stalled=int(stalled),
        time_search_s=time.perf_counter() - t_search,
        time_sampling_s=time.perf_counter() - t0,
    )
    if hasattr(finder, "diagnostics"):
        diag.update(finder.diagnostics())
    if best is None:
        stop = "the deadline" if timed_out else f"the proposal cap ({cfg.max_proposals})"
        missing = "" if len(cands) >= B else f" ({B - len(cands)} samples' directions never found)"
        diag["reason"] = (
            f"no consistent choice of {B} directions: {len(cands)} distinct candidate directions "
            f"found{missing}, none of the choices tried passed the a-posteriori check; stopped by "
            f"{stop} after {proposals} proposals"
        )
        return SpearResult("failed", None, None, diag)
    return _finish(best, Lc, R.to("cpu"), dW, dbc, res_tol, diag, fac_residual)


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
