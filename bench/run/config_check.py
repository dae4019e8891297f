"""Start-up checks of a run's config: each bad value is named with the values it may take.

Run once per job (``Runner.__init__``) on the composed config, before any data or model is
touched, so that ``dtype=float16``, ``defense.noise_multiplier=-0.001`` or ``model.width=0`` fail
at once (exit 2) instead of after minutes or, worse, as a plausible row. Every knob is declared
once, with its range and meaning, in ``bench/run/config_schema.py``; a key declared nowhere is
refused.
"""
from __future__ import annotations

import difflib
from typing import Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from bench.run.config_schema import (ATTACKS, DATASET, DEFENSES, METRICS, MODELS, ROOT, STRUCTURAL,
                                     THREAT, Choice, Knob)


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
                       f"declared in bench/run/config_schema.py)")


def _target_table(key: str, node, tables: Mapping[str, dict], where: str) -> tuple[str, dict]:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{key} must be a config node, got {node!r}")
    target = node.get("_target_")
    if target not in tables:
        raise ConfigError(f"{key}._target_={target!r} has no knob table in bench/run/config_schema.py "
                          f"{where}; declare its knobs there (known: {', '.join(sorted(tables))})")
    return target, tables[target]


def walk_node(prefix: str, node: Mapping, table: Mapping[str, Knob], owner: str, rel: str = ""
              ) -> Iterator[tuple[str, object, Knob]]:
    """``(dotted key, value, knob)`` of every leaf of ``node``; ConfigError for an undeclared key."""
    for key, value in node.items():
        if key == "_target_":
            continue
        full = f"{rel}{key}"
        path = f"{prefix}.{full}"
        knob = table.get(full)
        if knob is None:
            if isinstance(value, Mapping) and any(k.startswith(full + ".") for k in table):
                yield from walk_node(prefix, value, table, owner, rel=full + ".")
                continue
            raise _unknown(path, owner, table)
        if knob.kind == "node":
            if value is None and knob.null is not None:
                continue
            target, sub = _target_table(path, value, knob.nodes, "ATTACKS")
            yield from walk_node(path, value, sub, target)
        else:
            yield path, value, knob


def check_node(prefix: str, node: Mapping, table: Mapping[str, Knob], owner: str) -> None:
    """Check every key of ``node`` (dotted key ``prefix.key``) against ``table``."""
    for path, value, knob in walk_node(prefix, node, table, owner):
        check_value(path, value, knob)


def _check_device(key: str, value) -> None:
    if isinstance(value, str) and value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={value} requested but CUDA is not available on this machine; "
                              f"use {key}=auto or {key}=cpu")


def knobs(cfg, losses=()) -> Iterator[tuple[str, object, Knob]]:
    """``(dotted key, value, knob)`` of every value of the config, root keys first, in the order
    they are checked; ConfigError for a key or ``_target_`` declared nowhere."""
    groups = set(GROUPS)
    for key in cfg.keys():
        if key not in ROOT and key not in STRUCTURAL and key not in groups and "/" not in str(key):
            raise _unknown(str(key), "the root config", ROOT)
    for key, knob in ROOT.items():
        if key in cfg:
            yield key, cfg.get(key), knob
    present = {g: _plain(cfg.get(g)) for g in GROUPS if g in cfg}
    threat = dict(THREAT, loss=Choice(*sorted(losses), help=THREAT["loss"].help)) if losses else THREAT
    for group, table in (("dataset", DATASET), ("threat", threat), ("metrics", METRICS)):
        if group in present:
            yield from walk_node(group, present[group] or {}, table, group)
    for group, tables, where in (("model", MODELS, "MODELS"), ("attack", ATTACKS, "ATTACKS")):
        if group in present:
            target, table = _target_table(group, present[group], tables, where)
            yield from walk_node(group, present[group], table, target)
    if "defense" in present:
        node = present["defense"] or {}
        name = node.get("name")
        if name not in DEFENSES:
            raise ConfigError(f"defense.name={name!r} is unknown; use one of {', '.join(DEFENSES)}")
        table = {"name": Choice(*DEFENSES, help="the client's defense"), **DEFENSES[name]}
        yield from walk_node("defense", node, table, f"defense {name}")


def validate_config(cfg: DictConfig, losses=()) -> None:
    """Raise ConfigError naming the first bad key, its value and its allowed range.

    ``losses``: the client's known loss names (``bench.client.LOSSES``); ``threat.loss`` must be one.
    """
    n = cfg.get("n_batches")
    if n == 0 and not isinstance(n, bool):
        raise NothingToDo("n_batches=0: nothing to do, no rows written; set n_batches >= 1")
    for key, value, knob in knobs(cfg, losses):
        check_value(key, value, knob)
        if knob.kind == "device":
            _check_device(key, value)
    metrics = _plain(cfg.get("metrics")) or {}
    if metrics.get("exact_psnr_db", 0) > metrics.get("psnr_cap_db", float("inf")):
        raise ConfigError(f"metrics.exact_psnr_db={metrics['exact_psnr_db']!r} is above "
                          f"metrics.psnr_cap_db={metrics['psnr_cap_db']!r}: no image could count as exact")


__all__ = ["ConfigError", "NothingToDo", "DTYPES", "GROUPS", "validate_config", "knobs", "check_value",
           "check_node", "walk_node"]
