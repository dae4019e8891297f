"""The paper tables by attack and dataset (table1, tabular, cnn, and any other experiment): mean,
std, n and failures beside the numbers in results/paper.yaml, one line per setting."""
from __future__ import annotations

import math

import pandas as pd

from bench.report import columns as C
from bench.report.format import Table, fmt, is_missing, pm
from bench.report.rows import setting_groups
from bench.report.tables.comparison import comparison
from bench.report.tables.paper import paper_numbers

IMAGE_COLS = ["attack", "dataset", "PSNR", "paper PSNR", "LPIPS", "paper LPIPS", "Acc %", "certified %",
              "paper Acc %", "time/batch s", "paper time s", "peak mem MB", "n", "failures", "B", "data"]
# Columns of the CNN table (conf/experiment/cnn.yaml): final LPIPS beside stage 1 and FI quality.
CNN_COLS = ["attack", "dataset", "model", "LPIPS", "paper LPIPS", "feature sim", "paper feature sim",
            "FI LPIPS", "FI PSNR", "PSNR", "Acc %", "certified %", "time/batch s", "n", "failures", "B", "data"]
# Columns of tabular rows (bench/scoring/tabular.py metrics); image-only columns are left out of such tables.
TABULAR_COLS = ["attack", "dataset", "discrete acc %", "paper discrete acc %", "continuous MAE",
                "paper continuous MAE", "Acc %", "certified %", "time/batch s", "paper time s", "n",
                "failures", "B", "data"]
TABULAR_ONLY = ["discrete acc %", "discrete acc std", "paper discrete acc %", "continuous MAE",
                "continuous MAE std", "paper continuous MAE", "kind"]
IMAGE_ONLY = ["PSNR", "PSNR std", "paper PSNR", "LPIPS", "paper LPIPS", "paper Acc %", "exact at dB"]
DIGITS = {"LPIPS": 4, "paper LPIPS": 4, "FI LPIPS": 4, "feature sim": 3, "paper feature sim": 3}


def _is_tabular(g: pd.DataFrame) -> bool:
    """Rows of a tabular dataset: the per-sample shape is (n_features,)."""
    return bool(g["image_shape"].map(lambda s: isinstance(s, (list, tuple)) and len(s) == 1).all())


def summarise(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """One line per (attack, dataset, setting): ours beside the paper's."""
    paper = paper_numbers(table).get("rows", {})
    cnn = "feature_cosine" in df and df["feature_cosine"].notna().any()  # CNN pipelines in the table
    out = []
    for (attack, dataset), whole in df.groupby(["attack", "dataset"], sort=False):
        for setting, g in setting_groups(whole):
            out.append(_line(g, attack, dataset, setting, paper, cnn))
    res = pd.DataFrame(out)
    if not res.empty:
        if not res["setting"].astype(bool).any():
            res = res.drop(columns="setting")
        res["_o"] = res["dataset"].map(C.dataset_rank)
        res["_a"] = res["attack"].map({a: i for i, a in enumerate(paper)}).fillna(99)  # the paper's order
        res = res.sort_values(["_a", "attack", "_o"], kind="stable").drop(columns=["_o", "_a"]).reset_index(drop=True)
    return res


def _line(g: pd.DataFrame, attack: str, dataset: str, setting: str, paper: dict, cnn: bool) -> dict:
    """One table line: the rows ``g`` of one attack, dataset and setting."""
    psnr_m, psnr_s, _ = C.mean_std(g["psnr_mean"]) if "psnr_mean" in g else (math.nan, math.nan, 0)
    lp_m, lp_s, lp_n = C.lpips_stats(g)
    t_m, _, _ = C.mean_std(C.num(g, "time_attack_s"))
    mem = C.num(g, "peak_mem_mb")
    sources = sorted(set(g["data_source"].dropna())) if "data_source" in g else []
    thr = C.num(g, "exact_psnr_db").dropna()
    p = paper.get(attack, {})
    # rows keyed by attack then dataset (table1), or by attack only (tabular, cnn)
    p = p.get(dataset, {}) if dataset in p or any(isinstance(v, dict) for v in p.values()) else p
    line = {
        "attack": attack, "dataset": dataset, "setting": setting,
        "PSNR": psnr_m, "PSNR std": psnr_s, "paper PSNR": p.get("psnr"),
        "LPIPS": lp_m if lp_n else None, "LPIPS n/a": None if lp_n else C.lpips_why(g),
        "paper LPIPS": p.get("lpips"),
        "Acc %": C.acc_pct(g), "certified %": C.certified_pct(g, attack), "paper Acc %": p.get("acc"),
        "time/batch s": t_m, "paper time s": p.get("time_s"),
        # the process's peak RSS (CPU) or peak allocated CUDA memory over the batches, per row
        "peak mem MB": float(mem.max()) if mem.notna().any() else None,
        "n": len(g), "failures": C.failures(g),
        "B": int(g["batch_size"].iloc[0]) if "batch_size" in g and pd.notna(g["batch_size"].iloc[0]) else None,
        "data": ", ".join(sources), "exact at dB": float(thr.iloc[0]) if len(thr) else None,
    }
    if "image_shape" in g and _is_tabular(g):
        d_m, d_s, _ = C.mean_std(C.num(g, "discrete_acc"))
        c_m, c_s, _ = C.mean_std(C.num(g, "continuous_mae"))
        line.update({"kind": "tabular", "discrete acc %": 100 * d_m, "discrete acc std": 100 * d_s,
                     "paper discrete acc %": p.get("discrete_acc"), "continuous MAE": c_m,
                     "continuous MAE std": c_s, "paper continuous MAE": p.get("continuous_mae")})
    if cnn:  # stage-1 feature similarity and the feature-inversion stage's quality (CNN pipelines)
        line.update({"model": ", ".join(sorted(set(g["model"].dropna()))),
                     "feature sim": C.mean_std(C.num(g, "feature_cosine"))[0],
                     "paper feature sim": p.get("feature_sim"),
                     "FI LPIPS": C.mean_std(C.num(g, "stage_fi_lpips"))[0],
                     "FI PSNR": C.mean_std(C.num(g, "stage_fi_psnr"))[0]})
    return line


def drop_other_kind(res: pd.DataFrame) -> pd.DataFrame:
    """A table of tabular rows only drops the image columns, one of image rows the tabular ones."""
    kinds = set(res["kind"].fillna("image")) if "kind" in res else {"image"}
    drop = IMAGE_ONLY if kinds == {"tabular"} else TABULAR_ONLY if kinds == {"image"} else []
    return res.drop(columns=[c for c in drop if c in res])


def shown_columns(res: pd.DataFrame) -> list[str]:
    kinds = set(res["kind"].fillna("image")) if "kind" in res else {"image"}
    if kinds == {"tabular"}:
        cols = list(TABULAR_COLS)
    elif "feature sim" in res:
        cols = list(CNN_COLS)
    elif "tabular" in kinds:
        cols = IMAGE_COLS[:-4] + TABULAR_COLS[2:6] + IMAGE_COLS[-4:]
    else:
        cols = list(IMAGE_COLS)
    if "setting" in res:  # one attack and dataset ran in several settings: one line each
        cols = cols[:2] + ["setting"] + cols[2:]
    return cols


def cell(r: pd.Series, c: str) -> str:
    v = r.get(c)
    if c == "PSNR" and not is_missing(v):
        return pm(v, r["PSNR std"], 1, "fixed")
    if c in ("discrete acc %", "continuous MAE") and not is_missing(v):
        return pm(v, r[c.replace(" %", "") + " std"])
    if c == "dataset":
        return C.DATASET_LABEL.get(v, v)
    if c == "LPIPS" and is_missing(v) and isinstance(r.get("LPIPS n/a"), str):
        return str(r["LPIPS n/a"])
    if c == "B" and isinstance(v, float) and not math.isnan(v):
        return str(int(v))
    return fmt(v, DIGITS.get(c, 1))


def cells(res: pd.DataFrame, cols: list[str]) -> list[list[str]]:
    return [[cell(r, c) for c in cols] for _, r in res.iterrows()]


def budget_notes(df: pd.DataFrame) -> list[str]:
    """What each optimisation attack was allowed (its diag_* budget), and how its labels were found."""
    notes = []
    if "diag_max_iterations" not in df:
        return notes
    for attack, g in df[df["diag_max_iterations"].notna()].groupby("attack"):
        parts = []
        groups = sorted(g.groupby("dataset"), key=lambda kv: C.dataset_rank(kv[0]))
        for dataset, h in groups:
            its = sorted({int(v) for v in h["diag_max_iterations"].dropna()})
            rs = sorted({int(v) for v in C.num(h, "diag_restarts").dropna()}) or [1]
            parts.append(f"{C.DATASET_LABEL.get(dataset, dataset)} {'/'.join(map(str, its))}"
                         + (f" x{'/'.join(map(str, rs))} restarts" if rs != [1] else ""))
        line = f"{attack}: iterations per batch " + ", ".join(parts)
        if "diag_labels_source" in g and (g["diag_labels_source"] == "recovered").any():
            acc = C.num(g, "label_acc").dropna()
            line += (f"; labels recovered from the last layer's gradient (label acc "
                     f"{100 * acc.mean():.0f}% over {len(acc)} batches)")
        if "diag_seconds_per_iteration" in g:
            line += "; " + ", ".join(
                f"{C.DATASET_LABEL.get(d, d)} {C.num(h, 'diag_seconds_per_iteration').mean():.3g} s/it"
                for d, h in groups)
        notes.append(line)
    return notes


def notes_for(df: pd.DataFrame, res: pd.DataFrame, table: str) -> list[str]:
    notes = []
    cite = paper_numbers(table).get("citation")
    if cite:
        notes.append(f"paper columns: {cite}; times converted to seconds")
    if C.num(df, "exact_psnr_db").notna().any():
        cap = C.num(df, "psnr_cap_db").dropna()
        notes.append(C.acc_note(df) + "; PSNR in [0,1] pixel space"
                     + (f", MSE floored at the {cap.iloc[0]:g} dB cap" if len(cap) else ""))
    tab = "kind" in res and (res["kind"] == "tabular").any()
    if tab:
        notes.append("tabular: records decoded (argmax per one-hot block; continuous fields de-standardised, "
                     "rounded to their integer grid) and Hungarian-matched; discrete acc = share of discrete "
                     "fields recovered; continuous MAE = mean absolute error of the continuous fields in "
                     "original units; Acc = share of batches with every record exact; certified = share of "
                     "batches with status ok (SPEAR's certificate)")
    if "feature sim" in res:
        states = ", ".join(sorted(set(df["model_state"].dropna().astype(str)))) if "model_state" in df else "?"
        notes.append("CNN: feature sim = mean |cos| between the recovered and the true inputs of the attacked "
                     "layer (the trunk's features), Hungarian-matched; FI LPIPS/PSNR = the images after "
                     "feature inversion, before the Geiping refinement; LPIPS/PSNR = the final images; "
                     f"model state: {states}")
        if (res["model"] != "vgg16").any():
            notes.append("the paper's CNN is VGG-16 (224x224); rows with another model (quick profile: "
                         "small_cnn, smaller images, short budgets) are a scaled-down stand-in")
    pairs = list(zip(df["dataset"], df["data_source"])) if "data_source" in df else []
    tab_stand = sorted({f"{C.DATASET_LABEL.get(d, d)} ({s})" for d, s in pairs
                        if str(s).startswith("stand-in:") and str(s).endswith("-synthetic")})
    if tab_stand:
        notes.append("stand-in data (synthetic records drawn per column with the dataset's schema, not real "
                     "people) for: " + ", ".join(tab_stand))
    stand = sorted({d for d, s in pairs if str(s).startswith("stand-in") and not str(s).endswith("-synthetic")})
    if stand:
        notes.append("stand-in data (crops of bundled photographs, not the real dataset) for: "
                     + ", ".join(C.DATASET_LABEL.get(d, d) for d in stand))
    if "sample_ids" in df:
        up = df[df["sample_ids"].astype(str).str.contains("upsampled")]["dataset"].unique()
        if len(up):
            notes.append("some stand-in crops are upsampled to reach the resolution for: "
                         + ", ".join(C.DATASET_LABEL.get(d, d) for d in up))
    if "setting" in res:
        notes.append("an attack and dataset that ran in several settings gets one line per setting; the "
                     "setting column names the keys that differ (config=<hash>: an attack or config knob)")
    bad = df[~df["status"].isin(C.OK_STATUSES)]
    for status, g in bad.groupby("status"):
        msgs = g["error_msg"].dropna() if "error_msg" in g else []
        notes.append(f"{len(g)} batch(es) with status {status}: "
                     + "; ".join(sorted({str(m).splitlines()[0][:120] for m in msgs}))[:400])
    profiles = sorted(set(df["profile"].dropna())) if "profile" in df else []
    if profiles:
        devices = sorted(set(df["device"].dropna())) if "device" in df else []
        notes.append(f"profile: {', '.join(profiles)}; device: {', '.join(devices)}")
    return notes


def table(df: pd.DataFrame, name: str) -> Table:
    """The table of one experiment (``name``: its key in results/paper.yaml), with the main
    comparison as a part when paper.yaml has one."""
    res = summarise(df, name)
    notes = notes_for(df, res, name) + budget_notes(df)
    cols = shown_columns(res)
    res = drop_other_kind(res)
    t = Table(name=name, title=name, header=cols, cells=cells(res, cols), notes=notes, data=res)
    comp = comparison(df, name)
    if comp is not None:
        t.parts.append(comp)
    return t


__all__ = ["CNN_COLS", "IMAGE_COLS", "TABULAR_COLS", "budget_notes", "notes_for", "summarise",
           "table"]
