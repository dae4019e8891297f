"""Geiping et al.'s optimisation attack: the objective, the recipe's mechanics, and what it reaches."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from attacks.base import AttackNotApplicable, DataSpec, Observation
from attacks.geiping import GeipingAttack, GeipingConfig, GradientMatcher, select_indices, total_variation
from bench.client import cross_entropy
from bench.scoring.metrics import image_quality
from tests.helpers import observe, paper_fcnn, real_batch

CPU = torch.device("cpu")


def _attack(obs, seed=0, init=None, deadline=None, **cfg):
    cfg.setdefault("progress", False)
    cfg.setdefault("threads", 1)
    return GeipingAttack(**cfg).reconstruct(obs, generator=torch.Generator().manual_seed(seed),
                                            deadline=deadline, init=init)


@pytest.fixture(scope="module")
def small():
    """4 real pictures (CIFAR-10 size) through a width-64, 3-layer ReLU FCNN."""
    spec, x01, y = real_batch("cifar10", 4, seed=1)
    model = paper_fcnn(spec, width=64, depth=3, seed=1)
    return spec, x01, y, model


@pytest.mark.parametrize("cost_fn", ["sim", "l2"])
@pytest.mark.parametrize("indices", ["def", "top3", "first2", "last4"])
def test_fast_linear_path_is_the_same_objective(small, cost_fn, indices):
    """The Gram identities give the autograd objective and its x-gradient to rounding."""
    spec, x01, y, model = small
    obs = observe(model, spec, x01, y, labels_known=True)
    fast = GradientMatcher(obs, y, GeipingConfig(cost_fn=cost_fn, indices=indices), torch.float64, CPU)
    slow = GradientMatcher(obs, y, GeipingConfig(cost_fn=cost_fn, indices=indices, fast_linear=False),
                           torch.float64, CPU)
    assert len(fast.fast) == 3 and len(slow.fast) == 0
    x = torch.randn(4, *spec.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    vals, grads = [], []
    for m in (fast, slow):
        xi = x.clone().requires_grad_(True)
        v = m(xi)
        (g,) = torch.autograd.grad(v, xi)
        vals.append(float(v.detach()))
        grads.append(g)
    assert vals[0] == pytest.approx(vals[1], rel=1e-10, abs=1e-13)
    assert torch.allclose(grads[0], grads[1], rtol=1e-8, atol=1e-12 * float(grads[1].abs().max()))
    assert vals[0] > 1e-3  # a random start does not already match


def test_matching_loss_is_zero_at_the_truth_and_positive_elsewhere(small):
    spec, x01, y, model = small
    obs = observe(model, spec, x01, y, labels_known=True)
    m = GradientMatcher(obs, y, GeipingConfig(), torch.float64, CPU)
    x = spec.normalize(x01)
    assert float(m(x.clone().requires_grad_(True)).detach()) < 1e-12
    assert float(m((x + 0.05 * torch.randn_like(x)).requires_grad_(True)).detach()) > 1e-4


def test_restarts_lower_the_matching_loss_and_the_best_is_kept(small):
    """Each restart ends below where it started; the best so far never rises; the returned batch
    is the restart with the lowest matching loss (recomputed here), not chosen by ground truth."""
    spec, x01, y, model = small
    obs = observe(model, spec, x01, y, labels_known=True)
    R = 3
    rec = _attack(obs, max_iterations=60, restarts=R, dtype="float64")
    d = rec.diagnostics
    assert rec.status == "ok" and d["iterations"] == 60 * R
    losses = [d[f"restart{r}_loss"] for r in range(R)]
    for r in range(R):
        assert d[f"restart{r}_loss"] < 0.5 * d[f"restart{r}_init_loss"], d
    best_so_far = [min(losses[: r + 1]) for r in range(R)]
    assert all(b2 <= b1 for b1, b2 in zip(best_so_far, best_so_far[1:]))
    assert d["best_restart"] == losses.index(min(losses))
    assert d["matching_loss"] == min(losses)
    m = GradientMatcher(obs, y, GeipingConfig(), torch.float64, CPU)
    again = float(m(rec.inputs.double().clone().requires_grad_(True)).detach())
    assert again == pytest.approx(d["matching_loss"], rel=1e-6, abs=1e-12)
    assert len(set(losses)) == R  # the restarts really started from different draws


def test_batch_of_one_small_relu_network_reaches_pinned_psnr():
    """One real picture (CIFAR-10 stand-in crop, 3x32x32), width-100 3-layer ReLU FCNN, labels and
    batch size hidden, the published recipe (signed Adam 0.1, drops at 3/8 5/8 7/8, TV 1e-4, box)
    for 400 iterations in float32. Measured on this machine: 55.3 dB (seeds 0-4 give 49.6-55.3 dB;
    what keeps it from SPEAR's exactness is the TV prior and the finite budget). Pinned at 45 dB:
    well above the ~30 dB where a 32x32 picture is recognisable, with room for BLAS differences."""
    spec, x01, y = real_batch("cifar10", 1)
    model = paper_fcnn(spec, width=100, depth=3)
    obs = observe(model, spec, x01, y, batch_size_known=False, labels_known=False)
    t0 = time.perf_counter()
    rec = _attack(obs, max_iterations=400, restarts=1, dtype="float32")
    assert time.perf_counter() - t0 < 30
    assert rec.status == "ok"
    assert rec.diagnostics["batch_size"] == 1 and rec.diagnostics["batch_size_source"] == "rank"
    assert rec.labels.tolist() == y.tolist() and rec.diagnostics["labels_source"] == "recovered"
    q = image_quality(spec.denormalize(rec.inputs.double()), x01)
    assert q["psnr_mean"] >= 45.0, q["psnr_mean"]


def test_outputs_stay_in_the_pixel_box_and_in_the_configured_dtype(small):
    spec, x01, y, model = small
    obs = observe(model, spec, x01, y, labels_known=True)
    rec = _attack(obs, max_iterations=20, lr=1.0, lr_decay=False)  # big steps push at the box
    lo, hi = spec.box(rec.inputs)
    assert rec.inputs.dtype == torch.float32 and rec.diagnostics["dtype"] == "float32"
    assert bool(((rec.inputs >= lo - 1e-6) & (rec.inputs <= hi + 1e-6)).all())
    assert bool(((rec.inputs - lo).abs() < 1e-6).any() or ((rec.inputs - hi).abs() < 1e-6).any())
    free = _attack(obs, max_iterations=20, lr=1.0, lr_decay=False, boxed=False)
    lo, hi = spec.box(free.inputs)
    assert bool(((free.inputs < lo - 1e-3) | (free.inputs > hi + 1e-3)).any())


def test_init_starts_the_first_restart(small):
    """A pipeline hands its images in as ``init``: starting at the truth with a tiny step stays there."""
    spec, x01, y, model = small
    obs = observe(model, spec, x01, y, batch_size_known=False, labels_known=False)
    x = spec.normalize(x01)
    rec = _attack(obs, init=x, max_iterations=5, lr=1e-4, total_variation=0.0, dtype="float64")
    assert rec.diagnostics["batch_size_source"] == "init"
    assert rec.diagnostics["restart0_init_loss"] < 1e-12
    assert image_quality(spec.denormalize(rec.inputs.double()), x01)["psnr_min"] > 50
    cold = _attack(obs, max_iterations=5, lr=1e-4, total_variation=0.0, dtype="float64")
    assert image_quality(spec.denormalize(cold.inputs.double()), x01)["psnr_mean"] < 20
    with pytest.raises(ValueError, match="per-sample shape"):
        _attack(obs, init=torch.zeros(4, 3, 8, 8), max_iterations=1)


def test_deadline_returns_the_best_so_far(small):
    spec, x01, y, model = small
    obs = observe(model, spec, x01, y, labels_known=True)
    past = _attack(obs, deadline=time.monotonic() - 1, max_iterations=10)
    assert past.status == "failed" and "deadline" in past.diagnostics["reason"]
    assert past.inputs.shape[0] == 0
    soon = _attack(obs, deadline=time.monotonic() + 0.5, max_iterations=10**7)
    assert soon.status == "partial" and 0 < soon.diagnostics["iterations"] < 10**7
    assert soon.inputs.shape == (4, *spec.shape)


def test_total_variation_and_index_selection():
    x = torch.zeros(1, 1, 4, 4)
    x[..., :, 2:] = 1.0  # one vertical edge: 4 of 12 horizontal pairs differ, no vertical pair
    assert float(total_variation(x)) == pytest.approx(4 / 12)
    assert select_indices([1.0, 5.0, 3.0, 4.0], "top2") == [1, 3]
    assert select_indices([1.0] * 5, "first2") == [0, 1]
    assert select_indices([1.0] * 5, "last2") == [3, 4]
    with pytest.raises(ValueError, match="indices"):
        GeipingConfig(indices="middle3")


def test_non_finite_gradient_is_not_applicable(small):
    spec, x01, y, model = small
    obs = observe(model, spec, x01, y, labels_known=True)
    grads = dict(obs.gradients)
    k = next(iter(grads))
    grads[k] = grads[k].clone()
    grads[k].view(-1)[0] = float("nan")
    bad = Observation(model=model, gradients=grads, loss_fn=cross_entropy, data_spec=spec, batch_size=4,
                      labels=y)
    with pytest.raises(AttackNotApplicable, match="not finite"):
        _attack(bad, max_iterations=2)


def test_works_through_conv_layers_via_autograd():
    """Non-linear-layer parameters (a conv) go through the ordinary double backward."""
    spec = DataSpec((3, 8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 4)).double()
    x01 = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([1, 3])
    obs = observe(model, spec, x01, y, labels_known=False)
    fast = GradientMatcher(obs, y, GeipingConfig(), torch.float64, CPU)
    assert list(fast.fast) == ["3"]
    rec = _attack(obs, max_iterations=50, dtype="float64")
    assert rec.status == "ok" and rec.diagnostics["restart0_loss"] < rec.diagnostics["restart0_init_loss"]
    assert sorted(rec.labels.tolist()) == [1, 3]


def test_hydra_config_builds_the_published_recipe():
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["attack=geiping"])
    attack = instantiate(cfg.attack)
    c = attack.cfg
    assert isinstance(attack, GeipingAttack) and attack.name == "geiping"
    assert (c.lr, c.optimizer, c.signed, c.boxed, c.cost_fn, c.init) == (0.1, "adam", True, True, "sim", "randn")
    assert c.lr_milestones == (0.375, 0.625, 0.875) and c.lr_gamma == 0.1
    assert c.max_iterations == 24000
