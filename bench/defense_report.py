"""Tables and figures of the defense and protocol experiments (``make reproduce-defenses``).

* ``results/tables/dp.*``     -- PSNR and exact share against the DP-SGD noise multiplier σ (C = 1)
* ``results/tables/fedavg.*`` -- against FedAvg local epochs E and learning rate η
* ``results/tables/depth.*``  -- SPEAR attacking linear layers 1-5: feature cosine, exact share, time
* ``results/tables/labels.*`` -- label-homogeneous against class-balanced batches
* ``results/figures/fig_dp``, ``fig_fedavg``, ``fig_depth`` (PNG, PDF and the plotted CSV)

A batch is *exact* when its status is ``ok`` and every image is at PSNR ≥ ``metrics.exact_psnr_db``
(80 dB); *exact inputs* drops the status condition (SPEAR's a-posteriori check assumes the ReLU
pattern of one gradient step, so it flags multi-step FedAvg batches it did recover); for the depth table, where deeper layers recover features, when its status is ``ok`` and
the matched features' mean |cos| is ≥ 1 − 1e-9. Failed batches stay in the means (PSNR of whatever
the attack returned; a batch with nothing returned has no PSNR and counts as not exact).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

EXACT_COS = 1 - 1e-9


def _load(results: Path, experiment: str, profile: str | None) -> pd.DataFrame | None:
    from bench.plots import load

    return load(results, experiment, profile)


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(np.nan, index=df.index)


def _exact(df: pd.DataFrame) -> pd.Series:
    return (df["status"] == "ok") & (_num(df, "exact_fraction").fillna(0.0) >= 1.0)


def _statuses(g: pd.DataFrame) -> str:
    return ", ".join(f"{k} {v}" for k, v in g["status"].value_counts().sort_index().items())


def _summary(df: pd.DataFrame, keys: list[str], exact: pd.Series | None = None) -> pd.DataFrame:
    df = df.assign(_exact=_exact(df) if exact is None else exact, _psnr=_num(df, "psnr_mean"),
                   _time=_num(df, "time_attack_s"), _lacc=_num(df, "label_acc"),
                   _fcos=_num(df, "feature_cosine"))
    out = []
    for key, g in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append(dict(zip(keys, key), n=len(g), psnr_mean=g["_psnr"].mean(), psnr_std=g["_psnr"].std(),
                        psnr_min=g["_psnr"].min(), exact_share=g["_exact"].mean(),
                        exact_inputs=(_num(g, "exact_fraction").fillna(0.0) >= 1.0).mean(),
                        feature_cosine=g["_fcos"].mean(), label_acc=g["_lacc"].mean(),
                        time_s=g["_time"].mean(), statuses=_statuses(g)))
    return pd.DataFrame(out)


def _fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if abs(v) >= 1e300:
            return "∞"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.2g}"
        return f"{v:.{digits}f}"
    return str(v)


def _write(table: pd.DataFrame, cols: dict[str, tuple[str, int]], out: Path, title: str,
           notes: list[str]) -> Path:
    """Markdown, CSV and LaTeX of ``table`` (``cols``: column -> (header, digits))."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    heads = [h for h, _ in cols.values()]
    lines = [f"### {title}", "", "| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    body = []
    for _, r in table.iterrows():
        cells = [_fmt(r[c], d) if isinstance(r[c], (float, np.floating)) else str(r[c])
                 for c, (_, d) in cols.items()]
        body.append(cells)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    esc = lambda s: str(s).replace("_", r"\_").replace("%", r"\%").replace("∞", r"$\infty$").replace("–", "--")  # noqa: E731
    tex = [r"\begin{tabular}{" + "l" * len(heads) + "}", r"\toprule",
           " & ".join(esc(h) for h in heads) + r" \\", r"\midrule"]
    tex += [" & ".join(esc(c) for c in cells) + r" \\" for cells in body]
    tex += [r"\bottomrule", r"\end{tabular}"]
    out.with_suffix(".tex").write_text("\n".join(tex) + "\n", encoding="utf-8")
    return out.with_suffix(".md")


def _setting_note(df: pd.DataFrame) -> str:
    src = ", ".join(sorted(set(f"{d} ({s})" for d, s in zip(df["dataset"], df["data_source"]))))
    prof = ", ".join(sorted(set(df["profile"].dropna().astype(str)))) if "profile" in df else "?"
    return (f"data: {src}; {df['model'].iloc[0]} width {df['width'].iloc[0]}, depth {df['depth'].iloc[0]}, "
            f"untrained; B = {', '.join(str(b) for b in sorted(set(df['batch_size'])))}; profile {prof}")


EXACT_NOTE = ("exact: status ok and every image at PSNR >= 80 dB; exact inputs: every image at "
              ">= 80 dB whatever the status (an attack that recovered the batch but could not certify "
              "it); PSNR mean over batches of the per-batch mean (failed batches included); time: "
              "attack seconds per batch")


# ---------------------------------------------------------------------- tables
def dp_table(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(sigma=_num(df, "defense_noise_multiplier"), epsilon=_num(df, "dp_epsilon"))
    t = _summary(df, ["attack", "sigma"])
    eps = df.groupby("sigma")["epsilon"].first()
    t["epsilon"] = t["sigma"].map(eps)
    return t


def fedavg_table(df: pd.DataFrame) -> pd.DataFrame:
    df = df.assign(epochs=_num(df, "defense_epochs").astype("Int64"), lr=_num(df, "defense_lr"),
                   local_batch=_num(df, "defense_local_batch").astype("Int64"))
    return _summary(df, ["attack", "lr", "epochs", "local_batch"])


def depth_table(df: pd.DataFrame) -> pd.DataFrame:
    name = df["diag_attacked_layer"] if "diag_attacked_layer" in df else pd.Series(np.nan, index=df.index)
    layer = pd.to_numeric(name, errors="coerce")
    df = df.assign(layer=((layer + 1) // 2).astype("Int64"),
                   features=_num(df, "diag_layer_n").astype("Int64"))
    exact = (df["status"] == "ok") & (_num(df, "feature_cosine").fillna(0) >= EXACT_COS)
    t = _summary(df, ["attack", "layer", "features"], exact=exact)
    t.loc[t["layer"] != 1, ["psnr_mean", "psnr_std", "psnr_min"]] = np.nan  # no images past layer 1
    return t


def labels_table(df: pd.DataFrame) -> pd.DataFrame:
    hom = df["label_homogeneous"] if "label_homogeneous" in df else pd.Series(False, index=df.index)
    df = df.assign(batch=np.where(hom.fillna(False).astype(bool), "label-homogeneous", "class-balanced"))
    return _summary(df, ["attack", "batch"])


# ---------------------------------------------------------------------- figures
def _plt():
    from bench.plots import _plt as p

    return p()


def _save(fig, out: Path, table: pd.DataFrame) -> Path:
    from bench.plots import _save as s

    return s(fig, out, table)


def fig_dp(t: pd.DataFrame, out: Path, note: str) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    nz = t["sigma"][t["sigma"] > 0]
    zero_at = float(nz.min()) / 10 if len(nz) else 1e-5
    for attack, g in t.groupby("attack"):
        xs = g["sigma"].where(g["sigma"] > 0, zero_at)
        axes[0].plot(xs, g["psnr_mean"], "o-", label=attack)
        axes[1].plot(xs, 100 * g["exact_share"], "o-", label=attack)
    for ax, yl in zip(axes, ("PSNR (dB), mean over batches", "exact batches (%)")):
        ax.set_xscale("log")
        ax.set_xlabel(f"noise multiplier σ (C = 1; σ = 0 drawn at {zero_at:g})")
        ax.set_ylabel(yl)
    axes[0].legend()
    fig.suptitle("DP-SGD: attacks against the noise multiplier", fontsize=10)
    fig.text(0.01, -0.02, note, fontsize=7)
    return _save(fig, out, t)


def fig_fedavg(t: pd.DataFrame, out: Path, note: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for (attack, lr), g in t.groupby(["attack", "lr"]):
        g = g.sort_values("epochs")
        ax.plot(g["epochs"].astype(float), g["psnr_mean"], "o-" if attack == "spear" else "s--",
                label=f"{attack}, η={lr:g}")
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10], labels=["1", "2", "5", "10"])
    ax.set_xlabel("local epochs E (local batch = B)")
    ax.set_ylabel("PSNR (dB)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("FedAvg: attacks against local epochs and learning rate", fontsize=10)
    fig.text(0.01, -0.02, note, fontsize=7)
    return _save(fig, out, t)


def fig_depth(t: pd.DataFrame, out: Path, note: str) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    t = t.sort_values("layer")
    axes[0].plot(t["layer"].astype(float), t["feature_cosine"], "o-", label="feature cosine")
    axes[0].plot(t["layer"].astype(float), t["exact_share"], "s--", label="exact share")
    axes[0].set_ylabel("mean |cos| / share")
    axes[0].set_ylim(-0.02, 1.05)
    axes[0].legend(fontsize=8)
    axes[1].plot(t["layer"].astype(float), t["time_s"], "o-")
    axes[1].set_ylabel("attack time per batch (s)")
    for ax in axes:
        ax.set_xlabel("attacked linear layer")
        ax.set_xticks(sorted(t["layer"].dropna().astype(int).unique()))
    fig.suptitle("SPEAR against the attacked layer's depth (6-layer FCNN)", fontsize=10)
    fig.text(0.01, -0.02, note, fontsize=7)
    return _save(fig, out, t)


# ---------------------------------------------------------------------- all
COMMON = {"n": ("n", 0), "psnr_mean": ("PSNR", 1), "psnr_std": ("± std", 1), "exact_share": ("exact", 2),
          "exact_inputs": ("exact inputs", 2),
          "time_s": ("time (s)", 1), "statuses": ("status", 0)}


def make_all(results: Path, profile: str | None) -> dict[str, Path | None]:
    tables, figures = results / "tables", results / "figures"
    out: dict[str, Path | None] = {}
    df = _load(results, "dp", profile)
    if df is not None:
        t = dp_table(df)
        note = _setting_note(df)
        out["dp"] = _write(t, {"attack": ("attack", 0), "sigma": ("σ", 4), "epsilon": ("ε (δ=1e-5)", 1), **COMMON},
                           tables / "dp", "DP-SGD: noise multiplier σ at clipping C = 1",
                           [note, EXACT_NOTE, "ε: Opacus RDP accountant, one step at q = B/50 000, δ = 1e-5 "
                            "(∞ without noise)", "SPEAR runs noise-aware (attacks/spear/noise.py); batch size "
                            "revealed to both attacks"])
        out["fig_dp"] = fig_dp(t, figures / "fig_dp", note)
    df = _load(results, "fedavg", profile)
    if df is not None:
        t = fedavg_table(df)
        note = _setting_note(df)
        out["fedavg"] = _write(t, {"attack": ("attack", 0), "lr": ("η", 3), "epochs": ("E", 0),
                                   "local_batch": ("b_l", 0), **COMMON}, tables / "fedavg",
                               "FedAvg: local epochs E and learning rate η",
                               [note, EXACT_NOTE, "the server knows η, E, b_l and attacks −ΔW/(η·steps); "
                                "Geiping et al.: one-step approximation"])
        out["fig_fedavg"] = fig_fedavg(t, figures / "fig_fedavg", note)
    df = _load(results, "depth", profile)
    if df is not None:
        t = depth_table(df)
        note = _setting_note(df)
        out["depth"] = _write(t, {"attack": ("attack", 0), "layer": ("layer", 0), "features": ("inputs n", 0),
                                  "n": ("n", 0), "feature_cosine": ("feature cos", 6),
                                  "exact_share": ("exact", 2), "psnr_mean": ("PSNR (layer 1)", 1),
                                  "time_s": ("time (s)", 1), "statuses": ("status", 0)},
                              tables / "depth", "SPEAR attacking linear layers 1–5",
                              [note, "exact: status ok and mean |cos| of the Hungarian-matched recovered "
                               "and true layer inputs >= 1 - 1e-9; layers > 1 recover features, so PSNR "
                               "is for layer 1 only"])
        out["fig_depth"] = fig_depth(t, figures / "fig_depth", note)
    df = _load(results, "label_homogeneous", profile)
    if df is not None:
        t = labels_table(df)
        out["labels"] = _write(t, {"attack": ("attack", 0), "batch": ("batch", 0), **COMMON,
                                   "label_acc": ("label acc", 2)}, tables / "labels",
                               "Label-homogeneous against class-balanced batches",
                               [_setting_note(df), EXACT_NOTE, "label acc: share of recovered labels "
                                "(Geiping et al. count them from the last layer; SPEAR recovers none)"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=os.environ.get("SPEAR_RESULTS", "results"))
    ap.add_argument("--profile", default=None)
    args = ap.parse_args(argv)
    out = make_all(Path(args.results), args.profile)
    for k, p in out.items():
        print(f"{k}: {p}")
        if p is not None and p.suffix == ".md":
            print(p.read_text(encoding="utf-8"))
    missing = [k for k in ("dp", "fedavg", "depth", "labels") if k not in out]
    if missing:
        print(f"no rows yet for: {', '.join(missing)} (run make reproduce-defenses)", file=sys.stderr)
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
