"""The figures of the SPEAR paper (Dimitrov et al., NeurIPS 2024, arXiv 2403.03945), regenerated
from result rows only.

``python -m bench.plots --profile quick`` (``make figures``) reads results/raw/fig_*/*.jsonl and
writes results/figures/<figure>.{png,pdf,csv} (the CSV holds exactly the plotted numbers):

* ``fig_failure_width``: failure probability against the attacked layer's width m, one curve per B,
  beside the bound ``B * P[Binomial(m, 1/2) < k]`` (:func:`failure_bound`);
* ``fig_sampling``: proposals (submatrices) drawn until SPEAR's selection passed the a-posteriori
  check, against B, per width: median and 10th-90th percentile band beside ``2^(B-1) H_B``;
* ``fig_two_stage``: accuracy against B with the single- and the two-stage greedy selection;
* the teaser grids (truth / SPEAR / Geiping per dataset) when bench.figures provides them.

DP-SGD, FedAvg and depth plots are not drawn: those defenses are not built yet.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

OK = "ok"


class NothingToPlot(ValueError):
    """The rows hold no point this figure could draw (the message says why); no file is written."""


# ---------------------------------------------------------------------- analytic curves
def failure_bound(m, B: int, k: int | None = None) -> np.ndarray:
    """``min(1, B * P[Binomial(m, 1/2) < k])`` with ``k = B - 1`` by default.

    SPEAR pins sample i's direction down only from rows where sample i is inactive; it needs at
    least ``B - 1`` of them (the sparsity filter in attacks/spear/filtering.py asks for
    ``max(ceil(tau*m), B - 1 + min_extra_zeros)``). If each of the m neurons is inactive for a sample
    independently with probability 1/2, the union bound over the B samples gives this upper bound
    on the probability that some sample has too few inactive neurons -- a failure no amount of
    sampling can repair.
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


def wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval ``(lo, hi)`` of a binomial proportion k/n, with
    ``0 <= lo <= k/n <= hi <= 1`` exactly.

    The score interval contains its estimate in exact arithmetic, but in floating point its ends
    can land an ulp on the wrong side of it (k = 0, n = 11: lo = 2.8e-17 > 0 = k/n), which made an
    error bar negative. The ends are therefore taken as ``min(formula, k/n)`` and
    ``max(formula, k/n)``, then clipped to [0, 1]: at k = 0 the lower end is exactly 0, at k = n
    the upper end exactly 1. Points with n = 0 give NaN.
    """
    k, n = np.asarray(k, float), np.asarray(n, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
        den = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
    lo = np.clip(np.fmin(centre - half, p), 0, 1)
    hi = np.clip(np.fmax(centre + half, p), 0, 1)
    return np.where(np.isnan(p), np.nan, lo), np.where(np.isnan(p), np.nan, hi)


def error_bars(estimate, lo, hi) -> np.ndarray:
    """``yerr`` for matplotlib's errorbar: the (2, N) distances from the estimate down to ``lo``
    and up to ``hi``, clipped at zero (an estimate rescaled apart from its interval, e.g. a
    percentage computed as ``100 * k / n`` beside ``100 * lo``, may differ from it by an ulp)."""
    est = np.asarray(estimate, float)
    return np.vstack([np.maximum(est - np.asarray(lo, float), 0.0),
                      np.maximum(np.asarray(hi, float) - est, 0.0)])


# ---------------------------------------------------------------------- rows
def load(results: Path, experiment: str, profile: str | None) -> pd.DataFrame | None:
    """Rows of one experiment (None when it has not been run)."""
    from bench.tables import load_rows

    try:
        return load_rows(results, experiment, profile)
    except (FileNotFoundError, ValueError):
        return None


def exact(df: pd.DataFrame) -> pd.Series:
    """A batch counts as recovered when its status is ok and every image is exact."""
    frac = pd.to_numeric(df.get("exact_fraction"), errors="coerce").fillna(0.0)
    return (df["status"] == OK) & (frac >= 1.0)


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _save(fig, out: Path, table: pd.DataFrame) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=130, bbox_inches="tight")
    fig.savefig(out.with_suffix(".pdf"), bbox_inches="tight")
    table.to_csv(out.with_suffix(".csv"), index=False)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out.with_suffix(".png")


def _n(g: pd.DataFrame) -> str:
    lo, hi = int(g["n"].min()), int(g["n"].max())
    return f"n={lo}" if lo == hi else f"n={lo}-{hi}"


def _legend_below(ax, fig, ncol: int = 2) -> None:
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False)


def _footer(df: pd.DataFrame) -> str:
    src = ", ".join(f"{d} ({s})" for d, s in sorted(set(zip(df["dataset"].astype(str),
                                                           df["data_source"].astype(str)))))
    prof = ", ".join(sorted(set(df.get("profile", pd.Series(dtype=str)).dropna().astype(str))))
    return f"data: {src}; profile: {prof}; {df['model'].iloc[0]} depth {df['depth'].iloc[0]}, untrained"


# ---------------------------------------------------------------------- (a) failure vs width
def failure_width_table(df: pd.DataFrame) -> pd.DataFrame:
    # B < m is SPEAR's precondition (a low-rank gradient); rows at m <= B are not_applicable
    d = df[(df["status"] != "not_applicable") & (df["width"] > df["batch_size"])].copy()
    d["failed"] = ~exact(d)
    g = d.groupby(["batch_size", "width"])["failed"].agg(["sum", "count"]).reset_index()
    g = g.rename(columns={"sum": "failures", "count": "n"})
    g["p_fail"] = g["failures"] / g["n"]
    g["ci_lo"], g["ci_hi"] = wilson(g["failures"].to_numpy(), g["n"].to_numpy())
    g["bound_k_B-1"] = [float(failure_bound(m, int(b))) for b, m in zip(g["batch_size"], g["width"])]
    return g.sort_values(["batch_size", "width"]).reset_index(drop=True)


def plot_failure_width(df: pd.DataFrame, out: Path) -> Path:
    from attacks.spear import SpearConfig

    plt = _plt()
    t = failure_width_table(df)
    if t.empty:
        raise NothingToPlot("no applicable rows (every row is not_applicable or has width <= B)")
    sc = SpearConfig()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (B, g) in enumerate(t.groupby("batch_size")):
        c = colors[i % len(colors)]
        err = error_bars(g["p_fail"], g["ci_lo"], g["ci_hi"])
        ax.errorbar(g["width"], g["p_fail"], yerr=err, color=c, marker="o", capsize=3, lw=1.8,
                    label=f"B={B} measured ({_n(g)} batches per point, 95% CI)")
        ms = np.arange(max(int(B) + 1, int(t["width"].min())), int(t["width"].max()) + 1)
        ax.plot(ms, failure_bound(ms, int(B)), color=c, ls="--", lw=1.2,
                label=f"B={B} bound B·P[Bin(m,½) < B−1]")
        k_ours = np.maximum(np.ceil(sc.tau * ms), int(B) - 1 + sc.min_extra_zeros)
        ax.plot(ms, failure_bound(ms, int(B), k_ours), color=c, ls=":", lw=1.2,
                label=f"B={B} same with our filter's k = max(⌈{sc.tau:g}m⌉, B+{sc.min_extra_zeros - 1})")
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(w) for w in t["width"]))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(w) for w in ticks])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("width m of the attacked layer (neurons)")
    ax.set_ylabel("failure probability (batch not recovered exactly)")
    ax.set_title("SPEAR failure probability against layer width\n" + _footer(df), fontsize=9)
    _legend_below(ax, fig, ncol=len(t["batch_size"].unique()))
    return _save(fig, out, t)


# ---------------------------------------------------------------------- (b) proposals vs B
def sampling_table(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["status"] != "not_applicable"].copy()
    d["proposals"] = _col(d, "diag_proposals_to_success")
    d["succeeded"] = exact(d) & d["proposals"].notna()
    rows = []
    for (m, B), g in d.groupby(["width", "batch_size"]):
        p = g.loc[g["succeeded"], "proposals"].to_numpy(float)
        rows.append({"width": m, "batch_size": B, "n": len(g), "succeeded": len(p),
                     "median": np.median(p) if len(p) else np.nan,
                     "p10": np.percentile(p, 10) if len(p) else np.nan,
                     "p90": np.percentile(p, 90) if len(p) else np.nan,
                     "expected_2^(B-1)H_B": float(expected_proposals(B)),
                     "median_time_s": float(g["time_attack_s"].median())})
    return pd.DataFrame(rows).sort_values(["width", "batch_size"]).reset_index(drop=True)


def plot_sampling(df: pd.DataFrame, out: Path) -> Path:
    plt = _plt()
    t = sampling_table(df)
    if t.empty or not (t["succeeded"] > 0).any():
        raise NothingToPlot("no batch was recovered, so no proposal count to plot")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (m, g) in enumerate(t.groupby("width")):
        c = colors[i % len(colors)]
        g = g[g["succeeded"] > 0]
        ax.fill_between(g["batch_size"], g["p10"], g["p90"], color=c, alpha=0.2,
                        label=f"m={m}: 10th–90th percentile")
        ax.plot(g["batch_size"], g["median"], color=c, marker="o", lw=1.8,
                label=f"m={m}: median ({int(g['succeeded'].sum())}/{int(g['n'].sum())} batches recovered)")
    Bs = np.arange(int(t["batch_size"].min()), int(t["batch_size"].max()) + 1)
    ax.plot(Bs, expected_proposals(Bs), color="black", ls="--", lw=1.4, label="expectation 2^(B−1)·H_B")
    counts = _col(df, "diag_proposals_to_success").dropna().astype(np.int64).to_numpy()
    if len(counts):
        step = int(np.gcd.reduce(counts))
        ax.axhline(step, color="grey", ls=":", lw=1, label=f"resolution: {step} proposals per step")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("submatrices sampled until all B directions found")
    ax.set_title("SPEAR sampling cost against batch size\n" + _footer(df), fontsize=9)
    _legend_below(ax, fig)
    return _save(fig, out, t)


# ---------------------------------------------------------------------- (c) one vs two stages
def two_stage_table(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["status"] != "not_applicable"].copy()
    d["second_stage"] = _col(d, "diag_second_stage")
    d = d[d["second_stage"].notna()]
    d["exact"] = exact(d)
    d["swaps"] = _col(d, "diag_stage2_swaps")
    g = d.groupby(["width", "second_stage", "batch_size"]).agg(
        recovered=("exact", "sum"), n=("exact", "count"), mean_swaps=("swaps", "mean"),
        mean_time_s=("time_attack_s", "mean")).reset_index()
    g["accuracy_pct"] = 100.0 * g["recovered"] / g["n"]
    lo, hi = wilson(g["recovered"].to_numpy(), g["n"].to_numpy())
    g["ci_lo_pct"], g["ci_hi_pct"] = 100 * lo, 100 * hi
    g["second_stage"] = g["second_stage"].astype(int).astype(bool)
    return g.sort_values(["width", "second_stage", "batch_size"]).reset_index(drop=True)


def plot_two_stage(df: pd.DataFrame, out: Path) -> Path:
    plt = _plt()
    t = two_stage_table(df)
    if t.empty:
        raise NothingToPlot("no applicable row records diag_second_stage")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    style = {True: ("o", "-", "two-stage greedy (+ repair swaps)"), False: ("s", "--", "single-stage greedy")}
    colors = {True: ["tab:blue", "tab:purple", "tab:cyan"], False: ["tab:orange", "tab:red", "tab:brown"]}
    widths = sorted(set(t["width"].dropna().astype(int)))
    for (m, stage), g in t.groupby(["width", "second_stage"]):
        mk, ls, lab = style[bool(stage)]
        c = colors[bool(stage)][widths.index(int(m)) % 3]
        err = error_bars(g["accuracy_pct"], g["ci_lo_pct"], g["ci_hi_pct"])
        swaps = g["mean_swaps"].mean()
        ax.errorbar(g["batch_size"] + (0.08 if stage else -0.08), g["accuracy_pct"], yerr=err, color=c,
                    marker=mk, ls=ls, capsize=3, lw=1.8,
                    label=(f"m={m}, {lab} ({_n(g)} batches, 95% CI"
                           + (f", {swaps:.1f} swaps/batch)" if stage else ")")))
    ax.set_ylim(-3, 103)
    ax.set_xlabel("batch size B")
    ax.set_ylabel("accuracy: batches recovered exactly (%)")
    ax.set_title(f"SPEAR single- vs two-stage selection, width m={', '.join(map(str, widths))}\n"
                 + _footer(df), fontsize=9)
    _legend_below(ax, fig, ncol=1)
    return _save(fig, out, t)


FIGURES = {
    "fig_failure_width": plot_failure_width,
    "fig_sampling": plot_sampling,
    "fig_two_stage": plot_two_stage,
}


def teaser(results: Path, profile: str | None) -> list[Path] | None:
    """The SPEAR / Geiping / truth grids per dataset (bench.figures.teaser_grids) from the rows of
    experiment fig_teaser, else table1. None when bench.figures has no teaser."""
    import bench.figures as figures

    fn = getattr(figures, "teaser_grids", None)
    if fn is None:
        return None
    for experiment in ("fig_teaser", "table1"):
        paths = list(fn(results, profile=profile, experiment=experiment) or [])
        if paths:
            return paths
    return []


def make_all(results: Path, profile: str | None, only: list[str] | None = None) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {}
    for name, fn in FIGURES.items():
        if only and name not in only:
            continue
        df = load(results, name, profile)
        if df is None or df.empty:
            print(f"[spear-bench] {name}: no rows under {results / 'raw' / name} "
                  f"(run `python -m bench.run -m experiment={name} profile={profile or 'quick'}`)",
                  file=sys.stderr)
            out[name] = None
            continue
        try:
            out[name] = fn(df, results / "figures" / name)
        except NothingToPlot as exc:
            print(f"[spear-bench] {name}: not drawn, {exc} ({len(df)} rows under {results / 'raw' / name})",
                  file=sys.stderr)
            out[name] = None
            continue
        print(f"[spear-bench] {name}: {out[name]}", file=sys.stderr)
    if not only or "teaser" in only:
        paths = teaser(results, profile)
        if paths == []:
            print(f"[spear-bench] teaser: no dataset has SPEAR and Geiping thumbnails of one batch under "
                  f"{results / 'raw'}/fig_teaser (run `python -m bench.run -m experiment=fig_teaser "
                  f"profile={profile or 'quick'}`)", file=sys.stderr)
            out["teaser"] = None
        for i, p in enumerate(paths or []):
            out[f"teaser_{i}"] = p
            print(f"[spear-bench] teaser: {p}", file=sys.stderr)
    return out


def main(argv=None) -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None, help="keep only rows of this profile (quick | paper)")
    ap.add_argument("--results", default=os.environ.get("SPEAR_RESULTS", "results"),
                    help="results folder (default: $SPEAR_RESULTS, else results)")
    ap.add_argument("--only", nargs="*", default=None,
                    help=f"figures to draw (default: all): {', '.join(FIGURES)}, teaser")
    args = ap.parse_args(argv)
    made = make_all(Path(args.results), args.profile, args.only)
    missing = [k for k, v in made.items() if v is None]
    if missing:
        print(f"error: no figure for {', '.join(missing)} (no rows, or nothing to plot)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
