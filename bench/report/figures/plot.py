"""What every figure shares: matplotlib without a display, the files a figure writes (PNG, PDF and
the CSV of exactly the plotted numbers), the record the page lists, captions from the rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


class NothingToPlot(ValueError):
    """The rows hold no point this figure could draw (the message says why); no file is written."""


@dataclass
class Figure:
    """One figure written under results/figures: its PNG (PDF and CSV beside it when written)."""

    name: str
    title: str
    png: Path
    kind: str = "plot"                  # "plot" or "grid" (a reconstruction grid)
    data: pd.DataFrame | None = field(default=None, repr=False)  # the plotted numbers (the CSV)

    def files(self) -> list[Path]:
        return [p for p in (self.png, self.png.with_suffix(".pdf"), self.png.with_suffix(".csv")) if p.exists()]


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    pyplot.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3})
    return pyplot


def save(fig, out: Path, table: pd.DataFrame, title: str, kind: str = "plot") -> Figure:
    """``out``.png, .pdf and .csv (the plotted numbers); the figure is closed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=130, bbox_inches="tight")
    fig.savefig(out.with_suffix(".pdf"), bbox_inches="tight")
    table.to_csv(out.with_suffix(".csv"), index=False)
    plt().close(fig)
    return Figure(name=out.name, title=title, png=out.with_suffix(".png"), kind=kind, data=table)


def n_label(g: pd.DataFrame) -> str:
    lo, hi = int(g["n"].min()), int(g["n"].max())
    return f"n={lo}" if lo == hi else f"n={lo}-{hi}"


def legend_below(ax, ncol: int = 2) -> None:
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False)


def footer(df: pd.DataFrame) -> str:
    src = ", ".join(f"{d} ({s})" for d, s in sorted(set(zip(df["dataset"].astype(str),
                                                           df["data_source"].astype(str)))))
    prof = ", ".join(sorted(set(df["profile"].dropna().astype(str)))) if "profile" in df else ""
    return f"data: {src}; profile: {prof}; {df['model'].iloc[0]} depth {df['depth'].iloc[0]}, untrained"


ACC_LEGEND = "Acc: every image exact (ground truth)"
CERT_LEGEND = "certified: status ok (SPEAR's check)"

__all__ = ["ACC_LEGEND", "CERT_LEGEND", "Figure", "NothingToPlot", "footer", "legend_below", "n_label", "plt",
           "save"]
