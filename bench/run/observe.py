"""The model as the server sees it, and the guard that an attack left the client's weights alone."""
from __future__ import annotations

import copy

import torch


def server_view(model: torch.nn.Module) -> torch.nn.Module:
    """The model as the server sees it: its own module objects (an attack may call ``eval()``,
    toggle ``requires_grad`` or add hooks) over the *same* weight storage, so a 311 M-parameter
    layer is not held twice. :func:`weights_fingerprint` before and after the attack catches an
    attack that writes into the weights in place."""
    memo = {id(t): torch.nn.Parameter(t.detach(), requires_grad=t.requires_grad)
            for t in model.parameters()}
    memo.update({id(t): t.detach() for t in model.buffers()})
    return copy.deepcopy(model, memo)


def weights_fingerprint(model: torch.nn.Module) -> list[float]:
    """Per-tensor float64 sums of the weights and buffers (no copies, O(parameters))."""
    return [float(torch.sum(t.detach(), dtype=torch.float64)) for t in
            [*model.parameters(), *model.buffers()] if t.is_floating_point()]
