"""The client: computes the update it sends to the server, with its defense and protocol.

Steps, one module each:

* :mod:`.fedsgd` -- the plain gradient of one batch (FedSGD; ``defense=none``);
* :mod:`.dp` -- DP-SGD: per-sample clipping, Gaussian noise, Opacus' privacy accounting;
* :mod:`.fedavg` -- FedAvg: local SGD epochs over mini-batches, the server sees the weight update;
* :mod:`.flower` -- the same FedAvg update from a real Flower ``NumPyClient``;
* :mod:`.defenses` -- top-p pruning and k-bit quantisation of the update.

Each defense is an entry of the config group ``conf/defense/``: its ``_target_`` names its update
function in :mod:`.updates`, its other keys are that function's knobs, ``name`` is the row's
``defense`` label. :func:`client_update` instantiates the entry (hydra ``instantiate``, partially)
and returns what the server attacks (``gradients``, in gradient units where the threat model
allows the conversion), what it knows about the update (``client_steps``, ``update_meta``, for the
``Observation``) and the row fields that record the defense (``defense_*``, ``update_norm``,
``dp_epsilon``).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Mapping

from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor, nn

from bench.client.fedsgd import LOSSES, LinearFactor, cross_entropy, fedsgd_gradient, fedsgd_gradient_factored
from bench.client.updates import ClientUpdate, update_norm

DEFENSE_DIR = Path(__file__).resolve().parents[2] / "conf" / "defense"
DEFENSES = tuple(sorted(p.stem for p in DEFENSE_DIR.glob("*.yaml")))


def defense_config(defense) -> dict:
    """The defense as a plain dict with its ``_target_``.

    A config node composed by hydra (``defense=dp_sgd defense.clip=0.5``) already has it; a dict
    without one (Python use: ``{"name": "dp_sgd", "clip": 0.5}``) is the group's entry
    ``conf/defense/<name>.yaml`` with the given keys on top, as hydra would compose it.
    """
    if defense is None:
        d = {"name": "none"}
    elif isinstance(defense, Mapping):
        d = dict(defense)
    else:
        d = OmegaConf.to_container(defense, resolve=True)
    if "_target_" not in d:
        name = d.get("name", "none")
        path = DEFENSE_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"defense.name={name!r} is not a defense; choose one of {', '.join(DEFENSES)} "
                             f"(conf/defense/*.yaml), or give its update function as defense._target_")
        d = {**OmegaConf.to_container(OmegaConf.load(path), resolve=True), **d}
    return d


def make_defense(defense):
    """The configured update function with its knobs bound (hydra ``instantiate``, partial), and the
    row fields that record the knobs (``defense_<knob>``)."""
    d = defense_config(defense)
    knobs = {k: v for k, v in d.items() if k != "name" and not k.startswith("_")}
    update = instantiate({"_target_": d["_target_"], **knobs}, _partial_=True)
    accepted = inspect.signature(update.func).parameters
    unknown = [k for k in knobs if k not in accepted]
    if unknown:
        own = [k for k, p in accepted.items() if p.kind == p.KEYWORD_ONLY and k not in ("seed", "gradient_fn")]
        raise ValueError(f"defense.{unknown[0]} is not a knob of defense {d.get('name')!r} ({d['_target_']}); "
                         f"its knobs: {', '.join(own) or 'none'}")
    row = {f"defense_{k}": v for k, v in knobs.items() if not isinstance(v, (dict, list))}
    return update, row


def samples_per_update(defense, batch_size: int) -> int:
    """Samples behind one observed update: ``clients × B`` when the defense sums ``clients``
    clients' updates (secure aggregation), else ``B``."""
    return int(batch_size) * int(defense_config(defense).get("clients", 1))


def client_update(defense, model: nn.Module, inputs: Tensor, labels: Tensor, loss_fn=cross_entropy,
                  *, seed: int = 0, gradient_fn=None) -> ClientUpdate:
    """The update the server sees for ``inputs`` under ``defense`` (a config node, or a dict naming
    a defense of ``conf/defense``).

    ``gradient_fn`` (default :func:`fedsgd_gradient`) computes one batch's gradient for the
    FedSGD-based defenses (none, aggregate, prune, quantize); the runner passes its own name for it
    so that tests can stand in a faulty client.
    """
    update, row = make_defense(defense)
    upd = update(model, inputs, labels, loss_fn, seed=seed, gradient_fn=gradient_fn or fedsgd_gradient)
    upd.row = {**row, **upd.row}
    return upd


__all__ = ["LOSSES", "cross_entropy", "fedsgd_gradient", "fedsgd_gradient_factored", "LinearFactor",
           "client_update", "ClientUpdate", "samples_per_update", "update_norm", "DEFENSES",
           "defense_config", "make_defense"]
