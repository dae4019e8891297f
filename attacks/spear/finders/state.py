"""What a finder may look at (:class:`SearchState`) and the random row draws the finders share."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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
    db: Tensor | None = None  # m_live: the bias gradient dL/db (the completion finder's scale)
    confirmed: list[int] | None = None  # candidates the last selection's sign check accepted

    @cached_property
    def ones_image(self) -> Tensor | None:
        """``s = L⁺ dL/db``: with the true scaled ``Q``, ``dL/db = L Q 1``, so ``s = Q·1`` and every
        row of ``Q⁻¹`` has ``p·s = 1`` (the input-side completions' scale; once per search)."""
        if self.db is None:
            return None
        return torch.linalg.lstsq(self.L, self.db[:, None]).solution[:, 0]


def draw_rows(state: SearchState, K: int, r: int, *, allowed: Tensor | None = None,
              logits: Tensor | None = None) -> Tensor:
    """K sets of ``r`` distinct live rows by Gumbel top-k (one draw of K × m uniforms), weighted by
    ``logits`` (m) and restricted to the rows ``allowed`` (K × m mask; rows outside never win)."""
    L = state.L
    u = torch.rand(K, L.shape[0], generator=state.generator, dtype=L.dtype, device=L.device)
    keys = -torch.log(-torch.log(u))
    if logits is not None:
        keys = keys + logits
    if allowed is not None:
        keys = torch.where(allowed, keys, torch.full_like(keys, -torch.inf))
    return keys.topk(r, dim=1).indices


def sample_rows(state: SearchState, K: int, r: int, adaptive: bool) -> Tensor:
    """K sets of ``r`` distinct live rows: uniform, or weighted towards rows that are inactive for
    many found samples (with real pictures a neuron tends to be off for all or for none, so those
    rows are likelier to be off for the missing samples too)."""
    logits = None
    if adaptive and len(state.cands):
        logits = 4.0 * state.cands.zero_matrix(state.L.device).to(state.L.dtype).mean(0)
    return draw_rows(state, K, r, logits=logits)


def rows_from_found(state: SearchState, K: int, r: int) -> tuple[Tensor, Tensor] | None:
    """For the neighbour searches: K found directions drawn at random among those with at least
    ``r`` zero rows, and ``r`` rows drawn from each one's zero set. Returns (picked candidate
    indices (K), rows (K × r)), or None when no found direction has enough zero rows."""
    zs = state.cands.zero_matrix(state.L.device)  # n_found × m_live
    usable = (zs.sum(1) >= r).nonzero().squeeze(1)
    if not len(usable):
        return None
    pick = usable[torch.randint(len(usable), (K,), generator=state.generator, device=state.L.device)]
    return pick, draw_rows(state, K, r, allowed=zs[pick])
