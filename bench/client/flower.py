"""A real Flower client (``flwr.client.NumPyClient``) whose ``fit`` trains the harness's model.

``fit`` is ordinary user code: load the server's parameters, run ``epochs`` passes of
``torch.optim.SGD`` over a ``DataLoader`` of the client's batch, return the new parameters. The
server side (:func:`flower_update`) sends the parameters, takes the ones ``fit`` returns and
attacks their difference, exactly as it would with a Flower deployment's client. It shares only
the sample order (``minibatch_order``) with :func:`bench.client.fedavg.fedavg_update`; the training
loop is torch's own optimiser, and a test checks the two updates agree.

Flower (``flwr``) is the optional extra ``[flower]`` (``make install`` installs it).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from bench.client.fedavg import minibatch_order

try:
    from flwr.client import NumPyClient
except ImportError:  # pragma: no cover - exercised only without the [flower] extra
    NumPyClient = None


def _require_flower():
    if NumPyClient is None:
        raise ImportError("defense.client=flower needs Flower: pip install -e '.[flower]' (make install does)")


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


if NumPyClient is not None:
    class TorchClient(NumPyClient):
        """One federated client holding one batch; ``fit`` = local SGD (the FedAvg client)."""

        def __init__(self, model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn):
            self.model = copy.deepcopy(model)
            self.data = TensorDataset(inputs, labels)
            self.loss_fn = loss_fn

        def get_parameters(self, config):
            return [p.detach().cpu().numpy().copy() for _, p in _trainable(self.model)]

        def set_parameters(self, parameters) -> None:
            with torch.no_grad():
                for (_, p), arr in zip(_trainable(self.model), parameters):
                    p.copy_(torch.as_tensor(np.asarray(arr), dtype=p.dtype, device=p.device))

        def fit(self, parameters, config):
            self.set_parameters(parameters)
            # the sample order of every local step (the harness's, so both clients see the same
            # mini-batches; a DataLoader's own shuffling draws extra numbers from its generator)
            steps = minibatch_order(len(self.data), epochs=int(config["epochs"]),
                                    local_batch=int(config["local_batch"]),
                                    shuffle=bool(config.get("shuffle", False)), seed=int(config.get("seed", 0)))
            loader = DataLoader(self.data, batch_sampler=[s.tolist() for s in steps])
            opt = torch.optim.SGD([p for _, p in _trainable(self.model)], lr=float(config["lr"]))
            self.model.train()
            loss = torch.zeros(())
            for xb, yb in loader:
                opt.zero_grad()
                loss = self.loss_fn(self.model(xb), yb)
                loss.backward()
                opt.step()
            return self.get_parameters({}), len(self.data), {"loss": float(loss.detach())}
else:  # pragma: no cover
    TorchClient = None


def flower_update(model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn, *, epochs: int,
                  local_batch: int, lr: float, shuffle: bool = False, seed: int = 0
                  ) -> tuple[dict[str, Tensor], int]:
    """(ΔW keyed by parameter name, local steps) from one ``TorchClient.fit`` round."""
    _require_flower()
    client = TorchClient(model, inputs, labels, loss_fn)
    sent = [p.detach().cpu().numpy().copy() for _, p in _trainable(model)]
    new, _n, _metrics = client.fit(sent, {"epochs": int(epochs), "local_batch": int(local_batch),
                                          "lr": float(lr), "shuffle": bool(shuffle), "seed": int(seed)})
    names = [n for n, _ in _trainable(model)]
    dev = next(model.parameters()).device
    delta = {n: torch.as_tensor(np.asarray(a) - s).to(dev) for n, a, s in zip(names, new, sent)}
    B = inputs.shape[0]
    steps = int(epochs) * -(-B // int(local_batch))
    return delta, steps


__all__ = ["TorchClient", "flower_update"]
