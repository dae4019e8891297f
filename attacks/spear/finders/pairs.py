"""Splitting the plane of every pair of candidates: the samples hidden in mixtures.

At large batches (b ≥ 50) the ℓ1 searches converge not only to sample directions but also to
*mixtures* ``q = α q_u + β q_a`` of two samples whose inactive neurons overlap (look-alike
pictures): ``L q`` is zero on ``Z_u ∩ Z_a`` (a few hundred of m rows), enough to pass SPEAR's
sparsity filter, and such a candidate blocks the selection. The plane spanned by a mixture and
any other candidate that involves ``q_u`` or ``q_a`` (the mixture's partner, a found sample, or
another mixture) is span(``q_u``, ``q_a``). Inside that plane, every row of ``L̃`` that is inactive
for ``u`` alone is orthogonal to ``q_u`` and so projects to one common angle, and the rows inactive
for ``a`` alone to another: :func:`~attacks.spear.finders.planes.split_plane` reads both directions
off the two most frequent angles, exactly.

A mixture's zero set lies inside its partner's, so each candidate whose zero set is contained in
another's is paired with it and their plane is split (``O(m)`` per pair: one m × 2 projection and
a sort). Measured at b = 64, width 1000 (CIFAR-10-size pictures, l1 finder, batch 0, 300 s, a
loaded machine): 59 of 64 directions and 10 mixtures (338–425 zeros) without it, and the same
59 of 64 with it — no measurable gain there: those mixtures were of three or more samples or of
two *missing* samples (no container among the candidates). It is kept for the case it provably
handles (unit test) and costs one n × n zero-set product per step.

This is our own construction (the plane-splitting step is the same as the l1 finder's 2-D kernel
split); it is not taken from SPEAR or SPEAR++.
"""
from __future__ import annotations

import torch
from torch import Tensor

from attacks.spear.finders.state import SearchState
from attacks.spear.finders.planes import split_plane


class PairSplitter:
    """Splits the plane of each (suspected mixture, container) pair once.

    A mixture of samples ``u`` and ``a`` is zero exactly on ``Z_u ∩ Z_a``, a subset of ``Z_a``;
    so a candidate whose zero set lies inside another candidate's (all but ``slack`` rows) is
    paired with it, and their plane is span(``q_u``, ``q_a``). Pairing every candidate with every
    other instead was measured to flood the candidates (b = 64: 670 spurious directions with
    160–228 zeros from planes of unrelated mixtures, 52 instead of 59 samples found in 300 s).
    """

    def __init__(self, max_pairs: int = 4096, slack: int = 0):
        self.max_pairs, self.slack = max_pairs, slack
        self._done: set[tuple[int, int]] = set()

    def propose(self, state: SearchState, Lt: Tensor) -> Tensor:
        B, dev, dt = state.B, state.L.device, state.L.dtype
        empty = torch.empty(0, B, dtype=dt, device=dev)
        n = len(state.cands)
        if n < 2:
            return empty
        Z = state.cands.zero_matrix(dev).to(dt)  # n × m_live
        size = Z.sum(1)
        outside = size[:, None] - Z @ Z.T  # [c, a]: zeros of c that are not zeros of a
        inside = (outside <= self.slack) & (size[:, None] < size[None, :])
        pairs = [p for p in map(tuple, inside.nonzero().tolist()) if p not in self._done]
        pairs = pairs[: self.max_pairs]
        if not pairs:
            return empty
        self._done.update(pairs)
        idx = torch.tensor(pairs, device=dev)
        D = state.cands.dirs.to(dev, dt)
        N2, Rr = torch.linalg.qr(torch.stack([D[idx[:, 0]], D[idx[:, 1]]], dim=2))  # p × B × 2
        ok = Rr[:, 1, 1].abs() > 1e-6  # parallel pairs have no plane
        if not bool(ok.any()):
            return empty
        qs, size2 = split_plane(Lt, N2[ok], state.zero_tol)
        return qs.reshape(-1, B)[(size2 >= 2).flatten()]
