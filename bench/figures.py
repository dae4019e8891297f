"""Figures derived from rows (and the thumbnails rows point to): reconstruction grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.record.rows import read_rows


def artifact_path(row: dict, raw_dir: Path) -> Path | None:
    """The thumbnail file a row points to, or None when it is gone.

    Rows store it relative to the folder of their JSONL file (``<run_id>/batch_0000.npz``), so
    figures work from any working directory and after the results folder moved; rows written
    before that hold a path relative to the run's working directory, tried next.
    """
    art = row.get("artifact")
    if not art:
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
    art = artifact_path(row, Path(jsonl).parent)
    if art is None:
        return None
    z = np.load(art)
    psnr = row.get("psnr_mean")
    title = (f"{row['dataset']} ({row['data_source']}), {row['attack']}, B={row['batch_size']}, "
             f"batch {batch_index}: status {row['status']}"
             + (f", PSNR {psnr:.1f} dB" if psnr is not None else ""))
    out = fig_dir / row["experiment"] / f"grid_{row['run_id']}_b{batch_index}"
    return grid_figure([("truth", z["truth"]), (row["attack"], z["recon"])], title, out)


def teaser_grids(results: Path | str, profile: str | None = None, experiment: str = "table1",
                 attacks: tuple[str, ...] = ("spear", "geiping"), batch_index: int = 0) -> list[Path]:
    """One grid per dataset: each attack's reconstruction of the same batch over the ground truth.

    The SPEAR paper's teaser order (arXiv 2403.03945): SPEAR, then Geiping, then the truth, at the batch size
    of the rows (the profile's: B=20 in ``paper``, smaller in ``quick``). Built from the rows and
    the thumbnails they point to; a dataset lacking a thumbnail of any attack is skipped.
    """
    results = Path(results)
    files = sorted((results / "raw" / experiment).glob("*.jsonl"))
    rows = [r for r in read_rows(files) if r.get("batch_index") == batch_index and r.get("artifact")
            and r.get("attack") in attacks and (profile is None or r.get("profile") == profile)]
    latest: dict[tuple[str, str], dict] = {}
    for r in rows:  # rows are appended in time order: the last one wins
        latest[(r["dataset"], r["attack"])] = r
    out = []
    raw = results / "raw" / experiment
    for dataset in sorted({d for d, _ in latest}):
        picked = [latest.get((dataset, a)) for a in attacks]
        if any(r is None or artifact_path(r, raw) is None for r in picked):
            continue
        if len({tuple(r["sample_ids"]) for r in picked}) != 1:
            continue  # different batches (e.g. another batch size): not one figure
        strips, parts = [], []
        for r in picked:
            z = np.load(artifact_path(r, raw))
            psnr = r.get("psnr_mean")
            strips.append((f"{r['attack']}\n{psnr:.1f} dB" if psnr is not None else r["attack"], z["recon"]))
            parts.append(f"{r['attack']} {psnr:.1f} dB" if psnr is not None else r["attack"])
        strips.append(("truth", np.load(artifact_path(picked[0], raw))["truth"]))
        r0 = picked[0]
        title = (f"{dataset} ({r0['data_source']}), B={r0['batch_size']}, batch {batch_index}, "
                 f"profile {r0.get('profile')}: " + ", ".join(parts))
        name = f"teaser_{r0.get('profile')}_{dataset}_b{batch_index}"
        out.append(grid_figure(strips, title, results / "figures" / experiment / name))
    return out


def main(argv=None) -> int:
    import argparse
    import os
    import sys

    ap = argparse.ArgumentParser(description="reconstruction grids per dataset (truth and each attack)")
    ap.add_argument("--experiment", default="table1")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--attacks", default="spear,geiping", help="comma-separated, top to bottom")
    ap.add_argument("--results", default=os.environ.get("SPEAR_RESULTS", "results"))
    args = ap.parse_args(argv)
    paths = teaser_grids(args.results, args.profile, args.experiment, tuple(args.attacks.split(",")))
    for p in paths:
        print(f"[spear-bench] grid: {p}", file=sys.stderr)
    if not paths:
        print(f"no dataset has thumbnails of all of {args.attacks} in {args.results}/raw/{args.experiment}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
