"""The client's defenses and protocols (bench/client): DP-SGD, FedAvg, Flower, aggregation,
pruning, quantisation, label-homogeneous batches."""
import math

import pytest
import torch

from bench.client import client_update, cross_entropy, fedsgd_gradient, samples_per_update
from bench.client.batches import homogeneous_batch
from bench.client.dp import clip_per_sample, dp_epsilon, per_sample_gradients, per_sample_norms
from bench.client.fedavg import fedavg_update, minibatch_order
from bench.run.models import fcnn


def _setup(B=6, width=40, seed=0):
    torch.manual_seed(seed)
    model = fcnn((3, 6, 6), 10, width=width, depth=3).double()
    x = torch.randn(B, 3, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 10, (B,))
    return model, x, y


def _maxdiff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def test_per_sample_gradients_average_to_the_batch_gradient():
    model, x, y = _setup()
    ps = per_sample_gradients(model, x, y, cross_entropy)
    g, _ = fedsgd_gradient(model, x, y)
    assert _maxdiff({n: t.mean(0) for n, t in ps.items()}, g) < 1e-12


@pytest.mark.parametrize("clip", [0.05, 0.5, 100.0])
def test_dp_clipping_bounds_every_per_sample_norm(clip):
    model, x, y = _setup()
    ps = per_sample_gradients(model, x, y, cross_entropy)
    clipped, before = clip_per_sample(ps, clip)
    after = per_sample_norms(clipped)
    assert bool((after <= clip * (1 + 1e-9)).all())
    big = before > clip
    # clipped samples sit on the sphere, the others are untouched
    assert torch.allclose(after[big], torch.full_like(after[big], clip), rtol=1e-5)
    assert torch.allclose(after[~big], before[~big])
    if clip == 0.05:
        assert bool(big.all())
    # the update without noise is the mean of the clipped per-sample gradients
    upd = client_update({"name": "dp_sgd", "clip": clip, "noise_multiplier": 0.0}, model, x, y)
    assert _maxdiff(upd.gradients, {n: t.mean(0) for n, t in clipped.items()}) < 1e-12


def test_dp_noise_has_the_configured_std():
    model, x, y = _setup(B=8, width=60)
    sigma, clip, B = 0.7, 0.3, 8
    clean = client_update({"name": "dp_sgd", "clip": clip, "noise_multiplier": 0.0}, model, x, y, seed=11)
    noisy = client_update({"name": "dp_sgd", "clip": clip, "noise_multiplier": sigma}, model, x, y, seed=11)
    noise = torch.cat([(noisy.gradients[n] - clean.gradients[n]).reshape(-1) for n in clean.gradients]) * B
    n = noise.numel()
    assert n > 5000
    std = float(noise.std())
    # sample std of n normals: relative standard error 1/sqrt(2n) (about 0.01 here); allow 5 of them
    assert abs(std / (sigma * clip) - 1) < 5 / math.sqrt(2 * n)
    assert abs(float(noise.mean())) < 5 * sigma * clip / math.sqrt(n)
    assert noisy.update_meta["noise_std"] == pytest.approx(sigma * clip / B)
    assert noisy.row["dp_epsilon"] > 0 and math.isfinite(noisy.row["dp_epsilon"])
    # the same seed gives the same noise; another seed another
    again = client_update({"name": "dp_sgd", "clip": clip, "noise_multiplier": sigma}, model, x, y, seed=11)
    other = client_update({"name": "dp_sgd", "clip": clip, "noise_multiplier": sigma}, model, x, y, seed=12)
    assert _maxdiff(noisy.gradients, again.gradients) == 0.0
    assert _maxdiff(noisy.gradients, other.gradients) > 0.0


def test_dp_epsilon_from_opacus_falls_with_more_noise():
    e1, e2 = dp_epsilon(0.8, 0.01, 100, 1e-5), dp_epsilon(2.0, 0.01, 100, 1e-5)
    assert math.isfinite(e1) and math.isfinite(e2) and e2 < e1
    assert dp_epsilon(0.0, 0.01, 1, 1e-5) == math.inf


@pytest.mark.parametrize("lr", [1e-3, 0.1])
def test_fedavg_one_full_batch_epoch_is_minus_lr_times_the_fedsgd_gradient(lr):
    model, x, y = _setup()
    g, _ = fedsgd_gradient(model, x, y)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta, steps = fedavg_update(model, x, y, cross_entropy, epochs=1, local_batch=x.shape[0], lr=lr)
    assert steps == 1
    assert _maxdiff(delta, {n: -lr * t for n, t in g.items()}) < 1e-15
    assert _maxdiff(before, {n: p.detach() for n, p in model.named_parameters()}) == 0.0  # untouched
    upd = client_update({"name": "fedavg", "epochs": 1, "lr": lr}, model, x, y)
    assert _maxdiff(upd.gradients, g) < 1e-12 and upd.client_steps == 1
    assert upd.update_meta["lr"] == lr
    # several steps move away from the one-step gradient
    multi = client_update({"name": "fedavg", "epochs": 5, "lr": 0.5, "local_batch": 2}, model, x, y)
    assert multi.client_steps == 15 and _maxdiff(multi.gradients, g) > 1e-6


def test_minibatch_order_covers_every_sample_each_epoch():
    steps = minibatch_order(7, epochs=3, local_batch=3, shuffle=True, seed=4)
    assert len(steps) == 9 and [len(s) for s in steps[:3]] == [3, 3, 1]
    for e in range(3):
        assert sorted(torch.cat(steps[3 * e:3 * e + 3]).tolist()) == list(range(7))


def test_flower_client_update_equals_the_harness_fedavg_update():
    pytest.importorskip("flwr")
    from bench.client.flower import TorchClient, flower_update
    from flwr.client import NumPyClient

    assert issubclass(TorchClient, NumPyClient)
    model, x, y = _setup(B=7)
    kw = dict(epochs=3, local_batch=3, lr=0.05, shuffle=True, seed=5)
    ours, s1 = fedavg_update(model, x, y, cross_entropy, **kw)
    theirs, s2 = flower_update(model, x, y, cross_entropy, **kw)
    assert s1 == s2 == 9
    assert _maxdiff(ours, theirs) < 1e-13
    assert max(float(t.abs().max()) for t in ours.values()) > 1e-3  # a real update, not zero
    a = client_update({"name": "fedavg", "client": "flower", **kw}, model, x, y, seed=5)
    b = client_update({"name": "fedavg", "client": "harness", **kw}, model, x, y, seed=5)
    assert _maxdiff(a.gradients, b.gradients) < 1e-10


def test_server_without_lr_sees_the_negated_update():
    model, x, y = _setup()
    upd = client_update({"name": "fedavg", "epochs": 1, "lr": 0.01, "server_knows": False}, model, x, y)
    g, _ = fedsgd_gradient(model, x, y)
    assert "lr" not in upd.update_meta
    assert _maxdiff(upd.gradients, {n: 0.01 * t for n, t in g.items()}) < 1e-15


def test_secure_aggregation_is_the_gradient_of_the_pooled_batch():
    model, x, y = _setup(B=8)
    assert samples_per_update({"name": "aggregate", "clients": 4}, 2) == 8
    upd = client_update({"name": "aggregate", "clients": 4}, model, x, y)
    g, _ = fedsgd_gradient(model, x, y)
    assert _maxdiff(upd.gradients, g) < 1e-14
    # what was sent is the sum of the four clients' gradients
    assert upd.row["update_norm"] == pytest.approx(4 * math.sqrt(sum(float(t.pow(2).sum()) for t in g.values())))


def test_prune_and_quantize():
    model, x, y = _setup()
    g, _ = fedsgd_gradient(model, x, y)
    p = client_update({"name": "prune", "keep": 0.1}, model, x, y).gradients
    for n, t in p.items():
        kept = int((t != 0).sum())
        assert kept <= math.ceil(0.1 * t.numel())
        if kept:  # the kept entries are the largest ones, unchanged
            assert float(t.abs().max()) == float(g[n].abs().max())
            assert float(t[t != 0].abs().min()) >= float(g[n].abs().flatten().kthvalue(g[n].numel() - kept + 1).values) - 1e-18
    q = client_update({"name": "quantize", "bits": 4}, model, x, y).gradients
    for n, t in q.items():
        step = float(g[n].abs().max()) / 7
        assert len(torch.unique(t)) <= 15
        assert float((t - g[n]).abs().max()) <= step / 2 + 1e-15


def test_label_homogeneous_batches_have_one_label():
    labels = torch.arange(100) % 5
    for b in range(4):
        idx = homogeneous_batch(labels.numpy(), 10, seed=0, batch_index=b)
        assert len(set(idx)) == 10 and len(set(labels[idx].tolist())) == 1
    with pytest.raises(ValueError):
        homogeneous_batch(labels.numpy(), 30, seed=0, batch_index=0)


def test_unknown_defense_is_a_clear_error():
    model, x, y = _setup()
    with pytest.raises(ValueError, match="defense.name"):
        client_update({"name": "homomorphic"}, model, x, y)
