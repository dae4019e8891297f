"""JSONL result rows: one per attacked batch, flushed per line, resumable (docs/troubleshooting.md)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA_VERSION = 2   # 2: config_hash also covers the data and the weights; setting_hash, data_fingerprint

# Every row carries these keys (None where a value does not apply), in this order.
FIELDS = (
    # identity
    "schema_version", "run_id", "experiment", "profile", "batch_index", "seed", "config_hash",
    "setting_hash", "data_fingerprint",
    # provenance
    "git_sha", "git_dirty", "timestamp_utc", "machine", "device", "torch_version", "dtype",
    # setting
    "dataset", "data_source", "image_shape", "model", "width", "depth", "activation", "model_state",
    "batch_size", "labels_known", "batch_size_known", "defense", "attack",
    # data
    "sample_ids", "true_labels",
    # outcome
    "status", "error_type", "error_msg",
    # quality
    "psnr_mean", "psnr_min", "psnr_per_image", "psnr_cap_db", "exact_psnr_db", "exact_fraction",
    "lpips_mean", "lpips_ok", "feature_cosine", "label_acc", "discrete_acc", "continuous_mae",
    "grad_residual",
    # cost
    "time_attack_s", "time_prep_s", "peak_mem_mb",
)


STATUSES = ("ok", "partial", "failed", "error", "not_applicable")

_NUM, _STR, _BOOL, _INT, _LIST = "number", "string", "boolean", "integer", "list"
# Row schema checked on read: key -> expected JSON type (None is always allowed except for REQUIRED).
SCHEMA = {
    "schema_version": _INT, "run_id": _STR, "experiment": _STR, "profile": _STR, "batch_index": _INT,
    "seed": _INT, "config_hash": _STR, "setting_hash": _STR, "data_fingerprint": _STR,
    "git_sha": _STR, "git_dirty": _BOOL, "timestamp_utc": _STR, "machine": _STR, "device": _STR, "torch_version": _STR,
    "dtype": _STR, "dataset": _STR, "data_source": _STR, "image_shape": _LIST, "model": _STR,
    "width": _INT, "depth": _INT, "activation": _STR, "model_state": _STR, "batch_size": _INT, "labels_known": _BOOL,
    "batch_size_known": _BOOL, "defense": _STR, "attack": _STR, "sample_ids": _LIST, "true_labels": _LIST,
    "status": _STR, "error_type": _STR, "error_msg": _STR,
    "psnr_mean": _NUM, "psnr_min": _NUM, "psnr_per_image": _LIST, "psnr_cap_db": _NUM,
    "exact_psnr_db": _NUM, "exact_fraction": _NUM, "lpips_mean": _NUM, "lpips_ok": _BOOL,
    "feature_cosine": _NUM, "label_acc": _NUM, "discrete_acc": _NUM, "continuous_mae": _NUM,
    "grad_residual": _NUM, "time_attack_s": _NUM, "time_prep_s": _NUM, "peak_mem_mb": _NUM,
}
REQUIRED = ("schema_version", "config_hash", "batch_index")


def _type_ok(value, kind: str) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    return isinstance(value, list)


def row_problem(row) -> str | None:
    """Why a parsed JSON value is not a result row (None when it is one)."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    missing = [k for k in REQUIRED if row.get(k) is None]
    if missing:
        return f"not a result row: no {', '.join(missing)}"
    version = row["schema_version"]
    if not _type_ok(version, _INT) or not 1 <= version <= SCHEMA_VERSION:
        return f"schema_version {version!r} is not one this code reads (1..{SCHEMA_VERSION})"
    for key, kind in SCHEMA.items():
        value = row.get(key)
        if value is not None and not _type_ok(value, kind):
            return f"{key}={value!r} is not a {kind}"
    if row["batch_index"] < 0:
        return f"batch_index={row['batch_index']} is negative"
    if row.get("status") is not None and row["status"] not in STATUSES:
        return f"status={row['status']!r} is not one of {', '.join(STATUSES)}"
    return None


def config_hash(cfg: dict) -> str:
    """Stable short hash of the parts of a config that change results."""
    blob = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def make_row(**values) -> dict:
    row = {k: None for k in FIELDS}
    row["schema_version"] = SCHEMA_VERSION
    row.update(values)
    return _clean(row)


def read_rows(paths: Iterable[Path | str]) -> Iterator[dict]:
    """Rows from JSONL files, each checked against the row schema (:func:`row_problem`).

    A line that is not JSON (a torn write) or JSON but not a row (``[1, 2, 3]``, ``{"foo": 1}``, a
    row with wrong types) is skipped with a warning naming the file and line.
    """
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    warnings.warn(f"{path}:{lineno}: unreadable row skipped (torn write?)")
                    continue
                problem = row_problem(row)
                if problem:
                    warnings.warn(f"{path}:{lineno}: skipped, {problem}")
                    continue
                yield row


class RowWriter:
    """Appends rows to one JSONL file; knows which (config_hash, batch_index) are already done."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock, Timeout

        try:  # never repair a file another run is appending to; lock() repairs once it is ours
            with FileLock(str(self.path) + ".lock", timeout=0):
                self._repair_tail()
        except Timeout:
            pass

    def _repair_tail(self) -> None:
        """End the file on a fresh line: a complete last row missing only its newline is kept (the
        newline added), a torn one (a crash mid-write) is dropped."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:
            complete = row_problem(json.loads(data[cut:].decode("utf-8"))) is None
        except (ValueError, UnicodeDecodeError):
            complete = False
        if complete:
            with open(self.path, "ab") as fh:
                fh.write(b"\n")
            return
        warnings.warn(f"{self.path}: dropping a torn last row left by an interrupted run")
        with open(self.path, "r+b") as fh:
            fh.truncate(cut)

    def rows(self) -> list[dict]:
        """Every valid row of the file, in write order."""
        return list(read_rows([self.path])) if self.path.exists() else []

    def done(self, retry_errors: bool = True) -> set[tuple[str, int]]:
        """(config_hash, batch_index) already written; error rows count only without ``retry_errors``."""
        return {(r["config_hash"], r["batch_index"]) for r in self.rows()
                if not (retry_errors and r.get("status") == "error")}

    def lock(self, on_wait=None):
        """Exclusive lock on this file (``<file>.lock``) for the whole run.

        When another process holds it, ``on_wait(lock_path)`` is called once and the call blocks
        until that run finishes; then the caller re-reads :meth:`done` and computes only the rest.
        """
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait is not None:
                on_wait(Path(lock.lock_file))
            lock.acquire()
        self._repair_tail()  # a run killed mid-write may have left a torn line
        return lock

    def write(self, row: dict) -> None:
        line = json.dumps(row, sort_keys=False, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


__all__ = ["FIELDS", "SCHEMA_VERSION", "STATUSES", "RowWriter", "config_hash", "make_row", "read_rows",
           "row_problem"]
