"""Direction finders: each proposes unit vectors ``q`` in R^B that may be columns of ``Q``.

A finder only proposes; the engine (:mod:`attacks.spear.engine`) filters proposals by sparsity,
screens out mixtures, refits, de-duplicates, selects and checks. Every finder therefore inherits
SPEAR's exactness: a wrong proposal costs time, never correctness.

Interface: ``finder.propose(state) -> (proposals K×B, cost)`` where ``cost`` is the number of
proposals the finder counts against ``max_proposals`` (sampled submatrices).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.spear.filtering import Candidates


@dataclass
class SearchState:
    """What a finder may look at: the live rows of ``L`` and what has been found so far."""

    L: Tensor  # m_live × B (on the search device)
    L_norm: Tensor  # m_live row norms
    B: int
    zero_tol: float
    threshold: int  # zeros a proposal needs to pass the filter
    cands: Candidates
    generator: torch.Generator  # on the search device
    batch: int  # proposals per step
    WR: Tensor | None = None  # m_live × B: W Rᵀ, pre-activations are (W Rᵀ) Q⁻ᵀ + b
    bias: Tensor | None = None  # m_live: the layer's bias
    live_idx: Tensor | None = None  # rows of the full L that are live (state.L = L[live_idx])
    prior: Tensor | None = None  # m_live × B' predicted pre-activations (guided finder), or None


def make_finder(cfg):
    """The finder named by ``cfg.search``."""
    from attacks.spear.finders.l1 import L1Search
    from attacks.spear.finders.sampling import SubmatrixSampler

    if cfg.search == "sampling":
        return SubmatrixSampler(cfg.sampling)
    if cfg.search == "l1":
        return L1Search(cfg.l1_starts, cfg.l1_iters, cfg.l1_rows, cfg.l1_deflate, cfg.sampling,
                        cfg.l1_neighbours)
    if cfg.search == "dictionary":
        from attacks.spear.finders.dictionary import DictionaryLearning

        return DictionaryLearning(cfg.dict_starts, cfg.dict_iters, cfg.dict_step, cfg.dict_decay,
                                  cfg.dict_rounds, cfg.dict_deflate, cfg.dict_local_dim,
                                  cfg.dict_local_starts)
    if cfg.search == "guided":
        from attacks.spear.finders.guided import GuidedSampler

        helper = None
        if cfg.guide_dictionary:
            from attacks.spear.finders.dictionary import DictionaryLearning

            helper = DictionaryLearning(cfg.dict_starts, cfg.dict_iters, cfg.dict_step, cfg.dict_decay,
                                        cfg.dict_rounds, cfg.dict_deflate, cfg.dict_local_dim,
                                        cfg.dict_local_starts)
        return GuidedSampler(cfg.guide_pool, helper)
    raise ValueError(f"unknown search {cfg.search!r}")


def sample_rows(state: SearchState, K: int, r: int, adaptive: bool) -> Tensor:
    """K sets of ``r`` distinct live rows (Gumbel top-k): uniform, or weighted towards rows that
    are inactive for many found samples (with real pictures a neuron tends to be off for all or
    for none, so those rows are likelier to be off for the missing samples too)."""
    m = state.L.shape[0]
    logits = torch.zeros(m, dtype=state.L.dtype, device=state.L.device)
    if adaptive and len(state.cands):
        votes = torch.stack(state.cands.zero_sets).to(state.L.device, state.L.dtype).mean(0)
        logits = 4.0 * votes
    u = torch.rand(K, m, generator=state.generator, dtype=state.L.dtype, device=state.L.device)
    return (logits - torch.log(-torch.log(u))).topk(r, dim=1).indices
