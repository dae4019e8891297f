"""Compositions of attacks: CNN pipelines, and Geiping's reconstruction as the prior of SPEAR's
guided finder. The only module of ``attacks`` that imports other attacks.

CNN pipelines: layer-input recovery -> feature inversion -> gradient-matching refinement. For a
CNN, SPEAR (exactly) or CPA (approximately) recovers the inputs of the first linear layer after the
convolutional trunk -- the trunk's *features* of every sample (Dimitrov et al., "SPEAR: Exact
Gradient Inversion of Batches in Federated Learning", arXiv 2403.03945; Kariyappa et al., "Cocktail
Party Attack", arXiv 2209.05578). Feature inversion (``attacks.feature_inversion``) turns them into
images whose features match, and Geiping et al.'s attack (``attacks.geiping``) refines those images
against the full gradient, starting from them. Each stage's output and time is kept: the recovered
features in ``Reconstruction.layer_inputs`` (the runner scores ``feature_cosine``), the FI images
in ``Reconstruction.stages["fi"]`` (scored as ``stage_fi_psnr``), the stage times and each stage's
status (``stage_<name>_status``) as diagnostics.

The pipeline's status is about its *final* images: ``ok`` only when they certify themselves -- the
gradient they produce (with the pipeline's labels) reproduces the observed update within the
residual tolerance of the client's dtype, the same tolerance as SPEAR's a-posteriori check --
``partial`` when there are images without that certificate, ``failed`` when there are none.

The three parts are built by hydra from conf/attack/{spear,cpa}_fi_geiping.yaml (``stage1``,
``fi``, ``refine``); ``refine: null`` stops after feature inversion.
"""
from __future__ import annotations

import math
import time
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from attacks.base import (AttackNotApplicable, DataSpec, Observation, Reconstruction, check_budget,
                          default_deadline, resolve_deadline, validate_observation)
from attacks.feature_inversion import FeatureInversion
from attacks.geiping import GeipingAttack
from attacks.layers import layer_keys, linear_layer
from attacks.progress import intra_op_threads
from attacks.spear.precision import dtype_tolerances



def _scalars(prefix: str, diag: dict) -> dict:
    return {f"{prefix}{k}": v for k, v in diag.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


def gradient_residual(obs: Observation, inputs: Tensor, labels: Tensor) -> float:
    """Relative distance ``‖g(inputs, labels) − g_obs‖ / ‖g_obs‖`` over the observed parameters:
    how well a reconstruction explains the update the server saw (its own certificate; no ground
    truth involved). The model's weights are read, never changed."""
    model = obs.model
    p0 = next(model.parameters())
    params = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters() if n in obs.gradients}
    with torch.enable_grad():
        out = functional_call(model, params, (inputs.to(p0.device, p0.dtype),))
        loss = obs.loss_fn(out, labels.to(p0.device))
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    num = den = 0.0
    for (n, _), g in zip(params.items(), grads):
        target = obs.gradients[n].detach()
        g = torch.zeros_like(target) if g is None else g.detach().to(target.device)
        num += float(torch.linalg.vector_norm(g - target, dtype=torch.float64)) ** 2
        den += float(torch.linalg.vector_norm(target, dtype=torch.float64)) ** 2
    return math.sqrt(num) / max(math.sqrt(den), 1e-300)


class FeaturePipeline:
    """``stage1`` recovers the attacked layer's inputs, ``fi`` inverts them, ``refine`` polishes.

    ``stage1`` is any object with a ``layer`` attribute and ``recover_layer_inputs(obs, generator=,
    deadline=)`` returning a result with ``status``, ``inputs`` (B×n, rows = samples) and
    ``diagnostics`` (SpearAttack, CpaAttack). ``refine`` is an attack whose ``reconstruct`` takes
    ``init=`` (GeipingAttack), or None. ``name``: the row label (conf/attack/*.yaml).
    """

    name: ClassVar[str] = "features+fi+geiping"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, stage1, fi: FeatureInversion, refine=None, threads: int | None = None,
                 name: str | None = None, time_budget_s: float | None = 3600.0):
        self.stage1 = stage1
        self.fi = fi
        self.refine = refine
        self.threads = threads  # intra-op threads for all stages (None: PyTorch's setting)
        if name is not None:
            self.name = str(name)
        # seconds a reconstruct call without a deadline may run, all stages together (None: no limit)
        self.time_budget_s = check_budget(time_budget_s)
        # the pipeline needs what its parts need (instance attribute shadows the class default)
        self.requires = frozenset(getattr(stage1, "requires", frozenset())) | frozenset(
            getattr(refine, "requires", frozenset()) if refine is not None else frozenset())

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        if data_spec.kind != "image":
            raise AttackNotApplicable(f"{self.name} reconstructs images; the data is {data_spec.kind}")
        # the first stage recovers features, not images: only its layer is checked here
        check_layer = getattr(self.stage1, "prepare_layer", None)
        if check_layer is not None:
            check_layer(model)
        else:
            self.stage1.prepare(model, data_spec)
        if self.refine is not None and hasattr(self.refine, "prepare"):
            self.refine.prepare(model, data_spec)

    def _needed(self, model: nn.Module) -> set[str]:
        """Gradients the stages need: the attacked layer's (stage 1), every trainable parameter's
        when a refinement matches the whole gradient."""
        keys = layer_keys(model, getattr(self.stage1, "layer", None), bias=True)
        if self.refine is not None:
            keys |= {n for n, p in model.named_parameters() if p.requires_grad}
        return keys

    def reconstruct(self, obs: Observation, *, generator: torch.Generator,
                    deadline: float | None = None, time_budget_s: float | None = None) -> Reconstruction:
        validate_observation(obs, needed=self._needed)
        deadline = default_deadline(resolve_deadline(deadline, time_budget_s), self.time_budget_s)
        with intra_op_threads(self.threads):
            return self._reconstruct(obs, generator, deadline)

    def _reconstruct(self, obs: Observation, generator: torch.Generator, deadline: float | None) -> Reconstruction:
        spec = obs.data_spec
        layer, mod = linear_layer(obs.model, getattr(self.stage1, "layer", None))
        if mod.in_features == spec.numel:
            raise AttackNotApplicable(
                f"layer {layer!r} sees the raw input, not features after a conv trunk: attack it "
                f"directly ({self.name.split('+')[0]}) instead of through {self.name}")
        diag: dict = {"attacked_layer": layer}

        t0 = time.perf_counter()
        res = self.stage1.recover_layer_inputs(obs, generator=generator, deadline=deadline)
        diag["time_stage1_s"] = time.perf_counter() - t0
        diag.update(_scalars("stage1_", res.diagnostics))
        diag["stage_stage1_status"] = res.status
        if res.inputs is None:
            diag["reason"] = f"stage 1 recovered no features: {res.diagnostics.get('reason', '')}"
            return Reconstruction(torch.empty((0, *spec.shape), dtype=torch.float64), None, "failed", diag)
        features = res.inputs.detach().to("cpu", torch.float64)

        t0 = time.perf_counter()
        x_fi, fi_diag = self.fi.invert(obs.model, layer, features, spec, generator=generator,
                                       deadline=deadline)
        diag["time_fi_s"] = time.perf_counter() - t0
        diag.update(_scalars("fi_", fi_diag))
        diag["stage_fi_status"] = "partial" if fi_diag.get("timed_out") else "ok"
        stages = {"fi": x_fi}
        final, labels = x_fi, None

        if self.refine is not None:
            t0 = time.perf_counter()
            device = next(obs.model.parameters()).device
            rec = self.refine.reconstruct(obs, generator=generator, deadline=deadline,
                                          init=x_fi.to(device))
            diag["time_refine_s"] = time.perf_counter() - t0
            diag.update(_scalars("refine_", rec.diagnostics))
            diag["stage_refine_status"] = rec.status
            if rec.inputs.shape[0]:
                final = rec.inputs.detach().to("cpu", torch.float64)
                stages["refine"] = final
            labels = rec.labels
        status = self._certify(obs, final, labels if labels is not None else obs.labels, diag)
        return Reconstruction(final, labels, status, diag, layer_inputs=features, stages=stages)

    def _certify(self, obs: Observation, final: Tensor, labels: Tensor | None, diag: dict) -> str:
        """The status of the final images: ``ok`` when they reproduce the observed update within
        the client dtype's residual tolerance, ``partial`` otherwise (``failed``: no images)."""
        if final.shape[0] == 0:
            diag.setdefault("reason", "no final images")
            return "failed"
        if labels is None:
            diag["reason"] = ("final images not certified: no labels (neither revealed nor "
                              "recovered by a refining stage) to recompute their gradient with")
            return "partial"
        t0 = time.perf_counter()
        residual = gradient_residual(obs, final, labels)
        tol = dtype_tolerances(next(iter(obs.gradients.values())).dtype)[1]
        diag.update(time_certify_s=time.perf_counter() - t0, final_grad_residual=residual,
                    final_residual_tol=tol)
        if residual <= tol:
            return "ok"
        diag["reason"] = (f"final images not certified: their gradient is {residual:.3g} away from "
                          f"the observed update (relative), above the tolerance {tol:.3g}")
        return "partial"


class SpearFiGeiping(FeaturePipeline):
    """SPEAR recovers the features exactly, FI inverts them, Geiping refines (SPEAR paper, CNN table)."""

    name: ClassVar[str] = "spear+fi+geiping"


class CpaFiGeiping(FeaturePipeline):
    """CPA recovers the features approximately, FI inverts them, Geiping refines."""

    name: ClassVar[str] = "cpa+fi+geiping"


class GeipingPrior:
    """The guide of SPEAR's guided finder (``SpearAttack(search="guided", guide=GeipingPrior())``,
    attacks/spear/finders/guided.py): predicted pre-activations (m × B') of the attacked layer for
    a short Geiping reconstruction of the observation (``iterations`` iterations, ``restarts``
    restarts, no progress bar). The layer's inputs are read by a forward hook, so any layer of the
    model works. When Geiping's attack does not apply, the prior is empty (the finder then samples
    uniformly)."""

    def __init__(self, iterations: int = 200, restarts: int = 1):
        self.iterations, self.restarts = int(iterations), int(restarts)

    def __call__(self, obs: Observation, layer: nn.Module, *, generator: torch.Generator,
                 deadline: float | None = None) -> tuple[Tensor, dict]:
        dtype = torch.float64
        t0 = time.perf_counter()
        geiping = GeipingAttack(max_iterations=self.iterations, restarts=self.restarts, progress=False,
                                threads=None)
        try:
            geiping.prepare(obs.model, obs.data_spec)
            rec = geiping.reconstruct(obs, generator=generator, deadline=deadline)
        except AttackNotApplicable as exc:  # no prior: the guided finder samples uniformly
            return torch.empty(layer.weight.shape[0], 0, dtype=dtype), {
                "guide_time_s": time.perf_counter() - t0, "guide_status": f"not applicable: {exc}"[:200]}
        diag = {"guide_time_s": time.perf_counter() - t0, "guide_status": rec.status,
                "guide_iterations": self.iterations}
        if rec.inputs.shape[0] == 0:
            return torch.empty(layer.weight.shape[0], 0, dtype=dtype), diag
        seen: list[Tensor] = []
        hook = layer.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
        try:
            with torch.no_grad():
                p = next(obs.model.parameters())
                obs.model(rec.inputs.to(p.device, p.dtype))
        finally:
            hook.remove()
        a = seen[0].flatten(1).to(dtype)  # B' × n
        z = layer.weight.detach().to(dtype) @ a.T.to(layer.weight.device)
        if layer.bias is not None:
            z = z + layer.bias.detach().to(dtype)[:, None]
        return z.cpu(), diag


__all__ = ["FeaturePipeline", "SpearFiGeiping", "CpaFiGeiping", "GeipingPrior", "gradient_residual"]
