"""The one number formatter and the writers of a table: markdown, CSV, LaTeX and the page's JSON.

Every cell of every table goes through :func:`fmt`; markdown (terminal, README), LaTeX and the HTML
page all show the same cells, and the CSV holds the unformatted numbers.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MISSING = "–"


def is_missing(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def fmt(v, digits: int = 1, style: str = "auto") -> str:
    """One cell.

    ``style``: ``auto`` -- ``digits`` decimals, scientific (``1.16e-05``) below 1e-2 and from 1e5;
    ``fixed`` -- always ``digits`` decimals; ``sig`` -- ``digits`` significant digits (scientific from
    1e4). Missing values are ``–``, infinite ones (and the rows' 1e308 for +inf) ``∞``; integers,
    booleans and strings print as they are.
    """
    if is_missing(v):
        return MISSING
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isinf(v) or abs(v) >= 1e300:
            return "∞" if v > 0 else "−∞"
        if style == "fixed":
            return f"{v:.{digits}f}"
        if style == "sig":
            return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.2e}"
        if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def pm(mean, std, digits: int = 1, style: str = "auto") -> str:
    """``mean ± std`` (``–`` when the mean is missing)."""
    if is_missing(mean):
        return MISSING
    return f"{fmt(mean, digits, style)} ± {fmt(std, digits, style)}"


@dataclass
class Table:
    """One table: what markdown, LaTeX and the page show (``header``, ``cells``, ``notes``) and the
    numbers behind it (``data``, written as CSV). ``parts``: tables printed below this one (their own
    CSV), e.g. Table 1's main comparison."""

    name: str                      # file stem: results/tables/<name>.{md,csv,tex}
    title: str
    header: list[str]
    cells: list[list[str]]
    notes: list[str] = field(default_factory=list)
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    parts: list["Table"] = field(default_factory=list)
    level: int = 3                 # markdown heading level

    def column(self, header: str) -> list[str]:
        """The cells of one column, by its header."""
        i = self.header.index(header)
        return [row[i] for row in self.cells]


def markdown(t: Table) -> str:
    lines = [f"{'#' * t.level} {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(row) + " |" for row in t.cells]
    if t.notes:
        lines += [""] + [f"- {n}" for n in t.notes]
    md = "\n".join(lines) + "\n"
    for p in t.parts:
        md += "\n" + markdown(p)
    return md


_TEX = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "–": "--", "−": "$-$", "∞": r"$\infty$", "±": r"$\pm$", "≥": r"$\geq$", "≤": r"$\leq$",
        "σ": r"$\sigma$", "ε": r"$\varepsilon$", "η": r"$\eta$", "ρ": r"$\rho$", "√": r"$\surd$",
        "·": r"$\cdot$", "½": r"$\frac12$", "⌈": r"$\lceil$", "⌉": r"$\rceil$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(c, c) for c in str(s))


def latex(t: Table) -> str:
    """A booktabs tabular of the same cells, the notes as comments above it."""
    out = [f"% {n}" for n in t.notes]
    out += [r"\begin{tabular}{" + "l" * len(t.header) + "}", r"\toprule",
            " & ".join(tex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    out += [" & ".join(tex_escape(c) for c in row) + r" \\" for row in t.cells]
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def as_json(t: Table) -> dict:
    """The cells and notes for the page (results/index.html), with the files written."""
    return {"name": t.name, "title": t.title, "header": t.header, "cells": t.cells, "notes": t.notes,
            "files": [f"tables/{t.name}.{ext}" for ext in ("md", "csv", "tex")]
            + [f"tables/{p.name}.csv" for p in t.parts],
            "parts": [as_json(p) for p in t.parts]}


def write(t: Table, folder: Path) -> Path:
    """``<folder>/<name>.{md,csv,tex}`` (and each part's CSV); returns the markdown's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{t.name}.md").write_text(markdown(t), encoding="utf-8")
    t.data.to_csv(folder / f"{t.name}.csv", index=False)
    (folder / f"{t.name}.tex").write_text(latex(t), encoding="utf-8")
    for p in t.parts:
        p.data.to_csv(folder / f"{p.name}.csv", index=False)
    return folder / f"{t.name}.md"


def write_json(obj, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str), encoding="utf-8")
    return path


__all__ = ["MISSING", "Table", "as_json", "fmt", "is_missing", "latex", "markdown", "pm", "tex_escape",
           "write", "write_json"]
