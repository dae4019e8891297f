"""SPEAR behind the attack interface (``attacks.base.Attack``)."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction, resolve_deadline
from attacks.layers import layer_gradients, linear_layer, relu_linear_layer
from attacks.spear.config import DTYPE, SpearConfig
from attacks.spear.engine import SpearResult, spear_core


class SpearAttack:
    """SPEAR behind the attack interface. Attacks ``layer`` (default: the first nn.Linear)."""

    name: ClassVar[str] = "spear"
    requires: ClassVar[frozenset[str]] = frozenset({"relu_linear_layer"})

    # table labels of the finders that are methods of their own (rows' ``attack`` field)
    NAMES: ClassVar[dict[str, str]] = {"dictionary": "spear-dictionary", "guided": "spear+geiping"}

    def __init__(self, layer: str | None = None, features_only: bool = False, **config):
        self.layer = None if layer is None else str(layer)  # a sweep may pass attack.layer=1 as an int
        # features_only: when the attacked layer is not the first, return its recovered inputs
        # (features) as ``layer_inputs`` with no images instead of raising (the depth experiment)
        self.features_only = features_only
        self.config = SpearConfig(**config)
        self.name = self.NAMES.get(self.config.search, "spear")

    def prepare_layer(self, model: nn.Module) -> tuple[str, nn.Linear]:
        """The attacked layer, checked to feed a ReLU (what a pipeline's first stage needs)."""
        return relu_linear_layer(model, self.layer)

    def prepare(self, model: nn.Module, data_spec: DataSpec) -> None:
        """Check the attacked layer before any search: it feeds a ReLU and, unless
        ``features_only``, it is the model's first layer (so its inputs are the images)."""
        name, mod = self.prepare_layer(model)
        self._check_inputs(name, mod, data_spec)

    def _check_inputs(self, name: str, mod: nn.Linear, spec: DataSpec) -> None:
        if self.features_only or mod.in_features == spec.numel:
            return
        raise AttackNotApplicable(
            f"layer {name!r} takes {mod.in_features} features, not the {spec.numel} input values: it "
            "is not the first layer of the model, so SPEAR recovers that layer's inputs (features), "
            f"not images. For the features, use SpearAttack(layer={name!r}, features_only=True): "
            "reconstruct() then returns them as rec.layer_inputs (one row per sample). For images "
            "from a CNN, use attacks.pipelines.SpearFiGeiping (feature inversion, then Geiping et "
            "al.; see docs/api.md). From the command line: attack.features_only=true or "
            "attack=spear_fi_geiping")

    def recover_layer_inputs(
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None,
        time_budget_s: float | None = None,
    ) -> SpearResult:
        """Inputs of the attacked layer (pixels for the first layer, features deeper in)."""
        deadline = resolve_deadline(deadline, time_budget_s)
        name, mod = relu_linear_layer(obs.model, self.layer)
        dW, db = layer_gradients(obs.gradients, name)
        meta = obs.update_meta or {}
        if float(meta.get("prune_keep", 1.0)) < 1.0:
            raise AttackNotApplicable(
                f"the update was pruned (defense prune, keep={meta['prune_keep']}): zeroing all but "
                "the largest entries destroys the low-rank factorisation dL/dW = dL/dZ·Xᵀ that SPEAR "
                "disaggregates")
        prior, guide_diag = None, {}
        if self.config.search == "guided":  # SPEAR + Geiping: a short reconstruction as the prior
            from attacks.spear.finders.guided import geiping_prior

            prior, guide_diag = geiping_prior(
                obs, mod, iterations=self.config.guide_iterations,
                restarts=self.config.guide_restarts, generator=generator, deadline=deadline)
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
        self, obs: Observation, *, generator: torch.Generator, deadline: float | None = None,
        time_budget_s: float | None = None,
    ) -> Reconstruction:
        """Recover the batch. ``deadline``: absolute ``time.monotonic()``; ``time_budget_s``:
        seconds from now (the earlier counts). Inputs come back in model-input space."""
        deadline = resolve_deadline(deadline, time_budget_s)
        spec = obs.data_spec
        self._check_inputs(*linear_layer(obs.model, self.layer), spec)  # before any search
        res = self.recover_layer_inputs(obs, generator=generator, deadline=deadline)
        if res.inputs is None:
            empty = torch.empty((0, *spec.shape), dtype=DTYPE)
            return Reconstruction(empty, None, "failed", res.diagnostics)
        if res.inputs.shape[1] != spec.numel:  # features_only on a deeper layer
            empty = torch.empty((0, *spec.shape), dtype=DTYPE)
            return Reconstruction(empty, None, res.status, res.diagnostics, layer_inputs=res.inputs)
        inputs = res.inputs.reshape(-1, *spec.shape)
        return Reconstruction(inputs, None, res.status, res.diagnostics,
                              layer_inputs=res.inputs if self.features_only else None)
