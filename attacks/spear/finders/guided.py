"""Geiping-guided SPEAR (Dimitrov et al., NeurIPS 2024, arXiv 2403.03945, its
large-batch experiment): a rough optimisation-based reconstruction x̂ (Geiping et al., "Inverting Gradients",
NeurIPS 2020; :mod:`attacks.geiping`) predicts each sample's pre-activations ``ẑ = W x̂ + b`` at
the attacked layer. The most negative entries of a sample's ``ẑ`` are its likely-inactive neurons;
SPEAR's B−1 rows are drawn from that predicted set, so a proposal concentrates on one sample and
hits its direction with probability ``precision^(B−1)`` instead of ``2^−(B−1)``.

The prior only decides *where to sample*: every proposal goes through SPEAR's own sparsity filter,
selection, bias-gradient scales and a-posteriori sign check (:mod:`attacks.spear.engine`), so a bad
prior costs time, never correctness. The predicted samples need not be in the true order or even be
good reconstructions; only their inactive sets matter.
"""
from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from attacks.spear.config import DTYPE
from attacks.spear.filtering import null_vectors
from attacks.spear.finders import SearchState, draw_rows, sample_rows


def geiping_prior(obs, layer: nn.Module, *, iterations: int, restarts: int,
                  generator: torch.Generator, deadline: float | None = None) -> tuple[Tensor, dict]:
    """Predicted pre-activations (m × B') of ``layer`` for a short Geiping reconstruction of
    ``obs``; the layer's inputs are read by a forward hook, so any layer of the model works."""
    from attacks.base import AttackNotApplicable
    from attacks.geiping import GeipingAttack

    t0 = time.perf_counter()
    geiping = GeipingAttack(max_iterations=iterations, restarts=restarts, progress=False, threads=None)
    try:
        geiping.prepare(obs.model, obs.data_spec)
        rec = geiping.reconstruct(obs, generator=generator, deadline=deadline)
    except AttackNotApplicable as exc:  # no prior: the guided finder samples uniformly
        return torch.empty(layer.weight.shape[0], 0, dtype=DTYPE), {
            "guide_time_s": time.perf_counter() - t0, "guide_status": f"not applicable: {exc}"[:200]}
    diag = {"guide_time_s": time.perf_counter() - t0, "guide_status": rec.status,
            "guide_iterations": iterations}
    if rec.inputs.shape[0] == 0:
        return torch.empty(layer.weight.shape[0], 0, dtype=DTYPE), diag
    seen: list[Tensor] = []
    hook = layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            p = next(obs.model.parameters())
            obs.model(rec.inputs.to(p.device, p.dtype))
    finally:
        hook.remove()
    a = seen[0].flatten(1).to(DTYPE)  # B' × n
    z = layer.weight.detach().to(DTYPE) @ a.T.to(layer.weight.device)
    if layer.bias is not None:
        z = z + layer.bias.detach().to(DTYPE)[:, None]
    return z.cpu(), diag


class GuidedSampler:
    """SPEAR's submatrix sampler with rows drawn from one predicted sample's likely-inactive set:
    its most negative predicted pre-activations, the ``pool`` share of its live neurons with negative
    prediction (at least 2B rows).
    Measured (CIFAR-10-size crops, width 400, b = 32, 200 Geiping iterations): the worst sample's
    precision is 0.80 for the top 20 %, 0.73 at 40 %, 0.67 at 60 %, but B−1 rows drawn from a pool
    of barely B rows repeat the same (wrong) set: variety matters as much as precision (a fixed
    share of 0.2–0.4 left 5 of 32 samples unfound in 10 min, 0.6 found all in 3 min; one batch each,
    shared machine). Samples whose predicted set already matches a found direction's zero set are drawn
    less often. Without a prior (``state.prior`` None or empty) it samples uniformly."""

    def __init__(self, pool: float = 0.6, helper=None):
        self.pool = pool
        self._prior: Tensor | None = None
        self.helper = helper  # a DictionaryLearning finder for every other call, or None
        self.calls = 0

    def _setup(self, state: SearchState) -> None:
        """Ranks (B' × m_live, 0 = most negative) and negative counts of each predicted sample."""
        Z = state.prior.to(state.L.device, state.L.dtype)  # m_live × B'
        self._prior = state.prior
        self.neg = (Z < 0).sum(0).to(Z.dtype)
        self.ranks = Z.argsort(dim=0).argsort(dim=0).T
        self.pools = (self.ranks.to(Z.dtype) < (self.pool * self.neg)[:, None].clamp_min(2 * state.B))

    def propose(self, state: SearchState) -> tuple[Tensor, int]:
        """Guided proposals; once something was found and a helper is set, every other call is
        the helper's (the dictionary finder's neighbour/global l1 search): Geiping's samples need
        not cover every true sample (two predictions can land near one true picture), and the
        missing ones resemble found ones (measured: 17 of 20 at width 200 from the prior alone
        within 2e5 proposals, the rest never)."""
        self.calls += 1
        if self.helper is not None and len(state.cands) and self.calls % 2 == 0:
            return self.helper.propose(state)
        K, B = state.batch, state.B
        if state.prior is None or state.prior.shape[1] == 0:
            idx = sample_rows(state, K, B - 1, False)
            q, ok = null_vectors(state.L[idx])
            return q[ok], K
        if self._prior is not state.prior:
            self._setup(state)
        pools = self.pools
        w = torch.ones(pools.shape[0], dtype=state.L.dtype, device=state.L.device)
        if len(state.cands):  # predicted samples already explained by a found direction: 10x rarer
            Zs = state.cands.zero_matrix(pools.device).to(state.L.dtype)  # F × m
            P = pools.to(state.L.dtype)
            inside = (P @ Zs.T) / P.sum(1, keepdim=True).clamp_min(1)  # share of pool in the zero set
            w = torch.where(inside.amax(1) > 0.95, 0.3, 1.0).to(state.L.dtype)
        who = torch.multinomial(w, K, replacement=True, generator=state.generator)
        idx = draw_rows(state, K, B - 1, allowed=pools[who])
        q, ok = null_vectors(state.L[idx])
        return q[ok], K

    def diagnostics(self) -> dict:
        return self.helper.diagnostics() if self.helper is not None else {}
