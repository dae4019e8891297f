"""Pipelines report the status of their final images: ``ok`` only when those images certify
themselves (their gradient reproduces the observed update); each stage's status is a diagnostic."""
from __future__ import annotations

import pytest
import torch

from attacks.base import Reconstruction
from attacks.feature_inversion import FeatureInversion
from attacks.geiping import GeipingAttack
from attacks.pipelines import SpearFiGeiping, gradient_residual
from attacks.spear import SpearAttack
from bench.scoring.metrics import image_quality
from bench.run.models import build_model, small_cnn
from tests.helpers import observe, real_batch


class _Refine:
    """A refining stage that returns given images and labels with status ``ok``."""

    def __init__(self, inputs, labels):
        self.inputs, self.labels = inputs, labels

    def reconstruct(self, obs, *, generator, deadline=None, init=None):
        return Reconstruction(self.inputs.clone(), self.labels.clone(), "ok", {})


@pytest.fixture(scope="module")
def setting():
    spec, x01, y = real_batch("cifar10", 3, seed=4)
    model = build_model(lambda **kw: small_cnn(channels=(4, 8), hidden=64, **kw), input_shape=spec.shape,
                        num_classes=10, seed=0, dtype=torch.float64)
    obs = observe(model, spec, x01, y, batch_size_known=True, labels_known=False)
    return spec, x01, y, obs


def _pipeline(refine):
    return SpearFiGeiping(SpearAttack(progress=False), FeatureInversion(iterations=5, progress=False, threads=1),
                          refine)


def test_a_pipeline_from_python_is_not_ok_when_its_images_are_not_exact(setting):
    """SPEAR's stage is exact (ok), but five FI and five Geiping iterations leave images far from
    the truth: the pipeline says partial, and each stage's own status is in the diagnostics."""
    spec, x01, _, obs = setting
    refine = GeipingAttack(max_iterations=5, restarts=1, progress=False, threads=1)
    rec = _pipeline(refine).reconstruct(obs, generator=torch.Generator().manual_seed(0))
    d = rec.diagnostics
    assert d["stage_stage1_status"] == "ok" and d["stage_fi_status"] == "ok" and d["stage_refine_status"] == "ok"
    assert image_quality(spec.denormalize(rec.inputs), x01)["psnr_mean"] < 40
    assert rec.status == "partial"
    assert d["final_grad_residual"] > d["final_residual_tol"] and "not certified" in d["reason"]


def test_the_final_images_decide_whatever_the_stages_say(setting):
    spec, x01, y, obs = setting
    x = spec.normalize(x01)
    exact = _pipeline(_Refine(x, y)).reconstruct(obs, generator=torch.Generator().manual_seed(0))
    assert exact.status == "ok" and exact.diagnostics["final_grad_residual"] < 1e-10
    # a refining stage that says ok about images 1 % off does not make the pipeline ok
    off = _pipeline(_Refine(x * 1.01, y)).reconstruct(obs, generator=torch.Generator().manual_seed(0))
    assert off.diagnostics["stage_refine_status"] == "ok" and off.status == "partial"
    # no refining stage and no labels revealed: the FI images cannot be checked
    fi_only = _pipeline(None).reconstruct(obs, generator=torch.Generator().manual_seed(0))
    assert fi_only.status == "partial" and "no labels" in fi_only.diagnostics["reason"]
    assert "stage_refine_status" not in fi_only.diagnostics


def test_gradient_residual_leaves_the_model_untouched(setting):
    spec, x01, y, obs = setting
    before = [p.detach().clone() for p in obs.model.parameters()]
    assert gradient_residual(obs, spec.normalize(x01), y) < 1e-12
    assert gradient_residual(obs, spec.normalize(x01).flip(0), y) > 1e-3  # labels paired wrongly
    assert all(torch.equal(a, p) for a, p in zip(before, obs.model.parameters()))
    assert all(p.grad is None for p in obs.model.parameters())
