"""JSONL result rows: one per attacked batch, flushed per line, resumable (DESIGN §3)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator

SCHEMA_VERSION = 1

# Every row carries these keys (None where a value does not apply), in this order.
FIELDS = (
    # identity
    "schema_version", "run_id", "experiment", "profile", "batch_index", "seed", "config_hash",
    # provenance
    "git_sha", "git_dirty", "timestamp_utc", "device", "torch_version", "dtype",
    # setting
    "dataset", "data_source", "image_shape", "model", "width", "depth", "model_state",
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
    """Rows from JSONL files; a torn last line (a crash mid-write) is skipped with a warning."""
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    warnings.warn(f"{path}:{lineno}: unreadable row skipped (torn write?)")


class RowWriter:
    """Appends rows to one JSONL file; knows which (config_hash, batch_index) are already done."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()

    def _repair_tail(self) -> None:
        """Drop a torn final line so the next append starts on a fresh line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        warnings.warn(f"{self.path}: dropping a torn last row left by an interrupted run")
        with open(self.path, "r+b") as fh:
            fh.truncate(cut)

    def done(self) -> set[tuple[str, int]]:
        if not self.path.exists():
            return set()
        return {(r.get("config_hash"), r.get("batch_index")) for r in read_rows([self.path])}

    def write(self, row: dict) -> None:
        line = json.dumps(row, sort_keys=False, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


__all__ = ["FIELDS", "SCHEMA_VERSION", "RowWriter", "config_hash", "make_row", "read_rows"]
