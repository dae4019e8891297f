"""What ``python -m bench.run`` tells its user on the terminal, besides progress.

- :func:`unknown_option`: ``attack=Spear`` names a config-group option that does not exist; the
  message lists the group's options and the closest one ("did you mean spear?").
- :func:`job_line`: ``job i/N: <overrides>`` at the start of every job of a multirun.
- :func:`width_warning`: the attacked layer is too narrow for the batch (SPEAR needs b < m, and
  fails often while the bound B·P[Binomial(m, ½) < B−1] of bench/report/figures/spear.py is large).
- :func:`summary_line` and :func:`table_command`: after every run, one line with batches ok, Acc,
  mean PSNR and time, and the command that builds the run's table from its rows.

Every message goes to stderr, prefixed ``[spear-bench]``; nothing here changes a result.
"""
from __future__ import annotations

import difflib
import math
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"

# ---------------------------------------------------------------------- config-group options
def group_options(group: str, conf: Path = CONF, extra: tuple[Path, ...] = ()) -> list[str] | None:
    """Options of config group ``group`` (e.g. ``attack``) in ``conf`` and the ``extra`` config
    directories, or None when it is not one of ours."""
    if group.startswith("hydra") or not (conf / group).is_dir():
        return None
    return sorted({p.stem for folder in (conf, *extra) for p in (folder / group).glob("*.yaml")})


def _extra_config_dirs(argv: list[str]) -> tuple[Path, ...] | None:
    """Config directories the command line adds (``hydra.searchpath=[file://...]``,
    ``--config-dir``); None when one cannot be listed (``pkg://``), so nothing is judged."""
    dirs: list[Path] = []
    for i, arg in enumerate(argv):
        if arg.startswith(("--config-dir", "-cd")):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            dirs.append(Path(value))
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            for entry in arg.split("=", 1)[1].strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    dirs.append(Path(entry[len("file://"):]))
                elif entry:
                    return None
    return tuple(dirs)


def unknown_option(argv: list[str], conf: Path = CONF) -> str | None:
    """An error message for the first ``group=value`` override whose value the group lacks.

    Handles ``+group=``, ``group@package=``, comma sweeps (``attack=spear,Geiping``) and config
    directories added on the command line (``hydra.searchpath``, ``--config-dir``); leaves keys
    (``attack.layer=3``), deletions (``~group``), hydra's own groups and sweep functions
    (``choice(...)``) to hydra.
    """
    extra = _extra_config_dirs(argv)
    if extra is None:
        return None
    for arg in argv:
        if arg.startswith(("-", "~")) or "=" not in arg:
            continue
        key, _, value = arg.lstrip("+").partition("=")
        group = key.split("@", 1)[0]
        options = group_options(group, conf, extra) if "." not in group else None
        if not options or "(" in value or "$" in value:
            continue
        for choice in value.split(","):
            choice = choice.strip()
            if not choice or choice == "null" or choice in options:
                continue
            close = difflib.get_close_matches(choice, options, n=1, cutoff=0.5) or \
                [o for o in options if o.lower() == choice.lower()]
            hint = f"did you mean {close[0]}? " if close else ""
            return (f"{group}={choice}: conf/{group}/ has no option {choice!r}; {hint}"
                    f"options: {', '.join(options)}")
    return None


# ---------------------------------------------------------------------- multiruns
def sweep_size(multirun_yaml: Path) -> int | None:
    """Number of jobs of the sweep whose ``multirun.yaml`` this is (None when it cannot be told).

    The same product hydra's basic sweeper takes: ``hydra.sweeper.params`` of the config, then the
    command line's overrides (which replace a swept key of the same name).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(multirun_yaml)
    args: dict[str, str] = {}
    params = OmegaConf.select(cfg, "hydra.sweeper.params")
    if params:
        for key in params:
            args[str(key)] = f"{key}={OmegaConf.select(cfg, f'hydra.sweeper.params.{key}')}"
    for ov in OmegaConf.select(cfg, "hydra.overrides.task") or []:
        args[str(ov).split("=", 1)[0].lstrip("+")] = str(ov)
    n = 1
    for ov in OverridesParser.create().parse_overrides(list(args.values())):
        if ov.is_sweep_override():
            n *= len(list(ov.sweep_string_iterator()))
    return n


def job_line() -> str | None:
    """``job i/N: <overrides>`` for a job of a multirun (None outside one)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return None
        num, overrides = int(hc.job.num), " ".join(hc.overrides.task)
    except ValueError:  # not inside a hydra job (HydraConfig not set)
        return None
    try:
        total = sweep_size(Path(hc.sweep.dir) / "multirun.yaml")
    except Exception:  # the count is a courtesy: an unreadable sweep file only loses the "/N"
        total = None
    return f"job {num + 1}/{total if total else '?'}: {overrides}"


# ---------------------------------------------------------------------- width against batch size
def width_warning(attack, model, batch_size: int) -> str | None:
    """A warning when the layer SPEAR attacks is too narrow for ``batch_size`` samples."""
    requires = getattr(attack, "requires", frozenset())
    if "relu_linear_layer" not in requires:
        return None
    from attacks.base import AttackNotApplicable
    from attacks.layers import linear_layer

    layer = getattr(attack, "layer", None)
    if layer is None and getattr(attack, "stage1", None) is not None:
        layer = getattr(attack.stage1, "layer", None)
    try:
        name, mod = linear_layer(model, layer)
    except AttackNotApplicable:  # the attack's own check will say why, as the batch's row
        return None
    m, b = int(mod.out_features), int(batch_size)
    if b >= m:
        return (f"warning: batch size {b} is not below the width {m} of the attacked layer {name!r}: "
                f"SPEAR needs b < m (the gradient's rank is min(b, m)), so every batch of this "
                f"setting will fail or be not applicable; use a wider layer (model.width > {b}) or a "
                f"smaller batch")
    if m >= 4 * b:  # the bound below is < 1 % there: no need to compute it
        return None
    from bench.report.figures.spear import failure_bound  # the bound fig_failure_width draws

    bound = float(failure_bound(m, b))
    if bound >= 0.5:
        return (f"warning: the attacked layer {name!r} has width {m}, narrow for batch size {b}: "
                f"the chance bound B·P[Binomial(m, 1/2) < B-1] = {bound:.2f}, so many batches will "
                f"run to the proposal cap or the deadline and fail")
    return None


# ---------------------------------------------------------------------- after a run
def table_command(experiment: str, profile: str | None) -> str:
    """The command that builds the tables and figures of ``experiment`` from its rows."""
    prof = f" --profile {profile}" if profile else ""
    return f"python -m bench.report --experiment {experiment}{prof}"


def _mean(values) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else None


# row field -> how its mean over the run's batches is written in the summary line
_MEANS = (("psnr_mean", lambda v: f"mean PSNR {v:.1f} dB"),
          ("feature_cosine", lambda v: f"feature cos {v:.6f}"),
          ("discrete_acc", lambda v: f"discrete acc {100 * v:.1f}%"),
          ("time_attack_s", lambda v: f"attack {v:.2f} s/batch"))


def summary_line(rows: list[dict], *, run_id: str, wall_s: float) -> str:
    """One line: batches ok, Acc (every image at or above the row's exact threshold), mean PSNR
    and time, from this run's current rows."""
    n = len(rows)
    statuses = [r.get("status") for r in rows]
    parts = [f"{statuses.count('ok')}/{n} batches ok"]
    others = {s: statuses.count(s) for s in ("partial", "failed", "error", "not_applicable") if s in statuses}
    if others:
        parts[0] += " (" + ", ".join(f"{k} {v}" for k, v in others.items()) + ")"
    if n:
        import pandas as pd

        from bench.report.columns import acc as acc_rule  # the one definition of Acc

        acc = float(acc_rule(pd.DataFrame(rows)).mean())
        thr = next((r.get("exact_psnr_db") for r in rows if r.get("exact_psnr_db")), None)
        parts.append(f"Acc {100 * acc:.0f}%" + (f" (every image >= {thr:g} dB)" if thr else ""))
    for field, fmt in _MEANS:  # each mean that the rows carry
        mean = _mean(r.get(field) for r in rows)
        if mean is not None:
            parts.append(fmt(mean))
    parts.append(f"{wall_s:.1f} s in all")
    return f"{run_id}: " + ", ".join(parts)


__all__ = ["unknown_option", "group_options", "sweep_size", "job_line", "width_warning", "table_command", "summary_line"]
