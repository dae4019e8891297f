"""Every attack checks its own Observation: Python callers get the runner's named errors.

Each attack of conf/attack/*.yaml (built as the runner builds it) gets malformed observations
straight from Python -- half-precision, integer or numpy gradients, transposed, truncated,
reshaped or mis-sized ones, an extra or a missing key, NaN -- and must refuse each at once with
a ValueError / AttackNotApplicable that names the problem (``ObservationError`` is both), before
any search or optimisation starts. A SIGALRM guard turns a hang into a failure instead of a stuck
suite. Every attack also has a default time budget, so a call without ``deadline`` ends.
"""
from __future__ import annotations

import dataclasses
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from attacks.base import (AttackNotApplicable, Observation, ObservationError, check_budget,
                          default_deadline, validate_observation)
from bench.client import cross_entropy, fedsgd_gradient
from bench.run.models import build_model, fcnn
from datasets import REGISTRY

CONF = Path(__file__).resolve().parents[2] / "conf"
ATTACKS = sorted(p.stem for p in (CONF / "attack").glob("*.yaml"))
GUARD_S = 30  # far above the instant refusal; only a hang reaches it


@contextmanager
def no_hang(seconds: int = GUARD_S):
    def expired(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s: the attack hangs on a malformed observation")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _attack(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return instantiate(compose(config_name="config", overrides=[f"attack={name}"]).attack)


@pytest.fixture(scope="module")
def obs():
    """CIFAR-10-shaped batch of 4, FCNN 3072 -> 200 -> 10 (first layer "1", last "3")."""
    spec = REGISTRY["cifar10"].spec()
    g = torch.Generator().manual_seed(0)
    x = torch.randn((4, *spec.shape), generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    model = build_model(lambda **kw: fcnn(width=200, depth=2, **kw), input_shape=spec.shape,
                        num_classes=spec.num_classes, seed=0)
    grads, _ = fedsgd_gradient(model, x, y)
    return Observation(model=model, gradients=grads, loss_fn=cross_entropy, data_spec=spec, batch_size=4,
                       labels=y)


def _each(fn):
    return lambda g: {k: fn(v) for k, v in g.items()}


def _one(key, fn):
    return lambda g: {**g, key: fn(g[key])}


def _nan(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


# case -> (change of the gradient dict, words the message must hold)
MALFORMED = {
    "float16": (_each(lambda t: t.half()), ["float16"]),
    "int": (_each(lambda t: t.to(torch.int32)), ["int32"]),
    "numpy": (_each(lambda t: t.numpy()), ["numpy", "torch.Tensor"]),
    "transposed_weight": (_one("1.weight", lambda t: t.T.contiguous()), ["'1.weight'", "(3072, 200)", "(200, 3072)"]),
    "truncated_weight": (_one("1.weight", lambda t: t[:, :-5]), ["'1.weight'", "(200, 3067)"]),
    "wrong_bias_length": (_one("1.bias", lambda t: t[:-2]), ["'1.bias'", "(198,)", "(200,)"]),
    "last_layer_bias": (_one("3.bias", lambda t: t[:5]), ["'3.bias'", "(5,)", "(10,)"]),
    "extra_dim_weight": (_one("1.weight", lambda t: t.unsqueeze(-1)), ["'1.weight'", "(200, 3072, 1)"]),
    "extra_key": (lambda g: {**g, "nope.weight": torch.zeros(3, dtype=torch.float64)}, ["nope.weight"]),
    "missing_key": (lambda g: {k: v for k, v in g.items() if k != "1.weight"}, ["1.weight", "lacks"]),
    "nan": (_one("1.weight", _nan), ["'1.weight'", "non-finite"]),
}


@pytest.fixture(scope="module")
def attacks():
    return {name: _attack(name) for name in ATTACKS}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_every_attack_refuses_a_malformed_observation_by_name(attacks, obs, case):
    change, words = MALFORMED[case]
    bad = dataclasses.replace(obs, gradients=change(dict(obs.gradients)))
    for name, attack in attacks.items():
        with no_hang(), pytest.raises((ValueError, AttackNotApplicable)) as info:
            attack.reconstruct(bad, generator=torch.Generator().manual_seed(0))
        msg = str(info.value)
        assert isinstance(info.value, ObservationError), f"{name} on {case}: {type(info.value).__name__}: {msg}"
        for w in words:
            assert w in msg, f"{name} on {case}: {w!r} not in {msg!r}"


@pytest.mark.parametrize("field, value, words", [
    ("labels", torch.tensor([0.0, 1.0, 2.0, 3.0]), ["labels", "integer"]),
    ("labels", torch.tensor([0, 1, 2]), ["3 labels", "batch_size=4"]),
    ("labels", torch.tensor([0, 1, 2, 10]), ["[0, 10)"]),
    ("batch_size", 0, ["batch_size=0"]),
    ("client_steps", 0, ["client_steps=0"]),
])
def test_revealed_facts_are_checked(obs, field, value, words):
    with pytest.raises(ObservationError) as info:
        validate_observation(dataclasses.replace(obs, **{field: value}))
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_well_formed_observation_passes_and_needed_keys_are_named(obs):
    validate_observation(obs)
    partial = dataclasses.replace(obs, gradients={k: v for k, v in obs.gradients.items() if k.startswith("1.")})
    validate_observation(partial, needed={"1.weight", "1.bias"})  # all an attack on layer 1 needs
    with pytest.raises(ObservationError, match=r"\['3.bias', '3.weight'\]"):
        validate_observation(partial)  # default: every trainable parameter
    with pytest.raises(ObservationError, match="not a torch.nn.Module"):
        validate_observation(dataclasses.replace(obs, model=None))


def test_every_attack_config_has_a_default_time_budget():
    for name in ATTACKS:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            node = compose(config_name="config", overrides=[f"attack={name}"]).attack
        budget = node.get("time_budget_s")
        assert budget is not None and 0 < budget <= 86400, f"attack {name}: time_budget_s={budget}"


def test_default_deadline_and_budget_knob():
    assert default_deadline(123.0, 5) == 123.0
    assert default_deadline(None, None) is None
    assert check_budget(None) is None and check_budget(2) == 2.0
    for bad in (0, -1, float("inf"), True, "60"):
        with pytest.raises(ValueError, match="time_budget_s"):
            check_budget(bad)


@pytest.mark.parametrize("name", ["spear", "geiping", "cpa"])
def test_a_call_without_deadline_stops_at_the_attack_budget(obs, name):
    """No ``deadline``: the attack's own ``time_budget_s`` ends the call (partial/failed, not a hang)."""
    kw = {"spear": dict(search="sampling", max_proposals=None, proposals_per_step=64, progress=False),
          "geiping": dict(max_iterations=10**7, progress=False, threads=1),
          "cpa": dict(iterations=10**8, check_every=10, progress=False, threads=1)}[name]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        node = compose(config_name="config", overrides=[f"attack={name}", "attack.time_budget_s=0.5"]).attack
    attack = instantiate(node, **kw)
    # SPEAR on a batch wider than the layer allows nothing to find: only the budget can end it
    o = obs if name != "spear" else _no_relu_sparsity(obs)
    with no_hang():
        rec = attack.reconstruct(o, generator=torch.Generator().manual_seed(0))
    assert rec.status in ("partial", "failed"), rec.diagnostics


def _no_relu_sparsity(obs):
    """A gradient with every ReLU active (a dense dL/dZ): SPEAR's filter never passes a proposal."""
    g = dict(obs.gradients)
    gen = torch.Generator().manual_seed(1)
    dz = torch.randn(4, 200, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 3072, generator=gen, dtype=torch.float64)
    g["1.weight"], g["1.bias"] = dz.T @ x, dz.sum(0)
    return dataclasses.replace(obs, gradients=g, batch_size=None)
