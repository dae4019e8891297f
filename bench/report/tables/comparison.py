"""The paper's main comparison (``comparison`` in results/paper.yaml) beside our rows of its dataset.

Every method listed there gets a line; it is filled from our rows when some match it. An entry's
numbers are ``psnr``, ``lpips``, ``time_s``, ``acc`` and its text ``note``; every other key selects
rows by a row field: ``attack`` (default: the entry's name) and e.g. ``activation: sigmoid``. A
method without matching rows keeps the paper's numbers only, marked "not run".
"""
from __future__ import annotations

import math

import pandas as pd

from bench.report import columns as C
from bench.report.format import Table, fmt
from bench.report.rows import setting_groups
from bench.report.tables.paper import paper_numbers

NUMBERS = ("psnr", "lpips", "time_s", "acc", "note")
COLS = ["method", "PSNR", "paper PSNR", "LPIPS", "Acc %", "certified %", "time/batch s", "paper time s",
        "n", "B", "status", "note"]


def selector(method: str, entry: dict) -> dict:
    """Row fields (and values) that pick a method's rows: ``attack`` plus any non-number key."""
    sel = {k: v for k, v in entry.items() if k not in NUMBERS}
    sel.setdefault("attack", method)
    return sel


def matching(df: pd.DataFrame, sel: dict) -> pd.DataFrame:
    keep = pd.Series(True, index=df.index)
    for k, v in sel.items():
        if k not in df:
            return df.iloc[0:0]
        keep &= df[k].astype(str) == str(v)
    return df[keep]


def comparison_frame(df: pd.DataFrame, table: str) -> tuple[pd.DataFrame, str | None]:
    """One line per (method, setting), in paper.yaml's order, and the comparison's dataset."""
    paper = paper_numbers(table)
    comp = paper.get("comparison") or {}
    dataset = paper.get("comparison_dataset")
    if not comp:
        return pd.DataFrame(), dataset
    out = []
    for method, p in comp.items():
        p = p or {}
        rows = matching(df[df["dataset"] == dataset], selector(method, p)) if dataset else df.iloc[0:0]
        for setting, g in setting_groups(rows) if not rows.empty else [("", rows)]:
            out.append(_line(method, dataset, setting, g, p))
    return pd.DataFrame(out), dataset


def _line(method: str, dataset, setting: str, g: pd.DataFrame, p: dict) -> dict:
    ran = not g.empty
    lp_m, _, lp_n = C.lpips_stats(g) if ran else (math.nan, math.nan, 0)
    attack = str(g["attack"].iloc[0]) if ran else method
    return {
        "method": method, "dataset": dataset,
        "PSNR": C.mean_std(g["psnr_mean"])[0] if ran else None, "paper PSNR": p.get("psnr"),
        "LPIPS": lp_m if lp_n else None, "LPIPS n/a": None if (lp_n or not ran) else C.lpips_why(g),
        "Acc %": C.acc_pct(g) if ran else None, "certified %": C.certified_pct(g, attack) if ran else None,
        "time/batch s": C.mean_std(g["time_attack_s"])[0] if ran else None, "paper time s": p.get("time_s"),
        "n": len(g), "B": int(g["batch_size"].iloc[0]) if ran else None,
        "status": ("ran" + (f" ({setting})" if setting else "")) if ran else "not run",
        "note": p.get("note", ""),
    }


def _cell(r: pd.Series, c: str) -> str:
    v = r[c]
    if c == "LPIPS" and (v is None or isinstance(v, float) and math.isnan(v)) and isinstance(r["LPIPS n/a"], str):
        return r["LPIPS n/a"]
    if c == "B" and isinstance(v, float) and not math.isnan(v):
        return str(int(v))
    return fmt(v, 4) if c == "LPIPS" else fmt(v)


def comparison(df: pd.DataFrame, table: str) -> Table | None:
    """The main comparison as a part of ``table`` (None when paper.yaml has none)."""
    frame, dataset = comparison_frame(df, table)
    if frame.empty:
        return None
    title = (f"main comparison (paper: one ImageNet setting, B=20; ours: "
             f"{C.DATASET_LABEL.get(dataset, dataset)}, this profile's B)")
    return Table(name=f"{table}_comparison", title=title, header=COLS,
                 cells=[[_cell(r, c) for c in COLS] for _, r in frame.iterrows()], data=frame, level=4)


__all__ = ["comparison", "comparison_frame", "selector"]
