"""Label recovery from the last layer and batch size from the first layer's rank."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.base import AttackNotApplicable, Observation
from attacks.labels import _allocate, assign_labels, batch_size_from_rank, recover_labels
from bench.client import cross_entropy, fedsgd_gradient
from tests.helpers import observe, paper_fcnn, real_batch


def _recover(obs, B, seed=0):
    return recover_labels(obs, B, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_exact_for_eight_distinct_labels(dataset):
    spec, x01, y = real_batch(dataset, 8, seed=2)
    assert len(set(y.tolist())) == 8
    obs = observe(paper_fcnn(spec, seed=2), spec, x01, y, batch_size_known=False)
    B, info = batch_size_from_rank(obs)
    assert B == 8 and info["batch_size_source"] == "rank"
    labels, diag = _recover(obs, B)
    assert labels.tolist() == sorted(y.tolist())
    assert diag["labels_method"] == "bias" and diag["labels_present"] == 8


@pytest.mark.parametrize("labels", [[0, 0, 0, 3, 3, 5, 7, 7], [4] * 8, [9, 1, 9, 1, 9, 1, 9, 2]])
def test_counts_repeated_labels(labels):
    """Real pictures given repeated labels: every count comes out right, not just the set."""
    spec, x01, _ = real_batch("cifar10", 8, seed=3)
    y = torch.tensor(labels)
    obs = observe(paper_fcnn(spec, seed=3), spec, x01, y)
    rec, diag = _recover(obs, 8)
    assert rec.tolist() == sorted(labels)
    assert diag["labels_present"] == len(set(labels))
    assert diag["labels_count_residual"] < 0.2  # the softmax estimate is good, not just lucky rounding


def test_batch_larger_than_the_number_of_classes():
    """B=20 over 10 classes: some bias entries are positive although the class is present."""
    spec, x01, y = real_batch("cifar10", 20, seed=4)
    obs = observe(paper_fcnn(spec, seed=4), spec, x01, y)
    rec, _ = _recover(obs, 20)
    assert rec.tolist() == sorted(y.tolist())


def test_without_bias_the_weight_row_sums_count():
    spec, x01, _ = real_batch("cifar10", 6, seed=5)
    y = torch.tensor([2, 2, 6, 6, 6, 8])
    torch.manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 100), nn.ReLU(),
                          nn.Linear(100, 10, bias=False)).double()
    obs = observe(model, spec, x01, y)
    rec, diag = _recover(obs, 6)
    assert diag["labels_method"] == "weight_rowsum"
    assert rec.tolist() == sorted(y.tolist())


def test_assign_labels_pairs_labels_with_given_samples():
    spec, x01, y = real_batch("cifar10", 6, seed=6)
    y = torch.tensor([5, 1, 5, 0, 3, 1])
    obs = observe(paper_fcnn(spec, seed=6), spec, x01, y)
    rec, _ = _recover(obs, 6)
    assert rec.tolist() == sorted(y.tolist())  # sorted, not in batch order
    ordered, diag = assign_labels(obs, rec, spec.normalize(x01))
    assert ordered.tolist() == y.tolist() and diag["labels_assigned"] == "last_layer_lstsq"


def test_allocation_keeps_present_classes_and_the_total():
    k = _allocate(torch.tensor([2.6, 0.3, 0.45, 1.65]), torch.tensor([True, True, False, True]), 5)
    assert k.tolist() == [2, 1, 0, 2]  # floor + one each for present classes, then the largest deficit
    assert int(k.sum()) == 5 and all(k[[0, 1, 3]] >= 1)
    k = _allocate(torch.tensor([0.9, 0.9, 0.9]), torch.tensor([True, True, True]), 3)
    assert k.tolist() == [1, 1, 1]


def test_wrong_classifier_width_is_not_applicable():
    spec, x01, y = real_batch("cifar10", 2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7)).double()  # 7 outputs, 10 classes
    grads, _ = fedsgd_gradient(model, spec.normalize(x01), torch.tensor([1, 2]))
    obs = Observation(model=model, gradients=grads, loss_fn=cross_entropy, data_spec=spec)
    with pytest.raises(AttackNotApplicable, match="10 classes"):
        _recover(obs, 2)


def test_rank_layer_is_cheap_and_agrees_with_the_first_layer():
    from attacks.labels import rank_layer

    spec, x01, y = real_batch("tiny_imagenet", 7, seed=7)
    obs = observe(paper_fcnn(spec, seed=7), spec, x01, y, batch_size_known=False)
    assert rank_layer(obs) == "3"  # the 200x200 second layer, not the 200x12288 first one
    assert batch_size_from_rank(obs)[0] == batch_size_from_rank(obs, layer="1")[0] == 7
