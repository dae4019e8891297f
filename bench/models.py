"""Models the client trains. The default is the paper's fully connected ReLU network."""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def fcnn(input_shape, num_classes: int, width: int = 200, depth: int = 6,
         activation: str = "relu", init: str = "default") -> nn.Sequential:
    """``depth`` linear layers: input -> width -> ... -> width -> num_classes, activation between.

    ``init="default"`` keeps PyTorch's Kaiming-uniform initialisation (an untrained network, as in
    the paper); ``init="normal"`` draws N(0, 1/fan_in) weights and N(0, 0.01) biases.
    """
    if depth < 2:
        raise ValueError(f"fcnn needs depth >= 2 (one hidden layer), got {depth}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    n_in = int(math.prod(input_shape))
    dims = [n_in] + [int(width)] * (depth - 1) + [int(num_classes)]
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < depth - 1:
            layers.append(ACTIVATIONS[activation]())
    model = nn.Sequential(*layers)
    if init == "normal":
        for mod in model.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, 0.0, 1.0 / math.sqrt(mod.in_features))
                nn.init.normal_(mod.bias, 0.0, 0.01)
    elif init != "default":
        raise ValueError(f"unknown init {init!r}; choose 'default' or 'normal'")
    return model


def build_model(factory, *, input_shape, num_classes: int, seed: int, dtype=torch.float64,
                device="cpu") -> nn.Module:
    """Instantiate ``factory`` with a private RNG state seeded by ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = factory(input_shape=input_shape, num_classes=num_classes)
    return model.to(device=device, dtype=dtype)
