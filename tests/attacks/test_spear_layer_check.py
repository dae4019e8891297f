"""SpearAttack checks its layer before any search, with a message for Python callers.

On a CNN the first nn.Linear sees trunk features, not images: ``prepare`` (and ``reconstruct``
before any search) says so and names ``features_only=True`` (the recovered features) and the
CNN pipeline; with ``features_only=True`` the features come back as ``rec.layer_inputs``.
"""
from __future__ import annotations

import pytest
import torch

import attacks.spear.attack as spear_attack
from attacks.base import AttackNotApplicable
from attacks.spear import SpearAttack
from bench.run.models import build_model, small_cnn
from tests.helpers import observe, paper_fcnn, real_batch


@pytest.fixture(scope="module")
def cnn_obs():
    spec, x01, y = real_batch("cifar10", 3)
    factory = lambda **kw: small_cnn(channels=(4, 8), hidden=32, **kw)  # noqa: E731
    model = build_model(factory, input_shape=spec.shape, num_classes=spec.num_classes, seed=0,
                        dtype=torch.float64)
    return observe(model, spec, x01, y)


def test_prepare_refuses_a_layer_that_is_not_the_first(cnn_obs):
    with pytest.raises(AttackNotApplicable) as exc:
        SpearAttack().prepare(cnn_obs.model, cnn_obs.data_spec)
    msg = str(exc.value)
    assert "classifier.0" in msg and "features_only=True" in msg and "SpearFiGeiping" in msg
    assert "SpearAttack(layer='classifier.0', features_only=True)" in msg   # Python, first


def test_reconstruct_refuses_before_any_search(cnn_obs, monkeypatch):
    def no_search(*a, **k):
        raise AssertionError("the search ran before the layer check")

    monkeypatch.setattr(spear_attack, "spear_core", no_search)
    with pytest.raises(AttackNotApplicable, match="features_only=True"):
        SpearAttack().reconstruct(cnn_obs, generator=torch.Generator().manual_seed(0))


def test_features_only_returns_the_features():
    spec, x01, y = real_batch("mnist", 4)
    obs = observe(paper_fcnn(spec, width=100, depth=3), spec, x01, y)
    with pytest.raises(AttackNotApplicable, match="features_only=True"):
        SpearAttack(layer="3").prepare(obs.model, spec)    # the second linear layer
    attack = SpearAttack(layer="3", features_only=True, progress=False)
    attack.prepare(obs.model, spec)
    rec = attack.reconstruct(obs, generator=torch.Generator().manual_seed(0), time_budget_s=120)
    assert rec.status == "ok" and rec.inputs.shape[0] == 0
    assert rec.layer_inputs is not None and rec.layer_inputs.shape == (4, 100)


def test_relu_message_names_the_constructor_argument():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 2))
    from attacks.base import DataSpec

    spec = DataSpec(shape=(12,), mean=(0.0,) * 12, std=(1.0,) * 12, num_classes=2, kind="tabular")
    with pytest.raises(AttackNotApplicable, match=r"layer=<name> argument"):
        SpearAttack().prepare(model, spec)
