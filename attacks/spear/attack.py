"""SPEAR behind the attack interface (``attacks.base.Attack``)."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction
from attacks.layers import layer_gradients, relu_linear_layer
from attacks.spear.config import DTYPE, SpearConfig
from attacks.spear.engine import SpearResult, spear_core
from attacks.spear.finders import FINDERS


class SpearAttack:
    """SPEAR behind the attack interface. Attacks ``layer`` (default: the first nn.Linear)."""

    name: ClassVar[str] = "spear"
    requires: ClassVar[frozenset[str]] = frozenset({"relu_linear_layer"})

    def __init__(self, layer: str | None = None, features_only: bool = False, guide=None,
                 name: str | None = None, **config):
        self.layer = None if layer is None else str(layer)  # a sweep may pass attack.layer=1 as an int
        # features_only: when the attacked layer is not the first, return its recovered inputs
        # (features) as ``layer_inputs`` with no images instead of raising (the depth experiment)
        self.features_only = features_only
        self.config = SpearConfig(**config)
        # guide: predicted pre-activations of the attacked layer for the guided finder, a callable
        # ``guide(obs, layer_module, *, generator, deadline) -> (m × B' tensor, diagnostics)``
        # (conf/attack/spear_geiping.yaml: attacks.pipelines.GeipingPrior)
        needs_prior = getattr(FINDERS[self.config.search], "needs_prior", False)
        if needs_prior and guide is None:
            raise ValueError(f"attack.search={self.config.search!r} samples where a prior predicts "
                             "inactive neurons: give attack.guide (e.g. {_target_: "
                             "attacks.pipelines.GeipingPrior, iterations: 200}; "
                             "conf/attack/spear_geiping.yaml)")
        if guide is not None and not needs_prior:
            users = [k for k, finder in FINDERS.items() if getattr(finder, "needs_prior", False)]
            raise ValueError(f"attack.guide is used only by search={' or '.join(map(repr, users))}, "
                             f"not search={self.config.search!r}: drop attack.guide")
        self.guide = guide
        if name is not None:
            self.name = str(name)  # the row label (conf/attack/*.yaml `name:`)

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        relu_linear_layer(model, self.layer)

    def recover_layer_inputs(
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None
    ) -> SpearResult:
        """Inputs of the attacked layer (pixels for the first layer, features deeper in)."""
        name, mod = relu_linear_layer(obs.model, self.layer)
        dW, db = layer_gradients(obs.gradients, name)
        meta = obs.update_meta or {}
        if float(meta.get("prune_keep", 1.0)) < 1.0:
            raise AttackNotApplicable(
                f"the update was pruned (defense prune, keep={meta['prune_keep']}): zeroing all but "
                "the largest entries destroys the low-rank factorisation dL/dW = dL/dZ·Xᵀ that SPEAR "
                "disaggregates")
        prior, guide_diag = None, {}
        if self.guide is not None:  # e.g. SPEAR + Geiping: a short reconstruction as the prior
            prior, guide_diag = self.guide(obs, mod, generator=generator, deadline=deadline)
        try:
            res = spear_core(
                mod.weight,
                mod.bias,
                dW,
                db,
                batch_size=obs.batch_size,
                generator=generator,
                config=self.config,
                deadline=deadline,
                client_dtype=dW.dtype,
                noise_std=meta.get("noise_std"),
                prior=prior,
            )
        except AttackNotApplicable as exc:
            noisy = float(meta.get("noise_std", 0.0)) > 0 or "quantize_bits" in meta
            if noisy and not self.config.noise_aware:
                raise AttackNotApplicable(
                    f"{exc} -- the update is noisy (defense: DP noise std {meta.get('noise_std')}, "
                    f"quantisation bits {meta.get('quantize_bits')}); set attack.noise_aware=true for "
                    "noise-aware rank and zero thresholds") from exc
            raise
        res.diagnostics.update(guide_diag)
        res.diagnostics["attacked_layer"] = name
        if obs.client_steps > 1:  # FedAvg: the first layer's update still factors through X
            res.diagnostics["update_model"] = f"fedavg_sum_of_{obs.client_steps}_steps"
        return res

    def reconstruct(
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None
    ) -> Reconstruction:
        res = self.recover_layer_inputs(obs, generator=generator, deadline=deadline)
        spec = obs.data_spec
        if res.inputs is None:
            empty = torch.empty((0, *spec.shape), dtype=DTYPE)
            return Reconstruction(empty, None, "failed", res.diagnostics)
        if res.inputs.shape[1] != spec.numel and self.features_only:
            empty = torch.empty((0, *spec.shape), dtype=DTYPE)
            return Reconstruction(empty, None, res.status, res.diagnostics, layer_inputs=res.inputs)
        if res.inputs.shape[1] != spec.numel:
            raise AttackNotApplicable(
                f"the attacked layer takes {res.inputs.shape[1]} features, not the {spec.numel} "
                "input values: it is not the first layer; use a pipeline (spear+fi+geiping) to map "
                "features back to inputs"
            )
        inputs = res.inputs.reshape(-1, *spec.shape)
        return Reconstruction(inputs, None, res.status, res.diagnostics,
                              layer_inputs=res.inputs if self.features_only else None)
