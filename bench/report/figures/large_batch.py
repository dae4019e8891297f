"""Large batches: Acc (solid, 95% Wilson bars) and certified (hollow) against b per method and width,
with the wall of sparse-vector search b·ρ = √m drawn per width (bench/report/tables/large_batch.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.columns import error_bars, wilson
from bench.report.figures.plot import Figure, NothingToPlot, plt, save
from bench.report.tables.large_batch import METHODS, summary, wall

MARKS = {"spear-uniform": "o", "spear": "D", "spear-dictionary": "s", "spear+geiping": "^"}
STYLES = {"spear-uniform": ":", "spear": "-.", "spear-dictionary": "-", "spear+geiping": "--"}
SHIFT = {"spear-uniform": -0.4, "spear": -0.2, "spear-dictionary": 0.0, "spear+geiping": 0.4}  # curves that coincide


def data(df: pd.DataFrame) -> pd.DataFrame:
    """The plotted numbers: one line per (method, width, b) with Acc and certified shares."""
    return summary(df)


def figure(df: pd.DataFrame, figures: Path) -> Figure:
    res = data(df)
    if res.empty:
        raise NothingToPlot("no large_batch rows with a width and a batch size")
    p = plt()
    fig, ax = p.subplots(figsize=(6.4, 4.2))
    widths = sorted(res["width"].unique())
    colors = dict(zip(widths, p.rcParams["axes.prop_cycle"].by_key()["color"]))
    for (method, width), g in res.groupby(["method", "width"]):
        g = g.sort_values("b")
        x = g["b"] + SHIFT.get(method, 0.0)
        share, cert = g["acc_pct"] / 100, g["certified_pct"] / 100
        lo, hi = wilson(g["acc"], g["n"])
        ax.errorbar(x, share, yerr=error_bars(share, lo, hi), fmt="none", ecolor=colors[width], alpha=0.35, capsize=2)
        ax.plot(x, share, STYLES.get(method, "-"), marker=MARKS.get(method, "x"), color=colors[width],
                label=f"{METHODS.get(method, method)}, m={width}: Acc")
        ax.plot(x, cert, ls="none", marker=MARKS.get(method, "x"), mfc="none", ms=10, color=colors[width],
                label=f"{METHODS.get(method, method)}, m={width}: certified")
    for w in widths:
        ax.axvline(wall(w), color=colors[w], lw=0.8, alpha=0.6)
        ax.text(wall(w), 1.02, f"2√{w}", color=colors[w], fontsize=7, ha="center", va="bottom")
    ax.set_xlabel("batch size b")
    ax.set_ylabel("share of batches (Acc; hollow: certified)")
    ax.set_ylim(-0.03, 1.08)
    ax.set_title("Large batches: Acc and certified vs b (bars: 95% Wilson; vertical: wall b·ρ = √m, ρ = 0.5)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return save(fig, figures / "fig_large_batch", res, "Large batches: Acc and certified against b per method and width")


__all__ = ["data", "figure"]
