"""The defense and protocol tables (``make reproduce-defenses``): DP-SGD noise, FedAvg local
training, the attacked layer's depth, label-homogeneous batches.

Acc and certified as everywhere (bench/report/columns.py): SPEAR's certificate assumes the ReLU
pattern of one gradient step, so it can decline multi-step FedAvg batches it did recover (Acc
above certified). For the depth table, where layers past the first recover features, not images,
``features exact`` is the share of batches whose matched features reach mean |cos| >= 1 - 1e-9
(any status). Failed batches stay in the means (PSNR of whatever the attack returned; a batch with
nothing returned has no PSNR and counts as not exact).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report import columns as C
from bench.report.format import Table, fmt

# experiment -> table name
TABLES = {"dp": "dp", "fedavg": "fedavg", "depth": "depth", "label_homogeneous": "labels"}


def summary(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One line per ``keys`` (attack first): n, PSNR mean/std/min, Acc, certified, features exact,
    feature cosine, label acc, time and the statuses."""
    df = df.assign(_acc=C.acc(df), _cert=C.certified(df), _fex=C.features_exact(df),
                   _psnr=C.num(df, "psnr_mean"), _time=C.num(df, "time_attack_s"),
                   _lacc=C.num(df, "label_acc"), _fcos=C.num(df, "feature_cosine"))
    out = []
    for key, g in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        line = dict(zip(keys, key))
        out.append(dict(line, n=len(g), psnr_mean=g["_psnr"].mean(), psnr_std=g["_psnr"].std(),
                        psnr_min=g["_psnr"].min(), acc_pct=100 * g["_acc"].mean(),
                        certified_pct=100 * g["_cert"].mean() if C.certifies(line["attack"]) else np.nan,
                        features_exact_pct=100 * g["_fex"].mean(), feature_cosine=g["_fcos"].mean(),
                        label_acc=g["_lacc"].mean(), time_s=g["_time"].mean(), statuses=C.statuses(g)))
    return pd.DataFrame(out)


def dp_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(sigma=C.num(df, "defense_noise_multiplier"), epsilon=C.num(df, "dp_epsilon"))
    t = summary(df, ["attack", "sigma"])
    t.insert(2, "epsilon", t["sigma"].map(df.groupby("sigma")["epsilon"].first()))
    return t


def fedavg_frame(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(epochs=C.num(df, "defense_epochs").astype("Int64"), lr=C.num(df, "defense_lr"),
                   local_batch=C.num(df, "defense_local_batch").astype("Int64"))
    return summary(df, ["attack", "lr", "epochs", "local_batch"])


def depth_frame(df: pd.DataFrame) -> pd.DataFrame:
    layer = C.num(df, "diag_attacked_layer")  # nn.Sequential index of the attacked linear layer
    df = df.assign(layer=((layer + 1) // 2).astype("Int64"), features=C.num(df, "diag_layer_n").astype("Int64"))
    t = summary(df, ["attack", "layer", "features"])
    t.loc[t["layer"] != 1, ["psnr_mean", "psnr_std", "psnr_min", "acc_pct"]] = np.nan  # no images past layer 1
    return t


def labels_frame(df: pd.DataFrame) -> pd.DataFrame:
    hom = df["label_homogeneous"] if "label_homogeneous" in df else pd.Series(False, index=df.index)
    df = df.assign(batch=np.where(hom.fillna(False).astype(bool), "label-homogeneous", "class-balanced"))
    return summary(df, ["attack", "batch"])


FRAMES = {"dp": dp_frame, "fedavg": fedavg_frame, "depth": depth_frame, "label_homogeneous": labels_frame}

COMMON = {"n": ("n", 0), "psnr_mean": ("PSNR", 1), "psnr_std": ("± std", 1), "acc_pct": ("Acc %", 1),
          "certified_pct": ("certified %", 1), "time_s": ("time (s)", 1), "statuses": ("status", 0)}
COLUMNS = {
    "dp": {"attack": ("attack", 0), "sigma": ("σ", 4), "epsilon": ("ε (δ=1e-5)", 1), **COMMON},
    "fedavg": {"attack": ("attack", 0), "lr": ("η", 3), "epochs": ("E", 0), "local_batch": ("b_l", 0), **COMMON},
    "depth": {"attack": ("attack", 0), "layer": ("layer", 0), "features": ("inputs n", 0), "n": ("n", 0),
              "feature_cosine": ("feature cos", 6), "features_exact_pct": ("features exact %", 1),
              "certified_pct": ("certified %", 1), "psnr_mean": ("PSNR (layer 1)", 1),
              "acc_pct": ("Acc % (layer 1)", 1), "time_s": ("time (s)", 1), "statuses": ("status", 0)},
    "label_homogeneous": {"attack": ("attack", 0), "batch": ("batch", 0), **COMMON, "label_acc": ("label acc", 2)},
}
TITLES = {"dp": "DP-SGD: noise multiplier σ at clipping C = 1",
          "fedavg": "FedAvg: local epochs E and learning rate η",
          "depth": "SPEAR attacking linear layers 1–5",
          "label_homogeneous": "Label-homogeneous against class-balanced batches"}


def setting_note(df: pd.DataFrame) -> str:
    src = ", ".join(sorted(set(f"{d} ({s})" for d, s in zip(df["dataset"], df["data_source"]))))
    prof = ", ".join(sorted(set(df["profile"].dropna().astype(str)))) if "profile" in df else "?"
    return (f"data: {src}; {df['model'].iloc[0]} width {df['width'].iloc[0]}, depth {df['depth'].iloc[0]}, "
            f"untrained; B = {', '.join(str(b) for b in sorted(set(df['batch_size'])))}; profile {prof}")


def notes(df: pd.DataFrame, experiment: str) -> list[str]:
    common = [setting_note(df), C.acc_note(df) + "; PSNR: mean over batches of the per-batch mean (failed "
              "batches included); time: attack seconds per batch"]
    return common + {
        "dp": ["ε: Opacus RDP accountant, one step at q = B/50 000, δ = 1e-5 (∞ without noise)",
               "SPEAR runs noise-aware (attacks/spear/noise.py); batch size revealed to both attacks"],
        "fedavg": ["the server knows η, E, b_l and attacks −ΔW/(η·steps); Geiping et al.: one-step "
                   "approximation; SPEAR's certificate assumes one step's ReLU pattern, so Acc can exceed "
                   "certified"],
        "depth": ["features exact: mean |cos| of the Hungarian-matched recovered and true layer inputs "
                  ">= 1 - 1e-9 (any status); layers > 1 recover features, so PSNR and Acc are for layer 1 only"],
        "label_homogeneous": ["label acc: share of recovered labels (Geiping et al. count them from the last "
                              "layer; SPEAR recovers none)"],
    }[experiment]


def table(df: pd.DataFrame, experiment: str) -> Table:
    frame = FRAMES[experiment](df)
    cols = COLUMNS[experiment]
    cells = [[fmt(r[c], d) if isinstance(r[c], (float, np.floating)) else fmt(r[c]) for c, (_, d) in cols.items()]
             for _, r in frame.iterrows()]
    return Table(name=TABLES[experiment], title=TITLES[experiment], header=[h for h, _ in cols.values()],
                 cells=cells, notes=notes(df, experiment), data=frame)


__all__ = ["COLUMNS", "FRAMES", "TABLES", "depth_frame", "dp_frame", "fedavg_frame", "labels_frame", "notes",
           "setting_note", "summary", "table"]
