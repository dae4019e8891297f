"""What identifies a run and its rows: the semantic config and its hash (without the runtime knobs),
the rows file's path, the data's identity and each batch's fingerprint (resume), and the check
that an experiment runs under a profile it defines."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bench.run.config_check import ConfigError

# Config keys that change results; everything else (paths, logger, hydra) does not.
SEMANTIC_KEYS = ("dataset", "model", "attack", "threat", "defense", "batch_size", "seed", "dtype",
                 "metrics", "time_budget_s")


CONF = Path(__file__).resolve().parents[2] / "conf"


def check_profile(cfg: DictConfig) -> None:
    """An experiment runs only under a profile it defines (conf/budget/<experiment>/<profile>.yaml, or
    the same path in a directory added with ``hydra.searchpath``): hydra would otherwise skip the
    missing budget file and run the experiment's bare defaults."""
    experiment, roots = str(cfg.name), [CONF]
    try:
        from hydra.core.hydra_config import HydraConfig

        runtime = HydraConfig.get().runtime
        experiment = runtime.choices.get("experiment") or experiment
        roots = [Path(s.path) for s in runtime.config_sources if s.schema == "file"]
    except ValueError:  # outside a hydra job (compose API, tests): the repository's conf/
        pass
    known = sorted({p.stem for root in roots for p in (root / "budget" / experiment).glob("*.yaml")})
    if known and cfg.profile not in known:
        raise ConfigError(f"profile={cfg.profile!r} is not defined for experiment={experiment!r}; "
                          f"choose one of {known} (conf/budget/{experiment}/)")


# Knobs that cannot change a result, wherever they appear (attack.threads, attack.fi.progress,
# ...): left out of the resume hash, so changing them recomputes nothing.
RUNTIME_KEYS = frozenset({"threads", "progress"})


def _without_runtime(node):
    if isinstance(node, dict):
        return {k: _without_runtime(v) for k, v in node.items() if k not in RUNTIME_KEYS}
    if isinstance(node, list):
        return [_without_runtime(v) for v in node]
    return node


def semantic_config(cfg: DictConfig) -> dict:
    """The part of the config that can change a row: :data:`SEMANTIC_KEYS` without :data:`RUNTIME_KEYS`."""
    c = OmegaConf.to_container(cfg, resolve=True)
    sem = _without_runtime({k: c.get(k) for k in SEMANTIC_KEYS})
    if sem.get("time_budget_s") is not None:  # the run's deadline: the attacks' own default is unused
        sem["attack"] = _without_key(sem.get("attack"), "time_budget_s")
    return sem


def _without_key(node, key: str):
    if isinstance(node, dict):
        return {k: _without_key(v, key) for k, v in node.items() if k != key}
    return node


def data_identity(source) -> dict:
    """Where the data came from (real or stand-in, which files, how many): part of the resume key,
    so that rows of a stand-in are recomputed once the real data is there (``make data``)."""
    return {"data_source": source.data_source, "origin": source.note, "n_samples": len(source)}


def batch_fingerprint(x01: torch.Tensor, y: torch.Tensor) -> str:
    """Short hash of one batch's pixels and labels: a row is stale when its batch changed."""
    h = hashlib.sha256(x01.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(y.detach().to("cpu", torch.int64).numpy().tobytes())
    return h.hexdigest()[:16]


def run_paths(cfg: DictConfig, attack_name: str, chash: str) -> tuple[str, Path]:
    run_id = f"{cfg.profile}-{cfg.dataset.name}-{attack_name}-{chash[:10]}"
    path = Path(cfg.paths.results) / "raw" / cfg.name / f"{run_id}.jsonl"
    return run_id, path
