"""SPEAR's own finder (Dimitrov et al. 2024 §4): the kernel of a random (B−1)-row submatrix of
``L`` is a column of ``Q`` when every sampled row is inactive for one sample (probability about
2^−(B−1) per sample for independent activations)."""
from __future__ import annotations

from torch import Tensor

from attacks.spear.filtering import null_vectors
from attacks.spear.finders.state import SearchState, sample_rows


class SubmatrixSampler:
    def __init__(self, sampling: str = "uniform"):
        self.adaptive = sampling == "adaptive"

    @classmethod
    def from_config(cls, cfg) -> "SubmatrixSampler":
        return cls(cfg.sampling)

    def propose(self, state: SearchState) -> tuple[Tensor, int]:
        K = state.batch
        idx = sample_rows(state, K, state.B - 1, self.adaptive)
        q, usable = null_vectors(state.L[idx])
        return q[usable], K
