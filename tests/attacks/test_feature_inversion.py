"""Feature inversion: from exact trunk features back to the pictures on a small CNN."""
from __future__ import annotations

import pytest
import torch

from attacks.base import AttackNotApplicable
from attacks.feature_inversion import FeatureInversion, layer_input_fn
from bench.scoring.metrics import image_quality
from bench.run.models import build_model, small_cnn
from tests.helpers import real_batch


@pytest.fixture(scope="module")
def setting():
    spec, x01, _ = real_batch("cifar10", 4, seed=2)
    model = build_model(small_cnn, input_shape=spec.shape, num_classes=10, seed=0)
    with torch.no_grad():
        Z = layer_input_fn(model, "classifier.0")(spec.normalize(x01))
    return spec, x01, model, Z


def test_layer_input_fn_matches_a_forward_hook(setting):
    spec, x01, model, Z = setting
    seen = []
    h = model.classifier[0].register_forward_pre_hook(lambda _m, inp: seen.append(inp[0]))
    with torch.no_grad():
        model(spec.normalize(x01))
    h.remove()
    assert Z.shape == (4, 32 * 8 * 8) and torch.equal(Z, seen[0])


def test_recovers_pictures_from_exact_features(setting):
    spec, x01, model, Z = setting
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    fi = FeatureInversion(iterations=300, progress=False, threads=1)
    x, diag = fi.invert(model, "classifier.0", Z, spec, generator=gen())
    x0, _ = FeatureInversion(iterations=0, progress=False).invert(model, "classifier.0", Z, spec, generator=gen())
    q = image_quality(spec.denormalize(x), x01)
    q0 = image_quality(spec.denormalize(x0), x01)
    # measured: 19.5 dB mean after 300 iterations from an 8.7 dB random start, feature cos 0.995
    assert q["psnr_mean"] >= 17.5 and q["psnr_mean"] >= q0["psnr_mean"] + 6.0
    assert diag["feature_cos_mean"] >= 0.98 and diag["iterations"] == 300
    lo, hi = spec.box(x)
    assert bool(((x >= lo - 1e-6) & (x <= hi + 1e-6)).all())


def test_scale_of_features_does_not_matter(setting):
    spec, _, model, Z = setting
    fi = FeatureInversion(iterations=30, progress=False, threads=1)
    a, _ = fi.invert(model, "classifier.0", Z, spec, generator=torch.Generator().manual_seed(1))
    b, _ = fi.invert(model, "classifier.0", Z * 7.5, spec, generator=torch.Generator().manual_seed(1))
    assert float((a - b).abs().mean()) < 1e-3  # float32 rounding only


def test_wrong_feature_length_is_refused(setting):
    spec, _, model, Z = setting
    with pytest.raises(AttackNotApplicable, match="features"):
        FeatureInversion(iterations=1, progress=False).invert(
            model, "classifier.0", Z[:, :100], spec, generator=torch.Generator())
