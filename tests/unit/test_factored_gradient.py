"""The scoring's factored gradient: same values as the dense one, residual unchanged."""
import pytest
import torch
from torch import nn

from bench.client import LinearFactor, fedsgd_gradient, fedsgd_gradient_factored
from bench.scoring.metrics import grad_residual


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(300, 40), nn.ReLU(), nn.Linear(40, 30), nn.ReLU(),
                         nn.Linear(30, 5)).double()


def test_factored_gradient_equals_the_dense_gradient_and_skips_the_big_weight():
    model = _model()
    x, y = torch.randn(6, 3, 10, 10, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 0])
    dense, loss = fedsgd_gradient(model, x, y)
    fact, loss_f = fedsgd_gradient_factored(model, x, y, min_entries=5000)
    assert loss == loss_f and list(fact) == list(dense)
    assert isinstance(fact["1.weight"], LinearFactor) and fact["1.weight"].shape == (40, 300)
    assert isinstance(fact["3.weight"], torch.Tensor)  # 1 200 entries: dense
    full = fact["1.weight"].rows(0, 40)
    assert torch.allclose(full, dense["1.weight"], rtol=0, atol=1e-15)
    assert all(torch.equal(fact[k], dense[k]) for k in dense if k != "1.weight")


def test_residual_of_a_factored_gradient_matches_the_dense_residual():
    model = _model()
    x, y = torch.randn(6, 300, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 0])
    observed, _ = fedsgd_gradient(model, x, y)
    x2 = x + 1e-3 * torch.randn_like(x)
    dense, _ = fedsgd_gradient(model, x2, y)
    fact, _ = fedsgd_gradient_factored(model, x2, y, min_entries=5000)
    r = grad_residual(observed, dense)
    assert r > 1e-6 and grad_residual(observed, fact) == pytest.approx(r, rel=1e-9)
    assert grad_residual(observed, fedsgd_gradient_factored(model, x, y, min_entries=5000)[0]) < 1e-14


def test_residual_names_a_shape_mismatch():
    model = _model()
    x, y = torch.randn(2, 300, dtype=torch.float64), torch.tensor([0, 1])
    observed, _ = fedsgd_gradient(model, x, y)
    fact, _ = fedsgd_gradient_factored(model, x, y, min_entries=5000)
    observed["1.weight"] = observed["1.weight"][:, :-1]
    with pytest.raises(ValueError, match="1.weight"):
        grad_residual(observed, fact)
