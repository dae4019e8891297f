"""Locating the attacked linear layer and checking that a ReLU follows it.

Shared by every attack that inverts one linear layer (SPEAR, CPA). Works on any ``nn.Module``:
first through ``torch.fx`` (the graph says exactly what consumes the layer's output), and, for
models fx cannot trace, through the registration order of an ``nn.Sequential``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import AttackNotApplicable

_RELU_FUNCS = {F.relu, torch.relu, torch.relu_}


def linear_layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Linear]:
    """Return ``(name, module)`` of the attacked layer: ``layer`` by name, or the first nn.Linear."""
    modules = dict(model.named_modules())
    if layer:
        if layer not in modules:
            linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
            raise AttackNotApplicable(
                f"model has no module named {layer!r}; its linear layers are {linears}"
            )
        mod = modules[layer]
        if not isinstance(mod, nn.Linear):
            raise AttackNotApplicable(
                f"attacked layer {layer!r} is a {type(mod).__name__}, not nn.Linear"
            )
        return layer, mod
    for name, mod in modules.items():
        if isinstance(mod, nn.Linear):
            return name, mod
    raise AttackNotApplicable("model has no nn.Linear layer to attack")


def _is_relu_node(node, modules) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), nn.ReLU)
    if node.op == "call_function":
        return node.target in _RELU_FUNCS
    if node.op == "call_method":
        return node.target in ("relu", "relu_")
    return False


def followed_by_relu(model: nn.Module, layer: str) -> bool:
    """True when every consumer of ``layer``'s output is a ReLU (the SPEAR precondition)."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:
        gm = None
    if gm is not None:
        modules = dict(gm.named_modules())
        nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer]
        if not nodes:
            return False
        for node in nodes:
            users = list(node.users)
            if not users or not all(_is_relu_node(u, modules) for u in users):
                return False
        return True
    # Fallback for untraceable models: the next registered sibling inside an nn.Sequential.
    parent_name, _, child = layer.rpartition(".")
    parent = dict(model.named_modules())[parent_name] if parent_name else model
    if isinstance(parent, nn.Sequential):
        names = [n for n, _ in parent.named_children()]
        i = names.index(child)
        return i + 1 < len(names) and isinstance(parent[i + 1], nn.ReLU)
    return False


def relu_linear_layer(model: nn.Module, layer: str | None) -> tuple[str, nn.Linear]:
    """The attacked layer, or AttackNotApplicable naming why it cannot be attacked."""
    name, mod = linear_layer(model, layer)
    if not followed_by_relu(model, name):
        raise AttackNotApplicable(
            f"layer {name!r} is not followed by a ReLU (SPEAR needs ReLU-induced gradient "
            f"sparsity); pick a Linear layer that feeds a ReLU with the attack's layer=<name> "
            f"argument (attack.layer=<name> on the command line)"
        )
    return name, mod


def numerical_rank(singular_values: torch.Tensor, dtype: torch.dtype,
                   rel_tol: float | None = None) -> int:
    """Number of singular values above ``rel_tol`` times the largest (0 for a zero matrix).

    The default tolerance is eps^(2/3) of the dtype the gradient was computed in (never below
    float64's): ``dL/dW = dL/dZ · Xᵀ`` has rank B, the rest is rounding noise.
    """
    S = singular_values
    if S.numel() == 0 or float(S[0]) <= 0:
        return 0
    if rel_tol is None:
        eps = torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(torch.float64).eps
        rel_tol = max(eps, torch.finfo(torch.float64).eps) ** (2 / 3)
    return int((S > rel_tol * S[0]).sum())


def layer_gradients(gradients, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias gradient of the attacked layer from an Observation's gradient mapping."""
    wkey, bkey = f"{name}.weight", f"{name}.bias"
    if wkey not in gradients:
        raise AttackNotApplicable(
            f"observation lacks the weight gradient {wkey!r} of the attacked layer {name!r}; "
            f"the client's update must include it (it holds the layer's inputs)"
        )
    if bkey not in gradients:
        raise AttackNotApplicable(
            f"observation lacks the bias gradient {bkey!r}; the attacked layer {name!r} needs a bias "
            f"(SPEAR recovers the scale of each sample from the bias gradient)"
        )
    gw, gb = gradients[wkey], gradients[bkey]
    if gw.ndim != 2 or gb.ndim != 1 or gb.shape[0] != gw.shape[0]:
        raise AttackNotApplicable(
            f"gradients of the attacked layer {name!r} do not fit together: weight gradient "
            f"{tuple(gw.shape)}, bias gradient {tuple(gb.shape)} (expected (m, n) and (m,))"
        )
    return gw, gb


__all__ = ["linear_layer", "followed_by_relu", "relu_linear_layer", "layer_gradients", "numerical_rank"]
