"""ℓ1 direction finder: the columns of ``dL/dZ = L Q`` are the sparsest vectors in the column
space of ``L``, so each is a (sharp) local minimum of ``‖L̃ q‖₁ / ‖L̃ q‖₂`` (``L̃``: ``L`` with unit
rows, so every neuron counts alike). We search for them from many random starts at once and round
each result to an exact SPEAR proposal.

Sources and what is taken from each:

* Spielman, Wang, Wright, "Exact recovery of sparsely-used dictionaries", COLT 2012, and Qu, Sun,
  Wright, "Finding a sparse vector in a subspace", NeurIPS 2014: the sparse columns are found one
  at a time as sparse vectors in a subspace, in an orthonormal basis of that subspace (whitening),
  with many random starts and a final rounding step; the later vectors by *deflation* (starts in
  the orthogonal complement of what was found).
* Bakarsky, Dimitrov, Baader, Vechev, "SPEAR++" (arXiv 2510.24200): SPEAR's ``Q`` by sparsely-used
  dictionary learning (only its abstract could be read; the solver here is our choice).
* Daubechies, DeVore, Fornasier, Güntürk, "Iteratively reweighted least squares minimization for
  sparse recovery", CPAM 2010: the inner solver. Each iteration minimises ``Σ_j w_j (a_jᵀu)²`` on the
  unit sphere (the least eigenvector of ``Aᵀ diag(w) A``) with ``w_j = 1 / max(|a_jᵀu|, δ_t)`` and
  ``δ_t`` halved every iteration from the median of ``|A u|``.

Departures, measured on real photographs (CIFAR-10 size, width 200, b = 20, 3 batches, 400
starts each): a Riemannian subgradient method
(Bai, Jiang, Sun 2018) with geometric steps found a sparse direction from 1.5 % of starts where
IRLS found one from ~37 %; IRLS converges in ~25 iterations in dimension ≤ 32. Deflation is
approximate here (the true sparse vectors are not orthogonal in whitened coordinates), which is
harmless: rounding only needs the ``B−1`` smallest entries of ``|L̃ q|`` to be true zeros. With the
other 19 directions found, deflated starts found the hardest sample of a batch from 400 of 400
starts; undeflated ones from 1–2 of 400.

Rounding (null-space rounding, docs/large-batch.md): the ``B−1`` rows with the smallest ``|L̃ q|``
give a SPEAR proposal, the kernel of those rows; the engine's sparsity filter, mixture screen,
refit, selection and sign check then decide, exactly as for sampled proposals.

Optionally (``rows > 0``) each start first conditions on ``rows`` randomly sampled rows (the search
then runs in their ``(B − rows)``-dimensional null space), which concentrates starts on samples
inactive on those rows at the cost of SPEAR's 2^−rows sampling factor.
"""
from __future__ import annotations

import torch
from torch import Tensor

from attacks.spear.finders import SearchState, rows_from_found, sample_rows


def irls_sphere(A: Tensor, u: Tensor, iters: int) -> Tensor:
    """Approximate minimisers of ``‖A u‖₁`` over unit ``u`` by reweighted least squares.

    ``A``: (m × k) shared or (P × m × k) per start, orthonormal columns; ``u``: (P × k) starts.
    """
    shared = A.dim() == 2
    for t in range(iters):
        p = (u @ A.T if shared else (A @ u[:, :, None])[:, :, 0]).abs()  # P × m
        delta = p.median(dim=1, keepdim=True).values * 0.5 ** t + torch.finfo(A.dtype).tiny
        w = 1.0 / torch.maximum(p, delta)
        if shared:
            G = torch.einsum("mi,pm,mj->pij", A, w, A)
        else:
            G = A.transpose(1, 2) @ (w[:, :, None] * A)
        u = torch.linalg.eigh(G)[1][:, :, 0]
    return u


def _modal_runs(angle: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """For each row of ``angle`` (P × m, values in [0, π)), the two largest groups of equal
    angles (consecutive sorted values closer than ``tol``): (P × 2) representative angles and
    (P × 2) group sizes."""
    P, m = angle.shape
    a, _ = angle.sort(dim=1)
    new_run = torch.ones_like(a, dtype=torch.long)
    new_run[:, 1:] = (a[:, 1:] - a[:, :-1] > tol).long()
    run = new_run.cumsum(1) - 1 + torch.arange(P, device=a.device)[:, None] * m  # global run ids
    size = torch.zeros(P * m, dtype=torch.long, device=a.device).scatter_add_(
        0, run.flatten(), torch.ones(P * m, dtype=torch.long, device=a.device)).view(P, m)
    top_size, top_run = size.topk(2, dim=1)
    first = torch.full((P * m,), m, dtype=torch.long, device=a.device).scatter_reduce_(
        0, run.flatten(), torch.arange(m, device=a.device).repeat(P), reduce="amin").view(P, m)
    pos = first.gather(1, top_run).clamp_max(m - 1)
    return a.gather(1, pos), top_size


def split_plane(Lt: Tensor, N2: Tensor, zero_tol: float) -> tuple[Tensor, Tensor]:
    """The two sample directions inside 2-D kernels ``N2`` (p × B × 2), when there are two.

    A row of ``L̃`` inactive for a sample whose direction lies in the plane is orthogonal to that
    direction within the plane, so rows inactive for the same sample all project to the same
    angle: the two most frequent angles give the two directions exactly. Returns (p × 2 × B)
    directions and (p × 2) supporting row counts.
    """
    M = Lt @ N2  # p × m × 2
    ang = torch.remainder(torch.atan2(M[:, :, 1], M[:, :, 0]), torch.pi)
    # rows orthogonal to the whole plane (inactive for both samples) carry no angle: give each
    # its own value past π so that they never form a group
    flat = M.norm(dim=2) <= 1e3 * zero_tol
    ang = torch.where(flat, 4.0 + torch.arange(M.shape[1], dtype=ang.dtype, device=ang.device), ang)
    rep, size = _modal_runs(ang, 1e3 * zero_tol)
    v = torch.stack([-torch.sin(rep), torch.cos(rep)], dim=2)  # orthogonal to the rows' angle
    return (N2[:, None] @ v[:, :, :, None])[:, :, :, 0], size


def round_to_proposals(L: Tensor, Lt: Tensor, q: Tensor, B: int, zero_tol: float) -> tuple[Tensor, Tensor]:
    """Exact SPEAR proposals from approximate sparse directions ``q`` (P × B).

    The ``B + 2`` rows where ``|L̃ q|`` is smallest are, for a good ``q``, true zero rows of one
    sample: their kernel is that sample's direction. When ``q`` converged to a *mixture* of two
    samples' directions instead (its small entries are the rows inactive for both, common with
    correlated pictures), the kernel is 2-D, spanned by the two directions, and
    :func:`split_plane` recovers both exactly. Returns proposals (2P × B) and a mask of the
    usable ones.
    """
    P = q.shape[0]
    S = min(B + 2, L.shape[0])
    rows = (q @ Lt.T).abs().topk(S, dim=1, largest=False).indices
    _, sv, Vh = torch.linalg.svd(Lt[rows], full_matrices=True)  # P × S × B
    one = Vh[:, B - 1]  # least right singular vector
    gap = sv[:, B - 2] / sv[:, 0]
    two_d = gap <= 10 * zero_tol  # a second (near-)zero singular value: a 2-D kernel
    out = torch.cat([one, one])
    ok = torch.cat([~two_d, torch.zeros_like(two_d)])
    if bool(two_d.any()):
        idx = two_d.nonzero().squeeze(1)
        qs, size = split_plane(Lt, Vh[idx, B - 2:].transpose(1, 2), zero_tol)
        good = size >= 2  # a group of one row is no evidence
        out[idx], ok[idx] = qs[:, 0], good[:, 0]
        out[P + idx], ok[P + idx] = qs[:, 1], good[:, 1]
    return out, ok & torch.isfinite(out).all(1)


def neighbour_proposals(state: SearchState, Lt: Tensor, K: int) -> Tensor:
    """Directions of samples whose inactive neurons overlap a found sample's.

    ``B−2`` rows drawn from the zero set of a found direction ``q_j`` leave a 2-D kernel that
    contains ``q_j``; when the rows are also inactive for another sample ``i`` (likely when the
    two pictures are alike, which is exactly when the l1 search confuses them), the kernel is
    span(``q_i``, ``q_j``) and :func:`split_plane` returns ``q_i`` exactly: one (b−2)-row set with a 2-D null space, one factorisation
    tests all completions at once.
    """
    B = state.B
    drawn = rows_from_found(state, K, B - 2) if B >= 3 else None
    if drawn is None:
        return torch.empty(0, B, dtype=Lt.dtype, device=Lt.device)
    rows = drawn[1]
    N2 = torch.linalg.svd(Lt[rows], full_matrices=True)[2][:, B - 2:].transpose(1, 2)
    qs, size = split_plane(Lt, N2, state.zero_tol)
    return qs.reshape(-1, B)[(size >= 2).flatten()]  # the engine's filter counts all zeros


def _input_side(templates: bool):
    from attacks.spear.finders.templates import InputSide  # templates.py imports split_plane from here

    return InputSide(templates)


def _pair_splitter():
    from attacks.spear.finders.pairs import PairSplitter  # pairs.py imports split_plane from here

    return PairSplitter()


class L1Search:
    """Batched IRLS from random (deflated) starts, rounded to SPEAR proposals; once some
    directions are found, also 2-D kernels drawn from their zero sets (``neighbours`` per step)."""

    def __init__(self, starts: int = 256, iters: int = 25, rows: int = 0, deflate: float = 0.75,
                 sampling: str = "uniform", neighbours: int = 1024, templates: bool = True):
        self.starts, self.iters, self.rows, self.deflate = starts, iters, rows, deflate
        self.neighbours = neighbours
        self.adaptive = sampling == "adaptive"
        self._key = None
        self.pairs = _pair_splitter()
        self.input_side = _input_side(templates)
        self.certified = 0

    def _basis(self, state: SearchState):
        if self._key is not state.L:  # whitened basis of the row-normalised L, once per search
            Lt = state.L / state.L_norm[:, None]
            A, Rm = torch.linalg.qr(Lt)  # Lt = A Rm; coordinates of L̃ q in A are Rm q
            self._key, self._Lt, self._A, self._Rm = state.L, Lt, A, Rm
        return self._Lt, self._A, self._Rm

    def _starts(self, state: SearchState, K: int, Rm: Tensor) -> Tensor:
        B, dev, dt = state.B, state.L.device, state.L.dtype
        u = torch.randn(K, B, generator=state.generator, dtype=dt, device=dev)
        n_found = len(state.cands)
        if 0 < n_found < B and self.deflate > 0:
            F = state.cands.dirs.to(dev, dt) @ Rm.T  # found directions in whitened coordinates
            Qf = torch.linalg.qr(F.T)[0]  # B × n_found
            n_defl = int(round(self.deflate * K))
            u[:n_defl] -= (u[:n_defl] @ Qf) @ Qf.T
        return u / u.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dt).tiny)

    def propose(self, state: SearchState) -> tuple[Tensor, int]:
        B, K = state.B, max(1, self.starts)
        Lt, A, Rm = self._basis(state)
        r = min(self.rows, B - 2)
        if r <= 0:
            u = irls_sphere(A, self._starts(state, K, Rm), self.iters)
            q = torch.linalg.solve_triangular(Rm, u.T, upper=True).T  # back to R^B
        else:
            idx = sample_rows(state, K, r, self.adaptive)
            N = torch.linalg.qr(Lt[idx].transpose(1, 2), mode="complete")[0][:, :, r:]  # K × B × k
            An, Rn = torch.linalg.qr(Lt @ N)  # K × m × k
            k = B - r
            u = torch.randn(K, k, generator=state.generator, dtype=Lt.dtype, device=Lt.device)
            u = irls_sphere(An, u / u.norm(dim=1, keepdim=True), self.iters)
            v = torch.linalg.solve_triangular(Rn, u[:, :, None], upper=True)
            q = (N @ v)[:, :, 0]
        q = q / q.norm(dim=1, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
        prop, ok = round_to_proposals(state.L, Lt, q, B, state.zero_tol)
        prop = prop[ok]
        if self.neighbours and 0 < len(state.cands) < B:
            prop = torch.cat([prop, neighbour_proposals(state, Lt, self.neighbours)])
        prop = torch.cat([prop, self.pairs.propose(state, Lt)])  # mixtures split (finders/pairs.py)
        looks, done = self.input_side.propose(state, Lt)  # missing samples (finders/templates.py)
        self.certified = len(done)  # the engine exempts these (last) ones from its mixture screen
        return torch.cat([prop, looks, done]), K
