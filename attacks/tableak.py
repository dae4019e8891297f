"""TabLeak: gradient inversion for tabular data by optimisation (the tabular baseline).

Vero, Balunović, Dimitrov, Vechev, "TabLeak: Tabular Data Leakage in Federated Learning", ICML 2023
(arXiv 2210.01785); official code eth-sri/tableak (``attacks/gradient_inversion_attack.py``,
``attacks/ensembling.py``, ``attacks/restore_labels.py``; settings of ``run_inversion_attacks.py``,
experiment 46 "TabLeak + known labels" and 946 "unknown labels"). What it does:

* Optimise a dummy batch ``Z`` (uniform in [-1, 1]) so that its gradient matches the observed one
  under the cosine loss ``1 - <g(Z), g> / (|g(Z)| |g|)`` over all parameters (one global cosine),
  with Adam at 0.06 on the *sign* of the gradient ("sign trick"), 1 500 iterations.
* Softmax relaxation: each one-hot block of the model input is ``softmax(Z_block / T)`` (T = 1);
  continuous columns are squashed into their public range by a sigmoid ("sigmoid trick").
* 30 independent restarts. The best restart is the one whose *projected* reconstruction (argmax per
  block, continuous values rounded to their grid) best matches the gradient. Pooled ensemble
  ("median+softmax"): every restart's records are matched (Hungarian, TabLeak's tolerance score:
  discrete fields that differ plus continuous ones further apart than 0.319 standard deviations)
  to the best restart's records, and the pooled record takes the per-feature median over restarts
  of the softmaxed / bounded features.
* Labels: given by the threat model, else their counts are recovered from the last layer's weight
  gradient as Geng et al. (arXiv 2110.09074) do, the way TabLeak's unknown-label variant does.

The layout of the encoding (which columns form which one-hot block, which are continuous, their
ranges) comes from ``DataSpec.feature_blocks``: the schema, never the client's data. On image data
the attack raises AttackNotApplicable. Restarts run together as one batched computation: for a
network of Linear layers and elementwise activations each restart gets its own copy of the weights
(so per-restart gradients come out of one backward pass); other networks use ``torch.func.vmap``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction, resolve_deadline
from attacks.progress import LoopMonitor

_ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.GELU, nn.Identity)


@dataclass
class TabLeakConfig:
    """Knobs; defaults are the official code's TabLeak settings (conf/attack/tableak.yaml cites them)."""

    restarts: int = 30                 # post_selection
    iterations: int = 1500             # max_iterations
    lr: float = 0.06                   # learning_rates (Adam)
    init_scale: float = 1.0            # 'uniform' initialisation: U[-1, 1]
    temperature: float = 1.0           # temperature_mode 'constant' (T = 1)
    sign_trick: bool = True
    softmax_trick: bool = True
    sigmoid_trick: bool = True
    pooling: str = "median+softmax"    # or "best" (the best restart alone, no pooling)
    match_tolerance: float = 0.319     # tol of the tolerance map, in standard deviations
    label_dummies: int = 1000          # dummy inputs for the label-count estimate (restore_labels)
    dtype: str = "float32"
    num_threads: int | None = 1        # torch intra-op threads while attacking (None: leave as is)
    progress: bool = True


def _require_tabular(spec: DataSpec) -> None:
    if spec.kind != "tabular" or not spec.feature_blocks:
        raise AttackNotApplicable(
            f"tableak inverts tabular data: it needs DataSpec(kind='tabular') with feature_blocks (which "
            f"columns are one-hot blocks, which continuous); got kind={spec.kind!r} with "
            f"{len(spec.feature_blocks)} feature blocks. Use dataset=adult, or an image attack (spear, geiping)")


class _Layout:
    """Per-column tensors derived from the DataSpec (model-input space <-> encoded records)."""

    def __init__(self, spec: DataSpec, dtype: torch.dtype, device: torch.device):
        self.spec = spec
        self.mean = torch.tensor(spec.mean, dtype=dtype, device=device)
        self.std = torch.tensor(spec.std, dtype=dtype, device=device)
        self.blocks = spec.feature_blocks
        lo, hi = spec.box(torch.zeros(1, spec.numel, dtype=torch.float64))
        self.lo, self.hi = lo[0].to(device, dtype), hi[0].to(device, dtype)

    def relax(self, Z: Tensor, cfg: TabLeakConfig) -> Tensor:
        """Dummy parameters (..., n) -> model inputs: softmax per one-hot block, sigmoid-bounded continuous."""
        parts = []
        for b in self.blocks:
            z = Z[..., b.columns]
            if b.kind == "categorical":
                if cfg.softmax_trick:  # a distribution over the block's categories, then normalised
                    v = torch.softmax(z / cfg.temperature, dim=-1)
                    parts.append((v - self.mean[b.columns]) / self.std[b.columns])
                else:
                    parts.append(z)
            else:
                lo, hi = self.lo[b.columns], self.hi[b.columns]
                if cfg.sigmoid_trick and bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
                    parts.append(lo + (hi - lo) * torch.sigmoid(z))
                else:
                    parts.append(z)
        return torch.cat(parts, dim=-1)

    def project(self, X: Tensor) -> Tensor:
        """Model inputs -> the nearest valid encoded records (argmax per block, continuous on the grid)."""
        raw = X * self.std + self.mean
        out = torch.zeros_like(raw)
        for b in self.blocks:
            if b.kind == "categorical":
                idx = raw[..., b.columns].argmax(-1, keepdim=True)
                out[..., b.columns] = torch.zeros_like(raw[..., b.columns]).scatter_(-1, idx, 1.0)
            else:
                v = raw[..., b.columns]
                if b.step:
                    v = torch.round(v / b.step) * b.step
                out[..., b.columns] = v.clamp(-math.inf if b.low is None else b.low,
                                              math.inf if b.high is None else b.high)
        return (out - self.mean) / self.std

    def fields(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Model inputs (..., n) -> (category index per discrete field, standardised continuous values)."""
        raw = X * self.std + self.mean
        disc = [raw[..., b.columns].argmax(-1) for b in self.blocks if b.kind == "categorical"]
        cont = [X[..., b.start] for b in self.blocks if b.kind == "continuous"]
        z = X.new_zeros(X.shape[:-1] + (0,))
        return (torch.stack(disc, -1) if disc else z.long()), (torch.stack(cont, -1) if cont else z)


class _BatchedGradients:
    """Per-restart parameter gradients of the client's loss for R dummy batches at once."""

    def __init__(self, model: nn.Module, gradients, loss_fn, R: int, dtype: torch.dtype, device: torch.device):
        self.loss_fn, self.R = loss_fn, R
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        missing = [n for n in self.names if n not in gradients]
        if missing:
            raise AttackNotApplicable(f"the observation lacks gradients of {missing[:3]}: tableak matches "
                                      f"the gradient of every parameter")
        self.target = [gradients[n].detach().to(device, dtype) for n in self.names]
        self.target_norm = torch.sqrt(sum((t * t).sum() for t in self.target))
        self.layers = self._sequential_layers(model)
        if self.layers is not None:
            self.leaves = []  # per-restart copies of every parameter, in self.names order
            by_name = dict(model.named_parameters())
            for n in self.names:
                p = by_name[n].detach()
                self.leaves.append(p.unsqueeze(0).expand(R, *p.shape).clone().requires_grad_(True))
            self.index = {n: i for i, n in enumerate(self.names)}

    @staticmethod
    def _sequential_layers(model: nn.Module):
        if not isinstance(model, nn.Sequential):
            return None
        layers = []
        for name, mod in model.named_children():
            if isinstance(mod, (nn.Linear, nn.Flatten)) or isinstance(mod, _ELEMENTWISE):
                layers.append((name, mod))
            else:
                return None
        return layers

    def _forward_batched(self, X: Tensor) -> Tensor:
        h = X.reshape(X.shape[0], X.shape[1], -1)
        for name, mod in self.layers:
            if isinstance(mod, nn.Flatten):
                h = h.reshape(h.shape[0], h.shape[1], -1)
            elif isinstance(mod, nn.Linear):
                W = self.leaves[self.index[f"{name}.weight"]]
                h = torch.bmm(h, W.transpose(1, 2))
                if mod.bias is not None:
                    h = h + self.leaves[self.index[f"{name}.bias"]].unsqueeze(1)
            else:
                h = mod(h)
        return h

    def per_restart(self, X: Tensor, y: Tensor, create_graph: bool) -> list[Tensor]:
        """List (per parameter) of (R, *param.shape) gradients for dummy batches X (R, B, ...)."""
        R, B = X.shape[0], X.shape[1]
        if self.layers is not None:
            out = self._forward_batched(X)
            # The client's loss averages over its batch, so R * loss(all R*B samples) = sum_r loss_r;
            # each restart owns its copy of the weights, so the gradient splits per restart.
            total = R * self.loss_fn(out.reshape(R * B, -1), y.repeat(R))
            return list(torch.autograd.grad(total, self.leaves, create_graph=create_graph))
        from torch.func import functional_call, grad, vmap

        params = {n: p.detach() for n, p in self.model.named_parameters()}

        def loss(p, x):
            return self.loss_fn(functional_call(self.model, p, (x,)), y)

        g = vmap(grad(loss), in_dims=(None, 0))(params, X)
        return [g[n] for n in self.names]

    def cosine_loss(self, X: Tensor, y: Tensor, create_graph: bool = True) -> Tensor:
        """(R,) TabLeak's cosine gradient-matching loss of each restart."""
        g = self.per_restart(X, y, create_graph)
        dot = sum((gi * ti.unsqueeze(0)).flatten(1).sum(1) for gi, ti in zip(g, self.target))
        norm = torch.sqrt(sum((gi * gi).flatten(1).sum(1) for gi in g))
        return 1 - dot / (norm * self.target_norm).clamp_min(1e-30)


def random_records(spec: DataSpec, n: int, generator: torch.Generator) -> Tensor:
    """Random valid records of the schema in model-input space: a uniformly drawn category per
    one-hot block, standard-normal standardised continuous values clipped to their range."""
    mean = torch.tensor(spec.mean, dtype=torch.float64)
    std = torch.tensor(spec.std, dtype=torch.float64)
    X = torch.randn(n, spec.numel, generator=generator, dtype=torch.float64)
    lo, hi = spec.box(X)
    for b in spec.feature_blocks:
        if b.kind == "categorical":
            pick = torch.randint(0, b.stop - b.start, (n,), generator=generator)
            onehot = torch.nn.functional.one_hot(pick, b.stop - b.start).double()
            X[:, b.columns] = (onehot - mean[b.columns]) / std[b.columns]
    return torch.maximum(torch.minimum(X, hi), lo)


def restore_label_counts(model: nn.Module, gradients, batch_size: int, spec: DataSpec, *,
                         generator: torch.Generator, n_dummies: int = 1000) -> np.ndarray:
    """Label counts from the last layer's weight gradient (Geng et al. 2021, as TabLeak's code does).

    ``count_c = K p̄_c - K (sum_j dW_cj) / Ō`` with ``p̄`` the mean softmax output and ``Ō`` the mean
    summed input activation of the last linear layer over dummy inputs; rounded by handing out the
    K labels one at a time to the largest remaining count. TabLeak's code draws the dummies from
    N(0, 1) in every column, which matches its encoding (it standardises the one-hot columns too);
    ours keeps one-hot columns in {0, 1}, so the dummies are random valid records of the schema
    (:func:`random_records`) -- with N(0, 1) dummies Ō came out 2-3x too large here.
    """
    last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise AttackNotApplicable("label recovery needs a final nn.Linear layer; reveal the labels instead "
                                  "(threat.labels_known=true)")
    name, lin = last[-1]
    key = f"{name}.weight" if name else "weight"
    if key not in gradients:
        raise AttackNotApplicable(f"no gradient for {key}: cannot recover the labels")
    p0 = next(model.parameters())
    feats = {}
    hook = lin.register_forward_hook(lambda mod, inp, out: feats.__setitem__("o", inp[0].detach()))
    try:
        with torch.no_grad():
            dummy = random_records(spec, n_dummies, generator).to(p0)
            probs = torch.softmax(model(dummy), dim=-1).mean(0).double().cpu()
    finally:
        hook.remove()
    O = feats["o"].double().sum(1).mean().cpu()
    dW = gradients[key].detach().double().cpu().sum(1)
    K = int(batch_size)
    counts = (K * probs - K * dW / O).numpy()
    out = np.zeros(len(counts), dtype=np.int64)
    c = counts.copy()
    while out.sum() < K:
        i = int(np.argmax(c))
        out[i] += 1
        c[i] -= 1
    return out


def _match_cost(disc_a, cont_a, disc_b, cont_b, tol: float) -> np.ndarray:
    """TabLeak's tolerance score between records: mismatched discrete + out-of-tolerance continuous."""
    d = (disc_a[:, None, :] != disc_b[None, :, :]).sum(-1)
    c = ((cont_a[:, None, :] - cont_b[None, :, :]).abs() > tol).sum(-1)
    return (d + c).double().numpy() / max(1, disc_a.shape[-1] + cont_a.shape[-1])


class TabLeakAttack:
    """TabLeak behind the attack interface (tabular data only)."""

    name: ClassVar[str] = "tableak"
    # The dummy batch needs the batch size; labels are used when revealed, else their counts are recovered.
    requires: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    def __init__(self, **config):
        self.config = TabLeakConfig(**config)
        if self.config.pooling not in ("median+softmax", "best"):
            raise ValueError(f"pooling must be 'median+softmax' or 'best', got {self.config.pooling!r}")

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        _require_tabular(data_spec)

    def reconstruct(self, obs: Observation, *, generator: torch.Generator,
                    deadline: float | None = None, time_budget_s: float | None = None) -> Reconstruction:
        deadline = resolve_deadline(deadline, time_budget_s)
        threads = torch.get_num_threads()
        if self.config.num_threads:
            torch.set_num_threads(int(self.config.num_threads))
        try:
            return self._reconstruct(obs, generator, deadline)
        finally:
            torch.set_num_threads(threads)

    def _reconstruct(self, obs: Observation, generator: torch.Generator, deadline: float | None) -> Reconstruction:
        cfg = self.config
        spec = obs.data_spec
        _require_tabular(spec)
        if obs.batch_size is None:
            raise AttackNotApplicable("tableak optimises a dummy batch of known size: the threat model must "
                                      "reveal the batch size (threat.batch_size_known=true)")
        B, R, n = int(obs.batch_size), int(cfg.restarts), spec.numel
        dtype = getattr(torch, cfg.dtype)
        device = next(iter(obs.gradients.values())).device  # run where the client's gradient lives
        t0 = time.perf_counter()
        for g in obs.gradients.values():
            if not torch.isfinite(g).all():
                raise AttackNotApplicable("the observed gradient has non-finite entries (NaN/Inf)")
        model = _frozen_copy(obs.model, device, dtype)
        diag: dict = {"restarts": R, "dtype": cfg.dtype}
        if obs.labels is not None:
            y = obs.labels.detach().to(device, torch.long)
            diag["labels"] = "given"
        else:
            counts = restore_label_counts(model, obs.gradients, B, spec, generator=generator,
                                          n_dummies=cfg.label_dummies)
            y = torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(counts)).to(device)
            diag["labels"] = "recovered"
            diag["label_counts"] = ",".join(str(int(c)) for c in counts)
        layout = _Layout(spec, dtype, device)
        grads = _BatchedGradients(model, obs.gradients, obs.loss_fn, R, dtype, device)

        Z = ((torch.rand(R, B, n, generator=generator, dtype=torch.float64) * 2 - 1) * cfg.init_scale).to(device, dtype)
        Z.requires_grad_(True)
        opt = torch.optim.Adam([Z], lr=cfg.lr)
        monitor = LoopMonitor(cfg.iterations, f"TabLeak b={B} x{R}", enabled=cfg.progress, deadline=deadline)
        it = 0
        loss = torch.full((R,), math.nan)
        for it in range(1, cfg.iterations + 1):
            opt.zero_grad(set_to_none=True)
            loss = grads.cosine_loss(layout.relax(Z, cfg), y)
            (gz,) = torch.autograd.grad(loss.sum(), Z)
            Z.grad = gz.sign() if cfg.sign_trick else gz
            opt.step()
            postfix = {"loss": f"{float(loss.min()):.4f}"} if it % 50 == 0 else {}
            if monitor.tick(1, **postfix):
                break
        monitor.close()
        timed_out = monitor.timed_out

        with torch.no_grad():
            cands = layout.relax(Z.detach(), cfg)                      # (R, B, n) model space
            proj = layout.project(cands)
        proj_loss = grads.cosine_loss(proj, y, create_graph=False).detach()
        best = int(torch.argmin(torch.nan_to_num(proj_loss, nan=math.inf)))
        if cfg.pooling == "best" or R == 1:
            pooled = cands[best]
        else:
            pooled = self._pool(cands, proj, best, layout, cfg)
        pooled_loss = float(grads.cosine_loss(layout.project(pooled)[None].expand(R, B, n), y,
                                              create_graph=False)[0])
        diag.update(iterations=it, best_restart=best, best_restart_loss=float(proj_loss[best]),
                    final_relaxed_loss_min=float(loss.detach().min()), pooled_projected_loss=pooled_loss,
                    timed_out=int(timed_out), time_optimise_s=time.perf_counter() - t0)
        status = "partial" if timed_out else "ok"
        if timed_out:
            diag["reason"] = f"deadline after {it} of {cfg.iterations} iterations"
        return Reconstruction(pooled.detach().to("cpu", torch.float64), y.cpu(), status, diag)

    @staticmethod
    def _pool(cands: Tensor, proj: Tensor, best: int, layout: _Layout, cfg: TabLeakConfig) -> Tensor:
        """TabLeak's pooled ensemble: match every restart to the best one, per-feature median."""
        from scipy.optimize import linear_sum_assignment

        disc, cont = (t.cpu() for t in layout.fields(proj))
        aligned = []
        for r in range(cands.shape[0]):
            cost = _match_cost(disc[best], cont[best], disc[r], cont[r], cfg.match_tolerance)
            rows, cols = linear_sum_assignment(cost)
            order = torch.as_tensor(cols[np.argsort(rows)], device=cands.device)
            aligned.append(cands[r, order])
        return torch.stack(aligned).median(dim=0).values


def _frozen_copy(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    import copy

    m = copy.deepcopy(model).to(device, dtype)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m




__all__ = ["TabLeakAttack", "TabLeakConfig", "random_records", "restore_label_counts"]
