"""CPA: unmixes a linear mixture of real pictures, recovers FCNN inputs, fails cleanly."""
from __future__ import annotations

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from attacks.base import AttackNotApplicable
from attacks.cpa import CpaAttack, CpaConfig, cpa_core, resolve_sign_scale
from attacks.feature_inversion import layer_input_fn
from bench.scoring.metrics import image_quality
from bench.run.models import build_model, small_cnn
from tests.helpers import observe, paper_fcnn, real_batch


def _matched_cos(rec: torch.Tensor, true: torch.Tensor) -> tuple[float, float, float]:
    """(mean |cos|, min |cos|, mean signed cos) over the Hungarian matching of rows."""
    a = rec / rec.norm(dim=1, keepdim=True)
    b = true / true.norm(dim=1, keepdim=True)
    c = (a.double() @ b.double().T)
    r, t = linear_sum_assignment(-c.abs().numpy())
    m = c[r, t]
    return float(m.abs().mean()), float(m.abs().min()), float(m.mean())


@pytest.fixture(scope="module")
def mixture():
    spec, x01, _ = real_batch("cifar10", 8, seed=1)
    X = spec.normalize(x01).reshape(8, -1)
    G = torch.randn(200, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return X, G @ X, G.sum(1)


def test_unmixes_a_linear_mixture_of_pictures(mixture):
    X, dW, db = mixture
    cfg = dict(progress=False, threads=1)
    white = cpa_core(dW, db, batch_size=8, source_shape=(3, 32, 32), config=CpaConfig(iterations=0, **cfg))
    res = cpa_core(dW, db, batch_size=8, source_shape=(3, 32, 32), config=CpaConfig(iterations=2000, **cfg))
    assert res.status == "ok" and res.inputs.shape == X.shape
    mean_abs, min_abs, mean_signed = _matched_cos(res.inputs, X)
    # measured 0.892 / 0.721 / 0.892 (whitening alone: 0.859 mean |cos|, signs random)
    assert mean_abs >= 0.85 and min_abs >= 0.6
    assert mean_signed >= 0.85, "the bias gradient should fix every source's sign"
    assert mean_abs > _matched_cos(white.inputs, X)[0] + 0.015, "ICA must improve on whitening alone"
    assert res.diagnostics["sign_scale"] == "bias"


def test_sign_and_scale_from_the_bias_gradient_are_exact():
    g = torch.Generator().manual_seed(3)
    X = torch.rand(5, 40, generator=g, dtype=torch.float64)
    G = torch.randn(30, 5, generator=g, dtype=torch.float64)
    c = torch.tensor([2.0, -0.5, 3.0, -7.0, 0.25], dtype=torch.float64)
    Xr, cr = resolve_sign_scale(X * c[:, None], G @ X, G.sum(1))
    assert torch.allclose(cr, c, rtol=1e-9) and torch.allclose(Xr, X, atol=1e-10)


def test_fcnn_first_layer_returns_images():
    spec, x01, y = real_batch("cifar10", 8, seed=1)
    obs = observe(paper_fcnn(spec, seed=1), spec, x01, y)
    gen = torch.Generator().manual_seed(0)
    rec = CpaAttack(iterations=2000, progress=False, threads=1).reconstruct(obs, generator=gen)
    base = CpaAttack(iterations=0, progress=False).reconstruct(obs, generator=gen)
    assert rec.inputs.shape == (8, *spec.shape) and rec.status == "ok"
    q = image_quality(spec.denormalize(rec.inputs), x01)
    # measured 16.0 dB mean after 2000 iterations, 13.7 dB for whitening alone
    assert q["psnr_mean"] >= 14.5
    assert q["psnr_mean"] > image_quality(spec.denormalize(base.inputs), x01)["psnr_mean"] + 1.0
    lo, hi = spec.box(rec.inputs)
    assert bool(((rec.inputs >= lo - 1e-9) & (rec.inputs <= hi + 1e-9)).all())


def test_batch_size_read_off_the_rank_when_not_revealed():
    spec, x01, y = real_batch("cifar10", 4, seed=2)
    obs = observe(paper_fcnn(spec, seed=2), spec, x01, y, batch_size_known=False)
    rec = CpaAttack(iterations=10, progress=False, threads=1).reconstruct(obs, generator=torch.Generator())
    assert rec.diagnostics["batch_size_est"] == 4 and rec.inputs.shape[0] == 4


def test_cnn_features_and_clean_refusal_to_return_them_as_images():
    spec, x01, y = real_batch("cifar10", 4, seed=2)
    model = build_model(small_cnn, input_shape=spec.shape, num_classes=10, seed=0)
    obs = observe(model, spec, x01, y)
    atk = CpaAttack(iterations=300, progress=False, threads=1)
    with pytest.raises(AttackNotApplicable, match="cpa\\+fi\\+geiping"):
        atk.reconstruct(obs, generator=torch.Generator())
    res = atk.recover_layer_inputs(obs)
    assert res.diagnostics["attacked_layer"] == "classifier.0"
    assert res.diagnostics["source"] == "embedding"
    with torch.no_grad():
        Z = layer_input_fn(model, "classifier.0")(spec.normalize(x01))
    assert res.inputs.shape == Z.shape
    assert _matched_cos(res.inputs, Z)[0] > 0.5


def test_refuses_non_finite_and_too_many_sources():
    dW = torch.ones(6, 10, dtype=torch.float64)
    dW[0, 0] = float("nan")
    with pytest.raises(AttackNotApplicable, match="non-finite"):
        cpa_core(dW, None, batch_size=2, source_shape=None, config=CpaConfig(progress=False))
    with pytest.raises(AttackNotApplicable, match="at most"):
        cpa_core(torch.randn(6, 10, dtype=torch.float64), None, batch_size=7, source_shape=None,
                 config=CpaConfig(progress=False))
