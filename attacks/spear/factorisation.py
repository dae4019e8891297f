"""Low-rank factorisation of the attacked layer's weight gradient, ``dL/dW = U Σ Vᵀ``.

SPEAR needs the rank (the batch size; the gap in the singular values is the evidence) and the
leading ``B`` factors ``L = U_B √Σ_B``, ``R = √Σ_B V_Bᵀ``. Three exact paths:

* ``svd``: ``torch.linalg.svd`` of the whole matrix (the tall orientation, which LAPACK handles
  by a QR first: on a 200 × 150 528 gradient ``svd(dWᵀ)`` takes 5.9 s, ``svd(dW)`` 30 s).
* ``randomized``: a randomised range finder (Halko, Martinsson, Tropp, "Finding structure with
  randomness", SIAM Review 2011, Alg. 4.1 with adaptive sketch size): a sketch ``Y`` of ``k``
  columns, doubled until ``Y`` shows a rank gap with ``oversample`` columns to spare; ``P`` =
  orthonormal basis of ``Y``'s leading columns; in one pass over ``dW`` the projection ``Pᵀ dW``
  and the explicit residual ``‖dW − P Pᵀ dW‖ / ‖dW‖``; then the exact SVD of the small ``Pᵀ dW``.
  Its singular values are those of ``dW`` for the captured range, and the residual certifies that
  nothing outside it was lost; a residual above ``residual_tol`` falls back to ``svd``. Cost: one
  pass of ``2·m·n·k`` flops and an ``n × k`` SVD; memory ``O((m + n)·k)`` beyond ``dW``.
* ``auto``: ``svd`` for small layers (≤ 4·10⁶ entries), ``randomized`` otherwise.

Departures from Halko et al.: the sketch multiplies a random subset of 4k columns by a Gaussian
k-column matrix instead of all n columns by a Gaussian ``Ω`` (at ImageNet 720 the full Gaussian
sketch was one of three 4-s passes); no power iterations — the gradient is exactly low rank (plus
rounding), so the range is captured at once and the residual check proves it; Gram-matrix
(``dW dWᵀ``) eigendecompositions are never used, since they square the condition number and
lift the noise floor of the singular values to ~√eps, which hides small true singular values.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.layers import numerical_rank
from attacks.spear.precision import DTYPE

CHUNK = 1 << 14  # columns of dW per pass step (temporaries m × CHUNK stay in cache: 1.5× faster than 2^16)
SMALL = 4_000_000  # auto: entries up to which a full SVD is cheapest


@dataclass
class Factors:
    """``dW ≈ U diag(S) Vh`` with the leading singular triplets (S descending)."""

    U: Tensor  # m × k
    S: Tensor  # k
    Vh: Tensor  # k × n
    path: str  # which factorisation ran
    residual: float | None = None  # randomized path: ‖dW − P Pᵀ dW‖ / ‖dW‖

    def __iter__(self):  # ``U, S, Vh = low_rank_factors(dW)``
        return iter((self.U, self.S, self.Vh))


def _cols(dW: Tensor):
    """Column chunks of dW as float64 (a float32 gradient is cast one chunk at a time). A float64
    chunk is a *view* of dW: never modify it in place."""
    for j in range(0, dW.shape[1], CHUNK):
        yield j, dW[:, j:j + CHUNK].to(DTYPE)


def full_svd(dW: Tensor) -> Factors:
    """Thin SVD in the fast (tall) orientation."""
    dW = dW.to(DTYPE)
    m, n = dW.shape
    if m < n:
        V, S, Uh = torch.linalg.svd(dW.T, full_matrices=False)
        return Factors(Uh.T, S, V.T, "svd")
    U, S, Vh = torch.linalg.svd(dW, full_matrices=False)
    return Factors(U, S, Vh, "svd")


def randomized(dW: Tensor, *, client_dtype: torch.dtype, rank_tol: float | None = None,
               k0: int = 32, oversample: int = 8, residual_tol: float | None = None) -> Factors | None:
    """Randomised range finder with an explicit residual check; None when the check fails."""
    m, n = dW.shape
    kmax = min(m, n)
    gen = torch.Generator().manual_seed(0x5BEA)  # deterministic, apart from the attack's stream
    k = min(k0, kmax)
    while True:
        # Sketch: k random columns of dW, mixed by a Gaussian k×k matrix. For an exactly low-rank
        # gradient (every column a combination of the B columns of dL/dZ) a column subset spans the
        # range unless the samples vanish on all chosen columns; the residual below certifies it,
        # and a failure falls back to a full SVD. Column sampling costs m·k, a Gaussian Ω m·n·k.
        cols = torch.randperm(n, generator=gen)[: min(n, 4 * k)].to(dW.device)
        mix = torch.randn(len(cols), k, generator=gen, dtype=DTYPE).to(dW.device)
        Y = dW[:, cols].to(DTYPE) @ mix
        Uy, Sy, _ = torch.linalg.svd(Y, full_matrices=False)
        r = numerical_rank(Sy, client_dtype, rank_tol)
        if r + oversample <= k or k == kmax:
            break
        k = min(2 * k, kmax)
    keep = min(k, r + oversample)
    P = Uy[:, :keep]  # m × keep, orthonormal basis of dW's range (and a few noise directions)
    C = torch.empty(keep, n, dtype=DTYPE, device=dW.device)
    num = den = 0.0
    for j, blk in _cols(dW):  # one pass: the projection and the residual it leaves
        c = P.T @ blk
        C[:, j:j + blk.shape[1]] = c
        den += float(torch.linalg.vector_norm(blk)) ** 2
        # blk may be a view of dW: out-of-place, one fused temporary (4x faster than blk - P @ c)
        num += float(torch.linalg.vector_norm(torch.addmm(blk, P, c, alpha=-1))) ** 2
    residual = (num / max(den, 1e-300)) ** 0.5
    if residual_tol is None:
        eps = max(torch.finfo(client_dtype).eps, torch.finfo(DTYPE).eps) if client_dtype.is_floating_point \
            else torch.finfo(DTYPE).eps
        residual_tol = eps ** 0.5  # the rounding level the rank tolerance (eps^(2/3)) treats as noise
    if residual > residual_tol:
        return None
    V, S, Wh = torch.linalg.svd(C.T, full_matrices=False)  # C = Wh.T diag(S) V.T
    del C
    return Factors(P @ Wh.T, S, V.T, "randomized", residual)


def low_rank_factors(dW: Tensor, *, path: str = "auto", client_dtype: torch.dtype | None = None,
                     rank_tol: float | None = None) -> Factors:
    """Factor ``dW`` by the chosen path (see the module docstring)."""
    client_dtype = client_dtype or dW.dtype
    if path == "auto":
        path = "svd" if dW.numel() <= SMALL else "randomized"
    if path == "randomized":
        f = randomized(dW, client_dtype=client_dtype, rank_tol=rank_tol)
        if f is not None:
            return f
        f = full_svd(dW)
        f.path = "svd (randomized residual check failed)"
        return f
    if path == "svd":
        return full_svd(dW)
    raise ValueError(f"unknown factorisation path {path!r}: use auto, svd or randomized")
