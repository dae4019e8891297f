"""Tables derived from result rows only: mean, std, n and failures beside the paper's numbers.

``python -m bench.tables --experiment table1 --profile quick`` reads results/raw/table1/*.jsonl and
writes results/tables/table1.{md,csv,tex}.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import pandas as pd
import yaml

from bench.record.rows import read_rows

REPO = Path(__file__).resolve().parents[1]
DATASET_ORDER = ["mnist", "cifar10", "tiny_imagenet", "imagenet224", "imagenet720", "adult"]
DATASET_LABEL = {"mnist": "MNIST", "cifar10": "CIFAR-10", "tiny_imagenet": "TinyImageNet",
                 "imagenet224": "ImageNet 224", "imagenet720": "ImageNet 720", "adult": "Adult"}
OK_STATUSES = {"ok", "partial"}
# Row fields that change results: rows that differ in any of them never share a table line.
# setting_hash (the semantic config without the seed, plus the data's identity and the weights)
# catches what the visible keys miss (an attack's budget); rows from different seeds do share one.
SETTING_KEYS = ("batch_size", "model", "width", "depth", "activation", "dtype", "labels_known",
                "batch_size_known", "defense", "profile", "data_source", "model_state", "setting_hash")
SETTING_LABEL = {"batch_size": "B", "labels_known": "labels known", "batch_size_known": "B known",
                 "data_source": "data", "model_state": "weights", "setting_hash": "config"}


def load_rows(results: Path, experiment: str, profile: str | None = None) -> pd.DataFrame:
    files = sorted((results / "raw" / experiment).glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(
            f"no result rows under {results / 'raw' / experiment}; run the experiment first "
            f"(e.g. `make reproduce-{experiment}`)")
    df = pd.DataFrame(list(read_rows(files)))
    if profile is not None and "profile" in df:
        df = df[df["profile"] == profile]
        if df.empty:
            raise ValueError(f"no rows of profile {profile!r} in {results / 'raw' / experiment}")
    # One file (run_id) holds one setting; the newest row of a batch wins (a batch recomputed after
    # its data or weights changed, or an error row retried, supersedes the older row).
    key = df["run_id"].fillna(df["config_hash"]) if "run_id" in df else df["config_hash"]
    cols = ["_key"] + [c for c in ("dataset", "attack") if c in df] + ["batch_index"]
    return df.assign(_key=key).drop_duplicates(cols, keep="last").drop(columns="_key")


def _value(v) -> str:
    if isinstance(v, float) and math.isnan(v) or v is None:
        return "–"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def setting_groups(g: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split the rows of one (attack, dataset) by setting: ``[(label, rows), ...]``.

    The label names the keys whose values differ between the groups (``"B=12"``, ``"dtype=float32"``)
    and is empty when there is only one setting.
    """
    g = g.copy()
    if "setting_hash" not in g:  # rows written before setting_hash: their config hash (seed included)
        g["setting_hash"] = None
    g["setting_hash"] = g["setting_hash"].fillna(g["config_hash"].astype(str))
    keys = [k for k in SETTING_KEYS if k in g]
    parts = list(g.groupby([g[k].astype(str) for k in keys], sort=False, dropna=False))
    if len(parts) == 1:
        return [("", g)]
    differing = [k for k in keys if g[k].astype(str).nunique(dropna=False) > 1]
    shown = [k for k in differing if k != "setting_hash"] or ["setting_hash"]
    out = []
    for _, h in parts:
        first = h.iloc[0]
        label = ", ".join(f"{SETTING_LABEL.get(k, k)}={_value(first[k])[:8] if k == 'setting_hash' else _value(first[k])}"
                          for k in shown)
        out.append((label, h))
    return out


def paper_numbers(table: str) -> dict:
    with open(REPO / "results" / "paper.yaml", encoding="utf-8") as fh:
        return (yaml.safe_load(fh) or {}).get(table, {})


def _mean_std(s: pd.Series) -> tuple[float, float, int]:
    s = pd.to_numeric(s, errors="coerce").dropna()
    if s.empty:
        return math.nan, math.nan, 0
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else 0.0, len(s)


def summarise(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """One row per (attack, dataset): ours beside the paper's."""
    paper = paper_numbers(table).get("rows", {})
    cnn = "feature_cosine" in df and df["feature_cosine"].notna().any()  # CNN pipelines in the table
    out = []
    for (attack, dataset), whole in df.groupby(["attack", "dataset"], sort=False):
        for setting, g in setting_groups(whole):
            out.append(_summary_line(g, attack, dataset, setting, paper, cnn))
    res = pd.DataFrame(out)
    if not res.empty:
        if not res["setting"].astype(bool).any():
            res = res.drop(columns="setting")
        res["_o"] = res["dataset"].map({d: i for i, d in enumerate(DATASET_ORDER)}).fillna(99)
        res["_a"] = res["attack"].map({a: i for i, a in enumerate(paper)}).fillna(99)  # the paper's order
        res = res.sort_values(["_a", "attack", "_o"], kind="stable").drop(columns=["_o", "_a"]).reset_index(drop=True)
    return res


def _summary_line(g: pd.DataFrame, attack: str, dataset: str, setting: str, paper: dict, cnn: bool) -> dict:
    """One table line: the rows ``g`` of one attack, dataset and setting."""
    n = len(g)
    failures = int((~g["status"].isin(OK_STATUSES)).sum())
    psnr_m, psnr_s, _ = _mean_std(g["psnr_mean"])
    lp_m, lp_s, lp_n = _lpips_stats(g)
    # Acc: share of batches whose every image is exact (PSNR >= the row's exact threshold)
    exact = pd.to_numeric(g["exact_fraction"], errors="coerce").fillna(0)
    acc = 100.0 * float(((exact >= 1.0) & g["status"].isin(OK_STATUSES)).mean())
    t_m, t_s, _ = _mean_std(g["time_attack_s"])
    mem = pd.to_numeric(g["peak_mem_mb"], errors="coerce") if "peak_mem_mb" in g else pd.Series(dtype=float)
    sources = sorted(set(g["data_source"].dropna()))
    p = paper.get(attack, {})
    # rows keyed by attack then dataset (table1), or by attack only (tabular, cnn)
    p = p.get(dataset, {}) if dataset in p or any(isinstance(v, dict) for v in p.values()) else p
    tab = _tabular_summary(g, p) if _is_tabular(g) else {}
    return {
        "attack": attack, "dataset": dataset, "setting": setting,
        "PSNR": psnr_m, "PSNR std": psnr_s, "paper PSNR": p.get("psnr"),
        "LPIPS": lp_m if lp_n else None, "LPIPS n/a": None if lp_n else _lpips_why(g),
        "paper LPIPS": p.get("lpips"),
        "Acc %": acc, "paper Acc %": p.get("acc"),
        "time/batch s": t_m, "paper time s": p.get("time_s"),
        # the process's peak RSS (CPU) or peak allocated CUDA memory over the batches, per row
        "peak mem MB": float(mem.max()) if mem.notna().any() else None,
        "n": n, "failures": failures,
        "B": int(g["batch_size"].iloc[0]), "data": ", ".join(sources),
        "exact at dB": g["exact_psnr_db"].dropna().iloc[0] if g["exact_psnr_db"].notna().any() else None,
        **tab,
        **(_cnn_summary(g, p) if cnn else {}),
    }


def _lpips_stats(g: pd.DataFrame) -> tuple[float, float, int]:
    """LPIPS over the rows that hold a real value (lpips_ok); never a stand-in number."""
    if "lpips_mean" not in g:
        return math.nan, math.nan, 0
    ok = g["lpips_ok"].fillna(False).astype(bool) if "lpips_ok" in g else g["lpips_mean"].notna()
    return _mean_std(g.loc[ok, "lpips_mean"])


def _lpips_why(g: pd.DataFrame) -> str | None:
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


def _method_rows(df: pd.DataFrame, method: str, p: dict, dataset) -> pd.DataFrame:
    """Rows of one comparison method: ``attack == method`` on the comparison dataset; or, for an
    entry with ``select`` (results/paper.yaml, e.g. ``{attack: ci_net, activation: sigmoid}``), the
    rows matching it on the comparison dataset when there are any, else wherever they ran (a
    profile may run the method on a cheaper dataset)."""
    select = p.get("select")
    mask = pd.Series(True, index=df.index)
    for key, value in (select or {"attack": method}).items():
        mask &= df[key].astype(str) == str(value) if key in df else False
    rows = df[mask]
    on_dataset = rows[rows["dataset"] == dataset] if dataset else rows.iloc[0:0]
    return on_dataset if not (on_dataset.empty and select) else rows


def comparison_rows(df: pd.DataFrame, table: str) -> tuple[pd.DataFrame, str | None]:
    """The paper's main comparison (``comparison`` in results/paper.yaml) beside our rows of its dataset.

    A method without rows keeps the paper's numbers only, marked "not run".
    """
    paper = paper_numbers(table)
    comp = paper.get("comparison") or {}
    dataset = paper.get("comparison_dataset")
    if not comp:
        return pd.DataFrame(), dataset
    out = []
    for method, p in comp.items():
        rows = _method_rows(df, method, p, dataset)
        groups = [(f"{ds}|{s}", h) for ds, g in rows.groupby("dataset", sort=False) for s, h in setting_groups(g)]
        for setting, g in groups or [("", rows)]:
            ds = g["dataset"].iloc[0] if not g.empty else dataset
            out.append(_comparison_line(method, ds, setting.partition("|")[2], g, p))
    return pd.DataFrame(out), dataset


def _comparison_line(method: str, dataset, setting: str, g: pd.DataFrame, p: dict) -> dict:
    ran = not g.empty
    lp_m, _, lp_n = _lpips_stats(g) if ran else (math.nan, math.nan, 0)
    per_it = _mean_std(g["diag_seconds_per_iteration"])[0] if ran and "diag_seconds_per_iteration" in g else None
    return {
        "method": method, "dataset": dataset,
        "PSNR": _mean_std(g["psnr_mean"])[0] if ran else None, "paper PSNR": p.get("psnr"),
        "LPIPS": lp_m if lp_n else None, "LPIPS n/a": None if (lp_n or not ran) else _lpips_why(g),
        "time/batch s": _mean_std(g["time_attack_s"])[0] if ran else None, "paper time s": p.get("time_s"),
        "s/it": per_it,
        "n": len(g), "B": int(g["batch_size"].iloc[0]) if ran else None,
        "status": ("ran" + (f" ({setting})" if setting else "")) if ran else "not run",
        "note": p.get("note", ""),
    }


def comparison_markdown(comp: pd.DataFrame, dataset: str | None) -> str:
    if comp.empty:
        return ""
    cols = ["method", "dataset", "PSNR", "paper PSNR", "LPIPS", "time/batch s", "s/it", "paper time s", "n", "B",
            "status", "note"]
    lines = [f"#### main comparison (paper: one ImageNet setting, B=20; ours: this profile's B, on "
             f"{DATASET_LABEL.get(dataset, dataset)} unless the dataset column says otherwise)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in comp.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c == "LPIPS" and (v is None or isinstance(v, float) and math.isnan(v)) \
                    and isinstance(r["LPIPS n/a"], str):
                cells.append(r["LPIPS n/a"])
            elif c == "B" and isinstance(v, float) and not math.isnan(v):
                cells.append(str(int(v)))
            elif c == "dataset":
                cells.append(DATASET_LABEL.get(v, str(v)))
            elif c == "s/it":
                cells.append(_fmt(v, 3))
            else:
                cells.append(_fmt(v, 4) if c == "LPIPS" else _fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def budget_notes(df: pd.DataFrame) -> list[str]:
    """What each optimisation attack was allowed (its diag_* budget), and how its labels were found."""
    notes = []
    if "diag_max_iterations" not in df:
        return notes
    for attack, g in df[df["diag_max_iterations"].notna()].groupby("attack"):
        parts = []
        groups = sorted(g.groupby("dataset"), key=lambda kv: DATASET_ORDER.index(kv[0])
                        if kv[0] in DATASET_ORDER else 99)
        for dataset, h in groups:
            its = sorted({int(v) for v in h["diag_max_iterations"].dropna()})
            rs = sorted({int(v) for v in h.get("diag_restarts", pd.Series(dtype=float)).dropna()}) or [1]
            parts.append(f"{DATASET_LABEL.get(dataset, dataset)} {'/'.join(map(str, its))}"
                         + (f" x{'/'.join(map(str, rs))} restarts" if rs != [1] else ""))
        line = f"{attack}: iterations per batch " + ", ".join(parts)
        if "diag_labels_source" in g and (g["diag_labels_source"] == "recovered").any():
            acc = pd.to_numeric(g["label_acc"], errors="coerce").dropna()
            line += (f"; labels recovered from the last layer's gradient (label acc "
                     f"{100 * acc.mean():.0f}% over {len(acc)} batches)")
        if "diag_seconds_per_iteration" in g:
            line += "; " + ", ".join(
                f"{DATASET_LABEL.get(d, d)} {pd.to_numeric(h['diag_seconds_per_iteration']).mean():.3g} s/it"
                for d, h in groups)
        notes.append(line)
    return notes


def _cnn_summary(g: pd.DataFrame, p: dict) -> dict:
    """Stage-1 feature similarity and the feature-inversion stage's quality (CNN pipelines)."""
    col = lambda name: _mean_std(g[name])[0] if name in g else math.nan  # noqa: E731
    return {"model": ", ".join(sorted(set(g["model"].dropna()))), "feature sim": col("feature_cosine"),
            "paper feature sim": p.get("feature_sim"), "FI LPIPS": col("stage_fi_lpips"),
            "FI PSNR": col("stage_fi_psnr")}


# Columns of the CNN table (conf/experiment/cnn.yaml): final LPIPS beside stage 1 and FI quality.
CNN_COLS = ["attack", "dataset", "model", "LPIPS", "paper LPIPS", "feature sim", "paper feature sim",
            "FI LPIPS", "FI PSNR", "PSNR", "time/batch s", "n", "failures", "B", "data"]


def _is_tabular(g: pd.DataFrame) -> bool:
    """Rows of a tabular dataset: the per-sample shape is (n_features,)."""
    return bool(g["image_shape"].map(lambda s: isinstance(s, (list, tuple)) and len(s) == 1).all())


# Columns of tabular rows (bench/scoring/tabular.py metrics); image-only columns are left out of such tables.
TABULAR_COLS = ["attack", "dataset", "discrete acc %", "paper discrete acc %", "continuous MAE",
                "paper continuous MAE", "Acc %", "time/batch s", "paper time s", "n", "failures", "B", "data"]
TABULAR_ONLY = ["discrete acc %", "discrete acc std", "paper discrete acc %", "continuous MAE",
                "continuous MAE std", "paper continuous MAE", "kind"]
IMAGE_ONLY = ["PSNR", "PSNR std", "paper PSNR", "LPIPS", "paper LPIPS", "paper Acc %", "exact at dB"]


def _tabular_summary(g: pd.DataFrame, p: dict) -> dict:
    d_m, d_s, _ = _mean_std(g["discrete_acc"]) if "discrete_acc" in g else (math.nan, math.nan, 0)
    c_m, c_s, _ = _mean_std(g["continuous_mae"]) if "continuous_mae" in g else (math.nan, math.nan, 0)
    return {"kind": "tabular", "discrete acc %": 100 * d_m, "discrete acc std": 100 * d_s,
            "paper discrete acc %": p.get("discrete_acc"), "continuous MAE": c_m, "continuous MAE std": c_s,
            "paper continuous MAE": p.get("continuous_mae")}


def _drop_other_kind(res: pd.DataFrame) -> pd.DataFrame:
    """A table of tabular rows only drops the image columns, one of image rows the tabular ones."""
    kinds = set(res["kind"].fillna("image")) if "kind" in res else {"image"}
    drop = IMAGE_ONLY if kinds == {"tabular"} else TABULAR_ONLY if kinds == {"image"} else []
    return res.drop(columns=[c for c in drop if c in res])


def _fmt(v, digits=1):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def to_markdown(res: pd.DataFrame, table: str, notes: list[str]) -> str:
    cols = ["attack", "dataset", "PSNR", "paper PSNR", "LPIPS", "paper LPIPS", "Acc %", "paper Acc %",
            "time/batch s", "paper time s", "peak mem MB", "n", "failures", "B", "data"]
    kinds = set(res["kind"].fillna("image")) if "kind" in res else {"image"}
    if kinds == {"tabular"}:
        cols = TABULAR_COLS
    elif "feature sim" in res:
        cols = CNN_COLS
    elif "tabular" in kinds:
        cols = cols[:-4] + [c for c in TABULAR_COLS[2:6]] + cols[-4:]
    if "setting" in res:  # one attack and dataset ran in several settings: one line each
        cols = cols[:2] + ["setting"] + cols[2:]
    lines = [f"### {table}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in res.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c == "PSNR" and not (isinstance(v, float) and math.isnan(v)):
                cells.append(f"{v:.1f} ± {r['PSNR std']:.1f}")
            elif c in ("discrete acc %", "continuous MAE") and not (v is None or isinstance(v, float) and math.isnan(v)):
                std = r[c.replace(" %", "") + " std"]
                cells.append(f"{_fmt(v)} ± {_fmt(std)}")
            elif c == "dataset":
                cells.append(DATASET_LABEL.get(v, v))
            elif c == "LPIPS" and (v is None or isinstance(v, float) and math.isnan(v)) \
                    and isinstance(r.get("LPIPS n/a"), str):
                cells.append(str(r["LPIPS n/a"]))
            elif c in ("LPIPS", "paper LPIPS", "FI LPIPS"):
                cells.append(_fmt(v, 4))
            elif c in ("feature sim", "paper feature sim"):
                cells.append(_fmt(v, 3))
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def notes_for(df: pd.DataFrame, res: pd.DataFrame, table: str) -> list[str]:
    notes = []
    cite = paper_numbers(table).get("citation")
    if cite:
        notes.append(f"paper columns: {cite}; times converted to seconds")
    thr = sorted(set(df["exact_psnr_db"].dropna())) if "exact_psnr_db" in df else []
    if thr:
        notes.append(f"Acc = share of batches with every image at PSNR >= {thr[0]:g} dB after Hungarian "
                     f"matching; PSNR in [0,1] pixel space, MSE floored at the {df['psnr_cap_db'].dropna().iloc[0]:g} dB cap")
    if "kind" in res and (res["kind"] == "tabular").any():
        notes.append("tabular: records decoded (argmax per one-hot block; continuous fields de-standardised, "
                     "rounded to their integer grid) and Hungarian-matched; discrete acc = share of discrete "
                     "fields recovered; continuous MAE = mean absolute error of the continuous fields in "
                     "original units; Acc = share of batches with every record exact")
    if "feature sim" in res:
        states = ", ".join(sorted(set(df["model_state"].dropna().astype(str)))) if "model_state" in df else "?"
        notes.append("CNN: feature sim = mean |cos| between the recovered and the true inputs of the attacked "
                     "layer (the trunk's features), Hungarian-matched; FI LPIPS/PSNR = the images after "
                     "feature inversion, before the Geiping refinement; LPIPS/PSNR = the final images; "
                     f"model state: {states}")
        if (res["model"] != "vgg16").any():
            notes.append("the paper's CNN is VGG-16 (224x224); rows with another model (quick profile: "
                         "small_cnn, smaller images, short budgets) are a scaled-down stand-in")
    tab_stand = sorted({f"{DATASET_LABEL.get(d, d)} ({s})" for d, s in zip(df["dataset"], df["data_source"])
                        if str(s).startswith("stand-in:") and str(s).endswith("-synthetic")})
    if tab_stand:
        notes.append("stand-in data (synthetic records drawn per column with the dataset's schema, not real "
                     "people) for: " + ", ".join(tab_stand))
    stand = sorted({d for d, s in zip(df["dataset"], df["data_source"])
                    if str(s).startswith("stand-in") and not str(s).endswith("-synthetic")})
    if stand:
        notes.append("stand-in data (crops of bundled photographs, not the real dataset) for: "
                     + ", ".join(DATASET_LABEL.get(d, d) for d in stand))
    up = df[df["sample_ids"].astype(str).str.contains("upsampled")]["dataset"].unique()
    if len(up):
        notes.append("some stand-in crops are upsampled to reach the resolution for: "
                     + ", ".join(DATASET_LABEL.get(d, d) for d in up))
    if "setting" in res:
        notes.append("an attack and dataset that ran in several settings gets one line per setting; the "
                     "setting column names the keys that differ (config=<hash>: an attack or config knob)")
    bad = df[~df["status"].isin(OK_STATUSES)]
    for status, g in bad.groupby("status"):
        notes.append(f"{len(g)} batch(es) with status {status}: "
                     + "; ".join(sorted({str(m).splitlines()[0][:120] for m in g["error_msg"].dropna()}))[:400])
    profiles = sorted(set(df.get("profile", pd.Series(dtype=str)).dropna()))
    if profiles:
        notes.append(f"profile: {', '.join(profiles)}; device: {', '.join(sorted(set(df['device'].dropna())))}")
    return notes


def write_table(results: Path, experiment: str, profile: str | None, table: str | None = None) -> Path:
    table = table or experiment
    df = load_rows(results, experiment, profile)
    res = summarise(df, table)
    notes = notes_for(df, res, table) + budget_notes(df)
    res = _drop_other_kind(res)
    out = results / "tables"
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(res, table, notes)
    comp, comp_ds = comparison_rows(df, table)
    if not comp.empty:
        md += "\n" + comparison_markdown(comp, comp_ds)
        comp.to_csv(out / f"{table}_comparison.csv", index=False)
    (out / f"{table}.md").write_text(md, encoding="utf-8")
    res.to_csv(out / f"{table}.csv", index=False)
    tex = res.drop(columns=["data"]).to_latex(index=False, float_format=lambda v: _fmt(v), na_rep="--")
    (out / f"{table}.tex").write_text("% " + "\n% ".join(notes) + "\n" + tex, encoding="utf-8")
    print(md)
    return out / f"{table}.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", required=True)
    ap.add_argument("--profile", default=None, help="keep only rows of this profile (quick | paper)")
    ap.add_argument("--table", default=None, help="name of the table (default: the experiment)")
    ap.add_argument("--results", default=os.environ.get("SPEAR_RESULTS", "results"),
                    help="results folder (default: $SPEAR_RESULTS, else results)")
    ap.add_argument("--wandb", action="store_true",
                    help="also log the table as a W&B run (job type 'table'; offline unless "
                         "WANDB_MODE=online): make reproduce-table1 LOGGER=wandb")
    ap.add_argument("--wandb-dir", default="outputs",
                    help="where offline W&B runs go (<dir>/wandb/offline-run-*; default: outputs)")
    args = ap.parse_args(argv)
    try:
        md_path = write_table(Path(args.results), args.experiment, args.profile, args.table)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.wandb:
        from bench.record.loggers import log_table_run

        run_dir = log_table_run(pd.read_csv(md_path.with_suffix(".csv")), args.table or args.experiment,
                                profile=args.profile, markdown=md_path.read_text(encoding="utf-8"),
                                dir=args.wandb_dir)
        print(f"[spear-bench] W&B table run: {run_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
