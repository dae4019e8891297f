"""Shared builders for tests: real pictures, FCNNs and client observations."""
from __future__ import annotations

import torch
from torch import nn

from attacks.base import Observation
from bench.client import cross_entropy, fedsgd_gradient
from bench.run.models import build_model, fcnn
from datasets import load_source, select_batch


def real_batch(dataset: str, B: int, seed: int = 0, prefer: str = "standin"):
    """A batch of real photographs (stand-in crops) or real MNIST digits, in [0,1] pixels."""
    src = load_source(dataset, prefer=prefer if dataset != "mnist" else "real")
    idx = select_batch(src.labels, B, seed=seed, batch_index=0)
    x01, y, _ = src.batch(idx)
    return src.info.spec(), x01.double(), y


def observe(model: nn.Module, spec, x01, y, *, batch_size_known=True, labels_known=False):
    x = spec.normalize(x01.double())
    grads, _ = fedsgd_gradient(model, x, y)
    return Observation(model=model, gradients=grads, loss_fn=cross_entropy, data_spec=spec,
                       batch_size=x.shape[0] if batch_size_known else None,
                       labels=y if labels_known else None)


def paper_fcnn(spec, width=200, depth=6, activation="relu", seed=0):
    factory = lambda **kw: fcnn(width=width, depth=depth, activation=activation, **kw)  # noqa: E731
    return build_model(factory, input_shape=spec.shape, num_classes=spec.num_classes, seed=seed)
