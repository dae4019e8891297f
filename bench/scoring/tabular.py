"""Tabular records: decode model inputs back to records, match them to the truth, score them.

Model inputs of a tabular dataset are encoded records (``DataSpec.feature_blocks`` gives the
layout: one-hot blocks for discrete fields, one column per continuous field) after the DataSpec's
normalisation. Decoding takes the argmax of every one-hot block and maps every continuous column
back to original units, rounded to the field's grid (``step``, 1 for Adult's integer counts) and
clipped to its public range. Metrics (after Hungarian matching of records, bench/scoring/matching.py):

* ``discrete_acc``: share of discrete fields of the true records recovered exactly (a true record
  left unmatched -- fewer reconstructions than records -- counts as all wrong);
* ``continuous_mae``: mean absolute error over the continuous fields of the matched records, in
  original units, after rounding to the grid (so an exact reconstruction scores 0);
  ``continuous_mae_unrounded`` is the same before rounding (the float error of an exact attack);
* ``exact_fraction``: share of true records recovered with every field exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from attacks.base import DataSpec, FeatureBlock
from bench.scoring.matching import match


@dataclass
class Records:
    """Decoded records: category index per discrete field, value per continuous field."""

    discrete: np.ndarray            # (N, n_discrete) int64
    continuous: np.ndarray          # (N, n_continuous) float64, original units, on the grid
    continuous_raw: np.ndarray      # (N, n_continuous) float64, original units, before rounding
    discrete_names: list[str]
    continuous_names: list[str]

    def __len__(self) -> int:
        return len(self.discrete)


def _blocks(spec: DataSpec) -> tuple[list[FeatureBlock], list[FeatureBlock]]:
    if spec.kind != "tabular" or not spec.feature_blocks:
        raise ValueError(f"tabular decoding needs a DataSpec with kind='tabular' and feature_blocks; "
                         f"got kind={spec.kind!r} with {len(spec.feature_blocks)} blocks")
    cat = [b for b in spec.feature_blocks if b.kind == "categorical"]
    cont = [b for b in spec.feature_blocks if b.kind == "continuous"]
    return cat, cont


def decode(x: Tensor, spec: DataSpec) -> Records:
    """Model-input rows (N, n_features) -> records (argmax per one-hot block; continuous de-standardised,
    rounded to the field's grid and clipped to its range)."""
    cat, cont = _blocks(spec)
    raw = spec.denormalize(x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1)).numpy()
    disc = np.stack([raw[:, b.columns].argmax(1) for b in cat], axis=1) if cat else np.zeros((len(raw), 0), int)
    c_raw = np.stack([raw[:, b.start] for b in cont], axis=1) if cont else np.zeros((len(raw), 0))
    c_grid = c_raw.copy()
    for k, b in enumerate(cont):
        col = c_grid[:, k]
        if b.step:
            col = np.round(col / b.step) * b.step
        lo = -np.inf if b.low is None else b.low
        hi = np.inf if b.high is None else b.high
        c_grid[:, k] = np.clip(col, lo, hi)
    return Records(disc.astype(np.int64), c_grid, c_raw, [b.name for b in cat], [b.name for b in cont])


def encode(rec: Records, spec: DataSpec, *, rounded: bool = True) -> Tensor:
    """Records -> model-input rows (one-hot blocks, normalised continuous columns)."""
    cat, cont = _blocks(spec)
    out = torch.zeros(len(rec), spec.numel, dtype=torch.float64)
    rows = torch.arange(len(rec))
    for k, b in enumerate(cat):
        out[rows, b.start + torch.as_tensor(rec.discrete[:, k])] = 1.0
    vals = rec.continuous if rounded else rec.continuous_raw
    for k, b in enumerate(cont):
        out[:, b.start] = torch.as_tensor(vals[:, k])
    return spec.normalize(out)


def to_frame(rec: Records, spec: DataSpec):
    """A pandas DataFrame of the records with category names (for people)."""
    import pandas as pd

    cat, cont = _blocks(spec)
    cols: dict = {}
    for b in spec.feature_blocks:
        if b.kind == "categorical":
            k = cat.index(b)
            cols[b.name] = [b.categories[i] for i in rec.discrete[:, k]]
        else:
            cols[b.name] = rec.continuous[:, cont.index(b)]
    return pd.DataFrame(cols)


def tabular_quality(rec_x: Tensor, true_x: Tensor, spec: DataSpec) -> dict:
    """Decode, match (Hungarian on the re-encoded records), score. Both inputs in model-input space.

    Returns discrete_acc, continuous_mae (original units, on the grid), continuous_mae_unrounded,
    exact_fraction, per-field accuracies / MAEs, and ``rec_for_true`` (reconstruction index per true
    record, -1 if none), as the image metrics do. PSNR fields are None for tabular rows.
    """
    truth = decode(true_x, spec)
    B = len(truth)
    out = {"psnr_mean": None, "psnr_min": None, "psnr_per_image": None, "psnr_cap_db": None,
           "exact_psnr_db": None}
    rec_for_true = [-1] * B
    n_d, n_c = truth.discrete.shape[1], truth.continuous.shape[1]
    correct = np.zeros((B, n_d), dtype=bool)
    exact = np.zeros(B, dtype=bool)
    abs_err = np.full((B, n_c), np.nan)
    abs_err_raw = np.full((B, n_c), np.nan)
    if rec_x.shape[0]:
        recs = decode(rec_x, spec)
        r, t = match(encode(recs, spec), encode(truth, spec))
        for ri, ti in zip(r.tolist(), t.tolist()):
            rec_for_true[ti] = ri
        correct[t] = recs.discrete[r] == truth.discrete[t]
        abs_err[t] = np.abs(recs.continuous[r] - truth.continuous[t])
        abs_err_raw[t] = np.abs(recs.continuous_raw[r] - truth.continuous_raw[t])
        exact[t] = correct[t].all(1) & (abs_err[t] == 0).all(1)
    matched = np.asarray(rec_for_true) >= 0

    def mean_or_none(a: np.ndarray) -> float | None:
        a = a[~np.isnan(a)]
        return float(a.mean()) if a.size else None

    out.update(
        discrete_acc=float(correct.mean()) if n_d else None,
        continuous_mae=mean_or_none(abs_err[matched]) if n_c else None,
        continuous_mae_unrounded=mean_or_none(abs_err_raw[matched]) if n_c else None,
        exact_fraction=float(exact.mean()),
        records_matched=int(matched.sum()),
        discrete_acc_per_field={n: round(float(correct[:, k].mean()), 6) for k, n in enumerate(truth.discrete_names)},
        continuous_mae_per_field={n: (None if not matched.any() else round(float(abs_err[matched, k].mean()), 6))
                                  for k, n in enumerate(truth.continuous_names)},
        rec_for_true=rec_for_true,
    )
    return out


def random_guess_discrete_acc(spec: DataSpec) -> float:
    """Expected discrete accuracy of guessing each field uniformly at random (a floor to beat)."""
    cat, _ = _blocks(spec)
    return float(np.mean([1.0 / len(b.categories) for b in cat])) if cat else math.nan


__all__ = ["Records", "decode", "encode", "to_frame", "tabular_quality", "random_guess_discrete_acc"]
