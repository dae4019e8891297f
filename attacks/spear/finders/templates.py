"""Template completion: the missing samples of a large batch, located from the input side by the
ReLU patterns of the samples already found.

At large batch sizes (b ≈ √m, the dictionary-learning wall of docs/large-batch.md) the last samples the
searches miss are look-alikes: measured at b = 64, width 1000 (CIFAR-10-size pictures, l1 finder,
300 s), every missing sample had a *found* sample sharing 65–94 % of its inactive neurons, and the
random-start searches kept converging to the found one. The exact-scale completion
(:mod:`.completion`) resolves one or two missing samples but not the four to eight seen there.

The input side (same algebra as :mod:`.completion`): with the found directions ``F`` (B−k of
them), every missing sample's row ``pᵢ`` of ``Q⁻¹`` lies in the k-dimensional orthogonal
complement ``P`` of ``F`` and satisfies ``pᵢ·s = 1`` with ``s = L⁺ dL/db = Q 1``: a
(k−1)-dimensional affine set ``p(t) = P (c₀ + N t)``, along which the pre-activations
``z(t) = (W Rᵀ) p(t) + b`` are affine in ``t``. For each found sample ``a`` (its zero set as a
template: ``y_j = −1`` where ``a`` is inactive, ``+1`` elsewhere) we fit ``t`` so that ``z(t)``
agrees with the template (logistic loss, a convex problem in k−1 dimensions, Newton's method):
the best fit lands near a missing look-alike of ``a``. Its most negative predicted
pre-activations -- half of them among the rows where ``a`` is active, which separate the missing
sample from ``a`` -- are rows inactive for that sample (measured with the true found set at
b = 64: the ``b``–``2b`` most negative rows were all truly inactive for each of five missing
samples), so the kernel of those rows of ``L`` contains its direction. That kernel also holds
every other sample inactive on all those rows (dimension 1–13 measured); inside it:

* dimension 1: the direction itself;
* dimension 2: the plane split of :func:`.l1.split_plane` (rows inactive for one of the two
  samples all project to one angle);
* dimension 3–16: SPEAR's own sampling inside the kernel (:func:`kernel_sampling`): ``d−1``
  random rows fix one direction, exact when all are inactive for one sample (≈ 2^−(d−1), cheap at
  this size). Reweighted ℓ1 inside the kernel was tried first and converged to mixtures of the
  look-alikes sharing it (cos 0.3–0.7 to the missing directions).

The found set ``F`` is the sign-check-confirmed candidates, then the others sparsest first while
they stay well conditioned (:func:`.completion.trusted_order`): a spurious mixture inside ``F``
would shut its sample out of the complement, and mixtures sort last. Calls rotate over dropping 0,
4 or 8 of the least sparse trusted directions (a larger complement tolerates a wrong one) and over row counts of 0.5, 0.75 and 1 × B. Every proposal goes through the engine's filter,
mixture screen, refit and sign check like any other: a wrong fit costs time, never exactness.

Measured with the true found set (oracle, b = 64, width 1000, five hidden look-alikes): all five
found within 14 calls (0.2–2 s each on a loaded CPU); in the search itself, docs/large-batch.md
gives the measured exact shares.

Sources: the dual-basis/input-side view is the input-side rounding of docs/large-batch.md with the input
restricted to the exact affine set; the geometry (each neuron's activation boundary a hyperplane in
input space, regions holding one record) is also the view of Diana, Xu, Nusser, Neglia, "No More
Guessing: a Verifiable Gradient Inversion Attack in Federated Learning" (arXiv 2604.15063; only
its abstract was read). Fitting the found samples' activation patterns inside the missing samples'
affine input set, and sampling inside the resulting small kernels, are our own.
"""
from __future__ import annotations

import torch
from torch import Tensor

from attacks.spear.finders import SearchState
from attacks.spear.finders.completion import complement, completion_proposals, trusted_order
from attacks.spear.finders.l1 import split_plane


def fit_templates(z0: Tensor, M: Tensor, Y: Tensor, iters: int = 20) -> Tensor:
    """Per template (rows of ``Y`` in {−1, +1}, T × m): ``t`` minimising the logistic loss of
    ``Y ⊙ (z0 + M t)`` (Newton's method, batched). Returns the fitted pre-activations (T × m)."""
    T, d = Y.shape[0], M.shape[1]
    tau = z0.abs().median().clamp_min(torch.finfo(z0.dtype).tiny)
    t = torch.zeros(T, d, dtype=z0.dtype, device=z0.device)
    ridge = 1e-9 * float((M * M).sum()) / max(d, 1) + torch.finfo(z0.dtype).tiny
    eye = torch.eye(d, dtype=z0.dtype, device=z0.device)
    for _ in range(iters):
        z = z0[None] + t @ M.T
        sg = torch.sigmoid(-Y * z / tau)
        g = -(Y * sg / tau) @ M
        H = torch.einsum("tm,mi,mj->tij", sg * (1 - sg) / tau ** 2, M, M) + ridge * eye
        t = t - torch.linalg.solve(H, g[:, :, None])[:, :, 0]
    return z0[None] + t @ M.T


def kernel_sampling(Lt: Tensor, Nk: Tensor, samples: int, zero_tol: float, gen: torch.Generator) -> Tensor:
    """SPEAR's own sampling inside small kernels ``Nk`` (p × B × d): ``d−1`` random rows among those
    not vanishing on the whole kernel fix one direction, exact when they are all inactive for one
    sample (probability about 2^−(d−1), cheap for d ≤ 16). Returns the sparsest ``samples // 16``
    proposals per kernel (the engine's filter, refit and check decide)."""
    p, B, d = Nk.shape
    Mk = Lt @ Nk  # p × m × d
    Mk_norm = Mk.norm(dim=2)
    usable = Mk_norm > 1e3 * zero_tol
    u = torch.rand(p, samples, Mk.shape[1], generator=gen, dtype=Lt.dtype, device=Lt.device)
    u = torch.where(usable[:, None], u, torch.full_like(u, 2.0))
    rows = u.topk(d - 1, dim=2, largest=False).indices  # p × S × (d−1)
    sub = Mk[torch.arange(p, device=Lt.device)[:, None, None], rows]  # p × S × (d−1) × d
    v = torch.linalg.svd(sub, full_matrices=True)[2][:, :, d - 1]  # p × S × d
    zeros = ((Mk @ v.transpose(1, 2)).abs() <= zero_tol * Mk_norm[:, :, None]).sum(1)  # p × S
    zeros = torch.where(torch.isfinite(v).all(2), zeros, torch.zeros_like(zeros))
    keep = zeros.topk(max(1, samples // 16), dim=1).indices  # p × K
    v = v.gather(1, keep[:, :, None].expand(-1, -1, d))
    q = (Nk[:, None] @ v[:, :, :, None])[:, :, :, 0].reshape(-1, B)
    return q / q.norm(dim=1, keepdim=True).clamp_min(torch.finfo(Lt.dtype).tiny)


class TemplateCompletion:
    """Proposals for the missing samples from the found samples' ReLU patterns (module doc)."""

    def __init__(self, slack: tuple[int, ...] = (0, 4, 8), rows: tuple[float, ...] = (0.5, 0.75, 1.0),
                 samples: int = 256, max_dim: int = 16):
        self.slack, self.rows, self.samples, self.max_dim = slack, rows, samples, max_dim
        self.calls = 0

    def propose(self, state: SearchState, Lt: Tensor, trusted: list[int] | None = None) -> Tensor:
        """``trusted``: this step's :func:`.completion.trusted_order` (computed here if not given)."""
        B, dev, dt = state.B, state.L.device, state.L.dtype
        empty = torch.empty(0, B, dtype=dt, device=dev)
        n = len(state.cands)
        if state.WR is None or state.bias is None or state.db is None or n < B // 2 or B < 4:
            return empty
        slack = self.slack[self.calls % len(self.slack)]
        r_mult = self.rows[(self.calls // len(self.slack)) % len(self.rows)]
        self.calls += 1
        if trusted is None:
            trusted = trusted_order(state, B - 1)
        trusted = trusted[: len(trusted) - slack]
        if len(trusted) < B // 2:
            return empty
        P = complement(state.cands.dirs[trusted].to(dev, dt), B)  # B × k
        s = state.ones_image
        a = P.T @ s
        if P.shape[1] < 2 or float(a.norm()) <= 1e-12 * float(s.norm()):
            return empty
        c0 = a / a.dot(a)
        N = torch.linalg.svd(a[None], full_matrices=True)[2][1:].T  # k × (k−1): directions with a·c = 0
        Zp = state.WR @ P
        zs = state.cands.zero_matrix(dev)  # n × m templates
        Y = torch.where(zs, -1.0, 1.0).to(dt)
        z = fit_templates(Zp @ c0 + state.bias, Zp @ N, Y)
        r = min(int(round(r_mult * B)), state.L.shape[0] - 1)
        # the most negative predicted pre-activations, half of them among the rows where the
        # template is active (they separate the missing sample from its found look-alike)
        z_act = torch.where(zs, torch.full_like(z, torch.inf), z)
        rows = torch.cat([z.argsort(dim=1)[:, :r], z_act.argsort(dim=1)[:, : r // 2]], dim=1)
        _, sv, Vk = torch.linalg.svd(Lt[rows], full_matrices=True)  # T × r × B
        dim = B - (sv > 10 * state.zero_tol * sv[:, :1]).sum(1)  # kernel dimension per template
        out = [Vk[dim == 1, B - 1]]
        two = (dim == 2).nonzero().squeeze(1)
        if len(two):
            qs, size = split_plane(Lt, Vk[two, B - 2:].transpose(1, 2), state.zero_tol)
            out.append(qs.reshape(-1, B)[(size >= 2).flatten()])
        for d in sorted(set(dim[(dim >= 3) & (dim <= self.max_dim)].tolist())):
            idx = (dim == d).nonzero().squeeze(1)
            out.append(kernel_sampling(Lt, Vk[idx, B - d:].transpose(1, 2), self.samples,
                                       state.zero_tol, state.generator))
        return torch.cat([empty, *out])


class InputSide:
    """The l1 and dictionary finders' shared last step, from the input side: the exact-scale
    completion of the last one or two samples (:mod:`.completion`, certified) and, with
    ``templates``, the template completion above, both on one :func:`.completion.trusted_order`
    per step. Returns ``(proposals, certified)``."""

    def __init__(self, templates: bool = True):
        self.templates = TemplateCompletion() if templates else None

    def propose(self, state: SearchState, Lt: Tensor) -> tuple[Tensor, Tensor]:
        B = state.B
        trusted = trusted_order(state, B - 1) if len(state.cands) >= B // 2 else None
        tpl = (self.templates.propose(state, Lt, trusted) if self.templates is not None
               else torch.empty(0, B, dtype=state.L.dtype, device=state.L.device))
        return tpl, completion_proposals(state, trusted=trusted)
