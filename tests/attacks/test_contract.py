"""The attack contract (attacks/base.py, docs/api.md), checked for every attack registered in conf/attack/*.yaml.

Each attack is built the way the runner builds it (hydra ``_target_``) and handed observations of
three kinds: an image FCNN, an image CNN and a tabular FCNN. On each it must either return a
well-formed Reconstruction or raise AttackNotApplicable with a reason, honour the deadline, and
be applicable to at least one kind.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from attacks.base import AttackNotApplicable, Reconstruction, check_requirements
from bench.run.models import build_model, fcnn, small_cnn
from datasets import load_source, select_batch
from tests.helpers import observe

CONF = Path(__file__).resolve().parents[2] / "conf"
ATTACKS = sorted(p.stem for p in (CONF / "attack").glob("*.yaml"))
B = 3
DEADLINE_S = 3.0


def _attack(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"attack={name}"])
    return instantiate(cfg.attack)


def _observation(kind: str):
    src = load_source("adult" if kind == "tabular" else "cifar10", prefer="standin" if kind != "tabular" else "real")
    spec = src.info.spec()
    idx = select_batch(src.labels, B, seed=0, batch_index=0)
    x, y, _ = src.batch(idx)
    if kind == "cnn":
        factory = lambda **kw: small_cnn(channels=(4, 8), hidden=32, **kw)  # noqa: E731
    else:
        factory = lambda **kw: fcnn(width=32, depth=3, **kw)  # noqa: E731
    model = build_model(factory, input_shape=spec.shape, num_classes=spec.num_classes, seed=0)
    return observe(model, spec, x.double(), y, batch_size_known=True, labels_known=True)


@pytest.fixture(scope="module")
def observations():
    return {k: _observation(k) for k in ("fcnn", "cnn", "tabular")}


def test_every_attack_is_registered():
    assert {"spear", "geiping"} <= set(ATTACKS)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_contract(name, observations):
    attack = _attack(name)
    assert isinstance(attack.name, str) and attack.name
    assert isinstance(attack.requires, frozenset)
    applicable = 0
    for kind, obs in observations.items():
        try:
            check_requirements(attack, obs)
            attack.prepare(obs.model, obs.data_spec)
            t0 = time.monotonic()
            rec = attack.reconstruct(obs, generator=torch.Generator().manual_seed(0),
                                     time_budget_s=DEADLINE_S)
            elapsed = time.monotonic() - t0
        except AttackNotApplicable as exc:
            assert str(exc), f"{name} on {kind}: AttackNotApplicable without a reason"
            continue
        applicable += 1
        assert isinstance(rec, Reconstruction)
        assert rec.status in ("ok", "partial", "failed")
        assert tuple(rec.inputs.shape[1:]) == tuple(obs.data_spec.shape), (name, kind, rec.inputs.shape)
        assert rec.inputs.shape[0] <= B and rec.inputs.is_floating_point()
        if rec.status != "failed":
            assert rec.inputs.shape[0] == B and torch.isfinite(rec.inputs).all()
        assert all(isinstance(v, (int, float, str, bool)) or v is None for v in rec.diagnostics.values())
        if rec.labels is not None:
            assert rec.labels.shape[0] == rec.inputs.shape[0]
        # the deadline is honoured (slack for one optimisation step / one proposal batch)
        assert elapsed < DEADLINE_S + 20, f"{name} on {kind} ran {elapsed:.1f}s past a {DEADLINE_S}s deadline"
    assert applicable >= 1, f"{name} was applicable to none of {list(observations)}"


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_takes_a_time_budget(name, observations):
    """Every attack takes ``time_budget_s=`` (seconds from the call) beside the absolute
    ``deadline=``, and checks it before any work."""
    attack = _attack(name)
    obs = observations["fcnn"]
    with pytest.raises(ValueError, match="time_budget_s"):
        attack.reconstruct(obs, generator=torch.Generator().manual_seed(0), time_budget_s=0)


def test_resolve_deadline_takes_the_earlier():
    from attacks.base import resolve_deadline

    assert resolve_deadline(None, None) is None
    assert resolve_deadline(5.0, None) == 5.0
    now = time.monotonic()
    assert now + 99 <= resolve_deadline(None, 100.0) <= time.monotonic() + 100
    assert resolve_deadline(now - 1, 100.0) == now - 1          # the absolute deadline is earlier
    assert resolve_deadline(now + 1e6, 100.0) < now + 1e6       # the budget is earlier
    with pytest.raises(ValueError, match="time_budget_s"):
        resolve_deadline(None, -1)
