"""Dictionary-learning finder (SPEAR++-style): the columns of ``dL/dZ = L Q`` are the sparsest
vectors in the column space of ``L``, so each column of ``Q`` is found by an l1 search on the sphere.

Bakarsky, Dimitrov, Baader, Vechev, "SPEAR++: Scaling Gradient Inversion via Sparsely-Used
Dictionary Learning", arXiv 2510.24200 (the idea: recovering ``Q`` is complete sparse dictionary
learning). The algorithm here is the per-vector non-convex route from the dictionary-learning
literature (docs/large-batch.md):

* Search: ``min ‖Û q‖₁ s.t. ‖q‖ = 1`` with ``Û`` an orthonormal basis of ``span(L)`` (whitening, as
  in ER-SpUD: Spielman, Wang, Wright, COLT 2012), by the Riemannian subgradient method of Bai, Jiang
  and Sun ("Subgradient descent learns orthogonal dictionaries", ICLR 2019, arXiv 1810.10702) with
  the *geometric* step decay of Li, Zhu, So, Vidal et al.'s Riemannian subgradient analysis
  ("Weakly convex optimization over Stiefel manifold using Riemannian subgradient-type methods",
  code xiao-li-hub/Riemannian-subgradient-methods, ``ODL_RieSub_linear.m``). The step is an angle:
  ``q ← normalise(q − η_k g/‖g‖)`` with ``g`` the tangent part of ``Ûᵀ sign(Û q)`` and
  ``η_k = step · decay^k``. ``K`` random starts run together as two ``m×B×K`` matrix products per
  iteration.
* Rounding to an exact direction ("null-space rounding", docs/large-batch.md): the least singular
  vector of ``Û[S]`` with ``S`` the ``k`` rows where ``|Û q|`` is smallest, repeated with growing
  ``k``; it only needs those rows to be true zeros, not ``q`` to be accurate. Then ``q_L = R⁻¹ q``
  (``L = Û R``) is handed to the engine, which applies SPEAR's sparsity filter, mixture screen,
  refit, selection, bias-gradient scales and sign check (Dimitrov et al. 2024): exactness is the
  engine's, never this module's.
* Neighbour search (ours): samples that resemble a found one (crops of one picture, one class)
  have whitened directions at |cos| up to ~0.8 and tiny basins; rows drawn from the found
  sample's exact zero set leave a small null space that holds both, where the l1 search is easy
  (:meth:`DictionaryLearning.neighbour_search`).
* Completion of the last one or two samples from the dual basis (:mod:`.completion`, shared with
  the l1 finder).
* Deflated starts: later starts are drawn orthogonal (in ``Û`` coordinates) to the directions
  already found. After whitening the dictionary is near-orthogonal when the samples' ``dL/dZ``
  columns are weakly correlated, so this steers starts towards the missing columns; it is a
  heuristic for the starts only (the search itself is unconstrained).

Expected limit (Mao & Wein, "Optimal spectral recovery of a planted vector in a subspace",
arXiv 2105.15081; docs/large-batch.md): planted sparse vectors are recoverable for
``b·ρ ≪ √m``; the wall lies near ``b ≈ 2√m`` at ``ρ ≈ 0.5``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from attacks.spear.finders import SearchState, rows_from_found


def l1_sphere(U: Tensor, Q: Tensor, iters: int, step: float, decay: float) -> Tensor:
    """Batched Riemannian subgradient descent of ``‖U q‖₁`` on the unit sphere.

    ``U``: m×B with orthonormal columns; ``Q``: B×K unit starts (columns). Returns B×K. Leading
    batch dimensions (``U`` ...×m×B, ``Q`` ...×B×K) run independent problems together."""
    Q = Q / Q.norm(dim=-2, keepdim=True).clamp_min(1e-300)
    Ut = U.transpose(-1, -2)
    eta = step
    for _ in range(iters):
        G = Ut @ torch.sign(U @ Q)  # subgradient of ||U q||_1, B×K
        G -= Q * (Q * G).sum(-2, keepdim=True)  # tangent part
        G /= G.norm(dim=-2, keepdim=True).clamp_min(1e-300)
        Q = Q - eta * G
        Q /= Q.norm(dim=-2, keepdim=True).clamp_min(1e-300)
        eta *= decay
    return Q


def null_space_round(U: Tensor, Q: Tensor, rows: tuple[float, ...], max_share: float = 0.3) -> Tensor:
    """Exact rounding: for each column ``q`` of ``Q`` (B×K), the least singular vector of ``U[S]``
    with ``S`` the ``k`` rows where ``|U q|`` is smallest; ``k = r·B`` for each ``r`` in ``rows``
    (capped at ``max_share`` of the rows), re-picking ``S`` from the new ``q`` each time."""
    m, B = U.shape
    for r in rows:
        k = max(B - 1, min(int(r * B), int(max_share * m)))
        idx = (U @ Q).abs().topk(k, dim=0, largest=False).indices  # k×K
        US = U[idx.T]  # K×k×B
        _, vecs = torch.linalg.eigh(US.transpose(1, 2) @ US)  # ascending eigenvalues
        Q = vecs[:, :, 0].T
    return Q


def unique_columns(Q: Tensor, cos: float) -> Tensor:
    """Columns of unit ``Q`` (B×K) with duplicates (|cos| > ``cos``) removed, first kept."""
    if Q.shape[1] <= 1:
        return Q
    C = (Q.T @ Q).abs().triu(1)
    dup = (C > cos).any(0)
    return Q[:, ~dup]


class DictionaryLearning:
    """l1-on-the-sphere direction finder (see the module docstring). ``starts`` random starts per
    call, ``iters`` subgradient steps from angle ``step`` decaying by ``decay``; ``rounds``: the
    null-space rounding's row counts as multiples of B. Once directions have been found, calls
    alternate between the global search and the neighbour search (``local_starts`` > 0)."""

    def __init__(self, starts: int = 256, iters: int = 120, step: float = 0.2, decay: float = 0.95,
                 rounds: tuple[float, ...] = (1.5, 2.5, 3.5), deflate: bool = True,
                 local_dim: int | None = None, local_starts: int = 4, templates: bool = True):
        self.starts, self.iters, self.step, self.decay = starts, iters, step, decay
        self.rounds = tuple(rounds)
        self.deflate = deflate
        self.certified = 0  # completion proposals at the end of the last batch (engine: no mixture screen)
        self.local_dim, self.local_starts = local_dim, local_starts
        from attacks.spear.finders.templates import InputSide

        self.input_side = InputSide(templates)
        self._L: Tensor | None = None
        self.calls = 0
        self.iterations = 0  # subgradient iterations × starts, for the diagnostics
        self.found_by = {"global": 0, "neighbour": 0}
        self._last = ("global", 0)

    def _setup(self, state: SearchState) -> None:
        L = state.L
        self._L = L
        self.Lt = L / state.L_norm[:, None]  # row-normalised, for the input-side step
        self.U, self.R = torch.linalg.qr(L)  # L = U R, U orthonormal (m×B), R B×B upper triangular

    def starts_for(self, state: SearchState, K: int) -> Tensor:
        B = state.B
        Q0 = torch.randn(B, K, generator=state.generator, dtype=state.L.dtype, device=state.L.device)
        found = len(state.cands)
        if self.deflate and 0 < found:
            F = self.R @ state.cands.dirs.to(self.R.device, self.R.dtype).T  # found dirs, U coords
            Fo, s, _ = torch.linalg.svd(F, full_matrices=False)
            Fo = Fo[:, s > 1e-8 * s[0]][:, : B - 1]
            Q0 = Q0 - Fo @ (Fo.T @ Q0)
        return Q0

    def dim_for(self, m: int, B: int) -> int:
        """Null-space dimension of the neighbour search: about sqrt(m) (inside the planted
        sparse-vector wall b·ρ ≈ √m, docs/large-batch.md, so the l1 search there is easy), at least 2,
        at most B − 1. Fewer drawn rows (B − d) make it likelier that all of them are inactive for
        a similar sample too: overlap^(B−d)."""
        d = self.local_dim if self.local_dim else round(m ** 0.5)
        return int(max(2, min(B - 1, d)))

    def global_search(self, state: SearchState) -> tuple[Tensor, int]:
        K = self.starts
        Q = l1_sphere(self.U, self.starts_for(state, K), self.iters, self.step, self.decay)
        self.iterations += K * self.iters
        return Q, K

    def neighbour_search(self, state: SearchState) -> tuple[Tensor, int]:
        """Samples whose pictures resemble a found sample's leave almost the same neurons
        inactive, and their whitened directions are close (|cos| up to ~0.8 measured on crops of
        one picture), so the global search's basins for them are tiny. Instead: draw ``B − d``
        rows from a found sample's zero set (known exactly), so the d-dim null space holds that
        sample and, with probability overlap^(B−d), a similar one; run the l1 search inside that
        null space from starts orthogonal to the found direction."""
        L, B, gen = state.L, state.B, state.generator
        m = L.shape[0]
        d = self.dim_for(m, B)
        r = B - d
        K = max(1, self.starts // self.local_starts)
        drawn = rows_from_found(state, K, r)  # K × r rows from picked found samples' zero sets
        if drawn is None:
            return self.global_search(state)
        pick, idx = drawn
        LA = L[idx]
        _, V = torch.linalg.eigh(LA.transpose(1, 2) @ LA)
        N = V[:, :, :d]  # K×B×d kernel bases (contain the picked direction)
        Um, Rm = torch.linalg.qr(L @ N)  # K×m×d, K×d×d
        qi = state.cands.dirs.to(L.device, L.dtype)[pick]  # K×B
        ci = (Rm @ (N.transpose(1, 2) @ qi[:, :, None]))  # K×d×1, the found direction in Um coords
        ci = ci / ci.norm(dim=1, keepdim=True).clamp_min(1e-300)
        s = self.local_starts
        C0 = torch.randn(K, d, s, generator=gen, dtype=L.dtype, device=L.device)
        C0 = C0 - ci * (ci * C0).sum(1, keepdim=True)
        C = l1_sphere(Um, C0, self.iters, self.step, self.decay)
        self.iterations += K * s * self.iters
        qL = N @ torch.linalg.solve_triangular(Rm, C, upper=True)  # K×B×s
        Q = self.R @ qL.transpose(0, 1).reshape(B, K * s)  # U coords
        Q = Q / Q.norm(dim=0, keepdim=True).clamp_min(1e-300)
        return Q, K * s

    def propose(self, state: SearchState) -> tuple[Tensor, int]:
        if self._L is not state.L:
            self._setup(state)
        mode, before = self._last
        self.found_by[mode] += max(0, len(state.cands) - before)
        use_local = self.local_starts > 0 and len(state.cands) > 0 and self.calls % 2 == 1
        self.calls += 1
        mode = "neighbour" if use_local else "global"
        self._last = (mode, len(state.cands))
        Q, cost = self.neighbour_search(state) if use_local else self.global_search(state)
        Q = unique_columns(Q, 0.999)  # many starts fall into the same minimum: round each once
        Q = null_space_round(self.U, Q, self.rounds)
        Q = unique_columns(Q, 1.0 - 1e-9)
        qL = torch.linalg.solve_triangular(self.R, Q, upper=True).T  # K'×B in L's coordinates
        qL = qL / qL.norm(dim=1, keepdim=True).clamp_min(1e-300)
        qL = qL[torch.isfinite(qL).all(dim=1)]
        # missing look-alikes and the last 1-2 samples, certified (templates.py, completion.py)
        looks, done = self.input_side.propose(state, self.Lt)
        self.certified = len(done)  # the engine exempts these (last) ones from its mixture screen
        return torch.cat([qL, looks, done]), cost

    def diagnostics(self) -> dict:
        return {"l1_iterations": self.iterations, "found_global": self.found_by["global"],
                "found_neighbour": self.found_by["neighbour"]}
