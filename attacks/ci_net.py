"""CI-Net: Zhang et al., "Generative Gradient Inversion via Over-Parameterized Networks in Federated
Learning", ICCV 2023 (code: github czhang024/CI-Net, MIT licence).

Instead of optimising the images, CI-Net trains an untrained, over-parameterised convolutional
generator (attacks/ci_net_generator.py) that maps one fixed random latent per sample (drawn once)
to the whole batch, so that the batch's gradient points the same way as the observed one:

    min_θ  1 − <∇w L(G_θ(z), y), g> / (‖∇w L(G_θ(z), y)‖ ‖g‖)  +  α_TV · TV(G_θ(z)),

the cosine over the concatenation of all the client model's parameter gradients, Adam on the
generator's weights θ with the *sign* of each gradient entry, the generator in training mode
throughout (batch norm on the batch's statistics, one spectral-norm power step per forward). Its
width follows the over-parameterisation rule: start at 32 channels and double until the generator
has more than 4 × B·H·W parameters. The reported batch is the last iterate (``output="last"``, the
authors' reported image) or the iterate with the lowest matching loss (``output="best_loss"``);
never one chosen with the ground truth (the authors' notebooks also track the best SSIM against
the true images, which a server cannot compute).

Labels: given by the threat model, else counted from the last layer (attacks/labels.py); the
authors use the true labels. Batch size: ``obs.batch_size``, else the rank of a linear layer's
weight gradient (attacks/labels.py).

Where this departs from the authors' code (values and sources in conf/attack/ci_net.yaml):
- Output space: the generator's ``tanh`` output ``t ∈ [-1, 1]`` is taken as pixels ``(t + 1)/2``
  and normalised with the data's mean/std, so it spans exactly the valid image box of the model's
  input space. The authors feed ``t`` to a model trained on ``[0, 1]`` pixels directly. For data
  with mean = std = 0.5 per channel both are the same map (scripts/peer_check_ci_net.py uses that).
- Sizes: any (channels, H, W): the up-sampling stack runs to the next ``4·2^k`` and the output is
  centre-cropped (or resized) to H × W; the authors build 32 × 32 and 128/256 × 256 RGB only.
- Width rule: counts the generator actually built; the authors count their 32 × 32 RGB generator
  whatever the image size.
- Adam β1: the authors' config lists β1 = 0.5 but their attack never passes it to Adam, so their
  runs use PyTorch's default 0.9; ``beta1`` defaults to 0.9 (what ran) and can be set to 0.5.
- Deadline, label recovery, the lowest-loss option, float64 and thread control are additions.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction, resolve_deadline
from attacks.ci_net_generator import CINetGenerator, over_parameterized_width
from attacks.labels import batch_size_from_rank, recover_labels
from attacks.priors import total_variation
from attacks.progress import LoopMonitor

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class CINetConfig:
    """Knobs of the attack; published values and their sources in conf/attack/ci_net.yaml."""

    max_iterations: int = 5000
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    signed: bool = True
    total_variation: float = 0.0
    latent_dim: int = 128
    start_width: int = 32
    overparam_factor: float = 4.0
    width: int | None = None           # fixed generator width (None: the over-parameterisation rule)
    fit: str = "crop"                  # crop | resize: from the 4·2^k stack to the image's H x W
    output: str = "last"               # last | best_loss
    dtype: str = "float32"
    label_probes: int = 64
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.total_variation < 0:
            raise ValueError(f"total_variation must be >= 0, got {self.total_variation}")
        if self.latent_dim < 1 or self.start_width < 1 or self.overparam_factor <= 0:
            raise ValueError("latent_dim and start_width must be >= 1 and overparam_factor > 0")
        if self.width is not None and self.width < 4:
            raise ValueError(f"width must be >= 4 channels (or null for the rule), got {self.width}")
        if self.fit not in ("crop", "resize"):
            raise ValueError(f"fit must be crop or resize, got {self.fit!r}")
        if self.output not in ("last", "best_loss"):
            raise ValueError(f"output must be last or best_loss, got {self.output!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")


class CosineGradientLoss:
    """``1 − cos`` between the gradient of a candidate batch and the observed one (all parameters
    the observation holds a gradient for, concatenated), differentiable in the candidate."""

    def __init__(self, obs: Observation, labels: Tensor, dtype: torch.dtype, device: torch.device):
        self.model = obs.model
        self.loss_fn = obs.loss_fn
        self.labels = labels.to(device)
        self.params = {n: p.detach().to(device, dtype) for n, p in obs.model.named_parameters()}
        self.buffers = {n: b.detach().to(device, dtype if b.is_floating_point() else b.dtype)
                        for n, b in obs.model.named_buffers()}
        self.names = [n for n in self.params if n in obs.gradients]
        if not self.names:
            raise AttackNotApplicable("the observation holds no gradient of any model parameter")
        self.observed = [obs.gradients[n].detach().to(device, dtype) for n in self.names]
        sq = sum(float(g.double().pow(2).sum()) for g in self.observed)
        if not math.isfinite(sq):
            raise AttackNotApplicable("the observed gradients are not finite; nothing to match")
        if sq == 0:
            raise AttackNotApplicable("the observed gradients are all zero; nothing to match")
        self.observed_norm = math.sqrt(sq)
        for n, p in self.params.items():
            p.requires_grad_(n in self.names)

    def __call__(self, x: Tensor) -> Tensor:
        out = functional_call(self.model, {**self.params, **self.buffers}, (x,))
        loss = self.loss_fn(out, self.labels)
        grads = torch.autograd.grad(loss, [self.params[n] for n in self.names], create_graph=True)
        dot = sum((g * o).sum() for g, o in zip(grads, self.observed))
        sq = sum(g.pow(2).sum() for g in grads)
        return 1 - dot / (sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt() * self.observed_norm)


def to_model_space(t: Tensor, spec: DataSpec) -> Tensor:
    """Generator output in [-1, 1] -> pixels (t + 1)/2 -> the model's normalised input space."""
    return spec.normalize((t + 1) / 2)


class CINetAttack:
    """CI-Net (Zhang et al. 2023): gradient inversion through an over-parameterised generator."""

    name: ClassVar[str] = "ci_net"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **kwargs):
        self.cfg = CINetConfig(**kwargs)

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        """Nothing to precompute: the generator's width depends on the batch size."""

    def build_generator(self, B: int, spec: DataSpec, generator: torch.Generator, dtype,
                        device) -> tuple[CINetGenerator, Tensor, dict]:
        """The generator (weights drawn from ``generator``), its fixed latents and its diagnostics."""
        cfg = self.cfg
        width = int(cfg.width) if cfg.width is not None else over_parameterized_width(
            B, spec.shape, cfg.latent_dim, cfg.start_width, cfg.overparam_factor)[0]
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # PyTorch's default initialisation, drawn from the attack's seed
            net = CINetGenerator(spec.shape, width, cfg.latent_dim, cfg.fit)
        net = net.to(device=device, dtype=dtype).train()
        z = torch.randn((B, cfg.latent_dim), generator=generator, dtype=torch.float64).to(device, dtype)
        n_params = sum(p.numel() for p in net.parameters())
        return net, z, {"generator_width": width, "generator_params": n_params,
                        "generator_resolution": net.resolution, "latent_dim": cfg.latent_dim,
                        "pixels": B * spec.shape[-2] * spec.shape[-1]}

    def reconstruct(self, obs: Observation, *, generator: torch.Generator,
                    deadline: float | None = None, time_budget_s: float | None = None) -> Reconstruction:
        """Train the generator on the observation; past ``deadline`` (an absolute
        ``time.monotonic()``; or ``time_budget_s`` seconds from the call) return the batch so far
        with status "partial"."""
        deadline = resolve_deadline(deadline, time_budget_s)
        prev_threads = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(int(self.cfg.threads))
        try:
            return self._reconstruct(obs, generator, deadline)
        finally:
            torch.set_num_threads(prev_threads)

    def _batch_and_labels(self, obs: Observation, generator: torch.Generator, device) -> tuple[int, Tensor, dict]:
        diag: dict = {}
        if obs.batch_size is not None:
            B = int(obs.batch_size)
            diag["batch_size_source"] = "threat_model"
        else:
            B, extra = batch_size_from_rank(obs)
            diag.update(extra)
        if obs.labels is not None:
            labels = obs.labels.detach().to(device)
            if labels.shape[0] != B:
                raise ValueError(f"{labels.shape[0]} revealed labels for a batch of {B}")
            diag["labels_source"] = "threat_model"
        else:
            labels, extra = recover_labels(obs, B, generator=generator, n_probe=self.cfg.label_probes)
            diag.update(extra)
            labels = labels.to(device)
            diag["labels_source"] = "recovered"
        return B, labels, diag

    def _reconstruct(self, obs: Observation, generator: torch.Generator, deadline: float | None) -> Reconstruction:
        cfg = self.cfg
        t_start = time.perf_counter()
        spec = obs.data_spec
        if spec.kind != "image" or len(spec.shape) != 3:
            raise AttackNotApplicable(f"CI-Net's generator makes images (channels, H, W); this data is "
                                      f"{spec.kind} with per-sample shape {tuple(spec.shape)}")
        dtype = _DTYPES[cfg.dtype]
        device = next(obs.model.parameters()).device
        B, labels, diag = self._batch_and_labels(obs, generator, device)
        diag.update(dtype=cfg.dtype, max_iterations=cfg.max_iterations, batch_size=B, output=cfg.output,
                    threads=torch.get_num_threads())
        if obs.client_steps > 1:  # FedAvg: match the one-step gradient to the mean local gradient
            diag["update_model"] = "one_step_approximation"
        matcher = CosineGradientLoss(obs, labels, dtype, device)
        net, z, extra = self.build_generator(B, spec, generator, dtype, device)
        diag.update(extra)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        monitor = LoopMonitor(cfg.max_iterations, f"CI-Net b={B}", enabled=cfg.progress, deadline=deadline)
        last_x, last_loss, best_x, best_loss, best_it, first_loss = None, math.nan, None, math.inf, -1, math.nan
        done = 0
        try:
            with torch.enable_grad():
                for it in range(cfg.max_iterations):
                    opt.zero_grad(set_to_none=True)
                    x = to_model_space(net(z), spec)
                    match = matcher(x)
                    loss = match
                    if cfg.total_variation > 0:
                        loss = loss + cfg.total_variation * total_variation(x)
                    value = float(match.detach())
                    if not math.isfinite(value):
                        diag["stopped"] = f"non-finite matching loss at iteration {it}"
                        break
                    last_x, last_loss = x.detach(), value
                    if it == 0:
                        first_loss = value
                    if value < best_loss:
                        best_x, best_loss, best_it = last_x, value, it
                    loss.backward()
                    if cfg.signed:
                        for p in net.parameters():
                            if p.grad is not None:
                                p.grad.sign_()
                    opt.step()
                    done = it + 1
                    if monitor.tick(loss=f"{value:.4f}") and done < cfg.max_iterations:
                        break
        finally:
            monitor.close()
        elapsed = time.perf_counter() - t_start
        diag.update(iterations=done, initial_loss=first_loss, final_loss=last_loss,
                    best_loss=best_loss if best_x is not None else None, best_iteration=best_it,
                    seconds_per_iteration=elapsed / max(1, done))
        out = best_x if cfg.output == "best_loss" else last_x
        if out is None:
            diag["reason"] = diag.get("stopped", "no iteration produced a finite matching loss")
            return Reconstruction(inputs=torch.zeros((0, *spec.shape)), labels=labels.cpu(),
                                  status="failed", diagnostics=diag)
        diag["matching_loss"] = best_loss if cfg.output == "best_loss" else last_loss
        status = "ok"
        if done < cfg.max_iterations:
            status = "partial"
            diag["reason"] = diag.get("stopped") or (
                f"deadline: stopped after {done} of {cfg.max_iterations} iterations")
        return Reconstruction(inputs=out.to("cpu"), labels=labels.cpu(), status=status, diagnostics=diag)


__all__ = ["CINetAttack", "CINetConfig", "CosineGradientLoss", "to_model_space"]
