"""Subspace search: sample fewer rows than SPEAR, then find the sparse direction inside the
remaining small null space (work in progress)."""
from __future__ import annotations

from torch import Tensor

from attacks.spear.finders import SearchState


class SubspaceSearch:
    def __init__(self, dim: int, starts: int, iters: int, sampling: str = "uniform"):
        self.dim, self.starts, self.iters = dim, starts, iters
        self.adaptive = sampling == "adaptive"

    def propose(self, state: SearchState) -> tuple[Tensor, int]:
        raise NotImplementedError
