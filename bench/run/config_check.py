"""Start-up checks of a run's config: each bad value is named with the values it may take.

Run once per job (``Runner.__init__``) after the profile is applied, before any data or model is
touched, so that ``dtype=float16``, ``defense.noise_multiplier=-0.001`` or ``model.width=0`` fail
at once (exit 2) instead of after minutes or, worse, as a plausible row. Every knob is declared
once, with its range and meaning, in ``bench/config_schema.py``; a key declared nowhere is refused.
"""
from __future__ import annotations

import difflib
from typing import Mapping

from omegaconf import DictConfig, OmegaConf

from bench.config_schema import (ATTACKS, DATASET, DEFENSES, METRICS, MODELS, ROOT, STRUCTURAL, THREAT,
                                 Choice, Knob)


class ConfigError(ValueError):
    """A config value is outside what the benchmark accepts; the message names key and fix."""


class NothingToDo(ConfigError):
    """``n_batches`` asks for no work: a clear non-zero exit, never a silent success."""


DTYPES = ("float32", "float64")
GROUPS = ("dataset", "model", "attack", "threat", "defense", "metrics")


def _plain(node):
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _bad(key: str, value, knob: Knob, why: str) -> ConfigError:
    meaning = f" -- {knob.help}" if knob.help else ""
    return ConfigError(f"{key}={value!r} is not allowed ({why}); allowed: {knob.allowed()}{meaning}")


def check_value(key: str, value, knob: Knob) -> None:
    """Raise ConfigError naming ``key``, ``value`` and the allowed range unless ``knob`` allows it."""
    why = knob.problem(value)
    if why is not None:
        raise _bad(key, value, knob, why)


def _unknown(key: str, owner: str, table: Mapping) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in table], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key} is not a knob of {owner}{hint} (its knobs: {', '.join(sorted(table)) or 'none'}; "
                       f"declared in bench/config_schema.py)")


def _target_table(key: str, node, tables: Mapping[str, dict], where: str) -> tuple[str, dict]:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{key} must be a config node, got {node!r}")
    target = node.get("_target_")
    if target not in tables:
        raise ConfigError(f"{key}._target_={target!r} has no knob table in bench/config_schema.py "
                          f"{where}; declare its knobs there (known: {', '.join(sorted(tables))})")
    return target, tables[target]


def check_node(prefix: str, node: Mapping, table: Mapping[str, Knob], owner: str, rel: str = "") -> None:
    """Check every key of ``node`` (dotted key ``prefix.rel.key``) against ``table``."""
    for key, value in node.items():
        if key == "_target_":
            continue
        full = f"{rel}{key}"
        path = f"{prefix}.{full}"
        knob = table.get(full)
        if knob is None:
            if isinstance(value, Mapping) and any(k.startswith(full + ".") for k in table):
                check_node(prefix, value, table, owner, rel=full + ".")
                continue
            raise _unknown(path, owner, table)
        if knob.kind == "node":
            if value is None and knob.null is not None:
                continue
            target, sub = _target_table(path, value, knob.nodes, "ATTACKS")
            check_node(path, value, sub, target)
        else:
            check_value(path, value, knob)


def _check_device(key: str, value) -> None:
    if isinstance(value, str) and value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={value} requested but CUDA is not available on this machine; "
                              f"use {key}=auto or {key}=cpu")


def _check_root(cfg) -> None:
    groups = set(GROUPS)
    for key in cfg.keys():
        if key not in ROOT and key not in STRUCTURAL and key not in groups:
            raise _unknown(str(key), "the root config", ROOT)
    n = cfg.get("n_batches")
    if n == 0 and not isinstance(n, bool):
        raise NothingToDo("n_batches=0: nothing to do, no rows written; set n_batches >= 1")
    for key, knob in ROOT.items():
        if key in cfg:
            check_value(key, cfg.get(key), knob)
    _check_device("device", cfg.get("device"))


def validate_config(cfg: DictConfig, losses=()) -> None:
    """Raise ConfigError naming the first bad key, its value and its allowed range.

    ``losses``: the client's known loss names (``bench.client.LOSSES``); ``threat.loss`` must be one.
    """
    _check_root(cfg)
    present = {g: _plain(cfg.get(g)) for g in GROUPS if g in cfg}
    threat = dict(THREAT, loss=Choice(*sorted(losses), help=THREAT["loss"].help)) if losses else THREAT
    for group, table in (("dataset", DATASET), ("threat", threat), ("metrics", METRICS)):
        if group in present:
            check_node(group, present[group] or {}, table, group)
    if "model" in present:
        target, table = _target_table("model", present["model"], MODELS, "MODELS")
        check_node("model", present["model"], table, target)
    if "attack" in present:
        target, table = _target_table("attack", present["attack"], ATTACKS, "ATTACKS")
        check_node("attack", present["attack"], table, target)
        _check_attack_devices("attack", present["attack"])
    if "defense" in present:
        _check_defense(present["defense"] or {})
    metrics = present.get("metrics") or {}
    if metrics.get("exact_psnr_db", 0) > metrics.get("psnr_cap_db", float("inf")):
        raise ConfigError(f"metrics.exact_psnr_db={metrics['exact_psnr_db']!r} is above "
                          f"metrics.psnr_cap_db={metrics['psnr_cap_db']!r}: no image could count as exact")


def _check_attack_devices(prefix: str, node: Mapping) -> None:
    for key, value in node.items():
        if isinstance(value, Mapping):
            _check_attack_devices(f"{prefix}.{key}", value)
        elif key == "device":
            _check_device(f"{prefix}.device", value)


def _check_defense(node: Mapping) -> None:
    name = node.get("name")
    if name not in DEFENSES:
        raise ConfigError(f"defense.name={name!r} is unknown; use one of {', '.join(DEFENSES)}")
    table = {"name": Choice(*DEFENSES, help="the client's defense"), **DEFENSES[name]}
    check_node("defense", node, table, f"defense {name}")


__all__ = ["ConfigError", "NothingToDo", "DTYPES", "GROUPS", "validate_config", "check_value", "check_node"]
