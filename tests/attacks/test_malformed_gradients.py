"""Malformed observations are named at the contract boundary, never raw torch errors.

``check_requirements`` (called by the runner for every attack before it starts) compares every
gradient with its parameter's shape; ``layer_gradients`` names a missing weight or bias key.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from attacks.base import AttackNotApplicable, check_gradients, check_requirements
from attacks.layers import layer_gradients
from bench.run.models import build_model, fcnn
from tests.helpers import observe, real_batch

CONF = Path(__file__).resolve().parents[2] / "conf"
ATTACKS = sorted(p.stem for p in (CONF / "attack").glob("*.yaml"))


@pytest.fixture(scope="module")
def obs():
    spec, x01, y = real_batch("mnist", 3)
    model = build_model(lambda **kw: fcnn(width=16, depth=2, **kw), input_shape=spec.shape,
                        num_classes=spec.num_classes, seed=0)
    return observe(model, spec, x01, y, batch_size_known=True, labels_known=True)


def _with(obs, name, grad):
    grads = dict(obs.gradients)
    if grad is None:
        grads.pop(name)
    else:
        grads[name] = grad
    return dataclasses.replace(obs, gradients=grads)


def _first_linear(obs) -> str:
    return next(n for n, m in obs.model.named_modules() if isinstance(m, torch.nn.Linear))


MALFORMED = {
    "transposed": lambda w, b: ("weight", w.T.contiguous()),
    "truncated": lambda w, b: ("weight", w[:, : w.shape[1] - 5]),
    "4d": lambda w, b: ("weight", w.reshape(w.shape[0], 1, 28, 28)),
    "short_bias": lambda w, b: ("bias", b[:-2]),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_gradient_names_both_shapes(obs, case):
    layer = _first_linear(obs)
    w, b = obs.gradients[f"{layer}.weight"], obs.gradients[f"{layer}.bias"]
    which, bad = MALFORMED[case](w, b)
    key = f"{layer}.{which}"
    expected = tuple(obs.gradients[key].shape)
    with pytest.raises(AttackNotApplicable) as info:
        check_gradients(_with(obs, key, bad))
    msg = str(info.value)
    assert key in msg
    assert str(expected) in msg
    assert str(tuple(bad.shape)) in msg


@pytest.mark.parametrize("attack_name", ATTACKS)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_attack_refuses_malformed_gradients_before_it_starts(obs, attack_name, case):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        attack = instantiate(compose(config_name="config", overrides=[f"attack={attack_name}"]).attack)
    layer = _first_linear(obs)
    which, bad = MALFORMED[case](obs.gradients[f"{layer}.weight"], obs.gradients[f"{layer}.bias"])
    with pytest.raises(AttackNotApplicable, match="shape"):
        check_requirements(attack, _with(obs, f"{layer}.{which}", bad))


def test_well_formed_observation_passes(obs):
    check_gradients(obs)


def test_unknown_key_and_needed_key(obs):
    layer = _first_linear(obs)
    g = dict(obs.gradients)
    g["nope.weight"] = torch.zeros(2)
    with pytest.raises(AttackNotApplicable, match="nope.weight"):
        check_gradients(dataclasses.replace(obs, gradients=g))
    with pytest.raises(AttackNotApplicable, match=f"{layer}.bias"):
        check_gradients(_with(obs, f"{layer}.bias", None), needed={f"{layer}.bias"})


def test_missing_weight_or_bias_key_is_named(obs):
    layer = _first_linear(obs)
    with pytest.raises(AttackNotApplicable, match=rf"weight gradient '{layer}\.weight'") as info:
        layer_gradients(_with(obs, f"{layer}.weight", None).gradients, layer)
    assert "needs a bias" not in str(info.value)
    with pytest.raises(AttackNotApplicable, match=rf"'{layer}\.bias'.*needs a bias"):
        layer_gradients(_with(obs, f"{layer}.bias", None).gradients, layer)


def test_spear_on_a_missing_weight_key_names_it(obs):
    from attacks.spear import SpearAttack

    layer = _first_linear(obs)
    with pytest.raises(AttackNotApplicable, match=rf"{layer}\.weight"):
        SpearAttack().reconstruct(_with(obs, f"{layer}.weight", None), generator=torch.Generator())
