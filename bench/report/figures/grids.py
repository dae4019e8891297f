"""Reconstruction grids from rows and the thumbnails they point to.

One row order everywhere: the attacks top to bottom, the ground truth last.

* :func:`grid_for_run` -- one run's batch (its attack, then the truth); ``bench.run`` draws it after
  each run and the report redraws it when missing;
* :func:`teaser_grids` -- every attack's reconstruction of the same batch per dataset, then the
  truth (the paper's teaser: SPEAR, Geiping, truth), for table1, fig_teaser and cnn.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.figures.plot import Figure, plt
from bench.report.rows import load_rows
from bench.report.tables.paper import paper_numbers
from bench.record.rows import read_rows

TEASER_EXPERIMENTS = ("table1", "fig_teaser", "cnn")
TRUTH = "truth"


def artifact_path(row: dict, raw_dir: Path) -> Path | None:
    """The thumbnail file a row points to, or None when it is gone.

    Rows store it relative to the folder of their JSONL file (``<run_id>/batch_0000.npz``), so
    figures work from any working directory and after the results folder moved; rows written
    before that hold a path relative to the run's working directory, tried next.
    """
    art = row.get("artifact")
    if not isinstance(art, str) or not art:
        return None
    p = Path(art)
    for cand in (Path(raw_dir) / p, p, Path(raw_dir) / p.parent.name / p.name):
        if cand.is_file():
            return cand
    return None


def _tile(arr: np.ndarray) -> np.ndarray:
    """(N, C, H, W) uint8 -> (H, N*W, 3) with a 2 px gap."""
    n, c, h, w = arr.shape
    if c == 1:
        arr = np.repeat(arr, 3, axis=1)
    gap = 2
    canvas = np.full((h, n * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for i in range(n):
        canvas[:, i * (w + gap): i * (w + gap) + w] = arr[i].transpose(1, 2, 0)
    return canvas


def grid_figure(strips: list[tuple[str, np.ndarray]], title: str, out: Path) -> Path:
    """One strip per entry (label, (N,C,H,W) uint8), stacked top to bottom in the given order; the
    ground truth must come last. PNG and PDF."""
    labels = [lab.split("\n")[0] for lab, _ in strips]
    if TRUTH in labels[:-1] or labels[-1] != TRUTH:
        raise ValueError(f"grid rows {labels}: the attacks come first and '{TRUTH}' last")
    tiles = [(lab, _tile(a)) for lab, a in strips]
    width = max(s.shape[1] for _, s in tiles)
    fig_w = min(18.0, 1 + width / 60)
    img_w = fig_w - 1.5  # inches left for the images beside the labels
    fig_h = 0.7 + sum(img_w * s.shape[0] / width + 0.2 for _, s in tiles)
    font = 10 * max(1.0, fig_w / 9)  # readable when the page scales a wide grid down
    p = plt()
    fig, axes = p.subplots(len(tiles), 1, figsize=(fig_w, fig_h), squeeze=False)
    for ax, (lab, s) in zip(axes[:, 0], tiles):
        ax.imshow(s, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        ax.set_ylabel(lab, rotation=0, ha="right", va="center", fontsize=font)
    fig.suptitle(title, fontsize=font)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=120)
    fig.savefig(out.with_suffix(".pdf"))
    p.close(fig)
    return out.with_suffix(".png")


def _label(row: dict, activation: bool = False) -> str:
    """A strip's label: the attack (with the client model's activation when asked), its PSNR."""
    name = f"{row['attack']} ({row.get('activation')})" if activation else str(row["attack"])
    psnr = row.get("psnr_mean")
    return f"{name}\n{psnr:.1f} dB" if isinstance(psnr, (int, float)) and psnr == psnr else name


def grid_for_run(jsonl: Path, fig_dir: Path, batch_index: int = 0) -> Path | None:
    """One batch of a run: the reconstruction over the ground truth, titled with the batch's row."""
    rows = [r for r in read_rows([jsonl]) if r.get("batch_index") == batch_index and r.get("artifact")]
    if not rows:
        return None
    row = rows[-1]
    art = artifact_path(row, Path(jsonl).parent)
    if art is None:
        return None
    z = np.load(art)
    psnr = row.get("psnr_mean")
    title = (f"{row['dataset']} ({row['data_source']}), {row['attack']}, B={row['batch_size']}, "
             f"batch {batch_index}: status {row['status']}" + (f", PSNR {psnr:.1f} dB" if psnr is not None else ""))
    out = Path(fig_dir) / row["experiment"] / f"grid_{row['run_id']}_b{batch_index}"
    return grid_figure([(_label(row), z["recon"]), (TRUTH, z["truth"])], title, out)


def run_grids(results: Path, experiment: str, df: pd.DataFrame) -> list[Figure]:
    """The grid of every run in ``df`` with a thumbnail of batch 0, drawn when missing or older
    than the run's rows file."""
    out = []
    if "artifact" not in df:
        return out
    raw, figs = Path(results) / "raw" / experiment, Path(results) / "figures"
    for run_id in sorted(set(df.loc[df["artifact"].notna() & (df["batch_index"] == 0), "run_id"].dropna())):
        jsonl = raw / f"{run_id}.jsonl"
        png = figs / experiment / f"grid_{run_id}_b0.png"
        if not jsonl.exists():
            continue
        if not png.exists() or png.stat().st_mtime < jsonl.stat().st_mtime:
            png = grid_for_run(jsonl, figs)
        if png is not None and png.exists():
            out.append(Figure(name=png.stem, title=f"run {run_id}, batch 0", png=png, kind="grid"))
    return out


def attack_order(attacks, experiment: str) -> list[str]:
    """The attacks top to bottom: the paper table's order (results/paper.yaml), then by name."""
    paper = list(paper_numbers(experiment).get("rows", {}))
    return sorted(set(attacks), key=lambda a: (paper.index(a) if a in paper else len(paper), a))


def teaser_grids(results: Path | str, profile: str | None = None, experiment: str = "table1",
                 attacks: tuple[str, ...] | None = None, batch_index: int = 0) -> list[Path]:
    """One grid per dataset: each attack's reconstruction of the same batch, then the ground truth.

    The paper's teaser (SPEAR, then Geiping, then the truth) at the batch size of the rows (the
    profile's: B=20 in ``paper``, smaller in ``quick``). Attacks come in ``attacks``' order (default:
    every attack with a thumbnail, in :func:`attack_order`), one strip per client-model activation
    (CI-Net's ReLU and sigmoid clients); a strip whose newest thumbnail is of another batch (another
    batch size) than the first one's is left out.
    """
    results = Path(results)
    raw = results / "raw" / experiment
    try:
        df = load_rows(results, experiment, profile)
    except (FileNotFoundError, ValueError):
        return []
    if "artifact" not in df:
        return []
    df = df[(df["batch_index"] == batch_index) & df["artifact"].notna()]
    latest: dict[tuple[str, str, str], dict] = {}  # (dataset, attack, client model's activation)
    for r in df.to_dict("records"):  # rows are in write order: the last one wins
        if artifact_path(r, raw) is not None and (attacks is None or r["attack"] in attacks):
            act = r.get("activation")
            latest[(r["dataset"], r["attack"], act if isinstance(act, str) else "")] = r
    out = []
    for dataset in sorted({d for d, _, _ in latest}):
        keys = [(a, act) for d, a, act in latest if d == dataset]
        present = {a for a, _ in keys}
        order = [a for a in attacks if a in present] if attacks is not None else attack_order(present, experiment)
        picked = [latest[(dataset, a, act)] for a in order for act in sorted(act for b, act in keys if b == a)]
        picked = [r for r in picked if list(r["sample_ids"]) == list(picked[0]["sample_ids"])]
        several = {a for a in present if sum(b == a for b, _ in keys) > 1}
        strips = [(_label(r, r["attack"] in several), np.load(artifact_path(r, raw))["recon"]) for r in picked]
        strips.append((TRUTH, np.load(artifact_path(picked[0], raw))["truth"]))
        r0 = picked[0]
        parts = [_label(r, r["attack"] in several).replace("\n", " ") for r in picked]
        title = (f"{dataset} ({r0['data_source']}), B={r0['batch_size']}, batch {batch_index}, "
                 f"profile {r0.get('profile')}: " + ", ".join(parts))
        name = f"teaser_{r0.get('profile')}_{dataset}_b{batch_index}"
        out.append(grid_figure(strips, title, results / "figures" / experiment / name))
    return out


__all__ = ["TEASER_EXPERIMENTS", "artifact_path", "attack_order", "grid_figure", "grid_for_run", "run_grids",
           "teaser_grids"]
