"""Geiping et al., "Inverting Gradients -- How easy is it to break privacy in federated learning?",
NeurIPS 2020 (arXiv 2003.14053; code JonasGeiping/invertinggradients, ``inversefed``).

The optimisation baseline: find inputs whose gradient points the same way as the observed one,

    min_x  1 − <∇θ L(x, y), g> / (‖∇θ L(x, y)‖ ‖g‖)  +  α_TV · TV(x),

with the cosine taken over the concatenation of all (or a chosen subset of) parameter gradients,
anisotropic total variation on the normalised image, Adam on the *signed* gradient of that
objective, step size 0.1 dropped ×0.1 at 3/8, 5/8 and 7/8 of the iterations, every step clamped to
the valid pixel box, a standard-normal start, and several restarts of which the one with the lowest
matching loss (the objective without TV; never ground truth) is kept.

Labels: given by the threat model, or counted from the last layer (attacks/labels.py). Batch size:
``obs.batch_size``, else the shape of ``init``, else the rank of a linear layer's weight gradient
(attacks/labels.py: the cheapest of the widest layers, the FCNN's second).

Cost. For an ``nn.Linear`` layer with inputs ``a`` (B×n) and output gradients ``δ`` (B×m) the
weight gradient is ``δᵀa``; its inner product with the observed ``G`` is ``Σ δ ⊙ (a Gᵀ)`` and its
squared norm ``Σ (δδᵀ) ⊙ (aaᵀ)``. ``fast_linear`` evaluates the same objective through these
identities, so the m×n weight gradient (311 M entries for ImageNet 720 at width 200) is never formed
inside the double-backward; every other parameter goes through autograd as usual. The two paths
agree to rounding (tests/attacks/test_geiping.py).
"""
from __future__ import annotations

import math
import re
from collections import Counter
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction, resolve_deadline
from attacks.labels import assign_labels, batch_size_from_rank, recover_labels
from attacks.priors import total_variation

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class GeipingConfig:
    """Knobs of the reconstruction; published values and sources in conf/attack/geiping.yaml."""

    max_iterations: int = 24_000
    restarts: int = 1
    lr: float = 0.1
    optimizer: str = "adam"                 # adam | sgd
    lr_decay: bool = True
    lr_milestones: tuple[float, ...] = (3 / 8, 5 / 8, 7 / 8)
    lr_gamma: float = 0.1
    signed: bool = True
    boxed: bool = True
    cost_fn: str = "sim"                    # sim (cosine) | l2
    indices: str = "def"                    # def | top<k> | first<k> | last<k> (parameter tensors)
    layer_weights: str = "equal"            # equal | linear | exp
    total_variation: float = 1e-4
    tv_space: str = "normalized"            # normalized (official code) | pixel
    init: str = "randn"                     # randn | rand | zeros
    dtype: str = "float32"                  # float32 | float64
    fast_linear: bool = True
    label_probes: int = 64
    threads: int | None = None              # torch intra-op threads while attacking (None: as is)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.cost_fn not in ("sim", "l2"):
            raise ValueError(f"cost_fn must be sim or l2, got {self.cost_fn!r}")
        if self.layer_weights not in ("equal", "linear", "exp"):
            raise ValueError(f"layer_weights must be equal, linear or exp, got {self.layer_weights!r}")
        if self.tv_space not in ("normalized", "pixel"):
            raise ValueError(f"tv_space must be normalized or pixel, got {self.tv_space!r}")
        if self.init not in ("randn", "rand", "zeros"):
            raise ValueError(f"init must be randn, rand or zeros, got {self.init!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not re.fullmatch(r"def|(top|first|last)\d+", self.indices):
            raise ValueError(f"indices must be def, top<k>, first<k> or last<k>, got {self.indices!r}")
        if self.max_iterations < 1 or self.restarts < 1:
            raise ValueError("max_iterations and restarts must be >= 1")
        self.lr_milestones = tuple(float(f) for f in self.lr_milestones)


def select_indices(norms: list[float], spec: str) -> list[int]:
    """Which parameter tensors enter the objective (inversefed's ``indices``)."""
    n = len(norms)
    if spec == "def":
        return list(range(n))
    kind, k = re.fullmatch(r"(top|first|last)(\d+)", spec).groups()
    k = min(int(k), n)
    if kind == "top":
        return sorted(torch.topk(torch.tensor(norms), k).indices.tolist())
    return list(range(k)) if kind == "first" else list(range(n - k, n))


def layer_weights(n: int, kind: str) -> list[float]:
    if kind == "equal":
        return [1.0] * n
    w = torch.arange(n, 0, -1, dtype=torch.float64)
    w = w / n if kind == "linear" else torch.softmax(w, 0)
    return [float(v) / float(w[0]) for v in w]  # inversefed normalises by the first weight


class GradientMatcher:
    """The gradient-matching objective of one observation (without TV), differentiable in x."""

    def __init__(self, obs: Observation, labels: Tensor, cfg: GeipingConfig, dtype: torch.dtype,
                 device: torch.device):
        self.model = obs.model
        self.loss_fn = obs.loss_fn
        self.labels = labels.to(device)
        self.cfg = cfg
        named = [(n, p) for n, p in obs.model.named_parameters()]
        missing = [n for n, _ in named if n not in obs.gradients]
        if missing and len(missing) == len(named):
            raise AttackNotApplicable("the observation holds no gradient of any model parameter")
        named = [(n, p) for n, p in named if n in obs.gradients]  # frozen parameters send nothing
        self.names = [n for n, _ in named]
        self.obs_grads = {n: obs.gradients[n].detach().to(device, dtype) for n in self.names}
        norms = [float(self.obs_grads[n].norm()) for n in self.names]  # NaN/inf anywhere -> not finite
        bad = [n for n, v in zip(self.names, norms) if not math.isfinite(v)]
        if bad:
            raise AttackNotApplicable(f"observed gradients {bad[:3]} are not finite; nothing to match")
        idx = select_indices(norms, cfg.indices)
        w = layer_weights(len(self.names), cfg.layer_weights)
        self.weights = {self.names[i]: w[i] for i in idx}
        self.obs_sq = sum(self.weights[n] * float(self.obs_grads[n].pow(2).sum()) for n in self.weights)
        if self.obs_sq == 0:
            raise AttackNotApplicable("the selected observed gradients are all zero")
        # model state in the attack's dtype (functional_call: the observation's model is untouched)
        self.params = {n: p.detach().to(device, dtype) for n, p in obs.model.named_parameters()}
        self.buffers = {n: b.detach().to(device, dtype if b.is_floating_point() else b.dtype)
                        for n, b in obs.model.named_buffers()}
        self.modules = dict(obs.model.named_modules())
        self.fast: dict[str, str] = {}  # linear module name -> parameter-name prefix
        if cfg.fast_linear:
            self._plan_fast(obs)
        for n in self.names:
            needs = n in self.weights and not self._is_fast_param(n)
            self.params[n].requires_grad_(needs)

    # ----------------------------------------------------------------- fast path bookkeeping
    def _is_fast_param(self, name: str) -> bool:
        mod, _, leaf = name.rpartition(".")
        return mod in self.fast and leaf in ("weight", "bias")

    def _plan_fast(self, obs: Observation) -> None:
        """Linear layers called exactly once per forward are handled analytically."""
        counts: dict[str, int] = {}
        hooks = []
        for name, mod in obs.model.named_modules():
            if isinstance(mod, nn.Linear):
                hooks.append(mod.register_forward_hook(
                    lambda m, i, o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1)))
        try:
            with torch.no_grad():
                probe = torch.zeros((1, *obs.data_spec.shape), dtype=next(iter(self.params.values())).dtype,
                                    device=next(iter(self.params.values())).device)
                functional_call(obs.model, {**self.params, **self.buffers}, (probe,))
        finally:
            for h in hooks:
                h.remove()
        uses = Counter(id(p) for _, p in obs.model.named_parameters(remove_duplicate=False))
        for name, c in counts.items():
            if c == 1 and uses[id(self.modules[name].weight)] == 1:
                self.fast[name] = name

    # ----------------------------------------------------------------- the objective
    def _terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Σ_k w_k <g_k(x), G_k> and Σ_k w_k ‖g_k(x)‖² over the selected parameters."""
        records: dict[str, tuple[Tensor, Tensor]] = {}
        hooks = []
        for name in self.fast:
            hooks.append(self.modules[name].register_forward_hook(
                lambda m, i, o, name=name: records.__setitem__(name, (i[0], o))))
        try:
            out = functional_call(self.model, {**self.params, **self.buffers}, (x,))
        finally:
            for h in hooks:
                h.remove()
        loss = self.loss_fn(out, self.labels)
        fast_used = [n for n in self.fast if any(f"{n}.{leaf}" in self.weights for leaf in ("weight", "bias"))]
        slow = [n for n in self.weights if not self._is_fast_param(n)]
        targets = [records[n][1] for n in fast_used] + [self.params[n] for n in slow]
        grads = torch.autograd.grad(loss, targets, create_graph=True)
        dot = x.new_zeros(())
        sq = x.new_zeros(())
        for n, d in zip(fast_used, grads[: len(fast_used)]):
            a = records[n][0]
            a = a.reshape(-1, a.shape[-1])
            d = d.reshape(-1, d.shape[-1])
            wk = f"{n}.weight"
            if wk in self.weights:
                G = self.obs_grads[wk]
                dot = dot + self.weights[wk] * (d * (a @ G.T)).sum()
                sq = sq + self.weights[wk] * ((d @ d.T) * (a @ a.T)).sum()
            bk = f"{n}.bias"
            if bk in self.weights:
                gb = d.sum(0)
                dot = dot + self.weights[bk] * (gb * self.obs_grads[bk]).sum()
                sq = sq + self.weights[bk] * gb.pow(2).sum()
        for n, g in zip(slow, grads[len(fast_used):]):
            dot = dot + self.weights[n] * (g * self.obs_grads[n]).sum()
            sq = sq + self.weights[n] * g.pow(2).sum()
        return dot, sq

    def __call__(self, x: Tensor) -> Tensor:
        dot, sq = self._terms(x)
        if self.cfg.cost_fn == "sim":
            return 1 - dot / (sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt() * math.sqrt(self.obs_sq))
        return sq - 2 * dot + self.obs_sq


class GeipingAttack:
    """Inverting Gradients (Geiping et al. 2020) against any differentiable model."""

    name: ClassVar[str] = "geiping"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **kwargs):
        self.cfg = GeipingConfig(**kwargs)

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        """Nothing to precompute: everything depends on the observed gradient."""

    # ----------------------------------------------------------------- helpers
    def _start(self, B: int, spec: DataSpec, generator: torch.Generator, dtype, device) -> Tensor:
        shape = (B, *spec.shape)
        if self.cfg.init == "randn":
            x = torch.randn(shape, generator=generator, dtype=torch.float64)
        elif self.cfg.init == "rand":
            x = (torch.rand(shape, generator=generator, dtype=torch.float64) - 0.5) * 2
        else:
            x = torch.zeros(shape, dtype=torch.float64)
        return x.to(device=device, dtype=dtype)

    def _tv(self, x: Tensor, spec: DataSpec) -> Tensor | None:
        if self.cfg.total_variation <= 0 or spec.kind != "image" or x.dim() != 4:
            return None
        img = spec.denormalize(x) if self.cfg.tv_space == "pixel" else x
        return self.cfg.total_variation * total_variation(img)

    def _trial(self, x0: Tensor, matcher: GradientMatcher, spec: DataSpec, deadline: float | None,
               label: str) -> tuple[Tensor, int, float]:
        cfg = self.cfg
        x = x0.clone().requires_grad_(True)
        if cfg.optimizer == "adam":
            opt = torch.optim.Adam([x], lr=cfg.lr)
        else:
            opt = torch.optim.SGD([x], lr=cfg.lr, momentum=0.9, nesterov=True)
        sched = None
        if cfg.lr_decay:
            miles = sorted({int(cfg.max_iterations * f) for f in cfg.lr_milestones})
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=miles, gamma=cfg.lr_gamma)
        lo, hi = spec.box(x) if (cfg.boxed and spec.kind == "image") else (None, None)
        from tqdm import tqdm

        bar = tqdm(range(cfg.max_iterations), desc=f"geiping {label}", unit="it", leave=False,
                   disable=not cfg.progress or not sys.stderr.isatty())
        done, last = 0, float("nan")
        for it in bar:
            if deadline is not None and time.monotonic() > deadline:
                break
            opt.zero_grad(set_to_none=True)
            obj = matcher(x)
            tv = self._tv(x, spec)
            if tv is not None:
                obj = obj + tv
            (grad,) = torch.autograd.grad(obj, [x])
            x.grad = grad.sign() if cfg.signed else grad
            opt.step()
            if sched is not None:
                sched.step()
            if lo is not None:
                with torch.no_grad():
                    x.clamp_(min=lo, max=hi)
            done = it + 1
            last = float(obj.detach())
            if it % 50 == 0:
                bar.set_postfix(loss=f"{last:.4f}")
        bar.close()
        return x.detach(), done, last

    # ----------------------------------------------------------------- the attack
    def reconstruct(self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None,
                    init: Tensor | None = None, time_budget_s: float | None = None) -> Reconstruction:
        """Reconstruct the batch; ``init`` (B, *shape) in model-input space starts the first restart.

        Later restarts start from fresh draws of ``generator``. Past ``deadline`` (an absolute
        ``time.monotonic()``; or ``time_budget_s`` seconds from the call) the best restart so far is
        returned with status "partial".
        """
        deadline = resolve_deadline(deadline, time_budget_s)
        prev_threads = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        try:
            return self._reconstruct(obs, generator=generator, deadline=deadline, init=init)
        finally:
            torch.set_num_threads(prev_threads)

    def _reconstruct(self, obs: Observation, *, generator: torch.Generator, deadline: float | None,
                     init: Tensor | None) -> Reconstruction:
        cfg = self.cfg
        t_start = time.perf_counter()
        dtype = _DTYPES[cfg.dtype]
        device = next(obs.model.parameters()).device
        spec = obs.data_spec
        diag: dict = {"dtype": cfg.dtype, "max_iterations": cfg.max_iterations, "restarts": cfg.restarts,
                      "fast_linear": cfg.fast_linear, "threads": torch.get_num_threads()}
        if obs.client_steps > 1:  # FedAvg: match the one-step gradient to the mean local gradient
            diag["update_model"] = "one_step_approximation"
        # ---- batch size
        if init is not None:
            if tuple(init.shape[1:]) != tuple(spec.shape):
                raise ValueError(f"init has per-sample shape {tuple(init.shape[1:])}, the data {spec.shape}")
            B = int(init.shape[0])
            diag["batch_size_source"] = "init"
        elif obs.batch_size is not None:
            B = int(obs.batch_size)
            diag["batch_size_source"] = "threat_model"
        else:
            B, extra = batch_size_from_rank(obs)
            diag.update(extra)
        if obs.batch_size is not None and B != obs.batch_size:
            raise ValueError(f"init holds {B} samples but the threat model reveals batch size {obs.batch_size}")
        diag["batch_size"] = B
        # ---- labels
        if obs.labels is not None:
            labels = obs.labels.detach().to(device)
            if labels.shape[0] != B:
                raise ValueError(f"{labels.shape[0]} revealed labels for a batch of {B}")
            diag["labels_source"] = "threat_model"
        else:
            labels, extra = recover_labels(obs, B, generator=generator, n_probe=cfg.label_probes)
            diag.update(extra)
            if init is not None:  # a given start fixes the samples' order: pair labels with them
                labels, extra = assign_labels(obs, labels, init)
                diag.update(extra)
            labels = labels.to(device)
            diag["labels_source"] = "recovered"
        matcher = GradientMatcher(obs, labels, cfg, dtype, device)
        diag["params_matched"] = len(matcher.weights)
        diag["linear_layers_fast"] = len(matcher.fast)
        # ---- restarts, best by matching loss
        best_x, best_loss, best_r = None, math.inf, -1
        total_iters = 0
        stopped = False
        for r in range(cfg.restarts):
            if deadline is not None and time.monotonic() > deadline:
                stopped = True
                break
            if r == 0 and init is not None:
                x0 = init.detach().to(device=device, dtype=dtype)
            else:
                x0 = self._start(B, spec, generator, dtype, device)
            with torch.enable_grad():
                init_loss = float(matcher(x0.clone().requires_grad_(True)).detach())
                x, n_it, _ = self._trial(x0, matcher, spec, deadline, f"restart {r + 1}/{cfg.restarts}")
                score = float(matcher(x.clone().requires_grad_(True)).detach())
            total_iters += n_it
            diag[f"restart{r}_init_loss"] = init_loss
            diag[f"restart{r}_loss"] = score
            diag[f"restart{r}_iterations"] = n_it
            if n_it < cfg.max_iterations:
                stopped = True
            if math.isfinite(score) and score < best_loss:
                best_x, best_loss, best_r = x, score, r
        diag.update(iterations=total_iters, best_restart=best_r,
                    matching_loss=best_loss if math.isfinite(best_loss) else None,
                    seconds_per_iteration=(time.perf_counter() - t_start) / max(1, total_iters))
        if best_x is None:
            diag["reason"] = ("deadline passed before the first iteration" if stopped
                              else "every restart ended with a non-finite matching loss")
            return Reconstruction(inputs=torch.zeros((0, *spec.shape)), labels=labels.cpu(),
                                  status="failed", diagnostics=diag)
        status = "partial" if stopped else "ok"
        if stopped:
            diag["reason"] = f"deadline: stopped after {total_iters} of {cfg.max_iterations * cfg.restarts} iterations"
        return Reconstruction(inputs=best_x.to("cpu"), labels=labels.cpu(), status=status, diagnostics=diag)


__all__ = ["GeipingAttack", "GeipingConfig", "GradientMatcher", "total_variation"]
