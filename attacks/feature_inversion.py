"""Feature inversion (FI): images whose trunk features match given features.

The second stage of the CNN pipelines (docs/api.md; Kariyappa et al., "Cocktail Party Attack",
ICML 2023, arXiv 2209.05578): SPEAR or CPA recovers the inputs of the first
linear layer after a CNN's convolutional trunk (its *features*); FI optimises a batch of images so
that the network's features at that layer match them. Following the Cocktail Party Attack's
official implementation (``src/feature_inversion.py::Direct``, Kariyappa et al., ICML 2023):

    loss = fi · mean_i (1 − cos(z_i, φ(x̂_i))) + tv · TV(x̂)

with ``φ`` the network up to the attacked layer, TV the mean-absolute total variation of the
normalised image, the image projected onto the valid pixel box before every step, Adam at 0.1 with
a cosine schedule, 25,000 iterations (the published budget; ``iterations`` is the budget knob), and
a standard-normal start drawn from the caller's generator. The cosine loss is invariant to each
feature vector's scale, so features known only up to a positive factor (CPA) invert as well.

Not an attack on its own (it needs features, which only a first stage recovers): the pipelines in
``attacks.pipelines`` use it.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attacks.base import AttackNotApplicable, DataSpec
from attacks.progress import LoopMonitor
from attacks.priors import total_variation


class _Reached(Exception):
    """Raised by the forward pre-hook once the attacked layer's input is captured."""


def layer_input_fn(model: nn.Module, layer: str):
    """A function ``x -> inputs of module `layer``` (rows = samples) that stops the forward there."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise AttackNotApplicable(f"model has no module named {layer!r}")
    mod = modules[layer]
    box: dict = {}

    def hook(_m, inp):
        box["z"] = inp[0]
        raise _Reached

    def features(x: Tensor) -> Tensor:
        handle = mod.register_forward_pre_hook(hook)
        try:
            model(x)
        except _Reached:
            pass
        finally:
            handle.remove()
        if "z" not in box:
            raise AttackNotApplicable(f"the forward pass never reached layer {layer!r}")
        z = box.pop("z")
        return z.reshape(z.shape[0], -1)

    return features


@contextmanager
def intra_op_threads(n: int | None):
    """Run the block with ``n`` intra-op threads (None/0: leave PyTorch's setting), then restore.

    The optimisation loops here run thousands of steps on small tensors; on a loaded 2-core machine
    two threads made them 6-17x slower than one (synchronisation, not arithmetic, dominates).
    """
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class FeatureInversion:
    """Knobs of feature inversion; defaults and their sources in conf/attack/*_fi_geiping.yaml."""

    iterations: int = 25_000      # published (CPA): 25,000
    lr: float = 0.1               # published (CPA): Adam at 0.1
    schedule: str = "cosine"      # published (CPA): cosine annealing to 0 over the run | constant
    fi: float = 1.0               # feature-matching weight (official README, VGG-16: --fi=1)
    tv: float = 0.1               # TV weight (official README, VGG-16: --tv=0.1)
    dtype: str = "float32"        # the network is copied to this precision for the optimisation
    check_every: int = 50         # how often the deadline is looked at
    threads: int | None = None    # intra-op threads during the loop (None: PyTorch's setting)
    progress: bool = True

    def invert(self, model: nn.Module, layer: str, features: Tensor, spec: DataSpec, *,
               generator: torch.Generator, deadline: float | None = None,
               init: Tensor | None = None) -> tuple[Tensor, dict]:
        """Images (B, *spec.shape) in model-input space whose ``layer`` inputs match ``features``."""
        with intra_op_threads(self.threads):
            return self._invert(model, layer, features, spec, generator=generator, deadline=deadline,
                                init=init)

    def _invert(self, model, layer, features, spec, *, generator, deadline, init):
        if spec.kind != "image" or len(spec.shape) != 3:
            raise AttackNotApplicable("feature inversion optimises images; the data spec is not an image")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        t0 = time.perf_counter()
        dtype = getattr(torch, self.dtype)
        device = next(model.parameters()).device
        net = copy.deepcopy(model).to(dtype)
        for p in net.parameters():
            p.requires_grad_(False)
        phi = layer_input_fn(net, layer)
        Z = features.detach().to(device, dtype).reshape(features.shape[0], -1)
        B = Z.shape[0]
        with torch.no_grad():
            n_feat = phi(torch.zeros((1, *spec.shape), dtype=dtype, device=device)).shape[1]
        if n_feat != Z.shape[1]:
            raise AttackNotApplicable(
                f"layer {layer!r} takes {n_feat} features; the recovered features have {Z.shape[1]}")
        if init is None:
            x0 = torch.randn((B, *spec.shape), generator=generator, dtype=torch.float64)
        else:
            x0 = init.detach().double().cpu()
        x = x0.to(device, dtype).requires_grad_(True)
        lo, hi = spec.box(x.detach())
        opt = torch.optim.Adam([x], lr=self.lr)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.iterations))
                 if self.schedule == "cosine" else None)

        monitor = LoopMonitor(self.iterations, f"FI b={B}", enabled=self.progress, deadline=deadline)
        it = 0
        loss_fi = loss = torch.zeros(())
        for it in range(1, self.iterations + 1):
            with torch.no_grad():  # box the image before every step (official implementation)
                x.copy_(torch.max(torch.min(x, hi), lo))
            opt.zero_grad(set_to_none=True)
            loss_fi = (1 - F.cosine_similarity(Z, phi(x), dim=-1, eps=1e-10)).mean()
            loss = self.fi * loss_fi + (self.tv * total_variation(x) if self.tv > 0 else 0.0)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if it % self.check_every == 0 and monitor.tick(self.check_every, cos=f"{1 - float(loss_fi):.4f}"):
                break
        monitor.close()
        timed_out = monitor.timed_out
        with torch.no_grad():
            x.copy_(torch.max(torch.min(x, hi), lo))
            cos = F.cosine_similarity(Z, phi(x), dim=-1, eps=1e-10)
        diag = {"iterations": it, "timed_out": int(timed_out), "final_loss": float(loss.detach()),
                "feature_cos_mean": float(cos.mean()), "feature_cos_min": float(cos.min()),
                "dtype": self.dtype, "time_s": time.perf_counter() - t0}
        if not math.isfinite(float(loss.detach() if torch.is_tensor(loss) else loss)):
            diag["reason"] = "feature inversion diverged (non-finite loss)"
        return x.detach().to("cpu", torch.float64), diag


__all__ = ["FeatureInversion", "layer_input_fn", "total_variation", "intra_op_threads"]
