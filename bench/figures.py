"""Figures derived from rows (and the thumbnails rows point to): reconstruction grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.rows import read_rows


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


def grid_figure(rows_of_images: list[tuple[str, np.ndarray]], title: str, out: Path) -> Path:
    """One strip per entry (label, (N,C,H,W) uint8), stacked top to bottom; PNG and PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strips = [(lab, _tile(a)) for lab, a in rows_of_images]
    width = max(s.shape[1] for _, s in strips)
    h = sum(s.shape[0] for _, s in strips)
    fig, axes = plt.subplots(len(strips), 1, figsize=(min(18, 1 + width / 60), 0.6 + 1.1 * h / 60 + 0.3 * len(strips)),
                             squeeze=False)
    for ax, (lab, s) in zip(axes[:, 0], strips):
        ax.imshow(s, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(lab, rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=120)
    fig.savefig(out.with_suffix(".pdf"))
    plt.close(fig)
    return out.with_suffix(".png")


def grid_for_run(jsonl: Path, fig_dir: Path, batch_index: int = 0) -> Path | None:
    """Truth over reconstruction for one batch of a run, titled with the batch's row."""
    rows = [r for r in read_rows([jsonl]) if r.get("batch_index") == batch_index and r.get("artifact")]
    if not rows:
        return None
    row = rows[-1]
    art = Path(row["artifact"])
    if not art.exists():
        return None
    z = np.load(art)
    psnr = row.get("psnr_mean")
    title = (f"{row['dataset']} ({row['data_source']}), {row['attack']}, B={row['batch_size']}, "
             f"batch {batch_index}: status {row['status']}"
             + (f", PSNR {psnr:.1f} dB" if psnr is not None else ""))
    out = fig_dir / row["experiment"] / f"grid_{row['run_id']}_b{batch_index}"
    return grid_figure([("truth", z["truth"]), (row["attack"], z["recon"])], title, out)
