"""CNN pipelines: layer-input recovery -> feature inversion -> gradient-matching refinement.

For a CNN, SPEAR (exactly) or CPA (approximately) recovers the inputs of the first linear layer
after the convolutional trunk -- the trunk's *features* of every sample (Kariyappa et al., "Cocktail Party Attack", ICML 2023,
arXiv 2209.05578; the SPEAR paper's CNN table, arXiv 2403.03945). Feature
inversion (``attacks.feature_inversion``) turns them into images whose features match, and
Geiping et al.'s attack (``attacks.geiping``) refines those images against the full gradient,
starting from them. Each stage's output and time is kept: the recovered features in
``Reconstruction.layer_inputs`` (the runner scores ``feature_cosine``), the FI images in
``Reconstruction.stages["fi"]`` (scored as ``stage_fi_psnr``), and the stage times as diagnostics.

The three parts are built by hydra from conf/attack/{spear,cpa}_fi_geiping.yaml (``stage1``,
``fi``, ``refine``); ``refine: null`` stops after feature inversion.
"""
from __future__ import annotations

import time
from typing import ClassVar

import torch
from torch import nn

from attacks.base import AttackNotApplicable, DataSpec, Observation, Reconstruction, resolve_deadline
from attacks.feature_inversion import FeatureInversion, intra_op_threads
from attacks.layers import linear_layer

_RANK = {"ok": 2, "partial": 1, "failed": 0}


def _scalars(prefix: str, diag: dict) -> dict:
    return {f"{prefix}{k}": v for k, v in diag.items()
            if isinstance(v, (int, float, str, bool)) or v is None}


class FeaturePipeline:
    """``stage1`` recovers the attacked layer's inputs, ``fi`` inverts them, ``refine`` polishes.

    ``stage1`` is any object with a ``layer`` attribute and ``recover_layer_inputs(obs, generator=,
    deadline=)`` returning a result with ``status``, ``inputs`` (B×n, rows = samples) and
    ``diagnostics`` (SpearAttack, CpaAttack). ``refine`` is an attack whose ``reconstruct`` takes
    ``init=`` (GeipingAttack), or None.
    """

    name: ClassVar[str] = "features+fi+geiping"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, stage1, fi: FeatureInversion, refine=None, threads: int | None = None):
        self.stage1 = stage1
        self.fi = fi
        self.refine = refine
        self.threads = threads  # intra-op threads for all stages (None: PyTorch's setting)
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

    def reconstruct(self, obs: Observation, *, generator: torch.Generator,
                    deadline: float | None = None, time_budget_s: float | None = None) -> Reconstruction:
        deadline = resolve_deadline(deadline, time_budget_s)
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
        status = res.status
        if res.inputs is None:
            diag["reason"] = f"stage 1 recovered no features: {res.diagnostics.get('reason', '')}"
            return Reconstruction(torch.empty((0, *spec.shape), dtype=torch.float64), None, "failed", diag)
        features = res.inputs.detach().to("cpu", torch.float64)

        t0 = time.perf_counter()
        x_fi, fi_diag = self.fi.invert(obs.model, layer, features, spec, generator=generator,
                                       deadline=deadline)
        diag["time_fi_s"] = time.perf_counter() - t0
        diag.update(_scalars("fi_", fi_diag))
        stages = {"fi": x_fi}
        final, labels = x_fi, None

        if self.refine is not None:
            t0 = time.perf_counter()
            device = next(obs.model.parameters()).device
            rec = self.refine.reconstruct(obs, generator=generator, deadline=deadline,
                                          init=x_fi.to(device))
            diag["time_refine_s"] = time.perf_counter() - t0
            diag.update(_scalars("refine_", rec.diagnostics))
            if rec.inputs.shape[0]:
                final = rec.inputs.detach().to("cpu", torch.float64)
                stages["refine"] = final
            labels = rec.labels
            status = min(status, rec.status, key=lambda s: _RANK.get(s, 0))
        if fi_diag.get("timed_out") or diag.get("refine_timed_out"):
            status = min(status, "partial", key=lambda s: _RANK.get(s, 0))
        return Reconstruction(final, labels, status, diag, layer_inputs=features, stages=stages)


class SpearFiGeiping(FeaturePipeline):
    """SPEAR recovers the features exactly, FI inverts them, Geiping refines (SPEAR paper, CNN table)."""

    name: ClassVar[str] = "spear+fi+geiping"


class CpaFiGeiping(FeaturePipeline):
    """CPA recovers the features approximately, FI inverts them, Geiping refines."""

    name: ClassVar[str] = "cpa+fi+geiping"


__all__ = ["FeaturePipeline", "SpearFiGeiping", "CpaFiGeiping"]
