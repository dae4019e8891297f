"""SPEAR's figures from the rows of experiments fig_failure_width, fig_sampling and fig_two_stage
(SPEAR: Exact Gradient Inversion of Batches in Federated Learning, arXiv 2403.03945):

* failure probability against the attacked layer's width m, one curve per B, beside the bound
  ``B * P[Binomial(m, 1/2) < k]`` (:func:`failure_bound`);
* proposals (submatrices) drawn until SPEAR found all B directions, against B, per width:
  median and 10th-90th percentile band beside ``2^(B-1) H_B``;
* Acc and certified against B with the single- and the two-stage greedy selection.

A failure is a batch that is not Acc (bench/report/columns.py); the share not certified is drawn
beside it with hollow markers. Each ``*_data`` function returns exactly the plotted numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report import columns as C
from bench.report.figures.plot import (ACC_LEGEND, CERT_LEGEND, Figure, NothingToPlot, footer, legend_below,
                                       n_label, plt, save)


def failure_bound(m, B: int, k=None) -> np.ndarray:
    """``min(1, B * P[Binomial(m, 1/2) < k])`` with ``k = B - 1`` by default.

    SPEAR pins sample i's direction down only from rows where sample i is inactive; it needs at
    least ``B - 1`` of them (the sparsity filter asks for ``max(ceil(tau*m), B - 1 +
    min_extra_zeros)``). If each of the m neurons is inactive for a sample independently with
    probability 1/2, the union bound over the B samples gives this upper bound on the probability
    that some sample has too few inactive neurons -- a failure no amount of sampling can repair.
    """
    from scipy.stats import binom

    m = np.asarray(m, dtype=float)
    k = B - 1 if k is None else k
    k = np.broadcast_to(np.asarray(k, dtype=float), m.shape)
    return np.minimum(1.0, B * binom.cdf(k - 1, m, 0.5))


def expected_proposals(B) -> np.ndarray:
    """``2^(B-1) * H_B``: each proposal hits a given sample's direction with probability about
    ``2^-(B-1)`` (all B-1 rows inactive for it); collecting all B directions is a coupon collector."""
    B = np.asarray(B, dtype=float)
    harmonic = np.array([sum(1.0 / j for j in range(1, int(b) + 1)) for b in B.ravel()]).reshape(B.shape)
    return 2.0 ** (B - 1) * harmonic


def _filter_knobs(df: pd.DataFrame) -> tuple[float, int] | None:
    """The sparsity filter's (tau, min_extra_zeros) the rows recorded (diag_filter_*), if one pair."""
    tau, extra = C.num(df, "diag_filter_tau").dropna(), C.num(df, "diag_filter_min_extra_zeros").dropna()
    if tau.empty or extra.empty or tau.nunique() > 1 or extra.nunique() > 1:
        return None
    return float(tau.iloc[0]), int(extra.iloc[0])


# ---------------------------------------------------------------------- failure vs width
def failure_width_data(df: pd.DataFrame) -> pd.DataFrame:
    # B < m is SPEAR's precondition (a low-rank gradient); rows at m <= B are not_applicable
    d = df[(df["status"] != "not_applicable") & (df["width"] > df["batch_size"])]
    d = d.assign(failed=~C.acc(d), uncertified=~C.certified(d))
    g = d.groupby(["batch_size", "width"]).agg(failures=("failed", "sum"), n=("failed", "count"),
                                               uncertified=("uncertified", "sum")).reset_index()
    g["p_fail"] = g["failures"] / g["n"]
    g["ci_lo"], g["ci_hi"] = C.wilson(g["failures"].to_numpy(), g["n"].to_numpy())
    g["p_uncertified"] = g["uncertified"] / g["n"]
    g["bound_k_B-1"] = [float(failure_bound(m, int(b))) for b, m in zip(g["batch_size"], g["width"])]
    return g.sort_values(["batch_size", "width"]).reset_index(drop=True)


def plot_failure_width(df: pd.DataFrame, out: Path) -> Figure:
    t = failure_width_data(df)
    if t.empty:
        raise NothingToPlot("no applicable rows (every row is not_applicable or has width <= B)")
    knobs = _filter_knobs(df)
    p = plt()
    fig, ax = p.subplots(figsize=(7.5, 4.8))
    colors = p.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (B, g) in enumerate(t.groupby("batch_size")):
        c = colors[i % len(colors)]
        err = C.error_bars(g["p_fail"], g["ci_lo"], g["ci_hi"])
        ax.errorbar(g["width"], g["p_fail"], yerr=err, color=c, marker="o", capsize=3, lw=1.8,
                    label=f"B={B} not Acc ({n_label(g)} batches per point, 95% CI)")
        ax.plot(g["width"], g["p_uncertified"], color=c, marker="o", mfc="none", ls="none", ms=9,
                label=f"B={B} not certified")
        ms = np.arange(max(int(B) + 1, int(t["width"].min())), int(t["width"].max()) + 1)
        ax.plot(ms, failure_bound(ms, int(B)), color=c, ls="--", lw=1.2, label=f"B={B} bound B·P[Bin(m,½) < B−1]")
        if knobs is not None:
            tau, extra = knobs
            k_ours = np.maximum(np.ceil(tau * ms), int(B) - 1 + extra)
            ax.plot(ms, failure_bound(ms, int(B), k_ours), color=c, ls=":", lw=1.2,
                    label=f"B={B} same with the filter's k = max(⌈{tau:g}m⌉, B+{extra - 1})")
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(w) for w in t["width"]))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(w) for w in ticks])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("width m of the attacked layer (neurons)")
    ax.set_ylabel("failure probability (batch not Acc)")
    ax.set_title("SPEAR failure probability against layer width\n" + footer(df), fontsize=9)
    legend_below(ax, ncol=len(t["batch_size"].unique()))
    return save(fig, out, t, "SPEAR failure probability against layer width (not Acc; hollow: not certified)")


# ---------------------------------------------------------------------- proposals vs B
def sampling_data(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["status"] != "not_applicable"]
    d = d.assign(proposals=C.num(d, "diag_proposals_to_success"), acc=C.acc(d), cert=C.certified(d))
    d = d.assign(succeeded=d["acc"] & d["proposals"].notna())
    rows = []
    for (m, B), g in d.groupby(["width", "batch_size"]):
        p = g.loc[g["succeeded"], "proposals"].to_numpy(float)
        rows.append({"width": m, "batch_size": B, "n": len(g), "succeeded": len(p),
                     "acc_pct": 100 * float(g["acc"].mean()), "certified_pct": 100 * float(g["cert"].mean()),
                     "median": np.median(p) if len(p) else np.nan,
                     "p10": np.percentile(p, 10) if len(p) else np.nan,
                     "p90": np.percentile(p, 90) if len(p) else np.nan,
                     "expected_2^(B-1)H_B": float(expected_proposals(B)),
                     "median_time_s": float(C.num(g, "time_attack_s").median())})
    return pd.DataFrame(rows).sort_values(["width", "batch_size"]).reset_index(drop=True) if rows else pd.DataFrame()


def plot_sampling(df: pd.DataFrame, out: Path) -> Figure:
    t = sampling_data(df)
    if t.empty or not (t["succeeded"] > 0).any():
        raise NothingToPlot("no batch was recovered (Acc), so no proposal count to plot")
    p = plt()
    fig, ax = p.subplots(figsize=(7.5, 4.8))
    colors = p.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (m, g) in enumerate(t.groupby("width")):
        c = colors[i % len(colors)]
        g = g[g["succeeded"] > 0]
        ax.fill_between(g["batch_size"], g["p10"], g["p90"], color=c, alpha=0.2, label=f"m={m}: 10th–90th percentile")
        ax.plot(g["batch_size"], g["median"], color=c, marker="o", lw=1.8,
                label=f"m={m}: median ({int(g['succeeded'].sum())}/{int(g['n'].sum())} batches Acc)")
    Bs = np.arange(int(t["batch_size"].min()), int(t["batch_size"].max()) + 1)
    ax.plot(Bs, expected_proposals(Bs), color="black", ls="--", lw=1.4, label="expectation 2^(B−1)·H_B")
    counts = C.num(df, "diag_proposals_to_success").dropna().astype(np.int64).to_numpy()
    if len(counts):
        step = int(np.gcd.reduce(counts))
        ax.axhline(step, color="grey", ls=":", lw=1, label=f"resolution: {step} proposals per step")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("submatrices sampled until all B directions found")
    ax.set_title("SPEAR sampling cost against batch size\n" + footer(df), fontsize=9)
    legend_below(ax)
    return save(fig, out, t, "SPEAR sampling cost against batch size (batches that are Acc)")


# ---------------------------------------------------------------------- one vs two stages
def two_stage_data(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["status"] != "not_applicable"]
    d = d.assign(second_stage=C.num(d, "diag_second_stage"))
    d = d[d["second_stage"].notna()]
    d = d.assign(acc=C.acc(d), cert=C.certified(d), swaps=C.num(d, "diag_stage2_swaps"),
                 time=C.num(d, "time_attack_s"))
    g = d.groupby(["width", "second_stage", "batch_size"]).agg(
        recovered=("acc", "sum"), certified=("cert", "sum"), n=("acc", "count"), mean_swaps=("swaps", "mean"),
        mean_time_s=("time", "mean")).reset_index()
    g["accuracy_pct"] = 100.0 * g["recovered"] / g["n"]
    g["certified_pct"] = 100.0 * g["certified"] / g["n"]
    lo, hi = C.wilson(g["recovered"].to_numpy(), g["n"].to_numpy())
    g["ci_lo_pct"], g["ci_hi_pct"] = 100 * lo, 100 * hi
    g["second_stage"] = g["second_stage"].astype(int).astype(bool)
    return g.sort_values(["width", "second_stage", "batch_size"]).reset_index(drop=True)


def plot_two_stage(df: pd.DataFrame, out: Path) -> Figure:
    t = two_stage_data(df)
    if t.empty:
        raise NothingToPlot("no applicable row records diag_second_stage")
    p = plt()
    fig, ax = p.subplots(figsize=(7.5, 4.8))
    style = {True: ("o", "-", "two-stage greedy (+ repair swaps)"), False: ("s", "--", "single-stage greedy")}
    colors = {True: ["tab:blue", "tab:purple", "tab:cyan"], False: ["tab:orange", "tab:red", "tab:brown"]}
    widths = sorted(set(t["width"].dropna().astype(int)))
    for (m, stage), g in t.groupby(["width", "second_stage"]):
        mk, ls, lab = style[bool(stage)]
        c = colors[bool(stage)][widths.index(int(m)) % 3]
        x = g["batch_size"] + (0.08 if stage else -0.08)
        err = C.error_bars(g["accuracy_pct"], g["ci_lo_pct"], g["ci_hi_pct"])
        swaps = g["mean_swaps"].mean()
        ax.errorbar(x, g["accuracy_pct"], yerr=err, color=c, marker=mk, ls=ls, capsize=3, lw=1.8,
                    label=(f"m={m}, {lab}: Acc ({n_label(g)} batches, 95% CI"
                           + (f", {swaps:.1f} swaps/batch)" if stage else ")")))
        ax.plot(x, g["certified_pct"], color=c, marker=mk, mfc="none", ls="none", ms=10,
                label=f"m={m}, {lab}: certified")
    ax.set_ylim(-3, 103)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("batches (%): Acc (filled), certified (hollow)")
    ax.set_title(f"SPEAR single- vs two-stage selection, width m={', '.join(map(str, widths))}\n"
                 f"{ACC_LEGEND}; {CERT_LEGEND}\n" + footer(df), fontsize=9)
    legend_below(ax, ncol=1)
    return save(fig, out, t, "SPEAR single- vs two-stage selection: Acc and certified against B")


FIGURES = {"fig_failure_width": plot_failure_width, "fig_sampling": plot_sampling, "fig_two_stage": plot_two_stage}
DATA = {"fig_failure_width": failure_width_data, "fig_sampling": sampling_data, "fig_two_stage": two_stage_data}

__all__ = ["DATA", "FIGURES", "expected_proposals", "failure_bound", "failure_width_data", "plot_failure_width",
           "plot_sampling", "plot_two_stage", "sampling_data", "two_stage_data"]
