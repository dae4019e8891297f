"""Where rows go besides the JSONL file (which is always written and is the source of truth).

``logger=none`` keeps rows in JSONL only; ``logger=wandb`` mirrors them to Weights & Biases:
every row (step = batch index), the reconstruction grids as images, the run's summary table and
all its rows as W&B Tables, the resolved config and its hash. W&B is offline by default (runs land
in the job's output folder; ``wandb sync`` uploads them later); ``WANDB_MODE=online`` with a key
(``wandb login`` or ``WANDB_API_KEY``) logs live. W&B stays quiet on the console (no run-history
block); one line names the run folder. ``read_offline_run`` reads an offline run back without a
network, and ``python -m bench.record.loggers show <run folder>`` prints it (docs/cluster.md).
"""
from __future__ import annotations

import json
import math
import os
import struct
import sys
from pathlib import Path


class NullLogger:
    """logger=none: rows stay in the JSONL files only."""

    def start(self, cfg, run_id: str, attack: str, config_hash: str | None = None) -> None:
        pass

    def log_row(self, row: dict) -> None:
        pass

    def log_figure(self, name: str, path) -> None:
        pass

    def log_table(self, name: str, df) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


def _scalar(v):
    """A row value as a W&B metric: numbers and bools as numbers, short strings as strings."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)):
        return v if not (isinstance(v, float) and math.isnan(v)) else None
    if isinstance(v, str) and len(v) <= 200:
        return v
    return None


# Row fields that are not metrics: identity/provenance go to the config, lists to the rows table.
_NOT_LOGGED = {"schema_version", "run_id", "experiment", "profile", "config_hash", "setting_hash",
               "data_fingerprint", "git_sha",
               "git_dirty", "timestamp_utc", "device", "torch_version", "dtype", "dataset",
               "data_source", "model", "model_state", "defense", "attack", "artifact", "error_msg"}


def _table_cell(v):
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class WandbLogger:
    """logger=wandb: mirror rows, grids and tables to a W&B run (offline unless told otherwise).

    Arguments come from conf/logger/wandb.yaml. ``mode`` is offline | online | disabled (None:
    the ``WANDB_MODE`` environment variable, else offline). ``dir`` is where W&B writes the run
    folder (``<dir>/wandb/offline-run-*``). ``quiet``: no W&B run-history block on the console.
    """

    def __init__(self, project: str = "spear-bench", entity: str | None = None,
                 mode: str | None = None, dir: str | None = None, tags=(), notes: str | None = None,
                 log_images: bool = True, quiet: bool = True):
        self.project = project
        self.entity = entity
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self.dir = dir
        self.tags = list(tags or ())
        self.notes = notes
        self.log_images = log_images
        self.quiet = quiet
        self.run = None
        self._wandb = None
        self._rows: list[dict] = []
        self._step = -1

    # ------------------------------------------------------------------ lifecycle
    def start(self, cfg, run_id: str, attack: str, config_hash: str | None = None,
              job_type: str | None = None) -> None:
        try:
            import wandb  # lazy: W&B costs nothing unless logger=wandb
        except ImportError as exc:  # pragma: no cover - wandb is a declared dependency
            raise RuntimeError("logger=wandb needs the wandb package: `.venv/bin/pip install wandb` "
                               "(or run with logger=none)") from exc
        self._wandb = wandb
        config = _config_dict(cfg)
        config["config_hash"] = config_hash
        config["run_id"] = run_id
        group = config.get("name") or "default"
        tags = self.tags + [str(t) for t in (config.get("profile"), _get(config, "dataset", "name"))
                            if t]
        if self.dir:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        try:
            self.run = wandb.init(
                project=self.project, entity=self.entity, mode=self.mode, dir=self.dir,
                name=run_id, group=group, job_type=job_type or attack, tags=tags, notes=self.notes,
                config=config, reinit="create_new",
                settings=wandb.Settings(quiet=bool(self.quiet)),
            )
        except Exception as exc:
            raise RuntimeError(
                f"W&B could not start a run in mode {self.mode!r}: {exc}. For online logging run "
                "`wandb login` (or set WANDB_API_KEY); otherwise use WANDB_MODE=offline and "
                "`wandb sync` later, or logger=none") from exc
        if config_hash is not None:
            self.run.summary["config_hash"] = config_hash

    def log_row(self, row: dict) -> None:
        if self.run is None:
            return
        self._rows.append(row)
        metrics = {}
        for k, v in row.items():
            if k in _NOT_LOGGED:
                continue
            s = _scalar(v)
            if s is not None:
                metrics[k] = s
        step = int(row.get("batch_index", self._step + 1))
        step = max(step, self._step + 1)  # W&B steps must increase (resumed runs skip batches)
        self._step = step
        self.run.log(metrics, step=step)

    def log_figure(self, name: str, path) -> None:
        if self.run is None or not self.log_images or path is None:
            return
        self.run.log({name: self._wandb.Image(str(path), caption=Path(path).stem)},
                     step=max(self._step, 0))

    def log_table(self, name: str, df) -> None:
        if self.run is None or df is None:
            return
        cols = [str(c) for c in df.columns]
        data = [[_table_cell(v) for v in rec] for rec in df.itertuples(index=False, name=None)]
        self.run.log({name: self._wandb.Table(columns=cols, data=data)}, step=max(self._step, 0))

    def finish(self, failed: bool = False) -> None:
        if self.run is None:
            return
        try:
            if self._rows:
                import pandas as pd

                self.log_table("rows", pd.DataFrame(self._rows))
                statuses = [r.get("status") for r in self._rows]
                self.run.summary["batches"] = len(self._rows)
                self.run.summary["batches_ok"] = sum(s == "ok" for s in statuses)
            self.run.summary["failed"] = bool(failed)
        finally:
            run_dir = Path(self.run.dir).parent if getattr(self.run, "dir", None) else None
            offline = self.mode == "offline"
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
            if run_dir is not None and offline:
                print(f"[spear-bench] W&B run (offline): {run_dir}; look at it with `python -m "
                      f"bench.record.loggers show {run_dir}`, upload it with `wandb sync {run_dir}`",
                      file=sys.stderr)


def _get(d: dict, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _config_dict(cfg) -> dict:
    """The resolved config as plain containers (unresolvable entries kept as written)."""
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    from omegaconf import OmegaConf

    try:
        out = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # e.g. ${hydra:...} outside a hydra job
        out = OmegaConf.to_container(cfg, resolve=False)
    return out


def log_table_run(df, experiment: str, *, profile: str | None = None, markdown: str | None = None,
                  dir: str | None = None, project: str = "spear-bench", entity: str | None = None,
                  mode: str | None = None) -> Path | None:
    """One W&B run (job type ``table``, group = experiment) holding a merged results table.

    Returns the run's local folder."""
    logger = WandbLogger(project=project, entity=entity, mode=mode, dir=dir, notes=markdown)
    name = f"table-{experiment}" + (f"-{profile}" if profile else "")
    logger.start({"name": experiment, "profile": profile}, name, "table", job_type="table")
    run_dir = Path(logger.run.dir).parent if getattr(logger.run, "dir", None) else None
    failed = True
    try:
        logger.log_table(experiment, df)
        if markdown:
            logger.run.summary["markdown"] = markdown
        failed = False
    finally:
        logger.finish(failed=failed)
    return run_dir


# ---------------------------------------------------------------------- reading offline runs
_BLOCK = 32768
_HEADER = 7  # W&B's LevelDB-style log: crc32 (4), length (2), type (1)


def _records(path: Path):
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run log (header {ident!r})")
    pos, buf = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        pos += _HEADER
        if kind == 0 and n == 0:
            break
        chunk = data[pos:pos + n]
        pos += n
        if kind == 1:  # full
            yield chunk
        elif kind == 2:  # first
            buf = chunk
        elif kind == 3:  # middle
            buf += chunk
        elif kind == 4:  # last
            yield buf + chunk
            buf = b""


def _nested(items) -> dict:
    out: dict = {}
    for it in items:
        keys = list(it.nested_key) or [it.key]
        d = out
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = json.loads(it.value_json)
    return out


def read_offline_run(run_dir: Path | str) -> dict:
    """Read an offline W&B run folder (``.../wandb/offline-run-*``) back, no network needed.

    Returns ``{"name", "group", "job_type", "config", "history" (list of dicts, one per step),
    "summary", "exit_code", "files" (paths under files/)}``.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}: not an offline W&B run folder")
    out: dict = {"config": {}, "history": [], "summary": {}, "exit_code": None, "files": []}
    for blob in _records(logs[0]):
        rec = pb.Record()
        rec.ParseFromString(blob)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(name=r.display_name, group=r.run_group, job_type=r.job_type,
                       project=r.project, run_id=r.run_id)
            out["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            out["history"].append(_nested(rec.history.item))
        elif kind == "summary":
            out["summary"].update(_nested(rec.summary.update))
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    files = run_dir / "files"
    out["files"] = sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file())
    return out


def offline_runs(path: Path | str) -> list[Path]:
    """Offline W&B run folders at ``path``: the folder itself, or every ``wandb/offline-run-*``
    (or ``offline-run-*``) below it, e.g. a hydra job folder ``outputs/<name>/<time>``."""
    path = Path(path)
    if list(path.glob("run-*.wandb")):
        return [path]
    return sorted(p for p in path.rglob("offline-run-*") if p.is_dir())


_SHOWN = ("batch_index", "status", "psnr_mean", "psnr_min", "exact_fraction", "lpips_mean",
          "feature_cosine", "discrete_acc", "time_attack_s")


def format_run(run: dict) -> str:
    """An offline run (:func:`read_offline_run`) as text: identity, key config, history, summary."""
    cfg = run.get("config") or {}
    lines = [f"run {run.get('name')}  group {run.get('group')}  job type {run.get('job_type')}  "
             f"project {run.get('project')}  exit code {run.get('exit_code')}"]
    picks = {"experiment": cfg.get("name"), "profile": cfg.get("profile"),
             "dataset": _get(cfg, "dataset", "name"), "attack": _get(cfg, "attack", "_target_"),
             "model": _get(cfg, "model", "name"), "batch_size": cfg.get("batch_size"),
             "config_hash": cfg.get("config_hash")}
    lines.append("config: " + "  ".join(f"{k}={v}" for k, v in picks.items() if v is not None))
    history = run.get("history") or []
    cols = [c for c in _SHOWN if any(c in h for h in history)]
    lines.append(f"history: {len(history)} steps")
    if cols:
        def cell(v):
            return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else str(v))
        rows = [[cell(h.get(c)) for c in cols] for h in history]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
        lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    summary = {k: v for k, v in (run.get("summary") or {}).items()
               if not isinstance(v, dict) and not k.startswith("_")}
    diag = [k for k in summary if k.startswith("diag_")]
    lines.append("summary: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.items())
                                         if not k.startswith("diag_"))
                 + (f" (+{len(diag)} diag_* keys; --json prints everything)" if diag else ""))
    tables = sorted(k for k, v in (run.get("summary") or {}).items()
                    if isinstance(v, dict) and v.get("_type") == "table-file")
    if tables:
        lines.append("tables: " + ", ".join(tables))
    lines.append(f"files: {len(run.get('files') or [])} (" + ", ".join((run.get("files") or [])[:6])
                 + (", ..." if len(run.get("files") or []) > 6 else "") + ")")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.record.loggers",
                                 description="Look at W&B runs logged offline (no network needed).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show", help="print offline W&B runs: identity, config, history, summary")
    show.add_argument("path", help="an offline-run-* folder, or a folder above some (e.g. outputs/)")
    show.add_argument("--json", action="store_true", help="print the whole run as JSON")
    args = ap.parse_args(argv)
    runs = offline_runs(args.path)
    if not runs:
        print(f"error: no offline W&B run (offline-run-*/run-*.wandb) at or below {args.path}",
              file=sys.stderr)
        return 2
    for i, folder in enumerate(runs):
        run = read_offline_run(folder)
        if args.json:
            print(json.dumps({"folder": str(folder), **run}, default=str))
            continue
        print(("\n" if i else "") + f"{folder}\n" + format_run(run))
    return 0


__all__ = ["NullLogger", "WandbLogger", "log_table_run", "read_offline_run", "offline_runs",
           "format_run"]


if __name__ == "__main__":
    sys.exit(main())
