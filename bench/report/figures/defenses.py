"""The defense figures (``make reproduce-defenses``): DP-SGD noise, FedAvg local training and the
attacked layer's depth, drawn from the same frames as their tables (bench/report/tables/defenses.py),
with Acc (solid) and certified (hollow markers, dashed) as defined in bench/report/columns.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.figures.plot import Figure, NothingToPlot, plt, save
from bench.report.tables import defenses as T


def _acc_cert(ax, x, g: pd.DataFrame, label: str, color=None) -> None:
    line = ax.plot(x, g["acc_pct"], "o-", label=f"{label}: Acc", color=color)[0]
    if g["certified_pct"].notna().any():
        ax.plot(x, g["certified_pct"], "o--", mfc="none", ms=9, color=line.get_color(), label=f"{label}: certified")


def fig_dp(t: pd.DataFrame, out: Path, note: str) -> Figure:
    p = plt()
    fig, axes = p.subplots(1, 2, figsize=(9, 3.6))
    nz = t["sigma"][t["sigma"] > 0]
    zero_at = float(nz.min()) / 10 if len(nz) else 1e-5
    for attack, g in t.groupby("attack"):
        xs = g["sigma"].where(g["sigma"] > 0, zero_at)
        axes[0].plot(xs, g["psnr_mean"], "o-", label=attack)
        _acc_cert(axes[1], xs, g, attack)
    for ax, yl in zip(axes, ("PSNR (dB), mean over batches", "batches (%)")):
        ax.set_xscale("log")
        ax.set_xlabel(f"noise multiplier σ (C = 1; σ = 0 drawn at {zero_at:g})")
        ax.set_ylabel(yl)
    axes[1].set_ylim(-3, 103)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7)
    fig.suptitle("DP-SGD: attacks against the noise multiplier", fontsize=10)
    fig.text(0.01, -0.02, note, fontsize=7)
    return save(fig, out, t, "DP-SGD: PSNR, Acc and certified against the noise multiplier σ")


def fig_fedavg(t: pd.DataFrame, out: Path, note: str) -> Figure:
    p = plt()
    fig, axes = p.subplots(1, 2, figsize=(10, 3.8))
    for (attack, lr), g in t.groupby(["attack", "lr"]):
        g = g.sort_values("epochs")
        x = g["epochs"].astype(float)
        axes[0].plot(x, g["psnr_mean"], "o-" if attack.startswith("spear") else "s--", label=f"{attack}, η={lr:g}")
        _acc_cert(axes[1], x, g, f"{attack}, η={lr:g}")
    for ax, yl in zip(axes, ("PSNR (dB)", "batches (%)")):
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 5, 10], labels=["1", "2", "5", "10"])
        ax.set_xlabel("local epochs E (local batch = B)")
        ax.set_ylabel(yl)
    axes[1].set_ylim(-3, 103)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle("FedAvg: attacks against local epochs and learning rate", fontsize=10)
    fig.text(0.01, -0.02, note, fontsize=7)
    return save(fig, out, t, "FedAvg: PSNR, Acc and certified against local epochs E and learning rate η")


def fig_depth(t: pd.DataFrame, out: Path, note: str) -> Figure:
    p = plt()
    fig, axes = p.subplots(1, 2, figsize=(9, 3.6))
    t = t.sort_values("layer")
    x = t["layer"].astype(float)
    axes[0].plot(x, t["feature_cosine"], "o-", label="feature cosine")
    axes[0].plot(x, t["features_exact_pct"] / 100, "s-", label="features exact (share)")
    axes[0].plot(x, t["certified_pct"] / 100, "s--", mfc="none", ms=9, label="certified (share)")
    axes[0].set_ylabel("mean |cos| / share")
    axes[0].set_ylim(-0.02, 1.05)
    axes[0].legend(fontsize=8)
    axes[1].plot(x, t["time_s"], "o-")
    axes[1].set_ylabel("attack time per batch (s)")
    for ax in axes:
        ax.set_xlabel("attacked linear layer")
        ax.set_xticks(sorted(t["layer"].dropna().astype(int).unique()))
    fig.suptitle("SPEAR against the attacked layer's depth (6-layer FCNN)", fontsize=10)
    fig.text(0.01, -0.02, note, fontsize=7)
    return save(fig, out, t, "SPEAR against the attacked layer's depth: feature cosine, features exact, certified")


DRAW = {"dp": ("fig_dp", fig_dp), "fedavg": ("fig_fedavg", fig_fedavg), "depth": ("fig_depth", fig_depth)}


def figure(df: pd.DataFrame, experiment: str, figures: Path) -> Figure:
    name, draw = DRAW[experiment]
    t = T.FRAMES[experiment](df)
    if t.empty or not np.isfinite(t.select_dtypes("number").to_numpy(dtype=float, na_value=np.nan)).any():
        raise NothingToPlot(f"no numbers in the {experiment} rows")
    return draw(t, figures / name, T.setting_note(df))


__all__ = ["DRAW", "fig_depth", "fig_dp", "fig_fedavg", "figure"]
