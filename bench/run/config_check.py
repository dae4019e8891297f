"""Start-up checks of a run's config: each bad value is named with the values it may take.

Run once per job (``Runner.__init__``) after the profile is applied, before any data or model is
touched, so that ``dtype=float16`` or ``batch_size=0`` fail at once instead of after minutes.
"""
from __future__ import annotations

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A config value is outside what the benchmark accepts; the message names key and fix."""


class NothingToDo(ConfigError):
    """``n_batches`` asks for no work: a clear non-zero exit, never a silent success."""


DTYPES = ("float32", "float64")


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(cfg: DictConfig, losses=()) -> None:
    """Raise ConfigError naming the first bad key and its allowed values (``losses``: known names)."""
    dtype = cfg.get("dtype")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not supported; use one of {', '.join(DTYPES)} "
                          f"(float16/bfloat16 lose the precision the attacks rely on)")
    bs = cfg.get("batch_size")
    if not _int(bs) or bs < 1:
        raise ConfigError(f"batch_size={bs!r} must be an integer >= 1")
    seed = cfg.get("seed")
    if not _int(seed) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer >= 0")
    loss = (cfg.get("threat") or {}).get("loss")
    if losses and loss not in losses:
        raise ConfigError(f"threat.loss={loss!r} is unknown; use one of {', '.join(sorted(losses))}")
    budget = cfg.get("time_budget_s")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not budget > 0):
        raise ConfigError(f"time_budget_s={budget!r} must be a number of seconds > 0, or null for no "
                          f"deadline (0 no longer means 'none')")
    n = cfg.get("n_batches")
    if not _int(n) or n < 0:
        raise ConfigError(f"n_batches={n!r} must be an integer >= 1")
    if n == 0:
        raise NothingToDo("n_batches=0: nothing to do, no rows written; set n_batches >= 1")


__all__ = ["ConfigError", "NothingToDo", "DTYPES", "validate_config"]
