"""Shared builders for tests: real pictures, FCNNs and client observations."""
from __future__ import annotations

import time

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


class FakeClock:
    """A deterministic clock for deadline and stall tests: every read advances it by ``step``
    seconds, so an attack's clock moves with the work it does, not with the machine's load.
    ``install`` puts it in place of ``time.monotonic`` (deadlines) and/or ``time.perf_counter``
    (timings, the stall rule) for one test; ``reads`` and ``late_reads`` count the reads, the
    latter those at or past ``deadline``."""

    def __init__(self, step: float = 0.01, start: float = 1000.0):
        self.step, self.now, self.reads, self.late_reads = step, start, 0, 0
        self.deadline: float | None = None

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        if self.deadline is not None and self.now >= self.deadline:
            self.late_reads += 1
        return self.now

    def install(self, monkeypatch, *names: str) -> "FakeClock":
        for name in names or ("monotonic", "perf_counter"):
            monkeypatch.setattr(time, name, self)
        return self
