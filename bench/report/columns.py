"""One definition of every column that tables, figures and the page show.

* **Acc**: the share of batches whose every image is at or above the stated PSNR threshold
  (``exact_psnr_db``, 80 dB) after Hungarian matching -- measured against the ground truth,
  whatever status the attack returned (row field ``exact_fraction`` = 1).
* **certified**: the share of batches whose attack returned status ``ok`` -- its own certificate
  (SPEAR's a-posteriori check), without the ground truth. Shown for attacks that certify (the SPEAR
  family); ``–`` for the others, whose ``ok`` only means that they ran to the end.
* **failures**: batches with status other than ok / partial (failed, error, not_applicable).
* PSNR / LPIPS / time: mean ± std over the batches, n = batches.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

OK_STATUSES = ("ok", "partial")  # the attack returned a reconstruction; any other status is a failure
DATASET_ORDER = ["mnist", "cifar10", "tiny_imagenet", "imagenet224", "imagenet720", "adult"]
DATASET_LABEL = {"mnist": "MNIST", "cifar10": "CIFAR-10", "tiny_imagenet": "TinyImageNet",
                 "imagenet224": "ImageNet 224", "imagenet720": "ImageNet 720", "adult": "Adult"}
EXACT_COS = 1 - 1e-9  # recovered layer inputs (features) are exact when the matched mean |cos| reaches this


def num(df: pd.DataFrame, col: str) -> pd.Series:
    """A row field as numbers (NaN where missing or not a number)."""
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


def acc(df: pd.DataFrame) -> pd.Series:
    """Per batch: every image at PSNR >= the row's threshold after matching, whatever the status."""
    return num(df, "exact_fraction").fillna(0.0) >= 1.0


def certified(df: pd.DataFrame) -> pd.Series:
    """Per batch: the attack certified its reconstruction (status ``ok``)."""
    return df["status"] == "ok"


def features_exact(df: pd.DataFrame) -> pd.Series:
    """Per batch: the recovered layer inputs match the true ones (mean |cos| >= 1 - 1e-9), any status."""
    return num(df, "feature_cosine").fillna(0.0) >= EXACT_COS


def certifies(attack: str) -> bool:
    """Whether an attack's status ``ok`` is a certificate: the SPEAR family (``spear``,
    ``spear-dictionary``, ``spear+geiping``, ``spear+fi+geiping``) checks its answer against the
    gradient; optimisation attacks return ``ok`` whenever they ran to the end."""
    return str(attack).startswith("spear")


def acc_pct(g: pd.DataFrame) -> float:
    return 100.0 * float(acc(g).mean()) if len(g) else math.nan


def certified_pct(g: pd.DataFrame, attack: str) -> float | None:
    """Certified share in %, or None for an attack without a certificate."""
    return 100.0 * float(certified(g).mean()) if certifies(attack) and len(g) else None


def failures(g: pd.DataFrame) -> int:
    return int((~g["status"].isin(OK_STATUSES)).sum())


def statuses(g: pd.DataFrame) -> str:
    """``"failed 1, ok 3"``: how many batches of each status."""
    return ", ".join(f"{k} {v}" for k, v in g["status"].value_counts().sort_index().items())


def mean_std(s: pd.Series) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of the numbers in ``s``."""
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return math.nan, math.nan, 0
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else 0.0, len(s)


def lpips_stats(g: pd.DataFrame) -> tuple[float, float, int]:
    """LPIPS over the rows that hold a real value (lpips_ok); never a stand-in number."""
    if "lpips_mean" not in g:
        return math.nan, math.nan, 0
    ok = g["lpips_ok"].fillna(False).astype(bool) if "lpips_ok" in g else g["lpips_mean"].notna()
    return mean_std(g.loc[ok, "lpips_mean"])


def lpips_why(g: pd.DataFrame) -> str | None:
    """Short reason why a group has no LPIPS (rows' lpips_note), shown in the LPIPS cell."""
    notes = g["lpips_note"].dropna().astype(str) if "lpips_note" in g else pd.Series(dtype=str)
    if notes.empty:
        return None
    note = notes.mode().iloc[0]
    if note.startswith("no AlexNet weights"):
        return "n/a: no AlexNet weights"
    if "smaller than" in note:
        return "n/a: images < 31 px"
    return "n/a: " + note[:40]


def threshold(df: pd.DataFrame, default: float = 80.0) -> float:
    """The PSNR threshold of Acc stated by the rows (``exact_psnr_db``)."""
    thr = num(df, "exact_psnr_db").dropna()
    return float(thr.min()) if len(thr) else default


def acc_note(df: pd.DataFrame, what: str = "image") -> str:
    """The Acc and certified definitions with the rows' threshold, for a table's notes."""
    return (f"Acc = share of batches with every {what} at PSNR >= {threshold(df):g} dB after Hungarian "
            f"matching (ground truth), whatever the attack's status; certified = share of batches whose "
            f"attack returned status ok (its own certificate: SPEAR's a-posteriori check; – for attacks "
            f"without one)")


def wilson(k, n, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval ``(lo, hi)`` of a binomial proportion k/n, with
    ``0 <= lo <= k/n <= hi <= 1`` exactly.

    The score interval contains its estimate in exact arithmetic, but in floating point its ends
    can land an ulp on the wrong side of it (k = 0, n = 11: lo = 2.8e-17 > 0 = k/n), which made an
    error bar negative. The ends are therefore taken as ``min(formula, k/n)`` and
    ``max(formula, k/n)``, then clipped to [0, 1]: at k = 0 the lower end is exactly 0, at k = n
    the upper end exactly 1. Points with n = 0 give NaN.
    """
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
        den = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
    lo = np.clip(np.fmin(centre - half, p), 0, 1)
    hi = np.clip(np.fmax(centre + half, p), 0, 1)
    return np.where(np.isnan(p), np.nan, lo), np.where(np.isnan(p), np.nan, hi)


def error_bars(estimate, lo, hi) -> np.ndarray:
    """``yerr`` for matplotlib's errorbar: the (2, N) distances from the estimate down to ``lo``
    and up to ``hi``, clipped at zero (an estimate rescaled apart from its interval, e.g. a
    percentage computed as ``100 * k / n`` beside ``100 * lo``, may differ from it by an ulp)."""
    est = np.asarray(estimate, float)
    return np.vstack([np.maximum(est - np.asarray(lo, float), 0.0),
                      np.maximum(np.asarray(hi, float) - est, 0.0)])


def dataset_rank(d: str) -> int:
    return DATASET_ORDER.index(d) if d in DATASET_ORDER else len(DATASET_ORDER)


__all__ = ["DATASET_LABEL", "DATASET_ORDER", "EXACT_COS", "OK_STATUSES", "acc", "acc_note", "acc_pct",
           "certified", "certified_pct", "certifies", "dataset_rank", "error_bars", "failures", "features_exact",
           "lpips_stats", "lpips_why", "mean_std", "num", "statuses", "threshold", "wilson"]
