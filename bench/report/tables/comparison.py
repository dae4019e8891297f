"""The paper's main comparison (``comparison`` in results/paper.yaml) beside our rows.

Every method listed there gets a line, filled from our rows when some match it: ``attack ==
<entry name>`` on the comparison dataset; or, for an entry with ``select`` (e.g. ``{attack: ci_net,
activation: sigmoid}``), the rows matching it on the comparison dataset when there are any, else
wherever they ran (a profile may run the method on a cheaper dataset; the dataset column says so).
A method without rows keeps the paper's numbers only, marked "not run".
"""
from __future__ import annotations

import math

import pandas as pd

from bench.report import columns as C
from bench.report.format import Table, fmt
from bench.report.rows import setting_groups
from bench.report.tables.paper import paper_numbers

COLS = ["method", "dataset", "PSNR", "paper PSNR", "LPIPS", "time/batch s", "s/it", "paper time s", "n", "B",
        "status", "Acc %", "certified %", "note"]


def method_rows(df: pd.DataFrame, method: str, p: dict, dataset) -> pd.DataFrame:
    """Rows of one comparison method (see the module's docstring)."""
    select = p.get("select")
    mask = pd.Series(True, index=df.index)
    for key, value in (select or {"attack": method}).items():
        mask &= df[key].astype(str) == str(value) if key in df else False
    rows = df[mask]
    on_dataset = rows[rows["dataset"] == dataset] if dataset else rows.iloc[0:0]
    return on_dataset if not (on_dataset.empty and select) else rows


def comparison_frame(df: pd.DataFrame, table: str) -> tuple[pd.DataFrame, str | None]:
    """One line per (method, dataset, setting), in paper.yaml's order, and the comparison's dataset."""
    paper = paper_numbers(table)
    comp = paper.get("comparison") or {}
    dataset = paper.get("comparison_dataset")
    if not comp:
        return pd.DataFrame(), dataset
    out = []
    for method, p in comp.items():
        p = p or {}
        rows = method_rows(df, method, p, dataset)
        groups = [(f"{ds}|{s}", h) for ds, g in rows.groupby("dataset", sort=False) for s, h in setting_groups(g)]
        for setting, g in groups or [("", rows)]:
            ds = g["dataset"].iloc[0] if not g.empty else dataset
            out.append(_line(method, ds, setting.partition("|")[2], g, p))
    return pd.DataFrame(out), dataset


def _line(method: str, dataset, setting: str, g: pd.DataFrame, p: dict) -> dict:
    ran = not g.empty
    lp_m, _, lp_n = C.lpips_stats(g) if ran else (math.nan, math.nan, 0)
    per_it = C.mean_std(g["diag_seconds_per_iteration"])[0] if ran and "diag_seconds_per_iteration" in g else None
    attack = str(g["attack"].iloc[0]) if ran else method
    return {
        "method": method, "dataset": dataset,
        "PSNR": C.mean_std(g["psnr_mean"])[0] if ran else None, "paper PSNR": p.get("psnr"),
        "LPIPS": lp_m if lp_n else None, "LPIPS n/a": None if (lp_n or not ran) else C.lpips_why(g),
        "time/batch s": C.mean_std(g["time_attack_s"])[0] if ran else None, "paper time s": p.get("time_s"),
        "s/it": per_it,
        "n": len(g), "B": int(g["batch_size"].iloc[0]) if ran else None,
        "status": ("ran" + (f" ({setting})" if setting else "")) if ran else "not run",
        "Acc %": C.acc_pct(g) if ran else None, "certified %": C.certified_pct(g, attack) if ran else None,
        "note": p.get("note", ""),
    }


def _cell(r: pd.Series, c: str) -> str:
    v = r[c]
    if c == "LPIPS" and (v is None or isinstance(v, float) and math.isnan(v)) and isinstance(r["LPIPS n/a"], str):
        return r["LPIPS n/a"]
    if c == "B" and isinstance(v, float) and not math.isnan(v):
        return str(int(v))
    if c == "dataset":
        return C.DATASET_LABEL.get(v, str(v))
    return fmt(v, {"LPIPS": 4, "s/it": 3}.get(c, 1))


def comparison(df: pd.DataFrame, table: str) -> Table | None:
    """The main comparison as a part of ``table`` (None when paper.yaml has none)."""
    frame, dataset = comparison_frame(df, table)
    if frame.empty:
        return None
    title = (f"main comparison (paper: one ImageNet setting, B=20; ours: this profile's B, on "
             f"{C.DATASET_LABEL.get(dataset, dataset)} unless the dataset column says otherwise)")
    return Table(name=f"{table}_comparison", title=title, header=COLS,
                 cells=[[_cell(r, c) for c in COLS] for _, r in frame.iterrows()], data=frame, level=4)


__all__ = ["COLS", "comparison", "comparison_frame", "method_rows"]
