"""SPEAR's knobs (one place); the tolerances derived from the client's dtype are in ``precision``.

Defaults are documented, with their reasons, in ``conf/attack/spear.yaml``.
"""
from __future__ import annotations

from dataclasses import dataclass

from attacks.spear.finders import FINDERS
from attacks.spear.precision import DTYPE, degenerate_ratio, dtype_tolerances  # noqa: F401  (re-exported)
from attacks.base import check_budget


@dataclass
class SpearConfig:
    """Knobs of the algorithm; defaults documented in conf/attack/spear.yaml."""

    # direction finder: "sampling" (the paper: kernels of random (B-1)-row submatrices) or "l1"
    # (sparse vectors in L's column space by reweighted l1 from deflated random starts, rounded
    # to submatrix kernels; attacks/spear/finders/l1.py)
    search: str = "l1"
    # proposals evaluated together (the paper's GPU code uses 10^4); None: sized to the device
    proposals_per_step: int | None = 4096
    # give up after this many proposals (None: only the deadline stops the search)
    max_proposals: int | None = 20_000_000
    # sparsity filter: a proposal q is kept when ||L q||_0 over live rows >= max(tau*m_live, B-1+min_extra_zeros)
    tau: float = 0.05
    min_extra_zeros: int = 3
    # |(L q)_k| <= zero_tol * ||L_k|| * ||q|| counts as an exact zero; None: from the client's dtype
    zero_tol: float | None = None
    # singular values below rank_tol * s_max are noise when estimating the batch size; None: from dtype
    rank_tol: float | None = None
    # two unit directions with |cos| above this -- or within 10 zero_tol radians, whichever is
    # looser (noisy updates, float32) -- are the same direction (up to sign)
    dedup_cos: float = 1.0 - 1e-9
    # greedy selection keeps the chosen set's smallest singular value above this
    min_singular: float = 1e-4
    # a-posteriori check: relative gradient residual allowed; None: from dtype
    residual_tol: float | None = None
    # reject a proposal whose zero rows include one of leverage above this (a mixture of
    # directions, see filtering.refine); None: 1 - max(1e-6, zero_tol)
    fragile_leverage: float | None = None
    reject_mixtures: bool = True
    # row sampling: "uniform" (the paper) or "adaptive" (prefer rows inactive for found samples)
    sampling: str = "uniform"
    # l1 finder: starts per step, IRLS iterations, rows sampled first (0: the whole column space),
    # share of starts deflated against the directions already found
    l1_starts: int = 256
    l1_iters: int = 25
    l1_rows: int = 0
    l1_deflate: float = 0.75
    # 2-D kernels drawn from found directions' zero sets per step (finds look-alike samples)
    l1_neighbours: int = 1024
    # dictionary finder (SPEAR++-style l1 on the sphere; finders/dictionary.py): random starts per
    # step, Riemannian subgradient iterations, initial angle step and its geometric decay, the
    # null-space rounding's row counts (multiples of B) and whether starts avoid found directions
    dict_starts: int = 256
    dict_iters: int = 120
    dict_step: float = 0.2
    dict_decay: float = 0.95
    dict_rounds: tuple[float, ...] = (1.5, 2.5, 3.5)
    dict_deflate: bool = True
    # neighbour search (rows from a found sample's zero set, l1 inside the small null space):
    # null-space dimension (None: sqrt(m_live)) and starts per null space (0: global search only)
    dict_local_dim: int | None = None
    dict_local_starts: int = 4
    # template completion (l1 and dictionary finders; finders/templates.py): the missing samples
    # located inside their exact affine input set by fitting the found samples' ReLU patterns
    templates: bool = True
    # guided finder (SPEAR + Geiping, finders/guided.py; the prior itself is the attack's ``guide``):
    # rows drawn per proposal from one sample's predicted-inactive set (its most negative predicted
    # pre-activations; guide_pool is the share of that set)
    guide_pool: float = 0.6
    # every other guided call runs the dictionary finder (dict_* knobs) once something is found:
    # for true samples the prior does not cover (finders/guided.py)
    guide_dictionary: bool = True
    # second greedy stage (``repair``): swap directions while that lowers the sign-check violations;
    # False gives the single-stage selection of the paper's ablation
    second_stage: bool = True
    # factorisation of dL/dW: "auto" (cheapest exact path for the shape), "svd" (full thin SVD) or
    # "randomized" (range finder + explicit residual check); see factorisation.py
    factorization: str = "auto"
    # noisy updates (DP-SGD, quantisation): rank, zero test, live rows and residual tolerance from
    # the update's noise floor (known std from the threat model, else estimated; attacks/spear/noise.py)
    noise_aware: bool = False
    noise_kappa: float = 1.0
    # stop early (status partial, diagnostics `stalled`) when the best choice so far has only soft
    # sign-check doubts (live neurons whose gradient is below the zero tolerance; check.py) and
    # has not improved for this many seconds; None: search until the deadline or the cap
    stall_s: float | None = None
    # device for the search ("auto": the gradient's device); results always come back on the CPU
    device: str = "auto"
    # torch threads while SPEAR runs (None: leave torch's setting)
    threads: int | None = None
    progress: bool = True
    # seconds a reconstruct call without a deadline may run (None: no default deadline)
    time_budget_s: float | None = 3600.0

    def __post_init__(self) -> None:
        self.time_budget_s = check_budget(self.time_budget_s, "attack.time_budget_s")
        for key in ("threads", "max_proposals", "proposals_per_step"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"attack.{key}={v!r}: must be an integer >= 1, or null "
                                 f"({'no cap besides the deadline' if key == 'max_proposals' else 'the default'})")
        if self.search not in FINDERS:  # the one check of the finder's name (finders/__init__.py)
            raise ValueError(f"attack.search={self.search!r}: use one of "
                             f"{', '.join(repr(k) for k in FINDERS)}")
        self.dict_rounds = tuple(float(r) for r in self.dict_rounds)
        if self.dict_starts < 1 or self.dict_iters < 0:
            raise ValueError("attack.dict_starts must be >= 1 and attack.dict_iters >= 0")
        if not 0.0 < self.guide_pool <= 1.0:
            raise ValueError(f"attack.guide_pool={self.guide_pool}: must be in (0, 1]")
        if self.sampling not in ("uniform", "adaptive"):
            raise ValueError(f"attack.sampling={self.sampling!r}: use 'uniform' or 'adaptive'")
        if self.stall_s is not None and not self.stall_s > 0:
            raise ValueError(f"attack.stall_s={self.stall_s}: must be > 0 seconds, or null (no stall rule)")
        if self.factorization not in ("auto", "svd", "randomized"):
            raise ValueError(f"attack.factorization={self.factorization!r}: use auto, svd or randomized")
        if self.l1_starts < 1 or self.l1_iters < 1 or self.l1_rows < 0 or self.l1_neighbours < 0 or not 0 <= self.l1_deflate <= 1:
            raise ValueError("attack.l1_starts and l1_iters must be >= 1, l1_rows and l1_neighbours >= 0, l1_deflate in [0, 1]")
