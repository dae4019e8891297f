"""SPEAR: exact on real pictures, clean failure everywhere its preconditions break."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.base import AttackNotApplicable, DataSpec, Observation
from attacks.spear import SpearAttack, SpearConfig, spear_core
from bench.scoring.metrics import image_quality
from tests.helpers import observe, paper_fcnn, real_batch


def _attack(obs, seed=0, **cfg):
    cfg.setdefault("progress", False)
    return SpearAttack(**cfg).reconstruct(obs, generator=torch.Generator().manual_seed(seed))


# Real photographs (stand-in crops) at b = 2 and 8, real MNIST digits at b = 2, 8 and 16.
# b = 16 costs ~10^5 proposals (~2^15 * H_16), seconds on 2 cores; once per threat model.
CASES = [("cifar10", 2), ("cifar10", 8), ("mnist", 2), ("mnist", 8), ("mnist", 16)]


@pytest.mark.parametrize("dataset,B", CASES)
@pytest.mark.parametrize("known", [True, False], ids=["B-known", "B-unknown"])
def test_exact_on_real_pictures(dataset, B, known):
    spec, x01, y = real_batch(dataset, B, seed=B)
    model = paper_fcnn(spec, seed=B)
    obs = observe(model, spec, x01, y, batch_size_known=known)
    rec = _attack(obs)
    assert rec.status == "ok", rec.diagnostics
    assert rec.diagnostics["batch_size_est"] == B
    q = image_quality(spec.denormalize(rec.inputs), x01)
    assert q["psnr_min"] >= 100.0, q
    assert sorted(q["rec_for_true"]) == list(range(B))


def test_labels_never_needed_and_not_returned():
    spec, x01, y = real_batch("cifar10", 4)
    rec = _attack(observe(paper_fcnn(spec), spec, x01, y, labels_known=False))
    assert rec.status == "ok" and rec.labels is None


def test_sigmoid_network_not_applicable():
    spec, x01, y = real_batch("cifar10", 4)
    obs = observe(paper_fcnn(spec, activation="sigmoid"), spec, x01, y)
    with pytest.raises(AttackNotApplicable, match="not followed by a ReLU"):
        _attack(obs)


def test_batch_not_smaller_than_width_not_applicable():
    spec, x01, y = real_batch("cifar10", 12)
    obs = observe(paper_fcnn(spec, width=10), spec, x01, y, batch_size_known=True)
    with pytest.raises(AttackNotApplicable, match="not smaller than the layer's width"):
        _attack(obs)


def test_unknown_batch_full_rank_not_applicable():
    spec, x01, y = real_batch("cifar10", 12)
    obs = observe(paper_fcnn(spec, width=10), spec, x01, y, batch_size_known=False)
    with pytest.raises(AttackNotApplicable, match="full rank"):
        _attack(obs)


def test_nan_gradient_not_applicable():
    spec, x01, y = real_batch("cifar10", 4)
    obs = observe(paper_fcnn(spec), spec, x01, y)
    grads = dict(obs.gradients)
    grads["1.weight"] = grads["1.weight"].clone()
    grads["1.weight"][0, 0] = float("nan")
    bad = Observation(obs.model, grads, obs.loss_fn, obs.data_spec, obs.batch_size)
    with pytest.raises(AttackNotApplicable, match="non-finite"):
        _attack(bad)


def test_all_zero_gradient_fails_cleanly():
    spec, x01, y = real_batch("cifar10", 4)
    obs = observe(paper_fcnn(spec), spec, x01, y)
    zero = {k: torch.zeros_like(v) for k, v in obs.gradients.items()}
    rec = _attack(Observation(obs.model, zero, obs.loss_fn, obs.data_spec, None))
    assert rec.status == "failed"
    assert rec.inputs.shape[0] == 0
    assert "zero" in rec.diagnostics["reason"]


def test_wrong_layer_name_and_non_first_layer():
    spec, x01, y = real_batch("cifar10", 4)
    obs = observe(paper_fcnn(spec), spec, x01, y)
    with pytest.raises(AttackNotApplicable, match="no module named"):
        _attack(obs, layer="nope")
    with pytest.raises(AttackNotApplicable, match="not the first layer"):
        _attack(obs, layer="3")  # second Linear: its inputs are features, not pixels


def test_deeper_layer_features_exact():
    """Attacking layer 2 recovers its inputs (first-layer ReLU features) exactly."""
    spec, x01, y = real_batch("cifar10", 6)
    model = paper_fcnn(spec)
    obs = observe(model, spec, x01, y)
    res = SpearAttack(layer="3", progress=False).recover_layer_inputs(
        obs, generator=torch.Generator().manual_seed(0))
    assert res.status == "ok"
    with torch.no_grad():
        feats = model[:3](spec.normalize(x01))
    err = torch.cdist(res.inputs, feats).min(dim=1).values.max()
    assert err < 1e-8 * feats.norm(dim=1).max()


def test_deadline_and_budget_give_failed_status_not_crash():
    spec, x01, y = real_batch("cifar10", 16)
    obs = observe(paper_fcnn(spec), spec, x01, y)
    rec = _attack(obs, max_proposals=64, proposals_per_step=64, search="sampling")
    assert rec.status in ("failed", "partial")
    assert rec.diagnostics["proposals"] == 64
    assert "reason" in rec.diagnostics
    # an already-expired deadline stops after one step, for either finder
    rec2 = SpearAttack(progress=False, proposals_per_step=64, search="sampling").reconstruct(
        obs, generator=torch.Generator().manual_seed(0), deadline=0.0)
    assert rec2.diagnostics["timed_out"] == 1 and rec2.status != "ok"
    rec3 = SpearAttack(progress=False, l1_starts=4).reconstruct(
        obs, generator=torch.Generator().manual_seed(0), deadline=0.0)
    assert rec3.diagnostics["timed_out"] == 1 and rec3.status != "ok"
    assert rec3.diagnostics["proposals"] == 4 and "never found" in rec3.diagnostics["reason"]


def test_seeded_by_generator_only():
    spec, x01, y = real_batch("cifar10", 8)
    obs = observe(paper_fcnn(spec), spec, x01, y)
    a = _attack(obs, seed=3, proposals_per_step=128)
    torch.manual_seed(12345)  # the global RNG must not matter
    b = _attack(obs, seed=3, proposals_per_step=128)
    assert a.diagnostics["proposals"] == b.diagnostics["proposals"]
    assert torch.equal(a.inputs, b.inputs)


def test_wrong_disaggregation_is_caught_by_the_sign_check():
    """Residuals cannot certify a reconstruction (any invertible Q reproduces dL/dW); the
    ReLU sign check must. Mixing two true directions must be reported, never returned as ok."""
    from attacks.spear import low_rank_factors, sign_check

    spec, x01, y = real_batch("cifar10", 4)
    model = paper_fcnn(spec)
    obs = observe(model, spec, x01, y)
    good = _attack(obs)
    W, b = model[1].weight.detach(), model[1].bias.detach()
    dW = obs.gradients["1.weight"]
    U, S, Vh = low_rank_factors(dW)
    L = U[:, :4] * S[:4].sqrt()
    R = Vh[:4] * S[:4].sqrt()[:, None]
    # the true disaggregation from the exact reconstruction: X^T = Q^-1 R  =>  R = Q X^T
    X = good.inputs.reshape(4, -1)
    Qtrue = torch.linalg.lstsq(X.T, R.T).solution.T
    assert int(sign_check(W @ R.T, b, L, Qtrue, 1.5e-7).sum()) == 0
    mixed = Qtrue.clone()
    mixed[:, 0] = Qtrue[:, 0] + 0.5 * Qtrue[:, 1]
    assert int(sign_check(W @ R.T, b, L, mixed, 1.5e-7).sum()) > 0


def test_core_accepts_float32_client_gradients():
    """A float32 client caps exactness (docs/spear.md) but SPEAR must still reconstruct."""
    spec, x01, y = real_batch("cifar10", 6)
    model = paper_fcnn(spec).float()
    x = spec.normalize(x01.float())
    loss = nn.functional.cross_entropy(model(x), y)
    dW, db = torch.autograd.grad(loss, [model[1].weight, model[1].bias])
    res = spear_core(model[1].weight, model[1].bias, dW, db, batch_size=6,
                     generator=torch.Generator().manual_seed(0), config=SpearConfig(progress=False))
    assert res.status == "ok", res.diagnostics
    q = image_quality(spec.denormalize(res.inputs.reshape(6, *spec.shape)), x01.double())
    assert 60.0 <= q["psnr_mean"] < 200.0


def test_data_spec_roundtrip():
    spec = DataSpec((3, 2, 2), (0.5, 0.4, 0.3), (0.2, 0.3, 0.4), 10)
    x = torch.rand(5, 3, 2, 2, dtype=torch.float64)
    assert torch.allclose(spec.denormalize(spec.normalize(x)), x)
