"""Models the client trains. The default is the paper's fully connected ReLU network."""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def fcnn(input_shape, num_classes: int, width: int = 200, depth: int = 6,
         activation: str = "relu", init: str = "default") -> nn.Sequential:
    """``depth`` linear layers: input -> width -> ... -> width -> num_classes, activation between.

    ``activation="relu"`` is the SPEAR paper's network; ``"sigmoid"`` is the client of CI-Net's
    "sigmoid" row (its authors swap every ReLU for a sigmoid), which SPEAR cannot attack.

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


def _load_weights(model: nn.Module, weights: str | None) -> nn.Module:
    """Load a state_dict file into ``model`` (None: keep the random initialisation)."""
    if weights:
        from pathlib import Path

        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"model weights {path} not found: put a state_dict saved with torch.save there, or set "
                "model.weights=null to use the untrained network")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def weights_state(weights: str | None) -> str:
    """``untrained`` or ``trained:<sha256 of the weights file>`` for result rows."""
    if not weights:
        return "untrained"
    import hashlib
    from pathlib import Path

    return "trained:" + hashlib.sha256(Path(weights).expanduser().read_bytes()).hexdigest()


def small_cnn(input_shape, num_classes: int, channels=(16, 32), hidden: int = 256,
              weights: str | None = None) -> nn.Sequential:
    """A small VGG-style CNN for quick runs and tests: a conv trunk, then ``Linear -> ReLU -> Linear``.

    Trunk: per entry of ``channels`` a 3×3 conv (padding 1), ReLU and 2×2 max-pool. The first
    classifier layer ``classifier.0`` (trunk features -> ``hidden``) is followed by a ReLU: the
    layer SPEAR and CPA attack, as VGG-16's first classifier layer.
    """
    from collections import OrderedDict

    c_in, h, w = (int(v) for v in input_shape)
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(c_in, int(c), 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, h, w = int(c), h // 2, w // 2
    if h < 1 or w < 1:
        raise ValueError(f"input {tuple(input_shape)} is too small for {len(channels)} pooling stages")
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(*layers), flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(c_in * h * w, int(hidden)), nn.ReLU(),
                                 nn.Linear(int(hidden), int(num_classes)))))
    return _load_weights(model, weights)


def vgg16(input_shape, num_classes: int, weights: str | None = None, batch_norm: bool = False) -> nn.Module:
    """torchvision's VGG-16 (untrained unless ``weights`` names a state_dict), dropout off.

    The classifier keeps VGG-16's shape (25088 -> 4096 -> 4096 -> ``num_classes``); its first layer
    ``classifier.0`` is the one CPA (Kariyappa et al. 2023) attacks. Dropout is set to 0 so that the
    client's gradient is a deterministic function of the batch (the server can recompute it).
    """
    from torchvision.models import vgg16 as tv_vgg16, vgg16_bn

    if len(input_shape) != 3 or int(input_shape[0]) != 3 or min(input_shape[1:]) < 32:
        raise ValueError(f"vgg16 needs RGB inputs of at least 32×32, got {tuple(input_shape)}")
    ctor = vgg16_bn if batch_norm else tv_vgg16
    return _load_weights(ctor(weights=None, num_classes=int(num_classes), dropout=0.0), weights)


def build_model(factory, *, input_shape, num_classes: int, seed: int, dtype=torch.float64,
                device="cpu") -> nn.Module:
    """Instantiate ``factory`` with a private RNG state seeded by ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = factory(input_shape=input_shape, num_classes=num_classes)
    return model.to(device=device, dtype=dtype)
